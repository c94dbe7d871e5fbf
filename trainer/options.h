/* trainer/options: the trainer's command line, parsed with getopt_long into
 * one struct, with the defaults that depend on other options (learning rate,
 * weight decay) filled in once everything is read.
 */
#ifndef TRAINER_OPTIONS_H
#define TRAINER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/net.h"
#include "nn/optim.h"

#define TRAINER_DEFAULT_OUT       "runs/train"
#define TRAINER_DEFAULT_ARCH      "resnet-mini"
#define TRAINER_DEFAULT_WIDTH     32
#define TRAINER_DEFAULT_BATCH     256
/* SimCLR's defaults: batch 128 with the decoupled loss and weight decay 5e-4
 * learnt the most per CPU-hour on CIFAR-10 (docs/quality.md). */
#define TRAINER_DEFAULT_BATCH_SIMCLR 128
#define TRAINER_DEFAULT_TAU       0.5
#define TRAINER_DEFAULT_MOMENTUM  0.9
#define TRAINER_DEFAULT_CKPT_EVERY 500
#define TRAINER_DEFAULT_KEEP      3
#define TRAINER_DEFAULT_SEED      1
#define TRAINER_DEFAULT_QUEUE     3      /* assembled batches buffered ahead */
#define TRAINER_DEFAULT_HWM       16     /* ViewBatches queued in the PULL socket */
#define TRAINER_DEFAULT_EPOCHS    1      /* when neither --epochs nor --steps is given */
#define TRAINER_DEFAULT_CLASSES   10     /* supervised: labels 0..9 */
#define TRAINER_MAX_CLASSES       NN_MAX_CLASSES   /* the classifier head's limit */
#define TRAINER_WARMUP_SHARE      0.05   /* default warm-up: this share of the total steps */
#define TRAINER_LR_BATCH_REF      256.0  /* lr = base x batch / 256 */
/* Base learning rates per method and optimizer (before the batch scaling).
 * RotNet wants a much smaller rate than SimCLR: at 0.3 the rotation loss
 * stays at chance. AdamW scales with sqrt(batch / 256) instead. */
#define TRAINER_BASE_LR_SIMCLR    0.3
#define TRAINER_BASE_LR_ROTNET    0.05
#define TRAINER_BASE_LR_SUPERVISED 0.1   /* the usual SGD rate for supervised ResNets */
#define TRAINER_BASE_LR_PRETEXT   TRAINER_BASE_LR_ROTNET   /* RotNet's task is one of them */
#define TRAINER_BASE_LR_ADAMW     1e-3
#define TRAINER_WD_SGD            1e-4   /* rotnet and pretext */
#define TRAINER_WD_SGD_SIMCLR     5e-4
#define TRAINER_WD_SGD_SUPERVISED 5e-4   /* supervised SGD: more decay, no other regulariser */
#define TRAINER_WD_LARS           1e-6
#define TRAINER_WD_ADAMW          1e-2

/* simclr: NT-Xent over two views per image; rotnet: 4-way rotation
 * cross-entropy over four views; supervised: cross-entropy on the samples'
 * labels, one view per image, a linear classifier head; pretext: N-way
 * cross-entropy on the views' targets, N the classes the augmenters announce
 * (their recipe's ":target" items), every view a row, a linear classifier head. */
typedef enum { TRAIN_SIMCLR = 0, TRAIN_ROTNET = 1, TRAIN_SUPERVISED = 2, TRAIN_PRETEXT = 3 } train_method_t;

typedef struct {
    train_method_t method;
    const char *arch;           /* "resnet-mini", "conv4" or a description file */
    int width;
    uint32_t batch;             /* images per step */
    nn_opt_kind optimizer;
    double lr;                  /* peak learning rate, after the batch scaling */
    double weight_decay, momentum, tau;
    int decoupled;              /* simclr: --loss dcl (the positive out of the denominator) */
    double ema;                 /* decay of the weights' moving average, 0 = none */
    uint32_t classes;           /* supervised: labels 0..classes-1 are trained on */
    long warmup_steps;          /* -1: not given (default share of the total) */
    double warmup_epochs;       /* > 0 when given as "Nep" */
    double epochs;              /* 0 when --steps is used */
    long steps;                 /* 0 when --epochs is used */
    double minutes;             /* --minutes: a time budget instead of epochs or steps, 0 = none */
    uint64_t dataset_size;      /* images per epoch, 0 = learn from END_OF_EPOCH */
    uint64_t seed;
    int sync_bn;                /* data-parallel: batch norm over the whole batch of every rank */
    const char *bind;
    const char *control, *evaluator;   /* NULL ("none"): no control PUB / no evaluator PUSH */
    const char *curve;          /* --curve key folder, or NULL */
    const char *out;
    long ckpt_every;
    int keep;
    const char *resume;         /* NULL, "latest" or a checkpoint path */
    int queue;                  /* assembled batches buffered ahead of the step */
    int hwm;
    int quiet;
    /* which options the command line gave explicitly (resume compares them) */
    int set_method, set_lr, set_optimizer, set_batch, set_arch, set_width, set_wd,
        set_momentum, set_tau, set_loss, set_ema, set_warmup, set_length, set_seed, set_out, set_classes, set_sync_bn;
} trainer_options_t;

/* Parses argv. Returns 0 on success, 1 when --help was asked, -1 on a usage
 * error with err set (the caller prints it with cli_usage_error and exits 2). */
int trainer_options_parse(trainer_options_t *o, int argc, char **argv, char *err, size_t errlen);

/* Fills the defaults that depend on method, optimizer and batch (lr, weight
 * decay) for those not given explicitly. Resume calls it again after
 * restoring the run's own settings. */
void trainer_options_finish(trainer_options_t *o);

void trainer_usage(FILE *f);

const char *trainer_method_name(train_method_t m);
/* "simclr", "rotnet", "supervised" or "pretext": 0, else -1. */
int trainer_method_parse(const char *s, train_method_t *m);
/* 1 when the method's loss is a cross-entropy on per-row targets (rotnet,
 * supervised, pretext): the batch carries targets and the step a train accuracy. */
int trainer_method_has_targets(train_method_t m);

/* Parses a --warmup value: "N" steps or "Nep" epochs. 0 or -1. */
int trainer_parse_warmup(const char *s, long *steps, double *epochs);

#endif

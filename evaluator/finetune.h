/* evaluator/finetune: fine-tuning with few labels, against training from
 * scratch on the same labels.
 *
 * For each labeled subset of the training images (--finetune fractions,
 * --finetune-per-class counts; class-balanced, seeded), three numbers on the
 * test images:
 *   - scratch:  the checkpoint's network (encoder + a new linear classifier)
 *               trained from a random initialisation on the subset alone;
 *   - probe:    the linear probe (evaluator/probe.h) on the frozen encoder's
 *               features, fitted on that subset;
 *   - finetune: the same network started from the checkpoint's encoder (the
 *               classifier new), every parameter trained on the subset.
 * Scratch and fine-tuning are trained alike: crop-and-flip views made in
 * process (augmenter/augment.h, recipe "supervised"), softmax cross-entropy,
 * SGD with momentum 0.9, a linear warm-up then a cosine schedule, a budget of
 * --finetune-epochs passes over the items and at least EVAL_FT_MIN_STEPS
 * steps. The learning rate and weight decay come from a small grid, each
 * point trained on 80% of the subset and scored on the other 20% (a seeded,
 * class-balanced split; top-1, ties broken by the lower cross-entropy, as
 * 20 validation items tie often); the best one is then trained again on the whole
 * subset, and that network is scored on the test images. Subsets with fewer
 * than EVAL_FT_MIN_VAL_PER_CLASS items in some class have too little to
 * validate on: the first grid point is used.
 */
#ifndef EVALUATOR_FINETUNE_H
#define EVALUATOR_FINETUNE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "evaluator/data.h"
#include "evaluator/options.h"
#include "evaluator/probe.h"
#include "nn/net.h"

#define EVAL_FT_MAX_EPOCHS 100000
#define EVAL_FT_DEFAULT_EPOCHS     20
#define EVAL_FT_MIN_STEPS          100    /* a small subset still gets this many steps */
#define EVAL_FT_BATCH              32     /* images per step (fewer when the subset is smaller) */
#define EVAL_FT_MAX_GRID           4      /* values per grid axis */
#define EVAL_FT_MIN_VAL_PER_CLASS  5      /* below this many items in a class, no validation split */
#define EVAL_FT_RECIPE             "supervised"  /* crop and flip (augmenter/augment.h) */
#define EVAL_FT_HASH_HEX           17     /* 16 hex digits and the terminator */
#define EVAL_FT_NAME_MAX           32

typedef struct {
    int epochs;                     /* passes over the training items ... */
    long min_steps;                 /* ... but at least this many steps */
    int batch;                      /* images per step */
    int eval_batch;                 /* images per forward pass when scoring */
    double lrs[EVAL_FT_MAX_GRID];   /* learning rates tried, the first one the fallback */
    int n_lrs;
    double wds[EVAL_FT_MAX_GRID];   /* weight decays tried (conv and linear weights only) */
    int n_wds;
    double val_fraction;            /* of the subset, for choosing lr and weight decay */
    uint64_t seed;                  /* of the validation split, the initialisation, the order and the views */
    atomic_int *stop;    /* when not NULL and raised, training stops with an error */
} eval_ft_opts;

typedef struct {
    double top1;                    /* on the scored items, 0..1 */
    double lr, weight_decay;        /* chosen */
    int chosen_by_validation;       /* 0: too few labels, the fallback was used */
    double val_top1;                /* of the chosen point (NAN when not validated) */
    long steps;                     /* of the final training */
    double epochs;                  /* steps x batch / items of the final training */
    char subset_hash[EVAL_FT_HASH_HEX];  /* eval_ft_subset_hash of the items it was trained on */
} eval_ft_result;

/* Defaults: EVAL_FT_DEFAULT_EPOCHS, EVAL_FT_MIN_STEPS, EVAL_FT_BATCH, the
 * grid lr {0.1, 0.01} x weight decay {5e-4, 5e-5}, validation 20%, seed 1. */
void eval_ft_defaults(eval_ft_opts *o);

/* Parses one of the options --finetune, --finetune-per-class, --finetune-on,
 * --finetune-epochs (name without the dashes) into f. "none" empties a list.
 * 0, or -1 with err set. */
int eval_ft_parse_option(eval_finetune_options *f, const char *name, const char *arg, char *err, size_t errlen);
/* Whether any subset is asked for. */
int eval_ft_wanted(const eval_finetune_options *f);

/* The labeled subset of the training images: per_class > 0 takes that many
 * items of each class (all of a class that has fewer), else a share
 * `fraction` of the labeled items, class-balanced (dataset/split.h, the
 * subsets of the probe's --label-fraction). Seeded, sorted. *idx malloc'd.
 * 0, or -1 with err. */
int eval_ft_subset_pick(const int32_t *labels, size_t n, int k, size_t per_class, double fraction,
                        uint64_t seed, size_t **idx, size_t *n_idx, char *err, size_t errlen);
/* "10/class" or "1%". */
void eval_ft_subset_name(size_t per_class, double fraction, char *buf, size_t len);
/* 64-bit FNV-1a of the items' (index, label) pairs, as 16 hex digits: two
 * trainings used the same subset when their hashes are equal. */
void eval_ft_subset_hash(const int32_t *labels, const size_t *idx, size_t n, char hex[EVAL_FT_HASH_HEX]);

/* The description of desc's encoder followed by a linear classifier of k
 * outputs (any head of desc is replaced). malloc'd, or NULL with err. */
char *eval_ft_classifier_desc(const char *desc, int k, char *err, size_t errlen);

/* Trains the network of desc (an encoder and a classifier of k outputs,
 * eval_ft_classifier_desc) on the items idx[0..n) of train, lr and weight
 * decay chosen on validation (above), and scores it on every image of test.
 * init: the encoder's parameters are copied from this network's tensors of
 * the same names ("encoder.*"); NULL trains from a random initialisation.
 * 0, or -1 with err. */
int eval_ft_train(const char *desc, nn_net *init, const eval_images *train, const size_t *idx, size_t n,
                  const eval_images *test, int k, const eval_ft_opts *o, eval_ft_result *r, char *err,
                  size_t errlen);

/* Every subset of o->finetune for the checkpoint's network net: scratch,
 * probe (with probe's settings, on o->readout) and fine-tuning, one object
 * per subset
 *   {"subset","labels","seed","subset_hash","scratch_top1","probe_top1","finetune_top1",
 *    "epochs","steps","lr","weight_decay","seconds","scratch_lr","scratch_weight_decay"}
 * (top-1 in 0..1 as in the rest of eval.jsonl; epochs, steps, lr and weight
 * decay of the fine-tuning) and a table in the log. Scratch and
 * fine-tuning must report the hash of the subset that was picked, else it is
 * an error. A new array, or NULL with err. */
json_t *eval_finetune(nn_net *net, const eval_data *data, const eval_options *o, const eval_probe_opts *probe,
                      atomic_int *stop, char *err, size_t errlen);

#endif

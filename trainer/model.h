/* trainer/model: the network, its optimizer and the method's loss, and one
 * training step on an assembled batch. */
#ifndef TRAINER_MODEL_H
#define TRAINER_MODEL_H

#include <stddef.h>

#include "dist/dist.h"
#include "nn/layers.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "trainer/batch.h"

typedef struct {
    train_method_t method;
    nn_net *net;
    nn_optim *opt;
    int rows;               /* views per step */
    int out_dim;            /* width of the head's output */
    float tau;              /* NT-Xent temperature */
    int decoupled;          /* simclr: DCL instead of NT-Xent (0 from model_new; the caller sets it) */
    float *ema;             /* model_ema_start: the parameters' moving average (NULL: none) */
    float ema_decay;
    long ema_updates;       /* steps averaged so far */
    float *cache;           /* simclr: NT-Xent scratch; rotnet, supervised: softmax (rows, out_dim) */
    float *dout;            /* (rows, out_dim) d loss / d output */

    /* data-parallel (model_set_dist): NULL d = one process */
    dist_t *d;
    int rank, size;
    float *z_all;           /* simclr: (size * rows, out_dim) every rank's embeddings */
    nn_bn_sync bn_sync;     /* --sync-bn: sums over the ranks, timed */
    nn_grad_ready grad_ready;   /* data-parallel: each layer range's gradient sum starts as soon
                                   as the backward has made it final */
    double comm_seconds;    /* time inside dist_* calls, all steps */
    double comm_bytes;      /* floats sent by this rank in them, in bytes, all steps */
    int comm_failed;        /* a collective failed: the ranks can no longer agree (comm_error says why) */
    char comm_error[256];
} model_t;

/* Builds the network of `desc` for `rows` views per step and its optimizer.
 * The description's head must suit the method (rotnet: at least
 * NN_ROT_CLASSES outputs; supervised: exactly `classes`, the targets being
 * in 0..classes-1; simclr ignores classes). NULL with err set. */
model_t *model_new(const char *desc, train_method_t method, int rows, int classes, const nn_optim_config *oc,
                   float tau, char *err, size_t errlen);
void model_destroy(model_t **self_p);

/* Makes m one replica of a data-parallel run over d (size > 1): SimCLR
 * all-gathers the embeddings and takes the gathered NT-Xent (the whole
 * batch's loss); RotNet and supervised take their local loss with
 * dloss = 1/size and average loss and accuracy over the ranks; every step
 * sums the gradients over the ranks before the optimizer (so each rank takes
 * the single process's step on the global batch). With sync_bn, batch norm
 * uses the statistics of every rank's rows. 0, or -1 with err. */
int model_set_dist(model_t *m, dist_t *d, int sync_bn, char *err, size_t errlen);
/* Data-parallel: 1 (the default once spread) sums the gradients range by
 * range while the backward goes on; 0 sums them in one call after it (for
 * comparing the two). */
int model_set_overlap(model_t *m, int on, char *err, size_t errlen);

/* Copies rank root's parameters, batch-norm statistics and optimizer state
 * to every rank (a world of one: nothing). 0, or -1 with err. */
int model_broadcast(model_t *m, int root, char *err, size_t errlen);

/* Forward, loss, backward and one optimizer update with learning rate lr on
 * a full batch (data-parallel: every rank calls it on its own rows; a
 * failed collective sets comm_failed and returns NaN). Returns the loss (NaN or infinite when training diverged).
 * *accuracy (when not NULL) gets the share of rows whose largest output is
 * their target (rotnet, supervised: the batch's train accuracy, before the
 * update), or NAN for simclr. */
float model_step(model_t *m, const batch_t *b, float lr, float *accuracy);

/* Starts a moving average of the parameters (BN running statistics
 * included) at their current values, with the given decay; every later
 * model_step updates it with decay min(decay, (1 + t) / (10 + t)) at its
 * t-th update, so that the first steps are not averaged with the
 * initialisation for long. 0, or -1 out of memory. */
int model_ema_start(model_t *m, float decay);
/* Exchanges the parameters and their average (twice: back as they were),
 * to save or load the average with the nn/ckpt functions. */
void model_ema_swap(model_t *m);

/* Checks a description before any data arrives: builds it for one image and
 * reports the input shape and output width. 0, or -1 with err. */
int model_probe(const char *desc, int *c, int *h, int *w, int *out_dim, char *err, size_t errlen);

#endif

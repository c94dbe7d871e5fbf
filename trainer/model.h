/* trainer/model: the network, its optimizer and the method's loss, and one
 * training step on an assembled batch. */
#ifndef TRAINER_MODEL_H
#define TRAINER_MODEL_H

#include <stddef.h>

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
    float *cache;           /* simclr: NT-Xent scratch; rotnet, supervised: softmax (rows, out_dim) */
    float *dout;            /* (rows, out_dim) d loss / d output */
} model_t;

/* Builds the network of `desc` for `rows` views per step and its optimizer.
 * The description's head must suit the method (rotnet: at least
 * NN_ROT_CLASSES outputs; supervised: exactly `classes`, the targets being
 * in 0..classes-1; simclr ignores classes). NULL with err set. */
model_t *model_new(const char *desc, train_method_t method, int rows, int classes, const nn_optim_config *oc,
                   float tau, char *err, size_t errlen);
void model_destroy(model_t **self_p);

/* Forward, loss, backward and one optimizer update with learning rate lr on
 * a full batch. Returns the loss (NaN or infinite when training diverged).
 * *accuracy (when not NULL) gets the share of rows whose largest output is
 * their target (rotnet, supervised: the batch's train accuracy, before the
 * update), or NAN for simclr. */
float model_step(model_t *m, const batch_t *b, float lr, float *accuracy);

/* Checks a description before any data arrives: builds it for one image and
 * reports the input shape and output width. 0, or -1 with err. */
int model_probe(const char *desc, int *c, int *h, int *w, int *out_dim, char *err, size_t errlen);

#endif

/* trainer/model: network + optimizer + loss, one training step. */
#include "trainer/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/loss.h"

int model_probe(const char *desc, int *c, int *h, int *w, int *out_dim, char *err, size_t errlen)
{
    nn_net *net = nn_net_new(desc, 1, err, errlen);
    if (!net)
        return -1;
    nn_net_input_shape(net, c, h, w);
    *out_dim = nn_net_out_dim(net);
    nn_net_destroy(&net);
    return 0;
}

model_t *model_new(const char *desc, train_method_t method, int rows, int classes, const nn_optim_config *oc,
                   float tau, char *err, size_t errlen)
{
    model_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->method = method;
    m->rows = rows;
    m->tau = tau;
    m->net = nn_net_new(desc, rows, err, errlen);
    if (!m->net)
        goto fail;
    m->out_dim = nn_net_out_dim(m->net);
    if (method == TRAIN_ROTNET && m->out_dim < NN_ROT_CLASSES) {
        snprintf(err, errlen, "the network's head has %d outputs, rotnet needs %d (head rotation)",
                 m->out_dim, NN_ROT_CLASSES);
        goto fail;
    }
    if (method == TRAIN_PRETEXT && m->out_dim != classes) {
        snprintf(err, errlen, "the network's head has %d outputs, the recipe's targets have %d classes "
                 "(head classifier:%d)", m->out_dim, classes, classes);
        goto fail;
    }
    if (method == TRAIN_SUPERVISED && m->out_dim != classes) {
        snprintf(err, errlen, "the network's head has %d outputs, supervised with %d classes needs %d "
                 "(head classifier:%d)", m->out_dim, classes, classes, classes);
        goto fail;
    }
    m->opt = nn_optim_new(oc, nn_net_params(m->net), err, errlen);
    if (!m->opt)
        goto fail;
    size_t cache = method == TRAIN_SIMCLR ? nn_ntxent_cache_size(rows, m->out_dim)
                                          : (size_t)rows * (size_t)m->out_dim;
    m->cache = malloc(cache * sizeof *m->cache);
    m->dout = malloc((size_t)rows * (size_t)m->out_dim * sizeof *m->dout);
    if (!m->cache || !m->dout) {
        snprintf(err, errlen, "out of memory for the loss buffers (%d views)", rows);
        goto fail;
    }
    return m;
fail:
    model_destroy(&m);
    return NULL;
}

void model_destroy(model_t **self_p)
{
    model_t *m = *self_p;
    if (!m)
        return;
    nn_optim_destroy(&m->opt);
    nn_net_destroy(&m->net);
    free(m->cache);
    free(m->dout);
    free(m);
    *self_p = NULL;
}

/* Share of the n rows of probs (n, k) whose largest entry is at targets[i]
 * (the first one on ties). */
static float top1_share(const float *probs, const int32_t *targets, int n, int k)
{
    int hits = 0;
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * (size_t)k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (p[j] > p[best])
                best = j;
        hits += best == targets[i];
    }
    return n > 0 ? (float)hits / (float)n : NAN;
}

float model_step(model_t *m, const batch_t *b, float lr, float *accuracy)
{
    const float *out = nn_net_forward(m->net, b->x, m->rows, 1);
    memset(m->dout, 0, (size_t)m->rows * (size_t)m->out_dim * sizeof *m->dout);
    float loss;
    if (m->method == TRAIN_SIMCLR) {
        loss = nn_ntxent_forward(m->cache, out, m->rows, m->out_dim, m->tau);
        nn_ntxent_backward(m->dout, m->cache, m->rows, m->out_dim, m->tau, 1.0f);
        if (accuracy)
            *accuracy = NAN;
    } else {
        loss = nn_xent_forward(m->cache, out, b->targets, m->rows, m->out_dim);
        nn_xent_backward(m->dout, m->cache, b->targets, m->rows, m->out_dim, 1.0f);
        if (accuracy)
            *accuracy = top1_share(m->cache, b->targets, m->rows, m->out_dim);
    }
    if (!isfinite(loss))
        return loss;   /* no update from a diverged step */
    nn_net_zero_grad(m->net);
    nn_net_backward(m->net, m->dout);
    nn_optim_step(m->opt, nn_net_params(m->net), nn_net_grads(m->net), lr);
    return loss;
}

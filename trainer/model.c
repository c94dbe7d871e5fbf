/* trainer/model: network + optimizer + loss, one training step. */
#include "trainer/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "errmsg/errmsg.h"
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
    free(m->z_all);
    free(m->ema);
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

/* nn_bn_sync's sum over the ranks, timed like the other collectives. */
static int bn_sum(void *ctx, double *buf, size_t n)
{
    model_t *m = ctx;
    double t0 = console_now();
    int rc = dist_sum_f64_cb(m->d, buf, n);
    m->comm_seconds += console_now() - t0;
    m->comm_bytes += (double)n * sizeof *buf;
    if (rc)
        snprintf(m->comm_error, sizeof m->comm_error, "%s", dist_error(m->d));
    return rc;
}

#define GRAD_RANGE_MIN 32768   /* floats: smaller ranges wait for the next layer's */

/* nn_grad_ready's callback: the gradient sum of a final range starts now,
 * and those started before move along, while the backward goes on. */
static int grads_ready(void *ctx, float *grad, size_t n)
{
    model_t *m = ctx;
    double t0 = console_now();
    int rc = dist_allreduce_start(m->d, grad, n, m->comm_error, sizeof m->comm_error) ||
             dist_progress(m->d, m->comm_error, sizeof m->comm_error);
    m->comm_seconds += console_now() - t0;
    m->comm_bytes += (double)n * sizeof *grad;
    return rc;
}

int model_set_dist(model_t *m, dist_t *d, int sync_bn, char *err, size_t errlen)
{
    m->d = d;
    m->rank = dist_rank(d);
    m->size = dist_size(d);
    if (m->size == 1)
        return 0;   /* one process: its own statistics are the whole batch's */
    size_t all = (size_t)m->size * (size_t)m->rows * (size_t)m->out_dim;
    if (m->method == TRAIN_SIMCLR) {
        float *cache = malloc(nn_ntxent_cache_size(m->size * m->rows, m->out_dim) * sizeof *cache);
        m->z_all = malloc(all * sizeof *m->z_all);
        if (!cache || !m->z_all) {
            free(cache);
            errmsg_set(err, errlen, "out of memory for the gathered embeddings of %d ranks", m->size);
            return -1;
        }
        free(m->cache);
        m->cache = cache;
    }
    if (model_set_overlap(m, 1, err, errlen))
        return -1;
    if (sync_bn) {
        m->bn_sync.sum = bn_sum;
        m->bn_sync.ctx = m;
        if (nn_net_set_bn_sync(m->net, &m->bn_sync, err, errlen))
            return -1;
    }
    return 0;
}

/* nn_grad_ready's tick: the started sums move along between layers. */
static int grads_progress(void *ctx)
{
    model_t *m = ctx;
    double t0 = console_now();
    int rc = dist_progress(m->d, m->comm_error, sizeof m->comm_error);
    m->comm_seconds += console_now() - t0;
    return rc;
}

int model_set_overlap(model_t *m, int on, char *err, size_t errlen)
{
    if (!m->d || m->size == 1)
        return 0;
    if (on)
        m->grad_ready = (nn_grad_ready){ .ready = grads_ready, .tick = grads_progress, .ctx = m,
                                         .min_floats = GRAD_RANGE_MIN };
    else
        memset(&m->grad_ready, 0, sizeof m->grad_ready);
    return nn_net_set_grad_ready(m->net, on ? &m->grad_ready : NULL, err, errlen);
}

/* Records a failed collective; returns NAN for model_step to hand back. */
static float comm_fail(model_t *m, const char *what)
{
    char why[sizeof m->comm_error];
    memcpy(why, m->comm_error, sizeof why);
    int n = snprintf(m->comm_error, sizeof m->comm_error, "%s: ", what);
    if (n > 0 && (size_t)n < sizeof m->comm_error)
        snprintf(m->comm_error + n, sizeof m->comm_error - (size_t)n, "%.200s", why);
    m->comm_failed = 1;
    return NAN;
}

int model_broadcast(model_t *m, int root, char *err, size_t errlen)
{
    if (!m->d || m->size == 1)
        return 0;
    nn_arena *p = nn_net_params(m->net), *s = nn_optim_state(m->opt);
    long steps = nn_optim_steps(m->opt);
    double t0 = console_now();
    int rc = dist_broadcast(m->d, p->base, p->size * sizeof *p->base, root, err, errlen) ||
             (s && s->size && dist_broadcast(m->d, s->base, s->size * sizeof *s->base, root, err, errlen)) ||
             dist_broadcast(m->d, &steps, sizeof steps, root, err, errlen);
    m->comm_seconds += console_now() - t0;
    if (rc)
        return -1;
    nn_optim_set_steps(m->opt, steps);
    return 0;
}

/* Timed dist call wrappers: 0, or -1 with m->comm_error. */
static int timed_allgather(model_t *m, const float *send, float *recv, size_t n)
{
    double t0 = console_now();
    int rc = dist_allgather(m->d, send, recv, n, m->comm_error, sizeof m->comm_error);
    m->comm_seconds += console_now() - t0;
    m->comm_bytes += (double)n * sizeof *send;
    return rc;
}

static int timed_allreduce(model_t *m, float *buf, size_t n)
{
    double t0 = console_now();
    int rc = dist_allreduce_sum(m->d, buf, n, m->comm_error, sizeof m->comm_error);
    m->comm_seconds += console_now() - t0;
    m->comm_bytes += (double)n * sizeof *buf;
    return rc;
}

float model_step(model_t *m, const batch_t *b, float lr, float *accuracy)
{
    int parallel = m->d && m->size > 1;
    const float *out = nn_net_forward(m->net, b->x, m->rows, 1);
    if (!out)
        return comm_fail(m, "batch norm");
    size_t local = (size_t)m->rows * (size_t)m->out_dim;
    memset(m->dout, 0, local * sizeof *m->dout);
    float loss, acc = NAN;
    if (m->method == TRAIN_SIMCLR && parallel) {
        /* the whole batch's NT-Xent, the same on every rank; dloss 1 and a
         * summed gradient give the single process's step */
        if (timed_allgather(m, out, m->z_all, local))
            return comm_fail(m, "embeddings");
        loss = nn_contrastive_forward(m->cache, m->z_all, m->size, m->rows, m->out_dim, m->tau, m->decoupled);
        nn_ntxent_gathered_backward(m->dout, m->cache, m->size, m->rank, m->rows, m->out_dim, m->tau, 1.0f);
    } else if (m->method == TRAIN_SIMCLR) {
        loss = nn_contrastive_forward(m->cache, out, 1, m->rows, m->out_dim, m->tau, m->decoupled);
        nn_ntxent_backward(m->dout, m->cache, m->rows, m->out_dim, m->tau, 1.0f);
    } else {
        /* each rank's mean over its rows, weighted 1/size: their sum is the
         * mean over the global batch */
        float share = parallel ? 1.0f / (float)m->size : 1.0f;
        loss = nn_xent_forward(m->cache, out, b->targets, m->rows, m->out_dim);
        nn_xent_backward(m->dout, m->cache, b->targets, m->rows, m->out_dim, share);
        acc = top1_share(m->cache, b->targets, m->rows, m->out_dim);
        if (parallel) {
            float mean[2] = { loss * share, acc * share };
            if (timed_allreduce(m, mean, 2))
                return comm_fail(m, "loss");
            loss = mean[0];
            acc = mean[1];
        }
    }
    if (accuracy)
        *accuracy = acc;
    if (!isfinite(loss))
        return loss;   /* no update from a diverged step (every rank sees the same loss) */
    nn_net_zero_grad(m->net);
    int bad = nn_net_backward(m->net, m->dout);
    if (parallel && !m->grad_ready.ready) {
        /* one sum after the backward (model_set_overlap 0) */
        nn_arena *g = nn_net_grads(m->net);
        if (bad)
            return comm_fail(m, "batch norm");
        if (timed_allreduce(m, g->base, g->size))
            return comm_fail(m, "gradients");
    } else if (parallel) {
        /* the sums the backward started (they cover every gradient) */
        double t0 = console_now();
        char why[sizeof m->comm_error];
        int rc = dist_allreduce_wait(m->d, why, sizeof why);
        m->comm_seconds += console_now() - t0;
        if (rc && !bad)
            memcpy(m->comm_error, why, sizeof why);
        if (rc || bad)
            return comm_fail(m, bad ? "backward" : "gradients");
    } else if (bad) {
        return comm_fail(m, "batch norm");
    }
    nn_arena *g = nn_net_grads(m->net);
    nn_optim_step(m->opt, nn_net_params(m->net), g, lr);
    if (m->ema) {
        nn_arena *p = nn_net_params(m->net);
        double t = (double)m->ema_updates++;
        float d = (float)fmin((double)m->ema_decay, (1.0 + t) / (10.0 + t)), keep = 1.0f - d;
        for (size_t i = 0; i < p->size; i++)
            m->ema[i] += keep * (p->base[i] - m->ema[i]);
    }
    return loss;
}

int model_ema_start(model_t *m, float decay)
{
    nn_arena *p = nn_net_params(m->net);
    free(m->ema);
    if (!(m->ema = malloc(p->size * sizeof *m->ema)))
        return -1;
    memcpy(m->ema, p->base, p->size * sizeof *m->ema);
    m->ema_decay = decay;
    m->ema_updates = 0;
    return 0;
}

void model_ema_swap(model_t *m)
{
    nn_arena *p = nn_net_params(m->net);
    for (size_t i = 0; m->ema && i < p->size; i++) {
        float v = p->base[i];
        p->base[i] = m->ema[i];
        m->ema[i] = v;
    }
}

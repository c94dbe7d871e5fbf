/* nn/optim: SGD (momentum, Nesterov), LARS, AdamW; warm-up + cosine. */
#include "nn/optim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nn_optim {
    nn_optim_config c;
    nn_arena state;
    int *slot;        /* per parameter: index of its first state tensor, -1 if none */
    int nparams;
    long steps;
};

static const char *const kind_names[] = { "sgd", "lars", "adamw" };

void nn_optim_defaults(nn_optim_config *c, nn_opt_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->momentum = kind == NN_OPT_ADAMW ? 0.0f : 0.9f;
    c->decay_all = kind != NN_OPT_LARS;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->trust_coef = 0.001f;
}

const char *nn_optim_kind_name(nn_opt_kind kind)
{
    return (unsigned)kind < 3 ? kind_names[kind] : "?";
}

int nn_optim_kind_parse(const char *name, nn_opt_kind *kind)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (nn_opt_kind)i;
            return 0;
        }
    return -1;
}

nn_optim *nn_optim_new(const nn_optim_config *c, const nn_arena *params, char *err, size_t errlen)
{
    nn_optim *o = calloc(1, sizeof *o);
    if (!o || !(o->slot = malloc((size_t)(params->n ? params->n : 1) * sizeof *o->slot)))
        goto oom;
    o->c = *c;
    o->nparams = params->n;
    for (int i = 0; i < params->n; i++) {
        const nn_tensor *t = &params->t[i];
        o->slot[i] = -1;
        if (!(t->flags & NN_T_TRAIN))
            continue;
        char name[NN_MAX_NAME + 32];
        if (c->kind == NN_OPT_ADAMW) {
            snprintf(name, sizeof name, "optimizer.%s.exp_avg", t->name);
            o->slot[i] = nn_arena_add(&o->state, name, t->ndim, t->shape, 0);
            snprintf(name, sizeof name, "optimizer.%s.exp_avg_sq", t->name);
            if (nn_arena_add(&o->state, name, t->ndim, t->shape, 0) < 0)
                goto oom;
        } else if (c->momentum != 0.0f) {
            snprintf(name, sizeof name, "optimizer.%s.momentum_buffer", t->name);
            o->slot[i] = nn_arena_add(&o->state, name, t->ndim, t->shape, 0);
        }
    }
    if (nn_arena_alloc(&o->state))
        goto oom;
    return o;
oom:
    if (err && errlen)
        snprintf(err, errlen, "optimizer: out of memory");
    nn_optim_destroy(&o);
    return NULL;
}

void nn_optim_destroy(nn_optim **self_p)
{
    nn_optim *o = *self_p;
    if (!o)
        return;
    nn_arena_free(&o->state);
    free(o->slot);
    free(o);
    *self_p = NULL;
}

static double norm2(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* v = m v + scale (g + wd w); w -= v, or the Nesterov form; v absent = plain step */
static void momentum_update(float *w, const float *g, float *v, size_t n, float scale,
                            float wd, float m, int nesterov, int first)
{
    for (size_t k = 0; k < n; k++) {
        float gk = g[k] + wd * w[k];
        if (!v) {
            w[k] -= scale * gk;
            continue;
        }
        float vk = first ? gk : m * v[k] + gk;
        v[k] = vk;
        w[k] -= scale * (nesterov ? gk + m * vk : vk);
    }
}

void nn_optim_step(nn_optim *o, nn_arena *params, const nn_arena *grads, float lr)
{
    const nn_optim_config *c = &o->c;
    int first = o->steps == 0;
    o->steps++;
    for (int i = 0; i < params->n && i < o->nparams; i++) {
        nn_tensor *t = &params->t[i];
        if (!(t->flags & NN_T_TRAIN))
            continue;
        float *w = t->data;
        const float *g = grads->t[i].data;
        float *s = o->slot[i] >= 0 ? o->state.t[o->slot[i]].data : NULL;
        int decays = (t->flags & NN_T_DECAY) || (c->decay_all && c->kind != NN_OPT_LARS);
        float wd = decays ? c->weight_decay : 0.0f;
        size_t n = t->numel;
        switch (c->kind) {
        case NN_OPT_SGD:
            momentum_update(w, g, s, n, lr, wd, c->momentum, c->nesterov, first);
            break;
        case NN_OPT_LARS: {
            /* SimCLR's LARS: trust ratio eta |w| / |g + wd w| per weight tensor;
             * biases and BN parameters get neither decay nor adaptation. The
             * momentum buffer holds lr-scaled steps, as in SimCLR. */
            float scaled = lr;
            if (t->flags & NN_T_DECAY) {
                double wn = norm2(w, n), gn = 0.0;
                for (size_t k = 0; k < n; k++) {
                    double gk = (double)g[k] + (double)wd * w[k];
                    gn += gk * gk;
                }
                gn = sqrt(gn);
                if (wn > 0.0 && gn > 0.0)
                    scaled = (float)(lr * c->trust_coef * wn / gn);
            }
            for (size_t k = 0; k < n; k++) {
                float gk = (g[k] + wd * w[k]) * scaled;
                if (!s) {
                    w[k] -= gk;
                    continue;
                }
                float vk = c->momentum * s[k] + gk;
                s[k] = vk;
                w[k] -= c->nesterov ? c->momentum * vk + gk : vk;
            }
            break;
        }
        case NN_OPT_ADAMW: {
            float *m = s, *v = o->state.t[o->slot[i] + 1].data;
            double bc1 = 1.0 - pow(c->beta1, (double)o->steps), bc2 = 1.0 - pow(c->beta2, (double)o->steps);
            float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
            for (size_t k = 0; k < n; k++) {
                w[k] *= 1.0f - lr * wd;
                m[k] = c->beta1 * m[k] + (1.0f - c->beta1) * g[k];
                v[k] = c->beta2 * v[k] + (1.0f - c->beta2) * g[k] * g[k];
                w[k] -= step * m[k] / (sqrtf(v[k]) * rbc2 + c->eps);
            }
            break;
        }
        }
    }
}

const nn_optim_config *nn_optim_config_of(const nn_optim *o) { return &o->c; }
nn_arena *nn_optim_state(nn_optim *o) { return &o->state; }
long nn_optim_steps(const nn_optim *o) { return o->steps; }
void nn_optim_set_steps(nn_optim *o, long steps) { o->steps = steps; }

float nn_lr_schedule(float base, long step, long warmup, long total)
{
    if (step < 0 || step >= total)
        return 0.0f;
    if (step < warmup)
        return base * (float)(step + 1) / (float)warmup;
    double t = (double)(step - warmup) / (double)(total - warmup);
    return (float)(base * 0.5 * (1.0 + cos(M_PI * t)));
}

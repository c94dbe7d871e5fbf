/* evaluator/finetune: fine-tuning with few labels and its from-scratch
 * baseline (finetune.h). */
#include "evaluator/finetune.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment/augment.h"
#include "cli/cli.h"
#include "console/console.h"
#include "dataset/split.h"
#include "splitmix/splitmix.h"
#include "errmsg/errmsg.h"
#include "evaluator/readout.h"
#include "nn/loss.h"
#include "nn/optim.h"
#include "nn/tensor.h"

#define FT_MOMENTUM       0.9f
#define FT_WARMUP_SHARE   20        /* warm-up: 1/20 of the steps */
#define FT_VAL_FRACTION   0.2
#define FT_SEED           1
#define FT_EVAL_BATCH     256
#define FT_ENCODER_PREFIX "encoder."
#define FT_HEAD_LINE      "head"
#define SEED_MIX_SUBSET   0xf1e7ull /* per-class subsets */
#define SEED_MIX_VAL      0x7a1ull  /* the validation split of a subset */
#define SEED_MIX_INIT     0x1417ull /* the network's initialisation */
#define SEED_MIX_ORDER    0x0dd3ull /* the order of the items */
#define SEED_MIX_VIEWS    0xa065ull /* the augmented views */
#define FNV_OFFSET        0xcbf29ce484222325ull
#define FNV_PRIME         0x100000001b3ull

void eval_ft_defaults(eval_ft_opts *o)
{
    static const double lrs[] = { 0.1, 0.01 }, wds[] = { 5e-4, 5e-5 };
    memset(o, 0, sizeof *o);
    o->epochs = EVAL_FT_DEFAULT_EPOCHS;
    o->min_steps = EVAL_FT_MIN_STEPS;
    o->batch = EVAL_FT_BATCH;
    o->eval_batch = FT_EVAL_BATCH;
    o->n_lrs = (int)(sizeof lrs / sizeof lrs[0]);
    memcpy(o->lrs, lrs, sizeof lrs);
    o->n_wds = (int)(sizeof wds / sizeof wds[0]);
    memcpy(o->wds, wds, sizeof wds);
    o->val_fraction = FT_VAL_FRACTION;
    o->seed = FT_SEED;
}

/* ------------------------------------------------------------ the options */

/* A comma-separated list of numbers (fractions in (0, 1], or counts >= 1)
 * into values (as doubles), or "none"; both unchanged on error. */
static int parse_list(const char *name, const char *arg, int counts, double *values, int *n_out, char *err,
                      size_t errlen)
{
    double v_all[EVAL_MAX_FINETUNE];
    int n = 0;
    if (!strcmp(arg, "none")) {
        *n_out = 0;
        return 0;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        errno = 0;
        double v = strtod(tok, &end);
        int ok = !errno && end != tok && !*end &&
                 (counts ? v >= 1 && v <= 1e9 && v == floor(v) : v > 0 && v <= 1);
        if (!ok) {
            errmsg_set(err, errlen, "--%s wants a comma-separated list of %s, or none; got '%s'", name,
                    counts ? "whole numbers of labels per class (e.g. 10,100)"
                           : "shares of the training labels in (0, 1] (e.g. 0.01,0.1)", arg);
            return -1;
        }
        if (n == EVAL_MAX_FINETUNE) {
            errmsg_set(err, errlen, "--%s takes at most %d values", name, EVAL_MAX_FINETUNE);
            return -1;
        }
        v_all[n++] = v;
    }
    if (n == 0) {
        errmsg_set(err, errlen, "--%s needs at least one value, or none", name);
        return -1;
    }
    memcpy(values, v_all, (size_t)n * sizeof *values);
    *n_out = n;
    return 0;
}

int eval_ft_parse_option(eval_finetune_options *f, const char *name, const char *arg, char *err, size_t errlen)
{
    if (!strcmp(name, "finetune"))
        return parse_list(name, arg, 0, f->fractions, &f->n_fractions, err, errlen);
    if (!strcmp(name, "finetune-per-class")) {
        double v[EVAL_MAX_FINETUNE];
        int n;
        if (parse_list(name, arg, 1, v, &n, err, errlen))
            return -1;
        f->n_per_class = n;
        for (int i = 0; i < f->n_per_class; i++)
            f->per_class[i] = (size_t)v[i];
        return 0;
    }
    if (!strcmp(name, "finetune-on")) {
        if (strcmp(arg, "final") && strcmp(arg, "all")) {
            errmsg_set(err, errlen, "--finetune-on wants final or all, got '%s'", arg);
            return -1;
        }
        f->on_all = !strcmp(arg, "all");
        return 0;
    }
    if (!strcmp(name, "finetune-epochs"))
        return cli_int("--finetune-epochs", arg, 1, EVAL_FT_MAX_EPOCHS, &f->epochs, err, errlen);
    errmsg_set(err, errlen, "unknown fine-tuning option --%s", name);
    return -1;
}

int eval_ft_wanted(const eval_finetune_options *f)
{
    return f->n_fractions > 0 || f->n_per_class > 0;
}

/* ------------------------------------------------------------ the subsets */

int eval_ft_subset_pick(const int32_t *labels, size_t n, int k, size_t per_class, double fraction,
                        uint64_t seed, size_t **idx, size_t *n_idx, char *err, size_t errlen)
{
    if (!per_class)
        return split_subset_fraction(labels, n, k, fraction, seed, idx, n_idx, err, errlen);
    /* per class: a seeded shuffle of each class alone, its first per_class items */
    size_t *counts = calloc((size_t)k, sizeof *counts), *out = malloc(((size_t)k * per_class + 1) * sizeof *out);
    size_t *members = malloc((n ? n : 1) * sizeof *members);
    size_t total = 0;
    if (!counts || !out || !members) {
        free(counts); free(out); free(members);
        errmsg_set(err, errlen, "out of memory for a subset of %zu items per class", per_class);
        return -1;
    }
    for (int c = 0; c < k; c++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (labels[i] == c)
                members[m++] = i;
        uint64_t s = seed ^ SEED_MIX_SUBSET ^ ((uint64_t)c << 32);
        size_t take = m < per_class ? m : per_class;
        for (size_t i = 0; i < take; i++) {          /* partial Fisher-Yates */
            size_t j = i + (size_t)(splitmix64_next(&s) % (m - i));
            size_t t = members[i]; members[i] = members[j]; members[j] = t;
            out[total++] = members[i];
        }
    }
    free(counts);
    free(members);
    if (total == 0) {
        free(out);
        errmsg_set(err, errlen, "no labeled training images for a subset of %zu per class", per_class);
        return -1;
    }
    /* sorted, as dataset/split returns its choices */
    for (size_t i = 1; i < total; i++)
        for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            size_t t = out[j]; out[j] = out[j - 1]; out[j - 1] = t;
        }
    *idx = out;
    *n_idx = total;
    return 0;
}

void eval_ft_subset_name(size_t per_class, double fraction, char *buf, size_t len)
{
    if (per_class)
        snprintf(buf, len, "%zu/class", per_class);
    else
        snprintf(buf, len, "%g%%", 100 * fraction);
}

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

void eval_ft_subset_hash(const int32_t *labels, const size_t *idx, size_t n, char hex[EVAL_FT_HASH_HEX])
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[12];
        uint64_t v = idx[i];
        uint32_t l = (uint32_t)labels[idx[i]];
        for (int j = 0; j < 8; j++)
            b[j] = (unsigned char)(v >> (8 * j));     /* little-endian, whatever the machine */
        for (int j = 0; j < 4; j++)
            b[8 + j] = (unsigned char)(l >> (8 * j));
        h = fnv_bytes(h, b, sizeof b);
    }
    snprintf(hex, EVAL_FT_HASH_HEX, "%016llx", (unsigned long long)h);
}

/* ------------------------------------------------------------ the network */

char *eval_ft_classifier_desc(const char *desc, int k, char *err, size_t errlen)
{
    /* the encoder: every line before the one that opens the head */
    size_t keep = strlen(desc);
    for (const char *line = desc; *line;) {
        const char *eol = strchr(line, '\n'), *p = line;
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        while (p < line + len && (*p == ' ' || *p == '\t'))
            p++;
        size_t word = strlen(FT_HEAD_LINE);
        if ((size_t)(line + len - p) >= word && !strncmp(p, FT_HEAD_LINE, word) &&
            (p + word == line + len || p[word] == ' ' || p[word] == '\t' || p[word] == '#' || p[word] == '\r')) {
            keep = (size_t)(line - desc);
            break;
        }
        line = eol ? eol + 1 : line + len;
    }
    char tail[64];
    int t = snprintf(tail, sizeof tail, "%s" FT_HEAD_LINE "\nlinear out=%d bias=1\n",
                     keep && desc[keep - 1] != '\n' ? "\n" : "", k);
    char *out = malloc(keep + (size_t)t + 1);
    if (!out) {
        errmsg_set(err, errlen, "out of memory for a network description");
        return NULL;
    }
    memcpy(out, desc, keep);
    memcpy(out + keep, tail, (size_t)t + 1);
    return out;
}

/* Copies init's encoder tensors (parameters and BN statistics) into net. */
static int copy_encoder(nn_net *net, nn_net *init, char *err, size_t errlen)
{
    nn_arena *d = nn_net_params(net), *s = nn_net_params(init);
    int copied = 0;
    for (int i = 0; i < d->n; i++) {
        nn_tensor *t = &d->t[i];
        if (strncmp(t->name, FT_ENCODER_PREFIX, strlen(FT_ENCODER_PREFIX)))
            continue;
        nn_tensor *from = nn_arena_find(s, t->name);
        if (!from || from->numel != t->numel) {
            errmsg_set(err, errlen, "the checkpoint's network has no tensor %s of %zu values", t->name, t->numel);
            return -1;
        }
        memcpy(t->data, from->data, t->numel * sizeof *t->data);
        copied++;
    }
    if (!copied) {
        errmsg_set(err, errlen, "the network has no encoder tensors to start from");
        return -1;
    }
    return 0;
}

/* One training of the network: what it needs beside the network. */
typedef struct {
    nn_net *net;
    nn_optim *opt;
    aug_t *aug;
    float *x;               /* (batch, C, H, W) */
    int32_t *y;             /* (batch) */
    float *probs;           /* (batch, k) softmax cache */
    float *dout;            /* (batch, k) */
    size_t *order;          /* (n) the items' positions, reshuffled at each pass */
} ft_run;

static void ft_run_release(ft_run *r)
{
    nn_net_destroy(&r->net);
    nn_optim_destroy(&r->opt);
    aug_destroy(&r->aug);
    free(r->x); free(r->y); free(r->probs); free(r->dout); free(r->order);
    memset(r, 0, sizeof *r);
}

static void shuffle(size_t *a, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64_next(s) % i);
        size_t t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}

/* The batch of one step, the number of steps and the warm-up for n items. */
static void budget(const eval_ft_opts *o, size_t n, int *batch, long *steps)
{
    *batch = (size_t)o->batch < n ? o->batch : (int)n;
    long by_epochs = (long)ceil((double)o->epochs * (double)n / (double)*batch);
    *steps = by_epochs > o->min_steps ? by_epochs : o->min_steps;
}

/* Trains a new network of desc (from init's encoder, or random) on the
 * items idx[0..n) of train with (lr, wd). On success r->net is the trained
 * network (caller ft_run_release). */
static int train_once(ft_run *r, const char *desc, nn_net *init, const eval_images *train, const size_t *idx,
                      size_t n, int k, double lr, double wd, const eval_ft_opts *o, long *steps_out,
                      char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int batch;
    long steps;
    budget(o, n, &batch, &steps);
    char nerr[1024];
    int max_batch = batch > o->eval_batch ? batch : o->eval_batch;
    if (!(r->net = nn_net_new(desc, max_batch, nerr, sizeof nerr))) {
        errmsg_set(err, errlen, "fine-tuning network: %s", nerr);
        goto fail;
    }
    nn_net_init_params(r->net, o->seed ^ SEED_MIX_INIT);
    if (init && copy_encoder(r->net, init, err, errlen))
        goto fail;
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    oc.momentum = FT_MOMENTUM;
    oc.weight_decay = (float)wd;
    oc.decay_all = 0;
    if (!(r->opt = nn_optim_new(&oc, nn_net_params(r->net), nerr, sizeof nerr))) {
        errmsg_set(err, errlen, "fine-tuning optimizer: %s", nerr);
        goto fail;
    }
    aug_recipe_t recipe;
    char aerr[AUG_ERR_MAX];
    if (aug_recipe_parse(&recipe, EVAL_FT_RECIPE, (uint32_t)train->h, aerr, sizeof aerr)) {
        errmsg_set(err, errlen, "fine-tuning views: %s", aerr);
        goto fail;
    }
    recipe.views = 1;
    aug_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = (uint32_t)train->h;
    cfg.channels = (uint32_t)train->c;
    cfg.dtype = AUG_DTYPE_F32;
    cfg.seed = o->seed ^ SEED_MIX_VIEWS;
    if (!(r->aug = aug_new(&recipe, &cfg, aerr, sizeof aerr))) {
        errmsg_set(err, errlen, "fine-tuning views: %s", aerr);
        goto fail;
    }
    size_t img = (size_t)train->c * train->h * train->w;
    r->x = malloc((size_t)batch * img * sizeof *r->x);
    r->y = malloc((size_t)batch * sizeof *r->y);
    r->probs = malloc((size_t)batch * k * sizeof *r->probs);
    r->dout = malloc((size_t)batch * k * sizeof *r->dout);
    r->order = malloc(n * sizeof *r->order);
    if (!r->x || !r->y || !r->probs || !r->dout || !r->order) {
        errmsg_set(err, errlen, "out of memory for fine-tuning batches of %d images", batch);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        r->order[i] = i;
    uint64_t rng = o->seed ^ SEED_MIX_ORDER;
    shuffle(r->order, n, &rng);
    size_t pos = 0;
    long warmup = steps / FT_WARMUP_SHARE;
    for (long step = 0; step < steps; step++) {
        if (o->stop && atomic_load(o->stop)) {
            errmsg_set(err, errlen, "stopped");
            goto fail;
        }
        for (int b = 0; b < batch; b++) {
            if (pos == n) {
                shuffle(r->order, n, &rng);
                pos = 0;
            }
            size_t item = idx[r->order[pos++]];
            aug_image_t src = { train->pixels + item * img, (uint32_t)train->h, (uint32_t)train->w,
                                (uint32_t)train->c, item, (uint32_t)step };
            if (aug_view(r->aug, &src, 0, r->x + (size_t)b * img, NULL, aerr, sizeof aerr)) {
                errmsg_set(err, errlen, "fine-tuning view of training image %zu: %s", item, aerr);
                goto fail;
            }
            r->y[b] = train->labels[item];
        }
        const float *out = nn_net_forward(r->net, r->x, batch, 1);
        float loss = nn_xent_forward(r->probs, out, r->y, batch, k);
        if (!isfinite(loss)) {
            errmsg_set(err, errlen, "training diverged at step %ld of %ld (learning rate %g)", step + 1, steps, lr);
            goto fail;
        }
        memset(r->dout, 0, (size_t)batch * k * sizeof *r->dout);
        nn_xent_backward(r->dout, r->probs, r->y, batch, k, 1.0f);
        nn_net_zero_grad(r->net);
        nn_net_backward(r->net, r->dout);
        nn_optim_step(r->opt, nn_net_params(r->net), nn_net_grads(r->net),
                      nn_lr_schedule((float)lr, step, warmup, steps));
    }
    *steps_out = steps;
    return 0;
fail:
    ft_run_release(r);
    return -1;
}

/* Top-1 and (loss not NULL) mean cross-entropy of net on the images
 * idx[0..n) of im (all of im when idx is NULL). */
static int score(nn_net *net, const eval_images *im, const size_t *idx, size_t n, int k, double *top1,
                 double *loss, char *err, size_t errlen)
{
    double xent = 0;
    int batch = nn_net_max_batch(net);
    size_t img = (size_t)im->c * im->h * im->w, hits = 0;
    float *x = malloc((size_t)batch * img * sizeof *x);
    if (!x) {
        errmsg_set(err, errlen, "out of memory for %d test images", batch);
        return -1;
    }
    for (size_t first = 0; first < n; first += (size_t)batch) {
        int m = (int)(n - first < (size_t)batch ? n - first : (size_t)batch);
        for (int i = 0; i < m; i++)
            eval_images_to_float(im, idx ? idx[first + i] : first + i, 1, x + (size_t)i * img);
        const float *out = nn_net_forward(net, x, m, 0);
        for (int i = 0; i < m; i++) {
            const float *row = out + (size_t)i * k;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (row[j] > row[best])
                    best = j;
            int32_t label = im->labels[idx ? idx[first + i] : first + i];
            if (label < 0 || label >= k)
                continue;                            /* unlabeled: a miss */
            hits += best == label;
            double sum = 0;                          /* -log softmax(row)[label], stable */
            for (int j = 0; j < k; j++)
                sum += exp((double)row[j] - row[best]);
            xent += log(sum) - ((double)row[label] - row[best]);
        }
    }
    free(x);
    *top1 = n ? (double)hits / (double)n : NAN;
    if (loss)
        *loss = n ? xent / (double)n : NAN;
    return 0;
}

/* Whether every class present in the items has at least `min` of them. */
static int enough_per_class(const int32_t *labels, const size_t *idx, size_t n, int k, size_t min)
{
    size_t *counts = calloc((size_t)k, sizeof *counts);
    if (!counts)
        return 0;
    split_class_counts(labels, idx, n, k, counts);
    int ok = 1;
    for (int c = 0; c < k; c++)
        if (counts[c] && counts[c] < min)
            ok = 0;
    free(counts);
    return ok;
}

/* The grid on a validation split of the subset: sets r->lr, r->weight_decay
 * and r->val_top1 (the fallback without enough labels). */
static int choose(const char *desc, nn_net *init, const eval_images *train, const size_t *idx, size_t n, int k,
                  const eval_ft_opts *o, eval_ft_result *r, char *err, size_t errlen)
{
    r->lr = o->lrs[0];
    r->weight_decay = o->wds[0];
    r->val_top1 = NAN;
    r->chosen_by_validation = 0;
    if ((o->n_lrs < 2 && o->n_wds < 2) ||
        !enough_per_class(train->labels, idx, n, k, EVAL_FT_MIN_VAL_PER_CLASS))
        return 0;
    /* split_two chooses positions in the subset: over the subset's labels */
    int32_t *sub = malloc(n * sizeof *sub);
    size_t *rest = NULL, *held = NULL, n_rest = 0, n_held = 0;
    size_t *tr = malloc(n * sizeof *tr), *va = malloc(n * sizeof *va);
    int rc = -1;
    if (!sub || !tr || !va) {
        errmsg_set(err, errlen, "out of memory for a validation split");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        sub[i] = train->labels[idx[i]];
    if (split_two(sub, n, k, o->val_fraction, o->seed ^ SEED_MIX_VAL, &rest, &n_rest, &held, &n_held, err, errlen))
        goto done;
    for (size_t i = 0; i < n_rest; i++)
        tr[i] = idx[rest[i]];
    for (size_t i = 0; i < n_held; i++)
        va[i] = idx[held[i]];
    double best = -1, best_loss = INFINITY;
    for (int a = 0; a < o->n_lrs; a++)
        for (int b = 0; b < o->n_wds; b++) {
            ft_run run;
            long steps;
            double v = 0, vloss = INFINITY;
            char terr[1024];
            if (train_once(&run, desc, init, train, tr, n_rest, k, o->lrs[a], o->wds[b], o, &steps, terr,
                           sizeof terr)) {
                if (o->stop && atomic_load(o->stop)) {
                    errmsg_set(err, errlen, "%s", terr);
                    goto done;
                }
                console_log("fine-tuning: lr %g, weight decay %g: %s; scored 0", o->lrs[a], o->wds[b], terr);
            } else {
                int s = score(run.net, train, va, n_held, k, &v, &vloss, err, errlen);
                ft_run_release(&run);
                if (s)
                    goto done;
                console_log("fine-tuning: %s, lr %g, weight decay %g: validation top-1 %.2f%%, loss %.4f "
                            "(%zu + %zu items, %ld steps)", init ? "from the checkpoint" : "from scratch",
                            o->lrs[a], o->wds[b], 100 * v, vloss, n_rest, n_held, steps);
            }
            /* few validation items tie often: then the lower loss */
            if (v > best || (v == best && vloss < best_loss)) {
                best = v;
                best_loss = vloss;
                r->lr = o->lrs[a];
                r->weight_decay = o->wds[b];
            }
        }
    r->val_top1 = best;
    r->chosen_by_validation = 1;
    rc = 0;
done:
    free(sub); free(rest); free(held); free(tr); free(va);
    return rc;
}

int eval_ft_train(const char *desc, nn_net *init, const eval_images *train, const size_t *idx, size_t n,
                  const eval_images *test, int k, const eval_ft_opts *o, eval_ft_result *r, char *err,
                  size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (train->h != train->w) {
        errmsg_set(err, errlen, "fine-tuning needs square images (the crop makes square views), these are %dx%d",
                   train->h, train->w);
        return -1;
    }
    if (n == 0) {
        errmsg_set(err, errlen, "fine-tuning: no training images");
        return -1;
    }
    if (choose(desc, init, train, idx, n, k, o, r, err, errlen))
        return -1;
    eval_ft_subset_hash(train->labels, idx, n, r->subset_hash);
    ft_run run;
    if (train_once(&run, desc, init, train, idx, n, k, r->lr, r->weight_decay, o, &r->steps, err, errlen))
        return -1;
    int batch;
    long steps;
    budget(o, n, &batch, &steps);
    r->epochs = (double)r->steps * batch / (double)n;
    int rc = score(run.net, test, NULL, test->n, k, &r->top1, NULL, err, errlen);
    ft_run_release(&run);
    return rc;
}

/* ------------------------------------------------------- one checkpoint */

/* The probe on the frozen encoder's readout of the subset. */
static int probe_subset(nn_net *net, const eval_data *data, const size_t *idx, size_t n, const float *fte, int d,
                        nn_net *readout, const eval_probe_opts *probe, atomic_int *stop, double *top1,
                        char *err, size_t errlen)
{
    const eval_images *tr = &data->train;
    int k = data->n_classes;
    size_t img = (size_t)tr->c * tr->h * tr->w;
    float *x = malloc(n * img * sizeof *x), *f = malloc(n * (size_t)d * sizeof *f);
    int32_t *y = malloc(n * sizeof *y);
    int rc = -1;
    if (!x || !f || !y) {
        errmsg_set(err, errlen, "out of memory for the probe's %zu images", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        eval_images_to_float(tr, idx[i], 1, x + i * img);
        y[i] = tr->labels[idx[i]];
    }
    eval_encode_floats(readout ? readout : net, x, n, f);
    eval_probe_opts po = *probe;
    po.stop = stop;
    eval_probe_few_labels(&po, n, k);
    eval_probe_result r;
    if (eval_probe(f, y, NULL, n, fte, data->test.labels, data->test.n, d, k, &po, &r, err, errlen))
        goto done;
    *top1 = r.top1;
    rc = 0;
done:
    free(x); free(f); free(y);
    return rc;
}

json_t *eval_finetune(nn_net *net, const eval_data *data, const eval_options *o, const eval_probe_opts *probe,
                      atomic_int *stop, char *err, size_t errlen)
{
    const eval_finetune_options *fo = &o->finetune;
    const eval_images *tr = &data->train, *te = &data->test;
    int k = data->n_classes, same = 0, d;
    char rerr[1024];
    eval_ft_opts fto;
    eval_ft_defaults(&fto);
    fto.epochs = fo->epochs > 0 ? fo->epochs : EVAL_FT_DEFAULT_EPOCHS;
    fto.eval_batch = o->batch;
    fto.seed = o->seed;
    fto.stop = stop;
    json_t *list = json_array();
    char *desc = eval_ft_classifier_desc(nn_net_desc(net), k, err, errlen);
    float *fte = NULL;
    nn_net *readout = eval_readout_net(net, &o->readout, nn_net_max_batch(net), &same, rerr, sizeof rerr);
    if (!desc)
        goto fail;
    if (!readout && !same) {
        errmsg_set(err, errlen, "probe readout: %s", rerr);
        goto fail;
    }
    /* one view: fine-tuned and scratch networks classify the image alone, so the probe beside them does too */
    if (eval_encode_images(readout ? readout : net, te, EVAL_VIEWS_ONE, "fine-tuning: test features for the probe",
                           stop, &fte, err, errlen))
        goto fail;
    d = nn_net_feat_dim(readout ? readout : net);
    int n_sub = fo->n_per_class + fo->n_fractions;
    for (int s = 0; s < n_sub; s++) {
        size_t per_class = s < fo->n_per_class ? fo->per_class[s] : 0;
        double fraction = s < fo->n_per_class ? 0 : fo->fractions[s - fo->n_per_class];
        char name[EVAL_FT_NAME_MAX], hash[EVAL_FT_HASH_HEX];
        eval_ft_subset_name(per_class, fraction, name, sizeof name);
        size_t *idx = NULL, n = 0;
        double t0 = console_now();
        if (eval_ft_subset_pick(tr->labels, tr->n, k, per_class, fraction, o->seed, &idx, &n, err, errlen))
            goto fail;
        eval_ft_subset_hash(tr->labels, idx, n, hash);
        console_log("fine-tuning %s: %zu labels (subset %s), from scratch", name, n, hash);
        eval_ft_result scratch, ft;
        double probe_top1 = NAN;
        int rc = eval_ft_train(desc, NULL, tr, idx, n, te, k, &fto, &scratch, err, errlen);
        if (!rc) {
            console_log("fine-tuning %s: from scratch %.2f%% (lr %g, weight decay %g%s); linear probe",
                        name, 100 * scratch.top1, scratch.lr, scratch.weight_decay,
                        scratch.chosen_by_validation ? ", chosen on validation" : ", fixed: too few labels");
            rc = probe_subset(net, data, idx, n, fte, d, readout, probe, stop, &probe_top1, err, errlen);
        }
        if (!rc) {
            console_log("fine-tuning %s: linear probe %.2f%%; fine-tuning the encoder", name, 100 * probe_top1);
            rc = eval_ft_train(desc, net, tr, idx, n, te, k, &fto, &ft, err, errlen);
        }
        free(idx);
        if (rc)
            goto fail;
        if (strcmp(scratch.subset_hash, hash) || strcmp(ft.subset_hash, hash)) {
            errmsg_set(err, errlen, "fine-tuning %s: trained on other items than the subset %s (scratch %s, "
                       "fine-tuning %s)", name, hash, scratch.subset_hash, ft.subset_hash);
            goto fail;
        }
        double secs = console_now() - t0;
        console_log("fine-tuning %s: fine-tuned %.2f%% (lr %g, weight decay %g, %ld steps, %.1f epochs, %.0f s)",
                    name, 100 * ft.top1, ft.lr, ft.weight_decay, ft.steps, ft.epochs, secs);
        json_t *e = json_pack("{s:s, s:I, s:I, s:s, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:f}",
                              "subset", name, "labels", (json_int_t)n, "seed", (json_int_t)o->seed,
                              "subset_hash", hash, "scratch_top1", scratch.top1, "probe_top1", probe_top1,
                              "finetune_top1", ft.top1, "epochs", ft.epochs, "steps", (json_int_t)ft.steps,
                              "lr", ft.lr, "weight_decay", ft.weight_decay, "seconds", secs,
                              "scratch_lr", scratch.lr, "scratch_weight_decay", scratch.weight_decay);
        if (!e) {
            errmsg_set(err, errlen, "out of memory for the fine-tuning record");
            goto fail;
        }
        json_array_append_new(list, e);
    }
    /* the table */
    char readout_name[EVAL_READOUT_NAME_MAX];
    eval_readout_name(&o->readout, readout_name, sizeof readout_name);
    console_log("fine-tuning, test top-1 (the probe reads the %s):", readout_name);
    console_log("  %-10s %8s %9s %9s %9s %6s %7s %8s %8s", "subset", "labels", "scratch", "probe", "finetune",
                "steps", "epochs", "lr", "seconds");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        console_log("  %-10s %8lld %8.2f%% %8.2f%% %8.2f%% %6lld %7.1f %8g %8.0f",
                    json_string_value(json_object_get(e, "subset")),
                    (long long)json_integer_value(json_object_get(e, "labels")),
                    100 * json_real_value(json_object_get(e, "scratch_top1")),
                    100 * json_real_value(json_object_get(e, "probe_top1")),
                    100 * json_real_value(json_object_get(e, "finetune_top1")),
                    (long long)json_integer_value(json_object_get(e, "steps")),
                    json_real_value(json_object_get(e, "epochs")), json_real_value(json_object_get(e, "lr")),
                    json_real_value(json_object_get(e, "seconds")));
    }
    free(desc);
    free(fte);
    nn_net_destroy(&readout);
    return list;
fail:
    free(desc);
    free(fte);
    nn_net_destroy(&readout);
    json_decref(list);
    return NULL;
}

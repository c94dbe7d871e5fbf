/* evaluator/evaluate: one checkpoint from file to JSON record (evaluate.h). */
#include "evaluator/evaluate.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console/console.h"
#include "errmsg/errmsg.h"
#include "evaluator/attention.h"
#include "evaluator/classmap.h"
#include "evaluator/data.h"
#include "evaluator/finetune.h"
#include "evaluator/knn.h"
#include "evaluator/metrics.h"
#include "evaluator/probe.h"
#include "evaluator/readout.h"
#include "evaluator/report.h"
#include "dataset/dataset.h"
#include "dataset/split.h"
#include "nn/ckpt.h"
#include "nn/net.h"
#include "nn/tensor.h"
#include "transport/transport.h"

#define RANDOM_INIT_SEED     1234   /* the random-encoder baseline's initialisation */
#define VIEW_SEED_MIX        0xa11ull
#define CLASSMAP_SEED_MIX    0xc1a55ull  /* the class map's subset and t-SNE starts */
#define COMPARE_IMAGES       8      /* rows of the comparison when --attention is 0 */
#define BG_POLL_NS           50000000L  /* waiting for the background thread, check transport_stop this often */

struct eval_ctx {
    const eval_options *o;
    eval_probe_opts probe;           /* its stop flag is set per computation */
    int have_data, c, h, w;          /* the images are decoded at (c, h, w) */
    eval_data data;
    float *v1, *v2;                  /* (n_views, C, H, W) augmented pairs of the first test images */
    size_t n_views;
    json_t *raw;                     /* raw-pixel baseline of the data, or NULL */
    json_t *random;                  /* random-encoder baseline ... */
    char *random_desc;               /* ... of this architecture */
    /* the server's background thread (eval_ctx_start_baselines): it decodes the images
     * (have_data, c, h, w, data, v1, v2 and n_views are its own until bg_data_ready),
     * then computes the raw-pixel baseline, only reading them and probe */
    pthread_t bg;
    int bg_running;                  /* started, not joined yet */
    atomic_int bg_data_ready;        /* set by the thread once the images are decoded */
    atomic_int bg_done;              /* set by the thread as it ends */
    atomic_int bg_stop;              /* asks it to give up */
    json_t *bg_result;               /* its baseline, or NULL */
    eval_final_fn is_final;          /* is a checkpoint the run's last one? NULL: always */
    void *is_final_arg;
};

static void background_join(eval_ctx *ctx, int cancel);

static void drop_data(eval_ctx *ctx)
{
    background_join(ctx, 1);
    eval_data_release(&ctx->data);
    free(ctx->v1);
    free(ctx->v2);
    ctx->v1 = ctx->v2 = NULL;
    ctx->n_views = 0;
    json_decref(ctx->raw);
    ctx->raw = NULL;
    json_decref(ctx->random);
    ctx->random = NULL;
    free(ctx->random_desc);
    ctx->random_desc = NULL;
    ctx->have_data = 0;
}

eval_ctx *eval_ctx_new(const eval_options *o)
{
    eval_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->o = o;
    eval_probe_defaults(&ctx->probe);
    ctx->probe.max_iter = o->probe_iters;
    ctx->probe.seed = o->seed;
    return ctx;
}

void eval_ctx_set_final_check(eval_ctx *ctx, eval_final_fn fn, void *arg)
{
    ctx->is_final = fn;
    ctx->is_final_arg = arg;
}

void eval_ctx_destroy(eval_ctx **self_p)
{
    eval_ctx *ctx = *self_p;
    if (!ctx)
        return;
    drop_data(ctx);
    free(ctx);
    *self_p = NULL;
}

/* Decodes the images at (c, h, w) into a context that holds none, and
 * makes the view pairs. */
static int load_data(eval_ctx *ctx, int c, int h, int w, atomic_int *stop, char *err, size_t errlen)
{
    if (eval_data_load(&ctx->data, ctx->o, c, h, w, stop, err, errlen))
        return -1;
    ctx->have_data = 1;
    ctx->c = c; ctx->h = h; ctx->w = w;
    size_t nv = ctx->o->align_items < ctx->data.test.n ? ctx->o->align_items : ctx->data.test.n;
    if (nv >= 2) {
        char verr[512];
        if (eval_view_pairs(&ctx->data.test, nv, ctx->o->align_recipe, ctx->o->seed ^ VIEW_SEED_MIX,
                            &ctx->v1, &ctx->v2, verr, sizeof verr))
            console_log("no alignment/uniformity: %s", verr);
        else
            ctx->n_views = nv;
    }
    return 0;
}

/* Waits until *flag or the background thread has ended; a raised
 * transport_stop asks the thread to give up meanwhile. */
static void background_wait(eval_ctx *ctx, atomic_int *flag)
{
    while (!atomic_load_explicit(flag, memory_order_acquire) &&
           !atomic_load_explicit(&ctx->bg_done, memory_order_acquire)) {
        if (transport_stop)
            ctx->bg_stop = 1;
        struct timespec ts = { 0, BG_POLL_NS };
        nanosleep(&ts, NULL);
    }
}

/* Decodes the images at the network's input shape (once per shape; the
 * background thread may already be at it). */
static int ensure_data(eval_ctx *ctx, int c, int h, int w, char *err, size_t errlen)
{
    if (ctx->bg_running)
        background_wait(ctx, &ctx->bg_data_ready);
    if (ctx->have_data && ctx->c == c && ctx->h == h && ctx->w == w)
        return 0;
    drop_data(ctx);
    return load_data(ctx, c, h, w, &transport_stop, err, errlen);
}

/* ------------------------------------------------------ one representation */

/* Probe, few-label probes, kNN, alignment and uniformity of features
 * ftr (n_train, d), fte (n_test, d), and of the view pairs' features f1, f2
 * (n_views, d; NULL for none). Returns a new JSON object or NULL with err
 * (also when *stop is raised during a probe fit). */
static json_t *evaluate_features(eval_ctx *ctx, const char *what, const float *ftr, const float *fte, int d,
                                 const float *f1, const float *f2, atomic_int *stop,
                                 char *err, size_t errlen)
{
    const eval_images *tr = &ctx->data.train, *te = &ctx->data.test;
    int k = ctx->data.n_classes;
    json_t *obj = json_object(), *fracs = json_array();
    json_object_set_new(obj, "feat_dim", json_integer(d));
    double t0 = console_now();
    for (int i = 0; i < ctx->o->n_fractions; i++) {
        double f = ctx->o->fractions[i];
        size_t *idx = NULL, n_idx = 0;
        if (split_subset_fraction(tr->labels, tr->n, k, f, ctx->o->seed, &idx, &n_idx, err, errlen))
            goto fail;
        eval_probe_opts po = ctx->probe;
        po.stop = stop;
        const char *selection = eval_probe_few_labels(&po, n_idx, k) ? "fixed" : "validation";
        eval_probe_result r;
        double ts = console_now();
        int rc = eval_probe(ftr, tr->labels, idx, n_idx, fte, te->labels, te->n, d, k, &po, &r, err, errlen);
        free(idx);
        if (rc)
            goto fail;
        console_log("%s: probe with %g of the labels (%zu): top-1 %.2f%%, top-5 %.2f%% "
                    "(lambda %g, %s, %d iterations, %.1f s)", what, f, n_idx, 100 * r.top1, 100 * r.top5,
                    r.lambda, po.n_lambdas > 1 ? "chosen on validation" : "fixed: too few labels to choose",
                    r.iters, console_now() - ts);
        json_t *p = json_pack("{s:f, s:I, s:f, s:f, s:f, s:s, s:i, s:b}", "fraction", f, "n_labels",
                              (json_int_t)n_idx, "top1", r.top1, "top5", r.top5, "lambda", r.lambda,
                              "lambda_by", selection, "iters", r.iters, "converged", r.converged);
        if (isfinite(r.val_top1))
            json_object_set_new(p, "val_top1", json_real(r.val_top1));
        json_array_append_new(fracs, p);
    }
    /* the probe with the most labels is "the" probe */
    json_t *best = NULL;
    for (size_t i = 0; i < json_array_size(fracs); i++) {
        json_t *p = json_array_get(fracs, i);
        if (!best || json_real_value(json_object_get(p, "fraction")) >
                         json_real_value(json_object_get(best, "fraction")))
            best = p;
    }
    json_object_set(obj, "probe", best);
    json_object_set_new(obj, "label_fractions", fracs);
    fracs = NULL;

    /* kNN on cosine similarity */
    double tk = console_now();
    float *ntr = malloc(tr->n * (size_t)d * sizeof *ntr), *nte = malloc(te->n * (size_t)d * sizeof *nte);
    if (!ntr || !nte) {
        free(ntr); free(nte);
        errmsg_set(err, errlen, "%s: out of memory for normalised features", what);
        goto fail;
    }
    eval_normalize_rows(ntr, ftr, tr->n, d);
    eval_normalize_rows(nte, fte, te->n, d);
    eval_knn_result kr;
    int rc = eval_knn(ntr, tr->labels, tr->n, nte, te->labels, te->n, d, k, ctx->o->knn_k, ctx->o->knn_t,
                      stop, &kr, err, errlen);
    free(ntr); free(nte);
    if (rc)
        goto fail;
    console_log("%s: kNN (k %d, T %g): top-1 %.2f%% (%.1f s)", what, kr.k, ctx->o->knn_t, 100 * kr.top1,
                console_now() - tk);
    json_object_set_new(obj, "knn", json_pack("{s:f, s:f, s:i, s:f}", "top1", kr.top1, "top5", kr.top5,
                                              "k", kr.k, "t", ctx->o->knn_t));

    if (f1 && f2 && ctx->n_views >= 2) {
        size_t nv = ctx->n_views;
        float *a = malloc(nv * (size_t)d * sizeof *a), *b = malloc(nv * (size_t)d * sizeof *b);
        if (!a || !b) {
            free(a); free(b);
            errmsg_set(err, errlen, "%s: out of memory for the view features", what);
            goto fail;
        }
        eval_normalize_rows(a, f1, nv, d);
        eval_normalize_rows(b, f2, nv, d);
        double align = eval_alignment(a, b, nv, d, EVAL_ALIGN_ALPHA);
        double uniform = 0.5 * (eval_uniformity(a, nv, d, EVAL_UNIFORM_T) + eval_uniformity(b, nv, d, EVAL_UNIFORM_T));
        free(a); free(b);
        console_log("%s: alignment %.4f, uniformity %.4f (%zu view pairs)", what, align, uniform, nv);
        json_object_set_new(obj, "align", isfinite(align) ? json_real(align) : json_null());
        json_object_set_new(obj, "uniform", isfinite(uniform) ? json_real(uniform) : json_null());
    }
    json_object_set_new(obj, "seconds", json_real(console_now() - t0));
    return obj;
fail:
    json_decref(fracs);
    json_decref(obj);
    return NULL;
}

/* Features of the train and test images and of the view pairs through net,
 * then evaluate_features. */
static json_t *evaluate_encoder(eval_ctx *ctx, nn_net *net, const char *what, atomic_int *stop,
                                char *err, size_t errlen)
{
    float *ftr = NULL, *fte = NULL, *f1 = NULL, *f2 = NULL;
    json_t *obj = NULL;
    int same;
    char rerr[1024], label[128], readout[EVAL_READOUT_NAME_MAX];
    nn_net *cut = eval_readout_net(net, &ctx->o->readout, nn_net_max_batch(net), &same, rerr, sizeof rerr);
    if (!cut && !same) {
        errmsg_set(err, errlen, "%s: %s", what, rerr);
        return NULL;
    }
    if (cut)
        net = cut;                 /* the readout network: the encoder up to the maps it reads */
    int d = nn_net_feat_dim(net);
    eval_readout_name(&ctx->o->readout, readout, sizeof readout);
    snprintf(label, sizeof label, "%s: train features", what);
    if (eval_encode_images(net, &ctx->data.train, ctx->o->views, label, stop, &ftr, err, errlen))
        goto done;
    snprintf(label, sizeof label, "%s: test features", what);
    if (eval_encode_images(net, &ctx->data.test, ctx->o->views, label, stop, &fte, err, errlen))
        goto done;
    if (ctx->n_views >= 2) {
        f1 = malloc(ctx->n_views * (size_t)d * sizeof *f1);
        f2 = malloc(ctx->n_views * (size_t)d * sizeof *f2);
        if (!f1 || !f2) {
            errmsg_set(err, errlen, "out of memory for the view features");
            goto done;
        }
        eval_encode_floats(net, ctx->v1, ctx->n_views, f1);
        eval_encode_floats(net, ctx->v2, ctx->n_views, f2);
    }
    obj = evaluate_features(ctx, what, ftr, fte, d, f1, f2, stop, err, errlen);
    if (obj) {
        json_object_set_new(obj, "readout", json_string(readout));
        json_object_set_new(obj, "views", json_string(eval_views_name(ctx->o->views)));
    }
done:
    free(ftr); free(fte); free(f1); free(f2);
    nn_net_destroy(&cut);
    return obj;
}

/* ---------------------------------------------------------- the baselines */

/* The cache key of a baseline of the current data (net: the random
 * encoder, initialised). 0, or -1 when there is no cache (or no key). */
static int cache_key(eval_ctx *ctx, const char *kind, nn_net *net, eval_cache_key *key)
{
    memset(key, 0, sizeof *key);
    if (!ctx->o->baseline_cache[0])
        return -1;
    eval_cache_inputs in;
    memset(&in, 0, sizeof in);
    in.kind = kind;
    eval_data_paths(ctx->o, &in.train_path, &in.test_path);
    in.n_train = ctx->data.train.n;
    in.n_test = ctx->data.test.n;
    in.c = ctx->c; in.h = ctx->h; in.w = ctx->w;
    in.o = ctx->o;
    in.probe = &ctx->probe;
    if (net) {
        const nn_arena *params = nn_net_params(net);
        in.desc = nn_net_desc(net);
        in.init_seed = RANDOM_INIT_SEED;
        in.params_hash = eval_cache_hash(params->base, params->size * sizeof *params->base);
    }
    char err[256];
    if (eval_cache_key_make(key, &in, err, sizeof err)) {
        console_log("%s", err);
        return -1;
    }
    return 0;
}

/* The baseline under key from the cache (marked "cached": true), or NULL;
 * an entry that cannot be used gets a log line. */
static json_t *cache_get(eval_ctx *ctx, const char *what, const eval_cache_key *key)
{
    char why[EVAL_MAX_PATH + 512];
    json_t *obj = eval_cache_load(ctx->o->baseline_cache, key, why, sizeof why);
    if (obj) {
        json_object_set_new(obj, "cached", json_true());
        console_log("%s: baseline from the cache (%s/%s)", what, ctx->o->baseline_cache, key->name);
    } else if (why[0])
        console_log("%s: ignoring the cached baseline %s; computing it again", what, why);
    return obj;
}

static void cache_put(eval_ctx *ctx, const char *what, const eval_cache_key *key, const json_t *obj)
{
    char err[EVAL_MAX_PATH + 512];
    if (eval_cache_store(ctx->o->baseline_cache, key, obj, err, sizeof err))
        console_log("%s: baseline not cached: %s", what, err);
    else
        console_log("%s: baseline cached in %s/%s", what, ctx->o->baseline_cache, key->name);
}

/* Raw pixels as features: from the cache, else computed (and cached). */
static json_t *raw_pixels_get(eval_ctx *ctx, atomic_int *stop, char *err, size_t errlen)
{
    eval_cache_key key;
    int keyed = cache_key(ctx, "raw_pixels", NULL, &key) == 0;
    json_t *obj = keyed ? cache_get(ctx, "raw pixels", &key) : NULL;
    if (!obj) {
        float *ftr = NULL, *fte = NULL;
        int d = 0;
        /* the pixels as they are, whatever --feature-views: the fixed reference an encoder must beat */
        if (!eval_raw_pixels(&ctx->data.train, &ftr, &d, err, errlen) &&
            !eval_raw_pixels(&ctx->data.test, &fte, &d, err, errlen))
            obj = evaluate_features(ctx, "raw pixels", ftr, fte, d, ctx->n_views >= 2 ? ctx->v1 : NULL,
                                    ctx->n_views >= 2 ? ctx->v2 : NULL, stop, err, errlen);
        free(ftr);
        free(fte);
        if (obj && keyed)
            cache_put(ctx, "raw pixels", &key, obj);
    }
    eval_cache_key_clear(&key);
    return obj;
}

static void *background_raw(void *arg)
{
    eval_ctx *ctx = arg;
    double t0 = console_now();
    char err[1024];
    int c, h, w;
    if (eval_data_native_shape(ctx->o, &c, &h, &w, err, sizeof err) ||
        load_data(ctx, c, h, w, &ctx->bg_stop, err, sizeof err)) {
        if (!ctx->bg_stop)
            console_log("raw-pixel baseline not started ahead: %s", err);
    } else {
        ctx->have_data = 1;
        ctx->c = c; ctx->h = h; ctx->w = w;
        atomic_store_explicit(&ctx->bg_data_ready, 1, memory_order_release);
        ctx->bg_result = raw_pixels_get(ctx, &ctx->bg_stop, err, sizeof err);
        if (ctx->bg_result)
            console_log("raw-pixel baseline ready (background, %.0f s)", console_now() - t0);
        else if (!ctx->bg_stop)
            console_log("raw-pixel baseline failed in the background: %s", err);
    }
    dataset_thread_done();                     /* it decoded images */
    atomic_store_explicit(&ctx->bg_done, 1, memory_order_release);
    return NULL;
}

int eval_ctx_start_baselines(eval_ctx *ctx, char *err, size_t errlen)
{
    if (!ctx->o->baselines || ctx->bg_running || ctx->have_data)
        return 0;
    ctx->bg_stop = 0;
    ctx->bg_data_ready = 0;
    ctx->bg_done = 0;
    ctx->bg_result = NULL;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);    /* SIGINT/SIGTERM stay with the main thread's loop */
    int rc = pthread_create(&ctx->bg, NULL, background_raw, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        errmsg_set(err, errlen, "cannot start a thread for the raw-pixel baseline: %s", strerror(rc));
        return -1;
    }
    ctx->bg_running = 1;
    console_log("raw-pixel baseline: decoding the images and computing it in the background");
    return 0;
}

/* Waits for the background thread to end (cancel: asks it to give up
 * first) and keeps its baseline, if it made one, in ctx->raw. */
static void background_join(eval_ctx *ctx, int cancel)
{
    if (!ctx->bg_running)
        return;
    if (cancel)
        ctx->bg_stop = 1;
    background_wait(ctx, &ctx->bg_done);
    pthread_join(ctx->bg, NULL);
    ctx->bg_running = 0;
    if (ctx->bg_result) {
        json_decref(ctx->raw);
        ctx->raw = ctx->bg_result;
        ctx->bg_result = NULL;
    }
}

/* The raw-pixel baseline of the data (kept for later checkpoints). */
static json_t *baseline_raw(eval_ctx *ctx, char *err, size_t errlen)
{
    background_join(ctx, 0);
    if (!ctx->raw)
        ctx->raw = raw_pixels_get(ctx, &transport_stop, err, errlen);
    return ctx->raw ? json_incref(ctx->raw) : NULL;
}

/* A randomly initialised encoder of the same architecture: from the cache,
 * else computed (and cached); kept per description. */
static json_t *baseline_random(eval_ctx *ctx, const char *desc, char *err, size_t errlen)
{
    if (ctx->random && ctx->random_desc && !strcmp(ctx->random_desc, desc))
        return json_incref(ctx->random);
    char nerr[1024];
    nn_net *net = nn_net_new(desc, ctx->o->batch, nerr, sizeof nerr);
    if (!net) {
        errmsg_set(err, errlen, "random encoder: %s", nerr);
        return NULL;
    }
    nn_net_init_params(net, RANDOM_INIT_SEED);
    eval_cache_key key;
    int keyed = cache_key(ctx, "random_encoder", net, &key) == 0;
    json_t *obj = keyed ? cache_get(ctx, "random encoder", &key) : NULL;
    if (!obj) {
        obj = evaluate_encoder(ctx, net, "random encoder", &transport_stop, err, errlen);
        if (obj && keyed)
            cache_put(ctx, "random encoder", &key, obj);
    }
    nn_net_destroy(&net);
    eval_cache_key_clear(&key);
    if (obj) {
        json_decref(ctx->random);
        free(ctx->random_desc);
        ctx->random = json_incref(obj);
        ctx->random_desc = strdup(desc);
    }
    return obj;
}

/* ------------------------------------------------------------ the class map */

/* Features (n, *d) of the images x (n, C, H, W) through net's readout. */
static float *readout_features(eval_ctx *ctx, nn_net *net, const float *x, size_t n, int *d, char *err,
                               size_t errlen)
{
    int same;
    char rerr[1024];
    nn_net *cut = eval_readout_net(net, &ctx->o->readout, nn_net_max_batch(net), &same, rerr, sizeof rerr);
    if (!cut && !same) {
        errmsg_set(err, errlen, "%s", rerr);
        return NULL;
    }
    nn_net *use = cut ? cut : net;
    *d = nn_net_feat_dim(use);
    float *f = malloc(n * (size_t)*d * sizeof *f);
    if (f)
        eval_encode_floats(use, x, n, f);
    else
        errmsg_set(err, errlen, "out of memory for %zu x %d features", n, *d);
    nn_net_destroy(&cut);
    return f;
}

/* The class map (evaluator/classmap.h) of a seeded class-balanced subset of the
 * test images: net's features and, with baselines, the random encoder's and the
 * raw pixels; the PNG at png. A new object for the record, or NULL with err. */
static json_t *class_map(eval_ctx *ctx, nn_net *net, const nn_ckpt_meta *meta, const char *png, char *err,
                         size_t errlen)
{
    const eval_options *o = ctx->o;
    const eval_images *te = &ctx->data.test;
    size_t count = o->classmap < te->n ? o->classmap : te->n, *idx = NULL, n = 0;
    size_t img = (size_t)te->c * te->h * te->w;
    if (split_subset(te->labels, te->n, ctx->data.n_classes, count, o->seed ^ CLASSMAP_SEED_MIX, &idx, &n, err,
                     errlen))
        return NULL;
    float *x = malloc((n ? n : 1) * img * sizeof *x), *fe = NULL, *fr = NULL;
    int32_t *labels = malloc((n ? n : 1) * sizeof *labels);
    nn_net *rnd = NULL;
    json_t *obj = NULL;
    if (!x || !labels) {
        errmsg_set(err, errlen, "out of memory for %zu images", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        eval_images_to_float(te, idx[i], 1, x + i * img);
        labels[i] = te->labels[idx[i]];
    }
    eval_classmap_rep reps[3];
    int n_reps = 0, d;
    if (!(fe = readout_features(ctx, net, x, n, &d, err, errlen)))
        goto done;
    reps[n_reps++] = (eval_classmap_rep){ "encoder", "encoder", fe, d };
    if (o->baselines) {
        char nerr[1024];
        if (!(rnd = nn_net_new(nn_net_desc(net), o->batch, nerr, sizeof nerr))) {
            errmsg_set(err, errlen, "random encoder: %s", nerr);
            goto done;
        }
        nn_net_init_params(rnd, RANDOM_INIT_SEED);
        if (!(fr = readout_features(ctx, rnd, x, n, &d, err, errlen)))
            goto done;
        reps[n_reps++] = (eval_classmap_rep){ "random encoder", "random_encoder", fr, d };
        reps[n_reps++] = (eval_classmap_rep){ "raw pixels", "raw_pixels", x, (int)img };
    }
    char readout[EVAL_READOUT_NAME_MAX], title[512];
    eval_readout_name(&o->readout, readout, sizeof readout);
    snprintf(title, sizeof title, "%s, step %ld: %zu test images, %s readout", meta->method, meta->step, n,
             readout);
    obj = eval_classmap(reps, n_reps, labels, n, ctx->data.n_classes, o->seed ^ CLASSMAP_SEED_MIX,
                        &transport_stop, png, title, err, errlen);
done:
    free(idx); free(x); free(labels); free(fe); free(fr);
    nn_net_destroy(&rnd);
    return obj;
}

/* ------------------------------------------------------------ the record */

static int append_line(const char *path, const json_t *record, char *err, size_t errlen)
{
    char *text = json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    FILE *f = text ? fopen(path, "a") : NULL;
    int rc = 0;
    if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f)) {
        errmsg_set(err, errlen, "cannot append to %s: %s", path, strerror(errno));
        rc = -1;
        f = NULL;
    }
    free(text);
    return rc;
}

/* Copies the headline numbers of a representation to the top of the record. */
static void headline(json_t *record, const json_t *rep)
{
    const json_t *probe = json_object_get(rep, "probe"), *knn = json_object_get(rep, "knn");
    json_object_set(record, "probe_top1", json_object_get(probe, "top1"));
    json_object_set(record, "probe_top5", json_object_get(probe, "top5"));
    json_object_set(record, "knn_top1", json_object_get(knn, "top1"));
    if (json_object_get(rep, "align")) {
        json_object_set(record, "align", json_object_get(rep, "align"));
        json_object_set(record, "uniform", json_object_get(rep, "uniform"));
    }
}

int eval_checkpoint(eval_ctx *ctx, const char *path, json_t **record_out, char *err, size_t errlen)
{
    const eval_options *o = ctx->o;
    double t0 = console_now();
    nn_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    char nerr[1024];
    nn_net *net = nn_ckpt_open(path, o->batch, &meta, nerr, sizeof nerr);
    if (!net) {
        errmsg_set(err, errlen, "%s", nerr);       /* names the file and what is wrong */
        nn_ckpt_meta_clear(&meta);
        return -1;
    }
    int c, h, w, rc = -1;
    json_t *record = NULL, *rep = NULL, *raw = NULL, *rnd = NULL;
    nn_net_input_shape(net, &c, &h, &w);
    console_log("evaluating %s: %s step %ld epoch %ld, input %dx%dx%d, %d features", path, meta.method,
                meta.step, meta.epoch, c, h, w, nn_net_feat_dim(net));
    if (ensure_data(ctx, c, h, w, err, errlen))
        goto done;
    if (!(rep = evaluate_encoder(ctx, net, "checkpoint", &transport_stop, err, errlen)))
        goto done;
    if (o->baselines) {
        char berr[1024];
        if (!(raw = baseline_raw(ctx, berr, sizeof berr)))
            console_log("raw-pixel baseline failed: %s", berr);
        if (!transport_stop && !(rnd = baseline_random(ctx, nn_net_desc(net), berr, sizeof berr)))
            console_log("random-encoder baseline failed: %s", berr);
    }
    if (transport_stop) {
        errmsg_set(err, errlen, "stopped");
        goto done;
    }
    record = json_object();
    json_object_set_new(record, "step", json_integer(meta.step));
    json_object_set_new(record, "epoch", json_integer(meta.epoch));
    json_object_set_new(record, "method", json_string(meta.method));
    headline(record, rep);
    json_object_set_new(record, "label_fractions", json_deep_copy(json_object_get(rep, "label_fractions")));
    json_object_set_new(record, "checkpoint", json_string(path));
    json_object_set_new(record, "time", json_integer((json_int_t)time(NULL)));
    json_object_set_new(record, "n_train", json_integer((json_int_t)ctx->data.train.n));
    json_object_set_new(record, "n_test", json_integer((json_int_t)ctx->data.test.n));
    json_object_set_new(record, "train_data", json_string(ctx->data.train.source));
    json_object_set_new(record, "test_data", json_string(ctx->data.test.source));
    json_object_set_new(record, "encoder", rep);
    rep = NULL;
    if (raw || rnd) {
        json_t *b = json_object();
        if (raw) json_object_set(b, "raw_pixels", raw);
        if (rnd) json_object_set(b, "random_encoder", rnd);
        json_object_set_new(record, "baselines", b);
    }
    char dir[EVAL_MAX_PATH + 16], file[EVAL_MAX_PATH + 64];
    snprintf(dir, sizeof dir, "%s/%s", o->out, EVAL_REPORT_DIR);
    if (o->attention > 0 && (!o->report || eval_mkdir_p(dir, err, errlen) == 0)) {
        snprintf(file, sizeof file, "%s/attention-%08ld.png", o->report ? dir : o->out, meta.step);
        char aerr[1024];
        size_t idx[EVAL_MAX_ATTENTION];
        int n = eval_attention_pick(&ctx->data.test, o->attention, idx);
        if (eval_attention_png(net, &ctx->data.test, idx, n, file, aerr, sizeof aerr))
            console_log("no attention maps: %s", aerr);
        else
            json_object_set_new(record, "attention_png", json_string(file));
    }
    if (o->classmap > 0 && !transport_stop && (!o->report || eval_mkdir_p(dir, err, errlen) == 0)) {
        snprintf(file, sizeof file, "%s/classmap-%08ld.png", o->report ? dir : o->out, meta.step);
        char cerr[1024];
        json_t *cm = class_map(ctx, net, &meta, file, cerr, sizeof cerr);
        if (!cm)
            console_log("no class map: %s", cerr);
        else {
            json_object_set_new(record, "classmap_png", json_string(file));
            json_object_set_new(record, "classmap", cm);
        }
    }
    if (eval_ft_wanted(&o->finetune) && !transport_stop &&
        (o->finetune.on_all || !ctx->is_final || ctx->is_final(ctx->is_final_arg))) {
        char ferr[1024];
        json_t *ft = eval_finetune(net, &ctx->data, o, &ctx->probe, &transport_stop, ferr, sizeof ferr);
        if (ft)
            json_object_set_new(record, "finetune", ft);
        else if (transport_stop) {
            errmsg_set(err, errlen, "stopped");
            goto done;
        } else
            console_log("no fine-tuning: %s", ferr);
    }
    json_object_set_new(record, "seconds", json_real(console_now() - t0));
    snprintf(file, sizeof file, "%s/%s", o->out, EVAL_JSONL);
    if (eval_mkdir_p(o->out, err, errlen) || append_line(file, record, err, errlen))
        goto done;
    console_log("step %ld: probe top-1 %.2f%%, kNN top-1 %.2f%% -> %s (%.0f s)", meta.step,
                100 * json_real_value(json_object_get(record, "probe_top1")),
                100 * json_real_value(json_object_get(record, "knn_top1")), file, console_now() - t0);
    if (o->report) {
        char ckdir[EVAL_MAX_PATH], rerr[1024];
        snprintf(ckdir, sizeof ckdir, "%s", path);
        if (eval_report_update(o->out, dirname(ckdir), rerr, sizeof rerr))
            console_log("report not updated: %s", rerr);
    }
    rc = 0;
done:
    if (rc == 0 && record_out)
        *record_out = json_incref(record);
    json_decref(record);
    json_decref(rep);
    json_decref(raw);
    json_decref(rnd);
    nn_net_destroy(&net);
    nn_ckpt_meta_clear(&meta);
    return rc;
}

int eval_compare(eval_ctx *ctx, const char *path_a, const char *path_b, char *err, size_t errlen)
{
    const eval_options *o = ctx->o;
    const char *paths[2] = { path_a, path_b };
    nn_ckpt_meta meta[2];
    nn_net *net[2] = { NULL, NULL };
    char nerr[1024], titles[2][256], file[EVAL_MAX_PATH + 32];
    int shape[2][3], rc = -1;
    memset(meta, 0, sizeof meta);
    for (int p = 0; p < 2; p++) {
        if (!(net[p] = nn_ckpt_open(paths[p], o->batch, &meta[p], nerr, sizeof nerr))) {
            errmsg_set(err, errlen, "%s", nerr);
            goto done;
        }
        nn_net_input_shape(net[p], &shape[p][0], &shape[p][1], &shape[p][2]);
        snprintf(titles[p], sizeof titles[p], "(%c) %s", 'a' + p, meta[p].method);
    }
    if (memcmp(shape[0], shape[1], sizeof shape[0])) {
        errmsg_set(err, errlen, "%s takes %dx%dx%d images and %s %dx%dx%d: the same images cannot go through both",
                   path_a, shape[0][0], shape[0][1], shape[0][2], path_b, shape[1][0], shape[1][1], shape[1][2]);
        goto done;
    }
    if (ensure_data(ctx, shape[0][0], shape[0][1], shape[0][2], err, errlen) || eval_mkdir_p(o->out, err, errlen))
        goto done;
    size_t idx[EVAL_MAX_ATTENTION];
    int n = eval_attention_pick(&ctx->data.test, o->attention > 0 ? o->attention : COMPARE_IMAGES, idx);
    snprintf(file, sizeof file, "%s/compare.png", o->out);
    const char *const t[2] = { titles[0], titles[1] };
    if (eval_attention_compare_png(net, t, &ctx->data.test, idx, n, file, err, errlen))
        goto done;
    console_log("compare: (a) %s, %s step %ld; (b) %s, %s step %ld; %d test images -> %s", path_a, meta[0].method,
                meta[0].step, path_b, meta[1].method, meta[1].step, n, file);
    rc = 0;
done:
    for (int p = 0; p < 2; p++) {
        nn_net_destroy(&net[p]);
        nn_ckpt_meta_clear(&meta[p]);
    }
    return rc;
}

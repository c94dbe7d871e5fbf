/* evaluator/data: images, features and augmented view pairs (data.h). */
#include "evaluator/data.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment/augment.h"
#include "console/console.h"
#include "dataset/dataset.h"
#include "errmsg/errmsg.h"
#include "dataset/split.h"
#include "evaluator/readout.h"
#include "nn/parallel.h"

#define DECODE_CHUNK   2048    /* images decoded between two progress updates */
#define DECODE_GRAIN   64      /* images per parallel slice */
#define PIXEL_SCALE    (1.0f / 255.0f)

static void eval_images_release(eval_images *im)
{
    free(im->pixels);
    free(im->labels);
    memset(im, 0, sizeof *im);
}

void eval_data_release(eval_data *d)
{
    eval_images_release(&d->train);
    eval_images_release(&d->test);
    d->n_classes = 0;
}

typedef struct {
    const dataset_t *ds;
    const size_t *idx;         /* dataset items, in order */
    size_t first;              /* of this chunk */
    eval_images *im;
    dataset_decode_opts_t opts;
    atomic_int failed;         /* first failure wins */
    char message[1024];
} decode_job;

static void decode_range(void *ctx, size_t begin, size_t end)
{
    decode_job *j = ctx;
    eval_images *im = j->im;
    size_t bytes = (size_t)im->h * im->w * im->c;
    dataset_image_t img;
    dataset_image_init(&img);
    for (size_t i = j->first + begin; i < j->first + end; i++) {
        if (atomic_load_explicit(&j->failed, memory_order_relaxed))
            break;
        dataset_error_t e;
        char problem[1024] = "";
        if (dataset_read(j->ds, j->idx[i], &j->opts, &img, &e))
            snprintf(problem, sizeof problem, "%s", e.message);
        else if ((int)img.height != im->h || (int)img.width != im->w || (int)img.channels != im->c) {
            char name[512];
            snprintf(problem, sizeof problem,
                     "%s is %ux%ux%u (CxHxW) but the checkpoint's network takes %dx%dx%d images; "
                     "HINT: evaluate on data of that size (--train-data/--test-data) or train at this size",
                     dataset_item_name(j->ds, j->idx[i], name, sizeof name), img.channels, img.height, img.width,
                     im->c, im->h, im->w);
        } else
            memcpy(im->pixels + i * bytes, img.pixels, bytes);
        if (problem[0] && !atomic_exchange_explicit(&j->failed, 1, memory_order_acq_rel))
            snprintf(j->message, sizeof j->message, "%s", problem);
    }
    dataset_image_release(&img);
}

/* Decodes the dataset items idx[0..n) into im. */
static int decode_items(eval_images *im, const dataset_t *ds, const size_t *idx, size_t n,
                        int c, int h, int w, const char *what, atomic_int *stop,
                        char *err, size_t errlen)
{
    im->n = n;
    im->c = c; im->h = h; im->w = w;
    im->n_classes = dataset_n_classes(ds);
    im->pixels = malloc(n * (size_t)c * h * w);
    im->labels = malloc((n ? n : 1) * sizeof *im->labels);
    if (!im->pixels || !im->labels) {
        errmsg_set(err, errlen, "out of memory for %zu images of %dx%dx%d", n, c, h, w);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        im->labels[i] = dataset_label(ds, idx[i]);
    decode_job job;
    memset(&job, 0, sizeof job);
    job.ds = ds;
    job.idx = idx;
    job.im = im;
    job.opts.channels = c;
    job.opts.max_pixels = DATASET_DEFAULT_MAX_PIXELS;
    progress_t pr;
    progress_start(&pr, "images", n);
    for (size_t first = 0; first < n && !job.failed; first += DECODE_CHUNK) {
        if (stop && *stop) {
            progress_end(&pr);
            errmsg_set(err, errlen, "%s: stopped while decoding", im->source);
            return -1;
        }
        job.first = first;
        size_t count = n - first < DECODE_CHUNK ? n - first : DECODE_CHUNK;
        nn_parallel_for(count, DECODE_GRAIN, decode_range, &job);
        progress_update(&pr, first + count, what);
    }
    progress_end(&pr);
    if (job.failed) {
        errmsg_set(err, errlen, "%s: %s", im->source, job.message);
        return -1;
    }
    return 0;
}

/* The labelled items of ds (all, or a class-balanced seeded `max` of them). */
static int labelled_items(const dataset_t *ds, const char *path, const size_t *among, size_t n_among,
                          size_t max, uint64_t seed, size_t **out, size_t *n_out, char *err, size_t errlen)
{
    int k = dataset_n_classes(ds);
    if (k < 2) {
        errmsg_set(err, errlen, "%s: %d class%s: the probe needs labeled data with at least two classes "
                "(class folders, IDX or CIFAR files)", path, k, k == 1 ? "" : "es");
        return -1;
    }
    int32_t *labels = malloc((n_among ? n_among : 1) * sizeof *labels);
    if (!labels) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n_among; i++)
        labels[i] = dataset_label(ds, among ? among[i] : i);
    size_t labelled = 0;
    for (size_t i = 0; i < n_among; i++)
        labelled += labels[i] >= 0 && labels[i] < k;
    size_t want = max && max < labelled ? max : labelled;
    size_t *pick = NULL, n_pick = 0;
    int rc = split_subset(labels, n_among, k, want, seed, &pick, &n_pick, err, errlen);
    free(labels);
    if (rc)
        return -1;
    if (among)
        for (size_t i = 0; i < n_pick; i++)
            pick[i] = among[pick[i]];
    *out = pick;
    *n_out = n_pick;
    return 0;
}

void eval_data_paths(const eval_options *o, const char **train, const char **test)
{
    *train = o->train_data ? o->train_data : EVAL_FASHION_TRAIN;
    *test = o->test_data;
    if (!o->train_data && !o->test_data)
        *test = EVAL_FASHION_TEST;
}

int eval_data_native_shape(const eval_options *o, int *c, int *h, int *w, char *err, size_t errlen)
{
    dataset_format_t fmt;
    if (dataset_format_parse(o->format, &fmt)) {
        errmsg_set(err, errlen, "unknown --format '%s' (auto, folder, idx, cifar10, cifar100)", o->format);
        return -1;
    }
    const char *train_path, *test_path;
    eval_data_paths(o, &train_path, &test_path);
    char derr[1024];
    dataset_t *ds = dataset_new(train_path, fmt, derr, sizeof derr);
    if (!ds) {
        errmsg_set(err, errlen, "training data: %s", derr);
        return -1;
    }
    dataset_decode_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.max_pixels = DATASET_DEFAULT_MAX_PIXELS;
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t e;
    int rc = dataset_read(ds, 0, &opts, &img, &e);
    if (rc)
        errmsg_set(err, errlen, "%s: %s", train_path, e.message);
    else {
        *c = (int)img.channels;
        *h = (int)img.height;
        *w = (int)img.width;
    }
    dataset_image_release(&img);
    dataset_destroy(&ds);
    return rc ? -1 : 0;
}

int eval_data_load(eval_data *d, const eval_options *o, int c, int h, int w, atomic_int *stop,
                   char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    dataset_format_t fmt;
    if (dataset_format_parse(o->format, &fmt)) {
        errmsg_set(err, errlen, "unknown --format '%s' (auto, folder, idx, cifar10, cifar100)", o->format);
        return -1;
    }
    const char *train_path, *test_path;
    eval_data_paths(o, &train_path, &test_path);
    dataset_t *tr = NULL, *te = NULL;
    size_t *tr_idx = NULL, *te_idx = NULL, n_tr = 0, n_te = 0;
    int rc = -1;
    char derr[1024];
    if (!(tr = dataset_new(train_path, fmt, derr, sizeof derr))) {
        errmsg_set(err, errlen, "training data: %s", derr);
        goto done;
    }
    snprintf(d->train.source, sizeof d->train.source, "%s", train_path);
    if (test_path) {
        if (!(te = dataset_new(test_path, fmt, derr, sizeof derr))) {
            errmsg_set(err, errlen, "test data: %s", derr);
            goto done;
        }
        snprintf(d->test.source, sizeof d->test.source, "%s", test_path);
        if (labelled_items(tr, train_path, NULL, dataset_count(tr), o->max_train, o->seed, &tr_idx, &n_tr,
                           err, errlen) ||
            labelled_items(te, test_path, NULL, dataset_count(te), o->max_test, o->seed, &te_idx, &n_te,
                           err, errlen))
            goto done;
    } else {
        /* one labelled set: a seeded class-balanced part of it is held out for testing */
        size_t *rest = NULL, *held = NULL, n_rest, n_held;
        if (split_test_part(tr, o->test_fraction, o->seed, &rest, &n_rest, &held, &n_held, err, errlen)) {
            char why[512];
            snprintf(why, sizeof why, "%s", err);
            errmsg_set(err, errlen, "%s: %s", train_path, why);
            goto done;
        }
        snprintf(d->test.source, sizeof d->test.source, "%s (held out)", train_path);
        int r1 = labelled_items(tr, train_path, rest, n_rest, o->max_train, o->seed, &tr_idx, &n_tr, err, errlen);
        int r2 = r1 ? -1 : labelled_items(tr, train_path, held, n_held, o->max_test, o->seed, &te_idx, &n_te,
                                          err, errlen);
        free(rest);
        free(held);
        if (r1 || r2)
            goto done;
        te = NULL;
    }
    console_log("decoding %zu training images from %s", n_tr, d->train.source);
    if (decode_items(&d->train, tr, tr_idx, n_tr, c, h, w, "decoding training images", stop, err, errlen))
        goto done;
    console_log("decoding %zu test images from %s", n_te, d->test.source);
    if (decode_items(&d->test, te ? te : tr, te_idx, n_te, c, h, w, "decoding test images", stop, err, errlen))
        goto done;
    d->n_classes = d->train.n_classes > d->test.n_classes ? d->train.n_classes : d->test.n_classes;
    rc = 0;
done:
    free(tr_idx);
    free(te_idx);
    dataset_destroy(&tr);
    dataset_destroy(&te);
    if (rc)
        eval_data_release(d);
    return rc;
}

void eval_images_to_float(const eval_images *im, size_t first, size_t n, float *x)
{
    size_t hw = (size_t)im->h * im->w;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = im->pixels + (first + i) * hw * im->c;
        float *o = x + i * hw * im->c;
        for (size_t q = 0; q < hw; q++)
            for (int ch = 0; ch < im->c; ch++)
                o[(size_t)ch * hw + q] = p[q * im->c + ch] * PIXEL_SCALE;
    }
}

void eval_encode_floats(nn_net *net, const float *x, size_t n, float *out)
{
    int c, h, w, batch = nn_net_max_batch(net), d = nn_net_feat_dim(net);
    nn_net_input_shape(net, &c, &h, &w);
    size_t img = (size_t)c * h * w;
    for (size_t first = 0; first < n; first += (size_t)batch) {
        int m = (int)(n - first < (size_t)batch ? n - first : (size_t)batch);
        const float *f = nn_net_forward_features(net, x + first * img, m);
        memcpy(out + first * d, f, (size_t)m * d * sizeof *out);
    }
}

int eval_encode_images(nn_net *net, const eval_images *im, int views, const char *what, atomic_int *stop,
                       float **out, char *err, size_t errlen)
{
    int batch = nn_net_max_batch(net), d = nn_net_feat_dim(net);
    size_t img = (size_t)im->c * im->h * im->w;
    float *x = malloc((size_t)batch * img * sizeof *x), *f = malloc((im->n ? im->n : 1) * (size_t)d * sizeof *f);
    float *xv = views > 1 ? malloc((size_t)batch * img * sizeof *xv) : NULL;
    if (!x || !f || (views > 1 && !xv)) {
        free(x);
        free(xv);
        free(f);
        errmsg_set(err, errlen, "out of memory for the features of %zu images (%d each)", im->n, d);
        return -1;
    }
    progress_t pr;
    progress_start(&pr, "images", im->n);
    for (size_t first = 0; first < im->n; first += (size_t)batch) {
        if (stop && *stop) {
            progress_end(&pr);
            free(x);
            free(xv);
            free(f);
            errmsg_set(err, errlen, "stopped");
            return -1;
        }
        size_t m = im->n - first < (size_t)batch ? im->n - first : (size_t)batch;
        float *fb = f + first * d;
        eval_images_to_float(im, first, m, x);
        memcpy(fb, nn_net_forward_features(net, x, (int)m), m * (size_t)d * sizeof *f);
        for (int v = 1; v < views; v++) {
            eval_view_images(x, m, im->c, im->h, im->w, v, xv);
            const float *g = nn_net_forward_features(net, xv, (int)m);
            for (size_t i = 0; i < m * (size_t)d; i++)
                fb[i] += g[i];
        }
        if (views > 1)
            for (size_t i = 0; i < m * (size_t)d; i++)
                fb[i] /= (float)views;
        progress_update(&pr, first + m, what);
    }
    progress_end(&pr);
    free(x);
    free(xv);
    *out = f;
    return 0;
}

int eval_raw_pixels(const eval_images *im, float **out, int *dim, char *err, size_t errlen)
{
    size_t img = (size_t)im->c * im->h * im->w;
    float *f = malloc((im->n ? im->n : 1) * img * sizeof *f);
    if (!f) {
        errmsg_set(err, errlen, "out of memory for the raw pixels of %zu images", im->n);
        return -1;
    }
    eval_images_to_float(im, 0, im->n, f);
    *out = f;
    *dim = (int)img;
    return 0;
}

int eval_view_pairs(const eval_images *im, size_t count, const char *recipe, uint64_t seed,
                    float **v1, float **v2, char *err, size_t errlen)
{
    if (im->h != im->w) {
        errmsg_set(err, errlen, "alignment views need square images, these are %dx%d", im->h, im->w);
        return -1;
    }
    aug_recipe_t r;
    char aerr[AUG_ERR_MAX];
    if (aug_recipe_parse(&r, recipe, (uint32_t)im->h, aerr, sizeof aerr)) {
        errmsg_set(err, errlen, "--align-recipe: %s", aerr);
        return -1;
    }
    r.views = 2;
    aug_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = (uint32_t)im->h;
    cfg.channels = (uint32_t)im->c;
    cfg.dtype = AUG_DTYPE_F32;
    cfg.seed = seed;
    aug_t *a = aug_new(&r, &cfg, aerr, sizeof aerr);
    if (!a) {
        errmsg_set(err, errlen, "alignment views: %s", aerr);
        return -1;
    }
    size_t img = (size_t)im->c * im->h * im->w;
    float *a1 = malloc(count * img * sizeof *a1), *a2 = malloc(count * img * sizeof *a2);
    float *both = malloc(2 * img * sizeof *both);
    int rc = 0;
    if (!a1 || !a2 || !both) {
        errmsg_set(err, errlen, "out of memory for %zu view pairs", count);
        rc = -1;
    }
    for (size_t i = 0; i < count && !rc; i++) {
        aug_image_t src = { im->pixels + i * img, (uint32_t)im->h, (uint32_t)im->w, (uint32_t)im->c, i, 0 };
        int32_t targets[2];
        if (aug_sample(a, &src, both, targets, aerr, sizeof aerr)) {
            errmsg_set(err, errlen, "alignment views of test image %zu: %s", i, aerr);
            rc = -1;
            break;
        }
        memcpy(a1 + i * img, both, img * sizeof *both);
        memcpy(a2 + i * img, both + img, img * sizeof *both);
    }
    aug_destroy(&a);
    free(both);
    if (rc) {
        free(a1);
        free(a2);
        return -1;
    }
    *v1 = a1;
    *v2 = a2;
    return 0;
}

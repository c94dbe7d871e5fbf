/* augment: runs a recipe on one image (see augment.h for the plan of a view). */
#include "augment/augment.h"
#include "errmsg/errmsg.h"
#include "augment/ops.h"
#include "augment/rng.h"
#include "augment/vipsstep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUG_MIN_KERNEL 3
/* Blur taps further than this many sigmas from the centre are dropped: they
 * hold less than 7e-5 of the kernel's mass, under 1/50 of an 8-bit level. */
#define AUG_BLUR_TAIL_SIGMAS 4.0f
#define AUG_PER_SAMPLE_VIEW 0xffffffffu   /* the view number of per-sample randomness */

struct aug {
    aug_recipe_t recipe;
    aug_config_t cfg;
    float inv_std[3];
    int has_rotate;           /* views carry a rotation target */
    size_t view_bytes;
    float *work;              /* (C, S, S) working image */
    float *work2;             /* (C, S, S) second buffer (rotation) */
    float *scratch;           /* (S, S) blur and sobel intermediate */
    float *pad;               /* (S + AUG_MAX_KERNEL) one reflected row */
    float *tmp;               /* resampling intermediate, grows */
    size_t tmp_cap;
    aug_tap_t *xt, *yt;       /* (S) taps per output column / row */
    float *xw, *yw;           /* (S, maxn) their weights, grow */
    size_t xw_cap, yw_cap;
    aug_vips_t *steps[AUG_MAX_STEPS];   /* the recipe's vips and jpeg steps */
};

static int grow(float **p, size_t *cap, size_t need, char *err, size_t errlen)
{
    if (need <= *cap) return 0;
    float *q = realloc(*p, need * sizeof(float));
    if (!q) {
        errmsg_set(err, errlen, "augment: out of memory for %zu floats of scratch", need);
        return -1;
    }
    *p = q;
    *cap = need;
    return 0;
}

aug_t *aug_new(const aug_recipe_t *recipe, const aug_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->size < 1 || cfg->size > AUG_MAX_SIDE) {
        errmsg_set(err, errlen, "augment: output size %u is outside 1..%u", cfg->size, AUG_MAX_SIDE);
        return NULL;
    }
    if (cfg->channels != 1 && cfg->channels != 3) {
        errmsg_set(err, errlen, "augment: %u output channels; expected 1 or 3", cfg->channels);
        return NULL;
    }
    if (recipe->views < 1 || recipe->views > AUG_MAX_VIEWS || recipe->n_ops > AUG_MAX_OPS) {
        errmsg_set(err, errlen, "augment: recipe with %u views and %u operations; at most %u and %u",
                                recipe->views, recipe->n_ops, AUG_MAX_VIEWS, AUG_MAX_OPS);
        return NULL;
    }
    if (recipe->n_steps > AUG_MAX_STEPS) {
        errmsg_set(err, errlen, "augment: recipe with %u libvips steps; at most %u", recipe->n_steps, AUG_MAX_STEPS);
        return NULL;
    }
    for (uint32_t i = 0; i < recipe->n_ops; i++) {
        aug_op_kind_t k = recipe->ops[i].kind;
        if ((unsigned)k >= AUG_OP_COUNT ||
            ((k == AUG_OP_VIPS || k == AUG_OP_JPEG) && recipe->ops[i].step >= recipe->n_steps)) {
            errmsg_set(err, errlen, "augment: recipe operation %u is not one aug_recipe_parse() makes", i + 1);
            return NULL;
        }
    }
    if (cfg->dtype == AUG_DTYPE_F32 && cfg->normalize) {
        for (uint32_t c = 0; c < cfg->channels; c++)
            if (!(cfg->std[c] > 0.0f)) {
                errmsg_set(err, errlen, "augment: normalisation std[%u] = %g; it must be > 0", c, cfg->std[c]);
                return NULL;
            }
    }
    aug_t *a = calloc(1, sizeof(*a));
    if (!a) {
        errmsg_set(err, errlen, "augment: out of memory");
        return NULL;
    }
    a->recipe = *recipe;
    a->cfg = *cfg;
    for (int c = 0; c < 3; c++) a->inv_std[c] = cfg->std[c] > 0.0f ? 1.0f / cfg->std[c] : 1.0f;
    for (uint32_t i = 0; i < recipe->n_ops; i++)
        if (recipe->ops[i].kind == AUG_OP_ROTATE) a->has_rotate = 1;
    size_t S = cfg->size, n = S * S, C = cfg->channels;
    a->view_bytes = C * n * (cfg->dtype == AUG_DTYPE_U8 ? 1 : sizeof(float));
    a->work = malloc(C * n * sizeof(float));
    a->work2 = malloc(C * n * sizeof(float));
    a->scratch = malloc(n * sizeof(float));
    a->pad = malloc((S + AUG_MAX_KERNEL + 1) * sizeof(float));
    a->xt = malloc(S * sizeof(aug_tap_t));
    a->yt = malloc(S * sizeof(aug_tap_t));
    if (!a->work || !a->work2 || !a->scratch || !a->pad || !a->xt || !a->yt) {
        aug_destroy(&a);
        errmsg_set(err, errlen, "augment: out of memory for %zu x %zu working images", S, S);
        return NULL;
    }
    for (uint32_t i = 0; i < recipe->n_steps; i++)
        if (!(a->steps[i] = aug_vips_new(&recipe->steps[i], (int32_t)C, (int32_t)S, err, errlen))) {
            aug_destroy(&a);
            return NULL;
        }
    return a;
}

void aug_destroy(aug_t **self_p)
{
    if (!self_p || !*self_p) return;
    aug_t *a = *self_p;
    free(a->work);
    free(a->work2);
    free(a->scratch);
    free(a->pad);
    free(a->tmp);
    free(a->xt);
    free(a->yt);
    free(a->xw);
    free(a->yw);
    for (uint32_t i = 0; i < AUG_MAX_STEPS; i++) aug_vips_destroy(&a->steps[i]);
    free(a);
    *self_p = NULL;
}

uint32_t aug_views_per_sample(const aug_t *a) { return a->recipe.views; }

uint32_t aug_target_classes(const aug_t *a)
{
    if (a->recipe.target_classes) return a->recipe.target_classes;
    return a->has_rotate ? AUG_ROTATE_CLASSES : 0u;
}

/* The view's target from the ":target" items' choices, in recipe order,
 * the first the most significant digit. */
static int32_t target_of(const aug_recipe_t *r, const uint8_t *digit)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < r->n_ops; i++) {
        const aug_op_t *op = &r->ops[i];
        if (!op->target) continue;
        t = t * (op->kind == AUG_OP_ROTATE ? AUG_ROTATE_CLASSES : 2u) + digit[i];
    }
    return (int32_t)t;
}
size_t aug_view_bytes(const aug_t *a) { return a->view_bytes; }

static void jitter_compose(aug_color_t *col, const aug_op_t *op, aug_rng_t *rng,
                           const float *work, int32_t C, int32_t n, float mu[3], int *have_mu)
{
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {   /* random order */
        int j = (int)aug_rng_below(rng, (uint32_t)i + 1);
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    for (int s = 0; s < 4; s++) {
        int which = order[s];
        float amount = op->jitter[which];
        aug_color_t step;
        if (which == 3) {
            if (amount <= 0.0f) continue;
            aug_color_hue(&step, (float)aug_rng_uniform(rng, -amount, amount));
        } else {
            if (amount <= 0.0f) continue;
            float lo = 1.0f - amount < 0.0f ? 0.0f : 1.0f - amount;
            float f = (float)aug_rng_uniform(rng, lo, 1.0 + amount);
            if (which == 0) {
                aug_color_brightness(&step, f);
            } else if (which == 1) {
                if (!*have_mu) {
                    aug_mean(mu, work, C, n);
                    *have_mu = 1;
                }
                aug_color_contrast(&step, f, aug_color_mean_gray(col, mu));
            } else {
                aug_color_saturation(&step, f);
            }
        }
        aug_color_then(col, &step);
    }
}

/* Kernel side: `kernel` of the image side, odd, at least AUG_MIN_KERNEL;
 * then trimmed to the taps that matter for this sigma. */
static int blur_ksize(float kernel, int32_t S, float sigma)
{
    int k = (int)(kernel * (float)S);
    if (k % 2 == 0) k++;
    if (k < AUG_MIN_KERNEL) k = AUG_MIN_KERNEL;
    if (k > AUG_MAX_KERNEL) k = AUG_MAX_KERNEL;
    int r = (int)ceilf(AUG_BLUR_TAIL_SIGMAS * sigma);
    if (r < 1) r = 1;
    if (2 * r + 1 < k) k = 2 * r + 1;
    return k;
}

/* A libvips step on the working image: the result comes back through the
 * resampler, so any size and band count fits the view; a result larger
 * than the view (rotate's enlarged canvas) is centre-cropped to it, a
 * smaller one stretched to it, 1 band is replicated to 3, and 3 or more are
 * reduced to the luminance for a 1-channel view (alpha is ignored). */
static int run_step(aug_t *a, const aug_op_t *op, aug_rng_t *rng, uint64_t index, char *err, size_t errlen)
{
    int32_t S = (int32_t)a->cfg.size, C = (int32_t)a->cfg.channels;
    aug_vips_result_t res;
    char msg[AUG_ERR_MAX];
    if (aug_vips_run(a->steps[op->step], rng, a->work, &res, msg, sizeof(msg))) {
        errmsg_set(err, errlen, "augment: sample %llu: %s", (unsigned long long)index, msg);
        return -1;
    }
    aug_box_t box = {0, 0, res.w, res.h};
    if (box.w > S) {
        box.x = (box.w - S) / 2;
        box.w = S;
    }
    if (box.h > S) {
        box.y = (box.h - S) / 2;
        box.h = S;
    }
    int mx = aug_taps_max(box.w, S), my = aug_taps_max(box.h, S);
    if (grow(&a->tmp, &a->tmp_cap, aug_resample_tmp_floats(&box, S, res.bands), err, errlen) ||
        grow(&a->xw, &a->xw_cap, (size_t)S * mx, err, errlen) || grow(&a->yw, &a->yw_cap, (size_t)S * my, err, errlen))
        return -1;
    aug_resample(a->work, a->tmp, a->xt, a->xw, a->yt, a->yw, res.pixels, res.h, res.w, res.bands,
                 &box, 0, C, S);
    return 0;
}

int aug_view(aug_t *a, const aug_image_t *img, uint32_t view, void *out, int32_t *target, char *err, size_t errlen)
{
    if (!img->pixels || img->height < 1 || img->width < 1 || img->channels < 1 || img->channels > 4) {
        errmsg_set(err, errlen, "augment: sample %llu: bad image %ux%ux%u (expected H, W >= 1 and 1..4 channels)",
                                (unsigned long long)img->index, img->height, img->width, img->channels);
        return -1;
    }
    const aug_recipe_t *r = &a->recipe;
    const aug_config_t *cfg = &a->cfg;
    int32_t S = (int32_t)cfg->size, C = (int32_t)cfg->channels, n = S * S;
    int32_t W = (int32_t)img->width, H = (int32_t)img->height;

    /* 1. geometry: crop box and flip, then one resampling pass */
    aug_box_t box = {0, 0, W, H};
    int flip = 0;
    uint8_t digit[AUG_MAX_OPS] = {0};   /* each ":target" item's choice */
    for (uint32_t i = 0; i < r->n_ops; i++) {
        const aug_op_t *op = &r->ops[i];
        if (op->kind != AUG_OP_CROP && op->kind != AUG_OP_FLIP) continue;
        aug_rng_t rng;
        aug_rng_init(&rng, cfg->seed, img->epoch, img->index,
                     op->per_sample ? AUG_PER_SAMPLE_VIEW : view, i);
        if (!(aug_rng_float(&rng) < op->p)) continue;
        digit[i] = 1;
        if (op->kind == AUG_OP_FLIP) {
            flip ^= 1;
        } else {
            aug_box_t sub;
            aug_crop_box(&sub, &rng, box.w, box.h, op->lo, op->hi, op->ratio_lo, op->ratio_hi);
            sub.x += box.x;
            sub.y += box.y;
            box = sub;
        }
    }
    int mx = aug_taps_max(box.w, S), my = aug_taps_max(box.h, S);
    if (grow(&a->tmp, &a->tmp_cap, aug_resample_tmp_floats(&box, S, (int32_t)img->channels), err, errlen) ||
        grow(&a->xw, &a->xw_cap, (size_t)S * mx, err, errlen) || grow(&a->yw, &a->yw_cap, (size_t)S * my, err, errlen))
        return -1;
    aug_resample(a->work, a->tmp, a->xt, a->xw, a->yt, a->yw, img->pixels, H, W,
                 (int32_t)img->channels, &box, flip, C, S);

    /* 2-3. colour folded into one matrix, spatial operations in order */
    aug_color_t col;
    aug_color_identity(&col);
    int dirty = 0, have_mu = 0;
    float mu[3];
    int32_t tgt = a->has_rotate ? 0 : -1;
    for (uint32_t i = 0; i < r->n_ops; i++) {
        const aug_op_t *op = &r->ops[i];
        if (op->kind == AUG_OP_CROP || op->kind == AUG_OP_FLIP || op->kind == AUG_OP_ORIGINAL)
            continue;
        aug_rng_t rng;
        aug_rng_init(&rng, cfg->seed, img->epoch, img->index,
                     op->per_sample ? AUG_PER_SAMPLE_VIEW : view, i);
        if (!(aug_rng_float(&rng) < op->p)) continue;
        digit[i] = 1;
        if (op->kind == AUG_OP_GRAY) {
            aug_color_t g;
            aug_color_gray(&g);
            aug_color_then(&col, &g);
            dirty = 1;
            continue;
        }
        if (op->kind == AUG_OP_JITTER) {
            jitter_compose(&col, op, &rng, a->work, C, n, mu, &have_mu);
            dirty = 1;
            continue;
        }
        if (dirty) {   /* a spatial operation needs the coloured pixels */
            aug_color_apply(a->work, &col, C, n);
            aug_color_identity(&col);
            dirty = 0;
        }
        have_mu = 0;
        switch (op->kind) {
        case AUG_OP_ROTATE: {
            int k = op->k == AUG_ROTATE_VIEW ? (int)(view & 3)
                  : op->k == AUG_ROTATE_RANDOM ? (int)aug_rng_below(&rng, 4) : op->k;
            if (k) {
                aug_rotate90(a->work2, a->work, k, C, S);
                float *t = a->work; a->work = a->work2; a->work2 = t;
            }
            tgt = (tgt + k) & 3;
            digit[i] = (uint8_t)k;
            break;
        }
        case AUG_OP_CUTOUT: {
            int32_t side = op->size >= 1.0f ? (int32_t)op->size : (int32_t)(op->size * S + 0.5f);
            if (side < 1) side = 1;
            int32_t cx = (int32_t)aug_rng_below(&rng, (uint32_t)S);
            int32_t cy = (int32_t)aug_rng_below(&rng, (uint32_t)S);
            float fill[3] = {0, 0, 0};
            if (op->fill_mean) aug_mean(fill, a->work, C, n);
            aug_cutout(a->work, cx, cy, side, fill, C, S);
            break;
        }
        case AUG_OP_NOISE:
            aug_noise(a->work, &rng, op->sigma, C, n);
            break;
        case AUG_OP_BLUR: {
            float kern[AUG_MAX_KERNEL];
            float sigma = (float)aug_rng_uniform(&rng, op->lo, op->hi);
            int ks = blur_ksize(op->kernel, S, sigma);
            aug_gauss_kernel(kern, ks, sigma);
            aug_blur(a->work, a->scratch, a->pad, kern, ks, C, S);
            break;
        }
        case AUG_OP_SOBEL:
            aug_sobel(a->work, a->scratch, C, S);
            break;
        case AUG_OP_VIPS:
        case AUG_OP_JPEG:
            if (run_step(a, op, &rng, img->index, err, errlen)) return -1;
            break;
        default:
            break;
        }
    }

    /* 4. clamp, normalise, convert */
    int u8 = cfg->dtype == AUG_DTYPE_U8;
    int norm = !u8 && cfg->normalize;
    aug_write(out, u8, a->work, dirty ? &col : NULL, norm ? cfg->mean : NULL,
              norm ? a->inv_std : NULL, C, n);
    if (r->target_classes) tgt = target_of(r, digit);
    if (target) *target = tgt;
    return 0;
}

int aug_sample(aug_t *a, const aug_image_t *img, void *out, int32_t *targets, char *err, size_t errlen)
{
    uint8_t *o = out;
    for (uint32_t v = 0; v < a->recipe.views; v++) {
        if (aug_view(a, img, v, o + (size_t)v * a->view_bytes, targets ? &targets[v] : NULL, err, errlen))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ batching */

int aug_batch_init(aug_batch_t *b, const aug_t *a, uint32_t capacity, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (capacity < 1) {
        errmsg_set(err, errlen, "augment: batch of %u samples; at least 1", capacity);
        return -1;
    }
    b->capacity = capacity;
    b->views = a->recipe.views;
    b->sample_bytes = (size_t)b->views * a->view_bytes;
    b->data = malloc(capacity * b->sample_bytes);
    b->index = malloc(capacity * sizeof(*b->index));
    b->epoch = malloc(capacity * sizeof(*b->epoch));
    b->label = malloc(capacity * sizeof(*b->label));
    b->target = malloc((size_t)capacity * b->views * sizeof(*b->target));
    if (!b->data || !b->index || !b->epoch || !b->label || !b->target) {
        aug_batch_release(b);
        errmsg_set(err, errlen, "augment: out of memory for a batch of %u samples (%zu bytes each)",
                                capacity, b->sample_bytes);
        return -1;
    }
    return 0;
}

void aug_batch_release(aug_batch_t *b)
{
    free(b->data);
    free(b->index);
    free(b->epoch);
    free(b->label);
    free(b->target);
    memset(b, 0, sizeof(*b));
}

int aug_batch_add(aug_batch_t *b, aug_t *a, const aug_image_t *img, int32_t label, char *err, size_t errlen)
{
    if (b->n >= b->capacity) {
        errmsg_set(err, errlen, "augment: batch full (%u samples)", b->capacity);
        return -1;
    }
    uint32_t i = b->n;
    if (aug_sample(a, img, b->data + (size_t)i * b->sample_bytes, b->target + (size_t)i * b->views, err, errlen))
        return -1;
    b->index[i] = img->index;
    b->epoch[i] = img->epoch;
    b->label[i] = label;
    b->n++;
    return 0;
}

/* trainer/batch: batch assembly from decoded ViewBatches. */
#include "errmsg/errmsg.h"
#include "trainer/batch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIMCLR_VIEWS     2
#define SUPERVISED_VIEWS 1

uint32_t batch_views_used(const batch_shape_t *s)
{
    switch (s->method) {
    case TRAIN_SIMCLR: return SIMCLR_VIEWS;
    case TRAIN_SUPERVISED: return SUPERVISED_VIEWS;
    default: return s->views;
    }
}

uint32_t batch_rows(const batch_shape_t *s)
{
    return s->images * batch_views_used(s);
}

size_t batch_view_floats(const batch_shape_t *s)
{
    return (size_t)s->channels * s->height * s->width;
}

int batch_shape_complete(const batch_shape_t *s)
{
    return s->images && s->views && s->channels && s->height && s->width;
}

/* A known dimension must match; an unknown one (0) accepts anything. */
static int dim_ok(uint32_t want, uint32_t got)
{
    return want == 0 || want == got;
}

int batch_check(const batch_shape_t *s, const proto_viewbatch_t *vb, char *err, size_t errlen)
{
    if (vb->dtype != PROTO_DTYPE_F32 && vb->dtype != PROTO_DTYPE_U8) {
        errmsg_set(err, errlen, "viewbatch: unknown dtype %d", (int)vb->dtype);
        return -1;
    }
    if (!dim_ok(s->channels, vb->channels) || !dim_ok(s->height, vb->height) ||
        !dim_ok(s->width, vb->width)) {
        errmsg_set(err, errlen, "viewbatch: views are %ux%ux%u (CxHxW), this run trains on %ux%ux%u",
                vb->channels, vb->height, vb->width, s->channels, s->height, s->width);
        return -1;
    }
    if (!dim_ok(s->views, vb->views)) {
        errmsg_set(err, errlen, "viewbatch: %u views per sample, this run receives %u", vb->views, s->views);
        return -1;
    }
    if (s->method == TRAIN_SIMCLR && vb->views < SIMCLR_VIEWS) {
        errmsg_set(err, errlen, "viewbatch: %u view(s) per sample, simclr needs 2 (augmenter --recipe simclr)",
                vb->views);
        return -1;
    }
    if (s->method == TRAIN_SUPERVISED && vb->views != SUPERVISED_VIEWS) {
        errmsg_set(err, errlen, "viewbatch: %u views per sample, supervised trains on 1 "
                "(augmenter --recipe supervised)", vb->views);
        return -1;
    }
    if (s->method == TRAIN_PRETEXT) {
        if (vb->target_classes < 2) {
            errmsg_set(err, errlen, "viewbatch: its views' targets have %u classes announced, pretext needs 2 or "
                    "more (HINT: augmenter --recipe with ':target' items, such as "
                    "'flip:target,rotate:k=random:target')", vb->target_classes);
            return -1;
        }
        if (!dim_ok(s->classes, vb->target_classes)) {
            errmsg_set(err, errlen, "viewbatch: its views' targets have %u classes, this run trains a %u-way head "
                    "(HINT: every augmenter of a run takes the same --recipe)", vb->target_classes, s->classes);
            return -1;
        }
        for (uint32_t i = 0; i < vb->n_samples; i++)
            for (uint32_t k = 0; k < vb->views; k++) {
                int32_t t = vb->samples[i].target[k];
                if (t < 0 || (uint32_t)t >= vb->target_classes) {
                    errmsg_set(err, errlen, "viewbatch: samples[%u] view %u has target %d, pretext needs 0..%u",
                            i, k, (int)t, vb->target_classes - 1);
                    return -1;
                }
            }
    }
    if (s->method == TRAIN_ROTNET) {
        for (uint32_t i = 0; i < vb->n_samples; i++)
            for (uint32_t k = 0; k < vb->views; k++) {
                int32_t t = vb->samples[i].target[k];
                if (t < 0 || (uint32_t)t >= s->classes) {
                    errmsg_set(err, errlen, "viewbatch: samples[%u] view %u has target %d, rotnet needs "
                            "0..%u (augmenter --recipe rotnet)", i, k, (int)t, s->classes - 1);
                    return -1;
                }
            }
    }
    return 0;
}

void batch_shape_learn(batch_shape_t *s, const proto_viewbatch_t *vb)
{
    if (!s->views)
        s->views = vb->views;
    if (!s->channels)
        s->channels = vb->channels;
    if (!s->height)
        s->height = vb->height;
    if (!s->width)
        s->width = vb->width;
    if (s->method == TRAIN_PRETEXT && !s->classes)
        s->classes = vb->target_classes;
}

int batch_alloc(batch_t *b, const batch_shape_t *s)
{
    memset(b, 0, sizeof *b);
    size_t rows = batch_rows(s);
    b->x = malloc(rows * batch_view_floats(s) * sizeof *b->x);
    b->index = malloc((size_t)s->images * sizeof *b->index);
    b->epoch = malloc((size_t)s->images * sizeof *b->epoch);
    int has_targets = trainer_method_has_targets(s->method);
    if (has_targets)
        b->targets = malloc(rows * sizeof *b->targets);
    if (!b->x || !b->index || !b->epoch || (has_targets && !b->targets)) {
        batch_release(b);
        return -1;
    }
    return 0;
}

void batch_release(batch_t *b)
{
    free(b->x);
    free(b->targets);
    free(b->index);
    free(b->epoch);
    memset(b, 0, sizeof *b);
}

void batch_reset(batch_t *b)
{
    b->filled = 0;
    b->max_epoch = 0;
}

/* Copies one view of `n` elements from the wire into floats. */
static void copy_view(float *dst, const void *src, size_t n, proto_dtype_t dtype)
{
    if (dtype == PROTO_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *dst);   /* the wire is little-endian, as this machine */
        return;
    }
    const uint8_t *u = src;
    for (size_t j = 0; j < n; j++)
        dst[j] = (float)u[j] * BATCH_U8_SCALE;
}

int batch_sample_usable(const batch_shape_t *s, const proto_view_sample_t *smp)
{
    if (s->method != TRAIN_SUPERVISED)
        return 1;
    return smp->label >= 0 && (uint32_t)smp->label < s->classes;
}

int batch_put(batch_t *b, const batch_shape_t *s, const proto_viewbatch_t *vb, uint32_t i)
{
    const proto_view_sample_t *smp = &vb->samples[i];
    size_t n = batch_view_floats(s);
    size_t esize = proto_dtype_size(vb->dtype);
    const uint8_t *data = smp->data;
    uint32_t img = b->filled;
    if (s->method == TRAIN_SIMCLR) {
        for (uint32_t k = 0; k < SIMCLR_VIEWS; k++)
            copy_view(b->x + ((size_t)k * s->images + img) * n, data + k * n * esize, n, vb->dtype);
    } else if (s->method == TRAIN_SUPERVISED) {
        copy_view(b->x + (size_t)img * n, data, n, vb->dtype);
        b->targets[img] = smp->label;
    } else {
        for (uint32_t k = 0; k < s->views; k++) {
            size_t row = (size_t)img * s->views + k;
            copy_view(b->x + row * n, data + k * n * esize, n, vb->dtype);
            b->targets[row] = smp->target[k];
        }
    }
    if (smp->epoch > b->max_epoch)
        b->max_epoch = smp->epoch;
    b->index[img] = smp->index;
    b->epoch[img] = smp->epoch;
    b->filled++;
    return b->filled == s->images;
}

/* Image si of src to place di of dst (its views, targets, id), dst != src
 * or di != si. */
static void copy_image(batch_t *dst, uint32_t di, const batch_t *src, uint32_t si, const batch_shape_t *s)
{
    size_t n = batch_view_floats(s);
    uint32_t per = batch_views_used(s);
    if (s->method == TRAIN_SIMCLR) {
        /* view k of image i is row k * images + i */
        for (uint32_t k = 0; k < per; k++)
            memcpy(dst->x + ((size_t)k * s->images + di) * n, src->x + ((size_t)k * s->images + si) * n,
                   n * sizeof *dst->x);
    } else {
        /* the views of image i are rows i * per .. i * per + per - 1 */
        memcpy(dst->x + (size_t)di * per * n, src->x + (size_t)si * per * n, (size_t)per * n * sizeof *dst->x);
        if (src->targets)
            memcpy(dst->targets + (size_t)di * per, src->targets + (size_t)si * per, per * sizeof *dst->targets);
    }
    dst->index[di] = src->index[si];
    dst->epoch[di] = src->epoch[si];
}

uint32_t batch_remove(batch_t *b, const batch_shape_t *s, const uint8_t *drop)
{
    uint32_t kept = 0, filled = b->filled;
    b->max_epoch = 0;
    for (uint32_t i = 0; i < filled; i++) {
        if (drop[i])
            continue;
        if (kept != i)
            copy_image(b, kept, b, i, s);
        if (b->epoch[kept] > b->max_epoch)
            b->max_epoch = b->epoch[kept];
        kept++;
    }
    b->filled = kept;
    return filled - kept;
}

uint32_t batch_move(batch_t *dst, batch_t *src, const batch_shape_t *s)
{
    uint32_t moved = 0;
    while (dst->filled < s->images && src->filled > 0) {
        uint32_t si = --src->filled, di = dst->filled++;
        copy_image(dst, di, src, si, s);
        if (dst->epoch[di] > dst->max_epoch)
            dst->max_epoch = dst->epoch[di];
        moved++;
    }
    src->max_epoch = 0;
    for (uint32_t i = 0; i < src->filled; i++)
        if (src->epoch[i] > src->max_epoch)
            src->max_epoch = src->epoch[i];
    return moved;
}

uint32_t batch_mark_copies(const batch_id_t *all, int rank, uint32_t per, uint8_t *drop)
{
    const batch_id_t *mine = all + (size_t)rank * per;
    uint32_t n = 0;
    for (uint32_t i = 0; i < per; i++) {
        int copy = 0;
        for (size_t j = 0; j < (size_t)rank * per && !copy; j++)
            copy = all[j].epoch == mine[i].epoch && all[j].index == mine[i].index;
        if (copy && !drop[i]) {
            drop[i] = 1;
            n++;
        }
    }
    return n;
}

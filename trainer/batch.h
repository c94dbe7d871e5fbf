/* trainer/batch: assembling training batches from the samples of decoded
 * ViewBatches (pure logic, no sockets).
 *
 * A training batch holds `images` source images. Its rows, in the order the
 * losses want them:
 *   simclr: rows 0..B-1 are the first views, rows B..2B-1 the second views
 *           (nn_ntxent pairs row i with row i + B); further views are unused.
 *   rotnet, pretext: the K views of image i are rows i*K .. i*K+K-1, each
 *           with its target (the rotation class, the pretext class) in targets.
 *   supervised: the one view of image i is row i, its target the sample's
 *           label. A sample whose label is missing (PROTO_LABEL_NONE) or not
 *           in 0..classes-1 has nothing to learn from: batch_sample_usable
 *           says so and the receive thread skips it (trainer/feed.h).
 * uint8 views are scaled to [0, 1]; float32 views are copied as they are.
 */
#ifndef TRAINER_BATCH_H
#define TRAINER_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "trainer/options.h"

#define BATCH_U8_SCALE (1.0f / 255.0f)

/* What every accepted ViewBatch must look like. A zero views/channels/
 * height/width means "not known yet": batch_shape_learn takes it from the
 * first valid message. */
typedef struct {
    train_method_t method;
    uint32_t images;        /* B, images per batch */
    uint32_t views;         /* K, views per sample in the stream */
    uint32_t channels, height, width;
    uint32_t classes;       /* rotnet: targets must be in [0, classes);
                               supervised: labels outside it are skipped;
                               pretext: the ViewBatches' target_classes, learnt
                               from the first one when 0 */
} batch_shape_t;

typedef struct {
    float *x;               /* (rows, C, H, W) */
    int32_t *targets;       /* (rows), rotnet, supervised and pretext, else NULL */
    uint32_t filled;        /* images placed so far, 0..images */
    uint32_t max_epoch;     /* largest epoch among the samples */
    uint64_t *index;        /* (images) dataset index of each image, for the Ack */
    uint32_t *epoch;        /* (images) epoch of each image */
} batch_t;

/* Views per source image used in a batch: 2 (simclr), K (rotnet, pretext) or 1
 * (supervised). */
uint32_t batch_views_used(const batch_shape_t *s);
/* Rows of a full batch: images x batch_views_used. */
uint32_t batch_rows(const batch_shape_t *s);
/* Floats of one view, C*H*W. */
size_t batch_view_floats(const batch_shape_t *s);
/* 1 when every dimension is known. */
int batch_shape_complete(const batch_shape_t *s);

/* Checks vb against s (the known dimensions, the method's needs, the
 * targets): 0, or -1 with err saying what is wrong. Does not change s. */
int batch_check(const batch_shape_t *s, const proto_viewbatch_t *vb, char *err, size_t errlen);
/* Fills the unknown dimensions of s from vb (which batch_check accepted). */
void batch_shape_learn(batch_shape_t *s, const proto_viewbatch_t *vb);

/* Allocates a batch for a complete shape: 0 or -1 (out of memory). */
int batch_alloc(batch_t *b, const batch_shape_t *s);
void batch_release(batch_t *b);
void batch_reset(batch_t *b);

/* 1 when sample smp can be trained on under s: always, except a supervised
 * sample whose label is not in 0..classes-1. */
int batch_sample_usable(const batch_shape_t *s, const proto_view_sample_t *smp);

/* Copies sample i of vb (checked, and usable) into the next free image slot of b.
 * Returns 1 when b is full afterwards, else 0. */
int batch_put(batch_t *b, const batch_shape_t *s, const proto_viewbatch_t *vb, uint32_t i);

/* One image of a batch as the ranks of a data-parallel run compare them. */
typedef struct {
    uint32_t epoch, pad;
    uint64_t index;
} batch_id_t;

/* all: every rank's `per` image ids in rank order. Marks drop[i] for image
 * i of rank `rank` when a lower rank holds the same (epoch, index), so that
 * of copies that reached several ranks only the lowest rank's is trained.
 * Leaves the other drop[] entries as they are; returns how many it marked
 * (rank x per x per comparisons). */
uint32_t batch_mark_copies(const batch_id_t *all, int rank, uint32_t per, uint8_t *drop);

/* Takes the images i with drop[i] != 0 (i < filled) out of b, moving the
 * others down in their order (their views and targets with them), so that
 * b is a partly filled batch that batch_put can fill again. Returns how many
 * were taken out. */
uint32_t batch_remove(batch_t *b, const batch_shape_t *s, const uint8_t *drop);
/* Moves images from the end of src into dst (their views, targets and ids)
 * until dst is full or src empty; returns how many. Joins two partly
 * filled batches of one shape. */
uint32_t batch_move(batch_t *dst, batch_t *src, const batch_shape_t *s);

#endif

/* evaluator/data: the labeled images the encoders are evaluated on, decoded
 * once and kept in memory as 8-bit pixels, and the features of an encoder
 * (or the raw pixels) computed from them.
 */
#ifndef EVALUATOR_DATA_H
#define EVALUATOR_DATA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "evaluator/options.h"
#include "nn/net.h"

typedef struct {
    char source[EVAL_MAX_PATH + 32]; /* "PATH" or "PATH (held out)", for messages */
    size_t n;
    int c, h, w;
    int n_classes;
    uint8_t *pixels;                 /* (n, H, W, C) */
    int32_t *labels;                 /* (n), in 0..n_classes-1 */
} eval_images;

typedef struct {
    eval_images train, test;
    int n_classes;                   /* max over both sets */
} eval_data;

/* The training and test data of the options as opened: --train-data or
 * Fashion-MNIST's train file; --test-data, Fashion-MNIST's t10k file when
 * neither is given, else NULL (held out of the training data). */
void eval_data_paths(const eval_options *o, const char **train, const char **test);

/* The shape (channels, height, width) of the first training image as stored,
 * before any network says which it takes. 0, or -1 with err. */
int eval_data_native_shape(const eval_options *o, int *c, int *h, int *w, char *err, size_t errlen);

/* Loads the training and test images of the options at the shape the
 * network takes (c, h, w): channels are converted (1 <-> 3) by the decoder,
 * any other size difference is an error that says so. stop (may be NULL) is
 * checked between chunks of images. 0, or -1 with err. */
int eval_data_load(eval_data *d, const eval_options *o, int c, int h, int w, atomic_int *stop,
                   char *err, size_t errlen);
void eval_data_release(eval_data *d);

/* x (n, C, H, W) float32 in [0, 1] from images first .. first + n - 1. */
void eval_images_to_float(const eval_images *im, size_t first, size_t n, float *x);

/* Encoder features of every image, each the mean over `views` views of it
 * (EVAL_VIEWS_*, evaluator/readout.h), in batches of the net's max batch, with
 * a progress line named `what`. *out (n, feat_dim) malloc'd. 0, or -1 with err
 * (out of memory, or stopped by `stop`). */
int eval_encode_images(nn_net *net, const eval_images *im, int views, const char *what, atomic_int *stop,
                       float **out, char *err, size_t errlen);
/* Encoder features of n images given as floats x (n, C, H, W) into out (n, feat_dim). */
void eval_encode_floats(nn_net *net, const float *x, size_t n, float *out);

/* The raw pixels as features: *out (n, C * H * W) in [0, 1], malloc'd. */
int eval_raw_pixels(const eval_images *im, float **out, int *dim, char *err, size_t errlen);

/* Two augmented views (recipe text, seeded) of the first `count` images:
 * *v1, *v2 (count, C, H, W) float32, malloc'd. Needs square images. */
int eval_view_pairs(const eval_images *im, size_t count, const char *recipe, uint64_t seed,
                    float **v1, float **v2, char *err, size_t errlen);

#endif

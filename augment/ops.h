/* ops: the pixel work of the augmentations, on planar float images.
 *
 * A working image is (C, S, S) float in [0, 1], C = 1 or 3, planes of n = S*S
 * values. Functions take outputs first, sizes last, and never allocate:
 * scratch buffers come from the caller (aug_t owns them).
 */
#ifndef AUGMENTER_OPS_H
#define AUGMENTER_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "augment/rng.h"

/* Luminance weights (ITU-R 601), the ones grayscale conversion uses. */
#define AUG_GRAY_R 0.299f
#define AUG_GRAY_G 0.587f
#define AUG_GRAY_B 0.114f

#define AUG_U8_SCALE 255.0f   /* uint8 pixel value of 1.0 */
#define AUG_CROP_ATTEMPTS 10   /* random boxes tried before the centre fallback */

/* ---- geometry ---- */
typedef struct {
    int32_t x, y, w, h;      /* integer box in source pixels */
} aug_box_t;

/* A random resized crop of a W x H image: area fraction in [scale_lo, scale_hi],
 * aspect ratio w/h log-uniform in [ratio_lo, ratio_hi]; after
 * AUG_CROP_ATTEMPTS misses, the largest centred box with a ratio in range. */
void aug_crop_box(aug_box_t *box, aug_rng_t *rng, int32_t W, int32_t H,
                  float scale_lo, float scale_hi, float ratio_lo, float ratio_hi);

/* Resampling taps of one output pixel: weights w[0..n) for source pixels start.. */
typedef struct {
    int32_t start;
    int32_t n;
} aug_tap_t;

/* Maximum taps per output pixel when `in_len` source pixels map to `out_n`. */
int aug_taps_max(double in_len, int32_t out_n);
/* Triangle-filter taps for out_n outputs from source span [x0, x0 + len) of an
 * in_n-pixel axis, mirrored when flip; support widens with the shrink factor
 * (antialiasing). Weights sum to `gain`. w is (out_n, maxn). */
void aug_taps_build(aug_tap_t *taps, float *w, int maxn, int32_t out_n,
                    double x0, double len, int32_t in_n, int flip, float gain);

/* Resamples box of the (H, W, src_c) uint8 image into out (C, S, S) in [0, 1],
 * flipped when flip. Channel conversion: 1 -> 3 replicates, 3/4 -> 1 takes the
 * luminance; the alpha of 2 and 4 channels is ignored. tmp holds
 * aug_resample_tmp_floats() floats; taps S entries per axis, weights S times
 * aug_taps_max() per axis. */
size_t aug_resample_tmp_floats(const aug_box_t *box, int32_t S, int32_t src_c);
void aug_resample(float *out, float *tmp, aug_tap_t *xt, float *xw, aug_tap_t *yt, float *yw,
                  const uint8_t *src, int32_t H, int32_t W, int32_t src_c,
                  const aug_box_t *box, int flip, int32_t C, int32_t S);

/* dst = src rotated counter-clockwise by k x 90 degrees (k mod 4); dst != src. */
void aug_rotate90(float *dst, const float *src, int k, int32_t C, int32_t S);

/* ---- colour: a 3x4 affine map of RGB, composed then applied once ---- */
typedef struct {
    float m[3][3];
    float b[3];
} aug_color_t;

void aug_color_identity(aug_color_t *c);
/* c = op o c (op applied after c). */
void aug_color_then(aug_color_t *c, const aug_color_t *op);
void aug_color_brightness(aug_color_t *op, float f);
/* Contrast around `mean_gray`, the mean luminance of the image it applies to. */
void aug_color_contrast(aug_color_t *op, float f, float mean_gray);
void aug_color_saturation(aug_color_t *op, float f);
/* Hue shift by `h` of a full turn: a rotation about the gray axis. */
void aug_color_hue(aug_color_t *op, float h);
void aug_color_gray(aug_color_t *op);
/* Mean luminance after c of an image whose channel means are mu. */
float aug_color_mean_gray(const aug_color_t *c, const float mu[3]);
/* Channel means of img (C = 1 gives mu[0..2] all equal). */
void aug_mean(float mu[3], const float *img, int32_t C, int32_t n);
/* img = clamp(c(img)) in place. With C = 1 the gray axis is mapped. */
void aug_color_apply(float *img, const aug_color_t *c, int32_t C, int32_t n);

/* ---- spatial ---- */
/* Square of side `side` centred at (cx, cy), clipped, set to fill[c]. */
void aug_cutout(float *img, int32_t cx, int32_t cy, int32_t side, const float *fill,
                int32_t C, int32_t S);
/* img += N(0, sigma^2) per value, clamped to [0, 1]. */
void aug_noise(float *img, aug_rng_t *rng, float sigma, int32_t C, int32_t n);
/* Odd Gaussian kernel of `ksize` taps, normalised; ksize <= AUG_MAX_KERNEL. */
#define AUG_MAX_KERNEL 255
void aug_gauss_kernel(float *k, int ksize, float sigma);
/* Separable blur with reflected borders; tmp (S*S) and pad (S + ksize) floats. */
void aug_blur(float *img, float *tmp, float *pad, const float *k, int ksize, int32_t C, int32_t S);
/* Sobel gradient magnitude of the luminance, / 4 and clamped, in every channel;
 * replicated borders; tmp holds S*S floats. */
void aug_sobel(float *img, float *tmp, int32_t C, int32_t S);

/* ---- output ---- */
/* out (n, C) interleaved bytes = img (C, n) clamped, x 255, rounded: the
 * view as an 8-bit image, for libvips steps. */
void aug_hwc_u8(uint8_t *out, const float *img, int32_t C, int32_t n);

/* out (C, n) = clamp(c(img)) then (x - mean) * inv_std as float, or x * 255
 * rounded as uint8 (u8 != 0). c may be NULL (identity); inv_std NULL: no
 * normalisation. */
void aug_write(void *out, int u8, const float *img, const aug_color_t *c,
               const float *mean, const float *inv_std, int32_t C, int32_t n);

#endif

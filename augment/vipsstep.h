/* vipsstep: recipe steps that run libvips on the view.
 *
 *   vips:NAME[:arg=value...]   any libvips operation that takes one image and
 *                              returns one (vips_sharpen, vips_rotate, ...)
 *   jpeg[:q=LO-HI]             JPEG save and load at a random quality
 *
 * Parsing asks libvips's own introspection (the operation's class, its
 * arguments and their GParamSpecs) whether the operation has exactly one
 * required input image and one required output image, and whether every
 * argument given exists, has a type a recipe can write, and a value in its
 * range; it fills an aug_step_t, plain data kept in the recipe.
 *
 * Running: aug_vips_new() resolves a step once per aug_t; aug_vips_run()
 * draws the ranged arguments from the view's random stream, writes the
 * (C, S, S) float view as an S x S 8-bit image (sRGB, or B_W when C = 1),
 * runs the operation, and hands back its result as (H, W, B) bytes. The
 * caller resamples that back to the view (augment.c: a larger result is
 * centre-cropped to S, a smaller one stretched). Pixels are computed in the
 * calling thread (a region over the whole result), bypassing the operation
 * cache for the step itself.
 *
 * Nothing here runs a libvips pipeline before aug_vips_run(): parsing and
 * aug_vips_new() only create and inspect operation objects, which starts no
 * thread, so a process may parse, then fork its workers.
 */
#ifndef AUGMENTER_VIPSSTEP_H
#define AUGMENTER_VIPSSTEP_H

#include <stdint.h>

#include "augment/augment.h"
#include "augment/rng.h"

/* Starts libvips if nobody has (then with the operation cache off and one
 * thread per pipeline, as the augmenter's workers want). Returns 0, or -1
 * with err filled. */
int aug_vips_start(char *err, size_t errlen);

/* Fills st for `vips:NAME` (jpeg = 0) or `jpeg` (jpeg = 1, name ignored)
 * with the n key=value arguments (p and per are the caller's). `item` is the
 * recipe item number for messages. Returns 0, or -1 with err filled. */
int aug_vips_parse(aug_step_t *st, int item, const char *name, int jpeg, int n,
                   char *const *keys, char *const *vals, char *err, size_t errlen);

/* Writes the step as recipe text ("vips:sharpen:sigma=0.5-2") into buf. */
void aug_vips_format(const aug_step_t *st, char *buf, size_t len);

typedef struct aug_vips aug_vips_t;

/* Resolves st (copied) for views of side S with C channels. NULL with
 * err filled when libvips no longer knows it. */
aug_vips_t *aug_vips_new(const aug_step_t *st, int32_t C, int32_t S, char *err, size_t errlen);
void aug_vips_destroy(aug_vips_t **self_p);

/* The result of one run: (h, w, bands) bytes, owned by the aug_vips_t and
 * valid until its next run. */
typedef struct {
    const uint8_t *pixels;
    int32_t h, w, bands;
} aug_vips_result_t;

/* Runs the step on img (C, S, S) in [0, 1], drawing its ranged arguments
 * from rng. Returns 0, or -1 with err filled (libvips's message). */
int aug_vips_run(aug_vips_t *v, aug_rng_t *rng, const float *img, aug_vips_result_t *res, char *err, size_t errlen);

#endif

/* preview: one PNG showing what each augmentation does to an image, like the
 * figure of SimCLR's augmentation study: the input, then each of the ten
 * operations, a SimCLR view and a few libvips steps (vips:NAME, jpeg), each
 * labeled, small images enlarged. */
#ifndef AUGMENTER_PREVIEW_H
#define AUGMENTER_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

/* Reads image_path with libvips, writes the grid to out_path (PNG).
 * size: side of the views, 0 picks the image's smaller side up to 224.
 * Call after VIPS_INIT. Returns 0, or -1 with err filled. */
int aug_preview_write(const char *image_path, const char *out_path, uint32_t size, uint64_t seed,
                      char *err, size_t errlen);

#define AUG_RECIPE_LABEL_LEN 160   /* a tile label made from a recipe step */

/* The same, plus one tile for each vips: and jpeg item of recipe_text (a
 * recipe as aug_recipe_parse() takes it; NULL: none), shown alone at p = 1
 * and labeled with its text, up to AUG_MAX_STEPS of them. */
int aug_preview_write_recipe(const char *image_path, const char *out_path, uint32_t size,
                             uint64_t seed, const char *recipe_text, char *err, size_t errlen);

#endif

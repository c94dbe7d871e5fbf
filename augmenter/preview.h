/* preview: one PNG showing what each augmentation does to an image, like the
 * figure of SimCLR's augmentation study: the input, then each of the ten
 * operations and a SimCLR view, each labeled, small images enlarged. */
#ifndef AUGMENTER_PREVIEW_H
#define AUGMENTER_PREVIEW_H

#include <stdint.h>

/* Reads image_path with libvips, writes the grid to out_path (PNG).
 * size: side of the views, 0 picks the image's smaller side up to 224.
 * Call after VIPS_INIT. Returns 0, or -1 with aug_error(). */
int aug_preview_write(const char *image_path, const char *out_path, uint32_t size, uint64_t seed);

#endif

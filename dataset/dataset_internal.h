/* Shared between dataset.c (listing, binary formats) and decode.c (pixels). */
#ifndef DATASET_DATASET_INTERNAL_H
#define DATASET_DATASET_INTERNAL_H

#include <stdarg.h>

#include "dataset/dataset.h"

/* Fills err (reason + formatted message); returns -1 so callers can
 * `return dataset__fail(...)`. */
int dataset__fail(dataset_error_t *err, dataset_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Decodes the encoded image file at `path`. */
int dataset__decode_file(const char *path, const dataset_decode_opts_t *opts,
                         dataset_image_t *img, dataset_error_t *err);

/* Converts raw 8-bit pixels, (H, W, C) or, when planar, (C, H, W), into img
 * with the requested channels and size limit. `name` is for messages. */
int dataset__from_pixels(const uint8_t *src, uint32_t height, uint32_t width, uint32_t channels,
                         int planar, const char *name, const dataset_decode_opts_t *opts,
                         dataset_image_t *img, dataset_error_t *err);

/* Makes sure *buf holds at least `need` bytes; 0 or -1 (out of memory). */
int dataset__reserve(uint8_t **buf, size_t *cap, size_t need);

#endif

/* dataset: opens an image dataset on disk, lists its items with their labels,
 * and reads item i as 8-bit HWC pixels.
 *
 * Formats (detected from what is on disk, or forced):
 *  - folder: one sub-folder per class (label = index of the sub-folder in
 *    byte-sorted order), or a flat folder of images (label DATASET_LABEL_NONE).
 *    Files are listed in sorted order so that indices are stable. Every format
 *    libvips loads is accepted (JPEG, PNG, WebP, TIFF, GIF, ...).
 *  - idx: `*-images-idx3-ubyte` (plain or .gz) with the matching
 *    `*-labels-idx1-ubyte[.gz]` (MNIST, Fashion-MNIST). Given a folder, its
 *    train-* files are used.
 *  - cifar10: data_batch_*.bin (or test_batch.bin), records of 1 label byte
 *    and 3072 bytes (3, 32, 32).
 *  - cifar100: train.bin (or test.bin), records of 2 label bytes (coarse,
 *    fine; the fine label is used) and 3072 bytes (3, 32, 32).
 *
 * Reading is thread-safe: several threads may call dataset_read on one
 * dataset, each with its own dataset_image_t.
 */
#ifndef DATASET_DATASET_H
#define DATASET_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define DATASET_LABEL_NONE       (-1)
#define DATASET_DEFAULT_MAX_PIXELS (50u * 1000u * 1000u)  /* decompression-bomb guard */
#define DATASET_MESSAGE_MAX      512

typedef enum {
    DATASET_FORMAT_AUTO = 0,
    DATASET_FORMAT_FOLDER,
    DATASET_FORMAT_IDX,
    DATASET_FORMAT_CIFAR10,
    DATASET_FORMAT_CIFAR100,
} dataset_format_t;

/* Why an item could not be read; the loader counts skips per reason. */
typedef enum {
    DATASET_OK = 0,
    DATASET_ERR_UNREADABLE,   /* cannot open or read the file */
    DATASET_ERR_CORRUPT,      /* not an image, corrupt or truncated, unsupported layout */
    DATASET_ERR_TOO_LARGE,    /* width x height above max_pixels (checked before decoding) */
    DATASET_N_REASONS
} dataset_reason_t;

typedef struct {
    dataset_reason_t reason;
    char message[DATASET_MESSAGE_MAX];  /* names the file: "data/cat/12.jpg: truncated JPEG" */
} dataset_error_t;

typedef struct {
    int channels;           /* 0 keeps the image's own (grayscale 1, colour 3); or 1 or 3 */
    uint32_t max_side;      /* 0: no limit; else larger images shrink while loading */
    uint64_t max_pixels;    /* 0: no limit; else refuse larger images before decoding */
} dataset_decode_opts_t;

/* One decoded image; dataset_read grows the buffers as needed. Release with
 * dataset_image_release. */
typedef struct {
    uint32_t height, width, channels;
    uint8_t *pixels;        /* (H, W, C) uint8 */
    size_t pixels_cap;
    uint8_t *file;          /* scratch: the encoded file's bytes */
    size_t file_cap;
    char note[DATASET_MESSAGE_MAX];  /* after a successful read: what the conversion to
                                        8-bit gray/sRGB lost, naming the file ("x.png:
                                        alpha dropped, 16-bit reduced to 8-bit"), or "" */
} dataset_image_t;

typedef struct dataset dataset_t;

/* Opens the dataset at `path`. Returns NULL with `err` filled (a message and,
 * on a second line, a HINT) when the path is missing, unrecognised, invalid
 * or holds no items. */
dataset_t *dataset_new(const char *path, dataset_format_t format, char *err, size_t err_len);
void dataset_destroy(dataset_t **self_p);

dataset_format_t dataset_format(const dataset_t *ds);
size_t dataset_count(const dataset_t *ds);
/* Number of classes (0 for an unlabeled folder). */
int dataset_n_classes(const dataset_t *ds);
/* Name of class c ("airplane", or "3" for numeric-labelled formats). */
const char *dataset_class_name(const dataset_t *ds, int c);
int dataset_label(const dataset_t *ds, size_t i);
/* Human-readable name of item i, written to buf: a file path, or
 * "file[record]" for records of a binary file. */
const char *dataset_item_name(const dataset_t *ds, size_t i, char *buf, size_t n);

/* Reads item i into img. Returns 0 (img->note says what a lossy conversion
 * dropped, if anything), or -1 with err->reason and err->message. */
int dataset_read(const dataset_t *ds, size_t i, const dataset_decode_opts_t *opts,
                 dataset_image_t *img, dataset_error_t *err);

void dataset_image_init(dataset_image_t *img);
void dataset_image_release(dataset_image_t *img);

/* Parses "auto|folder|idx|cifar10|cifar100"; -1 when unknown. */
int dataset_format_parse(const char *s, dataset_format_t *out);
const char *dataset_format_name(dataset_format_t f);
/* "unreadable", "corrupt", "too_large". */
const char *dataset_reason_name(dataset_reason_t r);

/* Starts libvips, once per process, for decoding image files: cache off, one
 * worker thread per call, its warnings silenced (every failure is reported
 * through dataset_error_t). dataset_new calls it for an image folder, and a
 * decode that needs libvips calls it first. 0, or -1 with err filled
 * ("dataset: cannot start libvips: ...") when libvips cannot start; every
 * later call gives the same answer, so a program asks after dataset_new to
 * tell this failure from a bad dataset. */
int dataset_decoder_start(char *err, size_t errlen);

/* Releases libvips' per-thread state; call at the end of every thread that
 * called dataset_read. */
void dataset_thread_done(void);

#endif

/* nn/safetensors: reading and writing safetensors files (F32 only).
 *
 * Layout: 8-byte little-endian header length H, H bytes of JSON
 *   { "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 *     "__metadata__": {"<key>": "<string>", ...} }
 * then the data section; offsets are relative to it. The reader checks that
 * the tensors tile the data section exactly (no gap, no overlap, nothing
 * missing), so a truncated or padded file is refused.
 */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"

#define NN_ST_MAX_HEADER (64u << 20)   /* bytes of JSON header we accept */

typedef struct nn_st_entry {
    char name[NN_MAX_NAME];
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t numel;
    size_t begin, end;                 /* byte offsets in the data section */
} nn_st_entry;

typedef struct nn_st_file {
    unsigned char *blob;               /* the whole file */
    size_t size;
    size_t data_off;                   /* start of the data section in blob */
    nn_st_entry *e;                    /* tensors in data order */
    int n;
    char **meta_keys, **meta_vals;     /* __metadata__, strings */
    int n_meta;
} nn_st_file;

/* Reads and validates `path`; 0, or -1 with a message naming the file and
 * the problem. nn_st_close releases it (also after a failure). */
int nn_st_read(nn_st_file *f, const char *path, char *err, size_t errlen);
void nn_st_close(nn_st_file *f);
const nn_st_entry *nn_st_find(const nn_st_file *f, const char *name);
/* Copies the tensor's floats (numel) into dst. */
void nn_st_copy(const nn_st_file *f, const nn_st_entry *e, float *dst);
/* Metadata value, or NULL. */
const char *nn_st_meta(const nn_st_file *f, const char *key);
/* CRC-32 (zlib) of the data section. */
uint32_t nn_st_data_crc(const nn_st_file *f);

/* One tensor to write. */
typedef struct nn_st_item {
    const char *name;
    int ndim;
    const int *shape;
    const float *data;
} nn_st_item;

/* Writes items and metadata (n_meta key/value string pairs) to `path`
 * atomically: a temporary file beside it, fsync, rename, fsync of the folder.
 * If `crc_key` is not NULL, metadata gets crc_key = "crc32:<hex>" of the
 * data section. 0 or -1 with err set; on failure `path` is untouched. */
int nn_st_write(const char *path, const nn_st_item *items, int n,
                const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                const char *crc_key, char *err, size_t errlen);

#endif

/* pool: decoding threads that read items ahead of the sender and hand them
 * over in the order asked for (the epoch's shuffled order).
 *
 * Each thread takes the next position, decodes that item (or finds it in the
 * cache) into the position's slot in a window of slots, and marks it ready;
 * the sending thread takes ready slots strictly in order. The window bounds
 * how far ahead the threads run, so memory stays bounded.
 */
#ifndef LOADER_POOL_H
#define LOADER_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"
#include "loader/cache.h"

typedef struct {
    size_t item;                /* dataset index */
    int ok;                     /* 1 decoded or cached; 0 failed (err says why) */
    dataset_error_t err;
    uint32_t height, width, channels;
    const uint8_t *pixels;      /* (H, W, C), valid until pool_release */
    int cached;                 /* pixels come from the cache */
    const char *note;           /* decoded with a lossy conversion: what it dropped (valid
                                   until pool_release); NULL otherwise or when cached */
} pool_result_t;

typedef struct pool pool_t;

/* Starts `threads` decoding threads. The dataset, options and cache must
 * outlive the pool; the pool only reads the cache. */
pool_t *pool_new(const dataset_t *ds, const dataset_decode_opts_t *opts, const cache_t *cache, int threads,
                 size_t window);
/* Joins the threads (they finish the item in hand first). */
void pool_destroy(pool_t **self_p);

/* Starts an epoch over items[0..n); the array must stay unchanged until the
 * epoch's last result is released. The previous epoch must be fully consumed. */
void pool_start_epoch(pool_t *p, const size_t *items, size_t n);

/* The next result in order, waiting for it; NULL after the epoch's last one. */
const pool_result_t *pool_next(pool_t *p);
/* Gives back the slot of the result returned by pool_next. */
void pool_release(pool_t *p);

/* Ends the epoch early: no new positions are started; pool_next returns
 * those already being decoded, then NULL. */
void pool_cancel_epoch(pool_t *p);

#endif

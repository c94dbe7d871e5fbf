/* cache: decoded images kept in memory between epochs, within a byte budget.
 *
 * Entries live in a few large chunks (one arena), never freed one by one:
 * the first epoch fills the cache, later epochs read it. An item that does
 * not fit is simply not cached and is decoded again next time.
 *
 * Thread use: one thread puts; any thread may get (entries are published with
 * release/acquire ordering and never change once published).
 */
#ifndef LOADER_CACHE_H
#define LOADER_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t height, width, channels;
    uint32_t pad_;
    uint8_t pixels[];       /* (H, W, C) uint8 */
} cache_entry_t;

typedef struct cache cache_t;

/* A cache for items 0..n_items-1 holding at most budget_bytes of pixel data
 * (0 disables caching). */
cache_t *cache_new(size_t n_items, size_t budget_bytes);
void cache_destroy(cache_t **self_p);

/* The entry of item, or NULL when it is not cached. */
const cache_entry_t *cache_get(const cache_t *c, size_t item);

/* Copies an image in; 0 stored, -1 when it does not fit in the budget. */
int cache_put(cache_t *c, size_t item, const uint8_t *pixels, uint32_t height, uint32_t width,
              uint32_t channels);

size_t cache_count(const cache_t *c);
size_t cache_bytes(const cache_t *c);   /* bytes held by entries */

#endif

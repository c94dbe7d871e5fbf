#include "loader/cache.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_CHUNK_BYTES ((size_t)64 << 20)
#define CACHE_ALIGN       16

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    uint8_t *data;
} chunk_t;

struct cache {
    _Atomic(const cache_entry_t *) *entries;   /* (n_items) */
    size_t n_items;
    size_t budget, allocated;
    size_t count;
    size_t used;                     /* bytes of entries */
    chunk_t *chunks;                 /* newest first */
    int full;                        /* nothing more fits */
};

cache_t *cache_new(size_t n_items, size_t budget_bytes)
{
    cache_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->entries = calloc(n_items ? n_items : 1, sizeof *c->entries);
    if (!c->entries) {
        free(c);
        return NULL;
    }
    c->n_items = n_items;
    c->budget = budget_bytes;
    return c;
}

void cache_destroy(cache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cache_t *c = *self_p;
    for (chunk_t *k = c->chunks, *next; k; k = next) {
        next = k->next;
        free(k->data);
        free(k);
    }
    free(c->entries);
    free(c);
    *self_p = NULL;
}

const cache_entry_t *cache_get(const cache_t *c, size_t item)
{
    if (item >= c->n_items)
        return NULL;
    return atomic_load_explicit(&c->entries[item], memory_order_acquire);
}

/* Room for `need` bytes: in the current chunk, or in a new one within budget. */
static uint8_t *reserve(cache_t *c, size_t need)
{
    chunk_t *k = c->chunks;
    if (k && k->size - k->used >= need) {
        uint8_t *p = k->data + k->used;
        k->used += need;
        return p;
    }
    size_t left = c->budget - c->allocated;
    size_t size = CACHE_CHUNK_BYTES < left ? CACHE_CHUNK_BYTES : left;
    if (size < need)
        return NULL;
    k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->data = malloc(size);
    if (!k->data) {
        free(k);
        return NULL;
    }
    k->size = size;
    k->used = need;
    k->next = c->chunks;
    c->chunks = k;
    c->allocated += size;
    return k->data;
}

int cache_put(cache_t *c, size_t item, const uint8_t *pixels, uint32_t height, uint32_t width,
              uint32_t channels)
{
    if (item >= c->n_items || c->entries[item])
        return -1;
    size_t bytes = (size_t)height * width * channels;
    size_t need = (sizeof(cache_entry_t) + bytes + CACHE_ALIGN - 1) & ~(size_t)(CACHE_ALIGN - 1);
    if (c->full || need > c->budget)
        return -1;
    cache_entry_t *e = (cache_entry_t *)reserve(c, need);
    if (!e) {
        /* Once a chunk cannot be had, stop trying (images are similar in size). */
        if (c->allocated + CACHE_ALIGN > c->budget)
            c->full = 1;
        return -1;
    }
    e->height = height;
    e->width = width;
    e->channels = channels;
    e->pad_ = 0;
    memcpy(e->pixels, pixels, bytes);
    atomic_store_explicit(&c->entries[item], e, memory_order_release);
    c->count++;
    c->used += need;
    return 0;
}

size_t cache_count(const cache_t *c) { return c->count; }
size_t cache_bytes(const cache_t *c) { return c->used; }

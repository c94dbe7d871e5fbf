#include "loader/order.h"
#include "splitmix/splitmix.h"

#define EPOCH_SALT     0xD1B54A32D192ED03ull

size_t order_select(size_t *out, size_t n, size_t limit, uint32_t shard_index, uint32_t shard_count)
{
    size_t end = limit && limit < n ? limit : n;
    size_t k = 0;
    for (size_t i = 0; i < end; i++)
        if (shard_count <= 1 || i % shard_count == shard_index)
            out[k++] = i;
    return k;
}

/* Uniform in [0, bound) without modulo bias (multiply-and-reject). */
static uint64_t next_below(uint64_t *state, uint64_t bound)
{
    unsigned __int128 m = (unsigned __int128)splitmix64_next(state) * bound;
    uint64_t low = (uint64_t)m;
    if (low < bound) {
        uint64_t threshold = -bound % bound;
        while (low < threshold) {
            m = (unsigned __int128)splitmix64_next(state) * bound;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void order_shuffle(size_t *items, size_t n, uint64_t seed, uint32_t epoch)
{
    uint64_t state = seed ^ ((uint64_t)(epoch + 1) * EPOCH_SALT);
    splitmix64_next(&state);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)next_below(&state, i);
        size_t t = items[i - 1];
        items[i - 1] = items[j];
        items[j] = t;
    }
}

/* order: which items this loader serves (limit, shard) and in what order
 * each epoch (a shuffle drawn from the seed and the epoch number, so the
 * same seed gives the same orders and each epoch a different one). */
#ifndef LOADER_ORDER_H
#define LOADER_ORDER_H

#include <stddef.h>
#include <stdint.h>

/* Items 0..min(limit, n)-1 (limit 0: all) whose index % shard_count ==
 * shard_index, written to out (room for n); returns how many. */
size_t order_select(size_t *out, size_t n, size_t limit, uint32_t shard_index, uint32_t shard_count);

/* Shuffles items[0..n) in place for (seed, epoch). */
void order_shuffle(size_t *items, size_t n, uint64_t seed, uint32_t epoch);

#endif

/* rng: a counter-based random generator for augmentations.
 *
 * A stream is a 64-bit key derived from (seed, epoch, index, view, stream id);
 * draw n is mix(key + n * golden), where mix is a strong 64-bit finaliser. No
 * state is carried between samples, so any worker that knows the tuple draws
 * the same numbers, in any order.
 */
#ifndef AUGMENTER_RNG_H
#define AUGMENTER_RNG_H

#include <stdint.h>
#include <math.h>

#include "splitmix/splitmix.h"

#define AUG_RNG_GOLDEN SPLITMIX64_GAMMA

typedef struct {
    uint64_t key;
    uint64_t ctr;
} aug_rng_t;

static inline uint64_t aug_rng_mix(uint64_t z)
{
    return splitmix64_mix(z);
}

static inline void aug_rng_init(aug_rng_t *r, uint64_t seed, uint32_t epoch,
                                uint64_t index, uint32_t view, uint32_t stream)
{
    uint64_t k = aug_rng_mix(seed + AUG_RNG_GOLDEN);
    k = aug_rng_mix(k ^ ((uint64_t)epoch + 1 * AUG_RNG_GOLDEN));
    k = aug_rng_mix(k ^ (index + 2 * AUG_RNG_GOLDEN));
    k = aug_rng_mix(k ^ ((uint64_t)view << 32 | stream));
    r->key = k;
    r->ctr = 0;
}

static inline uint64_t aug_rng_u64(aug_rng_t *r)
{
    r->ctr++;
    return aug_rng_mix(r->key + r->ctr * AUG_RNG_GOLDEN);
}

/* Uniform in [0, 1) with 24 random bits. */
static inline float aug_rng_float(aug_rng_t *r)
{
    return (float)(aug_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double aug_rng_double(aug_rng_t *r)
{
    return (double)(aug_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double aug_rng_uniform(aug_rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * aug_rng_double(r);
}

/* Uniform integer in [0, n), n >= 1. */
static inline uint32_t aug_rng_below(aug_rng_t *r, uint32_t n)
{
    return (uint32_t)(((aug_rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

#endif

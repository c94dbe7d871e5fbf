/* splitmix: the splitmix64 generator, the one definition the libraries and
 * stages share (parameter initialisation, shuffles, class-balanced subsets,
 * augmentation streams).
 *
 * splitmix64_next() steps a state by the golden-ratio increment and returns
 * the mixed value; splitmix64_mix() is its 64-bit finaliser alone, for
 * counter-based streams that hash (key + n * SPLITMIX64_GAMMA). The same state
 * or input always gives the same value on every machine.
 */
#ifndef SPLITMIX_SPLITMIX_H
#define SPLITMIX_SPLITMIX_H

#include <stdint.h>

#define SPLITMIX64_GAMMA 0x9e3779b97f4a7c15ULL   /* 2^64 / golden ratio, odd */

static inline uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The next value of the generator with state *s. */
static inline uint64_t splitmix64_next(uint64_t *s)
{
    return splitmix64_mix(*s += SPLITMIX64_GAMMA);
}

#endif

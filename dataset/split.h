/* dataset/split: seeded, class-balanced choices of items.
 *
 * Every choice is stratified: each class keeps its share of the items
 * (largest-remainder rounding, so the total is exact), and which items a
 * class keeps comes from a seeded shuffle of that class alone. The same
 * labels, count and seed always give the same items, returned in increasing
 * index order.
 */
#ifndef DATASET_SPLIT_H
#define DATASET_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"

/* Chooses `count` of the n items (count <= n) so that every class 0..k-1
 * keeps its proportion; items with a label outside 0..k-1 are never chosen.
 * *idx_out (malloc'd, caller frees) receives the *n_out chosen indices,
 * sorted. 0, or -1 with err set. */
int split_subset(const int32_t *labels, size_t n, int k, size_t count, uint64_t seed,
                 size_t **idx_out, size_t *n_out, char *err, size_t errlen);

/* Same with count = round(fraction x labelled items), at least one per class
 * present when fraction > 0; fraction >= 1 keeps every labelled item. */
int split_subset_fraction(const int32_t *labels, size_t n, int k, double fraction, uint64_t seed,
                          size_t **idx_out, size_t *n_out, char *err, size_t errlen);

/* Splits the items into two disjoint class-balanced parts: `held` gets
 * round(fraction x n) of them, `rest` the others. Both sorted, malloc'd. */
int split_two(const int32_t *labels, size_t n, int k, double fraction, uint64_t seed,
              size_t **rest, size_t *n_rest, size_t **held, size_t *n_held,
              char *err, size_t errlen);

/* The test part held out of one labeled dataset: split_two over the
 * dataset's labels with `fraction` and a seed derived from `seed`. The
 * evaluator tests on `held` when it has no separate test set, and the loader
 * (--hold-out) leaves the same items out of training, so both must call this
 * with the same fraction and seed. Unlabeled items are in neither list.
 * -1 with err set when the dataset has fewer than two classes. */
int split_test_part(const dataset_t *ds, double fraction, uint64_t seed,
                    size_t **rest, size_t *n_rest, size_t **held, size_t *n_held,
                    char *err, size_t errlen);

/* Counts of each class among the chosen items: counts (k) zeroed first. */
void split_class_counts(const int32_t *labels, const size_t *idx, size_t n, int k, size_t *counts);

#endif

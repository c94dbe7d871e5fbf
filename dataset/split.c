/* dataset/split: seeded, class-balanced choices of items (split.h). */
#include "errmsg/errmsg.h"
#include "dataset/split.h"
#include "splitmix/splitmix.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_CLASS_MIX 0xd1b54a32d192ed03ull   /* spreads class numbers over the seed space */
#define SEED_TEST_PART 0x5eedull               /* the test part's seed differs from subsets' */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

void split_class_counts(const int32_t *labels, const size_t *idx, size_t n, int k, size_t *counts)
{
    memset(counts, 0, (size_t)k * sizeof *counts);
    for (size_t i = 0; i < n; i++) {
        int32_t y = labels[idx ? idx[i] : i];
        if (y >= 0 && y < k)
            counts[y]++;
    }
}

/* Picks quota[c] items of each class by a per-class seeded partial shuffle. */
static int pick(const int32_t *labels, size_t n, int k, const size_t *quota, uint64_t seed,
                size_t **idx_out, size_t *n_out, char *err, size_t errlen)
{
    size_t *counts = calloc((size_t)k, sizeof *counts), *start = calloc((size_t)k + 1, sizeof *start);
    size_t *byclass = malloc((n ? n : 1) * sizeof *byclass), total = 0;
    size_t *out = NULL;
    if (!counts || !start || !byclass)
        goto oom;
    split_class_counts(labels, NULL, n, k, counts);
    for (int c = 0; c < k; c++) {
        start[c + 1] = start[c] + counts[c];
        total += quota[c];
    }
    out = malloc((total ? total : 1) * sizeof *out);
    if (!out)
        goto oom;
    memset(counts, 0, (size_t)k * sizeof *counts);
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < k)
            byclass[start[labels[i]] + counts[labels[i]]++] = i;
    size_t o = 0;
    for (int c = 0; c < k; c++) {
        size_t *items = byclass + start[c], m = counts[c];
        uint64_t s = seed ^ ((uint64_t)(c + 1) * SEED_CLASS_MIX);
        for (size_t j = 0; j < quota[c] && j < m; j++) {
            size_t r = j + (size_t)(splitmix64_next(&s) % (m - j));
            size_t t = items[j]; items[j] = items[r]; items[r] = t;
            out[o++] = items[j];
        }
    }
    qsort(out, o, sizeof *out, cmp_size);
    free(counts); free(start); free(byclass);
    *idx_out = out;
    *n_out = o;
    return 0;
oom:
    free(counts); free(start); free(byclass); free(out);
    errmsg_set(err, errlen, "out of memory choosing a subset of %zu items", n);
    return -1;
}

/* Largest-remainder quotas: quota[c] = count x counts[c] / labelled rounded
 * down, then one more item for the classes with the largest remainders (lower
 * class first on ties) until the quotas sum to count. */
static void quotas(const size_t *counts, int k, size_t labelled, size_t count, size_t *quota)
{
    size_t given = 0;
    for (int c = 0; c < k; c++) {
        quota[c] = labelled ? (size_t)((unsigned __int128)count * counts[c] / labelled) : 0;
        given += quota[c];
    }
    while (given < count) {
        int best = -1;
        unsigned __int128 best_rem = 0;
        for (int c = 0; c < k; c++) {
            unsigned __int128 exact = (unsigned __int128)count * counts[c];
            unsigned __int128 floor_part = (unsigned __int128)(exact / labelled) * labelled;
            if (quota[c] * (unsigned __int128)labelled > floor_part || quota[c] >= counts[c])
                continue;      /* already rounded up, or nothing left */
            unsigned __int128 rem = exact - floor_part;
            if (best < 0 || rem > best_rem) {
                best = c;
                best_rem = rem;
            }
        }
        if (best < 0)
            break;
        quota[best]++;
        given++;
    }
}

static int labelled_counts(const int32_t *labels, size_t n, int k, size_t **counts_out, size_t *labelled,
                           char *err, size_t errlen)
{
    if (k < 1) {
        errmsg_set(err, errlen, "a class-balanced choice needs at least one class, got %d", k);
        return -1;
    }
    size_t *counts = calloc((size_t)k, sizeof *counts);
    if (!counts) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    split_class_counts(labels, NULL, n, k, counts);
    *labelled = 0;
    for (int c = 0; c < k; c++)
        *labelled += counts[c];
    *counts_out = counts;
    return 0;
}

int split_subset(const int32_t *labels, size_t n, int k, size_t count, uint64_t seed,
                 size_t **idx_out, size_t *n_out, char *err, size_t errlen)
{
    size_t *counts, labelled;
    if (labelled_counts(labels, n, k, &counts, &labelled, err, errlen))
        return -1;
    if (count > labelled) {
        errmsg_set(err, errlen, "asked for %zu items but only %zu have a label in 0..%d", count, labelled, k - 1);
        free(counts);
        return -1;
    }
    size_t *quota = calloc((size_t)k, sizeof *quota);
    int rc = -1;
    if (!quota)
        errmsg_set(err, errlen, "out of memory");
    else {
        quotas(counts, k, labelled, count, quota);
        rc = pick(labels, n, k, quota, seed, idx_out, n_out, err, errlen);
    }
    free(quota);
    free(counts);
    return rc;
}

int split_subset_fraction(const int32_t *labels, size_t n, int k, double fraction, uint64_t seed,
                          size_t **idx_out, size_t *n_out, char *err, size_t errlen)
{
    if (!(fraction > 0.0)) {
        errmsg_set(err, errlen, "label fraction must be above 0, got %g", fraction);
        return -1;
    }
    size_t *counts, labelled;
    if (labelled_counts(labels, n, k, &counts, &labelled, err, errlen))
        return -1;
    size_t count = fraction >= 1.0 ? labelled : (size_t)llround(fraction * (double)labelled);
    size_t *quota = calloc((size_t)k, sizeof *quota);
    int rc = -1;
    if (!quota)
        errmsg_set(err, errlen, "out of memory");
    else {
        quotas(counts, k, labelled, count, quota);
        for (int c = 0; c < k; c++)
            if (counts[c] > 0 && quota[c] == 0)
                quota[c] = 1;
        rc = pick(labels, n, k, quota, seed, idx_out, n_out, err, errlen);
    }
    free(quota);
    free(counts);
    return rc;
}

int split_two(const int32_t *labels, size_t n, int k, double fraction, uint64_t seed,
              size_t **rest, size_t *n_rest, size_t **held, size_t *n_held,
              char *err, size_t errlen)
{
    if (!(fraction > 0.0 && fraction < 1.0)) {
        errmsg_set(err, errlen, "split fraction must be in (0, 1), got %g", fraction);
        return -1;
    }
    size_t *counts, labelled;
    if (labelled_counts(labels, n, k, &counts, &labelled, err, errlen))
        return -1;
    free(counts);
    size_t count = (size_t)llround(fraction * (double)labelled);
    if (split_subset(labels, n, k, count, seed, held, n_held, err, errlen))
        return -1;
    size_t *r = malloc((labelled - *n_held + 1) * sizeof *r), nr = 0, h = 0;
    if (!r) {
        free(*held);
        *held = NULL;
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (h < *n_held && (*held)[h] == i) {
            h++;
            continue;
        }
        if (labels[i] >= 0 && labels[i] < k)
            r[nr++] = i;
    }
    *rest = r;
    *n_rest = nr;
    return 0;
}

int split_test_part(const dataset_t *ds, double fraction, uint64_t seed,
                    size_t **rest, size_t *n_rest, size_t **held, size_t *n_held,
                    char *err, size_t errlen)
{
    size_t n = dataset_count(ds);
    int k = dataset_n_classes(ds);
    if (k < 2) {
        errmsg_set(err, errlen, "%d classes: a held-out test part needs labeled data", k);
        return -1;
    }
    int32_t *labels = malloc((n ? n : 1) * sizeof *labels);
    if (!labels) {
        errmsg_set(err, errlen, "out of memory for %zu labels", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        labels[i] = dataset_label(ds, i);
    int rc = split_two(labels, n, k, fraction, seed ^ SEED_TEST_PART, rest, n_rest, held, n_held, err, errlen);
    free(labels);
    return rc;
}

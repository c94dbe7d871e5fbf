/* evaluator/knn: weighted kNN accuracy on cosine similarity (knn.h). */
#include "errmsg/errmsg.h"
#include "evaluator/knn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/parallel.h"

#define KNN_BLOCK_ROWS 256     /* test rows whose similarities are computed at once */
#define TOPK 5

void eval_topk_hits(const double *scores, int n_classes, int label, int *hit1, int *hit5)
{
    /* rank of the label: classes strictly better, plus equal ones of lower index */
    int rank = 0;
    for (int c = 0; c < n_classes; c++)
        if (scores[c] > scores[label] || (scores[c] == scores[label] && c < label))
            rank++;
    *hit1 = rank == 0;
    *hit5 = rank < TOPK;
}

/* A min-heap of (similarity, index) of size k: the root is the weakest kept. */
typedef struct { float s; int32_t y; } neighbour;

static void heap_sift_down(neighbour *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].s < h[m].s) m = l;
        if (r < n && h[r].s < h[m].s) m = r;
        if (m == i)
            return;
        neighbour t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

typedef struct {
    const float *sim;          /* (rows, ntr) */
    const int32_t *ytr, *yte;  /* yte already offset to the block */
    size_t ntr;
    int k, n_classes;
    double temperature;
    long *hits1, *hits5;       /* per row */
    atomic_int failed;         /* set when a slice ran out of memory */
} knn_job;

static void knn_rows(void *ctx, size_t begin, size_t end)
{
    knn_job *j = ctx;
    neighbour *heap = malloc((size_t)j->k * sizeof *heap);
    double *votes = malloc((size_t)j->n_classes * sizeof *votes);
    if (!heap || !votes) {
        free(heap);
        free(votes);
        atomic_store_explicit(&j->failed, 1, memory_order_relaxed);
        return;
    }
    for (size_t r = begin; r < end; r++) {
        const float *s = j->sim + r * j->ntr;
        int n = 0;
        for (size_t i = 0; i < j->ntr; i++) {
            if (n < j->k) {
                heap[n].s = s[i];
                heap[n].y = j->ytr[i];
                if (++n == j->k)
                    for (int p = j->k / 2 - 1; p >= 0; p--)
                        heap_sift_down(heap, n, p);
            } else if (s[i] > heap[0].s) {
                heap[0].s = s[i];
                heap[0].y = j->ytr[i];
                heap_sift_down(heap, n, 0);
            }
        }
        memset(votes, 0, (size_t)j->n_classes * sizeof *votes);
        for (int i = 0; i < n; i++)
            votes[heap[i].y] += exp(((double)heap[i].s - 1.0) / j->temperature);  /* shifted: no overflow */
        int h1, h5;
        eval_topk_hits(votes, j->n_classes, j->yte[r], &h1, &h5);
        j->hits1[r] = h1;
        j->hits5[r] = h5;
    }
    free(heap);
    free(votes);
}

int eval_knn(const float *train, const int32_t *ytr, size_t ntr,
             const float *test, const int32_t *yte, size_t nte, int d, int n_classes,
             int k, double temperature, atomic_int *stop, eval_knn_result *out,
             char *err, size_t errlen)
{
    if (ntr == 0 || nte == 0 || k < 1 || n_classes < 1 || !(temperature > 0.0)) {
        errmsg_set(err, errlen, "kNN needs training and test items, k >= 1, classes and T > 0 "
                "(got %zu, %zu, k %d, %d classes, T %g)", ntr, nte, k, n_classes, temperature);
        return -1;
    }
    for (size_t i = 0; i < ntr; i++)
        if (ytr[i] < 0 || ytr[i] >= n_classes) {
            errmsg_set(err, errlen, "kNN: training label %d of item %zu outside 0..%d", ytr[i], i, n_classes - 1);
            return -1;
        }
    if ((size_t)k > ntr)
        k = (int)ntr;
    float *sim = malloc((size_t)KNN_BLOCK_ROWS * ntr * sizeof *sim);
    long *h1 = calloc(KNN_BLOCK_ROWS, sizeof *h1), *h5 = calloc(KNN_BLOCK_ROWS, sizeof *h5);
    if (!sim || !h1 || !h5) {
        free(sim); free(h1); free(h5);
        errmsg_set(err, errlen, "kNN: out of memory for a %d x %zu similarity block", KNN_BLOCK_ROWS, ntr);
        return -1;
    }
    long hits1 = 0, hits5 = 0;
    for (size_t r0 = 0; r0 < nte; r0 += KNN_BLOCK_ROWS) {
        if (stop && *stop) {
            free(sim); free(h1); free(h5);
            errmsg_set(err, errlen, "kNN: stopped");
            return -1;
        }
        int rows = (int)(nte - r0 < KNN_BLOCK_ROWS ? nte - r0 : KNN_BLOCK_ROWS);
        nn_sgemm(0, 1, rows, (int)ntr, d, 1.0f, test + r0 * (size_t)d, d, train, d, 0.0f, sim, (int)ntr);
        for (int r = 0; r < rows; r++)
            if (yte[r0 + (size_t)r] < 0 || yte[r0 + (size_t)r] >= n_classes) {
                free(sim); free(h1); free(h5);
                errmsg_set(err, errlen, "kNN: test label %d of item %zu outside 0..%d",
                        yte[r0 + (size_t)r], r0 + (size_t)r, n_classes - 1);
                return -1;
            }
        memset(h1, 0, KNN_BLOCK_ROWS * sizeof *h1);
        memset(h5, 0, KNN_BLOCK_ROWS * sizeof *h5);
        knn_job job = { sim, ytr, yte + r0, ntr, k, n_classes, temperature, h1, h5, 0 };
        nn_parallel_for((size_t)rows, 16, knn_rows, &job);
        if (job.failed) {
            free(sim); free(h1); free(h5);
            errmsg_set(err, errlen, "kNN: out of memory");
            return -1;
        }
        for (int r = 0; r < rows; r++) {
            hits1 += h1[r];
            hits5 += h5[r];
        }
    }
    free(sim); free(h1); free(h5);
    out->top1 = (double)hits1 / (double)nte;
    out->top5 = (double)hits5 / (double)nte;
    out->k = k;
    return 0;
}

/* evaluator/knn: the weighted k-nearest-neighbour monitor of self-supervised
 * learning (Wu et al. 2018): for each test embedding, the k training
 * embeddings of highest cosine similarity s vote for their class with weight
 * exp(s / T); the prediction is the class of largest total (lowest class on
 * ties), top-5 the five largest.
 */
#ifndef EVALUATOR_KNN_H
#define EVALUATOR_KNN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_KNN_K           200
#define EVAL_KNN_TEMPERATURE 0.1

typedef struct {
    double top1, top5;    /* fractions of the test items, 0..1 */
    int k;                /* neighbours used: min(k, n_train) */
} eval_knn_result;

/* train (ntr, d) and test (nte, d) must be L2-normalised rows
 * (eval_normalize_rows); labels in 0..n_classes-1. stop (may be NULL) is
 * checked between blocks of test rows. 0, or -1 with err set. */
int eval_knn(const float *train, const int32_t *ytr, size_t ntr,
             const float *test, const int32_t *yte, size_t nte, int d, int n_classes,
             int k, double temperature, atomic_int *stop, eval_knn_result *out,
             char *err, size_t errlen);

/* Top-1 and top-5 hits of one score vector (n_classes): 1 when label is the
 * best (resp. among the five best) score, lower class first on ties. */
void eval_topk_hits(const double *scores, int n_classes, int label, int *hit1, int *hit5);

#endif

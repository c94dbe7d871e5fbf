/* evaluator/embed: 2-D maps of features and how well they keep the classes
 * apart, for the class map (evaluator/classmap.h).
 *
 *   PCA      the top principal axes of centred features: subspace iteration
 *            on the covariance (nn_sgemm) with a Rayleigh-Ritz step (Jacobi
 *            on the small projected matrix); exact Jacobi when d is small
 *   t-SNE    exact: Gaussian affinities at a given perplexity (binary search
 *            on each row's precision), Student-t map, gradient descent with
 *            momentum, per-coordinate gains and early exaggeration, from a
 *            seeded Gaussian start; O(n^2) time and memory (n x n floats)
 *   purity   the share of each point's k nearest neighbours (Euclidean, in
 *            the map) that have its class, averaged over the points
 *   silhouette  Euclidean, by class: for point i with mean distance a to its
 *            own class and b to the nearest other class, (b - a) / max(a, b),
 *            averaged over the points (1: tight separated classes, 0: none)
 *
 * Everything is deterministic: one input and seed give one output, whatever
 * the number of threads (each row's sums run in a fixed order).
 */
#ifndef EVALUATOR_EMBED_H
#define EVALUATOR_EMBED_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_TSNE_PERPLEXITY   30.0
#define EVAL_TSNE_ITERS        1000
#define EVAL_TSNE_EXAG_ITERS   250     /* early exaggeration for the first iterations */
#define EVAL_TSNE_EXAGGERATION 12.0
#define EVAL_PCA_DIMS          50      /* t-SNE's input: the top principal components */
#define EVAL_PURITY_K          10

typedef struct {
    double perplexity;
    int iters;
    int exag_iters;
    double exaggeration;
    uint64_t seed;                  /* the start */
    atomic_int *stop;    /* checked every iteration; may be NULL */
} eval_tsne_opts;

void eval_tsne_defaults(eval_tsne_opts *o);

/* out (n, m): the rows of x (n, d) centred and projected on the m principal
 * axes of largest variance, in decreasing order; var (m, may be NULL) their
 * variances (divided by n). Each axis is signed so that its largest
 * component is positive. Axes beyond d give zeros. 0, or -1 with err. */
int eval_pca(float *out, double *var, const float *x, size_t n, int d, int m, char *err, size_t errlen);

/* y (n, 2): the t-SNE map of x (n, d). n >= 2. 0, or -1 with err (out of
 * memory, stopped). */
int eval_tsne(float *y, const float *x, size_t n, int d, const eval_tsne_opts *o, char *err, size_t errlen);

/* Mean share of the k nearest other points of each point of y (n, dim)
 * that share its label (ties broken by index). */
double eval_knn_purity(const float *y, const int32_t *labels, size_t n, int dim, int k);

/* Mean silhouette of x (n, d) by label (labels in 0..k-1), Euclidean; a
 * point alone in its class counts 0. NAN when fewer than two classes occur. */
double eval_silhouette(const float *x, const int32_t *labels, size_t n, int d, int k);

/* Symmetric eigen-decomposition of a (m, m), destroyed: eigenvalues into
 * val (m) in decreasing order, eigenvectors into the columns of vec (m, m). */
void eval_jacobi_eigen(double *a, int m, double *val, double *vec);

#endif

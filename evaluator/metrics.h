/* evaluator/metrics: representation metrics of Wang & Isola (2020) on
 * L2-normalised embeddings.
 *
 *   alignment(alpha)  = mean over positive pairs (x_i, y_i) of ||x_i - y_i||^alpha
 *   uniformity(t)     = log mean over pairs i < j of exp(-t ||x_i - x_j||^2)
 *
 * Lower is better for both. Alignment is in [0, 2^alpha]; uniformity in
 * [-4t, 0] (0 when every embedding is the same point).
 */
#ifndef EVALUATOR_METRICS_H
#define EVALUATOR_METRICS_H

#include <stddef.h>

#define EVAL_ALIGN_ALPHA   2.0
#define EVAL_UNIFORM_T     2.0
#define EVAL_NORM_EPS      1e-12   /* rows shorter than this stay zero */

/* dst (n, d) = src rows divided by their L2 norm (dst may be src). */
void eval_normalize_rows(float *dst, const float *src, size_t n, int d);

/* x, y (n, d): normalised embeddings of the two views of n items. */
double eval_alignment(const float *x, const float *y, size_t n, int d, double alpha);

/* x (n, d) normalised, n >= 2. Pairwise distances come from one Gram matrix
 * per block of rows (nn_sgemm). Returns NAN when n < 2 or out of memory. */
double eval_uniformity(const float *x, size_t n, int d, double t);

#endif

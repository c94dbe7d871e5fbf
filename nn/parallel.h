/* nn/parallel: a small persistent thread pool that runs everything parallel
 * in the library: element-wise and data-movement loops (im2col, batch norm,
 * pooling) and the matrix products, which it splits into one single-threaded
 * cblas_sgemm per thread. OpenBLAS's own threads are switched off when the
 * pool starts (openblas_set_num_threads(1)): two sets of threads spinning on
 * the same cores slow each other down.
 *
 * The pool has one thread per core (or NN_THREADS from the environment), the
 * caller being one of them. Calls are serialized; a call made from inside a
 * parallel region runs serially.
 */
#ifndef NN_PARALLEL_H
#define NN_PARALLEL_H

#include <stddef.h>

typedef void (*nn_range_fn)(void *ctx, size_t begin, size_t end);

/* Runs fn(ctx, b, e) over slices [b, e) covering [0, n), each slice at least
 * `grain` items (so small loops stay on one thread). There are up to four
 * slices per thread, taken in turn from a shared counter: a thread slowed
 * down by other work on its core does fewer of them. */
void nn_parallel_for(size_t n, size_t grain, nn_range_fn fn, void *ctx);

/* C = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm, split over the
 * pool's threads along the larger of M and N. */
void nn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);

/* Number of threads the pool uses (at least 1). */
int nn_parallel_threads(void);

/* Index of the calling thread in the pool, 0 .. nn_parallel_threads() - 1
 * (0 outside the pool's workers): lets a parallel region use one scratch
 * buffer per thread. */
int nn_parallel_thread_id(void);

#endif

/* nn/loss: the training objectives, numerically stable (log-sum-exp).
 *
 * NT-Xent (SimCLR): z holds 2N embeddings, the first view of every image in
 * rows 0..N-1 and the second view in rows N..2N-1, so the positive of row i is
 * row (i + N) mod 2N. With sim = cosine similarity,
 *   l(i) = -log( exp(sim(z_i, z_p(i)) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) )
 * and the loss is the mean of l over the 2N anchors. The L2 normalisation is
 * part of the loss (its gradient included).
 *
 * Gathered NT-Xent (data-parallel training over `size` processes): every
 * process holds n2 = 2n local rows in the layout above and the rows of all
 * processes gathered in rank order, z_all (size * n2, dim); the positive of a
 * row is its other view inside the same process's block. The loss is NT-Xent
 * over all size * n2 anchors, each with the size * n2 - 2 negatives of every
 * process: the single-process NT-Xent of the whole batch (its rows permuted,
 * which changes nothing). Every process computes the same loss; the backward
 * gives the rows of d loss / d z_all that belong to this process (as anchors,
 * and as positives and negatives of every other process's anchors). With
 * dloss = 1 on every process, summing the parameter gradients over the
 * processes (allreduce-sum) gives the single-process gradient of the whole
 * batch; averaging them instead needs dloss = size.
 *
 * Decoupled contrastive loss (DCL, Yeh et al. 2021): the same, but the
 * positive is left out of the denominator,
 *   l(i) = -sim(z_i, z_p(i)) / tau + log sum_{k != i, p(i)} exp(sim(z_i, z_k) / tau),
 * which removes the term that shrinks NT-Xent's gradient when the batch (the
 * number of negatives) is small. It needs at least one negative (2N >= 4).
 * The backward functions serve both: the forward leaves what they need.
 *
 * Softmax cross-entropy: mean over rows of -log softmax(logits)[label].
 */
#ifndef NN_LOSS_H
#define NN_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* Floats of cache (scratch) that nn_ntxent_forward/backward need. */
size_t nn_ntxent_cache_size(int n2, int dim);
/* Returns the loss; -1 (negative) only when n2 is not even and >= 2. */
float nn_ntxent_forward(float *cache,          /* nn_ntxent_cache_size floats */
                        const float *z,        /* (n2, dim) raw embeddings */
                        int n2, int dim, float tau);
/* dz (n2, dim) += dloss * d loss / d z. Uses the cache written by forward. */
void nn_ntxent_backward(float *dz, float *cache, int n2, int dim, float tau, float dloss);

/* Floats of cache: nn_ntxent_cache_size(size * n2, dim). Returns the loss
 * over the gathered batch; -1 when n2 is not even and >= 2 or size < 1. */
float nn_ntxent_gathered_forward(float *cache,
                                 const float *z_all,   /* (size * n2, dim), rank order */
                                 int size, int n2, int dim, float tau);
/* dz (n2, dim) += dloss * d loss / d z_rank, the rows of process `rank`.
 * Uses the cache written by nn_ntxent_gathered_forward. */
void nn_ntxent_gathered_backward(float *dz, float *cache, int size, int rank, int n2,
                                 int dim, float tau, float dloss);

/* NT-Xent (decoupled 0) or DCL (decoupled 1) over `size` gathered blocks of
 * n2 rows (size 1: one process); nn_ntxent_gathered_backward (or, for size 1,
 * nn_ntxent_backward) gives its gradient. Returns -1 on bad sizes. */
float nn_contrastive_forward(float *cache, const float *z_all, int size, int n2, int dim,
                             float tau, int decoupled);

/* Returns the mean loss; probs (n, k) is the cache. Labels must be in [0, k). */
float nn_xent_forward(float *probs, const float *logits, const int32_t *labels, int n, int k);
/* dlogits (n, k) += dloss * d loss / d logits */
void nn_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                      int n, int k, float dloss);

#endif

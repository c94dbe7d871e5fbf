/* nn/loss: NT-Xent and softmax cross-entropy. */
#include "nn/loss.h"
#include "nn/layers.h"
#include "nn/parallel.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* cache layout: zn (n2, dim) | norm (n2) | prob (n2, n2) | g (n2, n2) | dzn (n2, dim)
 * The gathered form uses the same layout with n2 = all rows; its backward
 * fills only this rank's rows of g and dzn. */
size_t nn_ntxent_cache_size(int n2, int dim)
{
    size_t a = (size_t)n2 * dim, s = (size_t)n2 * n2;
    return 2 * a + (size_t)n2 + 2 * s;
}

/* The positive of row i when the rows come in blocks of `block` (one block
 * per process, first views then second views inside each block). */
static inline int ntxent_positive(int i, int block)
{
    int half = block / 2, base = i - i % block;
    return base + (i - base + half) % block;
}

/* The loss over n2 rows in blocks of `block`; leaves zn, norm and the
 * softmax rows prob in the cache for ntxent_rows_backward. Decoupled: the
 * positive is left out of each row's denominator, and its prob is 0, which is
 * all the backward needs to know of it. */
static float ntxent_blocks_forward(float *cache, const float *z, int n2, int block, int dim,
                                   float tau, int decoupled)
{
    float *zn = cache, *norm = zn + (size_t)n2 * dim, *prob = norm + n2;
    nn_l2norm_forward(zn, norm, z, n2, dim);
    /* prob = zn zn^T / tau, then row-wise softmax over k != i (and k != p) */
    nn_sgemm(0, 1, n2, n2, dim, 1.0f / tau,
                zn, dim, zn, dim, 0.0f, prob, n2);
    double total = 0.0;
    for (int i = 0; i < n2; i++) {
        float *row = prob + (size_t)i * n2;
        int p = ntxent_positive(i, block), skip = decoupled ? p : i;
        float mx = -INFINITY;
        for (int k = 0; k < n2; k++)
            if (k != i && k != skip && row[k] > mx)
                mx = row[k];
        double s = 0.0;
        for (int k = 0; k < n2; k++)
            if (k != i && k != skip)
                s += exp((double)(row[k] - mx));
        double lse = mx + log(s);
        total += lse - row[p];
        for (int k = 0; k < n2; k++)
            row[k] = k == i || k == skip ? 0.0f : (float)exp(row[k] - lse);
    }
    return (float)(total / n2);
}

/* dz (rows, dim) += dloss * d loss / d z for the rows r0 .. r0 + rows - 1 of
 * the n2 rows the forward saw. A row's gradient has two parts: as the anchor
 * of its own term, and as the positive or a negative in every other row's
 * term; both come from the full softmax matrix, so any slice of rows is exact. */
static void ntxent_rows_backward(float *dz, float *cache, int n2, int block, int r0, int rows,
                                 int dim, float tau, float dloss)
{
    float *zn = cache, *norm = zn + (size_t)n2 * dim, *prob = norm + n2;
    float *g = prob + (size_t)n2 * n2, *dzn = g + (size_t)n2 * n2;
    float scale = dloss / ((float)n2 * tau);
    /* d loss / d s_ik for s = zn zn^T, then symmetrised: s_ik and s_ki are one value */
    for (int r = 0; r < rows; r++) {
        int i = r0 + r, pi = ntxent_positive(i, block);
        for (int k = 0; k < n2; k++) {
            float gik = prob[(size_t)i * n2 + k] - (k == pi ? 1.0f : 0.0f);
            float gki = prob[(size_t)k * n2 + i] - (i == ntxent_positive(k, block) ? 1.0f : 0.0f);
            g[(size_t)r * n2 + k] = scale * (gik + gki);
        }
    }
    nn_sgemm(0, 0, rows, dim, n2, 1.0f,
                g, n2, zn, dim, 0.0f, dzn, dim);
    nn_l2norm_backward(dz, dzn, zn + (size_t)r0 * dim, norm + r0, rows, dim);
}

float nn_ntxent_forward(float *cache, const float *z, int n2, int dim, float tau)
{
    return nn_contrastive_forward(cache, z, 1, n2, dim, tau, 0);
}

void nn_ntxent_backward(float *dz, float *cache, int n2, int dim, float tau, float dloss)
{
    ntxent_rows_backward(dz, cache, n2, n2, 0, n2, dim, tau, dloss);
}

float nn_contrastive_forward(float *cache, const float *z_all, int size, int n2, int dim,
                             float tau, int decoupled)
{
    if (size < 1 || n2 < 2 || n2 % 2 || (decoupled && size * n2 < 3))
        return -1.0f;
    return ntxent_blocks_forward(cache, z_all, size * n2, n2, dim, tau, decoupled);
}

float nn_ntxent_gathered_forward(float *cache, const float *z_all, int size, int n2,
                                 int dim, float tau)
{
    return nn_contrastive_forward(cache, z_all, size, n2, dim, tau, 0);
}

void nn_ntxent_gathered_backward(float *dz, float *cache, int size, int rank, int n2,
                                 int dim, float tau, float dloss)
{
    ntxent_rows_backward(dz, cache, size * n2, n2, rank * n2, n2, dim, tau, dloss);
}

float nn_xent_forward(float *probs, const float *logits, const int32_t *labels, int n, int k)
{
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float mx = x[0];
        for (int j = 1; j < k; j++)
            if (x[j] > mx)
                mx = x[j];
        double s = 0.0;
        for (int j = 0; j < k; j++)
            s += exp((double)(x[j] - mx));
        double lse = mx + log(s);
        total += lse - x[labels[i]];
        for (int j = 0; j < k; j++)
            p[j] = (float)exp(x[j] - lse);
    }
    return (float)(total / n);
}

void nn_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                      int n, int k, float dloss)
{
    float scale = dloss / (float)n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++)
            dlogits[(size_t)i * k + j] +=
                scale * (probs[(size_t)i * k + j] - (j == labels[i] ? 1.0f : 0.0f));
}

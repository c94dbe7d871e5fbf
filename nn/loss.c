/* nn/loss: NT-Xent and softmax cross-entropy. */
#include "nn/loss.h"
#include "nn/layers.h"
#include "nn/parallel.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* cache layout: zn (n2, dim) | norm (n2) | prob (n2, n2) | g (n2, n2) | dzn (n2, dim) */
size_t nn_ntxent_cache_size(int n2, int dim)
{
    size_t a = (size_t)n2 * dim, s = (size_t)n2 * n2;
    return 2 * a + (size_t)n2 + 2 * s;
}

float nn_ntxent_forward(float *cache, const float *z, int n2, int dim, float tau)
{
    if (n2 < 2 || n2 % 2)
        return -1.0f;
    int n = n2 / 2;
    float *zn = cache, *norm = zn + (size_t)n2 * dim, *prob = norm + n2;
    nn_l2norm_forward(zn, norm, z, n2, dim);
    /* prob = zn zn^T / tau, then row-wise softmax over k != i */
    nn_sgemm(0, 1, n2, n2, dim, 1.0f / tau,
                zn, dim, zn, dim, 0.0f, prob, n2);
    double total = 0.0;
    for (int i = 0; i < n2; i++) {
        float *row = prob + (size_t)i * n2;
        float mx = -INFINITY;
        for (int k = 0; k < n2; k++)
            if (k != i && row[k] > mx)
                mx = row[k];
        double s = 0.0;
        for (int k = 0; k < n2; k++)
            if (k != i)
                s += exp((double)(row[k] - mx));
        double lse = mx + log(s);
        int p = (i + n) % n2;
        total += lse - row[p];
        for (int k = 0; k < n2; k++)
            row[k] = k == i ? 0.0f : (float)exp(row[k] - lse);
    }
    return (float)(total / n2);
}

void nn_ntxent_backward(float *dz, float *cache, int n2, int dim, float tau, float dloss)
{
    int n = n2 / 2;
    float *zn = cache, *norm = zn + (size_t)n2 * dim, *prob = norm + n2;
    float *g = prob + (size_t)n2 * n2, *dzn = g + (size_t)n2 * n2;
    float scale = dloss / ((float)n2 * tau);
    /* d loss / d s_ik for s = zn zn^T, then symmetrised: s_ik and s_ki are one value */
    for (int i = 0; i < n2; i++)
        for (int k = 0; k < n2; k++) {
            float gik = prob[(size_t)i * n2 + k] - (k == (i + n) % n2 ? 1.0f : 0.0f);
            float gki = prob[(size_t)k * n2 + i] - (i == (k + n) % n2 ? 1.0f : 0.0f);
            g[(size_t)i * n2 + k] = scale * (gik + gki);
        }
    nn_sgemm(0, 0, n2, dim, n2, 1.0f,
                g, n2, zn, dim, 0.0f, dzn, dim);
    nn_l2norm_backward(dz, dzn, zn, norm, n2, dim);
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

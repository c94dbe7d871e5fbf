/* evaluator/metrics: alignment and uniformity (metrics.h). */
#include "evaluator/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "nn/parallel.h"

#define GRAM_BLOCK_ROWS 512    /* rows of the Gram matrix computed at once */

void eval_normalize_rows(float *dst, const float *src, size_t n, int d)
{
    for (size_t i = 0; i < n; i++) {
        const float *s = src + i * (size_t)d;
        float *o = dst + i * (size_t)d;
        double ss = 0.0;
        for (int j = 0; j < d; j++)
            ss += (double)s[j] * s[j];
        double norm = sqrt(ss);
        float inv = norm > EVAL_NORM_EPS ? (float)(1.0 / norm) : 0.0f;
        for (int j = 0; j < d; j++)
            o[j] = s[j] * inv;
    }
}

double eval_alignment(const float *x, const float *y, size_t n, int d, double alpha)
{
    if (n == 0)
        return NAN;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double sq = 0.0;
        for (int j = 0; j < d; j++) {
            double diff = (double)x[i * (size_t)d + j] - y[i * (size_t)d + j];
            sq += diff * diff;
        }
        sum += pow(sq, alpha / 2.0);
    }
    return sum / (double)n;
}

double eval_uniformity(const float *x, size_t n, int d, double t)
{
    if (n < 2)
        return NAN;
    double *sqn = malloc(n * sizeof *sqn);
    float *gram = malloc((size_t)GRAM_BLOCK_ROWS * n * sizeof *gram);
    if (!sqn || !gram) {
        free(sqn);
        free(gram);
        return NAN;
    }
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < d; j++)
            s += (double)x[i * (size_t)d + j] * x[i * (size_t)d + j];
        sqn[i] = s;
    }
    /* Every term is exp(-t dist^2) with dist^2 in [0, 4]: no overflow, and the
     * smallest term exp(-4t) is far above underflow for the usual t. */
    double sum = 0.0;
    for (size_t r0 = 0; r0 < n; r0 += GRAM_BLOCK_ROWS) {
        int rows = (int)(n - r0 < GRAM_BLOCK_ROWS ? n - r0 : GRAM_BLOCK_ROWS);
        nn_sgemm(0, 1, rows, (int)n, d, 1.0f, x + r0 * (size_t)d, d, x, d, 0.0f, gram, (int)n);
        for (int r = 0; r < rows; r++) {
            size_t i = r0 + (size_t)r;
            const float *g = gram + (size_t)r * n;
            for (size_t j = i + 1; j < n; j++) {
                double dist2 = sqn[i] + sqn[j] - 2.0 * g[j];
                if (dist2 < 0.0)
                    dist2 = 0.0;
                sum += exp(-t * dist2);
            }
        }
    }
    free(sqn);
    free(gram);
    double pairs = (double)n * (double)(n - 1) / 2.0;
    return log(sum / pairs);
}

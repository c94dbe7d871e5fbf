/* nn/layers: layer forward/backward pairs. Heavy loops go through
 * nn_parallel_for; matrix products through nn_sgemm (split cblas_sgemm). */
#include "nn/layers.h"
#include "nn/parallel.h"
#include "nn/winograd.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Columns of one convolution sgemm: images are grouped until the product has
 * at least this many output pixels, so small late-stage feature maps still
 * make one large matrix product. */
#define NN_CONV_COLS 4096
/* Smallest slice of floats worth handing to another thread. */
#define NN_GRAIN_FLOATS 16384

/* Four floats in one value (GCC vector extension, SSE):
 * partial sums that need no reassociation to vectorize. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define V4_LANES 4

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float v4_sum(v4f v)
{
    float s = 0.0f;
    for (int l = 0; l < V4_LANES; l++)
        s += v[l];
    return s;
}

/* ------------------------------------------------------------------ conv */

int nn_conv_dims_init(nn_conv_dims *d, int n, int cin, int h, int w,
                      int cout, int k, int stride, int pad)
{
    d->n = n; d->cin = cin; d->h = h; d->w = w;
    d->cout = cout; d->k = k; d->stride = stride; d->pad = pad;
    if (k < 1 || stride < 1 || pad < 0)
        return -1;
    d->oh = (h + 2 * pad - k) / stride + 1;
    d->ow = (w + 2 * pad - k) / stride + 1;
    return (d->oh < 1 || d->ow < 1) ? -1 : 0;
}

static int conv_chunk(const nn_conv_dims *d)
{
    int p = d->oh * d->ow;
    int nb = (NN_CONV_COLS + p - 1) / p;
    if (nb > d->n)
        nb = d->n;
    return nb < 1 ? 1 : nb;
}

static int conv_is_pointwise(const nn_conv_dims *d)
{
    return d->k == 1 && d->stride == 1 && d->pad == 0;
}

size_t nn_conv2d_workspace(const nn_conv_dims *d)
{
    size_t nb = (size_t)conv_chunk(d), p = (size_t)d->oh * d->ow;
    size_t kk = (size_t)d->cin * d->k * d->k;
    size_t ws = kk * nb * p;
    if (nb > 1)
        ws += (size_t)d->cout * nb * p;
    if (nn_wino_applies(d)) {
        size_t wg = nn_wino_workspace(d);
        if (wg > ws)
            ws = wg;
    }
    return ws;
}

typedef struct conv_job {
    const nn_conv_dims *d;
    const float *in;       /* first image of the chunk, NCHW */
    float *col;            /* (cin*k*k, nb*P) */
    float *img;            /* NCHW chunk: destination of scatter / col2im */
    float *tmp;            /* (cout, nb*P) */
    const float *bias;
    int nb;
} conv_job;

/* col[r][i*P + oy*ow + ox] = in[i][c][oy*s-p+ki][ox*s-p+kj] (0 outside), rows r in [b, e) */
static void im2col_rows(void *ctx, size_t b, size_t e)
{
    const conv_job *j = ctx;
    const nn_conv_dims *d = j->d;
    int k = d->k, s = d->stride, pad = d->pad, oh = d->oh, ow = d->ow;
    size_t P = (size_t)oh * ow, cols = P * (size_t)j->nb;
    for (size_t r = b; r < e; r++) {
        int c = (int)(r / (size_t)(k * k)), ki = (int)(r / (size_t)k % (size_t)k), kj = (int)(r % (size_t)k);
        float *dst = j->col + r * cols;
        for (int i = 0; i < j->nb; i++) {
            const float *plane = j->in + ((size_t)i * d->cin + c) * d->h * d->w;
            for (int oy = 0; oy < oh; oy++, dst += ow) {
                int iy = oy * s - pad + ki;
                if (iy < 0 || iy >= d->h) {
                    memset(dst, 0, (size_t)ow * sizeof *dst);
                    continue;
                }
                const float *row = plane + (size_t)iy * d->w;
                if (s == 1) {
                    int lo = pad - kj, hi = d->w + pad - kj;   /* valid ox in [lo, hi) */
                    if (lo < 0) lo = 0;
                    if (hi > ow) hi = ow;
                    if (hi < lo) hi = lo;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (hi > lo)
                        memcpy(dst + lo, row + lo - pad + kj, (size_t)(hi - lo) * sizeof *dst);
                    for (int ox = hi; ox < ow; ox++) dst[ox] = 0.0f;
                } else {
                    for (int ox = 0; ox < ow; ox++) {
                        int ix = ox * s - pad + kj;
                        dst[ox] = (ix >= 0 && ix < d->w) ? row[ix] : 0.0f;
                    }
                }
            }
        }
    }
}

/* img[i][c][...] += col rows of channel c, for channels in [b, e) */
static void col2im_channels(void *ctx, size_t b, size_t e)
{
    const conv_job *j = ctx;
    const nn_conv_dims *d = j->d;
    int k = d->k, s = d->stride, pad = d->pad, oh = d->oh, ow = d->ow;
    size_t P = (size_t)oh * ow, cols = P * (size_t)j->nb;
    for (size_t c = b; c < e; c++) {
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const float *src = j->col + ((c * (size_t)k + (size_t)ki) * (size_t)k + (size_t)kj) * cols;
                for (int i = 0; i < j->nb; i++) {
                    float *plane = j->img + ((size_t)i * d->cin + c) * d->h * d->w;
                    for (int oy = 0; oy < oh; oy++, src += ow) {
                        int iy = oy * s - pad + ki;
                        if (iy < 0 || iy >= d->h)
                            continue;
                        float *row = plane + (size_t)iy * d->w;
                        if (s == 1) {
                            int lo = pad - kj, hi = d->w + pad - kj;
                            if (lo < 0) lo = 0;
                            if (hi > ow) hi = ow;
                            float *r = row - pad + kj;
                            for (int ox = lo; ox < hi; ox++)
                                r[ox] += src[ox];
                        } else {
                            for (int ox = 0; ox < ow; ox++) {
                                int ix = ox * s - pad + kj;
                                if (ix >= 0 && ix < d->w)
                                    row[ix] += src[ox];
                            }
                        }
                    }
                }
            }
        }
    }
}

/* img (nb, cout, P) = tmp (cout, nb*P) + bias, for output channels [b, e) */
static void scatter_channels(void *ctx, size_t b, size_t e)
{
    const conv_job *j = ctx;
    const nn_conv_dims *d = j->d;
    size_t P = (size_t)d->oh * d->ow;
    for (size_t co = b; co < e; co++) {
        float bias = j->bias ? j->bias[co] : 0.0f;
        for (int i = 0; i < j->nb; i++) {
            const float *src = j->tmp + co * P * (size_t)j->nb + (size_t)i * P;
            float *dst = j->img + ((size_t)i * d->cout + co) * P;
            if (bias == 0.0f)
                memcpy(dst, src, P * sizeof *dst);
            else
                for (size_t p = 0; p < P; p++)
                    dst[p] = src[p] + bias;
        }
    }
}

/* tmp (cout, nb*P) = img (nb, cout, P), for output channels [b, e) */
static void gather_channels(void *ctx, size_t b, size_t e)
{
    const conv_job *j = ctx;
    const nn_conv_dims *d = j->d;
    size_t P = (size_t)d->oh * d->ow;
    for (size_t co = b; co < e; co++)
        for (int i = 0; i < j->nb; i++)
            memcpy(j->tmp + co * P * (size_t)j->nb + (size_t)i * P,
                   j->in + ((size_t)i * d->cout + co) * P, P * sizeof(float));
}

static void add_bias_channels(void *ctx, size_t b, size_t e)
{
    const conv_job *j = ctx;
    size_t P = (size_t)j->d->oh * j->d->ow;
    for (size_t co = b; co < e; co++)
        for (size_t p = 0; p < P; p++)
            j->img[co * P + p] += j->bias[co];
}

static size_t grain_rows(size_t row_len)
{
    size_t g = NN_GRAIN_FLOATS / (row_len ? row_len : 1);
    return g ? g : 1;
}

void nn_conv2d_forward(float *out, float *ws, const float *in, const float *w,
                       const float *b, const nn_conv_dims *d)
{
    if (nn_wino_applies(d)) {
        nn_wino_forward(out, ws, in, w, b, d);
        return;
    }
    int nb = conv_chunk(d);
    size_t P = (size_t)d->oh * d->ow, K = (size_t)d->cin * d->k * d->k;
    for (int i0 = 0; i0 < d->n; i0 += nb) {
        int cnt = d->n - i0 < nb ? d->n - i0 : nb;
        size_t cols = P * (size_t)cnt;
        conv_job j = { .d = d, .in = in + (size_t)i0 * d->cin * d->h * d->w,
                       .col = ws, .img = out + (size_t)i0 * d->cout * P,
                       .tmp = ws + K * cols, .bias = b, .nb = cnt };
        const float *col = j.col;
        if (cnt == 1 && conv_is_pointwise(d))
            col = j.in;
        else
            nn_parallel_for(K, grain_rows(cols), im2col_rows, &j);
        if (cnt == 1) {
            nn_sgemm(0, 0, d->cout, (int)cols, (int)K,
                        1.0f, w, (int)K, col, (int)cols, 0.0f, j.img, (int)cols);
            if (b)
                nn_parallel_for((size_t)d->cout, grain_rows(P), add_bias_channels, &j);
        } else {
            nn_sgemm(0, 0, d->cout, (int)cols, (int)K,
                        1.0f, w, (int)K, col, (int)cols, 0.0f, j.tmp, (int)cols);
            nn_parallel_for((size_t)d->cout, grain_rows(cols), scatter_channels, &j);
        }
    }
}

void nn_conv2d_backward(float *din, float *dw, float *db, const float *dout, float *ws,
                        const float *in, const float *w, const nn_conv_dims *d)
{
    nn_conv2d_backward_ow(din, dw, db, dout, ws, in, w, d, 0);
}

void nn_conv2d_backward_ow(float *din, float *dw, float *db, const float *dout, float *ws,
                           const float *in, const float *w, const nn_conv_dims *d, int overwrite)
{
    if (nn_wino_applies(d)) {
        nn_wino_backward(din, dw, db, dout, ws, in, w, d, overwrite);
        return;
    }
    int nb = conv_chunk(d);
    size_t P = (size_t)d->oh * d->ow, K = (size_t)d->cin * d->k * d->k;
    for (int i0 = 0; i0 < d->n; i0 += nb) {
        int cnt = d->n - i0 < nb ? d->n - i0 : nb;
        size_t cols = P * (size_t)cnt;
        conv_job j = { .d = d, .in = in + (size_t)i0 * d->cin * d->h * d->w,
                       .col = ws, .tmp = ws + K * cols, .nb = cnt,
                       .img = din ? din + (size_t)i0 * d->cin * d->h * d->w : NULL };
        const float *g = dout + (size_t)i0 * d->cout * P;   /* (cout, cols) */
        if (cnt > 1) {
            conv_job gj = j;
            gj.in = g;
            nn_parallel_for((size_t)d->cout, grain_rows(cols), gather_channels, &gj);
            g = j.tmp;
        }
        if (db)
            for (int co = 0; co < d->cout; co++) {
                const float *r = g + (size_t)co * cols;
                float s = 0.0f;
                for (size_t p = 0; p < cols; p++)
                    s += r[p];
                db[co] += s;
            }
        int pointwise = cnt == 1 && conv_is_pointwise(d);
        const float *col = pointwise ? j.in : j.col;
        if (!pointwise)
            nn_parallel_for(K, grain_rows(cols), im2col_rows, &j);
        nn_sgemm(0, 1, d->cout, (int)K, (int)cols,
                    1.0f, g, (int)cols, col, (int)cols, 1.0f, dw, (int)K);
        if (!din)
            continue;
        if (pointwise) {
            nn_sgemm(1, 0, (int)K, (int)cols, d->cout,
                        1.0f, w, (int)K, g, (int)cols, overwrite ? 0.0f : 1.0f, j.img, (int)cols);
        } else {
            nn_sgemm(1, 0, (int)K, (int)cols, d->cout,
                        1.0f, w, (int)K, g, (int)cols, 0.0f, j.col, (int)cols);
            if (overwrite)
                memset(j.img, 0, (size_t)cnt * d->cin * d->h * d->w * sizeof(float));
            nn_parallel_for((size_t)d->cin, grain_rows(cols * (size_t)(d->k * d->k)),
                            col2im_channels, &j);
        }
    }
}

void nn_conv2d_forward_direct(float *out, const float *in, const float *w,
                              const float *b, const nn_conv_dims *d)
{
    for (int i = 0; i < d->n; i++)
        for (int co = 0; co < d->cout; co++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    double s = b ? b[co] : 0.0;
                    for (int c = 0; c < d->cin; c++)
                        for (int ki = 0; ki < d->k; ki++)
                            for (int kj = 0; kj < d->k; kj++) {
                                int iy = oy * d->stride - d->pad + ki, ix = ox * d->stride - d->pad + kj;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                s += (double)in[(((size_t)i * d->cin + c) * d->h + iy) * d->w + ix] *
                                     w[(((size_t)co * d->cin + c) * d->k + ki) * d->k + kj];
                            }
                    out[(((size_t)i * d->cout + co) * d->oh + oy) * d->ow + ox] = (float)s;
                }
}

void nn_conv2d_backward_direct(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *w, const nn_conv_dims *d)
{
    for (int i = 0; i < d->n; i++)
        for (int co = 0; co < d->cout; co++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    float g = dout[(((size_t)i * d->cout + co) * d->oh + oy) * d->ow + ox];
                    if (db)
                        db[co] += g;
                    for (int c = 0; c < d->cin; c++)
                        for (int ki = 0; ki < d->k; ki++)
                            for (int kj = 0; kj < d->k; kj++) {
                                int iy = oy * d->stride - d->pad + ki, ix = ox * d->stride - d->pad + kj;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                size_t ii = (((size_t)i * d->cin + c) * d->h + iy) * d->w + ix;
                                size_t wi = (((size_t)co * d->cin + c) * d->k + ki) * d->k + kj;
                                dw[wi] += g * in[ii];
                                if (din)
                                    din[ii] += g * w[wi];
                            }
                }
}

/* ------------------------------------------------------------- batchnorm */

typedef struct bn_job {
    const nn_bn_dims *d;
    float *out, *mean, *invstd, *run_mean, *run_var, *din, *dgamma, *dbeta;
    const float *in, *dout, *gamma, *beta, *cmean, *cinvstd;
    const float *mask;     /* backward of the fused BN + ReLU: its output, else NULL */
    double *ws;            /* synchronised forms: the per-channel sums (2c + 1) */
    int train, relu, overwrite;
} bn_job;

/* s1 += sum (x - k), s2 += sum (x - k)^2 over n floats. Shifting by a value
 * of the channel keeps the one-pass variance free of cancellation. */
static void sums_shifted(const float *x, size_t n, float k, double *s1, double *s2)
{
    v4f a = { 0 }, q = { 0 };
    size_t p = 0;
    for (; p + V4_LANES <= n; p += V4_LANES) {
        v4f t = v4_load(x + p) - k;
        a += t;
        q += t * t;
    }
    float sa = v4_sum(a), sq = v4_sum(q);
    for (; p < n; p++) {
        float t = x[p] - k;
        sa += t;
        sq += t * t;
    }
    *s1 += sa;
    *s2 += sq;
}

/* Sets mean/invstd (the cache) and the running statistics of channel c from
 * the batch mean mu and biased variance v over m values; returns invstd. */
static float bn_set_stats(const bn_job *j, size_t c, double mu, double v, double m)
{
    if (v < 0.0)
        v = 0.0;
    float var = (float)v, is = 1.0f / sqrtf(var + NN_BN_EPS);
    j->mean[c] = (float)mu;
    j->invstd[c] = is;
    float unbiased = m > 1.0 ? (float)(v * m / (m - 1.0)) : var;
    j->run_mean[c] = (1.0f - NN_BN_MOMENTUM) * j->run_mean[c] + NN_BN_MOMENTUM * (float)mu;
    j->run_var[c] = (1.0f - NN_BN_MOMENTUM) * j->run_var[c] + NN_BN_MOMENTUM * unbiased;
    return is;
}

/* out = in * scale + shift on channel c (then ReLU in the fused form) */
static void bn_normalise(const bn_job *j, size_t c, float mu, float is)
{
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    float scale = j->gamma[c] * is, shift = j->beta[c] - mu * scale;
    for (int i = 0; i < d->n; i++) {
        const float *x = j->in + i * cs + c * hw;
        float *y = j->out + i * cs + c * hw;
        if (j->relu)
            for (size_t p = 0; p < hw; p++) {
                float v = x[p] * scale + shift;
                y[p] = v > 0.0f ? v : 0.0f;
            }
        else
            for (size_t p = 0; p < hw; p++)
                y[p] = x[p] * scale + shift;
    }
}

/* The shifted sums of channel c over the batch: s1 = sum (x - k), s2 = sum (x - k)^2
 * with k the channel's first value; returns k. */
static float bn_channel_sums(const bn_job *j, size_t c, double *s1, double *s2)
{
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    *s1 = *s2 = 0.0;
    if (d->n < 1)          /* a process with no images in a synchronised batch */
        return 0.0f;
    float k = j->in[c * hw];
    for (int i = 0; i < d->n; i++)
        sums_shifted(j->in + i * cs + c * hw, hw, k, s1, s2);
    return k;
}

/* Channels whose rows are walked together, image by image: their rows of one
 * image lie next to each other, so small maps (4x4, 8x8) are read as long
 * runs instead of one cache line per image and channel. */
#define BN_BLOCK 32

/* y = x scale + shift (then ReLU) over n floats */
static void bn_normalise_row(float *y, const float *x, size_t n, float scale, float shift, int relu)
{
    if (relu)
        for (size_t p = 0; p < n; p++) {
            float v = x[p] * scale + shift;
            y[p] = v > 0.0f ? v : 0.0f;
        }
    else
        for (size_t p = 0; p < n; p++)
            y[p] = x[p] * scale + shift;
}

static void bn_forward_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw, m = (size_t)d->n * hw;
    for (size_t c0 = b; c0 < e; c0 += BN_BLOCK) {
        size_t nc = e - c0 < BN_BLOCK ? e - c0 : BN_BLOCK;
        float scale[BN_BLOCK], shift[BN_BLOCK];
        double s1[BN_BLOCK] = { 0 }, s2[BN_BLOCK] = { 0 };
        if (j->train)
            for (int i = 0; i < d->n; i++)
                for (size_t c = 0; c < nc; c++)
                    sums_shifted(j->in + i * cs + (c0 + c) * hw, hw, j->in[(c0 + c) * hw], &s1[c],
                                 &s2[c]);
        for (size_t c = 0; c < nc; c++) {
            size_t ch = c0 + c;
            float mu, is;
            if (j->train) {
                double dm = s1[c] / (double)m, v = s2[c] / (double)m - dm * dm;
                if (v < 0.0)
                    v = 0.0;
                mu = (float)((double)j->in[ch * hw] + dm);
                float var = (float)v;
                is = 1.0f / sqrtf(var + NN_BN_EPS);
                j->mean[ch] = mu;
                j->invstd[ch] = is;
                float unbiased = m > 1 ? (float)(v * (double)m / (double)(m - 1)) : var;
                j->run_mean[ch] = (1.0f - NN_BN_MOMENTUM) * j->run_mean[ch] + NN_BN_MOMENTUM * mu;
                j->run_var[ch] = (1.0f - NN_BN_MOMENTUM) * j->run_var[ch] + NN_BN_MOMENTUM * unbiased;
            } else {
                mu = j->run_mean[ch];
                is = 1.0f / sqrtf(j->run_var[ch] + NN_BN_EPS);
            }
            scale[c] = j->gamma[ch] * is;
            shift[c] = j->beta[ch] - mu * scale[c];
        }
        for (int i = 0; i < d->n; i++)
            for (size_t c = 0; c < nc; c++) {
                size_t off = i * cs + (c0 + c) * hw;
                bn_normalise_row(j->out + off, j->in + off, hw, scale[c], shift[c], j->relu);
            }
    }
}

/* Synchronised forward, first pass: ws[2c] = sum x, ws[2c + 1] = sum x^2 of
 * this process's part of channel c (from the shifted sums, in double). */
static void bn_sync_sums_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    double m = (double)j->d->n * j->d->hw;
    for (size_t c = b; c < e; c++) {
        double s1, s2, k = bn_channel_sums(j, c, &s1, &s2);
        j->ws[2 * c] = m * k + s1;
        j->ws[2 * c + 1] = s2 + 2.0 * k * s1 + m * k * k;
    }
}

/* Synchronised forward, second pass: the statistics of the whole batch from
 * the summed ws (ws[2C] = the batch's values per channel), then normalise. */
static void bn_sync_apply_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    double m = j->ws[2 * (size_t)j->d->c];
    for (size_t c = b; c < e; c++) {
        double mu = j->ws[2 * c] / m, v = j->ws[2 * c + 1] / m - mu * mu;
        float is = bn_set_stats(j, c, mu, v, m);
        bn_normalise(j, c, (float)mu, is);
    }
}

static void bn_forward(float *out, float *mean, float *invstd, float *run_mean,
                       float *run_var, const float *in, const float *gamma,
                       const float *beta, int train, const nn_bn_dims *d, int relu)
{
    bn_job j = { .d = d, .out = out, .mean = mean, .invstd = invstd, .run_mean = run_mean,
                 .run_var = run_var, .in = in, .gamma = gamma, .beta = beta, .train = train,
                 .relu = relu };
    nn_parallel_for((size_t)d->c, grain_rows((size_t)d->n * d->hw), bn_forward_channels, &j);
}

void nn_batchnorm_forward(float *out, float *mean, float *invstd, float *run_mean,
                          float *run_var, const float *in, const float *gamma,
                          const float *beta, int train, const nn_bn_dims *d)
{
    bn_forward(out, mean, invstd, run_mean, run_var, in, gamma, beta, train, d, 0);
}

void nn_batchnorm_relu_forward(float *out, float *mean, float *invstd, float *run_mean,
                               float *run_var, const float *in, const float *gamma,
                               const float *beta, int train, const nn_bn_dims *d)
{
    bn_forward(out, mean, invstd, run_mean, run_var, in, gamma, beta, train, d, 1);
}

/* sg += sum g, sgx += sum g (x - mu), g = dout where mask > 0 (all without mask) */
static void bn_grad_sums(const float *g, const float *x, const float *mask, size_t n, float mu,
                         double *sg, double *sgx)
{
    v4f a = { 0 }, q = { 0 };
    size_t p = 0;
    for (; p + V4_LANES <= n; p += V4_LANES) {
        v4f gv = v4_load(g + p);
        if (mask) {
            v4i keep = v4_load(mask + p) > 0.0f;
            gv = (v4f)((v4i)gv & keep);
        }
        a += gv;
        q += gv * (v4_load(x + p) - mu);
    }
    float sa = v4_sum(a), sq = v4_sum(q);
    for (; p < n; p++) {
        float gv = mask && !(mask[p] > 0.0f) ? 0.0f : g[p];
        sa += gv;
        sq += gv * (x[p] - mu);
    }
    *sg += sa;
    *sgx += sq;
}

/* sum g and sum g (x - mu) of channel c (g masked by the fused ReLU's output) */
static void bn_channel_grad_sums(const bn_job *j, size_t c, double *sg, double *sgx)
{
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    float mu = j->cmean[c];
    *sg = *sgx = 0.0;
    for (int i = 0; i < d->n; i++) {
        size_t off = i * cs + c * hw;
        bn_grad_sums(j->dout + off, j->in + off, j->mask ? j->mask + off : NULL, hw, mu, sg, sgx);
    }
}

/* din of channel c from the batch's sums of g and g xhat over m values */
static void bn_input_grad(const bn_job *j, size_t c, float sum_g, float sum_gxhat, float m)
{
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    float mu = j->cmean[c], is = j->cinvstd[c];
    /* dx = k (m g - sum g - (x - mu) sum(g xhat) is) = ca g + cb (x - mu) + c0 */
    float k = j->gamma[c] * is / m;
    float ca = k * m, cb = -k * sum_gxhat * is, c0 = -k * sum_g;
    for (int i = 0; i < d->n; i++) {
        size_t off = i * cs + c * hw;
        const float *x = j->in + off, *g = j->dout + off, *y = j->mask ? j->mask + off : NULL;
        float *dx = j->din + off;
        if (y && j->overwrite)
            for (size_t p = 0; p < hw; p++) {
                float gv = g[p], keep = y[p] > 0.0f ? 1.0f : 0.0f;   /* loads and a select: vectorizes */
                dx[p] = ca * gv * keep + cb * (x[p] - mu) + c0;
            }
        else if (y)
            for (size_t p = 0; p < hw; p++) {
                float gv = g[p], keep = y[p] > 0.0f ? 1.0f : 0.0f;
                dx[p] += ca * gv * keep + cb * (x[p] - mu) + c0;
            }
        else if (j->overwrite)
            for (size_t p = 0; p < hw; p++)
                dx[p] = ca * g[p] + cb * (x[p] - mu) + c0;
        else
            for (size_t p = 0; p < hw; p++)
                dx[p] += ca * g[p] + cb * (x[p] - mu) + c0;
    }
}

/* dx = ca g + cb (x - mu) + c0 over n floats, g = dout where mask > 0 (all
 * without mask); added to dx unless overwrite */
static void bn_input_grad_row(float *dx, const float *g, const float *x, const float *mask, size_t n,
                              float mu, float ca, float cb, float c0, int overwrite)
{
    if (mask && overwrite)
        for (size_t p = 0; p < n; p++) {
            float keep = mask[p] > 0.0f ? 1.0f : 0.0f;   /* loads and a select: vectorizes */
            dx[p] = ca * g[p] * keep + cb * (x[p] - mu) + c0;
        }
    else if (mask)
        for (size_t p = 0; p < n; p++) {
            float keep = mask[p] > 0.0f ? 1.0f : 0.0f;
            dx[p] += ca * g[p] * keep + cb * (x[p] - mu) + c0;
        }
    else if (overwrite)
        for (size_t p = 0; p < n; p++)
            dx[p] = ca * g[p] + cb * (x[p] - mu) + c0;
    else
        for (size_t p = 0; p < n; p++)
            dx[p] += ca * g[p] + cb * (x[p] - mu) + c0;
}

static void bn_backward_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    const nn_bn_dims *d = j->d;
    size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw, m = (size_t)d->n * hw;
    for (size_t c0 = b; c0 < e; c0 += BN_BLOCK) {
        size_t nc = e - c0 < BN_BLOCK ? e - c0 : BN_BLOCK;
        double sg[BN_BLOCK] = { 0 }, sgx[BN_BLOCK] = { 0 };
        float ca[BN_BLOCK], cb[BN_BLOCK], cz[BN_BLOCK];
        for (int i = 0; i < d->n; i++)
            for (size_t c = 0; c < nc; c++) {
                size_t off = i * cs + (c0 + c) * hw;
                bn_grad_sums(j->dout + off, j->in + off, j->mask ? j->mask + off : NULL, hw,
                             j->cmean[c0 + c], &sg[c], &sgx[c]);
            }
        for (size_t c = 0; c < nc; c++) {
            size_t ch = c0 + c;
            float is = j->cinvstd[ch];
            float sum_g = (float)sg[c], sum_gxhat = (float)sgx[c] * is;
            j->dgamma[ch] += sum_gxhat;
            j->dbeta[ch] += sum_g;
            /* dx = k (m g - sum g - (x - mu) sum(g xhat) is) = ca g + cb (x - mu) + c0 */
            float k = j->gamma[ch] * is / (float)m;
            ca[c] = k * (float)m;
            cb[c] = -k * sum_gxhat * is;
            cz[c] = -k * sum_g;
        }
        if (!j->din)
            continue;
        for (int i = 0; i < d->n; i++)
            for (size_t c = 0; c < nc; c++) {
                size_t off = i * cs + (c0 + c) * hw;
                bn_input_grad_row(j->din + off, j->dout + off, j->in + off,
                                  j->mask ? j->mask + off : NULL, hw, j->cmean[c0 + c], ca[c], cb[c],
                                  cz[c], j->overwrite);
            }
    }
}

/* Synchronised backward, first pass: this process's sums into ws and into
 * dgamma, dbeta (the parameter gradients stay local: the gradient allreduce
 * adds them up). */
static void bn_sync_grad_sums_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    for (size_t c = b; c < e; c++) {
        double sg, sgx;
        bn_channel_grad_sums(j, c, &sg, &sgx);
        j->ws[2 * c] = sg;
        j->ws[2 * c + 1] = sgx;
        j->dgamma[c] += (float)sgx * j->cinvstd[c];
        j->dbeta[c] += (float)sg;
    }
}

/* Synchronised backward, second pass: din from the sums of the whole batch */
static void bn_sync_input_grad_channels(void *ctx, size_t b, size_t e)
{
    const bn_job *j = ctx;
    float m = (float)j->ws[2 * (size_t)j->d->c];
    for (size_t c = b; c < e; c++)
        bn_input_grad(j, c, (float)j->ws[2 * c], (float)j->ws[2 * c + 1] * j->cinvstd[c], m);
}

void nn_batchnorm_backward_ow(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *mean, const float *invstd,
                              const float *gamma, const nn_bn_dims *d, int overwrite)
{
    nn_batchnorm_relu_backward_ow(din, dgamma, dbeta, dout, NULL, in, mean, invstd, gamma, d,
                                  overwrite);
}

void nn_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *in, const float *mean, const float *invstd,
                           const float *gamma, const nn_bn_dims *d)
{
    nn_batchnorm_backward_ow(din, dgamma, dbeta, dout, in, mean, invstd, gamma, d, 0);
}

void nn_batchnorm_relu_backward_ow(float *din, float *dgamma, float *dbeta,
                                   const float *dout, const float *out, const float *in,
                                   const float *mean, const float *invstd,
                                   const float *gamma, const nn_bn_dims *d, int overwrite)
{
    bn_job j = { .d = d, .din = din, .dgamma = dgamma, .dbeta = dbeta, .dout = dout,
                 .in = in, .cmean = mean, .cinvstd = invstd, .gamma = gamma, .mask = out,
                 .overwrite = overwrite };
    nn_parallel_for((size_t)d->c, grain_rows((size_t)d->n * d->hw), bn_backward_channels, &j);
}

void nn_batchnorm_relu_backward(float *din, float *dgamma, float *dbeta,
                                const float *dout, const float *out, const float *in,
                                const float *mean, const float *invstd,
                                const float *gamma, const nn_bn_dims *d)
{
    nn_batchnorm_relu_backward_ow(din, dgamma, dbeta, dout, out, in, mean, invstd, gamma, d, 0);
}

/* ------------------------------------------------ synchronised batch norm */

int nn_batchnorm_sync_forward(float *out, float *mean, float *invstd, float *run_mean,
                              float *run_var, double *ws, const float *in, const float *gamma,
                              const float *beta, int relu, const nn_bn_sync *sync,
                              const nn_bn_dims *d)
{
    bn_job j = { .d = d, .out = out, .mean = mean, .invstd = invstd, .run_mean = run_mean,
                 .run_var = run_var, .in = in, .gamma = gamma, .beta = beta, .train = 1,
                 .relu = relu, .ws = ws };
    size_t grain = grain_rows((size_t)d->n * d->hw);
    nn_parallel_for((size_t)d->c, grain, bn_sync_sums_channels, &j);
    ws[2 * (size_t)d->c] = (double)d->n * d->hw;
    if (sync->sum(sync->ctx, ws, NN_BN_SYNC_WS(d->c)))
        return -1;
    nn_parallel_for((size_t)d->c, grain, bn_sync_apply_channels, &j);
    return 0;
}

int nn_batchnorm_sync_backward_ow(float *din, float *dgamma, float *dbeta, double *ws,
                                  const float *dout, const float *out, const float *in,
                                  const float *mean, const float *invstd, const float *gamma,
                                  const nn_bn_sync *sync, const nn_bn_dims *d, int overwrite)
{
    bn_job j = { .d = d, .din = din, .dgamma = dgamma, .dbeta = dbeta, .dout = dout,
                 .in = in, .cmean = mean, .cinvstd = invstd, .gamma = gamma, .mask = out,
                 .overwrite = overwrite, .ws = ws };
    size_t grain = grain_rows((size_t)d->n * d->hw);
    nn_parallel_for((size_t)d->c, grain, bn_sync_grad_sums_channels, &j);
    ws[2 * (size_t)d->c] = (double)d->n * d->hw;
    /* every process takes part in the sum, also one that needs no din */
    if (sync->sum(sync->ctx, ws, NN_BN_SYNC_WS(d->c)))
        return -1;
    if (din)
        nn_parallel_for((size_t)d->c, grain, bn_sync_input_grad_channels, &j);
    return 0;
}

/* ------------------------------------------------------------------ relu */

typedef struct ew_job {
    float *out;
    float *out2;
    const float *a, *b;
    int ow, ow2;           /* overwrite out, out2 instead of adding */
} ew_job;

static void relu_fw(void *ctx, size_t b, size_t e)
{
    const ew_job *j = ctx;
    for (size_t i = b; i < e; i++)
        j->out[i] = j->a[i] > 0.0f ? j->a[i] : 0.0f;
}

static void relu_bw(void *ctx, size_t b, size_t e)
{
    const ew_job *j = ctx;   /* out = din, a = dout, b = forward output */
    if (j->ow)
        for (size_t i = b; i < e; i++)
            j->out[i] = j->b[i] > 0.0f ? j->a[i] : 0.0f;
    else
        for (size_t i = b; i < e; i++)
            j->out[i] += j->b[i] > 0.0f ? j->a[i] : 0.0f;
}

void nn_relu_forward(float *out, const float *in, size_t n)
{
    ew_job j = { .out = out, .a = in };
    nn_parallel_for(n, NN_GRAIN_FLOATS, relu_fw, &j);
}

void nn_relu_backward(float *din, const float *dout, const float *out, size_t n)
{
    nn_relu_backward_ow(din, dout, out, n, 0);
}

void nn_relu_backward_ow(float *din, const float *dout, const float *out, size_t n, int overwrite)
{
    ew_job j = { .out = din, .a = dout, .b = out, .ow = overwrite };
    nn_parallel_for(n, NN_GRAIN_FLOATS, relu_bw, &j);
}

/* ------------------------------------------------------------------- add */

static void add_fw(void *ctx, size_t b, size_t e)
{
    const ew_job *j = ctx;
    for (size_t i = b; i < e; i++)
        j->out[i] = j->a[i] + j->b[i];
}

static void add_bw(void *ctx, size_t b, size_t e)
{
    const ew_job *j = ctx;
    /* out and out2 may be the same buffer (an empty residual block): in turn */
    for (size_t i = b; i < e; i++) {
        j->out[i] = (j->ow ? 0.0f : j->out[i]) + j->a[i];
        j->out2[i] = (j->ow2 ? 0.0f : j->out2[i]) + j->a[i];
    }
}

void nn_add_forward(float *out, const float *a, const float *b, size_t n)
{
    ew_job j = { .out = out, .a = a, .b = b };
    nn_parallel_for(n, NN_GRAIN_FLOATS, add_fw, &j);
}

void nn_add_backward(float *da, float *db, const float *dout, size_t n)
{
    nn_add_backward_ow(da, db, dout, n, 0, 0);
}

void nn_add_backward_ow(float *da, float *db, const float *dout, size_t n,
                        int overwrite_a, int overwrite_b)
{
    ew_job j = { .out = da, .out2 = db, .a = dout, .ow = overwrite_a, .ow2 = overwrite_b };
    nn_parallel_for(n, NN_GRAIN_FLOATS, add_bw, &j);
}

/* --------------------------------------------------------------- maxpool */

int nn_pool_dims_init(nn_pool_dims *d, int n, int c, int h, int w, int k, int stride)
{
    d->n = n; d->c = c; d->h = h; d->w = w; d->k = k; d->stride = stride;
    if (k < 1 || stride < 1 || k > h || k > w)
        return -1;
    d->oh = (h - k) / stride + 1;
    d->ow = (w - k) / stride + 1;
    return 0;
}

typedef struct pool_job {
    const nn_pool_dims *d;
    float *out;
    int32_t *idx;
    const float *in;
    const int32_t *cidx;
    int overwrite;
} pool_job;

/* 2x2 windows, stride 2: the common case, branch-free so that it vectorizes.
 * Same rule as the general loop: the first largest value wins, a NaN wins. */
static void maxpool_fw_2x2(const pool_job *j, size_t b, size_t e)
{
    const nn_pool_dims *d = j->d;
    size_t ip = (size_t)d->h * d->w, op = (size_t)d->oh * d->ow;
    int w = d->w, ow = d->ow;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = j->in + pl * ip;
        float *y = j->out + pl * op;
        int32_t *ix = j->idx + pl * op;
        for (int oy = 0; oy < d->oh; oy++) {
            const float *r0 = x + (size_t)(2 * oy) * w, *r1 = r0 + w;
            float *yo = y + (size_t)oy * ow;
            int32_t *io = ix + (size_t)oy * ow;
            int base = 2 * oy * w;
            int ox = 0;
            for (; ox + V4_LANES <= ow; ox += V4_LANES) {
                v4f a = v4_load(r0 + 2 * ox), bq = v4_load(r0 + 2 * ox + V4_LANES);
                v4f c = v4_load(r1 + 2 * ox), dq = v4_load(r1 + 2 * ox + V4_LANES);
                v4f v[4] = { __builtin_shufflevector(a, bq, 0, 2, 4, 6), __builtin_shufflevector(a, bq, 1, 3, 5, 7),
                             __builtin_shufflevector(c, dq, 0, 2, 4, 6), __builtin_shufflevector(c, dq, 1, 3, 5, 7) };
                const int32_t off[4] = { 0, 1, w, w + 1 };
                v4f bv = v[0];
                v4i bi = { 0, 0, 0, 0 };
                for (int q = 1; q < 4; q++) {
                    v4i t = (v[q] > bv) | ((v[q] != v[q]) & (bv == bv));
                    bv = (v4f)(((v4i)v[q] & t) | ((v4i)bv & ~t));
                    bi = (off[q] & t) | (bi & ~t);
                }
                v4i at = { base + 2 * ox, base + 2 * ox + 2, base + 2 * ox + 4, base + 2 * ox + 6 };
                at += bi;
                memcpy(yo + ox, &bv, sizeof bv);
                memcpy(io + ox, &at, sizeof at);
            }
            for (; ox < ow; ox++) {
                int at = base + 2 * ox, best = at;
                float bv = x[at];
                const int32_t off[3] = { 1, w, w + 1 };
                for (int q = 0; q < 3; q++)
                    if (x[at + off[q]] > bv || (x[at + off[q]] != x[at + off[q]] && bv == bv)) {
                        bv = x[at + off[q]];
                        best = at + off[q];
                    }
                yo[ox] = bv;
                io[ox] = best;
            }
        }
    }
}

static void maxpool_fw(void *ctx, size_t b, size_t e)
{
    const pool_job *j = ctx;
    const nn_pool_dims *d = j->d;
    if (d->k == 2 && d->stride == 2) {
        maxpool_fw_2x2(j, b, e);
        return;
    }
    size_t ip = (size_t)d->h * d->w, op = (size_t)d->oh * d->ow;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = j->in + pl * ip;
        float *y = j->out + pl * op;
        int32_t *ix = j->idx + pl * op;
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                int best = (oy * d->stride) * d->w + ox * d->stride;
                float bv = x[best];
                for (int ki = 0; ki < d->k; ki++)
                    for (int kj = 0; kj < d->k; kj++) {
                        int at = (oy * d->stride + ki) * d->w + ox * d->stride + kj;
                        if (x[at] > bv || (x[at] != x[at] && bv == bv)) {  /* NaN propagates */
                            bv = x[at];
                            best = at;
                        }
                    }
                y[oy * d->ow + ox] = bv;
                ix[oy * d->ow + ox] = best;
            }
    }
}

/* Overwrite with 2x2 windows, stride 2: every input written once (the
 * gradient where the index points, else 0), no clearing pass, no branches. */
static void maxpool_bw_2x2_ow(const pool_job *j, size_t b, size_t e)
{
    const nn_pool_dims *d = j->d;
    size_t ip = (size_t)d->h * d->w, op = (size_t)d->oh * d->ow;
    int w = d->w, ow = d->ow;
    for (size_t pl = b; pl < e; pl++) {
        float *dx = j->out + pl * ip;
        const float *g = j->in + pl * op;
        const int32_t *ix = j->cidx + pl * op;
        for (int oy = 0; oy < d->oh; oy++) {
            float *d0 = dx + (size_t)(2 * oy) * w, *d1 = d0 + w;
            const float *go = g + (size_t)oy * ow;
            const int32_t *io = ix + (size_t)oy * ow;
            int base = 2 * oy * w;
            for (int ox = 0; ox < ow; ox++) {
                int at = base + 2 * ox, i = io[ox];
                float gv = go[ox];
                d0[2 * ox] = i == at ? gv : 0.0f;
                d0[2 * ox + 1] = i == at + 1 ? gv : 0.0f;
                d1[2 * ox] = i == at + w ? gv : 0.0f;
                d1[2 * ox + 1] = i == at + w + 1 ? gv : 0.0f;
            }
            for (int x = 2 * ow; x < w; x++)          /* odd width: the last column */
                d0[x] = d1[x] = 0.0f;
        }
        for (size_t p = (size_t)(2 * d->oh) * w; p < ip; p++)   /* odd height: the last row */
            dx[p] = 0.0f;
    }
}

static void maxpool_bw(void *ctx, size_t b, size_t e)
{
    const pool_job *j = ctx;
    const nn_pool_dims *d = j->d;
    if (d->k == 2 && d->stride == 2 && j->overwrite) {
        maxpool_bw_2x2_ow(j, b, e);
        return;
    }
    size_t ip = (size_t)d->h * d->w, op = (size_t)d->oh * d->ow;
    for (size_t pl = b; pl < e; pl++) {
        float *dx = j->out + pl * ip;
        const float *g = j->in + pl * op;
        const int32_t *ix = j->cidx + pl * op;
        if (j->overwrite)
            memset(dx, 0, ip * sizeof *dx);
        for (size_t o = 0; o < op; o++)
            dx[ix[o]] += g[o];
    }
}

void nn_maxpool_forward(float *out, int32_t *idx, const float *in, const nn_pool_dims *d)
{
    pool_job j = { .d = d, .out = out, .idx = idx, .in = in };
    nn_parallel_for((size_t)d->n * d->c, grain_rows((size_t)d->h * d->w), maxpool_fw, &j);
}

void nn_maxpool_backward(float *din, const float *dout, const int32_t *idx, const nn_pool_dims *d)
{
    nn_maxpool_backward_ow(din, dout, idx, d, 0);
}

void nn_maxpool_backward_ow(float *din, const float *dout, const int32_t *idx,
                            const nn_pool_dims *d, int overwrite)
{
    pool_job j = { .d = d, .out = din, .in = dout, .cidx = idx, .overwrite = overwrite };
    nn_parallel_for((size_t)d->n * d->c, grain_rows((size_t)d->h * d->w), maxpool_bw, &j);
}

/* --------------------------------------------------------------- avgpool */

void nn_avgpool_forward(float *out, const float *in, int n, int c, int hw)
{
    size_t planes = (size_t)n * c;
    float inv = 1.0f / (float)hw;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * (size_t)hw;
        float s = 0.0f;
        for (int p = 0; p < hw; p++)
            s += x[p];
        out[pl] = s * inv;
    }
}

void nn_avgpool_backward(float *din, const float *dout, int n, int c, int hw)
{
    nn_avgpool_backward_ow(din, dout, n, c, hw, 0);
}

void nn_avgpool_backward_ow(float *din, const float *dout, int n, int c, int hw, int overwrite)
{
    size_t planes = (size_t)n * c;
    float inv = 1.0f / (float)hw;
    for (size_t pl = 0; pl < planes; pl++) {
        float g = dout[pl] * inv;
        float *dx = din + pl * (size_t)hw;
        if (overwrite)
            for (int p = 0; p < hw; p++)
                dx[p] = g;
        else
            for (int p = 0; p < hw; p++)
                dx[p] += g;
    }
}

/* ---------------------------------------------------------------- linear */

void nn_linear_forward(float *out, const float *in, const float *w, const float *b,
                       const nn_linear_dims *d)
{
    nn_sgemm(0, 1, d->n, d->out, d->in,
                1.0f, in, d->in, w, d->in, 0.0f, out, d->out);
    if (b)
        for (int i = 0; i < d->n; i++)
            for (int o = 0; o < d->out; o++)
                out[(size_t)i * d->out + o] += b[o];
}

void nn_linear_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const nn_linear_dims *d)
{
    nn_linear_backward_ow(din, dw, db, dout, in, w, d, 0);
}

void nn_linear_backward_ow(float *din, float *dw, float *db, const float *dout,
                           const float *in, const float *w, const nn_linear_dims *d, int overwrite)
{
    if (din)
        nn_sgemm(0, 0, d->n, d->in, d->out,
                    1.0f, dout, d->out, w, d->in, overwrite ? 0.0f : 1.0f, din, d->in);
    nn_sgemm(1, 0, d->out, d->in, d->n,
                1.0f, dout, d->out, in, d->in, 1.0f, dw, d->in);
    if (db)
        for (int i = 0; i < d->n; i++)
            for (int o = 0; o < d->out; o++)
                db[o] += dout[(size_t)i * d->out + o];
}

/* ---------------------------------------------------------------- l2norm */

void nn_l2norm_forward(float *out, float *norm, const float *in, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim;
        float *y = out + (size_t)i * dim;
        double s = 0.0;
        for (int k = 0; k < dim; k++)
            s += (double)x[k] * x[k];
        float nr = (float)sqrt(s);
        if (nr < NN_L2_EPS)
            nr = NN_L2_EPS;
        norm[i] = nr;
        for (int k = 0; k < dim; k++)
            y[k] = x[k] / nr;
    }
}

void nn_l2norm_backward(float *din, const float *dout, const float *out,
                        const float *norm, int n, int dim)
{
    nn_l2norm_backward_ow(din, dout, out, norm, n, dim, 0);
}

void nn_l2norm_backward_ow(float *din, const float *dout, const float *out,
                           const float *norm, int n, int dim, int overwrite)
{
    for (int i = 0; i < n; i++) {
        const float *y = out + (size_t)i * dim, *g = dout + (size_t)i * dim;
        float *dx = din + (size_t)i * dim;
        double dot = 0.0;
        for (int k = 0; k < dim; k++)
            dot += (double)y[k] * g[k];
        /* below the clamp, out = in / eps is linear in in */
        float proj = norm[i] > NN_L2_EPS ? (float)dot : 0.0f;
        for (int k = 0; k < dim; k++)
            dx[k] = (overwrite ? 0.0f : dx[k]) + (g[k] - y[k] * proj) / norm[i];
    }
}

/* ops: the pixel work of the augmentations (see ops.h). Loops are written so
 * the compiler can vectorise the inner one: unit stride, restrict pointers. */
#define _GNU_SOURCE   /* sincosf */
#include "augment/ops.h"

#include <math.h>
#include <string.h>

#define AUG_PI 3.14159265358979323846

/* Hot loops are compiled for AVX-512, AVX2 and baseline x86-64; the loader
 * picks the best the CPU has. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AUG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AUG_CLONES
#endif

/* Two selects in this order compile to max and min instructions. */
static inline float clamp01(float v)
{
    v = v > 0.0f ? v : 0.0f;
    return v < 1.0f ? v : 1.0f;
}

static inline int32_t clampi(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ------------------------------------------------------------------ geometry */

void aug_crop_box(aug_box_t *box, aug_rng_t *rng, int32_t W, int32_t H,
                  float scale_lo, float scale_hi, float ratio_lo, float ratio_hi)
{
    double area = (double)W * (double)H;
    double lr0 = log(ratio_lo), lr1 = log(ratio_hi);
    for (int attempt = 0; attempt < AUG_CROP_ATTEMPTS; attempt++) {
        double target = area * aug_rng_uniform(rng, scale_lo, scale_hi);
        double aspect = exp(aug_rng_uniform(rng, lr0, lr1));
        int32_t w = (int32_t)lround(sqrt(target * aspect));
        int32_t h = (int32_t)lround(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            box->y = (int32_t)aug_rng_below(rng, (uint32_t)(H - h + 1));
            box->x = (int32_t)aug_rng_below(rng, (uint32_t)(W - w + 1));
            box->w = w;
            box->h = h;
            return;
        }
    }
    double in_ratio = (double)W / (double)H;
    int32_t w = W, h = H;
    if (in_ratio < ratio_lo) {
        h = (int32_t)lround(W / (double)ratio_lo);
    } else if (in_ratio > ratio_hi) {
        w = (int32_t)lround(H * (double)ratio_hi);
    }
    w = clampi(w, 1, W);
    h = clampi(h, 1, H);
    box->x = (W - w) / 2;
    box->y = (H - h) / 2;
    box->w = w;
    box->h = h;
}

int aug_taps_max(double in_len, int32_t out_n)
{
    double support = in_len / out_n;
    if (support < 1.0) support = 1.0;
    return (int)ceil(2.0 * support) + 2;
}

void aug_taps_build(aug_tap_t *taps, float *w, int maxn, int32_t out_n,
                    double x0, double len, int32_t in_n, int flip, float gain)
{
    double scale = len / out_n;
    double support = scale > 1.0 ? scale : 1.0;
    double inv = 1.0 / support;
    for (int32_t j = 0; j < out_n; j++) {
        double off = (j + 0.5) * scale;
        double center = flip ? x0 + len - off : x0 + off;
        int32_t lo = (int32_t)floor(center - support - 0.5);
        int32_t hi = (int32_t)ceil(center + support - 0.5);  /* inclusive */
        if (lo < 0) lo = 0;
        if (hi > in_n - 1) hi = in_n - 1;
        if (hi - lo + 1 > maxn) hi = lo + maxn - 1;
        float *wj = w + (size_t)j * maxn;
        double sum = 0.0;
        int32_t n = 0, first = -1;
        for (int32_t i = lo; i <= hi; i++) {
            double d = fabs(i + 0.5 - center) * inv;
            double v = d < 1.0 ? 1.0 - d : 0.0;
            if (v <= 0.0 && first < 0) continue;   /* trim leading zeros */
            if (first < 0) first = i;
            wj[n++] = (float)v;
            sum += v;
        }
        while (n > 0 && wj[n - 1] == 0.0f) n--;    /* and trailing ones */
        if (n == 0 || sum <= 0.0) {                /* nearest pixel */
            first = clampi((int32_t)floor(center), 0, in_n - 1);
            wj[0] = 1.0f;
            n = 1;
            sum = 1.0;
        }
        float norm = (float)(gain / sum);
        for (int32_t t = 0; t < n; t++) wj[t] *= norm;
        taps[j].start = first;
        taps[j].n = n;
    }
}

size_t aug_resample_tmp_floats(const aug_box_t *box, int32_t S, int32_t src_c)
{
    /* columns touched: the box plus the filter support on each side */
    double support = (double)box->w / S;
    if (support < 1.0) support = 1.0;
    size_t cols = (size_t)box->w + 2 * (size_t)ceil(support) + 2;
    return (size_t)S * cols * (size_t)src_c;
}

/* Vertical pass first: each output row is a weighted sum of whole source rows,
 * over the interleaved bytes of the columns [c0, c1): unit stride, vectorised.
 * tmp is (S, (c1 - c0) * src_c). */
AUG_CLONES
static void resample_rows(float *restrict tmp, const aug_tap_t *yt, const float *yw, int maxn,
                          const uint8_t *restrict src, int32_t W, int32_t src_c,
                          int32_t c0, int32_t c1, int32_t S)
{
    size_t span = (size_t)(c1 - c0) * src_c;
    for (int32_t i = 0; i < S; i++) {
        float *restrict o = tmp + (size_t)i * span;
        const float *wi = yw + (size_t)i * maxn;
        const uint8_t *restrict p = src + ((size_t)yt[i].start * W + c0) * src_c;
        float w0 = wi[0];
        for (size_t k = 0; k < span; k++) o[k] = w0 * (float)p[k];
        for (int32_t t = 1; t < yt[i].n; t++) {
            const uint8_t *restrict q = p + (size_t)t * W * src_c;
            float wt = wi[t];
            for (size_t k = 0; k < span; k++) o[k] += wt * (float)q[k];
        }
    }
}

/* Horizontal pass: out (planes, S, S) from tmp rows, taps per output column. */
AUG_CLONES
static void resample_cols(float *restrict out, const float *restrict tmp, const aug_tap_t *xt,
                          const float *xw, int maxn, int32_t c0, int32_t c1, int32_t src_c,
                          int planes, int32_t S)
{
    size_t span = (size_t)(c1 - c0) * src_c, n = (size_t)S * S;
    for (int32_t i = 0; i < S; i++) {
        const float *row = tmp + (size_t)i * span;
        float *o0 = out + (size_t)i * S;
        if (planes == 3) {
            float *o1 = o0 + n, *o2 = o0 + 2 * n;
            for (int32_t j = 0; j < S; j++) {
                const float *p = row + (size_t)(xt[j].start - c0) * src_c;
                const float *wj = xw + (size_t)j * maxn;
                float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
                for (int32_t t = 0; t < xt[j].n; t++, p += src_c) {
                    a0 += wj[t] * p[0];
                    a1 += wj[t] * p[1];
                    a2 += wj[t] * p[2];
                }
                o0[j] = a0;
                o1[j] = a1;
                o2[j] = a2;
            }
        } else if (src_c >= 3) {   /* luminance of a colour source */
            for (int32_t j = 0; j < S; j++) {
                const float *p = row + (size_t)(xt[j].start - c0) * src_c;
                const float *wj = xw + (size_t)j * maxn;
                float a = 0.0f;
                for (int32_t t = 0; t < xt[j].n; t++, p += src_c)
                    a += wj[t] * (AUG_GRAY_R * p[0] + AUG_GRAY_G * p[1] + AUG_GRAY_B * p[2]);
                o0[j] = a;
            }
        } else {
            for (int32_t j = 0; j < S; j++) {
                const float *p = row + (size_t)(xt[j].start - c0) * src_c;
                const float *wj = xw + (size_t)j * maxn;
                float a = 0.0f;
                for (int32_t t = 0; t < xt[j].n; t++, p += src_c) a += wj[t] * p[0];
                o0[j] = a;
            }
        }
    }
}

void aug_resample(float *out, float *tmp, aug_tap_t *xt, float *xw, aug_tap_t *yt, float *yw,
                  const uint8_t *src, int32_t H, int32_t W, int32_t src_c,
                  const aug_box_t *box, int flip, int32_t C, int32_t S)
{
    int mx = aug_taps_max(box->w, S), my = aug_taps_max(box->h, S);
    aug_taps_build(xt, xw, mx, S, box->x, box->w, W, flip, 1.0f / AUG_U8_SCALE);
    aug_taps_build(yt, yw, my, S, box->y, box->h, H, 0, 1.0f);
    int32_t c0 = xt[0].start, c1 = xt[0].start + xt[0].n;
    for (int32_t j = 1; j < S; j++) {
        if (xt[j].start < c0) c0 = xt[j].start;
        if (xt[j].start + xt[j].n > c1) c1 = xt[j].start + xt[j].n;
    }
    int planes = (C == 3 && src_c >= 3) ? 3 : 1;
    resample_rows(tmp, yt, yw, my, src, W, src_c, c0, c1, S);
    resample_cols(out, tmp, xt, xw, mx, c0, c1, src_c, planes, S);
    if (C == 3 && planes == 1) {
        size_t n = (size_t)S * S;
        memcpy(out + n, out, n * sizeof(float));
        memcpy(out + 2 * n, out, n * sizeof(float));
    }
}

void aug_rotate90(float *dst, const float *src, int k, int32_t C, int32_t S)
{
    k &= 3;
    size_t n = (size_t)S * S;
    for (int32_t c = 0; c < C; c++) {
        const float *s = src + c * n;
        float *d = dst + c * n;
        for (int32_t i = 0; i < S; i++) {
            float *drow = d + (size_t)i * S;
            switch (k) {
            case 0:
                memcpy(drow, s + (size_t)i * S, S * sizeof(float));
                break;
            case 1:   /* d[i][j] = s[j][S-1-i] */
                for (int32_t j = 0; j < S; j++) drow[j] = s[(size_t)j * S + (S - 1 - i)];
                break;
            case 2:   /* d[i][j] = s[S-1-i][S-1-j] */
                for (int32_t j = 0; j < S; j++) drow[j] = s[(size_t)(S - 1 - i) * S + (S - 1 - j)];
                break;
            default:  /* d[i][j] = s[S-1-j][i] */
                for (int32_t j = 0; j < S; j++) drow[j] = s[(size_t)(S - 1 - j) * S + i];
                break;
            }
        }
    }
}

/* -------------------------------------------------------------------- colour */

static const float gray_w[3] = {AUG_GRAY_R, AUG_GRAY_G, AUG_GRAY_B};

void aug_color_identity(aug_color_t *c)
{
    memset(c, 0, sizeof(*c));
    c->m[0][0] = c->m[1][1] = c->m[2][2] = 1.0f;
}

void aug_color_then(aug_color_t *c, const aug_color_t *op)
{
    aug_color_t r;
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            r.m[i][j] = op->m[i][0] * c->m[0][j] + op->m[i][1] * c->m[1][j] + op->m[i][2] * c->m[2][j];
        r.b[i] = op->m[i][0] * c->b[0] + op->m[i][1] * c->b[1] + op->m[i][2] * c->b[2] + op->b[i];
    }
    *c = r;
}

void aug_color_brightness(aug_color_t *op, float f)
{
    aug_color_identity(op);
    for (int i = 0; i < 3; i++) op->m[i][i] = f;
}

void aug_color_contrast(aug_color_t *op, float f, float mean_gray)
{
    aug_color_identity(op);
    for (int i = 0; i < 3; i++) {
        op->m[i][i] = f;
        op->b[i] = (1.0f - f) * mean_gray;
    }
}

void aug_color_saturation(aug_color_t *op, float f)
{
    /* f * x + (1 - f) * gray(x) in every channel */
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) op->m[i][j] = (1.0f - f) * gray_w[j] + (i == j ? f : 0.0f);
        op->b[i] = 0.0f;
    }
}

void aug_color_hue(aug_color_t *op, float h)
{
    /* Rodrigues rotation about u = (1,1,1)/sqrt(3): red turns towards green
     * for positive h, as a hue increase does. */
    double th = 2.0 * AUG_PI * h;
    double c = cos(th), s = sin(th) / sqrt(3.0), t = (1.0 - c) / 3.0;
    float diag = (float)(c + t), plus = (float)(t + s), minus = (float)(t - s);
    op->m[0][0] = diag;  op->m[0][1] = minus; op->m[0][2] = plus;
    op->m[1][0] = plus;  op->m[1][1] = diag;  op->m[1][2] = minus;
    op->m[2][0] = minus; op->m[2][1] = plus;  op->m[2][2] = diag;
    op->b[0] = op->b[1] = op->b[2] = 0.0f;
}

void aug_color_gray(aug_color_t *op)
{
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) op->m[i][j] = gray_w[j];
        op->b[i] = 0.0f;
    }
}

float aug_color_mean_gray(const aug_color_t *c, const float mu[3])
{
    float g = 0.0f;
    for (int i = 0; i < 3; i++)
        g += gray_w[i] * (c->m[i][0] * mu[0] + c->m[i][1] * mu[1] + c->m[i][2] * mu[2] + c->b[i]);
    return g;
}

#define AUG_SUM_LANES 16   /* partial sums, so the reduction vectorises */

AUG_CLONES
void aug_mean(float mu[3], const float *img, int32_t C, int32_t n)
{
    for (int32_t c = 0; c < 3; c++) {
        if (c >= C) {
            mu[c] = mu[0];
            continue;
        }
        const float *p = img + (size_t)c * n;
        float part[AUG_SUM_LANES] = {0};
        int32_t i = 0;
        for (; i + AUG_SUM_LANES <= n; i += AUG_SUM_LANES)
            for (int k = 0; k < AUG_SUM_LANES; k++) part[k] += p[i + k];
        float s = 0.0f;
        for (int k = 0; k < AUG_SUM_LANES; k++) s += part[k];
        for (; i < n; i++) s += p[i];
        mu[c] = s / (float)n;
    }
}

static inline void apply_rgb(float *restrict r, float *restrict g, float *restrict b,
                             const aug_color_t *c, int32_t n)
{
    float m00 = c->m[0][0], m01 = c->m[0][1], m02 = c->m[0][2], b0 = c->b[0];
    float m10 = c->m[1][0], m11 = c->m[1][1], m12 = c->m[1][2], b1 = c->b[1];
    float m20 = c->m[2][0], m21 = c->m[2][1], m22 = c->m[2][2], b2 = c->b[2];
    for (int32_t i = 0; i < n; i++) {
        float x = r[i], y = g[i], z = b[i];
        r[i] = clamp01(m00 * x + m01 * y + m02 * z + b0);
        g[i] = clamp01(m10 * x + m11 * y + m12 * z + b1);
        b[i] = clamp01(m20 * x + m21 * y + m22 * z + b2);
    }
}

AUG_CLONES
void aug_color_apply(float *img, const aug_color_t *c, int32_t C, int32_t n)
{
    if (C == 1) {   /* gray input maps to gray: one scale and offset */
        float a = c->m[0][0] + c->m[0][1] + c->m[0][2], b = c->b[0];
        for (int32_t i = 0; i < n; i++) img[i] = clamp01(a * img[i] + b);
        return;
    }
    apply_rgb(img, img + n, img + 2 * (size_t)n, c, n);
}

/* ------------------------------------------------------------------- spatial */

void aug_cutout(float *img, int32_t cx, int32_t cy, int32_t side, const float *fill,
                int32_t C, int32_t S)
{
    int32_t x0 = clampi(cx - side / 2, 0, S), x1 = clampi(cx - side / 2 + side, 0, S);
    int32_t y0 = clampi(cy - side / 2, 0, S), y1 = clampi(cy - side / 2 + side, 0, S);
    for (int32_t c = 0; c < C; c++)
        for (int32_t y = y0; y < y1; y++) {
            float *row = img + ((size_t)c * S + y) * S;
            for (int32_t x = x0; x < x1; x++) row[x] = fill[c];
        }
}

void aug_noise(float *img, aug_rng_t *rng, float sigma, int32_t C, int32_t n)
{
    size_t total = (size_t)C * n;
    for (size_t i = 0; i < total; i += 2) {
        /* Box-Muller: two normals from two uniforms, u1 in (0, 1] */
        uint64_t u = aug_rng_u64(rng);
        float u1 = ((float)(u >> 40) + 1.0f) * (1.0f / 16777216.0f);
        float u2 = (float)(u & 0xffffff) * (1.0f / 16777216.0f);
        float rad = sigma * sqrtf(-2.0f * logf(u1));
        float s, c;
        sincosf((float)(2.0 * AUG_PI) * u2, &s, &c);
        img[i] = clamp01(img[i] + rad * c);
        if (i + 1 < total) img[i + 1] = clamp01(img[i + 1] + rad * s);
    }
}

void aug_gauss_kernel(float *k, int ksize, float sigma)
{
    int r = ksize / 2;
    double sum = 0.0;
    for (int i = 0; i < ksize; i++) {
        double x = i - r;
        double v = exp(-(x * x) / (2.0 * (double)sigma * sigma));
        k[i] = (float)v;
        sum += v;
    }
    for (int i = 0; i < ksize; i++) k[i] = (float)(k[i] / sum);
}

static inline int32_t reflect(int32_t i, int32_t S)
{
    /* ... 2 1 | 0 1 2 ... S-1 | S-2 ...; callers keep |overhang| < S */
    if (i < 0) return -i;
    if (i >= S) return 2 * (S - 1) - i;
    return i;
}

AUG_CLONES
void aug_blur(float *img, float *tmp, float *pad, const float *k, int ksize, int32_t C, int32_t S)
{
    int r = ksize / 2;
    if (r >= S) r = S - 1;          /* reflection needs an overhang below S */
    const float *kc = k + (ksize / 2 - r);
    int kn = 2 * r + 1;
    for (int32_t c = 0; c < C; c++) {
        float *plane = img + (size_t)c * S * S;
        /* horizontal: plane -> tmp, through a reflected copy of each row */
        for (int32_t y = 0; y < S; y++) {
            const float *row = plane + (size_t)y * S;
            for (int32_t x = 0; x < S; x++) pad[r + x] = row[x];
            for (int t = 1; t <= r; t++) {
                pad[r - t] = row[t];
                pad[r + S - 1 + t] = row[S - 1 - t];
            }
            float *restrict o = tmp + (size_t)y * S;
            for (int32_t x = 0; x < S; x++) o[x] = kc[0] * pad[x];
            for (int t = 1; t < kn; t++) {
                const float *restrict p = pad + t;
                float kt = kc[t];
                for (int32_t x = 0; x < S; x++) o[x] += kt * p[x];
            }
        }
        /* vertical: tmp -> plane, whole rows at a time */
        for (int32_t y = 0; y < S; y++) {
            float *restrict o = plane + (size_t)y * S;
            const float *restrict s0 = tmp + (size_t)reflect(y - r, S) * S;
            for (int32_t x = 0; x < S; x++) o[x] = kc[0] * s0[x];
            for (int t = 1; t < kn; t++) {
                const float *restrict s = tmp + (size_t)reflect(y - r + t, S) * S;
                float kt = kc[t];
                for (int32_t x = 0; x < S; x++) o[x] += kt * s[x];
            }
        }
    }
}

AUG_CLONES
void aug_sobel(float *img, float *tmp, int32_t C, int32_t S)
{
    size_t n = (size_t)S * S;
    if (C == 3) {
        const float *r = img, *g = img + n, *b = img + 2 * n;
        for (size_t i = 0; i < n; i++) tmp[i] = AUG_GRAY_R * r[i] + AUG_GRAY_G * g[i] + AUG_GRAY_B * b[i];
    } else {
        memcpy(tmp, img, n * sizeof(float));
    }
    for (int32_t y = 0; y < S; y++) {
        const float *up = tmp + (size_t)(y > 0 ? y - 1 : 0) * S;
        const float *mid = tmp + (size_t)y * S;
        const float *dn = tmp + (size_t)(y < S - 1 ? y + 1 : S - 1) * S;
        float *o = img + (size_t)y * S;
        for (int32_t x = 0; x < S; x++) {
            int32_t xl = x > 0 ? x - 1 : 0, xr = x < S - 1 ? x + 1 : S - 1;
            float gx = (up[xr] + 2.0f * mid[xr] + dn[xr]) - (up[xl] + 2.0f * mid[xl] + dn[xl]);
            float gy = (dn[xl] + 2.0f * dn[x] + dn[xr]) - (up[xl] + 2.0f * up[x] + up[xr]);
            o[x] = clamp01(0.25f * sqrtf(gx * gx + gy * gy));
        }
    }
    for (int32_t c = 1; c < C; c++) memcpy(img + c * n, img, n * sizeof(float));
}

/* -------------------------------------------------------------------- output */

void aug_hwc_u8(uint8_t *out, const float *img, int32_t C, int32_t n)
{
    for (int32_t c = 0; c < C; c++) {
        const float *p = img + (size_t)c * n;
        for (int32_t i = 0; i < n; i++) out[(size_t)i * C + c] = (uint8_t)(clamp01(p[i]) * AUG_U8_SCALE + 0.5f);
    }
}

/* out_c = (clamp(row c of the matrix . (r, g, b) + b_c) - mu_c) * is_c */
static inline void write_rgb_f32(float *restrict o0, float *restrict o1, float *restrict o2,
                                 const float *restrict r, const float *restrict g,
                                 const float *restrict b, const aug_color_t *c,
                                 const float *mu, const float *is, int32_t n)
{
    float m00 = c->m[0][0], m01 = c->m[0][1], m02 = c->m[0][2], b0 = c->b[0];
    float m10 = c->m[1][0], m11 = c->m[1][1], m12 = c->m[1][2], b1 = c->b[1];
    float m20 = c->m[2][0], m21 = c->m[2][1], m22 = c->m[2][2], b2 = c->b[2];
    float mu0 = mu[0], mu1 = mu[1], mu2 = mu[2], s0 = is[0], s1 = is[1], s2 = is[2];
    for (int32_t i = 0; i < n; i++) {
        float x = r[i], y = g[i], z = b[i];
        o0[i] = (clamp01(m00 * x + m01 * y + m02 * z + b0) - mu0) * s0;
        o1[i] = (clamp01(m10 * x + m11 * y + m12 * z + b1) - mu1) * s1;
        o2[i] = (clamp01(m20 * x + m21 * y + m22 * z + b2) - mu2) * s2;
    }
}

static inline void write_rgb_u8(uint8_t *restrict o0, uint8_t *restrict o1, uint8_t *restrict o2,
                                const float *restrict r, const float *restrict g,
                                const float *restrict b, const aug_color_t *c, int32_t n)
{
    float m00 = c->m[0][0], m01 = c->m[0][1], m02 = c->m[0][2], b0 = c->b[0];
    float m10 = c->m[1][0], m11 = c->m[1][1], m12 = c->m[1][2], b1 = c->b[1];
    float m20 = c->m[2][0], m21 = c->m[2][1], m22 = c->m[2][2], b2 = c->b[2];
    for (int32_t i = 0; i < n; i++) {
        float x = r[i], y = g[i], z = b[i];
        o0[i] = (uint8_t)(clamp01(m00 * x + m01 * y + m02 * z + b0) * AUG_U8_SCALE + 0.5f);
        o1[i] = (uint8_t)(clamp01(m10 * x + m11 * y + m12 * z + b1) * AUG_U8_SCALE + 0.5f);
        o2[i] = (uint8_t)(clamp01(m20 * x + m21 * y + m22 * z + b2) * AUG_U8_SCALE + 0.5f);
    }
}

static inline void write_gray_f32(float *restrict o, const float *restrict x, float a, float b,
                                  float mu, float is, int32_t n)
{
    for (int32_t i = 0; i < n; i++) o[i] = (clamp01(a * x[i] + b) - mu) * is;
}

static inline void write_gray_u8(uint8_t *restrict o, const float *restrict x, float a, float b,
                                 int32_t n)
{
    for (int32_t i = 0; i < n; i++) o[i] = (uint8_t)(clamp01(a * x[i] + b) * AUG_U8_SCALE + 0.5f);
}

AUG_CLONES
void aug_write(void *out, int u8, const float *img, const aug_color_t *c,
               const float *mean, const float *inv_std, int32_t C, int32_t n)
{
    static const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    aug_color_t id;
    if (!c) {
        aug_color_identity(&id);
        c = &id;
    }
    const float *mu = mean ? mean : zero, *is = inv_std ? inv_std : one;
    size_t N = (size_t)n;
    if (C == 1) {   /* gray maps to gray: one scale and offset */
        float a = c->m[0][0] + c->m[0][1] + c->m[0][2];
        if (u8) write_gray_u8(out, img, a, c->b[0], n);
        else write_gray_f32(out, img, a, c->b[0], mu[0], is[0], n);
    } else if (u8) {
        uint8_t *o = out;
        write_rgb_u8(o, o + N, o + 2 * N, img, img + N, img + 2 * N, c, n);
    } else {
        float *o = out;
        write_rgb_f32(o, o + N, o + 2 * N, img, img + N, img + 2 * N, c, mu, is, n);
    }
}

/* nn/winograd: Winograd convolution F(WG_M x WG_M, 3x3) (see winograd.h).
 * With WG_A = WG_M + 2 and 1-D transform matrices BT (WG_A x WG_A),
 * G (WG_A x 3) and AT (WG_M x WG_A):
 *
 *   input   V = BT x BT^T     (WG_A x WG_A patch of the input, pad 1)
 *   filter  U = G g G^T
 *   output  y = AT M AT^T,    M = U * V element-wise (per position)
 *
 * F(4x4, 3x3) with the points 0, +-1, +-2: 36 multiplications per 16
 * outputs instead of 144 (4x fewer). The matrices (bt_1d, at_1d, a_1d below
 * apply them with the zeros and common terms folded):
 *
 *   BT = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
 *         0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
 *   G  = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   AT = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
 *
 * Measured against the direct convolution (tests/test_nn.c) the relative
 * error stays near 1e-6 forward; against PyTorch (test_nn_reference) below
 * 3e-5 for every gradient (limit 1e-3).
 *
 * Workspace: the transformed filters (WG_POS, cout, cin), then per thread
 * two chunk buffers (WG_POS, channels, chunk tiles), for the filter gradient
 * an accumulator (WG_POS, cout, cin) and the bias-gradient sums, and the
 * transforms' scratch (WG_SCRATCH floats per chunk tile, then WG_SLACK).
 */
#include "nn/winograd.h"
#include "nn/parallel.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The transforms get AVX2 and AVX-512 clones, picked at load time by the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WG_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define WG_CLONES
#endif
#define WG_INLINE __attribute__((always_inline))

#define WG_M          4           /* output tile side */
#define WG_A          (WG_M + 2)  /* input tile side */
#define WG_POS        (WG_A * WG_A)
#define WG_MIN_CIN    1           /* even the 3-channel first layer gains (measured) */
#define WG_CHUNK_BYTES (2048 * 1024) /* transformed input + products of one chunk */
#define WG_CHUNK_BYTES_FG (8192 * 1024) /* the same for the filter gradient */
#define WG_CHUNKS_PER_THREAD 4    /* at least, when the tiles allow it */
#define WG_MIN_TILES  64
#define WG_MAX_TILES  4096
#define WG_ALIGN      16          /* floats */
#define WG_MAX_TW     128         /* tiles per row (maps up to 512 wide) */
#define WG_WIDE_TW    8           /* tiles per row from which input_tf_wide pays */
#define WG_SCRATCH    (WG_A * WG_A + WG_M * WG_M) /* floats per tile of transform scratch */
#define WG_SLACK      16          /* floats after the scratch: whole-vector reads of its last row */

static const float G[WG_A][3] = {
    { 1.0f / 4, 0, 0 },
    { -1.0f / 6, -1.0f / 6, -1.0f / 6 },
    { -1.0f / 6, 1.0f / 6, -1.0f / 6 },
    { 1.0f / 24, 1.0f / 12, 1.0f / 6 },
    { 1.0f / 24, -1.0f / 12, 1.0f / 6 },
    { 0, 0, 1 },
};

typedef struct wg_geom {
    int th, tw;                   /* tiles per image: rows, columns */
    size_t tiles;                 /* over the batch */
    int tc;                       /* tiles per chunk */
    size_t chunks;
    int cmax;                     /* max(cin, cout) */
    size_t per_thread;            /* floats */
} wg_geom;

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

static void geom_init(wg_geom *g, const nn_conv_dims *d, int filter_grad)
{
    g->th = (d->oh + WG_M - 1) / WG_M;
    g->tw = (d->ow + WG_M - 1) / WG_M;
    g->tiles = (size_t)d->n * g->th * g->tw;
    g->cmax = d->cin > d->cout ? d->cin : d->cout;
    size_t cb = filter_grad ? WG_CHUNK_BYTES_FG : WG_CHUNK_BYTES;
    size_t tc = cb / (WG_POS * sizeof(float) * (size_t)(d->cin + d->cout));
    size_t balanced = g->tiles / ((size_t)WG_CHUNKS_PER_THREAD * (size_t)nn_parallel_threads());
    if (tc > balanced) tc = balanced;   /* enough chunks for the threads to even out */
    if (tc < WG_MIN_TILES) tc = WG_MIN_TILES;
    if (tc > WG_MAX_TILES) tc = WG_MAX_TILES;
    if (tc > g->tiles) tc = g->tiles;
    tc = tc / (size_t)g->tw * (size_t)g->tw;          /* whole tile rows */
    if (tc < (size_t)g->tw) tc = (size_t)g->tw;
    g->tc = (int)tc;
    g->chunks = (g->tiles + tc - 1) / tc;
    size_t buf = (size_t)WG_POS * g->cmax * tc;
    g->per_thread = 2 * buf + round_up((size_t)WG_POS * d->cout * d->cin + d->cout, WG_ALIGN) +
                    (size_t)WG_SCRATCH * tc + WG_SLACK;
    if (!filter_grad) {                 /* one stride per thread for both passes */
        wg_geom gf;
        geom_init(&gf, d, 1);
        if (gf.per_thread > g->per_thread)
            g->per_thread = gf.per_thread;
    }
}

/* NN_WINOGRAD=0 in the environment switches the Winograd path off (A/B timing). */
static int wino_enabled(void)
{
    static atomic_int enabled = -1;
    int e = atomic_load(&enabled);
    if (e < 0) {
        const char *env = getenv("NN_WINOGRAD");
        e = !(env && strcmp(env, "0") == 0);
        atomic_store(&enabled, e);
    }
    return e;
}

int nn_wino_applies(const nn_conv_dims *d)
{
    return wino_enabled() && d->k == 3 && d->stride == 1 && d->pad == 1 && d->cin >= WG_MIN_CIN &&
           (d->ow + WG_M - 1) / WG_M <= WG_MAX_TW;
}

size_t nn_wino_workspace(const nn_conv_dims *d)
{
    wg_geom g;
    geom_init(&g, d, 0);
    return round_up((size_t)WG_POS * d->cout * d->cin, WG_ALIGN) +
           (size_t)nn_parallel_threads() * g.per_thread;
}

/* ------------------------------------------------------------ transforms */

/* G applied to a 3-vector (the matrix above, written out) */
static inline void g_1d(float t[WG_A], float g0, float g1, float g2)
{
    float a = g0 + g2, c = g0 / 24.0f + g2 / 6.0f;
    t[0] = g0 / 4.0f;
    t[1] = -(a + g1) / 6.0f;
    t[2] = -(a - g1) / 6.0f;
    t[3] = c + g1 / 12.0f;
    t[4] = c - g1 / 12.0f;
    t[5] = g2;
}

/* u[WG_POS] = G g G^T of one 3x3 filter g (row-major); flip: g rotated by 180 degrees */
static void filter_tf(float *u, const float *g, int flip)
{
    float f[9], t[3][WG_A], col[WG_A];
    for (int i = 0; i < 9; i++)
        f[i] = flip ? g[8 - i] : g[i];
    for (int r = 0; r < 3; r++)                         /* G over the columns of each row */
        g_1d(t[r], f[3 * r], f[3 * r + 1], f[3 * r + 2]);
    for (int i = 0; i < WG_A; i++) {                    /* then over the rows */
        g_1d(col, t[0][i], t[1][i], t[2][i]);
        for (int j = 0; j < WG_A; j++)
            u[j * WG_A + i] = col[j];
    }
}

/* g[9] += G^T x G of one transformed gradient x[WG_POS] */
static void filter_tf_adjoint(float *g, const float *x)
{
    float t[3][WG_A];
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < WG_A; i++) {
            float s = 0.0f;
            for (int j = 0; j < WG_A; j++)
                s += G[j][r] * x[j * WG_A + i];
            t[r][i] = s;
        }
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            float s = 0.0f;
            for (int i = 0; i < WG_A; i++)
                s += t[r][i] * G[i][c];
            g[r * 3 + c] += s;
        }
}

/* The first tile row of tile t0 (a multiple of the tiles per row): image and tile row. */
typedef struct row_iter {
    int img, ty;
} row_iter;

static void row_first(row_iter *it, const wg_geom *g, size_t t0)
{
    size_t per = (size_t)g->th * g->tw;
    it->img = (int)(t0 / per);
    it->ty = (int)(t0 % per / (size_t)g->tw);
}

static void row_next(row_iter *it, const wg_geom *g)
{
    if (++it->ty == g->th) {
        it->ty = 0;
        it->img++;
    }
}

/* Small maps are walked channel by channel across the images of a chunk:
 * consecutive tile rows of one channel lie a whole image apart (C planes),
 * too far for the hardware prefetcher, and every row would wait on memory.
 * WG_PF_ROWS tile rows ahead, these prefetch the map rows a tile row will
 * touch: rows 4 ty + lo .. 4 ty + lo + n - 1 of channel c (clipped to the
 * map), at linear position ahead = c * rows + rr + WG_PF_ROWS of the
 * chunk's (channel, tile row) walk. */
#define WG_PF_ROWS 8

static inline WG_INLINE void prefetch_rows(const float *x, int C, int h, int w, const wg_geom *g,
                                           size_t R0, int rows, int c, int rr, int lo, int n,
                                           int write)
{
    int ahead = rr + WG_PF_ROWS;
    if (ahead >= rows) {
        ahead -= rows;
        if (++c >= C || ahead >= rows)
            return;
    }
    size_t R = R0 + (size_t)ahead;
    size_t img = R / (size_t)g->th;
    int y0 = WG_M * (int)(R % (size_t)g->th) + lo, y1 = y0 + n;
    if (y0 < 0) y0 = 0;
    if (y1 > h) y1 = h;
    if (y0 >= y1)
        return;
    const char *p = (const char *)(x + ((img * (size_t)C + (size_t)c) * h + (size_t)y0) * w);
    const char *e = (const char *)(x + ((img * (size_t)C + (size_t)c) * h + (size_t)y1) * w);
    for (p = (const char *)((uintptr_t)p & ~(uintptr_t)63); p < e; p += 64) {
        if (write)
            __builtin_prefetch(p, 1, 3);
        else
            __builtin_prefetch(p, 0, 3);
    }
}

/* The 1-D transforms written out (the matrices above, zeros and common terms
 * folded): BT d, AT m, and AT^T e. */
#define WG_BT_1D(r, d)                                     \
    do {                                                   \
        (r)[0] = 4.0f * (d)[0] - 5.0f * (d)[2] + (d)[4];   \
        (r)[1] = ((d)[3] + (d)[4]) - 4.0f * ((d)[1] + (d)[2]); \
        (r)[2] = ((d)[4] - (d)[3]) + 4.0f * ((d)[1] - (d)[2]); \
        (r)[3] = ((d)[4] - (d)[2]) + 2.0f * ((d)[3] - (d)[1]); \
        (r)[4] = ((d)[4] - (d)[2]) - 2.0f * ((d)[3] - (d)[1]); \
        (r)[5] = 4.0f * (d)[1] - 5.0f * (d)[3] + (d)[5];   \
    } while (0)

static inline void bt_1d(float r[WG_A], const float d[WG_A])
{
    WG_BT_1D(r, d);
}

static inline void at_1d(float o[WG_M], const float m[WG_A])
{
    float a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], e = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + 2.0f * e;
    o[2] = a + 4.0f * c;
    o[3] = b + 8.0f * e + m[5];
}

static inline void a_1d(float z[WG_A], const float e[WG_M])
{
    float ev = e[0] + e[2], od = e[1] + e[3], ev4 = e[0] + 4.0f * e[2], od2 = 2.0f * e[1] + 8.0f * e[3];
    z[0] = e[0];
    z[1] = ev + od;
    z[2] = ev - od;
    z[3] = ev4 + od2;
    z[4] = ev4 - od2;
    z[5] = e[3];
}

/* The 1-D transforms over n consecutive columns: one input and one output
 * row per element (restrict: the compiler vectorizes without alias checks). */
static inline void bt_rows(float *restrict o0, float *restrict o1, float *restrict o2,
                           float *restrict o3, float *restrict o4, float *restrict o5,
                           const float *restrict a0, const float *restrict a1,
                           const float *restrict a2, const float *restrict a3,
                           const float *restrict a4, const float *restrict a5, int n)
{
    for (int i = 0; i < n; i++) {
        float d[WG_A] = { a0[i], a1[i], a2[i], a3[i], a4[i], a5[i] }, t[WG_A];
        bt_1d(t, d);
        o0[i] = t[0]; o1[i] = t[1]; o2[i] = t[2]; o3[i] = t[3]; o4[i] = t[4]; o5[i] = t[5];
    }
}

static inline void at_rows(float *restrict o0, float *restrict o1, float *restrict o2,
                           float *restrict o3,
                           const float *restrict a0, const float *restrict a1,
                           const float *restrict a2, const float *restrict a3,
                           const float *restrict a4, const float *restrict a5, int n, float b)
{
    for (int i = 0; i < n; i++) {
        float d[WG_A] = { a0[i], a1[i], a2[i], a3[i], a4[i], a5[i] }, t[WG_M];
        at_1d(t, d);
        o0[i] = t[0] + b; o1[i] = t[1] + b; o2[i] = t[2] + b; o3[i] = t[3] + b;
    }
}

static inline void a_rows(float *restrict o0, float *restrict o1, float *restrict o2,
                          float *restrict o3, float *restrict o4, float *restrict o5,
                          const float *restrict a0, const float *restrict a1,
                          const float *restrict a2, const float *restrict a3, int n)
{
    for (int i = 0; i < n; i++) {
        float e[WG_M] = { a0[i], a1[i], a2[i], a3[i] }, z[WG_A];
        a_1d(z, e);
        o0[i] = z[0]; o1[i] = z[1]; o2[i] = z[2]; o3[i] = z[3]; o4[i] = z[4]; o5[i] = z[5];
    }
}

/* Copies row yy of a plane (h, w) into buf[off ..], zeros elsewhere up to len. */
static inline void padded_row(float *buf, int len, int off, const float *plane, int yy, int h, int w)
{
    if (yy < 0 || yy >= h) {
        for (int x = 0; x < len; x++)
            buf[x] = 0.0f;
        return;
    }
    const float *row = plane + (size_t)yy * w;
    for (int x = 0; x < off; x++)
        buf[x] = 0.0f;
    for (int x = 0; x < w; x++)
        buf[off + x] = row[x];
    for (int x = off + w; x < len; x++)
        buf[x] = 0.0f;
}

/* Calls WG_CALL(tiles per row, map width) with both as constants for the
 * small maps whose width is a whole number of tiles (4, 8, 16, 32: the
 * gathers and row copies unroll), else with the variables. */
#define WG_SMALL_MAPS(tw, w)                                                             \
    do {                                                                                 \
        if ((tw) == 1 && (w) == WG_M) WG_CALL(1, WG_M);                                  \
        else if ((tw) == 2 && (w) == 2 * WG_M) WG_CALL(2, 2 * WG_M);                     \
        else if ((tw) == 4 && (w) == 4 * WG_M) WG_CALL(4, 4 * WG_M);                     \
        else if ((tw) == 8 && (w) == 8 * WG_M) WG_CALL(8, 8 * WG_M);                     \
        else WG_CALL(tw, w);                                                             \
    } while (0)

/* 32-wide maps (8 tiles per row) go two tile rows at a time through
 * 16-float vectors: lanes 0-7 the 8 tiles of one tile row, lanes 8-15
 * those of the next. A map row (two vectors) is split into its four column
 * phases (x = 4 k + q, lane k) by shuffles, one instruction each in the
 * AVX-512 clones, where the scalar gathers spent most of the transforms'
 * time. V, E and O rows (tiles contiguous) are then read or written 16
 * floats at a time. */
#define WG_W32 32
typedef float wg_v16 __attribute__((vector_size(64)));
typedef int32_t wg_i16 __attribute__((vector_size(64)));

static const wg_i16 wg_dei01 = { 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29 };
static const wg_i16 wg_dei23 = { 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31 };
static const wg_i16 wg_lo8 = { 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23 };
static const wg_i16 wg_hi8 = { 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31 };
static const wg_i16 wg_hi8_back = { 8, 8, 9, 10, 11, 12, 13, 14, 24, 24, 25, 26, 27, 28, 29, 30 };
static const wg_i16 wg_lo8_fwd = { 1, 2, 3, 4, 5, 6, 7, 7, 17, 18, 19, 20, 21, 22, 23, 23 };
static const wg_i16 wg_keep_back = { 0, -1, -1, -1, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1, -1 };
static const wg_i16 wg_keep_fwd = { -1, -1, -1, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1, -1, 0 };
static const wg_i16 wg_zip_lo = { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 };
static const wg_i16 wg_zip_hi = { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };
static const wg_i16 wg_zip2_lo = { 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23 };
static const wg_i16 wg_zip2_hi = { 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31 };

/* Macros, not functions: 64-byte vectors passed by value would change the
 * ABI between the clones. */
#define V16_LOAD(v, p) memcpy(&(v), (p), sizeof(wg_v16))
/* all 16 lanes, or lanes 0-7 only (no second tile row) */
#define V16_STORE(p, v, two)                                     \
    do {                                                         \
        wg_v16 v16_tmp_ = (v);                                   \
        if (two)                                                 \
            memcpy((p), &v16_tmp_, sizeof v16_tmp_);             \
        else            /* constant sizes: vector stores, no rep movs */ \
            memcpy((p), &v16_tmp_, sizeof v16_tmp_ / 2);         \
    } while (0)
#define V16_AND(v, keep) ((wg_v16)((wg_i16)(v) & (keep)))

/* Row yy of a 32-wide plane (zeros outside the map) split into its column
 * phases: p01 lanes 0-7 x = 4k, lanes 8-15 x = 4k + 1; p23 likewise 4k + 2, 4k + 3. */
static inline WG_INLINE void phases_32(wg_v16 *p01, wg_v16 *p23, const float *plane, int yy, int h)
{
    if (yy < 0 || yy >= h) {
        *p01 = *p23 = (wg_v16){ 0 };
        return;
    }
    const float *row = plane + (size_t)yy * WG_W32;
    wg_v16 lo, hi;
    V16_LOAD(lo, row);
    V16_LOAD(hi, row + 16);
    *p01 = __builtin_shuffle(lo, hi, wg_dei01);
    *p23 = __builtin_shuffle(lo, hi, wg_dei23);
}

/* The plane of global tile row R of channel c, and the tile row's ty. */
static inline const float *tile_row_plane(const float *x, int C, int c, size_t plane,
                                          const wg_geom *g, size_t R, int *ty)
{
    *ty = (int)(R % (size_t)g->th);
    return x + (R / (size_t)g->th * (size_t)C + (size_t)c) * plane;
}

/* Maps 4, 8 or 16 wide (tw = 1, 2, 4 tiles per row) go 16 / tw tile rows
 * at a time: lane tw m + k is tile k of tile row m. The 16 / (4 tw) map rows
 * of tile rows 4m' / tw .. fill one vector each (r[0..3]); the same two
 * shuffle stages as for 32-wide maps then split them into their column
 * phases: rows of r[0], r[1] into lanes 0-7 / 8-15 per pair of phases, the
 * pairs of r[2], r[3] merged in. */
typedef float wg_v8 __attribute__((vector_size(32)));
typedef float wg_v4 __attribute__((vector_size(16)));

/* x = 4k - 1 (phase 3 of tile k - 1; 0 for k = 0) and x = 4k + 4 (phase 0
 * of tile k + 1; 0 for the last tile), for tw = 2 and 4 */
static const wg_i16 wg_back2 = { 0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14 };
static const wg_i16 wg_fwd2 = { 1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15 };
static const wg_i16 wg_keep_back2 = { 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1 };
static const wg_i16 wg_keep_fwd2 = { -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0 };
static const wg_i16 wg_back4 = { 0, 0, 1, 2, 4, 4, 5, 6, 8, 8, 9, 10, 12, 12, 13, 14 };
static const wg_i16 wg_fwd4 = { 1, 2, 3, 3, 5, 6, 7, 7, 9, 10, 11, 11, 13, 14, 15, 15 };
static const wg_i16 wg_keep_back4 = { 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1 };
static const wg_i16 wg_keep_fwd4 = { -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0 };

/* The first n floats of v (n = 16: one vector store) */
static inline WG_INLINE void v16_store_n(float *p, const wg_v16 *v, int n)
{
    if (n == 16)
        memcpy(p, v, sizeof *v);
    else
        memcpy(p, v, (size_t)n * sizeof(float));
}

/* The planes and tile rows of the (up to) 16 / tw tile rows from R; absent
 * ones repeat the first. Returns how many are present. */
static inline WG_INLINE int tile_rows_n(const float *pl[16], int ty[16], const float *x, int C,
                                        int c, size_t plane, const wg_geom *g, size_t R, int left,
                                        int tw)
{
    int group = 16 / tw, nv = left < group ? left : group;
    for (int m = 0; m < group; m++) {
        if (m < nv) {
            pl[m] = tile_row_plane(x, C, c, plane, g, R + (size_t)m, &ty[m]);
        } else {
            pl[m] = pl[0];
            ty[m] = ty[0];
        }
    }
    return nv;
}

/* Row 4 ty[m] + dy of plane pl[m] (zeros outside the map), w = 4 tw floats */
#define WG_ROW(T, m)                                                              \
    ({                                                                            \
        T row_ = { 0 };                                                           \
        int yy_ = WG_M * ty[m] + dy;                                              \
        if (yy_ >= 0 && yy_ < h)                                                  \
            memcpy(&row_, pl[m] + (size_t)yy_ * sizeof(T) / sizeof(float), sizeof(T)); \
        row_;                                                                     \
    })

/* Row dy of every tile row split into its phases: q[i] lane tw m + k =
 * column 4 k + i. */
static inline WG_INLINE void phases_n(wg_v16 q[WG_M], const float *const pl[16], const int ty[16],
                                      int dy, int h, int tw)
{
    wg_v16 r[4];
    for (int j = 0; j < 4; j++) {
        if (tw == 4) {
            r[j] = WG_ROW(wg_v16, j);
        } else if (tw == 2) {
            wg_v8 a = WG_ROW(wg_v8, 2 * j), b = WG_ROW(wg_v8, 2 * j + 1);
            r[j] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        } else {
            wg_v4 a = WG_ROW(wg_v4, 4 * j), b = WG_ROW(wg_v4, 4 * j + 1);
            wg_v4 c = WG_ROW(wg_v4, 4 * j + 2), d = WG_ROW(wg_v4, 4 * j + 3);
            wg_v8 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7);
            wg_v8 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7);
            r[j] = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        }
    }
    wg_v16 a01 = __builtin_shuffle(r[0], r[1], wg_dei01), b01 = __builtin_shuffle(r[0], r[1], wg_dei23);
    wg_v16 a23 = __builtin_shuffle(r[2], r[3], wg_dei01), b23 = __builtin_shuffle(r[2], r[3], wg_dei23);
    q[0] = __builtin_shuffle(a01, a23, wg_lo8);
    q[1] = __builtin_shuffle(a01, a23, wg_hi8);
    q[2] = __builtin_shuffle(b01, b23, wg_lo8);
    q[3] = __builtin_shuffle(b01, b23, wg_hi8);
}

/* input_tf for maps 4, 8 or 16 wide, as input_tf_32 */
static inline WG_INLINE void input_tf_n(float *V, int ld, const float *x, int C, int h,
                                        const wg_geom *g, size_t t0, int nt, int tw)
{
    int rows = nt / tw, group = 16 / tw;
    size_t ps = (size_t)C * ld, plane = (size_t)h * 4 * tw, R0 = t0 / (size_t)tw;
    for (int c = 0; c < C; c++)
        for (int rr = 0; rr < rows; rr += group) {
            const float *pl[16];
            int ty[16];
            int n = tw * tile_rows_n(pl, ty, x, C, c, plane, g, R0 + (size_t)rr, rows - rr, tw);
            wg_v16 H[WG_A][WG_A];
            for (int r = 0; r < WG_A; r++) {
                wg_v16 q[WG_M], d[WG_A];
                phases_n(q, pl, ty, r - 1, h, tw);
                d[1] = q[0];
                d[2] = q[1];
                d[3] = q[2];
                d[4] = q[3];
                if (tw == 4) {
                    d[0] = V16_AND(__builtin_shuffle(q[3], wg_back4), wg_keep_back4);
                    d[5] = V16_AND(__builtin_shuffle(q[0], wg_fwd4), wg_keep_fwd4);
                } else if (tw == 2) {
                    d[0] = V16_AND(__builtin_shuffle(q[3], wg_back2), wg_keep_back2);
                    d[5] = V16_AND(__builtin_shuffle(q[0], wg_fwd2), wg_keep_fwd2);
                } else {
                    d[0] = d[5] = (wg_v16){ 0 };
                }
                WG_BT_1D(H[r], d);
            }
            float *v = V + (size_t)c * ld + (size_t)rr * tw;
            for (int i = 0; i < WG_A; i++) {
                wg_v16 col[WG_A] = { H[0][i], H[1][i], H[2][i], H[3][i], H[4][i], H[5][i] }, o[WG_A];
                WG_BT_1D(o, col);
                for (int j = 0; j < WG_A; j++)
                    v16_store_n(v + (size_t)(j * WG_A + i) * ps, &o[j], n);
            }
        }
}

/* input_tf for 32-wide maps: the horizontal transform on the phases of
 * each patch row of two tile rows, then the vertical one into V. */
static inline WG_INLINE void input_tf_32(float *V, int ld, const float *x, int C, int h,
                                         const wg_geom *g, size_t t0, int nt)
{
    int rows = nt / 8;
    size_t ps = (size_t)C * ld, plane = (size_t)h * WG_W32, R0 = t0 / 8;
    for (int c = 0; c < C; c++)
        for (int rr = 0; rr < rows; rr += 2) {
            int two = rr + 1 < rows, tya, tyb;
            const float *pa = tile_row_plane(x, C, c, plane, g, R0 + (size_t)rr, &tya);
            const float *pb = two ? tile_row_plane(x, C, c, plane, g, R0 + (size_t)rr + 1, &tyb) : pa;
            if (!two)
                tyb = tya;
            wg_v16 H[WG_A][WG_A];                       /* patch row, horizontal output */
            for (int r = 0; r < WG_A; r++) {
                wg_v16 a01, a23, b01, b23, d[WG_A];
                phases_32(&a01, &a23, pa, WG_M * tya - 1 + r, h);
                phases_32(&b01, &b23, pb, WG_M * tyb - 1 + r, h);
                d[0] = V16_AND(__builtin_shuffle(a23, b23, wg_hi8_back), wg_keep_back); /* x = 4k - 1 */
                d[1] = __builtin_shuffle(a01, b01, wg_lo8);
                d[2] = __builtin_shuffle(a01, b01, wg_hi8);
                d[3] = __builtin_shuffle(a23, b23, wg_lo8);
                d[4] = __builtin_shuffle(a23, b23, wg_hi8);
                d[5] = V16_AND(__builtin_shuffle(a01, b01, wg_lo8_fwd), wg_keep_fwd);   /* x = 4k + 4 */
                WG_BT_1D(H[r], d);
            }
            float *v = V + (size_t)c * ld + (size_t)rr * 8;
            for (int i = 0; i < WG_A; i++) {
                wg_v16 col[WG_A] = { H[0][i], H[1][i], H[2][i], H[3][i], H[4][i], H[5][i] }, o[WG_A];
                WG_BT_1D(o, col);
                for (int j = 0; j < WG_A; j++)
                    V16_STORE(v + (size_t)(j * WG_A + i) * ps, o[j], two);
            }
        }
}

/* input_tf for maps of at least WG_WIDE_TW tiles per row: per tile row,
 * the horizontal transform first on the input rows split into their four
 * column phases (x[4k - 1 + q]: contiguous in k), then the vertical one
 * straight into V. No gather, no scratch. */
WG_CLONES static void input_tf_wide(float *V, int ld, const float *x, int C, int h, int w,
                                    const wg_geom *g, size_t t0, int nt)
{
    int tw = g->tw, rows = nt / tw;
    size_t ps = (size_t)C * ld, plane = (size_t)h * w;
    float ph[WG_M][WG_MAX_TW + 1];                      /* column phases of one input row */
    float H[WG_A][WG_A][WG_MAX_TW];                     /* input row r, BT output i, tile k */
    for (int c = 0; c < C; c++) {
        row_iter it;
        row_first(&it, g, t0);
        for (int rr = 0; rr < rows; rr++, row_next(&it, g)) {
            const float *src = x + ((size_t)it.img * C + c) * plane;
            for (int r = 0; r < WG_A; r++) {
                int yy = WG_M * it.ty - 1 + r;
                if (yy < 0 || yy >= h) {
                    for (int i = 0; i < WG_A; i++)
                        for (int k = 0; k < tw; k++)
                            H[r][i][k] = 0.0f;
                    continue;
                }
                const float *row = src + (size_t)yy * w;
                for (int q = 0; q < WG_M; q++) {
                    int lo = q == 0, hi = (w - q) / WG_M;    /* valid k: 4k - 1 + q in [0, w) */
                    if (hi > tw) hi = tw;
                    for (int k = 0; k < lo; k++)
                        ph[q][k] = 0.0f;
                    for (int k = lo; k <= hi; k++)
                        ph[q][k] = row[WG_M * k - 1 + q];
                    for (int k = hi + 1; k <= tw; k++)
                        ph[q][k] = 0.0f;
                }
                bt_rows(H[r][0], H[r][1], H[r][2], H[r][3], H[r][4], H[r][5],
                        ph[0], ph[1], ph[2], ph[3], ph[0] + 1, ph[1] + 1, tw);
            }
            float *v = V + (size_t)c * ld + (size_t)rr * tw;
            for (int i = 0; i < WG_A; i++) {
                float *vi = v + (size_t)i * ps;
                size_t js = (size_t)WG_A * ps;
                bt_rows(vi, vi + js, vi + 2 * js, vi + 3 * js, vi + 4 * js, vi + 5 * js,
                        H[0][i], H[1][i], H[2][i], H[3][i], H[4][i], H[5][i], tw);
            }
        }
    }
}

/* V[p][c][i] = (BT x BT^T)[p] of the patch (pad 1) under tile t0 + i of
 * channel c of x (n, C, h, w); position stride C * ld. The vertical
 * transform runs over whole padded rows, the horizontal one over all the
 * tiles of the chunk: long loops over consecutive floats (vectorize) even
 * for small maps. scr: WG_SCRATCH * ld floats. */
static inline WG_INLINE void input_tf_rows(float *V, int ld, const float *x, int C, int h, int w,
                                           const wg_geom *g, size_t t0, int nt, float *scr, int tw)
{
    int rows = nt / tw, plen = WG_M * tw + 2;
    size_t ps = (size_t)C * ld, plane = (size_t)h * w;
    float pad[WG_A][WG_M * WG_WIDE_TW + 2];             /* the patch rows, column -1 first */
    float Tv[WG_A][WG_M * WG_WIDE_TW + 2];              /* BT over the rows */
    float *T = scr;                                     /* T[j][q][i]: (WG_A, WG_A, ld) */
    for (int c = 0; c < C; c++) {
        row_iter it;
        row_first(&it, g, t0);
        for (int rr = 0; rr < rows; rr++, row_next(&it, g)) {
            const float *src = x + ((size_t)it.img * C + c) * plane;
            prefetch_rows(x, C, h, w, g, t0 / (size_t)tw, rows, c, rr, -1, WG_A, 0);
            for (int r = 0; r < WG_A; r++)
                padded_row(pad[r], plen, 1, src, WG_M * it.ty - 1 + r, h, w);
            bt_rows(Tv[0], Tv[1], Tv[2], Tv[3], Tv[4], Tv[5],
                    pad[0], pad[1], pad[2], pad[3], pad[4], pad[5], plen);
            for (int j = 0; j < WG_A; j++)
                for (int q = 0; q < WG_A; q++) {
                    float *tq = T + (size_t)(j * WG_A + q) * ld + (size_t)rr * tw;
                    for (int k = 0; k < tw; k++)
                        tq[k] = Tv[j][WG_M * k + q];
                }
        }
        float *v = V + (size_t)c * ld;
        for (int j = 0; j < WG_A; j++) {
            float *vp = v + (size_t)(j * WG_A) * ps;
            const float *tj = T + (size_t)(j * WG_A) * ld;
            bt_rows(vp, vp + ps, vp + 2 * ps, vp + 3 * ps, vp + 4 * ps, vp + 5 * ps,
                    tj, tj + ld, tj + 2 * (size_t)ld, tj + 3 * (size_t)ld, tj + 4 * (size_t)ld,
                    tj + 5 * (size_t)ld, nt);
        }
    }
}

WG_CLONES static void input_tf(float *V, int ld, const float *x, int C, int h, int w,
                               const wg_geom *g, size_t t0, int nt, float *scr)
{
#define WG_CALL(tw_, w_) input_tf_rows(V, ld, x, C, h, w_, g, t0, nt, scr, tw_)
    if (g->tw == 8 && w == WG_W32)
        input_tf_32(V, ld, x, C, h, g, t0, nt);
    else if (g->tw == 4 && w == 16)
        input_tf_n(V, ld, x, C, h, g, t0, nt, 4);
    else if (g->tw == 2 && w == 8)
        input_tf_n(V, ld, x, C, h, g, t0, nt, 2);
    else if (g->tw == 1 && w == 4)
        input_tf_n(V, ld, x, C, h, g, t0, nt, 1);
    else if (g->tw >= WG_WIDE_TW)
        input_tf_wide(V, ld, x, C, h, w, g, t0, nt);
    else
        WG_SMALL_MAPS(g->tw, w);
#undef WG_CALL
}

/* The output rows of channel c for 32-wide maps from O[i][l][t] (tile t's
 * output row i, column l), two tile rows at a time: the four columns of
 * the 8 tiles interleaved into a 32-float map row by shuffles. */
static inline WG_INLINE void output_rows_32(float *y, const float *O, int ld, int C, int c, int h,
                                            const wg_geom *g, size_t R0, int rows, int acc)
{
    size_t plane = (size_t)h * WG_W32;
    for (int rr = 0; rr < rows; rr += 2) {
        int two = rr + 1 < rows, ty[2];
        float *pl[2];
        pl[0] = (float *)tile_row_plane(y, C, c, plane, g, R0 + (size_t)rr, &ty[0]);
        pl[1] = two ? (float *)tile_row_plane(y, C, c, plane, g, R0 + (size_t)rr + 1, &ty[1]) : NULL;
        for (int i = 0; i < WG_M; i++) {
            const float *o = O + (size_t)(i * WG_M) * ld + (size_t)rr * 8;
            wg_v16 c0, c1, c2, c3;
            V16_LOAD(c0, o);
            V16_LOAD(c1, o + ld);
            V16_LOAD(c2, o + 2 * (size_t)ld);
            V16_LOAD(c3, o + 3 * (size_t)ld);
            for (int half = 0; half < 1 + two; half++) {
                int yy = WG_M * ty[half] + i;
                if (yy >= h)
                    continue;
                wg_i16 zip = half ? wg_zip_hi : wg_zip_lo;
                wg_v16 z01 = __builtin_shuffle(c0, c1, zip), z23 = __builtin_shuffle(c2, c3, zip);
                wg_v16 r0 = __builtin_shuffle(z01, z23, wg_zip2_lo), r1 = __builtin_shuffle(z01, z23, wg_zip2_hi);
                float *row = pl[half] + (size_t)yy * WG_W32;
                if (acc) {
                    wg_v16 p0, p1;
                    V16_LOAD(p0, row);
                    V16_LOAD(p1, row + 16);
                    r0 += p0;
                    r1 += p1;
                }
                memcpy(row, &r0, sizeof r0);
                memcpy(row + 16, &r1, sizeof r1);
            }
        }
    }
}

/* output_rows_32 for maps 4, 8 or 16 wide, 16 / tw tile rows at a time:
 * the interleaved vector j holds the map rows of tile rows 4 j / tw .. */
static inline WG_INLINE void output_rows_n(float *y, const float *O, int ld, int C, int c, int h,
                                           const wg_geom *g, size_t R0, int rows, int acc, int tw)
{
    int w = 4 * tw, group = 16 / tw;
    size_t plane = (size_t)h * w;
    for (int rr = 0; rr < rows; rr += group) {
        const float *pl[16];
        int ty[16];
        int nv = tile_rows_n(pl, ty, y, C, c, plane, g, R0 + (size_t)rr, rows - rr, tw);
        for (int i = 0; i < WG_M; i++) {
            const float *o = O + (size_t)(i * WG_M) * ld + (size_t)rr * tw;
            wg_v16 c0, c1, c2, c3;
            V16_LOAD(c0, o);
            V16_LOAD(c1, o + ld);
            V16_LOAD(c2, o + 2 * (size_t)ld);
            V16_LOAD(c3, o + 3 * (size_t)ld);
            wg_v16 z01 = __builtin_shuffle(c0, c1, wg_zip_lo), z01h = __builtin_shuffle(c0, c1, wg_zip_hi);
            wg_v16 z23 = __builtin_shuffle(c2, c3, wg_zip_lo), z23h = __builtin_shuffle(c2, c3, wg_zip_hi);
            float out[4][16];                           /* 16 / w map rows each */
            wg_v16 r0 = __builtin_shuffle(z01, z23, wg_zip2_lo), r1 = __builtin_shuffle(z01, z23, wg_zip2_hi);
            wg_v16 r2 = __builtin_shuffle(z01h, z23h, wg_zip2_lo), r3 = __builtin_shuffle(z01h, z23h, wg_zip2_hi);
            memcpy(out[0], &r0, sizeof r0);
            memcpy(out[1], &r1, sizeof r1);
            memcpy(out[2], &r2, sizeof r2);
            memcpy(out[3], &r3, sizeof r3);
            const float *src = out[0];
            for (int m = 0; m < nv; m++, src += w) {
                int yy = WG_M * ty[m] + i;
                if (yy >= h)
                    continue;
                float *row = (float *)pl[m] + (size_t)yy * w;
                for (int x = 0; x < w; x++)
                    row[x] = (acc ? row[x] : 0.0f) + src[x];
            }
        }
    }
}

/* y (n, C, h, w) tile t0 + i = AT M AT^T (+ bias), added to y when acc.
 * Both transforms run over all the tiles of the chunk. scr: WG_SCRATCH * ld floats. */
static inline WG_INLINE void output_tf_rows(float *y, const float *M, int ld, int C, int h,
                                            int w, const wg_geom *g, size_t t0, int nt,
                                            const float *bias, int acc, float *scr, int tw)
{
    int rows = nt / tw;
    size_t ps = (size_t)C * ld, plane = (size_t)h * w;
    float *S = scr;                                     /* S[i][q][t]: (WG_M, WG_A, ld) */
    float *O = scr + (size_t)WG_M * WG_A * ld;          /* O[i][l][t]: (WG_M, WG_M, ld) */
    for (int c = 0; c < C; c++) {
        const float *m = M + (size_t)c * ld;
        float b = bias ? bias[c] : 0.0f;
        size_t lq = (size_t)WG_A * ld;                  /* S: stride of i */
        for (int q = 0; q < WG_A; q++) {
            const float *mq = m + (size_t)q * ps;
            size_t jp = (size_t)WG_A * ps;              /* M: stride of j */
            float *sq = S + (size_t)q * ld;
            at_rows(sq, sq + lq, sq + 2 * lq, sq + 3 * lq,
                    mq, mq + jp, mq + 2 * jp, mq + 3 * jp, mq + 4 * jp, mq + 5 * jp, nt, 0.0f);
        }
        for (int i = 0; i < WG_M; i++) {
            const float *si = S + (size_t)i * lq;
            float *oi = O + (size_t)(i * WG_M) * ld;
            at_rows(oi, oi + ld, oi + 2 * (size_t)ld, oi + 3 * (size_t)ld,
                    si, si + ld, si + 2 * (size_t)ld, si + 3 * (size_t)ld, si + 4 * (size_t)ld,
                    si + 5 * (size_t)ld, nt, b);
        }
        if (tw == 8 && w == WG_W32) {
            output_rows_32(y, O, ld, C, c, h, g, t0 / 8, rows, acc);
            continue;
        }
        if (tw <= 4 && w == 4 * tw && (tw == 1 || tw == 2 || tw == 4)) {
            output_rows_n(y, O, ld, C, c, h, g, t0 / (size_t)tw, rows, acc, tw);
            continue;
        }
        row_iter it;
        row_first(&it, g, t0);
        for (int rr = 0; rr < rows; rr++, row_next(&it, g)) {
            float *dst = y + ((size_t)it.img * C + c) * plane;
            prefetch_rows(y, C, h, w, g, t0 / (size_t)tw, rows, c, rr, 0, WG_M, 1);
            for (int i = 0; i < WG_M && WG_M * it.ty + i < h; i++) {
                float *row = dst + (size_t)(WG_M * it.ty + i) * w;
                const float *o = O + (size_t)(i * WG_M) * ld + (size_t)rr * tw;
                for (int k = 0; k < tw; k++)
                    for (int l = 0; l < WG_M; l++) {
                        int xx = WG_M * k + l;
                        if (xx < w)
                            row[xx] = (acc ? row[xx] : 0.0f) + o[(size_t)l * ld + k];
                    }
            }
        }
    }
}

WG_CLONES static void output_tf(float *y, const float *M, int ld, int C, int h, int w,
                                const wg_geom *g, size_t t0, int nt, const float *bias, int acc,
                                float *scr)
{
#define WG_CALL(tw_, w_) output_tf_rows(y, M, ld, C, h, w_, g, t0, nt, bias, acc, scr, tw_)
    WG_SMALL_MAPS(g->tw, w);
#undef WG_CALL
}

/* colsum[x] += column x of row i of each of the n tile rows (planes pl,
 * tile rows ty) that lies in the map (w wide, h high) */
static inline WG_INLINE void add_column_sums(float *colsum, const float *const *pl, const int *ty,
                                             int n, int i, int h, int w)
{
    for (int m = 0; m < n; m++) {
        int yy = WG_M * ty[m] + i;
        if (yy < h) {
            const float *row = pl[m] + (size_t)yy * w;
            for (int xx = 0; xx < w; xx++)
                colsum[xx] += row[xx];
        }
    }
}

/* E[i][l][t] = row i, column l of tile t of channel c of a 32-wide map
 * (0 below the map), two tile rows at a time; colsum[x] += the map's column x. */
static inline WG_INLINE void grad_rows_32(float *E, int ld, const float *dy, int C, int c, int h,
                                          const wg_geom *g, size_t R0, int rows, float *colsum)
{
    size_t plane = (size_t)h * WG_W32;
    for (int rr = 0; rr < rows; rr += 2) {
        int two = rr + 1 < rows, ty[2];
        const float *pl[2];
        pl[0] = tile_row_plane(dy, C, c, plane, g, R0 + (size_t)rr, &ty[0]);
        pl[1] = two ? tile_row_plane(dy, C, c, plane, g, R0 + (size_t)rr + 1, &ty[1]) : pl[0];
        if (!two)
            ty[1] = ty[0];
        for (int i = 0; i < WG_M; i++) {
            wg_v16 a01, a23, b01, b23;
            phases_32(&a01, &a23, pl[0], WG_M * ty[0] + i, h);
            phases_32(&b01, &b23, pl[1], WG_M * ty[1] + i, h);
            float *e = E + (size_t)(i * WG_M) * ld + (size_t)rr * 8;
            V16_STORE(e, __builtin_shuffle(a01, b01, wg_lo8), two);
            V16_STORE(e + ld, __builtin_shuffle(a01, b01, wg_hi8), two);
            V16_STORE(e + 2 * (size_t)ld, __builtin_shuffle(a23, b23, wg_lo8), two);
            V16_STORE(e + 3 * (size_t)ld, __builtin_shuffle(a23, b23, wg_hi8), two);
            add_column_sums(colsum, pl, ty, 1 + two, i, h, WG_W32);
        }
    }
}

/* grad_rows_32 for maps 4, 8 or 16 wide, 16 / tw tile rows at a time */
static inline WG_INLINE void grad_rows_n(float *E, int ld, const float *dy, int C, int c, int h,
                                         const wg_geom *g, size_t R0, int rows, float *colsum, int tw)
{
    int w = 4 * tw, group = 16 / tw;
    size_t plane = (size_t)h * w;
    for (int rr = 0; rr < rows; rr += group) {
        const float *pl[16];
        int ty[16];
        int nv = tile_rows_n(pl, ty, dy, C, c, plane, g, R0 + (size_t)rr, rows - rr, tw);
        for (int i = 0; i < WG_M; i++) {
            wg_v16 q[WG_M];
            phases_n(q, pl, ty, i, h, tw);
            float *e = E + (size_t)(i * WG_M) * ld + (size_t)rr * tw;
            for (int l = 0; l < WG_M; l++)
                v16_store_n(e + (size_t)l * ld, &q[l], nv * tw);
            add_column_sums(colsum, pl, ty, nv, i, h, w);
        }
    }
}

/* Z[p][c][i] = (AT^T dy AT)[p] of the WG_M x WG_M tile t0 + i of channel c
 * of dy (outside the map: 0); sums[c] += the tile's values (bias gradient).
 * scr: WG_SCRATCH * ld floats. */
static inline WG_INLINE void grad_tf_rows(float *Z, int ld, const float *dy, int C, int h, int w,
                                          const wg_geom *g, size_t t0, int nt, float *sums,
                                          float *scr, int tw)
{
    int rows = nt / tw, plen = WG_M * tw;
    size_t ps = (size_t)C * ld, plane = (size_t)h * w;
    float pad[WG_M * WG_MAX_TW];
    float colsum[WG_M * WG_MAX_TW];                     /* per column: keeps the loops vectorizable */
    float *E = scr;                                     /* E[i][l][t]: (WG_M, WG_M, ld) */
    float *S = scr + (size_t)WG_M * WG_M * ld;          /* S[j][l][t]: (WG_A, WG_M, ld) */
    for (int c = 0; c < C; c++) {
        row_iter it;
        row_first(&it, g, t0);
        for (int xx = 0; xx < plen; xx++)
            colsum[xx] = 0.0f;
        if (tw == 8 && w == WG_W32)
            grad_rows_32(E, ld, dy, C, c, h, g, t0 / 8, rows, colsum);
        else if (w == 4 * tw && (tw == 1 || tw == 2 || tw == 4))
            grad_rows_n(E, ld, dy, C, c, h, g, t0 / (size_t)tw, rows, colsum, tw);
        else
        for (int rr = 0; rr < rows; rr++, row_next(&it, g)) {
            const float *src = dy + ((size_t)it.img * C + c) * plane;
            prefetch_rows(dy, C, h, w, g, t0 / (size_t)tw, rows, c, rr, 0, WG_M, 0);
            for (int i = 0; i < WG_M; i++) {
                int yy = WG_M * it.ty + i;
                const float *row = pad;                 /* the map's row itself when whole */
                if (w == plen && yy < h)
                    row = src + (size_t)yy * w;
                else
                    padded_row(pad, plen, 0, src, yy, h, w);
                for (int xx = 0; xx < plen; xx++)
                    colsum[xx] += row[xx];
                for (int l = 0; l < WG_M; l++) {
                    float *e = E + (size_t)(i * WG_M + l) * ld + (size_t)rr * tw;
                    for (int k = 0; k < tw; k++)
                        e[k] = row[WG_M * k + l];
                }
            }
        }
        size_t il = (size_t)WG_M * ld, jl = (size_t)WG_M * ld;   /* E: stride of i; S: of j */
        for (int l = 0; l < WG_M; l++) {
            const float *el = E + (size_t)l * ld;
            float *sl = S + (size_t)l * ld;
            a_rows(sl, sl + jl, sl + 2 * jl, sl + 3 * jl, sl + 4 * jl, sl + 5 * jl,
                   el, el + il, el + 2 * il, el + 3 * il, nt);
        }
        float *zb = Z + (size_t)c * ld;
        for (int j = 0; j < WG_A; j++) {
            float *zp = zb + (size_t)(j * WG_A) * ps;
            const float *sj = S + (size_t)j * jl;
            a_rows(zp, zp + ps, zp + 2 * ps, zp + 3 * ps, zp + 4 * ps, zp + 5 * ps,
                   sj, sj + ld, sj + 2 * (size_t)ld, sj + 3 * (size_t)ld, nt);
        }
        if (sums)
            for (int xx = 0; xx < plen; xx++)
                sums[c] += colsum[xx];
    }
}

WG_CLONES static void grad_tf(float *Z, int ld, const float *dy, int C, int h, int w,
                              const wg_geom *g, size_t t0, int nt, float *sums, float *scr)
{
#define WG_CALL(tw_, w_) grad_tf_rows(Z, ld, dy, C, h, w_, g, t0, nt, sums, scr, tw_)
    WG_SMALL_MAPS(g->tw, w);
#undef WG_CALL
}

/* ---------------------------------------------------------------- passes */

typedef struct wg_job {
    const nn_conv_dims *d;
    wg_geom g;
    int ci, co;                   /* channels in and out of this pass */
    const float *x;               /* (n, ci, h, w) */
    float *y;                     /* (n, co, h, w) */
    const float *U;               /* (WG_POS, co, ci) */
    const float *bias;
    int acc;
    float *ws;                    /* the per-thread area */
    atomic_size_t next;           /* next chunk to take */
} wg_job;

static float *thread_ws(const wg_job *j)
{
    return j->ws + (size_t)nn_parallel_thread_id() * j->g.per_thread;
}

/* y = conv(x) chunk by chunk: transform, 16 products, inverse transform */
static void conv_chunks(void *ctx, size_t b, size_t e)
{
    wg_job *j = ctx;
    const nn_conv_dims *d = j->d;
    int tc = j->g.tc;
    float *V = thread_ws(j), *M = V + (size_t)WG_POS * j->g.cmax * tc;
    float *scr = thread_ws(j) + j->g.per_thread - (size_t)WG_SCRATCH * tc - WG_SLACK;
    for (;;) {
        size_t ch = atomic_fetch_add(&j->next, 1);
        if (ch >= j->g.chunks)
            break;
        size_t t0 = ch * (size_t)tc;
        int nt = (int)(j->g.tiles - t0 < (size_t)tc ? j->g.tiles - t0 : (size_t)tc);
        input_tf(V, tc, j->x, j->ci, d->h, d->w, &j->g, t0, nt, scr);
        for (int p = 0; p < WG_POS; p++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->co, nt, j->ci, 1.0f,
                        j->U + (size_t)p * j->co * j->ci, j->ci,
                        V + (size_t)p * j->ci * tc, tc, 0.0f,
                        M + (size_t)p * j->co * tc, tc);
        output_tf(j->y, M, tc, j->co, d->h, d->w, &j->g, t0, nt, j->bias, j->acc, scr);
    }
}

/* per-thread acc (WG_POS, cout, cin) += Z V^T chunk by chunk; sums += bias gradient */
static void filter_grad_chunks(void *ctx, size_t b, size_t e)
{
    wg_job *j = ctx;
    const nn_conv_dims *d = j->d;
    int tc = j->g.tc;
    float *V = thread_ws(j), *Z = V + (size_t)WG_POS * j->g.cmax * tc;
    float *acc = Z + (size_t)WG_POS * j->g.cmax * tc, *sums = acc + (size_t)WG_POS * d->cout * d->cin;
    float *scr = thread_ws(j) + j->g.per_thread - (size_t)WG_SCRATCH * tc - WG_SLACK;
    for (;;) {
        size_t ch = atomic_fetch_add(&j->next, 1);
        if (ch >= j->g.chunks)
            break;
        size_t t0 = ch * (size_t)tc;
        int nt = (int)(j->g.tiles - t0 < (size_t)tc ? j->g.tiles - t0 : (size_t)tc);
        input_tf(V, tc, j->x, d->cin, d->h, d->w, &j->g, t0, nt, scr);
        grad_tf(Z, tc, j->y, d->cout, d->oh, d->ow, &j->g, t0, nt, sums, scr);
        for (int p = 0; p < WG_POS; p++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d->cout, d->cin, nt, 1.0f,
                        Z + (size_t)p * d->cout * tc, tc, V + (size_t)p * d->cin * tc, tc, 1.0f,
                        acc + (size_t)p * d->cout * d->cin, d->cin);
    }
}

typedef struct wg_filter_job {
    const nn_conv_dims *d;
    float *U;
    const float *w;
    int transpose;                /* U (WG_POS, cin, cout) of the flipped filter */
} wg_filter_job;

/* U rows [b, e) of the transformed filters: U (WG_POS, rows, cols) with rows =
 * cout, cols = cin, or for the flipped, transposed filter rows = cin, cols = cout. */
static void filters_tf(void *ctx, size_t b, size_t e)
{
    const wg_filter_job *j = ctx;
    int ci_n = j->d->cin, co_n = j->d->cout;
    int cols = j->transpose ? co_n : ci_n;
    size_t ps = (size_t)ci_n * co_n;
    enum { BLK = 16 };                                  /* columns per block: contiguous stores */
    float ub[WG_POS][BLK];
    for (size_t r = b; r < e; r++)
        for (int c0 = 0; c0 < cols; c0 += BLK) {
            int nc = cols - c0 < BLK ? cols - c0 : BLK;
            for (int c = 0; c < nc; c++) {
                size_t co = j->transpose ? (size_t)(c0 + c) : r, ci = j->transpose ? r : (size_t)(c0 + c);
                float u[WG_POS];
                filter_tf(u, j->w + (co * (size_t)ci_n + ci) * 9, j->transpose);
                for (int p = 0; p < WG_POS; p++)
                    ub[p][c] = u[p];
            }
            float *dst = j->U + r * (size_t)cols + (size_t)c0;
            for (int p = 0; p < WG_POS; p++)
                memcpy(dst + (size_t)p * ps, ub[p], (size_t)nc * sizeof(float));
        }
}

static void run_conv(float *y, float *ws, const float *x, const float *w, const float *b,
                     const nn_conv_dims *d, int transpose, int acc)
{
    wg_job j = { .d = d, .bias = b, .acc = acc, .x = x, .y = y, .U = ws };
    geom_init(&j.g, d, 0);
    j.ci = transpose ? d->cout : d->cin;
    j.co = transpose ? d->cin : d->cout;
    j.ws = ws + round_up((size_t)WG_POS * d->cout * d->cin, WG_ALIGN);
    atomic_init(&j.next, 0);
    wg_filter_job fj = { d, ws, w, transpose };
    nn_parallel_for((size_t)j.co, 16, filters_tf, &fj);
    nn_parallel_for((size_t)nn_parallel_threads(), 1, conv_chunks, &j);
}

void nn_wino_forward(float *out, float *ws, const float *in, const float *w,
                     const float *b, const nn_conv_dims *d)
{
    run_conv(out, ws, in, w, b, d, 0, 0);
}

typedef struct wg_reduce_job {
    const nn_conv_dims *d;
    const float *ws;              /* first thread's area */
    size_t per_thread, acc_off;
    int threads;
    float *dw, *db;
} wg_reduce_job;

/* dw[co] += G^T (sum over threads of acc) G, db[co] += sums, for co in [b, e) */
static void filter_grad_reduce(void *ctx, size_t b, size_t e)
{
    const wg_reduce_job *j = ctx;
    int cin = j->d->cin, cout = j->d->cout;
    size_t ps = (size_t)cout * cin;
    for (size_t co = b; co < e; co++) {
        for (int ci = 0; ci < cin; ci++) {
            float x[WG_POS] = { 0 };
            for (int t = 0; t < j->threads; t++) {
                const float *acc = j->ws + (size_t)t * j->per_thread + j->acc_off;
                for (int p = 0; p < WG_POS; p++)
                    x[p] += acc[(size_t)p * ps + co * (size_t)cin + (size_t)ci];
            }
            filter_tf_adjoint(j->dw + (co * (size_t)cin + (size_t)ci) * 9, x);
        }
        if (j->db)
            for (int t = 0; t < j->threads; t++)
                j->db[co] += j->ws[(size_t)t * j->per_thread + j->acc_off + (size_t)WG_POS * ps + co];
    }
}

void nn_wino_backward(float *din, float *dw, float *db, const float *dout, float *ws,
                      const float *in, const float *w, const nn_conv_dims *d, int overwrite)
{
    wg_job j = { .d = d, .x = in, .y = (float *)dout };
    wg_geom g0;
    geom_init(&g0, d, 0);
    geom_init(&j.g, d, 1);
    j.g.per_thread = g0.per_thread;
    j.ws = ws + round_up((size_t)WG_POS * d->cout * d->cin, WG_ALIGN);
    int threads = nn_parallel_threads();
    size_t acc_off = 2 * (size_t)WG_POS * j.g.cmax * j.g.tc;
    size_t acc_len = (size_t)WG_POS * d->cout * d->cin + d->cout;
    for (int t = 0; t < threads; t++)
        memset(j.ws + (size_t)t * j.g.per_thread + acc_off, 0, acc_len * sizeof(float));
    atomic_init(&j.next, 0);
    nn_parallel_for((size_t)threads, 1, filter_grad_chunks, &j);
    wg_reduce_job rj = { d, j.ws, j.g.per_thread, acc_off, threads, dw, db };
    nn_parallel_for((size_t)d->cout, 16, filter_grad_reduce, &rj);
    if (din)
        run_conv(din, ws, dout, w, NULL, d, 1, !overwrite);
}

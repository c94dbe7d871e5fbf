/* Unit tests of nn/layers and nn/loss: the im2col and Winograd convolutions
 * against the direct reference, and a finite-difference gradient check of
 * every layer and loss; the fused batch norm + ReLU against the two layers
 * in turn; the input-gradient overwrite variants against accumulation into
 * zeros. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/loss.h"

#define FD_EPS      1e-2       /* finite-difference step */
#define FD_RTOL     5e-3
#define FD_ATOL     1e-3
#define FD_SAMPLES  40         /* coordinates checked per tensor */

static uint64_t rng_state = 88172645463325252ull;

static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rand_buf(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void assert_close(const float *a, const float *b, size_t n, float rtol, const char *what)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    double rel = sqrt(num) / (sqrt(den) + 1e-12);
    if (rel > rtol) {
        print_error("%s: relative error %.3g > %.3g\n", what, rel, (double)rtol);
        fail();
    }
}

/* ---- finite-difference check: objective(ctx) = sum(out * r) after a forward */
typedef double (*objective_fn)(void *ctx);

static void check_grad(const char *what, objective_fn f, void *ctx, float *x, size_t n,
                       const float *analytic)
{
    size_t step = n > FD_SAMPLES ? n / FD_SAMPLES : 1;
    int bad = 0;
    for (size_t i = (size_t)(frand() * 0.5f + 0.5f) % step; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + (float)FD_EPS;
        double up = f(ctx);
        x[i] = keep - (float)FD_EPS;
        double down = f(ctx);
        x[i] = keep;
        double num = (up - down) / (2 * FD_EPS);
        if (fabs(num - analytic[i]) > FD_ATOL + FD_RTOL * fabs(num)) {
            if (bad++ < 5)
                print_error("%s[%zu]: analytic %.6g numeric %.6g\n", what, i, analytic[i], num);
        }
    }
    if (bad) {
        print_error("%s: %d coordinates off\n", what, bad);
        fail();
    }
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- convolution */
typedef struct conv_case {
    nn_conv_dims d;
    float *in, *w, *b, *out, *r, *ws;
} conv_case;

static double conv_obj(void *ctx)
{
    conv_case *c = ctx;
    nn_conv2d_forward(c->out, c->ws, c->in, c->w, c->b, &c->d);
    return dot(c->out, c->r, (size_t)c->d.n * c->d.cout * c->d.oh * c->d.ow);
}

static void run_conv_case(int n, int cin, int h, int w, int cout, int k, int s, int p, int gradcheck)
{
    conv_case c;
    char what[128];
    assert_int_equal(nn_conv_dims_init(&c.d, n, cin, h, w, cout, k, s, p), 0);
    size_t ni = (size_t)n * cin * h * w, nw = (size_t)cout * cin * k * k;
    size_t no = (size_t)n * cout * c.d.oh * c.d.ow;
    c.in = rand_buf(ni, 1.0f);
    c.w = rand_buf(nw, 0.5f);
    c.b = rand_buf((size_t)cout, 0.5f);
    c.out = zeros(no);
    c.r = rand_buf(no, 1.0f);
    c.ws = zeros(nn_conv2d_workspace(&c.d));
    float *ref = zeros(no);
    nn_conv2d_forward(c.out, c.ws, c.in, c.w, c.b, &c.d);
    nn_conv2d_forward_direct(ref, c.in, c.w, c.b, &c.d);
    snprintf(what, sizeof what, "conv n%d c%d %dx%d -> %d k%d s%d p%d", n, cin, h, w, cout, k, s, p);
    assert_close(c.out, ref, no, 1e-5f, what);

    /* backward accumulates: start from a non-zero gradient and subtract it afterwards */
    float *din = rand_buf(ni, 1.0f), *dw = rand_buf(nw, 1.0f), *db = rand_buf((size_t)cout, 1.0f);
    float *din0 = malloc(ni * sizeof *din0), *dw0 = malloc(nw * sizeof *dw0), db0[64];
    memcpy(din0, din, ni * sizeof *din);
    memcpy(dw0, dw, nw * sizeof *dw);
    memcpy(db0, db, (size_t)cout * sizeof *db);
    nn_conv2d_backward(din, dw, db, c.r, c.ws, c.in, c.w, &c.d);
    for (size_t i = 0; i < ni; i++) din[i] -= din0[i];
    for (size_t i = 0; i < nw; i++) dw[i] -= dw0[i];
    for (int i = 0; i < cout; i++) db[i] -= db0[i];
    float *rdin = zeros(ni), *rdw = zeros(nw), *rdb = zeros((size_t)cout);
    nn_conv2d_backward_direct(rdin, rdw, rdb, c.r, c.in, c.w, &c.d);
    assert_close(din, rdin, ni, 1e-4f, "conv din vs direct");
    assert_close(dw, rdw, nw, 1e-4f, "conv dw vs direct");
    assert_close(db, rdb, (size_t)cout, 1e-4f, "conv db vs direct");
    if (gradcheck) {
        check_grad("conv din", conv_obj, &c, c.in, ni, rdin);
        check_grad("conv dw", conv_obj, &c, c.w, nw, rdw);
        check_grad("conv db", conv_obj, &c, c.b, (size_t)cout, rdb);
    }
    free(c.in); free(c.w); free(c.b); free(c.out); free(c.r); free(c.ws); free(ref);
    free(din); free(dw); free(db); free(din0); free(dw0); free(rdin); free(rdw); free(rdb);
}

static void test_conv_matches_direct(void **state)
{
    (void)state;
    run_conv_case(3, 4, 8, 8, 5, 3, 1, 1, 1);     /* images grouped into one product */
    run_conv_case(2, 3, 9, 7, 4, 3, 2, 1, 1);     /* stride 2, odd sizes */
    run_conv_case(2, 3, 8, 8, 6, 1, 1, 0, 1);     /* 1x1, grouped */
    run_conv_case(2, 2, 64, 64, 3, 1, 1, 0, 0);   /* 1x1, one image per product: no im2col */
    run_conv_case(2, 2, 64, 64, 3, 5, 1, 2, 0);   /* one image per product (5x5: im2col) */
    run_conv_case(6, 2, 32, 32, 3, 5, 1, 2, 0);   /* chunks of 4 images, remainder 2 */
    run_conv_case(2, 2, 11, 10, 3, 5, 2, 2, 1);   /* 5x5, stride 2 */
    run_conv_case(1, 2, 6, 6, 2, 3, 1, 0, 1);     /* no padding */
    run_conv_case(2, 3, 7, 7, 2, 2, 3, 0, 1);     /* stride larger than the kernel */
    /* 3x3 stride 1 pad 1: the Winograd path (also the first case above) */
    run_conv_case(2, 3, 32, 32, 16, 3, 1, 1, 1);  /* a first layer: 3 channels, several chunks */
    run_conv_case(2, 8, 9, 7, 6, 3, 1, 1, 1);     /* odd sizes: partial edge tiles */
    run_conv_case(3, 16, 4, 4, 8, 3, 1, 1, 1);    /* one tile per image */
    run_conv_case(1, 4, 13, 2, 3, 3, 1, 1, 1);    /* thin map */
    run_conv_case(1, 5, 6, 30, 4, 3, 1, 1, 1);    /* wide rows (8 tiles), last tile partial */
    run_conv_case(1, 4, 5, 33, 3, 3, 1, 1, 1);    /* 9 tiles per row */
    run_conv_case(2, 64, 16, 16, 32, 3, 1, 1, 0); /* deep sums: accuracy */
    run_conv_case(4, 128, 8, 8, 64, 3, 1, 1, 0);
    /* widths of 1, 2, 4, 8 whole tiles (transforms specialised), heights with a partial last tile */
    run_conv_case(2, 4, 15, 32, 5, 3, 1, 1, 1);
    run_conv_case(3, 6, 13, 16, 5, 3, 1, 1, 1);
    run_conv_case(2, 5, 10, 8, 7, 3, 1, 1, 1);
    run_conv_case(5, 4, 3, 4, 6, 3, 1, 1, 1);
    run_conv_case(2, 32, 16, 16, 64, 3, 1, 1, 0);
    /* 32-wide maps go two tile rows at a time: an odd count of tile rows
     * (3 images of 5), a partial last tile row (18 high), 1 channel */
    run_conv_case(3, 5, 20, 32, 6, 3, 1, 1, 1);
    run_conv_case(2, 3, 18, 32, 4, 3, 1, 1, 1);
    run_conv_case(1, 1, 4, 32, 1, 3, 1, 1, 1);
    /* 16-, 8- and 4-wide maps go 4, 8 and 16 tile rows at a time: full and
     * partial groups, partial last tile rows */
    run_conv_case(5, 3, 6, 16, 4, 3, 1, 1, 1);
    run_conv_case(1, 2, 10, 16, 3, 3, 1, 1, 1);
    run_conv_case(7, 3, 8, 8, 4, 3, 1, 1, 1);
    run_conv_case(9, 2, 7, 8, 3, 3, 1, 1, 1);
    run_conv_case(20, 3, 4, 4, 5, 3, 1, 1, 1);
    run_conv_case(17, 2, 3, 4, 3, 3, 1, 1, 1);
    run_conv_case(1, 3, 4, 4, 2, 3, 1, 1, 1);     /* one tile in all: vector reads stay in the workspace */
}

/* ---- batch norm */
typedef struct bn_case {
    nn_bn_dims d;
    float *in, *gamma, *beta, *out, *r, *mean, *invstd, *rm, *rv;
} bn_case;

static double bn_obj(void *ctx)
{
    bn_case *c = ctx;
    nn_batchnorm_forward(c->out, c->mean, c->invstd, c->rm, c->rv, c->in, c->gamma, c->beta, 1, &c->d);
    return dot(c->out, c->r, (size_t)c->d.n * c->d.c * c->d.hw);
}

static void run_bn_case(int n, int ch, int hw)
{
    bn_case c = { .d = { n, ch, hw } };
    size_t m = (size_t)n * ch * hw;
    c.in = rand_buf(m, 2.0f);
    for (size_t i = 0; i < m; i++) c.in[i] += 0.5f;
    c.gamma = rand_buf((size_t)ch, 1.0f);
    c.beta = rand_buf((size_t)ch, 1.0f);
    c.out = zeros(m); c.r = rand_buf(m, 1.0f);
    c.mean = zeros((size_t)ch); c.invstd = zeros((size_t)ch);
    c.rm = zeros((size_t)ch); c.rv = zeros((size_t)ch);
    for (int i = 0; i < ch; i++) c.rv[i] = 1.0f;
    bn_obj(&c);
    float *din = zeros(m), *dg = zeros((size_t)ch), *dbt = zeros((size_t)ch);
    nn_batchnorm_backward(din, dg, dbt, c.r, c.in, c.mean, c.invstd, c.gamma, &c.d);
    check_grad("bn din", bn_obj, &c, c.in, m, din);
    check_grad("bn dgamma", bn_obj, &c, c.gamma, (size_t)ch, dg);
    check_grad("bn dbeta", bn_obj, &c, c.beta, (size_t)ch, dbt);
    /* eval mode uses the running statistics */
    float rm[64], rv[64];
    for (int k = 0; k < ch; k++) { c.rm[k] = 0.3f * k; c.rv[k] = 1.0f + k; rm[k] = c.rm[k]; rv[k] = c.rv[k]; }
    nn_batchnorm_forward(c.out, c.mean, c.invstd, c.rm, c.rv, c.in, c.gamma, c.beta, 0, &c.d);
    for (int k = 0; k < ch; k++) {
        assert_true(c.rm[k] == rm[k] && c.rv[k] == rv[k]);
        float x = c.in[(size_t)k * hw], want = (x - rm[k]) / sqrtf(rv[k] + NN_BN_EPS) * c.gamma[k] + c.beta[k];
        assert_true(fabsf(c.out[(size_t)k * hw] - want) < 1e-5f);
    }
    free(c.in); free(c.gamma); free(c.beta); free(c.out); free(c.r); free(c.mean); free(c.invstd);
    free(c.rm); free(c.rv); free(din); free(dg); free(dbt);
}

static void test_batchnorm_grad(void **state)
{
    (void)state;
    run_bn_case(4, 3, 5);     /* 2-D */
    run_bn_case(6, 5, 1);     /* 1-D */
}

static void test_batchnorm_running_stats(void **state)
{
    (void)state;
    nn_bn_dims d = { 2, 1, 2 };
    float in[4] = { 1, 2, 3, 6 }, out[4], mean, invstd, rm = 0.0f, rv = 1.0f, g = 1, b = 0;
    nn_batchnorm_forward(out, &mean, &invstd, &rm, &rv, in, &g, &b, 1, &d);
    /* mean 3, biased var 3.5, unbiased 14/3 */
    assert_true(fabsf(mean - 3.0f) < 1e-6f);
    assert_true(fabsf(invstd - 1.0f / sqrtf(3.5f + NN_BN_EPS)) < 1e-6f);
    assert_true(fabsf(rm - 0.3f) < 1e-6f);
    assert_true(fabsf(rv - (0.9f + 0.1f * 14.0f / 3.0f)) < 1e-6f);
}

/* ---- relu, maxpool, avgpool, add, linear, l2norm: one generic harness */
typedef struct ew_case {
    int kind;
    float *in, *in2, *w, *b, *out, *r, *cache;
    int32_t *idx;
    nn_pool_dims pd;
    nn_linear_dims ld;
    int n, c, hw;
    size_t nin, nout;
} ew_case;

enum { K_RELU, K_MAXPOOL, K_AVGPOOL, K_ADD, K_LINEAR, K_L2NORM };

static double ew_obj(void *ctx)
{
    ew_case *c = ctx;
    switch (c->kind) {
    case K_RELU: nn_relu_forward(c->out, c->in, c->nin); break;
    case K_MAXPOOL: nn_maxpool_forward(c->out, c->idx, c->in, &c->pd); break;
    case K_AVGPOOL: nn_avgpool_forward(c->out, c->in, c->n, c->c, c->hw); break;
    case K_ADD: nn_add_forward(c->out, c->in, c->in2, c->nin); break;
    case K_LINEAR: nn_linear_forward(c->out, c->in, c->w, c->b, &c->ld); break;
    case K_L2NORM: nn_l2norm_forward(c->out, c->cache, c->in, c->n, c->c); break;
    }
    return dot(c->out, c->r, c->nout);
}

/* distinct values at least `gap` apart, shuffled: no ties for max-pool, no
 * value within FD_EPS of the ReLU kink */
static void fill_spread(float *x, size_t n, float gap)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ((float)i - (float)n / 2.0f + 0.5f) * gap;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)((frand() * 0.5f + 0.5f) * (float)(i + 1)) % (i + 1);
        float t = x[i]; x[i] = x[j]; x[j] = t;
    }
}

static void test_relu_grad(void **state)
{
    (void)state;
    ew_case c = { .kind = K_RELU, .nin = 200, .nout = 200 };
    c.in = zeros(200); fill_spread(c.in, 200, 0.05f);
    c.out = zeros(200); c.r = rand_buf(200, 1.0f);
    float *din = zeros(200);
    ew_obj(&c);
    nn_relu_backward(din, c.r, c.out, 200);
    check_grad("relu", ew_obj, &c, c.in, 200, din);
    free(c.in); free(c.out); free(c.r); free(din);
}

static void test_maxpool_grad(void **state)
{
    (void)state;
    ew_case c = { .kind = K_MAXPOOL };
    assert_int_equal(nn_pool_dims_init(&c.pd, 2, 3, 7, 6, 2, 2), 0);
    assert_int_equal(c.pd.oh, 3);
    assert_int_equal(c.pd.ow, 3);
    c.nin = 2 * 3 * 7 * 6; c.nout = 2 * 3 * 3 * 3;
    c.in = zeros(c.nin); fill_spread(c.in, c.nin, 0.05f);
    c.out = zeros(c.nout); c.r = rand_buf(c.nout, 1.0f);
    c.idx = calloc(c.nout, sizeof *c.idx);
    float *din = zeros(c.nin);
    ew_obj(&c);
    nn_maxpool_backward(din, c.r, c.idx, &c.pd);
    check_grad("maxpool", ew_obj, &c, c.in, c.nin, din);
    /* overlapping windows (k 3, stride 2) */
    assert_int_equal(nn_pool_dims_init(&c.pd, 2, 3, 7, 6, 3, 2), 0);
    c.nout = 2 * 3 * c.pd.oh * c.pd.ow;
    memset(din, 0, c.nin * sizeof *din);
    ew_obj(&c);
    nn_maxpool_backward(din, c.r, c.idx, &c.pd);
    check_grad("maxpool k3 s2", ew_obj, &c, c.in, c.nin, din);
    free(c.in); free(c.out); free(c.r); free(c.idx); free(din);
}

static void test_avgpool_add_grad(void **state)
{
    (void)state;
    ew_case c = { .kind = K_AVGPOOL, .n = 3, .c = 4, .hw = 5, .nin = 60, .nout = 12 };
    c.in = rand_buf(60, 1.0f); c.out = zeros(60); c.r = rand_buf(60, 1.0f);
    float *din = zeros(60), *din2 = zeros(60);
    ew_obj(&c);
    nn_avgpool_backward(din, c.r, 3, 4, 5);
    check_grad("avgpool", ew_obj, &c, c.in, 60, din);

    c.kind = K_ADD; c.nout = 60;
    c.in2 = rand_buf(60, 1.0f);
    memset(din, 0, 60 * sizeof *din);
    nn_add_backward(din, din2, c.r, 60);
    check_grad("add a", ew_obj, &c, c.in, 60, din);
    check_grad("add b", ew_obj, &c, c.in2, 60, din2);
    free(c.in); free(c.in2); free(c.out); free(c.r); free(din); free(din2);
}

static void test_linear_grad(void **state)
{
    (void)state;
    ew_case c = { .kind = K_LINEAR, .ld = { 5, 7, 4 }, .nin = 35, .nout = 20 };
    c.in = rand_buf(35, 1.0f); c.w = rand_buf(28, 1.0f); c.b = rand_buf(4, 1.0f);
    c.out = zeros(20); c.r = rand_buf(20, 1.0f);
    float *din = zeros(35), *dw = zeros(28), *db = zeros(4);
    ew_obj(&c);
    nn_linear_backward(din, dw, db, c.r, c.in, c.w, &c.ld);
    check_grad("linear din", ew_obj, &c, c.in, 35, din);
    check_grad("linear dw", ew_obj, &c, c.w, 28, dw);
    check_grad("linear db", ew_obj, &c, c.b, 4, db);
    free(c.in); free(c.w); free(c.b); free(c.out); free(c.r); free(din); free(dw); free(db);
}

static void test_l2norm_grad(void **state)
{
    (void)state;
    ew_case c = { .kind = K_L2NORM, .n = 4, .c = 6, .nin = 24, .nout = 24 };
    c.in = rand_buf(24, 1.0f); c.out = zeros(24); c.r = rand_buf(24, 1.0f); c.cache = zeros(4);
    float *din = zeros(24);
    ew_obj(&c);
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int k = 0; k < 6; k++) s += (double)c.out[i * 6 + k] * c.out[i * 6 + k];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    nn_l2norm_backward(din, c.r, c.out, c.cache, 4, 6);
    check_grad("l2norm", ew_obj, &c, c.in, 24, din);
    free(c.in); free(c.out); free(c.r); free(c.cache); free(din);
}

/* ---- losses */
typedef struct loss_case {
    float *z, *cache;
    int32_t *labels;
    int n, d;
    float tau;
} loss_case;

static double ntxent_obj(void *ctx)
{
    loss_case *c = ctx;
    return nn_ntxent_forward(c->cache, c->z, c->n, c->d, c->tau);
}

static double dcl_obj(void *ctx)
{
    loss_case *c = ctx;
    return nn_contrastive_forward(c->cache, c->z, 1, c->n, c->d, c->tau, 1);
}

/* the definition, term by term, in double; decoupled: the positive is not
 * in the denominator */
static double contrastive_naive(const float *z, int n2, int d, double tau, int decoupled)
{
    double total = 0.0;
    for (int i = 0; i < n2; i++) {
        double den = 0.0, pos = 0.0;
        for (int k = 0; k < n2; k++) {
            if (k == i) continue;
            double s = 0, ni = 0, nk = 0;
            for (int j = 0; j < d; j++) {
                s += (double)z[i * d + j] * z[k * d + j];
                ni += (double)z[i * d + j] * z[i * d + j];
                nk += (double)z[k * d + j] * z[k * d + j];
            }
            double e = exp(s / sqrt(ni * nk) / tau);
            int positive = k == (i + n2 / 2) % n2;
            if (!(decoupled && positive)) den += e;
            if (positive) pos = e;
        }
        total += -log(pos / den);
    }
    return total / n2;
}

static double ntxent_naive(const float *z, int n2, int d, double tau)
{
    return contrastive_naive(z, n2, d, tau, 0);
}

static void test_ntxent(void **state)
{
    (void)state;
    loss_case c = { .n = 8, .d = 5, .tau = 0.5f };
    c.z = rand_buf(40, 1.0f);
    c.cache = zeros(nn_ntxent_cache_size(8, 5));
    float loss = nn_ntxent_forward(c.cache, c.z, 8, 5, 0.5f);
    assert_true(fabs(loss - ntxent_naive(c.z, 8, 5, 0.5)) < 1e-5);
    float *dz = zeros(40);
    nn_ntxent_backward(dz, c.cache, 8, 5, 0.5f, 1.0f);
    check_grad("ntxent", ntxent_obj, &c, c.z, 40, dz);

    /* large similarities / small tau must not overflow (log-sum-exp) */
    for (int i = 0; i < 40; i++) c.z[i] *= 1000.0f;
    loss = nn_ntxent_forward(c.cache, c.z, 8, 5, 0.01f);
    assert_true(isfinite(loss));
    assert_true(fabs(loss - ntxent_naive(c.z, 8, 5, 0.01)) < 1e-3 * fabs(loss) + 1e-4);
    /* identical views, all else orthogonal: loss = log(1 + (2N-2) e^{-1/tau} ... ) checked by naive */
    assert_true(nn_ntxent_forward(c.cache, c.z, 7, 5, 0.5f) < 0.0f);
    free(c.z); free(c.cache); free(dz);
}

/* the decoupled loss: its value against the definition, its gradient
 * (through the same backward) against finite differences, the gathered form
 * of one block equal to the plain one, and the smallest batch refused */
static void test_dcl(void **state)
{
    (void)state;
    loss_case c = { .n = 8, .d = 5, .tau = 0.3f };
    c.z = rand_buf(40, 1.0f);
    c.cache = zeros(nn_ntxent_cache_size(8, 5));
    float loss = nn_contrastive_forward(c.cache, c.z, 1, 8, 5, 0.3f, 1);
    assert_true(fabs(loss - contrastive_naive(c.z, 8, 5, 0.3, 1)) < 1e-5);
    assert_true(loss < nn_contrastive_forward(c.cache, c.z, 1, 8, 5, 0.3f, 0));
    float *dz = zeros(40);
    nn_contrastive_forward(c.cache, c.z, 1, 8, 5, 0.3f, 1);
    nn_ntxent_backward(dz, c.cache, 8, 5, 0.3f, 1.0f);
    check_grad("dcl", dcl_obj, &c, c.z, 40, dz);
    /* two gathered blocks of four rows (positives 0-2, 1-3, 4-6, 5-7) are
     * the one-batch loss of the same rows in the one-batch layout */
    float two = nn_contrastive_forward(c.cache, c.z, 2, 4, 5, 0.3f, 1);
    static const int order[8] = { 0, 1, 4, 5, 2, 3, 6, 7 };
    float *perm = zeros(40);
    for (int r = 0; r < 8; r++)
        memcpy(perm + r * 5, c.z + order[r] * 5, 5 * sizeof *perm);
    assert_true(fabs(two - contrastive_naive(perm, 8, 5, 0.3, 1)) < 1e-5);
    free(perm);
    /* one pair: no negative left */
    assert_true(nn_contrastive_forward(c.cache, c.z, 1, 2, 5, 0.3f, 1) < 0.0f);
    free(c.z); free(c.cache); free(dz);
}

static double xent_obj(void *ctx)
{
    loss_case *c = ctx;
    return nn_xent_forward(c->cache, c->z, c->labels, c->n, c->d);
}

static void test_xent(void **state)
{
    (void)state;
    int32_t labels[6] = { 0, 3, 1, 2, 3, 0 };
    loss_case c = { .n = 6, .d = 4, .labels = labels };
    c.z = rand_buf(24, 2.0f);
    c.cache = zeros(24);
    float loss = nn_xent_forward(c.cache, c.z, labels, 6, 4);
    double want = 0;
    for (int i = 0; i < 6; i++) {
        double s = 0;
        for (int j = 0; j < 4; j++) s += exp(c.z[i * 4 + j]);
        want += log(s) - c.z[i * 4 + labels[i]];
    }
    assert_true(fabs(loss - want / 6) < 1e-5);
    float *dz = zeros(24);
    nn_xent_backward(dz, c.cache, labels, 6, 4, 1.0f);
    check_grad("xent", xent_obj, &c, c.z, 24, dz);
    /* logits of 1e4 stay finite */
    for (int i = 0; i < 24; i++) c.z[i] *= 1e4f;
    assert_true(isfinite(nn_xent_forward(c.cache, c.z, labels, 6, 4)));
    free(c.z); free(c.cache); free(dz);
}


/* ---- fused batch norm + ReLU = batch norm then ReLU */
static void run_bn_relu_case(int n, int ch, int hw)
{
    nn_bn_dims d = { n, ch, hw };
    size_t m = (size_t)n * ch * hw;
    float *in = rand_buf(m, 2.0f), *gamma = rand_buf((size_t)ch, 1.0f), *beta = rand_buf((size_t)ch, 1.0f);
    float *dout = rand_buf(m, 1.0f), *y1 = zeros(m), *y2 = zeros(m), *t = zeros(m), *tg = zeros(m);
    float *st1 = zeros(4 * (size_t)ch), *st2 = zeros(4 * (size_t)ch);
    for (int k = 0; k < ch; k++) st1[3 * ch + k] = st2[3 * ch + k] = 1.0f;   /* running var */
    /* reference: the two layers */
    nn_batchnorm_forward(t, st1, st1 + ch, st1 + 2 * ch, st1 + 3 * ch, in, gamma, beta, 1, &d);
    nn_relu_forward(y1, t, m);
    nn_batchnorm_relu_forward(y2, st2, st2 + ch, st2 + 2 * ch, st2 + 3 * ch, in, gamma, beta, 1, &d);
    assert_close(y2, y1, m, 1e-6f, "bn+relu forward");
    assert_close(st2, st1, 4 * (size_t)ch, 1e-6f, "bn+relu statistics");
    float *din1 = zeros(m), *dg1 = zeros((size_t)ch), *db1 = zeros((size_t)ch);
    float *din2 = zeros(m), *dg2 = zeros((size_t)ch), *db2 = zeros((size_t)ch);
    nn_relu_backward(tg, dout, y1, m);
    nn_batchnorm_backward(din1, dg1, db1, tg, in, st1, st1 + ch, gamma, &d);
    nn_batchnorm_relu_backward(din2, dg2, db2, dout, y2, in, st2, st2 + ch, gamma, &d);
    assert_close(din2, din1, m, 1e-5f, "bn+relu din");
    assert_close(dg2, dg1, (size_t)ch, 1e-5f, "bn+relu dgamma");
    assert_close(db2, db1, (size_t)ch, 1e-5f, "bn+relu dbeta");
    /* eval mode */
    nn_batchnorm_forward(t, st1, st1 + ch, st1 + 2 * ch, st1 + 3 * ch, in, gamma, beta, 0, &d);
    nn_relu_forward(y1, t, m);
    nn_batchnorm_relu_forward(y2, st2, st2 + ch, st2 + 2 * ch, st2 + 3 * ch, in, gamma, beta, 0, &d);
    assert_close(y2, y1, m, 1e-6f, "bn+relu eval forward");
    free(in); free(gamma); free(beta); free(dout); free(y1); free(y2); free(t); free(tg);
    free(st1); free(st2); free(din1); free(dg1); free(db1); free(din2); free(dg2); free(db2);
}

static void test_batchnorm_relu_fused(void **state)
{
    (void)state;
    run_bn_relu_case(4, 3, 37);   /* 2-D, lengths not a multiple of the vector width */
    run_bn_relu_case(8, 5, 1);    /* 1-D */
}

/* ---- overwrite variants: din written = din accumulated into zeros */
static float *garbage(size_t n)
{
    float *p = rand_buf(n, 100.0f);
    return p;
}

static void test_backward_overwrite(void **state)
{
    (void)state;
    float *a, *b;
    /* conv: Winograd (3x3 s1 p1), im2col (stride 2), pointwise */
    const int shapes[3][4] = { { 3, 1, 1, 6 }, { 3, 2, 1, 5 }, { 1, 1, 0, 8 } };
    for (int s = 0; s < 3; s++) {
        nn_conv_dims d;
        assert_int_equal(nn_conv_dims_init(&d, 2, 4, shapes[s][3], shapes[s][3], 3,
                                           shapes[s][0], shapes[s][1], shapes[s][2]), 0);
        size_t ni = (size_t)2 * 4 * d.h * d.w, no = (size_t)2 * 3 * d.oh * d.ow, nw = (size_t)3 * 4 * d.k * d.k;
        float *in = rand_buf(ni, 1.0f), *w = rand_buf(nw, 0.5f), *g = rand_buf(no, 1.0f);
        float *ws = zeros(nn_conv2d_workspace(&d)), *dw1 = zeros(nw), *dw2 = zeros(nw);
        a = zeros(ni); b = garbage(ni);
        nn_conv2d_backward(a, dw1, NULL, g, ws, in, w, &d);
        nn_conv2d_backward_ow(b, dw2, NULL, g, ws, in, w, &d, 1);
        assert_close(b, a, ni, 1e-6f, "conv overwrite din");
        assert_close(dw2, dw1, nw, 1e-6f, "conv overwrite dw");
        free(in); free(w); free(g); free(ws); free(dw1); free(dw2); free(a); free(b);
    }
    /* batch norm, plain and fused */
    {
        nn_bn_dims d = { 3, 2, 10 };
        size_t m = 60;
        float *in = rand_buf(m, 1.0f), *g = rand_buf(m, 1.0f), *y = rand_buf(m, 1.0f);
        float gamma[2] = { 0.7f, -1.2f }, mean[2] = { 0.1f, -0.2f }, is[2] = { 1.3f, 0.8f }, dg[2] = { 0 }, db[2] = { 0 };
        for (int f = 0; f < 2; f++) {
            a = zeros(m); b = garbage(m);
            nn_batchnorm_relu_backward_ow(a, dg, db, g, f ? y : NULL, in, mean, is, gamma, &d, 0);
            nn_batchnorm_relu_backward_ow(b, dg, db, g, f ? y : NULL, in, mean, is, gamma, &d, 1);
            assert_close(b, a, m, 1e-6f, f ? "bn+relu overwrite din" : "bn overwrite din");
            free(a); free(b);
        }
        a = zeros(m); b = garbage(m);
        nn_batchnorm_backward(a, dg, db, g, in, mean, is, gamma, &d);
        nn_batchnorm_backward_ow(b, dg, db, g, in, mean, is, gamma, &d, 1);
        assert_close(b, a, m, 1e-6f, "bn overwrite din (plain)");
        free(a); free(b);
        /* relu */
        a = zeros(m); b = garbage(m);
        nn_relu_backward(a, g, y, m);
        nn_relu_backward_ow(b, g, y, m, 1);
        assert_close(b, a, m, 0.0f, "relu overwrite din");
        free(a); free(b); free(in); free(g); free(y);
    }
    /* max-pool (2x2 and overlapping 3x3), avg-pool, linear, add, l2norm */
    {
        for (int k = 2; k <= 3; k++) {
            nn_pool_dims pd;
            assert_int_equal(nn_pool_dims_init(&pd, 2, 3, 9, 11, k, 2), 0);
            size_t ni = 2 * 3 * 9 * 11, no = (size_t)2 * 3 * pd.oh * pd.ow;
            float *in = rand_buf(ni, 1.0f), *out = zeros(no), *g = rand_buf(no, 1.0f);
            int32_t *idx = calloc(no, sizeof *idx);
            nn_maxpool_forward(out, idx, in, &pd);
            a = zeros(ni); b = garbage(ni);
            nn_maxpool_backward(a, g, idx, &pd);
            nn_maxpool_backward_ow(b, g, idx, &pd, 1);
            assert_close(b, a, ni, 0.0f, "maxpool overwrite din");
            free(in); free(out); free(g); free(idx); free(a); free(b);
        }
        float *g = rand_buf(12, 1.0f);
        a = zeros(60); b = garbage(60);
        nn_avgpool_backward(a, g, 3, 4, 5);
        nn_avgpool_backward_ow(b, g, 3, 4, 5, 1);
        assert_close(b, a, 60, 0.0f, "avgpool overwrite din");
        free(a); free(b); free(g);
        nn_linear_dims ld = { 4, 6, 5 };
        float *in = rand_buf(24, 1.0f), *w = rand_buf(30, 1.0f), *dout = rand_buf(20, 1.0f);
        float *dw = zeros(30);
        a = zeros(24); b = garbage(24);
        nn_linear_backward(a, dw, NULL, dout, in, w, &ld);
        nn_linear_backward_ow(b, dw, NULL, dout, in, w, &ld, 1);
        assert_close(b, a, 24, 1e-6f, "linear overwrite din");
        free(a); free(b); free(in); free(w); free(dout); free(dw);
        float *d2 = rand_buf(30, 1.0f), *a2 = zeros(30), *b2 = garbage(30);
        a = rand_buf(30, 1.0f); b = garbage(30);
        float *keep = malloc(30 * sizeof *keep);
        memcpy(keep, a, 30 * sizeof *keep);
        nn_add_backward_ow(b, a, d2, 30, 1, 0);          /* b written, a added to */
        for (int i = 0; i < 30; i++) {
            assert_true(b[i] == d2[i]);
            assert_true(fabsf(a[i] - (keep[i] + d2[i])) < 1e-6f);
        }
        nn_add_backward_ow(a2, a2, d2, 30, 1, 0);        /* the same buffer: 2 dout */
        nn_add_backward_ow(b2, b2, d2, 30, 1, 1);        /* both overwrite: the second wins */
        for (int i = 0; i < 30; i++) {
            assert_true(fabsf(a2[i] - 2.0f * d2[i]) < 1e-6f);
            assert_true(b2[i] == d2[i]);
        }
        free(a); free(b); free(a2); free(b2); free(d2); free(keep);
        float *x = rand_buf(20, 1.0f), *y = zeros(20), *nrm = zeros(4), *gg = rand_buf(20, 1.0f);
        nn_l2norm_forward(y, nrm, x, 4, 5);
        a = zeros(20); b = garbage(20);
        nn_l2norm_backward(a, gg, y, nrm, 4, 5);
        nn_l2norm_backward_ow(b, gg, y, nrm, 4, 5, 1);
        assert_close(b, a, 20, 1e-6f, "l2norm overwrite din");
        free(a); free(b); free(x); free(y); free(nrm); free(gg);
    }
}

/* ---- 2x2 max-pool (vectorized path): the first largest value wins, NaN wins */
static void test_maxpool_2x2_rule(void **state)
{
    (void)state;
    nn_pool_dims pd;
    int n = 2, c = 2, h = 6, w = 22;                     /* ow 11: vector blocks and a tail */
    assert_int_equal(nn_pool_dims_init(&pd, n, c, h, w, 2, 2), 0);
    size_t ni = (size_t)n * c * h * w, no = (size_t)n * c * pd.oh * pd.ow;
    float *in = zeros(ni), *out = zeros(no);
    int32_t *idx = calloc(no, sizeof *idx);
    for (size_t i = 0; i < ni; i++)
        in[i] = (float)((int)(frand() * 3.0f));           /* few values: many ties */
    in[3] = NAN;                                          /* window (0, 1) of plane 0 */
    in[(size_t)w + 8] = NAN;                              /* window (0, 4), bottom-left */
    nn_maxpool_forward(out, idx, in, &pd);
    for (size_t pl = 0; pl < (size_t)n * c; pl++)
        for (int oy = 0; oy < pd.oh; oy++)
            for (int ox = 0; ox < pd.ow; ox++) {
                const float *x = in + pl * (size_t)h * w;
                int best = 2 * oy * w + 2 * ox;
                const int at[4] = { best, best + 1, best + w, best + w + 1 };
                for (int q = 1; q < 4; q++)
                    if (x[at[q]] > x[best] || (isnan(x[at[q]]) && !isnan(x[best])))
                        best = at[q];
                size_t o = pl * (size_t)pd.oh * pd.ow + (size_t)oy * pd.ow + ox;
                assert_int_equal(idx[o], best);
                assert_true(isnan(x[best]) ? isnan(out[o]) : out[o] == x[best]);
            }
    free(in); free(out); free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_matches_direct),
        cmocka_unit_test(test_batchnorm_grad),
        cmocka_unit_test(test_batchnorm_running_stats),
        cmocka_unit_test(test_relu_grad),
        cmocka_unit_test(test_maxpool_grad),
        cmocka_unit_test(test_maxpool_2x2_rule),
        cmocka_unit_test(test_batchnorm_relu_fused),
        cmocka_unit_test(test_backward_overwrite),
        cmocka_unit_test(test_avgpool_add_grad),
        cmocka_unit_test(test_linear_grad),
        cmocka_unit_test(test_l2norm_grad),
        cmocka_unit_test(test_ntxent),
        cmocka_unit_test(test_dcl),
        cmocka_unit_test(test_xent),
    };
    return cmocka_run_group_tests_name("nn layers and losses", tests, NULL, NULL);
}

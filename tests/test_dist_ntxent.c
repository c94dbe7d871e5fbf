/* Unit tests of the pieces of data-parallel training that need no MPI: the
 * gathered NT-Xent and the synchronised batch norm, each over "virtual
 * ranks" (a batch split in parts, the collectives done by hand or by threads
 * meeting at a barrier), against the single process on the whole batch:
 *  - the gathered NT-Xent gives every rank the whole batch's loss, and its
 *    rows of the gradient; the parameter gradients summed over the ranks
 *    equal the whole batch's;
 *  - batch norm synchronised over the ranks equals batch norm on the whole
 *    batch (outputs, statistics, input and parameter gradients), plain and
 *    fused with ReLU, equal and unequal parts;
 *  - a whole SimCLR step of a network with BN layers (resnet-mini, simclr
 *    head) over 2 ranks equals one process's step on the whole batch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/net.h"

#define TAU         0.5f
#define LOSS_RTOL   1e-5     /* the loss: same sums in another order */
#define GRAD_TOL    1e-5     /* gradients and BN, relative to the largest entry (seen: 1.5e-6) */
#define NET_TOL     3e-4     /* a whole network step, relative to the largest entry (seen: 3e-5) */
#define MAX_RANKS   4

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rand_buf(size_t n, float scale, float offset)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale + offset;
    return p;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* max |a - b| / max(max |b|, tiny), printed and checked against tol */
static void assert_close(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double worst = 0.0, scale = 1e-12;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst)
            worst = d;
        if (fabs(b[i]) > scale)
            scale = fabs(b[i]);
    }
    if (worst / scale > tol || isnan(worst))
        fail_msg("%s: max difference %.3g, %.3g of the largest entry (%.3g), tolerance %.3g",
                 what, worst, worst / scale, scale, tol);
}

/* Row of the single-process layout (views 1 of all N images, then views 2)
 * that holds row i of rank r's block (its n images: views 1, then views 2). */
static int single_row(int r, int i, int n, int ranks)
{
    int big_n = n * ranks;
    return i < n ? r * n + i : big_n + r * n + (i - n);
}

/* Rank blocks in rank order from a batch in the single-process layout. */
static void split_rows(float *blocks, const float *single, int ranks, int n, size_t row)
{
    for (int r = 0; r < ranks; r++)
        for (int i = 0; i < 2 * n; i++)
            memcpy(blocks + ((size_t)r * 2 * n + i) * row, single + (size_t)single_row(r, i, n, ranks) * row,
                   row * sizeof(float));
}

/* ---- the gathered NT-Xent */

static void check_gathered(int ranks, int n, int d)
{
    int n2 = 2 * n, big = ranks * n2, in = 6;
    /* z = x W^T: a linear layer shows what the parameter gradients do */
    float *x = rand_buf((size_t)big * in, 1.0f, 0.0f), *w = rand_buf((size_t)d * in, 0.5f, 0.0f);
    float *z = zeros((size_t)big * d);
    nn_linear_dims ld = { big, in, d };
    nn_linear_forward(z, x, w, NULL, &ld);

    /* one process, the whole batch */
    float *cache = zeros(nn_ntxent_cache_size(big, d)), *dz = zeros((size_t)big * d);
    float *dw = zeros((size_t)d * in);
    float loss = nn_ntxent_forward(cache, z, big, d, TAU);
    nn_ntxent_backward(dz, cache, big, d, TAU, 1.0f);
    nn_linear_backward(NULL, dw, NULL, dz, x, w, &ld);

    /* ranks: their blocks gathered in rank order */
    float *z_all = zeros((size_t)big * d), *x_all = zeros((size_t)big * in);
    split_rows(z_all, z, ranks, n, (size_t)d);
    split_rows(x_all, x, ranks, n, (size_t)in);
    float *dz_r = zeros((size_t)n2 * d), *dz_want = zeros((size_t)n2 * d);
    float *dw_sum = zeros((size_t)d * in);
    nn_linear_dims lr = { n2, in, d };
    for (int r = 0; r < ranks; r++) {
        memset(cache, 0, nn_ntxent_cache_size(big, d) * sizeof(float));
        float lr_loss = nn_ntxent_gathered_forward(cache, z_all, ranks, n2, d, TAU);
        assert_true(fabs(lr_loss - loss) <= LOSS_RTOL * fabs(loss));
        memset(dz_r, 0, (size_t)n2 * d * sizeof(float));
        nn_ntxent_gathered_backward(dz_r, cache, ranks, r, n2, d, TAU, 1.0f);
        for (int i = 0; i < n2; i++)
            memcpy(dz_want + (size_t)i * d, dz + (size_t)single_row(r, i, n, ranks) * d, (size_t)d * sizeof(float));
        assert_close("rank rows of d loss / d z", dz_r, dz_want, (size_t)n2 * d, GRAD_TOL);
        /* this rank's part of dW; the allreduce-sum adds the parts */
        nn_linear_backward(NULL, dw_sum, NULL, dz_r, x_all + (size_t)r * n2 * in, w, &lr);
    }
    assert_close("dW summed over the ranks", dw_sum, dw, (size_t)d * in, GRAD_TOL);
    free(x); free(w); free(z); free(cache); free(dz); free(dw);
    free(z_all); free(x_all); free(dz_r); free(dz_want); free(dw_sum);
}

static void test_gathered_ntxent(void **state)
{
    (void)state;
    check_gathered(2, 4, 5);
    check_gathered(3, 3, 8);
    check_gathered(1, 5, 4);     /* one rank: the plain NT-Xent */
    check_gathered(4, 1, 3);     /* one image per rank: every negative comes from the others */
    float cache[64], z[16] = { 0 };
    assert_true(nn_ntxent_gathered_forward(cache, z, 2, 3, 2, TAU) < 0.0f);
    assert_true(nn_ntxent_gathered_forward(cache, z, 0, 2, 2, TAU) < 0.0f);
}

/* A rank whose embeddings carry a wrong positive pairing gets another loss:
 * the comparison above can fail. */
static void test_gathered_layout_matters(void **state)
{
    (void)state;
    int ranks = 2, n = 3, d = 4, big = 12;
    float *z = rand_buf((size_t)big * d, 1.0f, 0.0f), *z_all = zeros((size_t)big * d);
    float *cache = zeros(nn_ntxent_cache_size(big, d));
    float loss = nn_ntxent_forward(cache, z, big, d, TAU);
    split_rows(z_all, z, ranks, n, (size_t)d);
    float good = nn_ntxent_gathered_forward(cache, z_all, ranks, 2 * n, d, TAU);
    /* the blocks without the reordering: rank 0 pairs image 0 with image 3 */
    float bad = nn_ntxent_gathered_forward(cache, z, ranks, 2 * n, d, TAU);
    assert_true(fabs(good - loss) <= LOSS_RTOL * fabs(loss));
    assert_true(fabs(bad - loss) > 1e-3 * fabs(loss));
    free(z); free(z_all); free(cache);
}

/* ---- virtual ranks as threads; the sum callback meets at a barrier */

typedef struct sum_world {
    pthread_barrier_t bar;
    int ranks;
    double *posted[MAX_RANKS];
    int calls;                  /* sums done by rank 0 */
} sum_world;

typedef struct sum_rank {
    sum_world *w;
    int rank;
} sum_rank;

static int sum_over_threads(void *ctx, double *buf, size_t n)
{
    sum_rank *me = ctx;
    sum_world *w = me->w;
    double *tot = malloc(n * sizeof *tot);
    if (!tot)
        return -1;
    w->posted[me->rank] = buf;
    pthread_barrier_wait(&w->bar);            /* every part posted */
    for (size_t i = 0; i < n; i++) {
        tot[i] = 0.0;
        for (int r = 0; r < w->ranks; r++)
            tot[i] += w->posted[r][i];
    }
    pthread_barrier_wait(&w->bar);            /* every part read */
    memcpy(buf, tot, n * sizeof *tot);
    free(tot);
    if (me->rank == 0)
        w->calls++;
    return 0;
}

static int sum_fails(void *ctx, double *buf, size_t n)
{
    (void)ctx; (void)buf; (void)n;
    return -1;
}

/* ---- synchronised batch norm, one layer */

typedef struct bn_part {
    sum_rank sr;
    nn_bn_sync sync;
    nn_bn_dims d;
    int relu, rc;
    const float *in, *dout, *gamma, *beta;
    float *out, *mean, *invstd, *rm, *rv, *din, *dgamma, *dbeta;
    double *ws;
} bn_part;

static void *bn_part_run(void *arg)
{
    bn_part *p = arg;
    p->rc = nn_batchnorm_sync_forward(p->out, p->mean, p->invstd, p->rm, p->rv, p->ws, p->in,
                                      p->gamma, p->beta, p->relu, &p->sync, &p->d);
    if (!p->rc)
        p->rc = nn_batchnorm_sync_backward_ow(p->din, p->dgamma, p->dbeta, p->ws, p->dout,
                                              p->relu ? p->out : NULL, p->in, p->mean, p->invstd,
                                              p->gamma, &p->sync, &p->d, 1);
    return NULL;
}

static void check_bn_sync(int n_a, int n_b, int c, int hw, int relu)
{
    int n = n_a + n_b, parts_n[2] = { n_a, n_b };
    size_t cs = (size_t)c * hw, all = (size_t)n * cs;
    /* values far from zero: the statistics must not cancel */
    float *in = rand_buf(all, 2.0f, 30.0f), *dout = rand_buf(all, 1.0f, 0.0f);
    float *gamma = rand_buf((size_t)c, 0.5f, 1.0f), *beta = rand_buf((size_t)c, 0.5f, 0.0f);

    /* one process, the whole batch */
    nn_bn_dims d = { n, c, hw };
    float *out = zeros(all), *mean = zeros(c), *invstd = zeros(c), *rm = zeros(c), *rv = zeros(c);
    float *din = zeros(all), *dgamma = zeros(c), *dbeta = zeros(c);
    for (int k = 0; k < c; k++) rv[k] = 1.0f;
    (relu ? nn_batchnorm_relu_forward : nn_batchnorm_forward)(out, mean, invstd, rm, rv, in, gamma, beta, 1, &d);
    nn_batchnorm_relu_backward_ow(din, dgamma, dbeta, dout, relu ? out : NULL, in, mean, invstd, gamma, &d, 1);

    /* two ranks, each with its images */
    sum_world w = { .ranks = 2 };
    pthread_barrier_init(&w.bar, NULL, 2);
    bn_part p[2];
    pthread_t th[2];
    float *p_out = zeros(all), *p_din = zeros(all), *dg_sum = zeros(c), *db_sum = zeros(c);
    size_t off = 0;
    for (int r = 0; r < 2; r++) {
        p[r] = (bn_part){ .sr = { &w, r }, .d = { parts_n[r], c, hw }, .relu = relu,
                          .in = in + off, .dout = dout + off, .gamma = gamma, .beta = beta,
                          .out = p_out + off, .din = p_din + off, .mean = zeros(c), .invstd = zeros(c),
                          .rm = zeros(c), .rv = zeros(c), .dgamma = zeros(c), .dbeta = zeros(c) };
        p[r].sync = (nn_bn_sync){ sum_over_threads, &p[r].sr };
        p[r].ws = malloc(NN_BN_SYNC_WS(c) * sizeof(double));
        for (int k = 0; k < c; k++) p[r].rv[k] = 1.0f;
        off += (size_t)parts_n[r] * cs;
    }
    for (int r = 0; r < 2; r++)
        assert_int_equal(pthread_create(&th[r], NULL, bn_part_run, &p[r]), 0);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    assert_int_equal(w.calls, 2);         /* one sum in forward, one in backward */
    assert_close("BN output", p_out, out, all, GRAD_TOL);
    assert_close("BN input gradient", p_din, din, all, GRAD_TOL);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(p[r].rc, 0);
        assert_close("BN mean", p[r].mean, mean, c, GRAD_TOL);
        assert_close("BN invstd", p[r].invstd, invstd, c, GRAD_TOL);
        assert_close("BN running mean", p[r].rm, rm, c, GRAD_TOL);
        assert_close("BN running var", p[r].rv, rv, c, GRAD_TOL);
        for (int k = 0; k < c; k++) {
            dg_sum[k] += p[r].dgamma[k];
            db_sum[k] += p[r].dbeta[k];
        }
    }
    assert_close("BN dgamma summed", dg_sum, dgamma, c, GRAD_TOL);
    assert_close("BN dbeta summed", db_sum, dbeta, c, GRAD_TOL);

    /* a failing sum is reported */
    nn_bn_sync bad = { sum_fails, NULL };
    assert_int_equal(nn_batchnorm_sync_forward(p[0].out, p[0].mean, p[0].invstd, p[0].rm, p[0].rv, p[0].ws,
                                               p[0].in, gamma, beta, relu, &bad, &p[0].d), -1);
    for (int r = 0; r < 2; r++) {
        free(p[r].mean); free(p[r].invstd); free(p[r].rm); free(p[r].rv);
        free(p[r].dgamma); free(p[r].dbeta); free(p[r].ws);
    }
    pthread_barrier_destroy(&w.bar);
    free(in); free(dout); free(gamma); free(beta); free(out); free(mean); free(invstd); free(rm); free(rv);
    free(din); free(dgamma); free(dbeta); free(p_out); free(p_din); free(dg_sum); free(db_sum);
}

static void test_bn_sync(void **state)
{
    (void)state;
    check_bn_sync(3, 3, 4, 25, 0);
    check_bn_sync(3, 3, 4, 25, 1);
    check_bn_sync(2, 5, 3, 9, 1);     /* unequal parts */
    check_bn_sync(4, 2, 6, 1, 0);     /* 1-D batch norm (n, c) */
}

/* ---- a SimCLR step of a network over 2 ranks */

#define NET_IMGS    3     /* images per rank */
#define NET_C       3
#define NET_HW      16

typedef struct net_rank {
    sum_rank sr;
    nn_net *net;
    const float *x;       /* (2 NET_IMGS, C, H, W): views 1 then views 2 */
    const float *dz;      /* (2 NET_IMGS, out_dim), set between the passes */
    const float *z;
    int rc;
} net_rank;

static void *net_forward_run(void *arg)
{
    net_rank *p = arg;
    p->z = nn_net_forward(p->net, p->x, 2 * NET_IMGS, 1);
    return NULL;
}

static void *net_backward_run(void *arg)
{
    net_rank *p = arg;
    p->rc = nn_net_backward(p->net, p->dz);
    return NULL;
}

static void run_pair(void *(*fn)(void *), net_rank *p)
{
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        assert_int_equal(pthread_create(&th[r], NULL, fn, &p[r]), 0);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
}

static void test_net_step(void **state)
{
    (void)state;
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", 2, "simclr", NET_C, NET_HW, NET_HW,
                                    err, sizeof err), 0);
    int ranks = 2, big = 2 * NET_IMGS * ranks, img = NET_C * NET_HW * NET_HW;
    nn_net *whole = nn_net_new(desc, big, err, sizeof err);
    assert_non_null(whole);
    int d = nn_net_out_dim(whole);
    float *x = rand_buf((size_t)big * img, 1.0f, 0.5f), *x_all = zeros((size_t)big * img);
    split_rows(x_all, x, ranks, NET_IMGS, (size_t)img);

    /* one process */
    float *cache = zeros(nn_ntxent_cache_size(big, d)), *dz = zeros((size_t)big * d);
    const float *z = nn_net_forward(whole, x, big, 1);
    assert_non_null(z);
    float loss = nn_ntxent_forward(cache, z, big, d, TAU);
    nn_ntxent_backward(dz, cache, big, d, TAU, 1.0f);
    nn_net_zero_grad(whole);
    assert_int_equal(nn_net_backward(whole, dz), 0);

    /* two ranks: same parameters (both seeded alike), synchronised BN */
    sum_world w = { .ranks = 2 };
    pthread_barrier_init(&w.bar, NULL, 2);
    net_rank p[2];
    for (int r = 0; r < 2; r++) {
        p[r] = (net_rank){ .sr = { &w, r }, .x = x_all + (size_t)r * 2 * NET_IMGS * img };
        p[r].net = nn_net_new(desc, 2 * NET_IMGS, err, sizeof err);
        assert_non_null(p[r].net);
        nn_bn_sync sync = { sum_over_threads, &p[r].sr };
        assert_int_equal(nn_net_set_bn_sync(p[r].net, &sync, err, sizeof err), 0);
        nn_net_zero_grad(p[r].net);
    }
    run_pair(net_forward_run, p);
    int n2 = 2 * NET_IMGS;
    float *z_all = zeros((size_t)big * d), *dz_r[2];
    for (int r = 0; r < 2; r++) {
        assert_non_null(p[r].z);
        memcpy(z_all + (size_t)r * n2 * d, p[r].z, (size_t)n2 * d * sizeof(float));   /* the allgather */
    }
    float *z_want = zeros((size_t)big * d);
    split_rows(z_want, z, ranks, NET_IMGS, (size_t)d);
    assert_close("embeddings", z_all, z_want, (size_t)big * d, NET_TOL);
    for (int r = 0; r < 2; r++) {
        float *cr = zeros(nn_ntxent_cache_size(big, d));
        float lr = nn_ntxent_gathered_forward(cr, z_all, ranks, n2, d, TAU);
        assert_true(fabs(lr - loss) <= NET_TOL * fabs(loss));
        dz_r[r] = zeros((size_t)n2 * d);
        nn_ntxent_gathered_backward(dz_r[r], cr, ranks, r, n2, d, TAU, 1.0f);
        p[r].dz = dz_r[r];
        free(cr);
    }
    run_pair(net_backward_run, p);

    /* the gradient allreduce: the ranks' flat gradient arenas added up */
    nn_arena *gw = nn_net_grads(whole), *g0 = nn_net_grads(p[0].net), *g1 = nn_net_grads(p[1].net);
    assert_int_equal(g0->size, gw->size);
    float *gsum = zeros(gw->size);
    for (size_t i = 0; i < gw->size; i++)
        gsum[i] = g0->base[i] + g1->base[i];
    for (int t = 0; t < gw->n; t++) {
        size_t off = (size_t)(gw->t[t].data - gw->base), cnt = nn_shape_numel(gw->t[t].ndim, gw->t[t].shape);
        assert_close(gw->t[t].name, gsum + off, gw->t[t].data, cnt, NET_TOL);
    }
    /* the running statistics stay equal to the whole batch's on every rank */
    nn_arena *pw = nn_net_params(whole);
    for (int r = 0; r < 2; r++)
        assert_close("parameters and BN statistics", nn_net_params(p[r].net)->base, pw->base, pw->size, NET_TOL);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(p[r].rc, 0);
        nn_net_destroy(&p[r].net);
        free(dz_r[r]);
    }

    /* a failing sum makes forward return NULL */
    nn_net *lone = nn_net_new(desc, 2, err, sizeof err);
    nn_bn_sync bad = { sum_fails, NULL };
    assert_int_equal(nn_net_set_bn_sync(lone, &bad, err, sizeof err), 0);
    assert_null(nn_net_forward(lone, x, 2, 1));
    assert_int_equal(nn_net_backward(lone, dz), -1);
    assert_non_null(nn_net_forward(lone, x, 2, 0));            /* evaluation needs no sum */
    assert_int_equal(nn_net_set_bn_sync(lone, NULL, err, sizeof err), 0);
    assert_non_null(nn_net_forward(lone, x, 2, 1));
    nn_net_destroy(&lone);

    pthread_barrier_destroy(&w.bar);
    nn_net_destroy(&whole);
    free(x); free(x_all); free(cache); free(dz); free(z_all); free(z_want); free(gsum);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gathered_ntxent),
        cmocka_unit_test(test_gathered_layout_matters),
        cmocka_unit_test(test_bn_sync),
        cmocka_unit_test(test_net_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

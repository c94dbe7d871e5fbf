/* Unit tests of nn/net: presets, the description parser and its errors,
 * parameter names, and the forward/backward driver. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/loss.h"
#include "nn/net.h"

static float *rand_images(int n, int c, int h, int w, unsigned seed)
{
    size_t m = (size_t)n * c * h * w;
    float *x = malloc(m * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < m; i++)
        x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return x;
}

static void test_presets_build(void **state)
{
    (void)state;
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", 8, "simclr", 3, 32, 32, err, sizeof err), 0);
    nn_net *net = nn_net_new(desc, 4, err, sizeof err);
    assert_non_null(net);
    assert_int_equal(nn_net_feat_dim(net), 64);
    assert_int_equal(nn_net_out_dim(net), NN_PROJ_DIM);
    nn_arena *p = nn_net_params(net);
    assert_non_null(nn_arena_find(p, "encoder.layers.0.weight"));
    assert_int_equal(nn_arena_find(p, "encoder.layers.0.weight")->shape[0], 8);
    assert_non_null(nn_arena_find(p, "encoder.layers.1.running_var"));
    assert_true(nn_arena_find(p, "encoder.layers.1.running_var")->flags & NN_T_BUFFER);
    assert_true(nn_arena_find(p, "encoder.layers.0.weight")->flags & NN_T_DECAY);
    assert_false(nn_arena_find(p, "encoder.layers.1.weight")->flags & NN_T_DECAY);
    assert_non_null(nn_arena_find(p, "head.layers.3.bias"));
    /* width 32: about 1.14 GFLOP per image for forward + backward of two views */
    nn_net_destroy(&net);
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", 32, "none", 3, 32, 32, err, sizeof err), 0);
    net = nn_net_new(desc, 1, err, sizeof err);
    double gflop = nn_net_forward_macs(net) * 2 * 3 * 2 / 1e9;
    assert_true(gflop > 1.0 && gflop < 1.3);
    nn_net_destroy(&net);

    assert_int_equal(nn_preset_desc(desc, sizeof desc, "conv4", 4, "rotation", 1, 28, 28, err, sizeof err), 0);
    net = nn_net_new(desc, 2, err, sizeof err);
    assert_non_null(net);
    assert_int_equal(nn_net_out_dim(net), NN_ROT_CLASSES);
    float *x = rand_images(2, 1, 28, 28, 1);
    const float *y = nn_net_forward(net, x, 2, 0);
    assert_non_null(y);
    assert_true(isfinite(y[0]) && isfinite(y[7]));
    assert_null(nn_net_forward(net, x, 3, 0));          /* above max_batch */
    free(x);
    nn_net_destroy(&net);

    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-huge", 4, "none", 3, 32, 32, err, sizeof err), -1);
    assert_non_null(strstr(err, "resnet-huge"));
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "conv4", 4, "moco", 3, 32, 32, err, sizeof err), -1);
    assert_non_null(strstr(err, "moco"));
}

static void expect_error(const char *desc, const char *fragment)
{
    char err[512] = "";
    nn_net *net = nn_net_new(desc, 2, err, sizeof err);
    if (net || !strstr(err, fragment)) {
        print_error("description:\n%s\nerror: '%s', expected it to contain '%s'\n", desc, err, fragment);
        nn_net_destroy(&net);
        fail();
    }
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("input 3 8 8\nencoder\ngap\n", "line 1: expected 'nn 1'");
    expect_error("nn 2\ninput 3 8 8\nencoder\ngap\n", "version 2");
    expect_error("nn 1\ninput 3 8 8\nencoder\nconv out=4 kernel=3\ngap\n", "line 4: conv: unknown key 'kernel' (keys: out k s p bias)");
    expect_error("nn 1\ninput 3 8 8\nencoder\nconv out=4 k=x\ngap\n", "line 4: conv: bad value 'x' for k");
    expect_error("nn 1\ninput 3 8 8\nencoder\nconv k=3\ngap\n", "line 4: conv needs out=");
    expect_error("nn 1\ninput 3 8 8\nencoder\nbatchnorm\ngap\n", "line 4: unknown layer 'batchnorm'");
    expect_error("nn 1\ninput 3 8 8\nencoder\nrelu k=2\ngap\n", "line 4: relu: unknown key 'k' (keys: none)");
    expect_error("nn 1\ninput 3 8 8\nencoder\nres\nconv out=5\nend\ngap\n", "changes the shape (N, 3, 8, 8) -> (N, 5, 8, 8)");
    expect_error("nn 1\ninput 3 8 8\nencoder\nend\ngap\n", "'end' without a matching 'res'");
    expect_error("nn 1\ninput 3 8 8\nencoder\nres\ngap\n", "not closed");
    expect_error("nn 1\ninput 3 8 8\nencoder\nlinear out=3\n", "linear needs a (N, F) input");
    expect_error("nn 1\ninput 3 8 8\nencoder\nconv out=3\n", "must end with a vector");
    expect_error("nn 1\ninput 3 8 8\nencoder\nconv out=3\nhead\nlinear out=2\n", "encoder must end with a vector");
    expect_error("nn 1\ninput 3 8 8\nconv out=3\n", "before the 'encoder' line");
    expect_error("nn 1\ninput 3 4 4\nencoder\nmaxpool k=5\ngap\n", "maxpool k=5 s=5 does not fit");
    expect_error("nn 1\nencoder\ngap\n", "sections come in the order");
    expect_error("nn 1\ninput 3 4 4\nencoder\nconv out=2 k=9 p=0\ngap\n", "empty output");

    /* a custom network: comments, defaults, flatten, l2norm */
    char err[256];
    nn_net *net = nn_net_new("nn 1  # custom\ninput 2 6 6\nencoder\nconv out=3 k=3 s=2 bias=1\n"
                             "relu\nflatten\nhead\nlinear out=5\nl2norm\n", 3, err, sizeof err);
    assert_non_null(net);
    assert_int_equal(nn_net_feat_dim(net), 27);
    assert_int_equal(nn_net_out_dim(net), 5);
    assert_non_null(nn_arena_find(nn_net_params(net), "encoder.layers.0.bias"));
    assert_non_null(nn_arena_find(nn_net_params(net), "head.layers.0.weight"));
    float *x = rand_images(3, 2, 6, 6, 2);
    const float *y = nn_net_forward(net, x, 3, 1);
    double s = 0;
    for (int k = 0; k < 5; k++) s += (double)y[k] * y[k];
    assert_true(fabs(s - 1.0) < 1e-5);
    free(x);
    nn_net_destroy(&net);
}

/* backward accumulates; a smaller batch than max works; backward after an
 * evaluation forward is refused */
static void test_backward_accumulates(void **state)
{
    (void)state;
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", 2, "simclr", 3, 16, 16, err, sizeof err), 0);
    nn_net *net = nn_net_new(desc, 8, err, sizeof err);
    assert_non_null(net);
    float *x = rand_images(6, 3, 16, 16, 3);
    int d = nn_net_out_dim(net);
    float *cache = calloc(nn_ntxent_cache_size(6, d), sizeof(float)), *dz = calloc((size_t)6 * d, sizeof(float));
    const float *z = nn_net_forward(net, x, 6, 1);
    float loss = nn_ntxent_forward(cache, z, 6, d, 0.5f);
    assert_true(isfinite(loss) && loss > 0.0f);
    nn_ntxent_backward(dz, cache, 6, d, 0.5f, 1.0f);
    nn_net_zero_grad(net);
    assert_int_equal(nn_net_backward(net, dz), 0);
    nn_arena *g = nn_net_grads(net);
    float *once = malloc(g->size * sizeof(float));
    memcpy(once, g->base, g->size * sizeof(float));
    assert_int_equal(nn_net_backward(net, dz), 0);
    double nz = 0;
    for (size_t i = 0; i < g->size; i++) {
        assert_true(fabsf(g->base[i] - 2.0f * once[i]) <= 1e-5f * (1.0f + fabsf(once[i])));
        nz += fabsf(once[i]);
    }
    assert_true(nz > 0.0);
    nn_net_forward(net, x, 6, 0);
    assert_int_equal(nn_net_backward(net, dz), -1);
    /* re-initialisation is deterministic */
    nn_arena *p = nn_net_params(net);
    nn_net_init_params(net, 7);
    float w0 = p->t[0].data[0];
    nn_net_init_params(net, 7);
    assert_true(p->t[0].data[0] == w0);
    free(once); free(cache); free(dz); free(x);
    nn_net_destroy(&net);
}

/* What nn_net_set_grad_ready handed out during one backward: each range
 * as it was then, to compare with the gradients at the end. */
typedef struct {
    const float *base;
    size_t size, from[256], n[256];
    float *seen;
    int ranges, ticks;
} ranges_t;

static int count_tick(void *ctx)
{
    ranges_t *r = ctx;
    r->ticks += r->ranges > 0;   /* only once a range is out */
    return r->ranges > 0 ? 0 : -1;
}

static int record_range(void *ctx, float *grad, size_t n)
{
    ranges_t *r = ctx;
    if (r->ranges == 256)
        return -1;
    size_t from = (size_t)(grad - r->base);
    r->from[r->ranges] = from;
    r->n[r->ranges++] = n;
    memcpy(r->seen + from, grad, n * sizeof *grad);
    return 0;
}

static int refuse_range(void *ctx, float *grad, size_t n)
{
    (void)ctx;
    (void)grad;
    (void)n;
    return -1;
}

static void test_grads_ready(void **state)
{
    (void)state;
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", 4, "simclr", 3, 16, 16, err, sizeof err), 0);
    nn_net *net = nn_net_new(desc, 8, err, sizeof err);
    assert_non_null(net);
    nn_arena *g = nn_net_grads(net);
    ranges_t r = { .base = g->base, .size = g->size };
    r.seen = calloc(g->size, sizeof *r.seen);
    nn_grad_ready gr = { .ready = record_range, .tick = count_tick, .ctx = &r, .min_floats = 500 };
    assert_int_equal(nn_net_set_grad_ready(net, &gr, err, sizeof err), 0);
    float *x = rand_images(6, 3, 16, 16, 5);
    int d = nn_net_out_dim(net);
    float *cache = calloc(nn_ntxent_cache_size(6, d), sizeof(float)), *dz = calloc((size_t)6 * d, sizeof(float));
    const float *z = nn_net_forward(net, x, 6, 1);
    nn_ntxent_forward(cache, z, 6, d, 0.5f);
    nn_ntxent_backward(dz, cache, 6, d, 0.5f, 1.0f);
    nn_net_zero_grad(net);
    assert_int_equal(nn_net_backward(net, dz), 0);
    /* several ranges, the last layers' first, back to back from the end to
     * 0, each but the last at least min_floats, and each final when handed */
    assert_true(r.ranges >= 3);
    assert_true(r.ticks > 0);   /* between ranges, layers that hand out nothing */
    size_t at = g->size;
    for (int i = 0; i < r.ranges; i++) {
        assert_int_equal(r.from[i] + r.n[i], at);
        assert_true(i == r.ranges - 1 || r.n[i] >= gr.min_floats);
        at = r.from[i];
    }
    assert_int_equal(at, 0);
    assert_memory_equal(r.seen, g->base, g->size * sizeof *g->base);
    /* the same gradients as without it */
    float *with = malloc(g->size * sizeof *with);
    memcpy(with, g->base, g->size * sizeof *with);
    assert_int_equal(nn_net_set_grad_ready(net, NULL, err, sizeof err), 0);
    nn_net_forward(net, x, 6, 1);
    nn_net_zero_grad(net);
    assert_int_equal(nn_net_backward(net, dz), 0);
    assert_memory_equal(with, g->base, g->size * sizeof *g->base);
    /* a range that cannot go out fails the backward */
    gr.ready = refuse_range;
    gr.tick = NULL;
    assert_int_equal(nn_net_set_grad_ready(net, &gr, err, sizeof err), 0);
    nn_net_forward(net, x, 6, 1);
    assert_int_equal(nn_net_backward(net, dz), -1);
    free(with); free(r.seen); free(cache); free(dz); free(x);
    nn_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_build),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_grads_ready),
    };
    return cmocka_run_group_tests_name("nn networks", tests, NULL, NULL);
}

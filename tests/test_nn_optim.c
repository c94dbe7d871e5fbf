/* Unit tests of nn/optim against steps computed by hand (torch's formulas
 * for SGD and AdamW, SimCLR's for LARS) and of the learning-rate schedule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "nn/optim.h"

#define TOL 1e-6

/* params: "w" (2) a decayed weight, "b" (1) a bias, "rm" (1) a buffer */
static void make_tables(nn_arena *p, nn_arena *g)
{
    memset(p, 0, sizeof *p);
    memset(g, 0, sizeof *g);
    int s2[1] = { 2 }, s1[1] = { 1 };
    nn_arena_add(p, "w", 1, s2, NN_T_TRAIN | NN_T_DECAY);
    nn_arena_add(p, "b", 1, s1, NN_T_TRAIN);
    nn_arena_add(p, "rm", 1, s1, NN_T_BUFFER);
    assert_int_equal(nn_arena_alloc(p), 0);
    assert_int_equal(nn_arena_clone_layout(g, p), 0);
    p->t[0].data[0] = 3.0f; p->t[0].data[1] = 4.0f;
    p->t[1].data[0] = 1.0f;
    p->t[2].data[0] = 7.0f;
    g->t[0].data[0] = 0.3f; g->t[0].data[1] = 0.4f;
    g->t[1].data[0] = 0.5f;
    g->t[2].data[0] = 100.0f;
}

static void test_sgd(void **state)
{
    (void)state;
    nn_arena p, g;
    make_tables(&p, &g);
    nn_optim_config c;
    nn_optim_defaults(&c, NN_OPT_SGD);
    c.weight_decay = 0.01f;
    nn_optim *o = nn_optim_new(&c, &p, NULL, 0);
    assert_non_null(o);
    assert_non_null(nn_arena_find(nn_optim_state(o), "optimizer.w.momentum_buffer"));
    assert_null(nn_arena_find(nn_optim_state(o), "optimizer.rm.momentum_buffer"));
    nn_optim_step(o, &p, &g, 0.1f);
    /* b: g' = 0.5 + 0.01 = 0.51, buf = 0.51, b = 1 - 0.051 */
    assert_float_equal(p.t[1].data[0], 0.949f, TOL);
    nn_optim_step(o, &p, &g, 0.1f);
    /* g' = 0.5 + 0.00949, buf = 0.9 * 0.51 + 0.50949 = 0.96849 */
    assert_float_equal(p.t[1].data[0], 0.949f - 0.096849f, TOL);
    assert_float_equal(p.t[2].data[0], 7.0f, 0.0);          /* buffers untouched */
    assert_int_equal(nn_optim_steps(o), 2);
    nn_optim_destroy(&o);
    assert_null(o);

    nn_arena_free(&p);
    nn_arena_free(&g);
    make_tables(&p, &g);
    c.nesterov = 1;
    o = nn_optim_new(&c, &p, NULL, 0);
    nn_optim_step(o, &p, &g, 0.1f);
    /* nesterov: step with g' + m buf = 0.51 + 0.459 */
    assert_float_equal(p.t[1].data[0], 1.0f - 0.0969f, TOL);
    nn_optim_destroy(&o);

    /* decay_all = 0: the bias gets no decay */
    nn_arena_free(&p);
    nn_arena_free(&g);
    make_tables(&p, &g);
    c.nesterov = 0;
    c.decay_all = 0;
    o = nn_optim_new(&c, &p, NULL, 0);
    nn_optim_step(o, &p, &g, 0.1f);
    assert_float_equal(p.t[1].data[0], 0.95f, TOL);
    assert_float_equal(p.t[0].data[0], 3.0f - 0.1f * (0.3f + 0.03f), TOL);
    nn_optim_destroy(&o);
    nn_arena_free(&p);
    nn_arena_free(&g);
}

static void test_lars(void **state)
{
    (void)state;
    nn_arena p, g;
    make_tables(&p, &g);
    nn_optim_config c;
    nn_optim_defaults(&c, NN_OPT_LARS);
    c.weight_decay = 0.1f;
    nn_optim *o = nn_optim_new(&c, &p, NULL, 0);
    nn_optim_step(o, &p, &g, 1.0f);
    /* w = (3, 4), |w| = 5; g + wd w = (0.6, 0.8), norm 1; trust = 0.001 * 5 / 1;
     * v = 0.005 * (0.6, 0.8) */
    assert_float_equal(p.t[0].data[0], 3.0f - 0.003f, TOL);
    assert_float_equal(p.t[0].data[1], 4.0f - 0.004f, TOL);
    /* the bias: no decay, no trust ratio: v = lr g */
    assert_float_equal(p.t[1].data[0], 0.5f, TOL);
    nn_optim_step(o, &p, &g, 1.0f);
    /* bias: v = 0.9 * 0.5 + 0.5 */
    assert_float_equal(p.t[1].data[0], 0.5f - 0.95f, TOL);
    nn_optim_destroy(&o);
    nn_arena_free(&p);
    nn_arena_free(&g);
}

static void test_adamw(void **state)
{
    (void)state;
    nn_arena p, g;
    make_tables(&p, &g);
    nn_optim_config c;
    nn_optim_defaults(&c, NN_OPT_ADAMW);
    c.weight_decay = 0.01f;
    nn_optim *o = nn_optim_new(&c, &p, NULL, 0);
    assert_non_null(nn_arena_find(nn_optim_state(o), "optimizer.b.exp_avg_sq"));
    nn_optim_step(o, &p, &g, 0.1f);
    /* b = 1 * (1 - 0.001) - 0.1 * mhat / (sqrt(vhat) + eps), mhat = 0.5, vhat = 0.25 */
    assert_float_equal(p.t[1].data[0], 0.999f - 0.1f, 1e-6);
    g.t[1].data[0] = -0.25f;
    nn_optim_step(o, &p, &g, 0.1f);
    double m = 0.9 * 0.05 + 0.1 * -0.25, v = 0.999 * 0.00025 + 0.001 * 0.0625;
    double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
    double want = 0.899 * (1 - 0.001) - 0.1 * mh / (sqrt(vh) + 1e-8);
    assert_float_equal(p.t[1].data[0], want, 1e-6);
    nn_optim_destroy(&o);
    nn_arena_free(&p);
    nn_arena_free(&g);
}

static void test_schedule(void **state)
{
    (void)state;
    assert_float_equal(nn_lr_schedule(1.0f, 0, 10, 110), 0.1f, TOL);
    assert_float_equal(nn_lr_schedule(1.0f, 9, 10, 110), 1.0f, TOL);
    assert_float_equal(nn_lr_schedule(1.0f, 10, 10, 110), 1.0f, TOL);
    assert_float_equal(nn_lr_schedule(1.0f, 60, 10, 110), 0.5f, TOL);
    assert_float_equal(nn_lr_schedule(2.0f, 35, 10, 110), 2.0f * 0.5f * (1.0f + cosf((float)M_PI / 4)), 1e-5);
    assert_true(nn_lr_schedule(1.0f, 109, 10, 110) < 1e-3f);
    assert_float_equal(nn_lr_schedule(1.0f, 110, 10, 110), 0.0f, 0.0);
    assert_float_equal(nn_lr_schedule(1.0f, 5, 0, 10), 0.5f * (1.0f + cosf((float)M_PI / 2)), 1e-6);
    nn_opt_kind k;
    assert_int_equal(nn_optim_kind_parse("lars", &k), 0);
    assert_int_equal(k, NN_OPT_LARS);
    assert_int_equal(nn_optim_kind_parse("adam", &k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_lars),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests_name("nn optimizers", tests, NULL, NULL);
}

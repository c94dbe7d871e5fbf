/* Unit tests of trainer/: option parsing and defaults, batch assembly (layouts,
 * dtype conversion, refusals), the receive thread over an inproc socket
 * (assembly across messages, dropped messages, end-of-epoch count, samples
 * skipped for their label, copies of queued and of trained samples, a
 * restored checkpoint's epochs), the run folder (state round trip, a state
 * file of an earlier version, latest, pruning, metrics after a crash), the
 * settings of a resumed run, the schedule, the per-epoch sets (records, Have, the
 * checkpoint's copy) and the model step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console/console.h"
#include "proto/proto.h"
#include "transport/transport.h"
#include "trainer/batch.h"
#include "trainer/config.h"
#include "trainer/epochs.h"
#include "trainer/feed.h"
#include "trainer/model.h"
#include "trainer/options.h"
#include "trainer/rundir.h"
#include "trainer/schedule.h"

#define ARGV(...) ((char *[]){ "trainer", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "trainer", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(o, err, ...) trainer_options_parse(o, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), err, sizeof err)

/* ---- options ---- */

static void test_options_defaults(void **state)
{
    (void)state;
    trainer_options_t o;
    char err[256];
    char *argv[] = { "trainer", NULL };
    assert_int_equal(trainer_options_parse(&o, 1, argv, err, sizeof err), 0);
    assert_int_equal(o.method, TRAIN_SIMCLR);
    assert_string_equal(o.arch, "resnet-mini");
    assert_int_equal(o.batch, 128);                    /* simclr's defaults */
    assert_int_equal(o.decoupled, 1);
    assert_int_equal(o.optimizer, NN_OPT_SGD);
    assert_true(fabs(o.lr - 0.15) < 1e-12);            /* 0.3 x 128/256 */
    assert_true(fabs(o.weight_decay - 5e-4) < 1e-12);
    assert_true(o.epochs == 1.0 && o.steps == 0);
    assert_int_equal(o.warmup_steps, -1);
    assert_string_equal(o.bind, "tcp://127.0.0.1:5556");
    assert_string_equal(o.control, "tcp://127.0.0.1:5558");
    assert_string_equal(o.evaluator, "tcp://127.0.0.1:5557");
    assert_null(o.resume);
    char *rot[] = { "trainer", "--method", "rotnet", NULL };
    assert_int_equal(trainer_options_parse(&o, 3, rot, err, sizeof err), 0);
    assert_true(o.batch == 256 && !o.decoupled);
    assert_true(fabs(o.lr - 0.05) < 1e-12 && fabs(o.weight_decay - 1e-4) < 1e-12);
    char *nt[] = { "trainer", "--loss", "ntxent", "--batch", "256", NULL };
    assert_int_equal(trainer_options_parse(&o, 5, nt, err, sizeof err), 0);
    assert_true(o.batch == 256 && !o.decoupled && fabs(o.lr - 0.3) < 1e-12);
}

static void test_options_lr_rule(void **state)
{
    (void)state;
    trainer_options_t o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--batch", "512"), 0);
    assert_true(fabs(o.lr - 0.6) < 1e-12);
    assert_int_equal(PARSE(&o, err, "--method", "rotnet", "--batch", "128"), 0);
    assert_true(fabs(o.lr - 0.025) < 1e-12);            /* rotnet base 0.05 */
    assert_int_equal(PARSE(&o, err, "--optimizer", "adamw", "--batch", "64"), 0);
    assert_true(fabs(o.lr - 5e-4) < 1e-12);             /* 1e-3 x sqrt(64/256) */
    assert_true(fabs(o.weight_decay - 1e-2) < 1e-12);
    assert_int_equal(PARSE(&o, err, "--optimizer", "lars", "--lr", "1.5", "--weight-decay", "0"), 0);
    assert_true(o.lr == 1.5 && o.weight_decay == 0 && o.set_lr && o.set_wd);
}

static void test_options_values(void **state)
{
    (void)state;
    trainer_options_t o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--steps", "40", "--warmup", "5", "--width=8", "--resume", "latest",
                           "--dataset-size", "2000", "--seed", "7", "--keep", "2", "--ckpt-every", "10"), 0);
    assert_true(o.steps == 40 && o.epochs == 0 && o.set_length);
    assert_int_equal(o.warmup_steps, 5);
    assert_int_equal(o.width, 8);
    assert_string_equal(o.resume, "latest");
    assert_true(o.dataset_size == 2000 && o.seed == 7 && o.keep == 2 && o.ckpt_every == 10);
    assert_int_equal(PARSE(&o, err, "--warmup", "2ep", "--dataset-size", "100", "--epochs", "2.5"), 0);
    assert_true(o.warmup_epochs == 2.0 && o.warmup_steps == -1 && o.epochs == 2.5);
    char *help[] = { "trainer", "--help", NULL };
    assert_int_equal(trainer_options_parse(&o, 2, help, err, sizeof err), 1);
}

static void expect_usage_error(int rc, const char *err, const char *needle)
{
    assert_int_equal(rc, -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_options_errors(void **state)
{
    (void)state;
    trainer_options_t o;
    char err[256];
    expect_usage_error(PARSE(&o, err, "--method", "byol"), err, "simclr, rotnet, supervised or pretext");
    expect_usage_error(PARSE(&o, err, "--optimizer", "rmsprop"), err, "sgd, lars or adamw");
    expect_usage_error(PARSE(&o, err, "--steps", "0"), err, "--steps");
    expect_usage_error(PARSE(&o, err, "--batch", "1"), err, "--batch");
    expect_usage_error(PARSE(&o, err, "--width", "8x"), err, "--width");
    expect_usage_error(PARSE(&o, err, "--lr", "-1"), err, "--lr");
    expect_usage_error(PARSE(&o, err, "--epochs", "2", "--steps", "5"), err, "not both");
    expect_usage_error(PARSE(&o, err, "--minutes", "5", "--epochs", "2"), err, "--epochs and --minutes");
    expect_usage_error(PARSE(&o, err, "--minutes", "0"), err, "--minutes");
    /* the contrastive loss's settings with a method that has none */
    expect_usage_error(PARSE(&o, err, "--method", "rotnet", "--loss", "dcl"), err, "--method rotnet");
    expect_usage_error(PARSE(&o, err, "--tau", "0.2", "--method", "supervised"), err, "--tau");
    expect_usage_error(PARSE(&o, err, "--warmup", "1ep"), err, "--dataset-size");
    expect_usage_error(PARSE(&o, err, "--warmup", "ep"), err, "--warmup");
    expect_usage_error(PARSE(&o, err, "--frobnicate"), err, "unknown option");
    expect_usage_error(PARSE(&o, err, "--steps", "5", "extra"), err, "unexpected argument");
    expect_usage_error(PARSE(&o, err, "--steps"), err, "needs a value");
    expect_usage_error(PARSE(&o, err, "--bind", "none"), err, "--bind");
    expect_usage_error(PARSE(&o, err, "--evaluator", ""), err, "--evaluator");
    /* "none": no control PUB, no evaluator */
    assert_int_equal(PARSE(&o, err, "--control", "none", "--evaluator", "none"), 0);
    assert_null(o.control);
    assert_null(o.evaluator);
}

static void test_options_supervised(void **state)
{
    (void)state;
    trainer_options_t o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--method", "supervised", "--batch", "128"), 0);
    assert_int_equal(o.method, TRAIN_SUPERVISED);
    assert_string_equal(trainer_method_name(o.method), "supervised");
    assert_true(trainer_method_has_targets(o.method) && !trainer_method_has_targets(TRAIN_SIMCLR));
    assert_int_equal(o.classes, 10);
    assert_false(o.set_classes);
    assert_true(fabs(o.lr - 0.05) < 1e-12);             /* 0.1 x 128/256 */
    assert_true(fabs(o.weight_decay - 5e-4) < 1e-12);
    assert_true(fabs(o.momentum - 0.9) < 1e-12);
    assert_int_equal(PARSE(&o, err, "--method", "supervised", "--classes", "100", "--optimizer", "lars"), 0);
    assert_true(o.classes == 100 && o.set_classes);
    assert_true(fabs(o.weight_decay - 1e-6) < 1e-12);   /* lars keeps its own */
    train_method_t m;
    assert_int_equal(trainer_method_parse("supervised", &m), 0);
    assert_int_equal(m, TRAIN_SUPERVISED);
    expect_usage_error(PARSE(&o, err, "--classes", "1"), err, "--classes");
    expect_usage_error(PARSE(&o, err, "--classes", "ten"), err, "--classes");
    expect_usage_error(PARSE(&o, err, "--classes", "100001"), err, "--classes");
}

/* ---- batch assembly ---- */

#define C 1
#define H 2
#define W 2
#define N_PIX (C * H * W)

/* A decoded-looking ViewBatch of n samples, K views, whose element j of view
 * k of sample i is 100*index + 10*k + j (f32) or the same mod 256 (u8). */
typedef struct {
    proto_viewbatch_t vb;
    proto_view_sample_t s[8];
    float f[8][PROTO_MAX_VIEWS * N_PIX];
    uint8_t u[8][PROTO_MAX_VIEWS * N_PIX];
} fake_vb_t;

static void fake_init(fake_vb_t *v, proto_dtype_t dtype, uint32_t n, uint32_t k, uint64_t first_index)
{
    memset(v, 0, sizeof *v);
    v->vb.dtype = dtype;
    v->vb.views = k;
    v->vb.channels = C;
    v->vb.height = H;
    v->vb.width = W;
    v->vb.n_samples = n;
    v->vb.samples = v->s;
    for (uint32_t i = 0; i < n; i++) {
        v->s[i].index = first_index + i;
        v->s[i].epoch = (uint32_t)i;
        v->s[i].label = -1;
        for (uint32_t kk = 0; kk < k; kk++) {
            v->s[i].target[kk] = (int32_t)(kk % 4);
            for (int j = 0; j < N_PIX; j++) {
                float val = (float)(100 * (first_index + i) + 10 * kk + (uint32_t)j);
                v->f[i][kk * N_PIX + j] = val;
                v->u[i][kk * N_PIX + j] = (uint8_t)((int)val % 256);
            }
        }
        v->s[i].data = dtype == PROTO_DTYPE_F32 ? (const void *)v->f[i] : (const void *)v->u[i];
    }
}

static void test_batch_simclr_layout(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 3, .classes = 4 };
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, 2, 3, 0);   /* 3 views: the third is unused */
    char err[256];
    assert_int_equal(batch_check(&s, &v.vb, err, sizeof err), 0);
    assert_false(batch_shape_complete(&s));
    batch_shape_learn(&s, &v.vb);
    assert_true(batch_shape_complete(&s));
    assert_int_equal(batch_rows(&s), 6);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    assert_null(b.targets);
    assert_int_equal(batch_put(&b, &s, &v.vb, 0), 0);
    assert_int_equal(batch_put(&b, &s, &v.vb, 1), 0);
    fake_vb_t v2;
    fake_init(&v2, PROTO_DTYPE_F32, 1, 3, 7);
    assert_int_equal(batch_put(&b, &s, &v2.vb, 0), 1);   /* full */
    /* rows 0..2 first views of images (index 0, 1, 7); rows 3..5 their second views */
    const uint64_t idx[3] = { 0, 1, 7 };
    for (int img = 0; img < 3; img++)
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < N_PIX; j++)
                assert_true(b.x[(size_t)(k * 3 + img) * N_PIX + (size_t)j] ==
                            (float)(100 * idx[img] + 10 * (uint64_t)k + (uint64_t)j));
    assert_int_equal(b.max_epoch, 1);
    batch_reset(&b);
    assert_int_equal(b.filled, 0);
    batch_release(&b);
}

static void test_batch_rotnet_u8(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_ROTNET, .images = 2, .classes = 4 };
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_U8, 2, 4, 1);
    char err[256];
    assert_int_equal(batch_check(&s, &v.vb, err, sizeof err), 0);
    batch_shape_learn(&s, &v.vb);
    assert_int_equal(batch_rows(&s), 8);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    assert_non_null(b.targets);
    assert_int_equal(batch_put(&b, &s, &v.vb, 0), 0);
    assert_int_equal(batch_put(&b, &s, &v.vb, 1), 1);
    for (int img = 0; img < 2; img++)
        for (int k = 0; k < 4; k++) {
            size_t row = (size_t)img * 4 + (size_t)k;
            assert_int_equal(b.targets[row], k);
            for (int j = 0; j < N_PIX; j++) {
                float want = (float)((100 * (img + 1) + 10 * k + j) % 256) / 255.0f;
                assert_true(fabsf(b.x[row * N_PIX + (size_t)j] - want) < 1e-6f);
            }
        }
    batch_release(&b);
}

/* Images taken out of a batch (copies another rank trains): the others move
 * down with their views, epochs and indices; batch_put fills it up again. */
static void test_batch_remove(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 4, .classes = 4 };
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, 4, 2, 10);
    batch_shape_learn(&s, &v.vb);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    for (uint32_t i = 0; i < 4; i++)
        batch_put(&b, &s, &v.vb, i);
    const uint8_t drop[4] = { 1, 0, 1, 0 };
    assert_int_equal(batch_remove(&b, &s, drop), 2);
    assert_int_equal(b.filled, 2);
    const uint64_t left[2] = { 11, 13 };
    for (int img = 0; img < 2; img++) {
        assert_true(b.index[img] == left[img] && b.epoch[img] == left[img] - 10);
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < N_PIX; j++)
                assert_true(b.x[(size_t)(k * 4 + img) * N_PIX + (size_t)j] ==
                            (float)(100 * left[img] + 10 * (uint64_t)k + (uint64_t)j));
    }
    assert_int_equal(b.max_epoch, 3);
    fake_vb_t v2;
    fake_init(&v2, PROTO_DTYPE_F32, 2, 2, 20);
    assert_int_equal(batch_put(&b, &s, &v2.vb, 0), 0);
    assert_int_equal(batch_put(&b, &s, &v2.vb, 1), 1);   /* full again */
    assert_true(b.index[2] == 20 && b.index[3] == 21);
    batch_release(&b);

    /* rotnet: the views and their targets move together */
    batch_shape_t r = { .method = TRAIN_ROTNET, .images = 3, .classes = 4 };
    fake_init(&v, PROTO_DTYPE_F32, 3, 4, 0);
    batch_shape_learn(&r, &v.vb);
    assert_int_equal(batch_alloc(&b, &r), 0);
    for (uint32_t i = 0; i < 3; i++)
        batch_put(&b, &r, &v.vb, i);
    b.targets[2 * 4 + 1] = 3;   /* marks image 2's second view */
    const uint8_t first[3] = { 1, 1, 0 };
    assert_int_equal(batch_remove(&b, &r, first), 2);
    assert_true(b.filled == 1 && b.index[0] == 2 && b.targets[1] == 3);
    assert_true(b.x[(size_t)3 * N_PIX] == (float)(100 * 2 + 10 * 3));
    batch_release(&b);
}

/* Of copies held by several ranks in one step only the lowest rank's stays. */
static void test_batch_mark_copies(void **state)
{
    (void)state;
    /* 3 ranks, 3 images each; (0, 5) on ranks 0 and 2, (1, 7) on ranks 1 and 2,
     * (2, 9) on rank 2 only but in another epoch on rank 0 */
    const batch_id_t all[9] = {
        { .epoch = 0, .index = 5 }, { .epoch = 1, .index = 9 }, { .epoch = 0, .index = 1 },
        { .epoch = 1, .index = 7 }, { .epoch = 0, .index = 2 }, { .epoch = 0, .index = 3 },
        { .epoch = 0, .index = 5 }, { .epoch = 1, .index = 7 }, { .epoch = 2, .index = 9 },
    };
    uint8_t drop[3] = { 0 };
    assert_int_equal(batch_mark_copies(all, 0, 3, drop), 0);
    assert_int_equal(batch_mark_copies(all, 1, 3, drop), 0);
    assert_int_equal(batch_mark_copies(all, 2, 3, drop), 2);
    assert_true(drop[0] && drop[1] && !drop[2]);
    /* one already marked (done elsewhere) is not counted twice */
    uint8_t pre[3] = { 1, 0, 0 };
    assert_int_equal(batch_mark_copies(all, 2, 3, pre), 1);
}

static void expect_refused(const batch_shape_t *s, const proto_viewbatch_t *vb, const char *needle)
{
    char err[256];
    assert_int_equal(batch_check(s, vb, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_batch_refusals(void **state)
{
    (void)state;
    fake_vb_t v;
    batch_shape_t simclr = { .method = TRAIN_SIMCLR, .images = 4, .views = 2, .channels = C,
                             .height = H, .width = W, .classes = 4 };
    fake_init(&v, PROTO_DTYPE_F32, 2, 1, 0);
    batch_shape_t open = { .method = TRAIN_SIMCLR, .images = 4, .classes = 4 };
    expect_refused(&open, &v.vb, "simclr needs 2");
    fake_init(&v, PROTO_DTYPE_F32, 2, 4, 0);
    expect_refused(&simclr, &v.vb, "4 views per sample");
    fake_init(&v, PROTO_DTYPE_F32, 2, 2, 0);
    v.vb.height = 3;
    expect_refused(&simclr, &v.vb, "1x3x2");
    batch_shape_t rot = { .method = TRAIN_ROTNET, .images = 4, .classes = 4 };
    fake_init(&v, PROTO_DTYPE_U8, 2, 4, 0);
    v.s[1].target[2] = -1;
    expect_refused(&rot, &v.vb, "samples[1] view 2 has target -1");
    v.s[1].target[2] = 4;
    expect_refused(&rot, &v.vb, "target 4");
}

/* Pretext: the class count comes from the first ViewBatch; every view is a
 * row with its target; a batch without announced classes, with other
 * classes, or with a target outside them is refused. */
static void test_batch_pretext(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_PRETEXT, .images = 2 };
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, 2, 2, 3);
    v.s[0].target[1] = 7;
    expect_refused(&s, &v.vb, "0 classes announced, pretext needs 2 or more");
    v.vb.target_classes = 8;
    char err[256];
    assert_int_equal(batch_check(&s, &v.vb, err, sizeof err), 0);
    batch_shape_learn(&s, &v.vb);
    assert_int_equal(s.classes, 8);
    assert_int_equal(batch_rows(&s), 4);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    assert_non_null(b.targets);
    assert_int_equal(batch_put(&b, &s, &v.vb, 0), 0);
    assert_int_equal(batch_put(&b, &s, &v.vb, 1), 1);
    const int32_t want[4] = { 0, 7, 0, 1 };
    assert_memory_equal(b.targets, want, sizeof want);
    assert_true(b.x[1 * N_PIX] == (float)(100 * 3 + 10));   /* row 1: image 0, view 1 */
    batch_release(&b);
    v.vb.target_classes = 4;
    expect_refused(&s, &v.vb, "targets have 4 classes, this run trains a 8-way head");
    v.vb.target_classes = 8;
    v.s[1].target[0] = -1;
    expect_refused(&s, &v.vb, "samples[1] view 0 has target -1, pretext needs 0..7");
    assert_true(trainer_method_has_targets(TRAIN_PRETEXT));
    train_method_t m;
    assert_int_equal(trainer_method_parse("pretext", &m), 0);
    assert_int_equal(m, TRAIN_PRETEXT);
    assert_string_equal(trainer_method_name(TRAIN_PRETEXT), "pretext");
}

/* Supervised: one view per image, row i is image i, its target the label. */
static void test_batch_supervised_layout(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_SUPERVISED, .images = 3, .classes = 10 };
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_U8, 3, 1, 4);
    v.s[0].label = 7;
    v.s[1].label = 0;
    v.s[2].label = 9;
    char err[256];
    assert_int_equal(batch_check(&s, &v.vb, err, sizeof err), 0);
    batch_shape_learn(&s, &v.vb);
    assert_int_equal(batch_views_used(&s), 1);
    assert_int_equal(batch_rows(&s), 3);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    assert_non_null(b.targets);
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(batch_sample_usable(&s, &v.s[i]));
        assert_int_equal(batch_put(&b, &s, &v.vb, i), i == 2);
    }
    const int32_t labels[3] = { 7, 0, 9 };
    for (int img = 0; img < 3; img++) {
        assert_int_equal(b.targets[img], labels[img]);
        assert_int_equal(b.index[img], 4 + img);
        for (int j = 0; j < N_PIX; j++) {
            float want = (float)((100 * (4 + img) + j) % 256) / 255.0f;
            assert_true(fabsf(b.x[(size_t)img * N_PIX + (size_t)j] - want) < 1e-6f);
        }
    }
    batch_release(&b);
}

/* Which labels a supervised batch can use: 0..classes-1 only; the other
 * methods use every sample, whatever its label. */
static void test_batch_supervised_labels(void **state)
{
    (void)state;
    batch_shape_t s = { .method = TRAIN_SUPERVISED, .images = 4, .classes = 10 };
    proto_view_sample_t smp;
    memset(&smp, 0, sizeof smp);
    const int32_t good[] = { 0, 5, 9 }, bad[] = { PROTO_LABEL_NONE, -7, 10, 1000, INT32_MAX };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        smp.label = good[i];
        assert_true(batch_sample_usable(&s, &smp));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        smp.label = bad[i];
        assert_false(batch_sample_usable(&s, &smp));
    }
    batch_shape_t simclr = { .method = TRAIN_SIMCLR, .images = 4, .classes = 4 };
    smp.label = PROTO_LABEL_NONE;
    assert_true(batch_sample_usable(&simclr, &smp));
    /* a stream of two views per sample is refused: that is the simclr recipe */
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, 2, 2, 0);
    expect_refused(&s, &v.vb, "supervised trains on 1");
}

/* The wire path: an encoded, decoded message (payload not aligned). */
static void test_batch_from_wire(void **state)
{
    (void)state;
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, 2, 2, 5);
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &v.vb, NULL, 0), 0);
    proto_viewbatch_t d;
    memset(&d, 0, sizeof d);
    assert_int_equal(proto_viewbatch_decode(&d, buf.data, buf.len, NULL, 0), 0);
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 2, .classes = 4 };
    char err[256];
    assert_int_equal(batch_check(&s, &d, err, sizeof err), 0);
    batch_shape_learn(&s, &d);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    batch_put(&b, &s, &d, 0);
    assert_int_equal(batch_put(&b, &s, &d, 1), 1);
    assert_true(b.x[0] == 500.0f && b.x[N_PIX] == 600.0f && b.x[2 * N_PIX] == 510.0f);
    batch_release(&b);
    proto_viewbatch_clear(&d);
    proto_buf_release(&buf);
}

/* ---- receive thread ---- */

static void push_bytes(void *sock, const void *data, size_t len)
{
    assert_int_equal(transport_send(sock, data, len), 0);
}

static void push_fake(void *sock, const fake_vb_t *v)
{
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &v->vb, NULL, 0), 0);
    push_bytes(sock, buf.data, buf.len);
    proto_buf_release(&buf);
}

static void push_viewbatch(void *sock, uint32_t n, uint64_t first)
{
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, n, 2, first);
    push_fake(sock, &v);
}

static void test_feed_assembles_and_drops(void **state)
{
    (void)state;
    const char *ep = "inproc://test-trainer-feed";
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 4, .classes = 4 };
    char err[256];
    feed_t *f = feed_new(ep, 16, &s, 2, NULL, 0, err, sizeof err);
    assert_non_null(f);
    void *push = transport_open(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 0);
    assert_non_null(push);

    push_bytes(push, "not msgpack", 11);                 /* dropped: not ours */
    push_viewbatch(push, 3, 0);                          /* images 0, 1, 2 */
    fake_vb_t bad;                                       /* dropped: wrong shape */
    fake_init(&bad, PROTO_DTYPE_F32, 1, 2, 99);
    bad.vb.width = 1;
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &bad.vb, NULL, 0), 0);
    push_bytes(push, buf.data, buf.len);
    push_viewbatch(push, 3, 3);                          /* images 3, 4, 5 */
    proto_control_t c = { .kind = PROTO_CONTROL_END_OF_EPOCH, .epoch = 0, .count = 6 };
    snprintf(c.sender, sizeof c.sender, "loader@test:1");
    assert_int_equal(proto_control_encode(&buf, &c, NULL, 0), 0);
    push_bytes(push, buf.data, buf.len);
    push_viewbatch(push, 2, 6);                          /* images 6, 7 */

    /* images 0..3, then 4..7: samples split across messages */
    for (int k = 0; k < 2; k++) {
        batch_t *b = feed_take(f, 5000);
        assert_non_null(b);
        assert_int_equal(b->filled, 4);
        for (int img = 0; img < 4; img++) {
            float want = (float)(100 * (4 * k + img));
            assert_true(b->x[(size_t)img * N_PIX] == want);              /* first view */
            assert_true(b->x[(size_t)(4 + img) * N_PIX] == want + 10);   /* second view */
        }
        feed_give_back(f, b);
    }
    assert_null(feed_take(f, 100));
    feed_stats_t st;
    feed_stats(f, &st);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.viewbatches, 3);
    assert_int_equal(st.samples, 8);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.epoch_count, 6);
    assert_int_equal(st.end_of_stream, 0);
    assert_true(strstr(st.last_error, "2x1") != NULL);
    batch_shape_t learnt;
    feed_shape(f, &learnt);
    assert_true(learnt.views == 2 && learnt.channels == C && learnt.height == H && learnt.width == W);

    proto_buf_release(&buf);
    transport_close(&push);
    feed_destroy(&f);
    assert_null(f);
}

/* push_viewbatch with every sample in epoch 0 */
static void push_epoch0(void *sock, uint32_t n, uint64_t first)
{
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, n, 2, first);
    for (uint32_t i = 0; i < n; i++)
        v.s[i].epoch = 0;
    push_fake(sock, &v);
}

/* A batch given back partly filled (feed_refill) while the thread fills
 * another is joined with it, so that neither waits for samples that may
 * not come: the given-back one is filled from the other and comes back
 * first, its images intact. */
static void test_feed_joins_partial(void **state)
{
    (void)state;
    const char *ep = "inproc://test-trainer-join";
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 4, .classes = 4 };
    char err[256];
    feed_t *f = feed_new(ep, 16, &s, 3, NULL, 0, err, sizeof err);
    assert_non_null(f);
    void *push = transport_open(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 0);
    assert_non_null(push);
    push_epoch0(push, 6, 0);                             /* 0..3 full, 4 and 5 being filled */
    batch_t *a = feed_take(f, 5000);
    assert_non_null(a);
    assert_int_equal(a->index[0], 0);
    feed_stats_t st;
    for (int i = 0; i < 500; i++) {                      /* 4 and 5 in the batch being filled */
        feed_stats(f, &st);
        if (st.samples == 6)
            break;
        usleep(10000);
    }
    assert_int_equal(st.samples, 6);
    uint8_t drop[4] = { 0, 1, 0, 0 };                    /* image 1 out: 0, 2, 3 left */
    feed_refill(f, a, drop);
    batch_t *b = feed_take(f, 5000);                     /* no new sample needed */
    assert_true(b == a);
    assert_true(b->filled == 4 && b->index[0] == 0 && b->index[1] == 2 && b->index[2] == 3 && b->index[3] == 5);
    for (uint32_t k = 0; k < 2; k++)                     /* image 5's views came with it */
        assert_true(b->x[((size_t)k * 4 + 3) * N_PIX] == (float)(100 * 5 + 10 * k));
    feed_give_back(f, b);
    push_epoch0(push, 3, 6);                             /* 4 was left: 4, 6, 7, 8 */
    b = feed_take(f, 5000);
    assert_non_null(b);
    assert_true(b->filled == 4 && b->index[0] == 4 && b->index[1] == 6 && b->index[3] == 8);
    feed_give_back(f, b);
    transport_close(&push);
    feed_destroy(&f);
}

/* Pushes a one-view ViewBatch of epoch 0 whose samples have the given
 * labels, dataset indices first, first + 1, ... */
static void push_labeled(void *sock, const int32_t *labels, uint32_t n, uint64_t first)
{
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, n, 1, first);
    for (uint32_t i = 0; i < n; i++) {
        v.s[i].epoch = 0;
        v.s[i].label = labels[i];
        v.s[i].target[0] = PROTO_TARGET_NONE;
    }
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &v.vb, NULL, 0), 0);
    push_bytes(sock, buf.data, buf.len);
    proto_buf_release(&buf);
}

/* Supervised: samples without a usable label are skipped (not in a batch),
 * counted, acknowledged, and the epoch completes without them. */
static void test_feed_skips_bad_labels(void **state)
{
    (void)state;
    const char *ep = "inproc://test-trainer-feed-labels";
    batch_shape_t s = { .method = TRAIN_SUPERVISED, .images = 3, .classes = 10 };
    char err[256];
    feed_t *f = feed_new(ep, 16, &s, 2, NULL, 0, err, sizeof err);
    assert_non_null(f);
    void *push = transport_open(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 0);
    assert_non_null(push);
    /* indices 0..7 of an epoch of 9: 1 unlabeled, 4 and 6 beyond --classes 10
     * (the wire allows no label below -1) */
    const int32_t labels[8] = { 3, PROTO_LABEL_NONE, 0, 9, 10, 2, 12, 4 };
    push_labeled(push, labels, 5, 0);
    push_labeled(push, labels + 5, 3, 5);
    proto_control_t c = { .kind = PROTO_CONTROL_END_OF_EPOCH, .epoch = 0, .count = 9 };   /* 8 more to come */
    snprintf(c.sender, sizeof c.sender, "loader@test:1");
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_control_encode(&buf, &c, NULL, 0), 0);
    push_bytes(push, buf.data, buf.len);
    proto_buf_release(&buf);

    const uint64_t want_index[2][3] = { { 0, 2, 3 }, { 5, 7, 0 } };
    const int32_t want_label[2][3] = { { 3, 0, 9 }, { 2, 4, 0 } };
    batch_t *b = feed_take(f, 5000);
    assert_non_null(b);
    assert_int_equal(b->filled, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b->index[i], want_index[0][i]);
        assert_int_equal(b->targets[i], want_label[0][i]);
        assert_true(b->x[(size_t)i * N_PIX] == (float)(100 * want_index[0][i]));
    }
    feed_trained(f, b);
    feed_give_back(f, b);
    assert_null(feed_take(f, 300));   /* 5 and 7 wait for a third usable sample */
    feed_stats_t st;
    feed_stats(f, &st);
    assert_int_equal(st.skipped, 3);
    assert_int_equal(st.last_skipped_label, 12);
    assert_int_equal(st.last_skipped_index, 6);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.samples, 8);
    /* the skipped ones are acknowledged at once */
    uint32_t ack_epoch[8];
    uint64_t ack_index[8];
    size_t n = feed_take_duplicates(f, ack_epoch, ack_index, 8);
    assert_int_equal(n, 3);
    uint64_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ack_epoch[i], 0);
        acked |= 1ull << ack_index[i];
    }
    assert_int_equal(acked, (1u << 1) | (1u << 4) | (1u << 6));
    /* 3 trained + 3 skipped of 9: the epoch stays open */
    epochs_record_t r;
    assert_int_equal(feed_epoch_record(f, 0, &r), 0);
    int known;
    assert_int_equal(feed_epoch(f, &known), 0);
    const int32_t last[1] = { 1 };   /* the epoch's last sample completes the batch */
    push_labeled(push, last, 1, 8);
    b = feed_take(f, 5000);
    assert_non_null(b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(b->index[i], want_index[1][i]);
        assert_int_equal(b->targets[i], want_label[1][i]);
    }
    assert_int_equal(b->targets[2], 1);
    feed_trained(f, b);
    feed_give_back(f, b);
    /* 6 trained + 3 skipped = the loader's 9: complete, and training moves on */
    assert_int_equal(feed_epoch_record(f, 0, &r), 1);
    assert_true(r.epoch == 0 && r.distinct == 6 && r.skipped == 3 && r.expected == 9 && r.complete);
    assert_int_equal(feed_epoch(f, &known), 1);
    transport_close(&push);
    feed_destroy(&f);
}

/* Pushes a two-view ViewBatch of n samples of `epoch`, indices first, first + 1, ... */
static void push_epoch(void *sock, uint32_t epoch, uint32_t n, uint64_t first)
{
    fake_vb_t v;
    fake_init(&v, PROTO_DTYPE_F32, n, 2, first);
    for (uint32_t i = 0; i < n; i++)
        v.s[i].epoch = epoch;
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &v.vb, NULL, 0), 0);
    push_bytes(sock, buf.data, buf.len);
    proto_buf_release(&buf);
}

/* Waits until the receive thread has taken `n` samples in all. */
static void wait_samples(feed_t *f, uint64_t n)
{
    feed_stats_t st;
    for (int i = 0; i < 500; i++) {
        feed_stats(f, &st);
        if (st.samples >= n)
            return;
        usleep(10000);
    }
    fail_msg("the feed took %llu samples, expected %llu", (unsigned long long)st.samples, (unsigned long long)n);
}

/* A resumed trainer: the checkpoint's trained samples are dropped as
 * duplicates and acknowledged; what it did not hold is trained; a copy of
 * a sample still in a batch is dropped without an Ack until it is trained;
 * the Have says what the model holds. */
static void test_feed_restored(void **state)
{
    (void)state;
    const char *ep = "inproc://test-trainer-feed-restored";
    batch_shape_t s = { .method = TRAIN_SIMCLR, .images = 2, .classes = 4 };
    char err[256];
    /* the checkpoint's model holds samples 0 and 1 of epoch 6 */
    epochs_t before, restored;
    epochs_init(&before);
    for (uint64_t i = 0; i < 4; i++)
        epochs_admit(&before, 6, i);
    epochs_trained(&before, 6, 0);
    epochs_trained(&before, 6, 1);
    epochs_end(&before, 6, 4);
    json_t *j = epochs_to_json(&before);
    epochs_release(&before);
    epochs_init(&restored);
    assert_int_equal(epochs_from_json(&restored, j, err, sizeof err), 0);
    json_decref(j);
    feed_t *f = feed_new(ep, 16, &s, 2, &restored, 0, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(epochs_current(&restored, &(int){ 0 }), 0);   /* taken over: left empty */
    int known;
    assert_int_equal(feed_epoch(f, &known), 6);
    assert_int_equal(known, 1);
    proto_have_t h;
    assert_int_equal(feed_have(f, &h), 1);
    assert_true(h.epoch == 6 && h.n_epochs == 1 && h.done_bytes[0] == 1 && h.done[0][0] == 0x03);
    feed_have_release(&h);

    void *push = transport_open(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 0);
    assert_non_null(push);
    push_epoch(push, 6, 4, 0);   /* 0 and 1 held: dropped and acknowledged; 2 and 3 trained */
    batch_t *b = feed_take(f, 5000);
    assert_non_null(b);
    assert_true(b->filled == 2 && b->index[0] == 2 && b->index[1] == 3);
    push_epoch(push, 6, 1, 3);   /* a copy of 3, still in the batch: no Ack for it */
    wait_samples(f, 5);
    uint32_t ack_epoch[8];
    uint64_t ack_index[8];
    size_t n = feed_take_duplicates(f, ack_epoch, ack_index, 8);
    assert_int_equal(n, 2);
    assert_true(ack_epoch[0] == 6 && ack_epoch[1] == 6 && ack_index[0] + ack_index[1] == 1);
    feed_trained(f, b);
    feed_give_back(f, b);
    push_epoch(push, 6, 1, 3);   /* trained now: dropped and acknowledged */
    wait_samples(f, 6);
    n = feed_take_duplicates(f, ack_epoch, ack_index, 8);
    assert_true(n == 1 && ack_index[0] == 3);
    epochs_record_t r;
    assert_int_equal(feed_epoch_record(f, 0, &r), 1);
    assert_true(r.epoch == 6 && r.distinct == 4 && r.duplicates == 4 && r.expected == 4 && r.complete);
    assert_int_equal(feed_epoch(f, &known), 7);
    assert_int_equal(feed_have(f, &h), 1);
    assert_true(h.epoch == 7 && h.n_epochs == 0);
    feed_have_release(&h);
    j = feed_epochs_json(f);
    assert_non_null(j);
    json_decref(j);
    transport_close(&push);
    feed_destroy(&f);
}

/* ---- run folder ---- */

static char tmpdir[256];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_trainer.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static void test_rundir_state_round_trip(void **state)
{
    (void)state;
    train_state_t s = { .config = { .method = TRAIN_ROTNET, .arch = "my net.txt", .width = 8, .batch = 32,
                                    .optimizer = NN_OPT_LARS, .lr = 0.0375, .weight_decay = 1e-6,
                                    .momentum = 0.9, .tau = 0.2, .warmup_steps = 3, .total_steps = 40,
                                    .epochs = 1.5, .dataset_size = 50000, .seed = 18446744073709551615ull,
                                    .sync_bn = 1, .decoupled = 1, .ema = 0.99 },
                        .step = 20, .images_seen = 640, .rng = 0xfedcba9876543210ull, .train_seconds = 12.5 };
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/state.json", tmpdir);
    assert_int_equal(rundir_state_save(path, &s, err, sizeof err), 0);
    train_state_t r;
    assert_int_equal(rundir_state_load(path, &r, err, sizeof err), 0);
    const trainer_config_t *c = &r.config;
    assert_int_equal(c->method, TRAIN_ROTNET);
    assert_int_equal(c->optimizer, NN_OPT_LARS);
    assert_string_equal(c->arch, s.config.arch);
    assert_true(c->width == 8 && c->batch == 32 && c->warmup_steps == 3 && c->total_steps == 40);
    assert_true(c->lr == s.config.lr && c->weight_decay == s.config.weight_decay && c->tau == s.config.tau &&
                c->epochs == 1.5 && c->steps == 0);
    assert_true(c->dataset_size == 50000 && c->seed == s.config.seed);
    assert_int_equal(c->sync_bn, 1);
    assert_int_equal(c->decoupled, 1);
    assert_true(c->ema == 0.99);
    assert_true(r.step == 20 && r.images_seen == 640 && r.rng == s.rng && r.train_seconds == 12.5);
    assert_null(r.epoch_sets);   /* none given: none read */

    /* the per-epoch sets travel as the object they were given */
    s.epoch_sets = json_pack("{s:I, s:[]}", "closed_upto", (json_int_t)-1, "slots");
    assert_int_equal(rundir_state_save(path, &s, err, sizeof err), 0);
    assert_int_equal(rundir_state_load(path, &r, err, sizeof err), 0);
    assert_non_null(r.epoch_sets);
    assert_true(json_equal(r.epoch_sets, s.epoch_sets));
    rundir_state_release(&r);
    rundir_state_release(&s);
    assert_null(s.epoch_sets);

    FILE *f = fopen(path, "w");
    fputs("{\"format\": \"something-else\"}", f);
    fclose(f);
    assert_int_equal(rundir_state_load(path, &r, err, sizeof err), -1);
}

/* A state file as the trainer has written it since the format's version 1
 * (the fields in their order of then) still loads. */
static void test_rundir_state_earlier_file(void **state)
{
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/earlier.json", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\n \"format\": \"sslcpu-trainer-state\",\n \"version\": 1,\n \"method\": \"supervised\",\n"
          " \"arch\": \"resnet-mini\",\n \"width\": 8,\n \"batch\": 32,\n \"optimizer\": \"sgd\",\n"
          " \"lr\": 0.0125,\n \"weight_decay\": 0.00050000000000000001,\n \"momentum\": 0.90000000000000002,\n"
          " \"tau\": 0.5,\n \"warmup_steps\": 1,\n \"total_steps\": 20,\n \"epochs\": 0.0,\n"
          " \"dataset_size\": \"500\",\n \"step\": 20,\n \"images_seen\": \"640\",\n \"seed\": \"5\",\n"
          " \"rng\": \"9e3779b97f4a7c1a\",\n \"train_seconds\": 4.25\n}\n", f);
    fclose(f);
    train_state_t r;
    assert_int_equal(rundir_state_load(path, &r, err, sizeof err), 0);
    const trainer_config_t *c = &r.config;
    assert_true(c->method == TRAIN_SUPERVISED && c->optimizer == NN_OPT_SGD && c->width == 8 && c->batch == 32);
    assert_string_equal(c->arch, "resnet-mini");
    assert_true(c->lr == 0.0125 && c->weight_decay == 5e-4 && c->momentum == 0.9 && c->tau == 0.5);
    assert_true(c->warmup_steps == 1 && c->total_steps == 20 && c->epochs == 0 && c->steps == 20);
    assert_true(c->dataset_size == 500 && c->seed == 5);
    assert_true(r.step == 20 && r.images_seen == 640 && r.rng == 0x9e3779b97f4a7c1aull && r.train_seconds == 4.25);
    assert_null(r.epoch_sets);
    assert_int_equal(c->decoupled, 0);   /* no "loss": NT-Xent, the only loss of then */
    assert_true(c->ema == 0.0);          /* no "ema": no average */

    /* an unknown method is refused with the file's name */
    f = fopen(path, "w");
    fputs("{\"format\": \"sslcpu-trainer-state\", \"version\": 1, \"method\": \"byol\", \"arch\": \"conv4\","
          " \"width\": 8, \"batch\": 32, \"optimizer\": \"sgd\", \"lr\": 0.1, \"weight_decay\": 0.0,"
          " \"momentum\": 0.9, \"tau\": 0.5, \"warmup_steps\": 0, \"total_steps\": 0, \"epochs\": 1.0,"
          " \"dataset_size\": \"0\", \"step\": 0, \"images_seen\": \"0\", \"seed\": \"1\", \"rng\": \"0\","
          " \"train_seconds\": 0.0}", f);
    fclose(f);
    assert_int_equal(rundir_state_load(path, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "earlier.json"));
    assert_non_null(strstr(err, "byol"));
}

/* Resuming takes the run's settings; the command line may repeat them,
 * extend the run and give the dataset size, not change the network. */
static void test_config_resume(void **state)
{
    (void)state;
    trainer_options_t o;
    trainer_config_t saved, c;
    char err[512];
    assert_int_equal(PARSE(&o, err, "--method", "rotnet", "--batch", "64", "--steps", "100", "--warmup", "7",
                           "--seed", "9"), 0);
    trainer_config_from_options(&saved, &o);
    schedule_plan(&saved);
    assert_true(saved.total_steps == 100 && saved.warmup_steps == 7);

    /* nothing given again: the run's settings, its length and warm-up */
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--lr", "0.5", "--warmup", "3"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &saved, &o, err, sizeof err), 0);
    schedule_plan(&c);
    assert_true(c.method == TRAIN_ROTNET && c.batch == 64 && c.lr == saved.lr && c.seed == 9);
    assert_true(c.total_steps == 100 && c.steps == 100 && c.warmup_steps == 7);

    /* a new length and the dataset size given: a new total, the warm-up kept */
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--epochs", "2", "--dataset-size", "640"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &saved, &o, err, sizeof err), 0);
    schedule_plan(&c);
    assert_true(c.total_steps == 20 && c.dataset_size == 640 && c.warmup_steps == 7);

    /* a different batch or method is refused and named */
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--batch", "32"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &saved, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "--batch"));
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--method", "simclr"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &saved, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "--method"));
    /* nor the loss (a run's loss is what its checkpoints learnt by) */
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--loss", "dcl"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &saved, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "--loss"));
    assert_int_equal(PARSE(&o, err, "--loss", "infonce"), -1);
    assert_non_null(strstr(err, "infonce"));

    /* a time budget is recorded and goes on being planned after a resume;
     * --minutes given again sets a new budget for the run's whole time */
    assert_int_equal(PARSE(&o, err, "--minutes", "30"), 0);
    trainer_config_from_options(&saved, &o);
    schedule_plan(&saved);
    schedule_budget(&saved, 10, 5.0, 2.0);
    json_t *j = json_object();
    assert_int_equal(trainer_config_to_json(&saved, j), 0);
    trainer_config_t back;
    assert_int_equal(trainer_config_from_json(&back, j, err, sizeof err), 0);
    assert_true(back.minutes == 30 && back.steps == 0 && back.epochs == 0 && back.total_steps == saved.total_steps);
    assert_int_equal(PARSE(&o, err, "--resume", "latest"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &back, &o, err, sizeof err), 0);
    schedule_plan(&c);
    assert_true(c.minutes == 30 && c.total_steps == saved.total_steps && c.warmup_steps == saved.warmup_steps);
    assert_int_equal(PARSE(&o, err, "--resume", "latest", "--minutes", "45"), 0);
    trainer_config_from_options(&c, &o);
    assert_int_equal(trainer_config_resume(&c, &back, &o, err, sizeof err), 0);
    schedule_plan(&c);
    assert_true(c.minutes == 45 && c.total_steps == 0 && c.warmup_steps == saved.warmup_steps);
    /* a state written before time budgets has none */
    json_object_del(j, "minutes");
    assert_int_equal(trainer_config_from_json(&back, j, err, sizeof err), 0);
    assert_true(back.minutes == 0 && back.steps == back.total_steps);
    json_decref(j);
}

/* The total from --steps or --epochs x dataset size, the warm-up in steps,
 * epochs or the default share, and the rate rising over the warm-up. */
static void test_schedule(void **state)
{
    (void)state;
    trainer_options_t o;
    trainer_config_t c;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--batch", "100", "--epochs", "2", "--dataset-size", "1000", "--warmup",
                           "1ep"), 0);
    trainer_config_from_options(&c, &o);
    schedule_plan(&c);
    assert_true(c.total_steps == 20 && c.warmup_steps == 10);
    assert_true(schedule_lr(&c, 0) < schedule_lr(&c, 5) && schedule_lr(&c, 5) < schedule_lr(&c, 10));
    assert_true(fabsf(schedule_lr(&c, 10) - (float)c.lr) < 1e-6f);

    assert_int_equal(PARSE(&o, err, "--batch", "100", "--steps", "200"), 0);
    trainer_config_from_options(&c, &o);
    schedule_plan(&c);
    assert_true(c.total_steps == 200 && c.warmup_steps == 10);   /* 5% */

    /* dataset size unknown: no total yet, and no default warm-up */
    assert_int_equal(PARSE(&o, err, "--batch", "100", "--epochs", "3"), 0);
    trainer_config_from_options(&c, &o);
    schedule_plan(&c);
    assert_true(c.total_steps == 0 && c.warmup_steps == 0);
    c.dataset_size = 1000;
    assert_int_equal(schedule_total_steps(&c), 30);

    /* a time budget: no plan and lr 0 before the first step; then the total
     * that the time left holds at the rate so far, re-planned at each step,
     * with a warm-up of 5% of it that only grows, until it is over */
    assert_int_equal(PARSE(&o, err, "--batch", "100", "--minutes", "1", "--dataset-size", "1000"), 0);
    trainer_config_from_options(&c, &o);
    schedule_plan(&c);
    assert_true(c.total_steps == 0 && c.warmup_steps < 0 && c.warmup_auto && c.epochs == 0);
    assert_true(schedule_lr(&c, 0) == 0.0f);
    schedule_budget(&c, 1, 10.0, 0.1);   /* 59.9 s left at 10 steps/s */
    assert_true(c.total_steps == 600 && c.warmup_steps == 30);
    assert_true(schedule_lr(&c, 1) > 0.0f && schedule_lr(&c, 1) < (float)c.lr);
    assert_int_equal(schedule_total_steps(&c), 600);   /* epochs and dataset size do not count */
    schedule_budget(&c, 20, 12.0, 2.0);
    assert_true(c.total_steps == 20 + 696 && c.warmup_steps == 36);
    schedule_budget(&c, 21, 8.0, 2.5);   /* slower: fewer steps, the warm-up kept */
    assert_true(c.total_steps == 21 + 460 && c.warmup_steps == 36);
    schedule_budget(&c, 40, 20.0, 4.0);   /* past the warm-up: it is fixed */
    assert_true(c.total_steps == 40 + 1120 && c.warmup_steps == 36);
    schedule_budget(&c, 700, 11.0, 60.2);   /* the time is up: this step is the last */
    assert_true(c.total_steps == 700 && schedule_lr(&c, 700) == 0.0f);
    assert_true(schedule_lr(&c, 699) < 1e-4f * (float)c.lr);

    /* a warm-up given in steps stays as given */
    assert_int_equal(PARSE(&o, err, "--batch", "100", "--minutes", "2", "--warmup", "5"), 0);
    trainer_config_from_options(&c, &o);
    schedule_plan(&c);
    schedule_budget(&c, 1, 10.0, 0.1);
    assert_true(c.total_steps == 1200 && c.warmup_steps == 5 && !c.warmup_auto);
}

static void test_rundir_latest_and_prune(void **state)
{
    (void)state;
    char dir[512], path[600], err[512], real[1024];
    snprintf(dir, sizeof dir, "%s/run/sub", tmpdir);
    assert_int_equal(rundir_make(dir, err, sizeof err), 0);
    assert_int_equal(rundir_resolve(dir, "latest", real, sizeof real, err, sizeof err), -1);
    assert_non_null(strstr(err, "no checkpoint"));
    const long steps[] = { 5, 10, 100, 1000, 100000000 };   /* the last one has nine digits */
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char st[700];
        rundir_ckpt_path(path, sizeof path, dir, steps[i]);
        touch(path);
        rundir_state_path(st, sizeof st, path);
        touch(st);
    }
    char other[600];
    snprintf(other, sizeof other, "%s/notes-ckpt.txt", dir);
    touch(other);
    rundir_ckpt_path(path, sizeof path, dir, 100000000);
    assert_int_equal(rundir_point_latest(dir, path, err, sizeof err), 0);
    /* resumed from step 10 and now at 100: 1000 and 100000000 are left alone */
    rundir_prune(dir, 1, 100);
    rundir_ckpt_path(path, sizeof path, dir, 10);
    assert_int_equal(access(path, F_OK), -1);
    rundir_ckpt_path(path, sizeof path, dir, 1000);
    assert_int_equal(access(path, F_OK), 0);
    rundir_prune(dir, 2, 100000000);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char st[700];
        rundir_ckpt_path(path, sizeof path, dir, steps[i]);
        rundir_state_path(st, sizeof st, path);
        int kept = steps[i] >= 1000;
        assert_int_equal(access(path, F_OK) == 0, kept);
        assert_int_equal(access(st, F_OK) == 0, kept);
    }
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(rundir_resolve(dir, "latest", real, sizeof real, err, sizeof err), 0);
    assert_non_null(strstr(real, "ckpt-100000000.safetensors"));
}

/* Keeps the records of epoch 0 only, as a checkpoint whose state counts
 * only that one as written would. */
static int keep_epoch0(uint32_t epoch, void *arg)
{
    (void)arg;
    return epoch == 0;
}

static void read_text(const char *path, char *text, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, cap - 1, f);
    text[n] = '\0';
    fclose(f);
}

static void test_rundir_metrics_after_crash(void **state)
{
    (void)state;
    char dir[512], path[600], err[512], text[1024];
    snprintf(dir, sizeof dir, "%s/metrics", tmpdir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    assert_int_equal(rundir_make(dir, err, sizeof err), 0);
    for (int with_state = 0; with_state < 2; with_state++) {
        FILE *f = rundir_metrics_open(dir, -1, NULL, NULL, err, sizeof err);
        assert_non_null(f);
        for (int i = 1; i <= 5; i++) {
            fprintf(f, "{\"step\":%d,\"loss\":1.0}\n", i);
            if (i == 2 || i == 3)   /* epoch records written after steps 2 and 3 */
                fprintf(f, "{\"step\":%d,\"record\":\"epoch\",\"epoch\":%d}\n", i, i - 2);
        }
        fputs("{\"step\":6,\"lo", f);   /* torn by a kill */
        fclose(f);
        /* resumed at step 3: with the checkpoint's state, the record of epoch 1
         * (written after the checkpoint of step 3) goes, to be written again */
        f = rundir_metrics_open(dir, 3, with_state ? keep_epoch0 : NULL, NULL, err, sizeof err);
        assert_non_null(f);
        fputs("{\"step\":4,\"loss\":0.5}\n", f);
        fclose(f);
        read_text(path, text, sizeof text);
        if (with_state)
            assert_string_equal(text, "{\"step\":1,\"loss\":1.0}\n{\"step\":2,\"loss\":1.0}\n"
                                      "{\"step\":2,\"record\":\"epoch\",\"epoch\":0}\n"
                                      "{\"step\":3,\"loss\":1.0}\n{\"step\":4,\"loss\":0.5}\n");
        else
            assert_string_equal(text, "{\"step\":1,\"loss\":1.0}\n{\"step\":2,\"loss\":1.0}\n"
                                      "{\"step\":2,\"record\":\"epoch\",\"epoch\":0}\n"
                                      "{\"step\":3,\"loss\":1.0}\n"
                                      "{\"step\":3,\"record\":\"epoch\",\"epoch\":1}\n"
                                      "{\"step\":4,\"loss\":0.5}\n");
    }
}

/* ---- per-epoch sets of trained samples ---- */

static void test_epochs_dedup_and_records(void **state)
{
    (void)state;
    epochs_t e;
    epochs_record_t r;
    int known;
    epochs_init(&e);
    assert_int_equal(epochs_current(&e, &known), 0);
    assert_int_equal(known, 0);
    /* epoch 0 of 5 samples, one sent twice; epoch 1 starts meanwhile */
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(epochs_admit(&e, 0, i * 100000), EPOCHS_NEW);
    assert_int_equal(epochs_admit(&e, 0, 300000), EPOCHS_QUEUED);   /* in a batch, not trained yet */
    assert_int_equal(epochs_admit(&e, 1, 300000), EPOCHS_NEW);
    for (uint64_t i = 0; i < 4; i++)
        epochs_trained(&e, 0, i * 100000);
    assert_int_equal(epochs_admit(&e, 0, 300000), EPOCHS_DUPLICATE);  /* trained now */
    epochs_end(&e, 0, 5);
    assert_int_equal(epochs_next_record(&e, 0, &r), 0);   /* one not trained yet */
    assert_int_equal(epochs_current(&e, &known), 0);
    epochs_trained(&e, 0, 400000);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.epoch == 0 && r.distinct == 5 && r.duplicates == 2 && r.expected == 5 && r.complete);
    assert_int_equal(epochs_next_record(&e, 0, &r), 0);
    assert_int_equal(epochs_current(&e, &known), 1);
    assert_int_equal(known, 1);
    /* a late copy of a reported epoch is still recognised */
    assert_int_equal(epochs_admit(&e, 0, 0), EPOCHS_DUPLICATE);
    /* epochs 2..5 push the older ones out; epoch 1 is closed before it ended */
    for (uint32_t ep = 2; ep <= 5; ep++)
        assert_int_equal(epochs_admit(&e, ep, 7), EPOCHS_NEW);
    assert_int_equal(epochs_admit(&e, 0, 1), EPOCHS_CLOSED);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.epoch == 1 && r.distinct == 0 && r.expected == 0 && !r.complete);
    assert_int_equal(epochs_admit(&e, 1, 5), EPOCHS_CLOSED);
    /* at the end, every open epoch gets its record */
    int n = 0;
    while (epochs_next_record(&e, 1, &r))
        n++;
    assert_int_equal(n, 4);
    epochs_release(&e);
}

/* Skipped samples count towards an epoch's completion, not as trained. */
static void test_epochs_skipped(void **state)
{
    (void)state;
    epochs_t e;
    epochs_record_t r;
    int known;
    epochs_init(&e);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(epochs_admit(&e, 2, i), EPOCHS_NEW);
    epochs_end(&e, 2, 4);
    epochs_skipped(&e, 2, 1);
    epochs_trained(&e, 2, 0);
    epochs_trained(&e, 2, 2);
    assert_int_equal(epochs_next_record(&e, 0, &r), 0);
    assert_int_equal(epochs_current(&e, &known), 2);
    assert_int_equal(epochs_admit(&e, 2, 1), EPOCHS_DUPLICATE);   /* skipped is done too */
    assert_int_equal(epochs_admit(&e, 2, 3), EPOCHS_QUEUED);
    epochs_trained(&e, 2, 3);
    assert_int_equal(epochs_current(&e, &known), 3);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.epoch == 2 && r.distinct == 3 && r.skipped == 1 && r.expected == 4 && r.complete);
    epochs_release(&e);
}

/* Data-parallel: the samples another rank trained or skipped count here
 * too; a copy of one arriving here is a duplicate; the epoch completes with
 * every rank's samples; a sample done twice is counted once. */
static void test_epochs_done_elsewhere(void **state)
{
    (void)state;
    epochs_t e;
    epochs_record_t r;
    epochs_init(&e);
    assert_int_equal(epochs_admit(&e, 0, 0), EPOCHS_NEW);   /* ours */
    epochs_trained(&e, 0, 0);
    epochs_done_elsewhere(&e, 0, 1, 0);                     /* the other rank's */
    epochs_done_elsewhere(&e, 0, 2, 1);                     /* skipped there */
    epochs_done_elsewhere(&e, 0, 1, 0);                     /* told twice: once */
    epochs_done_elsewhere(&e, 0, 0, 0);                     /* ours, told back: once */
    assert_int_equal(epochs_admit(&e, 0, 1), EPOCHS_DUPLICATE);
    assert_int_equal(epochs_admit(&e, 0, 2), EPOCHS_DUPLICATE);
    epochs_end(&e, 0, 4);
    assert_int_equal(epochs_next_record(&e, 0, &r), 0);     /* 3 of 4 */
    epochs_done_elsewhere(&e, 0, 3, 0);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.distinct == 3 && r.skipped == 1 && r.duplicates == 2 && r.complete);
    epochs_done_elsewhere(&e, 0, 3, 0);                     /* reported: nothing changes */
    assert_int_equal(epochs_next_record(&e, 1, &r), 0);
    epochs_release(&e);

    /* a copy admitted here that another rank trained: done, and taken out
     * of its batch as a duplicate */
    epochs_init(&e);
    assert_int_equal(epochs_admit(&e, 4, 6), EPOCHS_NEW);
    assert_false(epochs_is_done(&e, 4, 6));
    epochs_done_elsewhere(&e, 4, 6, 0);
    assert_true(epochs_is_done(&e, 4, 6));
    assert_false(epochs_is_done(&e, 4, 7) || epochs_is_done(&e, 5, 6));
    epochs_copy_dropped(&e, 4, 6, 1);
    assert_int_equal(epochs_admit(&e, 4, 6), EPOCHS_DUPLICATE);   /* done: stays so */
    epochs_end(&e, 4, 1);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.distinct == 1 && r.duplicates == 2 && r.complete);
    assert_int_equal(e.duplicates, 2);
    epochs_release(&e);

    /* copies taken out because a lower rank holds the sample: a later copy
     * is dropped, unless the holder gave its batch back (readmit) */
    epochs_init(&e);
    assert_int_equal(epochs_admit(&e, 5, 2), EPOCHS_NEW);
    assert_int_equal(epochs_admit(&e, 5, 3), EPOCHS_NEW);
    epochs_copy_dropped(&e, 5, 2, 0);
    epochs_copy_dropped(&e, 5, 3, 1);
    assert_int_equal(epochs_admit(&e, 5, 2), EPOCHS_QUEUED);
    assert_int_equal(epochs_admit(&e, 5, 3), EPOCHS_NEW);
    epochs_done_elsewhere(&e, 5, 2, 0);
    epochs_trained(&e, 5, 3);
    epochs_end(&e, 5, 2);
    assert_int_equal(epochs_next_record(&e, 0, &r), 1);
    assert_true(r.distinct == 2 && r.duplicates == 3 && r.complete);
    epochs_release(&e);
}

/* The Have of a set of epochs: the epoch training is in, then one bitset
 * per epoch up to the newest kept one. */
static void test_epochs_have(void **state)
{
    (void)state;
    epochs_t e;
    epochs_have_t h;
    epochs_init(&e);
    assert_int_equal(epochs_have(&e, &h), 0);   /* nothing known yet */
    /* epoch 3 of 10 samples: all admitted, 0..5 trained, 9 skipped; 6, 7, 8 wait in a batch */
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(epochs_admit(&e, 3, i), EPOCHS_NEW);
    for (uint64_t i = 0; i < 6; i++)
        epochs_trained(&e, 3, i);
    epochs_skipped(&e, 3, 9);
    epochs_end(&e, 3, 10);
    /* epoch 5 (nothing of 4 yet): sample 5000 trained */
    assert_int_equal(epochs_admit(&e, 5, 5000), EPOCHS_NEW);
    epochs_trained(&e, 5, 5000);
    assert_int_equal(epochs_have(&e, &h), 1);
    assert_int_equal(h.epoch, 3);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.bytes[0], 2);                 /* trailing zero bytes left out */
    assert_int_equal(h.done[0][0], 0x3f);            /* 0..5 */
    assert_int_equal(h.done[0][1], 0x02);            /* 9 */
    assert_null(h.done[1]);
    assert_int_equal(h.bytes[1], 0);
    assert_int_equal(h.bytes[2], 5000 / 8 + 1);
    assert_int_equal(h.done[2][5000 / 8], 1u << (5000 % 8));
    assert_int_equal(epochs_done_total(&e), 8);
    /* epoch 3 complete: the Have starts at 5, whose slot is the only one described */
    for (uint64_t i = 6; i < 9; i++)
        epochs_trained(&e, 3, i);
    assert_int_equal(epochs_have(&e, &h), 1);
    assert_true(h.epoch == 5 && h.n == 1 && h.bytes[0] == 5000 / 8 + 1);
    epochs_release(&e);
}

/* What a checkpoint keeps: done sets, counts, records written or pending;
 * samples admitted but not trained are taken again after a resume. */
static void test_epochs_json_round_trip(void **state)
{
    (void)state;
    epochs_t e, r;
    epochs_record_t rec;
    char err[256];
    int known;
    epochs_init(&e);
    /* epochs 0..4 in turn: 0 complete and reported, 1 closed to make room
     * (pending), 2..4 open; epoch 4 has one admitted but untrained sample */
    for (uint32_t ep = 0; ep <= 4; ep++) {
        for (uint64_t i = 0; i < 3; i++)
            assert_int_equal(epochs_admit(&e, ep, 10 * ep + i), EPOCHS_NEW);
        if (ep == 0) {
            for (uint64_t i = 0; i < 3; i++)
                epochs_trained(&e, 0, i);
            epochs_end(&e, 0, 3);
            assert_int_equal(epochs_next_record(&e, 0, &rec), 1);
        }
    }
    /* epoch 4 took the slot of epoch 0 (reported); epoch 5 closes epoch 1 (its record pending) */
    assert_int_equal(epochs_admit(&e, 5, 7), EPOCHS_NEW);
    epochs_trained(&e, 2, 20);
    epochs_trained(&e, 2, 21);
    epochs_trained(&e, 4, 40);
    epochs_trained(&e, 4, 41);
    epochs_skipped(&e, 5, 7);
    assert_int_equal(epochs_admit(&e, 4, 40), EPOCHS_DUPLICATE);
    json_t *j = epochs_to_json(&e);
    assert_non_null(j);
    epochs_init(&r);
    assert_int_equal(epochs_from_json(&r, j, err, sizeof err), 0);
    /* records: 0 written (closed after its record), 1 pending, 2..5 not yet, 9 never seen */
    assert_int_equal(epochs_record_out(&r, 0), 1);
    for (uint32_t ep = 1; ep <= 5; ep++)
        assert_int_equal(epochs_record_out(&r, ep), 0);
    assert_int_equal(epochs_record_out(&r, 9), 0);
    /* trained and skipped samples are held; 42 (admitted, untrained) is not */
    assert_int_equal(epochs_admit(&r, 4, 41), EPOCHS_DUPLICATE);
    assert_int_equal(epochs_admit(&r, 4, 42), EPOCHS_NEW);
    assert_int_equal(epochs_admit(&r, 5, 7), EPOCHS_DUPLICATE);
    assert_int_equal(epochs_admit(&r, 2, 22), EPOCHS_NEW);
    assert_int_equal(epochs_admit(&r, 0, 1), EPOCHS_CLOSED);   /* closed before the checkpoint */
    assert_int_equal(epochs_current(&r, &known), 2);
    epochs_trained(&r, 2, 22);
    epochs_end(&r, 2, 3);
    /* the records: epoch 1 (closed, pending), then 2 once complete, the rest at the end */
    assert_int_equal(epochs_next_record(&r, 0, &rec), 1);
    assert_true(rec.epoch == 1 && rec.distinct == 0 && !rec.complete);
    assert_int_equal(epochs_next_record(&r, 0, &rec), 1);
    assert_true(rec.epoch == 2 && rec.distinct == 3 && rec.expected == 3 && rec.complete);
    assert_int_equal(epochs_next_record(&r, 0, &rec), 0);
    assert_int_equal(epochs_next_record(&r, 1, &rec), 1);
    assert_true(rec.epoch == 3 && rec.distinct == 0 && rec.expected == 0);
    assert_int_equal(epochs_next_record(&r, 1, &rec), 1);
    assert_true(rec.epoch == 4 && rec.distinct == 2 && rec.duplicates == 2);
    assert_int_equal(epochs_next_record(&r, 1, &rec), 1);
    assert_true(rec.epoch == 5 && rec.distinct == 0 && rec.skipped == 1 && rec.duplicates == 1);
    assert_int_equal(epochs_next_record(&r, 1, &rec), 0);
    epochs_release(&r);

    /* damaged state is refused, and leaves nothing behind */
    json_t *slot = json_array_get(json_object_get(j, "slots"), 0);
    json_object_set_new(slot, "done", json_string("0g"));
    epochs_init(&r);
    assert_int_equal(epochs_from_json(&r, j, err, sizeof err), -1);
    assert_non_null(strstr(err, "not hex"));
    json_object_set_new(slot, "done", json_string("abc"));
    assert_int_equal(epochs_from_json(&r, j, err, sizeof err), -1);
    json_object_del(slot, "trained");
    assert_int_equal(epochs_from_json(&r, j, err, sizeof err), -1);
    assert_non_null(strstr(err, "trained"));
    assert_int_equal(epochs_current(&r, &known), 0);
    assert_int_equal(known, 0);
    json_decref(j);
    epochs_release(&e);
}

/* ---- model step ---- */

static void run_steps(train_method_t method, const char *head)
{
    char desc[NN_MAX_DESC], err[512];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "conv4", 4, head, 3, 16, 16, err, sizeof err), 0);
    static const uint32_t views[] = { [TRAIN_SIMCLR] = 2, [TRAIN_ROTNET] = 4, [TRAIN_SUPERVISED] = 1,
                                      [TRAIN_PRETEXT] = 2 };
    batch_shape_t s = { .method = method, .images = 4, .views = views[method],
                        .channels = 3, .height = 16, .width = 16, .classes = 4 };
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    model_t *m = model_new(desc, method, (int)batch_rows(&s), 4, &oc, 0.5f, err, sizeof err);
    assert_non_null(m);
    nn_net_init_params(m->net, 3);
    batch_t b;
    assert_int_equal(batch_alloc(&b, &s), 0);
    size_t n = batch_rows(&s) * batch_view_floats(&s);
    uint64_t r = 12345;
    for (size_t i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        b.x[i] = (float)(r >> 40) / (float)(1 << 24);
    }
    if (b.targets)
        for (uint32_t i = 0; i < batch_rows(&s); i++)
            b.targets[i] = (int32_t)(i % 4);
    float acc;
    float first = model_step(m, &b, 0.05f, &acc), last = first;
    for (int i = 0; i < 15; i++) {
        last = model_step(m, &b, 0.05f, &acc);
        if (!b.targets)
            assert_true(isnan(acc));
        else if (!(acc >= 0 && acc <= 1 && acc * (float)batch_rows(&s) == floorf(acc * (float)batch_rows(&s))))
            fail_msg("%s accuracy %f is not a share of %u rows", head, (double)acc, batch_rows(&s));
    }
    assert_true(isfinite(first) && isfinite(last));
    if (!(last < first))
        fail_msg("%s loss did not fall on a fixed batch: %f -> %f", head, (double)first, (double)last);
    if (b.targets && acc < 1.0f)   /* a fixed batch is learnt by heart */
        fail_msg("%s train accuracy %f on a fixed batch after 16 steps", head, (double)acc);

    /* the weights' moving average: decay 0.1 at the first update, then
     * min(0.9, 2/11), ...; swapping twice changes nothing */
    nn_arena *p = nn_net_params(m->net);
    assert_int_equal(model_ema_start(m, 0.9f), 0);
    float *before = malloc(p->size * sizeof *before), *avg = malloc(p->size * sizeof *avg);
    assert_true(before && avg);
    memcpy(before, p->base, p->size * sizeof *before);
    model_step(m, &b, 0.05f, NULL);
    for (size_t i = 0; i < p->size; i++)
        avg[i] = before[i] + 0.9f * (p->base[i] - before[i]);
    assert_memory_equal(m->ema, avg, p->size * sizeof *avg);
    memcpy(before, p->base, p->size * sizeof *before);
    model_ema_swap(m);
    assert_memory_equal(p->base, avg, p->size * sizeof *avg);
    model_ema_swap(m);
    assert_memory_equal(p->base, before, p->size * sizeof *before);
    model_step(m, &b, 0.05f, NULL);
    float d = 2.0f / 11.0f;
    for (size_t i = 0; i < p->size; i++)
        avg[i] += (1.0f - d) * (p->base[i] - avg[i]);
    for (size_t i = 0; i < p->size; i++)
        assert_true(fabsf(m->ema[i] - avg[i]) <= 1e-6f * (1.0f + fabsf(avg[i])));
    free(before);
    free(avg);
    batch_release(&b);
    model_destroy(&m);
    assert_null(m);
}

static void test_model_step_simclr(void **state)
{
    (void)state;
    run_steps(TRAIN_SIMCLR, "simclr");
}

static void test_model_step_rotnet(void **state)
{
    (void)state;
    run_steps(TRAIN_ROTNET, "rotation");
}

static void test_model_step_supervised(void **state)
{
    (void)state;
    run_steps(TRAIN_SUPERVISED, "classifier:4");
}

static void test_model_step_pretext(void **state)
{
    (void)state;
    run_steps(TRAIN_PRETEXT, "classifier:4");
}

static void test_model_refuses_small_head(void **state)
{
    (void)state;
    static const char small[] = "nn 1\ninput 3 8 8\nencoder\nconv out=4\nrelu\ngap\nhead\nlinear out=2\n";
    char err[512];
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    model_t *m = model_new(small, TRAIN_ROTNET, 8, 4, &oc, 0.5f, err, sizeof err);
    assert_null(m);
    assert_non_null(strstr(err, "rotnet needs 4"));
    m = model_new(small, TRAIN_SUPERVISED, 8, 10, &oc, 0.5f, err, sizeof err);
    assert_null(m);
    assert_non_null(strstr(err, "head classifier:10"));
    m = model_new(small, TRAIN_SUPERVISED, 8, 2, &oc, 0.5f, err, sizeof err);   /* 2 outputs, 2 classes */
    assert_non_null(m);
    model_destroy(&m);
    m = model_new(small, TRAIN_PRETEXT, 8, 8, &oc, 0.5f, err, sizeof err);
    assert_null(m);
    assert_non_null(strstr(err, "the recipe's targets have 8 classes"));
    m = model_new(small, TRAIN_SIMCLR, 8, 4, &oc, 0.5f, err, sizeof err);   /* any width suits NT-Xent */
    assert_non_null(m);
    model_destroy(&m);
}

int main(void)
{
    console_init("test_trainer");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_defaults),
        cmocka_unit_test(test_options_lr_rule),
        cmocka_unit_test(test_options_values),
        cmocka_unit_test(test_options_errors),
        cmocka_unit_test(test_options_supervised),
        cmocka_unit_test(test_batch_simclr_layout),
        cmocka_unit_test(test_batch_rotnet_u8),
        cmocka_unit_test(test_batch_remove),
        cmocka_unit_test(test_batch_mark_copies),
        cmocka_unit_test(test_batch_refusals),
        cmocka_unit_test(test_batch_pretext),
        cmocka_unit_test(test_batch_supervised_layout),
        cmocka_unit_test(test_batch_supervised_labels),
        cmocka_unit_test(test_batch_from_wire),
        cmocka_unit_test(test_feed_assembles_and_drops),
        cmocka_unit_test(test_feed_joins_partial),
        cmocka_unit_test(test_feed_skips_bad_labels),
        cmocka_unit_test(test_feed_restored),
        cmocka_unit_test(test_rundir_state_round_trip),
        cmocka_unit_test(test_rundir_state_earlier_file),
        cmocka_unit_test(test_config_resume),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_rundir_latest_and_prune),
        cmocka_unit_test(test_rundir_metrics_after_crash),
        cmocka_unit_test(test_epochs_dedup_and_records),
        cmocka_unit_test(test_epochs_skipped),
        cmocka_unit_test(test_epochs_done_elsewhere),
        cmocka_unit_test(test_epochs_have),
        cmocka_unit_test(test_epochs_json_round_trip),
        cmocka_unit_test(test_model_step_simclr),
        cmocka_unit_test(test_model_step_rotnet),
        cmocka_unit_test(test_model_step_supervised),
        cmocka_unit_test(test_model_step_pretext),
        cmocka_unit_test(test_model_refuses_small_head),
    };
    int failed = cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
    transport_shutdown();
    return failed ? 1 : 0;
}

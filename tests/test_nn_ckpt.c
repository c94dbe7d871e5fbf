/* Unit tests of nn/ckpt and nn/safetensors: round trip with optimizer state
 * and exact resumption; refusal of truncated, corrupt and mismatched files
 * with a message that names the problem. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/ckpt.h"
#include "nn/loss.h"
#include "nn/safetensors.h"

static char dir[] = "/tmp/test_nn_ckpt.XXXXXX";
static char path[256], bad[256];

static nn_net *make_net(int width)
{
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "resnet-mini", width, "simclr", 3, 16, 16, err, sizeof err), 0);
    nn_net *net = nn_net_new(desc, 4, err, sizeof err);
    assert_non_null(net);
    return net;
}

/* One SimCLR training step on fixed pseudo-random images. */
static void train_step(nn_net *net, nn_optim *opt, unsigned seed)
{
    float x[4 * 3 * 16 * 16];
    srand(seed);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    int d = nn_net_out_dim(net);
    float *cache = calloc(nn_ntxent_cache_size(4, d), sizeof(float)), *dz = calloc((size_t)4 * d, sizeof(float));
    const float *z = nn_net_forward(net, x, 4, 1);
    nn_ntxent_forward(cache, z, 4, d, 0.5f);
    nn_ntxent_backward(dz, cache, 4, d, 0.5f, 1.0f);
    nn_net_zero_grad(net);
    nn_net_backward(net, dz);
    nn_optim_step(opt, nn_net_params(net), nn_net_grads(net), 0.1f);
    free(cache);
    free(dz);
}

static nn_optim *make_opt(nn_net *net, nn_opt_kind kind)
{
    nn_optim_config c;
    nn_optim_defaults(&c, kind);
    c.weight_decay = 1e-4f;
    nn_optim *o = nn_optim_new(&c, nn_net_params(net), NULL, 0);
    assert_non_null(o);
    return o;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    unlink(bad);
    rmdir(dir);
    return 0;
}

static void assert_arenas_equal(const nn_arena *a, const nn_arena *b)
{
    assert_int_equal(a->size, b->size);
    assert_memory_equal(a->base, b->base, a->size * sizeof(float));
}

static void test_round_trip_and_resume(void **state)
{
    (void)state;
    char err[512];
    nn_net *a = make_net(2);
    nn_optim *oa = make_opt(a, NN_OPT_SGD);
    train_step(a, oa, 1);
    train_step(a, oa, 2);
    assert_int_equal(nn_ckpt_save(path, a, oa, "simclr", 2, 0, err, sizeof err), 0);
    struct stat st;
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(stat(tmp, &st), -1);                /* no temporary left */

    nn_net *b = make_net(2);
    nn_optim *ob = make_opt(b, NN_OPT_SGD);
    nn_ckpt_meta meta;
    if (nn_ckpt_load(path, b, ob, &meta, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(meta.method, "simclr");
    assert_int_equal(meta.step, 2);
    assert_int_equal(meta.epoch, 0);
    assert_true(meta.has_optimizer);
    assert_string_equal(meta.desc, nn_net_desc(a));
    nn_ckpt_meta_clear(&meta);
    assert_arenas_equal(nn_net_params(a), nn_net_params(b));
    assert_arenas_equal(nn_optim_state(oa), nn_optim_state(ob));
    assert_int_equal(nn_optim_steps(ob), 2);
    /* resuming gives exactly the same next step */
    train_step(a, oa, 3);
    train_step(b, ob, 3);
    assert_arenas_equal(nn_net_params(a), nn_net_params(b));

    /* the evaluator's path: rebuild from the file alone */
    nn_net *c = nn_ckpt_open(path, 2, NULL, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(nn_net_params(c)->n, nn_net_params(b)->n);
    nn_net_destroy(&c);

    /* the file is a plain safetensors file with the state_dict names */
    nn_st_file f;
    assert_int_equal(nn_st_read(&f, path, err, sizeof err), 0);
    assert_non_null(nn_st_find(&f, "encoder.layers.0.weight"));
    assert_non_null(nn_st_find(&f, "head.layers.1.running_var"));
    assert_non_null(nn_st_find(&f, "optimizer.encoder.layers.0.weight.momentum_buffer"));
    assert_string_equal(nn_st_meta(&f, "format"), "pt");
    assert_non_null(nn_st_meta(&f, "checksum"));
    nn_st_close(&f);

    /* saved without an optimizer: loads into a net, refused for resuming */
    assert_int_equal(nn_ckpt_save(path, a, NULL, "simclr", 3, 1, err, sizeof err), 0);
    assert_int_equal(nn_ckpt_load(path, b, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(nn_ckpt_load(path, b, ob, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no optimizer state"));

    nn_optim_destroy(&oa);
    nn_optim_destroy(&ob);
    nn_net_destroy(&a);
    nn_net_destroy(&b);
}

static unsigned char *slurp(const char *p, size_t *n)
{
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    unsigned char *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void spit(const char *p, const unsigned char *b, size_t n)
{
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

/* Loading `bad` into net (and opt) must fail with `fragment` in the message
 * and leave the parameters as they were. */
static void expect_refused(nn_net *net, nn_optim *opt, const char *fragment)
{
    char err[512] = "";
    nn_arena *p = nn_net_params(net);
    float *before = malloc(p->size * sizeof(float));
    memcpy(before, p->base, p->size * sizeof(float));
    int rc = nn_ckpt_load(bad, net, opt, NULL, err, sizeof err);
    if (rc == 0 || !strstr(err, fragment))
        fail_msg("expected refusal with '%s', got rc %d: '%s'", fragment, rc, err);
    assert_memory_equal(before, p->base, p->size * sizeof(float));
    free(before);
}

static void test_refuses_bad_files(void **state)
{
    (void)state;
    char err[512];
    nn_net *net = make_net(2);
    nn_optim *opt = make_opt(net, NN_OPT_SGD);
    train_step(net, opt, 1);
    assert_int_equal(nn_ckpt_save(path, net, opt, "simclr", 1, 0, err, sizeof err), 0);
    size_t n;
    unsigned char *good = slurp(path, &n), *b = malloc(n + 16);
    uint64_t hlen;
    memcpy(&hlen, good, 8);
    nn_net *fresh = make_net(2);

    spit(bad, good, n - 10);
    expect_refused(fresh, NULL, "truncated");
    spit(bad, good, 100);
    expect_refused(fresh, NULL, "truncated or not a safetensors file");
    spit(bad, good, 5);
    expect_refused(fresh, NULL, "too short");
    memcpy(b, good, n);
    memcpy(b + n, "garbage!", 8);
    spit(bad, b, n + 8);
    expect_refused(fresh, NULL, "trailing bytes");

    memcpy(b, good, n);
    b[n - 3] ^= 0x40;                                    /* one bit of the data */
    spit(bad, b, n);
    expect_refused(fresh, NULL, "checksum mismatch");

    memcpy(b, good, n);
    b[8] = '[';                                          /* header JSON broken */
    spit(bad, b, n);
    expect_refused(fresh, NULL, "header is not a JSON object");

    memcpy(b, good, n);
    char *f32 = memmem(b + 8, (size_t)hlen, "\"F32\"", 5);
    assert_non_null(f32);
    memcpy(f32, "\"F16\"", 5);
    spit(bad, b, n);
    expect_refused(fresh, NULL, "only F32 is supported");

    spit(bad, (const unsigned char *)"not a checkpoint at all", 23);
    expect_refused(fresh, NULL, "does not fit");
    unlink(bad);
    expect_refused(fresh, NULL, "cannot open");

    /* a different network */
    nn_net *wide = make_net(4);
    assert_int_equal(nn_ckpt_save(bad, wide, NULL, "simclr", 1, 0, err, sizeof err), 0);
    expect_refused(fresh, NULL, "description differs");
    expect_refused(fresh, NULL, "line 2: file has '# preset resnet-mini width 4 head simclr'");
    nn_net_destroy(&wide);

    /* another optimizer */
    spit(bad, good, n);
    nn_optim *adam = make_opt(fresh, NN_OPT_ADAMW);
    expect_refused(fresh, adam, "optimizer state is for sgd, this run uses adamw");
    nn_optim_destroy(&adam);

    /* a plain safetensors file, not ours */
    nn_arena *p = nn_net_params(net);
    nn_st_item it = { p->t[0].name, p->t[0].ndim, p->t[0].shape, p->t[0].data };
    assert_int_equal(nn_st_write(bad, &it, 1, NULL, NULL, 0, NULL, err, sizeof err), 0);
    expect_refused(fresh, NULL, "not an nn checkpoint");

    /* right metadata, wrong shape */
    int one[1] = { 1 };
    const char *keys[] = { "format", "nn_format", "nn_version", "nn_desc", "method", "step", "epoch" };
    const char *vals[] = { "pt", NN_CKPT_FORMAT, "1", nn_net_desc(net), "simclr", "1", "0" };
    nn_st_item items[64];
    int ni = 0;
    for (int i = 0; i < p->n && ni < 64; i++, ni++) {
        items[ni] = (nn_st_item){ p->t[i].name, p->t[i].ndim, p->t[i].shape, p->t[i].data };
        if (i == 1)
            items[ni].ndim = 1, items[ni].shape = one;
    }
    assert_int_equal(nn_st_write(bad, items, ni, keys, vals, 7, "checksum", err, sizeof err), 0);
    expect_refused(fresh, NULL, "tensor 'encoder.layers.1.weight' has shape (1) in the file, (2) in the network");
    /* a missing tensor */
    assert_int_equal(nn_st_write(bad, items, 1, keys, vals, 7, "checksum", err, sizeof err), 0);
    expect_refused(fresh, NULL, "missing");
    /* a newer version */
    vals[2] = "2";
    assert_int_equal(nn_st_write(bad, items, 1, keys, vals, 7, "checksum", err, sizeof err), 0);
    expect_refused(fresh, NULL, "checkpoint version 2, this build reads version 1");

    /* writing into a folder that does not exist fails and leaves nothing */
    assert_int_equal(nn_ckpt_save("/nonexistent-dir/x.safetensors", net, NULL, "simclr", 0, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot create"));

    free(good);
    free(b);
    nn_optim_destroy(&opt);
    nn_net_destroy(&net);
    nn_net_destroy(&fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_resume),
        cmocka_unit_test(test_refuses_bad_files),
    };
    return cmocka_run_group_tests_name("nn checkpoints", tests, setup, teardown);
}

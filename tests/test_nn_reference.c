/* Compares the C network with PyTorch: tests/data/nn/reference.safetensors
 * (written by tests/nn_reference.py) holds a small mini-ResNet's weights,
 * inputs, and what torch computed in float64. Every tensor must match:
 * relative error (L2 norm of the difference over L2 norm of the reference)
 * at most 1e-4 forward and 1e-3 for gradients. */
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
#include "nn/safetensors.h"

#define FWD_RTOL  1e-4
#define GRAD_RTOL 1e-3
#define REF_PATH  "tests/data/nn/reference.safetensors"

static nn_st_file ref;
static int failures;

static const char *ref_path(void)
{
    const char *p = getenv("NN_REFERENCE");
    return p ? p : REF_PATH;
}

static float *ref_tensor(const char *name, size_t *numel)
{
    const nn_st_entry *e = nn_st_find(&ref, name);
    if (!e) {
        print_error("reference tensor '%s' missing from %s\n", name, ref_path());
        fail();
    }
    float *buf = malloc(e->numel * sizeof *buf);
    nn_st_copy(&ref, e, buf);
    if (numel)
        *numel = e->numel;
    return buf;
}

/* Prints one line per tensor; counts a mismatch rather than stopping, so one
 * run shows every tensor that is off. */
static void compare(const char *what, const float *got, const char *ref_name, double rtol)
{
    size_t n;
    float *want = ref_tensor(ref_name, &n);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    double rel = sqrt(num) / (sqrt(den) + 1e-30);
    int ok = rel <= rtol && isfinite(rel);
    printf("%s %-48s rel err %.2e (limit %.0e)\n", ok ? "ok  " : "FAIL", what, rel, rtol);
    failures += !ok;
    free(want);
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    if (nn_st_read(&ref, ref_path(), err, sizeof err)) {
        fprintf(stderr, "%s\nHINT: run from the repository root, or set NN_REFERENCE; "
                "regenerate with /usr/bin/python3 tests/nn_reference.py\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nn_st_close(&ref);
    return 0;
}

/* Copies reference tensors "<prefix><param name>" into every parameter whose
 * name starts with `only` (all when NULL). */
static void load_params(nn_net *net, const char *prefix, const char *only)
{
    nn_arena *p = nn_net_params(net);
    for (int i = 0; i < p->n; i++) {
        if (only && strncmp(p->t[i].name, only, strlen(only)) != 0)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, p->t[i].name);
        const nn_st_entry *e = nn_st_find(&ref, name);
        if (!e || e->numel != p->t[i].numel) {
            print_error("reference has no tensor '%s' of %zu values\n", name, p->t[i].numel);
            fail();
        }
        nn_st_copy(&ref, e, p->t[i].data);
    }
}

static nn_net *build(const char *meta_key, int batch)
{
    char err[512];
    const char *desc = nn_st_meta(&ref, meta_key);
    assert_non_null(desc);
    nn_net *net = nn_net_new(desc, batch, err, sizeof err);
    if (!net) {
        print_error("%s\n", err);
        fail();
    }
    return net;
}

static void test_presets_match_script(void **state)
{
    (void)state;
    char buf[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(buf, sizeof buf, "resnet-mini", 2, "simclr", 3, 16, 16, err, sizeof err), 0);
    assert_string_equal(buf, nn_st_meta(&ref, "desc_simclr"));
    assert_int_equal(nn_preset_desc(buf, sizeof buf, "resnet-mini", 2, "rotation", 3, 16, 16, err, sizeof err), 0);
    assert_string_equal(buf, nn_st_meta(&ref, "desc_rotation"));
}

static void test_simclr_matches_torch(void **state)
{
    (void)state;
    size_t nx;
    float *x = ref_tensor("input", &nx);
    float tau = (float)atof(nn_st_meta(&ref, "tau"));
    int n = (int)(nx / (3 * 16 * 16));
    nn_net *net = build("desc_simclr", n);
    load_params(net, "param.", NULL);
    failures = 0;

    nn_net_forward(net, x, n, 0);
    compare("eval features", nn_net_features(net), "eval.features", FWD_RTOL);
    compare("eval projection", nn_net_forward(net, x, n, 0), "eval.proj", FWD_RTOL);

    const float *z = nn_net_forward(net, x, n, 1);
    compare("train features", nn_net_features(net), "train.features", FWD_RTOL);
    compare("train projection", z, "train.proj", FWD_RTOL);
    int d = nn_net_out_dim(net);
    float *cache = calloc(nn_ntxent_cache_size(n, d), sizeof(float));
    float *dz = calloc((size_t)n * d, sizeof(float));
    float loss = nn_ntxent_forward(cache, z, n, d, tau);
    compare("ntxent loss", &loss, "train.ntxent", FWD_RTOL);
    nn_ntxent_backward(dz, cache, n, d, tau, 1.0f);
    nn_net_zero_grad(net);
    assert_int_equal(nn_net_backward(net, dz), 0);

    nn_arena *p = nn_net_params(net), *g = nn_net_grads(net);
    for (int i = 0; i < p->n; i++) {
        char name[256];
        if (p->t[i].flags & NN_T_BUFFER) {
            snprintf(name, sizeof name, "after.%s", p->t[i].name);
            compare(name, p->t[i].data, name, FWD_RTOL);
        } else {
            snprintf(name, sizeof name, "grad.%s", p->t[i].name);
            compare(name, g->t[i].data, name, GRAD_RTOL);
        }
    }
    free(cache);
    free(dz);
    free(x);
    nn_net_destroy(&net);
    assert_null(net);
    assert_int_equal(failures, 0);
}

static void test_rotation_matches_torch(void **state)
{
    (void)state;
    size_t nx, nl;
    float *x = ref_tensor("input", &nx), *lf = ref_tensor("rot_labels", &nl);
    int n = (int)nl;
    int32_t *labels = malloc(nl * sizeof *labels);
    for (size_t i = 0; i < nl; i++)
        labels[i] = (int32_t)lf[i];
    nn_net *net = build("desc_rotation", n);
    load_params(net, "param.", "encoder.");
    load_params(net, "rot_param.", "head.");
    failures = 0;

    const float *logits = nn_net_forward(net, x, n, 1);
    compare("rotation logits", logits, "rot.logits", FWD_RTOL);
    float probs[64 * 4], dl[64 * 4] = { 0 };
    assert_true(n <= 64);
    float loss = nn_xent_forward(probs, logits, labels, n, 4);
    compare("rotation loss", &loss, "rot.loss", FWD_RTOL);
    nn_xent_backward(dl, probs, labels, n, 4, 1.0f);
    nn_net_zero_grad(net);
    assert_int_equal(nn_net_backward(net, dl), 0);
    nn_arena *p = nn_net_params(net), *g = nn_net_grads(net);
    for (int i = 0; i < p->n; i++) {
        if (p->t[i].flags & NN_T_BUFFER)
            continue;
        char name[256];
        snprintf(name, sizeof name, "rot_grad.%s", p->t[i].name);
        compare(name, g->t[i].data, name, GRAD_RTOL);
    }
    free(x); free(lf); free(labels);
    nn_net_destroy(&net);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_match_script),
        cmocka_unit_test(test_simclr_matches_torch),
        cmocka_unit_test(test_rotation_matches_torch),
    };
    return cmocka_run_group_tests_name("nn against PyTorch", tests, setup, teardown);
}

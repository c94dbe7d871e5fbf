/* Unit tests of the evaluator's maths (libevalcore.a): the linear probe on a
 * linearly separable set, kNN and the representation metrics against
 * hand-computed cases, class-balanced reproducible subsets and splits, the
 * baseline cache's keys and files, the class map's PCA (against known
 * axes and against Jacobi), t-SNE, kNN purity and silhouette, and the report
 * page's base64 and HTML escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evaluator/cache.h"
#include "evaluator/data.h"
#include "evaluator/embed.h"
#include "evaluator/knn.h"
#include "evaluator/metrics.h"
#include "evaluator/probe.h"
#include "evaluator/readout.h"
#include "dataset/split.h"
#include "evaluator/stages.h"
#include "evaluator/webtext.h"
#include "splitmix/splitmix.h"
#include "nn/net.h"

static double gauss(uint64_t *s)
{
    double u = ((double)(splitmix64_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(splitmix64_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* n points in d dimensions labelled by the argmax of a fixed random linear
 * map, keeping only points whose two best scores differ by at least margin. */
static void separable_set(float *x, int32_t *y, size_t n, int d, int k, double margin, uint64_t seed)
{
    uint64_t ws = 99, s = seed;
    double w[8][16];
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            w[c][j] = gauss(&ws);
    for (size_t i = 0; i < n;) {
        double sc[8], best = -1e30, second = -1e30;
        int arg = 0;
        for (int j = 0; j < d; j++)
            x[i * (size_t)d + j] = (float)(3.0 * gauss(&s) + 5.0);   /* off-centre, not unit scale */
        for (int c = 0; c < k; c++) {
            sc[c] = 0.0;
            for (int j = 0; j < d; j++)
                sc[c] += w[c][j] * (x[i * (size_t)d + j] - 5.0);
            if (sc[c] > best) { second = best; best = sc[c]; arg = c; }
            else if (sc[c] > second) second = sc[c];
        }
        if (best - second < margin)
            continue;
        y[i++] = arg;
    }
}

static void test_probe_separable(void **state)
{
    enum { NTR = 3000, NTE = 1000, D = 12, K = 5 };
    float *xtr = malloc(NTR * D * sizeof *xtr), *xte = malloc(NTE * D * sizeof *xte);
    int32_t ytr[NTR], yte[NTE];
    separable_set(xtr, ytr, NTR, D, K, 0.5, 1);
    separable_set(xte, yte, NTE, D, K, 0.5, 2);
    eval_probe_opts o;
    eval_probe_defaults(&o);
    eval_probe_result r;
    char err[256] = "";
    assert_int_equal(eval_probe(xtr, ytr, NULL, NTR, xte, yte, NTE, D, K, &o, &r, err, sizeof err), 0);
    printf("probe: top1 %.4f top5 %.4f lambda %g val %.4f iters %d converged %d\n",
           r.top1, r.top5, r.lambda, r.val_top1, r.iters, r.converged);
    assert_true(r.top1 >= 0.99);
    assert_true(r.top5 >= r.top1);
    assert_true(r.converged);
    free(xtr);
    free(xte);
}

/* One class per quadrant: a logistic regression fitted on three labelled
 * points per class predicts the rest, and the objective's gradient is zero
 * at its end (convergence, not just good accuracy). */
static void test_logreg_gradient_vanishes(void **state)
{
    enum { N = 400, D = 2, K = 4 };
    float x[N * D];
    int32_t y[N];
    uint64_t s = 5;
    for (int i = 0; i < N; i++) {
        int c = i % K;
        x[i * D] = (float)((c & 1 ? 2.0 : -2.0) + 0.5 * gauss(&s));
        x[i * D + 1] = (float)((c & 2 ? 2.0 : -2.0) + 0.5 * gauss(&s));
        y[i] = c;
    }
    eval_probe_opts o;
    eval_probe_defaults(&o);
    o.grad_tol = 1e-6;
    o.ftol = 0.0;
    double w[(D + 1) * K] = { 0 };
    int iters = 0, conv = 0;
    double loss = 0;
    char err[256];
    assert_int_equal(eval_logreg_fit(w, x, y, N, D, K, 1e-2, NULL, &o, &iters, &conv, &loss, err, sizeof err), 0);
    assert_true(conv);
    assert_true(iters < o.max_iter);
    double t1, t5;
    assert_int_equal(eval_logreg_score(w, x, y, N, D, K, &t1, &t5), 0);
    assert_true(t1 > 0.98);
    assert_true(t5 == 1.0);
}

/* The preconditioned fit (gram of the features) minimises the same
 * objective: on correlated, badly scaled features it reaches a vanishing
 * gradient at the same loss as the plain one, in fewer iterations. */
static void test_logreg_preconditioned(void **state)
{
    enum { N = 2000, D = 6, K = 3 };
    float *x = malloc(N * D * sizeof *x);
    int32_t y[N];
    uint64_t s = 11;
    for (int i = 0; i < N; i++) {
        double a = gauss(&s), b = gauss(&s);
        y[i] = a + 0.5 * b > 0.3 ? 0 : a - b < -0.5 ? 1 : 2;
        for (int j = 0; j < D; j++)      /* nearly collinear columns, scales 1 .. 32 */
            x[i * D + j] = (float)((a + 0.05 * j * b + 0.3 * gauss(&s)) * (1 << j));
    }
    eval_probe_opts o;
    eval_probe_defaults(&o);
    o.max_iter = 5000;
    o.grad_tol = 1e-7;
    o.ftol = 0.0;
    double gram[D * D], w0[(D + 1) * K] = { 0 }, w1[(D + 1) * K] = { 0 }, l0, l1;
    int it0, it1, c0, c1;
    char err[256];
    assert_int_equal(eval_feature_gram(gram, x, N, D, 500, NULL), 0);
    assert_true(gram[1] == gram[D]);      /* symmetric */
    assert_int_equal(eval_logreg_fit(w0, x, y, N, D, K, 1e-4, NULL, &o, &it0, &c0, &l0, err, sizeof err), 0);
    assert_int_equal(eval_logreg_fit(w1, x, y, N, D, K, 1e-4, gram, &o, &it1, &c1, &l1, err, sizeof err), 0);
    printf("logreg: plain %d iterations (loss %.9f), preconditioned %d (loss %.9f)\n", it0, l0, it1, l1);
    assert_true(c0 && c1);
    assert_true(fabs(l0 - l1) < 1e-6 * fabs(l0));
    assert_true(it1 < it0);
    free(x);
}

static void test_knn_hand_computed(void **state)
{
    /* unit vectors; similarities to the test point (1, 0): 1, 0.8, 0.6, 0 */
    const float train[] = { 1, 0, 0.8f, 0.6f, 0.6f, 0.8f, 0, 1 };
    const int32_t ytr[] = { 0, 1, 1, 2 };
    const float test[] = { 1, 0 };
    const int32_t yte[] = { 0 };
    eval_knn_result r;
    char err[256];
    /* k = 3, T = 0.1: class 0 gets e^10 = 22026, class 1 e^8 + e^6 = 3384: class 0 wins */
    assert_int_equal(eval_knn(train, ytr, 4, test, yte, 1, 2, 3, 3, 0.1, NULL, &r, err, sizeof err), 0);
    assert_true(r.top1 == 1.0);
    assert_int_equal(r.k, 3);
    /* k = 3, T = 1: class 0 gets e^1 = 2.718, class 1 e^0.8 + e^0.6 = 4.048: class 1 wins */
    assert_int_equal(eval_knn(train, ytr, 4, test, yte, 1, 2, 3, 3, 1.0, NULL, &r, err, sizeof err), 0);
    assert_true(r.top1 == 0.0);
    assert_true(r.top5 == 1.0);
    /* k = 1: only the nearest votes */
    assert_int_equal(eval_knn(train, ytr, 4, test, yte, 1, 2, 3, 1, 1.0, NULL, &r, err, sizeof err), 0);
    assert_true(r.top1 == 1.0);
    /* k larger than the training set uses all of it: class 1 still wins at T = 1
     * (class 2 adds e^0 to nobody's advantage) */
    assert_int_equal(eval_knn(train, ytr, 4, test, yte, 1, 2, 3, 200, 1.0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.k, 4);
    assert_true(r.top1 == 0.0);
    /* a label outside the classes is refused with a message */
    const int32_t bad[] = { 0, 1, 7, 2 };
    assert_int_equal(eval_knn(train, bad, 4, test, yte, 1, 2, 3, 3, 0.1, NULL, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "label 7"));
}

static void test_topk_ties(void **state)
{
    const double s[] = { 1, 3, 3, 0, 0, 0, 0 };
    int h1, h5;
    eval_topk_hits(s, 7, 1, &h1, &h5);
    assert_true(h1 && h5);          /* lower class first on ties */
    eval_topk_hits(s, 7, 2, &h1, &h5);
    assert_true(!h1 && h5);
    eval_topk_hits(s, 7, 6, &h1, &h5);
    assert_true(!h1 && !h5);        /* rank 6 */
}

static void test_alignment_uniformity(void **state)
{
    const float x[] = { 1, 0, 0, 1 }, y[] = { 0, 1, 0, 1 };
    /* squared distances 2 and 0 */
    assert_true(fabs(eval_alignment(x, y, 2, 2, 2.0) - 1.0) < 1e-9);
    /* alpha = 1: distances sqrt 2 and 0 */
    assert_true(fabs(eval_alignment(x, y, 2, 2, 1.0) - sqrt(2.0) / 2.0) < 1e-9);
    const float u[] = { 1, 0, 0, 1, -1, 0 };
    /* pairs: 2, 4, 2 (squared distances); t = 2 */
    double want = log((2.0 * exp(-4.0) + exp(-8.0)) / 3.0);
    assert_true(fabs(eval_uniformity(u, 3, 2, 2.0) - want) < 1e-6);
    /* identical points: log 1 = 0 */
    const float same[] = { 0, 1, 0, 1, 0, 1 };
    assert_true(fabs(eval_uniformity(same, 3, 2, 2.0)) < 1e-6);
    assert_true(isnan(eval_uniformity(u, 1, 2, 2.0)));
    float v[] = { 3, 4, 0, 0 };
    eval_normalize_rows(v, v, 2, 2);
    assert_true(fabs(v[0] - 0.6f) < 1e-6 && fabs(v[1] - 0.8f) < 1e-6);
    assert_true(v[2] == 0.0f && v[3] == 0.0f);
}

/* 1000 items of 10 classes in a scrambled order, class c has 60 + 8c items. */
static size_t make_labels(int32_t *y)
{
    size_t n = 0;
    for (int c = 0; c < 10; c++)
        for (int i = 0; i < 60 + 8 * c; i++)
            y[n++] = c;
    uint64_t s = 3;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix64_next(&s) % (i + 1));
        int32_t t = y[i]; y[i] = y[j]; y[j] = t;
    }
    return n;
}

static void test_subsets_balanced_reproducible(void **state)
{
    int32_t y[1000];
    size_t n = make_labels(y), counts[10];
    assert_int_equal(n, 960);
    size_t *a, *b, *c, na, nb, nc;
    char err[256];
    assert_int_equal(split_subset_fraction(y, n, 10, 0.1, 42, &a, &na, err, sizeof err), 0);
    assert_int_equal(na, 96);
    split_class_counts(y, a, na, 10, counts);
    for (int k = 0; k < 10; k++) {   /* each class keeps its 10% (6.0 .. 13.2, rounded) */
        double share = 0.1 * (60 + 8 * k);
        assert_true(fabs((double)counts[k] - share) < 1.0);
    }
    for (size_t i = 1; i < na; i++)
        assert_true(a[i] > a[i - 1]);
    assert_int_equal(split_subset_fraction(y, n, 10, 0.1, 42, &b, &nb, err, sizeof err), 0);
    assert_int_equal(nb, na);
    assert_memory_equal(a, b, na * sizeof *a);
    assert_int_equal(split_subset_fraction(y, n, 10, 0.1, 43, &c, &nc, err, sizeof err), 0);
    assert_true(nc == na && memcmp(a, c, na * sizeof *a) != 0);
    free(a); free(b); free(c);
    /* 1%: 9.6 items, rounded to 10, at least one per class */
    assert_int_equal(split_subset_fraction(y, n, 10, 0.01, 1, &a, &na, err, sizeof err), 0);
    split_class_counts(y, a, na, 10, counts);
    for (int k = 0; k < 10; k++)
        assert_int_equal(counts[k], 1);
    free(a);
    /* 100%: everything */
    assert_int_equal(split_subset_fraction(y, n, 10, 1.0, 1, &a, &na, err, sizeof err), 0);
    assert_int_equal(na, n);
    free(a);
    /* an exact count; too many is refused */
    assert_int_equal(split_subset(y, n, 10, 500, 9, &a, &na, err, sizeof err), 0);
    assert_int_equal(na, 500);
    free(a);
    assert_int_equal(split_subset(y, n, 10, 961, 9, &a, &na, err, sizeof err), -1);
    assert_non_null(strstr(err, "961"));
}

static void test_split_disjoint(void **state)
{
    int32_t y[1000];
    size_t n = make_labels(y), counts[10];
    size_t *rest, *held, nr, nh;
    char err[256];
    assert_int_equal(split_two(y, n, 10, 0.25, 5, &rest, &nr, &held, &nh, err, sizeof err), 0);
    assert_int_equal(nr + nh, n);
    assert_int_equal(nh, 240);
    char *seen = calloc(n, 1);
    for (size_t i = 0; i < nr; i++) seen[rest[i]]++;
    for (size_t i = 0; i < nh; i++) seen[held[i]]++;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    split_class_counts(y, held, nh, 10, counts);
    for (int k = 0; k < 10; k++)
        assert_true(fabs((double)counts[k] - 0.25 * (60 + 8 * k)) < 1.0);
    free(seen); free(rest); free(held);
    assert_int_equal(split_two(y, n, 10, 1.5, 5, &rest, &nr, &held, &nh, err, sizeof err), -1);
}

static void test_stage_cuts(void **state)
{
    const char *desc =
        "nn 1\ninput 1 28 28\nencoder\nconv out=4\nbn\nrelu\nmaxpool k=2 s=2\n"
        "res\nconv out=4\nbn\nrelu\nend\nconv out=8 s=2  # strided\nrelu\ngap\nhead\nlinear out=4\n";
    eval_stage_list st;
    char err[256];
    assert_int_equal(eval_stages_find(desc, &st, err, sizeof err), 0);
    /* before the maxpool, before the strided conv, before gap */
    assert_int_equal(st.n, 3);
    assert_true(st.c[0] == 4 && st.h[0] == 28 && st.w[0] == 28);
    assert_true(st.c[1] == 4 && st.h[1] == 14 && st.w[1] == 14);
    assert_true(st.c[2] == 8 && st.h[2] == 7 && st.w[2] == 7);     /* (14 + 2 - 3) / 2 + 1 */
    char buf[4096];
    assert_int_equal(eval_stage_desc(desc, &st, 0, buf, sizeof buf, err, sizeof err), 0);
    assert_non_null(strstr(buf, "relu\nflatten\n"));
    assert_null(strstr(buf, "maxpool"));
    assert_int_equal(eval_stage_desc(desc, &st, 2, buf, sizeof buf, err, sizeof err), 0);
    assert_non_null(strstr(buf, "s=2"));
    assert_null(strstr(buf, "gap"));
    assert_null(strstr(buf, "head"));
}

/* Readouts: names parse and print back; the maps readout averaged over space
 * is the encoder's own pooled output (gap), image by image; large maps are
 * max-pooled under EVAL_READOUT_MAX_DIM; stage:K reads stage K. */
static void test_readout(void **state)
{
    eval_readout r;
    char err[256], name[EVAL_READOUT_NAME_MAX];
    const char *good[] = { "pooled", "maps", "stage:2" };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(eval_readout_parse(&r, good[i], err, sizeof err), 0);
        eval_readout_name(&r, name, sizeof name);
        assert_string_equal(name, good[i]);
    }
    const char *bad[] = { "stage:0", "stage:", "stage:2x", "gap", "" };
    for (int i = 0; i < 5; i++)
        assert_int_equal(eval_readout_parse(&r, bad[i], err, sizeof err), -1);

    const char *desc = "nn 1\ninput 1 12 12\nencoder\nconv out=4\nbn\nrelu\nmaxpool k=2 s=2\n"
                       "res\nconv out=4\nbn\nrelu\nend\nconv out=6\nrelu\ngap\nhead\nlinear out=3\n";
    enum { N = 3, C = 6, HW = 36 };
    nn_net *net = nn_net_new(desc, N, err, sizeof err);
    assert_non_null(net);
    nn_net_init_params(net, 5);
    float x[N * 144];
    for (int i = 0; i < N * 144; i++)
        x[i] = (float)((i * 37) % 101) / 101.0f;
    float pooled[N * C];
    memcpy(pooled, nn_net_forward_features(net, x, N), sizeof pooled);
    int same = 0;
    r.stage = EVAL_READOUT_MAPS;
    nn_net *maps = eval_readout_net(net, &r, N, &same, err, sizeof err);
    assert_non_null(maps);
    assert_int_equal(same, 0);
    assert_int_equal(nn_net_feat_dim(maps), C * HW);
    const float *m = nn_net_forward_features(maps, x, N);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double sum = 0;
            for (int q = 0; q < HW; q++)
                sum += m[(n * C + c) * HW + q];
            assert_float_equal(sum / HW, pooled[n * C + c], 1e-5);
        }
    nn_net_destroy(&maps);
    r.stage = 1;                                    /* stage 1: 4 x 12 x 12 */
    nn_net *first = eval_readout_net(net, &r, N, &same, err, sizeof err);
    assert_non_null(first);
    assert_int_equal(nn_net_feat_dim(first), 4 * 144);
    nn_net_destroy(&first);
    r.stage = 9;
    assert_null(eval_readout_net(net, &r, N, &same, err, sizeof err));
    assert_non_null(strstr(err, "stages"));
    r.stage = EVAL_READOUT_POOLED;
    assert_null(eval_readout_net(net, &r, N, &same, err, sizeof err));
    assert_int_equal(same, 1);
    nn_net_destroy(&net);

    /* 8 x 64 x 64 = 32,768 values: pooled twice, to 8 x 16 x 16 */
    const char *big = "nn 1\ninput 1 64 64\nencoder\nconv out=8\nrelu\ngap\n";
    net = nn_net_new(big, 1, err, sizeof err);
    assert_non_null(net);
    r.stage = EVAL_READOUT_MAPS;
    nn_net *cut = eval_readout_net(net, &r, 1, &same, err, sizeof err);
    assert_non_null(cut);
    assert_int_equal(nn_net_feat_dim(cut), 8 * 16 * 16);
    assert_true(nn_net_feat_dim(cut) <= EVAL_READOUT_MAX_DIM);
    nn_net_destroy(&cut);
    nn_net_destroy(&net);
}

/* Feature views: names parse and print back; each view is the image mirrored
 * and moved as eval_view_images says, edges repeated; eval_encode_images
 * gives the mean of the views' features, so that with flip an image and its
 * mirror image get the same features. */
static void test_feature_views(void **state)
{
    char err[256];
    const int all[] = { EVAL_VIEWS_ONE, EVAL_VIEWS_FLIP, EVAL_VIEWS_FLIP_SHIFT };
    for (int i = 0; i < 3; i++) {
        int v = 0;
        assert_int_equal(eval_views_parse(&v, eval_views_name(all[i]), err, sizeof err), 0);
        assert_int_equal(v, all[i]);
    }
    assert_string_equal(eval_views_name(EVAL_VIEWS_FLIP_SHIFT), "flip-shift");
    const char *bad[] = { "two", "", "flip-", "FLIP" };
    for (int i = 0; i < 4; i++) {
        int v = 7;
        assert_int_equal(eval_views_parse(&v, bad[i], err, sizeof err), -1);
        assert_int_equal(v, 7);
        assert_non_null(strstr(err, "flip-shift"));
    }
    assert_int_equal(EVAL_VIEW_SHIFT(12), 1);
    assert_int_equal(EVAL_VIEW_SHIFT(28), 2);
    assert_int_equal(EVAL_VIEW_SHIFT(32), 2);
    assert_int_equal(EVAL_VIEW_SHIFT(96), 6);

    /* two channels of 3 x 4 (shift 1): pixel (r, q) of channel ch is 100 ch + 10 r + q */
    enum { C = 2, H = 3, W = 4 };
    float x[C * H * W], o[C * H * W];
    for (int ch = 0; ch < C; ch++)
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++)
                x[(ch * H + r) * W + q] = (float)(100 * ch + 10 * r + q);
    for (int v = 0; v < EVAL_VIEWS_FLIP_SHIFT; v++) {
        eval_view_images(x, 1, C, H, W, v, o);
        int dx = v / 2 == 1 ? 1 : v / 2 == 2 ? -1 : 0, dy = v / 2 == 3 ? 1 : v / 2 == 4 ? -1 : 0;
        for (int ch = 0; ch < C; ch++)
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) {
                    int sr = r - dy < 0 ? 0 : r - dy > H - 1 ? H - 1 : r - dy;
                    int sq = q - dx < 0 ? 0 : q - dx > W - 1 ? W - 1 : q - dx;
                    if (v & 1)
                        sq = W - 1 - sq;
                    assert_float_equal(o[(ch * H + r) * W + q], 100 * ch + 10 * sr + sq, 0);
                }
    }
    eval_view_images(x, 1, C, H, W, 1, o);                  /* the mirror: row 0 of channel 1 */
    assert_float_equal(o[H * W + 0], 103, 0);
    assert_float_equal(o[H * W + 3], 100, 0);
    eval_view_images(x, 1, C, H, W, 2, o);                  /* moved right: columns 0, 0, 1, 2 */
    assert_float_equal(o[0], 0, 0);
    assert_float_equal(o[1], 0, 0);
    assert_float_equal(o[3], 2, 0);

    /* features through a small net: image 1 is image 0 mirrored */
    const char *desc = "nn 1\ninput 1 12 12\nencoder\nconv out=4\nbn\nrelu\nmaxpool k=2 s=2\n"
                       "conv out=6\nrelu\ngap\nhead\nlinear out=3\n";
    enum { N = 3, S = 12 };
    nn_net *net = nn_net_new(desc, N, err, sizeof err);
    assert_non_null(net);
    nn_net_init_params(net, 9);
    int d = nn_net_feat_dim(net);
    uint8_t pixels[N * S * S];
    for (int i = 0; i < N * S * S; i++)
        pixels[i] = (uint8_t)((i * 73 + (i / 7) * 31) % 256);
    for (int r = 0; r < S; r++)
        for (int q = 0; q < S; q++)
            pixels[S * S + r * S + q] = pixels[r * S + (S - 1 - q)];
    int32_t labels[N] = { 0, 1, 2 };
    eval_images im = { .n = N, .c = 1, .h = S, .w = S, .n_classes = 3, .pixels = pixels, .labels = labels };
    float xs[N * S * S], xv[N * S * S], want[N * 8], *f = NULL;
    assert_true(d <= 8);
    eval_images_to_float(&im, 0, N, xs);
    for (int t = 0; t < 3; t++) {
        int views = all[t];
        memset(want, 0, sizeof want);
        for (int v = 0; v < views; v++) {
            eval_view_images(xs, N, 1, S, S, v, xv);
            const float *g = nn_net_forward_features(net, xv, N);
            for (int i = 0; i < N * d; i++)
                want[i] += g[i] / (float)views;
        }
        assert_int_equal(eval_encode_images(net, &im, views, "test", NULL, &f, err, sizeof err), 0);
        for (int i = 0; i < N * d; i++)
            assert_float_equal(f[i], want[i], 1e-5);
        if (views == EVAL_VIEWS_FLIP)
            for (int j = 0; j < d; j++)
                assert_float_equal(f[j], f[d + j], 1e-5);
        else if (views == EVAL_VIEWS_ONE) {           /* one view: the mirror image differs */
            double diff = 0;
            for (int j = 0; j < d; j++)
                diff += fabs(f[j] - f[d + j]);
            assert_true(diff > 1e-3);
        }
        free(f);
        f = NULL;
    }
    nn_net_destroy(&net);
}

static void test_attention_maps(void **state)
{
    /* 2 images, 2 channels, 1 x 2 maps */
    const float a[] = { 1, 2, 3, 0,       /* image 0: channel 0, channel 1 */
                        -2, 0, 0, 4 };    /* image 1 */
    float m[4];
    eval_attention_maps(m, a, 2, 2, 1, 2);
    assert_true(m[0] == 5.0f && m[1] == 2.0f);   /* (1 + 9) / 2, (4 + 0) / 2 */
    assert_true(m[2] == 2.0f && m[3] == 8.0f);
}

/* ------------------------------------------------------- baseline cache */

typedef struct {
    char dir[64], train[96], test[96];
    eval_options o;
    eval_probe_opts probe;
    eval_cache_inputs in;
} cache_fixture;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void cache_fixture_init(cache_fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/test_eval_cache.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->train, sizeof fx->train, "%s/train.idx", fx->dir);
    snprintf(fx->test, sizeof fx->test, "%s/test.idx", fx->dir);
    write_file(fx->train, "training images");
    write_file(fx->test, "test images");
    eval_options *o = &fx->o;
    o->format = "auto";
    o->test_fraction = 0.1;
    o->fractions[0] = 0.01; o->fractions[1] = 0.1; o->fractions[2] = 1.0;
    o->n_fractions = 3;
    o->seed = 1;
    o->knn_k = 200;
    o->knn_t = 0.1;
    o->align_items = 2000;
    o->align_recipe = "simclr";
    eval_probe_defaults(&fx->probe);
    eval_cache_inputs *in = &fx->in;
    in->kind = "raw_pixels";
    in->train_path = fx->train;
    in->test_path = fx->test;
    in->n_train = 60000;
    in->n_test = 10000;
    in->c = 1; in->h = 28; in->w = 28;
    in->o = &fx->o;
    in->probe = &fx->probe;
}

static void cache_fixture_done(cache_fixture *fx)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
}

static uint64_t key_hash(const cache_fixture *fx)
{
    eval_cache_key k;
    char err[256];
    assert_int_equal(eval_cache_key_make(&k, &fx->in, err, sizeof err), 0);
    uint64_t h = k.hash;
    eval_cache_key_clear(&k);
    return h;
}

/* Same inputs, same key; each thing a baseline depends on, changed alone,
 * gives another key. */
static void test_cache_key(void **state)
{
    cache_fixture fx;
    cache_fixture_init(&fx);
    eval_cache_key a, b;
    char err[256];
    assert_int_equal(eval_cache_key_make(&a, &fx.in, err, sizeof err), 0);
    assert_int_equal(eval_cache_key_make(&b, &fx.in, err, sizeof err), 0);
    assert_string_equal(a.text, b.text);
    assert_true(a.hash == b.hash);
    assert_string_equal(a.name, b.name);
    assert_int_equal(strncmp(a.name, "raw_pixels-", 11), 0);
    assert_non_null(strstr(a.text, "train.idx size 15 "));
    eval_cache_key_clear(&b);
    const uint64_t base = a.hash;
    eval_cache_key_clear(&a);

    /* one change at a time, each undone before the next */
#define CHANGED(stmt, undo) do { stmt; assert_true(key_hash(&fx) != base); undo; \
                                 assert_true(key_hash(&fx) == base); } while (0)
    CHANGED(fx.in.kind = "random_encoder", fx.in.kind = "raw_pixels");
    CHANGED(fx.in.train_path = fx.test, fx.in.train_path = fx.train);
    CHANGED(fx.in.test_path = NULL, fx.in.test_path = fx.test);
    CHANGED(fx.in.n_train = 5000, fx.in.n_train = 60000);
    CHANGED(fx.in.n_test = 1000, fx.in.n_test = 10000);
    CHANGED(fx.in.c = 3, fx.in.c = 1);
    CHANGED(fx.in.h = 32, fx.in.h = 28);
    CHANGED(fx.in.w = 32, fx.in.w = 28);
    CHANGED(fx.o.format = "idx", fx.o.format = "auto");
    CHANGED(fx.o.test_fraction = 0.2, fx.o.test_fraction = 0.1);
    CHANGED(fx.o.max_train = 5000, fx.o.max_train = 0);
    CHANGED(fx.o.max_test = 1000, fx.o.max_test = 0);
    CHANGED(fx.o.seed = 2, fx.o.seed = 1);
    CHANGED(fx.o.fractions[1] = 0.2, fx.o.fractions[1] = 0.1);
    CHANGED(fx.o.n_fractions = 2, fx.o.n_fractions = 3);
    CHANGED(fx.o.knn_k = 20, fx.o.knn_k = 200);
    CHANGED(fx.o.knn_t = 0.07, fx.o.knn_t = 0.1);
    CHANGED(fx.o.align_items = 500, fx.o.align_items = 2000);
    CHANGED(fx.o.align_recipe = "byol", fx.o.align_recipe = "simclr");
    CHANGED(fx.probe.max_iter = 999, fx.probe.max_iter = 500);
    CHANGED(fx.probe.ftol = 1e-6, fx.probe.ftol = 1e-5);
    CHANGED(fx.probe.val_ftol = 1e-5, fx.probe.val_ftol = 1e-4);
    CHANGED(fx.probe.grad_tol = 1e-6, fx.probe.grad_tol = 1e-5);
    CHANGED(fx.probe.val_fraction = 0.2, fx.probe.val_fraction = 0.1);
    CHANGED(fx.probe.val_iter_share = 0.4, fx.probe.val_iter_share = 0.2);
    CHANGED(fx.probe.grid_patience = 0, fx.probe.grid_patience = 2);
    CHANGED(fx.probe.history = 5, fx.probe.history = 10);
    CHANGED(fx.probe.seed = 9, fx.probe.seed = 7);
    CHANGED(fx.probe.precondition = 0, fx.probe.precondition = 1);
    CHANGED(fx.probe.lambdas[3] = 5e-3, fx.probe.lambdas[3] = 1e-3);
    CHANGED(fx.probe.n_lambdas = 6, fx.probe.n_lambdas = 7);
    CHANGED((fx.in.desc = "nn 1\ninput 1 28 28\n", fx.in.init_seed = 1234), (fx.in.desc = NULL, fx.in.init_seed = 0));
    /* the random encoder: its network and its seed */
    fx.in.kind = "random_encoder";
    fx.in.desc = "nn 1\ninput 1 28 28\nencoder\nconv out=4\n";
    fx.in.init_seed = 1234;
    uint64_t rnd = key_hash(&fx);
    fx.in.desc = "nn 1\ninput 1 28 28\nencoder\nconv out=8\n";
    assert_true(key_hash(&fx) != rnd);
    fx.in.desc = "nn 1\ninput 1 28 28\nencoder\nconv out=4\n";
    fx.in.init_seed = 4321;
    assert_true(key_hash(&fx) != rnd);
    fx.in.init_seed = 1234;
    assert_true(key_hash(&fx) == rnd);
    fx.in.params_hash = eval_cache_hash("other weights", 13);
    assert_true(key_hash(&fx) != rnd);
    fx.in.params_hash = 0;
    fx.o.readout.stage = EVAL_READOUT_MAPS;       /* the random encoder read another way */
    assert_true(key_hash(&fx) != rnd);
    fx.o.readout.stage = EVAL_READOUT_POOLED;
    assert_true(key_hash(&fx) == rnd);
    fx.o.views = EVAL_VIEWS_FLIP;                  /* ... or through other views */
    assert_true(key_hash(&fx) != rnd);
    fx.o.views = 0;
    assert_true(key_hash(&fx) == rnd);
    fx.in.kind = "raw_pixels";
    fx.in.desc = NULL;
    fx.in.init_seed = 0;
    fx.o.views = EVAL_VIEWS_FLIP_SHIFT;            /* raw pixels are read one way only */
    assert_true(key_hash(&fx) == base);
    fx.o.views = 0;
    /* the data: new contents (size) or a new modification time */
    write_file(fx.train, "training images, more of them");
    assert_true(key_hash(&fx) != base);
    write_file(fx.train, "training images");
    struct timespec times[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, fx.train, times, 0), 0);
    uint64_t old_time = key_hash(&fx);
    times[1].tv_sec += 60;
    assert_int_equal(utimensat(AT_FDCWD, fx.train, times, 0), 0);
    assert_true(key_hash(&fx) != old_time);
#undef CHANGED
    cache_fixture_done(&fx);
}

/* A stored baseline comes back equal; a corrupt file, a file of another
 * version and a file made for another key are refused with a reason; a
 * missing one is a plain miss. */
static void test_cache_files(void **state)
{
    cache_fixture fx;
    cache_fixture_init(&fx);
    char dir[128], err[512], why[1024], path[256];
    snprintf(dir, sizeof dir, "%s/sub/cache", fx.dir);       /* created on the way */
    eval_cache_key key;
    assert_int_equal(eval_cache_key_make(&key, &fx.in, err, sizeof err), 0);
    assert_null(eval_cache_load(dir, &key, why, sizeof why));
    assert_string_equal(why, "");
    json_t *b = json_pack("{s:i, s:{s:f, s:f}, s:{s:f, s:i}, s:f}", "feat_dim", 784, "probe", "top1", 0.8473,
                          "top5", 0.9965, "knn", "top1", 0.7885, "k", 200, "seconds", 12.5);
    assert_int_equal(eval_cache_store(dir, &key, b, err, sizeof err), 0);
    json_t *got = eval_cache_load(dir, &key, why, sizeof why);
    assert_non_null(got);
    assert_true(json_equal(got, b));
    json_decref(got);
    snprintf(path, sizeof path, "%s/%s", dir, key.name);
    /* no temporary file left beside it */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);

    write_file(path, "{\"format\": \"sslpipe-baseline\", \"version\": 1, \"key\": ");   /* cut short */
    assert_null(eval_cache_load(dir, &key, why, sizeof why));
    assert_non_null(strstr(why, "unreadable"));

    json_t *doc = json_pack("{s:s, s:i, s:s, s:O}", "format", EVAL_CACHE_FORMAT, "version", EVAL_CACHE_VERSION + 1,
                            "key", key.text, "baseline", b);
    assert_int_equal(json_dump_file(doc, path, 0), 0);
    json_decref(doc);
    assert_null(eval_cache_load(dir, &key, why, sizeof why));
    assert_non_null(strstr(why, "version"));

    doc = json_pack("{s:s, s:i, s:s, s:O}", "format", EVAL_CACHE_FORMAT, "version", EVAL_CACHE_VERSION,
                    "key", "sslpipe-baseline 1\nkind raw_pixels\nsomething else\n", "baseline", b);
    assert_int_equal(json_dump_file(doc, path, 0), 0);
    json_decref(doc);
    assert_null(eval_cache_load(dir, &key, why, sizeof why));
    assert_non_null(strstr(why, "another key"));

    /* storing again replaces the bad file */
    assert_int_equal(eval_cache_store(dir, &key, b, err, sizeof err), 0);
    got = eval_cache_load(dir, &key, why, sizeof why);
    assert_non_null(got);
    json_decref(got);
    /* a folder that cannot be made is an error with the reason */
    char blocked[300];
    snprintf(blocked, sizeof blocked, "%s/sub", path);           /* under a regular file */
    assert_int_equal(eval_cache_store(blocked, &key, b, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot create"));
    json_decref(b);
    eval_cache_key_clear(&key);
    cache_fixture_done(&fx);
}

/* ------------------------------------------------------------- class map */

#define CL_N 500
#define CL_D 20
#define CL_K 5

/* CL_N points in CL_D dimensions: CL_K Gaussian clusters (unit noise) around
 * centres at least 14 apart, spread most in a plane (so that PCA to 2-D keeps
 * them apart too); labels the cluster. */
static void clusters(float *x, int32_t *y, uint64_t seed)
{
    uint64_t s = seed;
    double centre[CL_K][CL_D];
    for (int c = 0; c < CL_K; c++)
        for (int j = 0; j < CL_D; j++)        /* a pentagon of radius 12 in the first two axes, plus jitter */
            centre[c][j] = 2.0 * gauss(&s) + (j == 0 ? 12.0 * cos(2 * M_PI * c / CL_K) :
                                              j == 1 ? 12.0 * sin(2 * M_PI * c / CL_K) : 0.0);
    for (int i = 0; i < CL_N; i++) {
        y[i] = i % CL_K;
        for (int j = 0; j < CL_D; j++)
            x[i * CL_D + j] = (float)(centre[y[i]][j] + gauss(&s));
    }
}

static void test_jacobi_hand(void **state)
{
    (void)state;
    /* [[2,1,0],[1,2,0],[0,0,5]]: eigenvalues 5, 3, 1 with e3, (1,1,0)/sqrt2, (1,-1,0)/sqrt2 */
    double a[9] = { 2, 1, 0, 1, 2, 0, 0, 0, 5 }, val[3], vec[9];
    eval_jacobi_eigen(a, 3, val, vec);
    assert_true(fabs(val[0] - 5) < 1e-12 && fabs(val[1] - 3) < 1e-12 && fabs(val[2] - 1) < 1e-12);
    assert_true(fabs(fabs(vec[2 * 3 + 0]) - 1) < 1e-12);
    assert_true(fabs(fabs(vec[0 * 3 + 1]) - M_SQRT1_2) < 1e-12 && fabs(vec[0 * 3 + 1] - vec[1 * 3 + 1]) < 1e-12);
    assert_true(fabs(vec[0 * 3 + 2] + vec[1 * 3 + 2]) < 1e-12);
}

static void test_pca_ellipse(void **state)
{
    (void)state;
    /* 8 points on an ellipse with half-axes 3 and 1, rotated by 30 degrees: the
     * variances are 9/2 and 1/2, the axes (cos 30, sin 30) and (-sin 30, cos 30),
     * and the coordinates on them 3 cos t and sin t */
    float x[16], out[16];
    double var[2], phi = M_PI / 6;
    for (int k = 0; k < 8; k++) {
        double t = 2 * M_PI * k / 8, u = 3 * cos(t), v = sin(t);
        x[2 * k] = (float)(cos(phi) * u - sin(phi) * v + 7.0);       /* off-centre */
        x[2 * k + 1] = (float)(sin(phi) * u + cos(phi) * v - 2.0);
    }
    char err[256];
    assert_int_equal(eval_pca(out, var, x, 8, 2, 2, err, sizeof err), 0);
    assert_true(fabs(var[0] - 4.5) < 1e-5 && fabs(var[1] - 0.5) < 1e-5);
    for (int k = 0; k < 8; k++) {
        double t = 2 * M_PI * k / 8;
        assert_true(fabs(out[2 * k] - 3 * cos(t)) < 1e-5);
        assert_true(fabs(out[2 * k + 1] - sin(t)) < 1e-5);
    }
}

/* The subspace iteration (d > 64) against Jacobi on the whole covariance. */
static void test_pca_subspace(void **state)
{
    (void)state;
    enum { N = 300, D = 90, M = 12 };
    float *x = malloc(N * D * sizeof *x), *out = malloc(N * M * sizeof *out);
    double *cov = calloc(D * D, sizeof *cov), *vec = malloc(D * D * sizeof *vec), mean[D] = { 0 }, ref[D], var[M];
    uint64_t s = 5;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            x[i * D + j] = (float)(gauss(&s) * 4.0 / (1.0 + 0.3 * j) + 0.5 * gauss(&s));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            mean[j] += x[i * D + j] / (double)N;
    for (int i = 0; i < N; i++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                cov[a * D + b] += (x[i * D + a] - mean[a]) * (x[i * D + b] - mean[b]) / N;
    eval_jacobi_eigen(cov, D, ref, vec);
    char err[256];
    assert_int_equal(eval_pca(out, var, x, N, D, M, err, sizeof err), 0);
    for (int j = 0; j < M; j++)
        assert_true(fabs(var[j] - ref[j]) < 1e-3 * ref[0]);
    /* each output column's variance is its eigenvalue */
    for (int j = 0; j < M; j++) {
        double v = 0.0;
        for (int i = 0; i < N; i++)
            v += (double)out[i * M + j] * out[i * M + j] / N;
        assert_true(fabs(v - ref[j]) < 1e-3 * ref[0]);
    }
    free(x); free(out); free(cov); free(vec);
}

static void test_classmap_clusters(void **state)
{
    (void)state;
    float *x = malloc(CL_N * CL_D * sizeof *x), *pca = malloc(CL_N * EVAL_PCA_DIMS * sizeof *pca);
    float *y1 = malloc(CL_N * 2 * sizeof *y1), *y2 = malloc(CL_N * 2 * sizeof *y2);
    int32_t lab[CL_N];
    clusters(x, lab, 11);
    char err[256];
    assert_int_equal(eval_pca(pca, NULL, x, CL_N, CL_D, EVAL_PCA_DIMS, err, sizeof err), 0);
    /* PCA to 2-D: the first two of the 50 columns */
    float *p2 = malloc(CL_N * 2 * sizeof *p2);
    for (int i = 0; i < CL_N; i++) {
        p2[2 * i] = pca[i * EVAL_PCA_DIMS];
        p2[2 * i + 1] = pca[i * EVAL_PCA_DIMS + 1];
    }
    double pp = eval_knn_purity(p2, lab, CL_N, 2, EVAL_PURITY_K);
    eval_tsne_opts o;
    eval_tsne_defaults(&o);
    o.seed = 3;
    assert_int_equal(eval_tsne(y1, pca, CL_N, EVAL_PCA_DIMS, &o, err, sizeof err), 0);
    assert_int_equal(eval_tsne(y2, pca, CL_N, EVAL_PCA_DIMS, &o, err, sizeof err), 0);
    double tp = eval_knn_purity(y1, lab, CL_N, 2, EVAL_PURITY_K);
    print_message("class map: 5 clusters in 20-D, 500 points: PCA purity %.3f, t-SNE purity %.3f\n", pp, tp);
    assert_true(pp >= 0.95);
    assert_true(tp >= 0.95);
    assert_memory_equal(y1, y2, CL_N * 2 * sizeof *y1);          /* one seed, one map */
    o.seed = 4;
    assert_int_equal(eval_tsne(y2, pca, CL_N, EVAL_PCA_DIMS, &o, err, sizeof err), 0);
    assert_true(memcmp(y1, y2, CL_N * 2 * sizeof *y1) != 0);       /* another seed, another start */
    free(x); free(pca); free(y1); free(y2); free(p2);
}

static void test_purity_silhouette(void **state)
{
    (void)state;
    float *x = malloc(CL_N * CL_D * sizeof *x);
    int32_t lab[CL_N], rnd[CL_N];
    clusters(x, lab, 12);
    uint64_t s = 77;
    for (int i = 0; i < CL_N; i++)
        rnd[i] = (int32_t)(splitmix64_next(&s) % CL_K);
    double sep = eval_silhouette(x, lab, CL_N, CL_D, CL_K), none = eval_silhouette(x, rnd, CL_N, CL_D, CL_K);
    /* the same clusters drawn 10 times tighter around their means */
    double mean[CL_K][CL_D] = { { 0 } };
    for (int i = 0; i < CL_N; i++)
        for (int j = 0; j < CL_D; j++)
            mean[lab[i]][j] += x[i * CL_D + j] / (CL_N / CL_K);
    float *tight = malloc(CL_N * CL_D * sizeof *tight);
    for (int i = 0; i < CL_N; i++)
        for (int j = 0; j < CL_D; j++)
            tight[i * CL_D + j] = (float)(mean[lab[i]][j] + 0.1 * (x[i * CL_D + j] - mean[lab[i]][j]));
    double near1 = eval_silhouette(tight, lab, CL_N, CL_D, CL_K);
    free(tight);
    print_message("silhouette: separated clusters %.3f (10x tighter %.3f), random labels %.3f\n", sep, near1, none);
    assert_true(sep > 0.6);
    assert_true(near1 > 0.95);
    assert_true(fabs(none) < 0.05);
    /* purity by hand: four points on a line, labels a a b b, k 1: each finds its twin */
    float line[4] = { 0, 1, 10, 11 };
    int32_t l4[4] = { 0, 0, 1, 1 }, l4x[4] = { 0, 1, 0, 1 };
    assert_true(fabs(eval_knn_purity(line, l4, 4, 1, 1) - 1.0) < 1e-12);
    assert_true(fabs(eval_knn_purity(line, l4x, 4, 1, 1) - 0.0) < 1e-12);
    /* k 2: each point's nearest is its twin, its second the nearest of the other pair */
    assert_true(fabs(eval_knn_purity(line, l4, 4, 1, 2) - 0.5) < 1e-12);
    /* one point alone in its class counts 0; fewer than two classes: NAN */
    assert_true(isnan(eval_silhouette(x, (int32_t[CL_N]){ 0 }, CL_N, CL_D, CL_K)));
    free(x);
}

/* Base64 against RFC 4648's test vectors, every padding case and all 256
 * byte values (decoded back by hand); HTML escaping of the five special
 * characters. */
static void test_webtext(void **state)
{
    static const char *const vec[][2] = { { "", "" },         { "f", "Zg==" },         { "fo", "Zm8=" },
                                          { "foo", "Zm9v" },  { "foob", "Zm9vYg==" },  { "fooba", "Zm9vYmE=" },
                                          { "foobar", "Zm9vYmFy" } };
    char out[64];
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        size_t n = strlen(vec[i][0]);
        assert_int_equal(eval_base64_len(n), strlen(vec[i][1]));
        memset(out, '#', sizeof out);
        eval_base64_encode(out, (const uint8_t *)vec[i][0], n);
        assert_string_equal(out, vec[i][1]);
    }
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)(255 - i);
    char text[345];
    assert_int_equal(eval_base64_len(sizeof all), 344);
    eval_base64_encode(text, all, sizeof all);
    assert_int_equal(strlen(text), 344);
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = 0;
    for (size_t i = 0; i < 344; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char *c = strchr(alphabet, text[i + j]);
            if (text[i + j] == '=')
                pad++;
            else
                assert_non_null(c);
            v = v << 6 | (text[i + j] == '=' ? 0u : (uint32_t)(c - alphabet));
        }
        for (int j = 0; j < 3 - pad; j++)
            back[nb++] = (uint8_t)(v >> (16 - 8 * j));
    }
    assert_int_equal(nb, sizeof all);
    assert_memory_equal(back, all, sizeof all);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    eval_html_escape(f, "a<b>&\"c\" 'd' \xc3\xa9");
    eval_html_escape(f, NULL);
    fclose(f);
    assert_string_equal(buf, "a&lt;b&gt;&amp;&quot;c&quot; &#39;d&#39; \xc3\xa9");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_separable),
        cmocka_unit_test(test_logreg_gradient_vanishes),
        cmocka_unit_test(test_logreg_preconditioned),
        cmocka_unit_test(test_knn_hand_computed),
        cmocka_unit_test(test_topk_ties),
        cmocka_unit_test(test_alignment_uniformity),
        cmocka_unit_test(test_subsets_balanced_reproducible),
        cmocka_unit_test(test_split_disjoint),
        cmocka_unit_test(test_stage_cuts),
        cmocka_unit_test(test_readout),
        cmocka_unit_test(test_feature_views),
        cmocka_unit_test(test_attention_maps),
        cmocka_unit_test(test_cache_key),
        cmocka_unit_test(test_cache_files),
        cmocka_unit_test(test_jacobi_hand),
        cmocka_unit_test(test_pca_ellipse),
        cmocka_unit_test(test_pca_subspace),
        cmocka_unit_test(test_classmap_clusters),
        cmocka_unit_test(test_purity_silhouette),
        cmocka_unit_test(test_webtext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

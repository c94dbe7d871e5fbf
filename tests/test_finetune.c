/* Unit tests of fine-tuning with few labels (evaluator/finetune.h): on a set
 * of very distinct synthetic classes, training from scratch and fine-tuning
 * both reach at least 99% on the test images; scratch, probe and
 * fine-tuning train on exactly the subset that was picked (its hash); the
 * subsets are class-balanced and seeded; the same seed gives the same
 * result (on one thread); the classifier network replaces the checkpoint's
 * head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset/split.h"
#include "splitmix/splitmix.h"
#include "evaluator/finetune.h"
#include "nn/net.h"

#define SIDE     16
#define CLASSES  4
#define N_TRAIN  400
#define N_TEST   200

/* Image i of class c (SIDE x SIDE, one channel): 0 horizontal stripes,
 * 1 vertical stripes, 2 dark, 3 bright, each with a little noise; crops and
 * flips keep them apart. */
static void draw(uint8_t *px, int c, uint64_t *s)
{
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int v = c == 0 ? ((y / 2) % 2) * 220 : c == 1 ? ((x / 2) % 2) * 220 : c == 2 ? 20 : 230;
            v += (int)(splitmix64_next(s) % 21) - 10;
            px[y * SIDE + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void make_images(eval_images *im, size_t n, uint64_t seed)
{
    memset(im, 0, sizeof *im);
    snprintf(im->source, sizeof im->source, "synthetic");
    im->n = n;
    im->c = 1;
    im->h = im->w = SIDE;
    im->n_classes = CLASSES;
    im->pixels = malloc(n * SIDE * SIDE);
    im->labels = malloc(n * sizeof *im->labels);
    assert_non_null(im->pixels);
    assert_non_null(im->labels);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        im->labels[i] = (int32_t)(i % CLASSES);
        draw(im->pixels + i * SIDE * SIDE, im->labels[i], &s);
    }
}

static void free_images(eval_images *im)
{
    free(im->pixels);
    free(im->labels);
}

/* A small encoder (conv4 width 4) with the head `head`, initialised from seed. */
static nn_net *small_net(const char *head, uint64_t seed)
{
    char desc[NN_MAX_DESC], err[256];
    assert_int_equal(nn_preset_desc(desc, sizeof desc, "conv4", 4, head, 1, SIDE, SIDE, err, sizeof err), 0);
    nn_net *net = nn_net_new(desc, 64, err, sizeof err);
    assert_non_null(net);
    nn_net_init_params(net, seed);
    return net;
}

static void test_classifier_desc(void **state)
{
    (void)state;
    char err[256];
    nn_net *ckpt = small_net("simclr", 3);
    char *desc = eval_ft_classifier_desc(nn_net_desc(ckpt), 7, err, sizeof err);
    assert_non_null(desc);
    nn_net *net = nn_net_new(desc, 8, err, sizeof err);
    assert_non_null(net);
    assert_int_equal(nn_net_out_dim(net), 7);
    assert_int_equal(nn_net_feat_dim(net), nn_net_feat_dim(ckpt));
    assert_null(strstr(desc, "bn\nrelu\nlinear out=128"));   /* the SimCLR head is gone */
    nn_net_destroy(&net);
    free(desc);
    /* a network without a head gets one */
    nn_net *bare = small_net("none", 3);
    desc = eval_ft_classifier_desc(nn_net_desc(bare), 3, err, sizeof err);
    assert_non_null(desc);
    net = nn_net_new(desc, 8, err, sizeof err);
    assert_non_null(net);
    assert_int_equal(nn_net_out_dim(net), 3);
    nn_net_destroy(&net);
    nn_net_destroy(&bare);
    nn_net_destroy(&ckpt);
    free(desc);
}

static void test_subset_balance(void **state)
{
    (void)state;
    /* imbalanced labels: class c has 50 + 30 c items, class 3 only 6 */
    size_t n = 0;
    int32_t labels[400];
    for (int c = 0; c < CLASSES; c++)
        for (int i = 0; i < (c == 3 ? 6 : 50 + 30 * c); i++)
            labels[n++] = c;
    char err[256];
    size_t *idx = NULL, m = 0, counts[CLASSES];
    assert_int_equal(eval_ft_subset_pick(labels, n, CLASSES, 10, 0, 5, &idx, &m, err, sizeof err), 0);
    split_class_counts(labels, idx, m, CLASSES, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    assert_int_equal(counts[2], 10);
    assert_int_equal(counts[3], 6);        /* all it has */
    assert_int_equal(m, 36);
    for (size_t i = 1; i < m; i++)
        assert_true(idx[i - 1] < idx[i]);  /* sorted, no repeats */
    free(idx);
    /* a fraction keeps each class's share */
    assert_int_equal(eval_ft_subset_pick(labels, n, CLASSES, 0, 0.5, 5, &idx, &m, err, sizeof err), 0);
    split_class_counts(labels, idx, m, CLASSES, counts);
    assert_int_equal(counts[0], 25);
    assert_int_equal(counts[1], 40);
    assert_int_equal(counts[2], 55);
    assert_int_equal(counts[3], 3);
    free(idx);
    char name[EVAL_FT_NAME_MAX];
    eval_ft_subset_name(10, 0, name, sizeof name);
    assert_string_equal(name, "10/class");
    eval_ft_subset_name(0, 0.01, name, sizeof name);
    assert_string_equal(name, "1%");
}

static void test_subset_seeded(void **state)
{
    (void)state;
    eval_images tr;
    make_images(&tr, N_TRAIN, 11);
    char err[256], h1[EVAL_FT_HASH_HEX], h2[EVAL_FT_HASH_HEX], h3[EVAL_FT_HASH_HEX];
    size_t *a = NULL, *b = NULL, *c = NULL, na, nb, nc;
    assert_int_equal(eval_ft_subset_pick(tr.labels, tr.n, CLASSES, 10, 0, 1, &a, &na, err, sizeof err), 0);
    assert_int_equal(eval_ft_subset_pick(tr.labels, tr.n, CLASSES, 10, 0, 1, &b, &nb, err, sizeof err), 0);
    assert_int_equal(eval_ft_subset_pick(tr.labels, tr.n, CLASSES, 10, 0, 2, &c, &nc, err, sizeof err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    eval_ft_subset_hash(tr.labels, a, na, h1);
    eval_ft_subset_hash(tr.labels, b, nb, h2);
    eval_ft_subset_hash(tr.labels, c, nc, h3);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);       /* another seed, other items */
    assert_int_equal(strlen(h1), 16);
    free(a); free(b); free(c);
    free_images(&tr);
}

static void test_separable(void **state)
{
    (void)state;
    eval_images tr, te;
    make_images(&tr, N_TRAIN, 21);
    make_images(&te, N_TEST, 22);
    char err[1024], hash[EVAL_FT_HASH_HEX];
    size_t *idx = NULL, n = 0;
    assert_int_equal(eval_ft_subset_pick(tr.labels, tr.n, CLASSES, 20, 0, 1, &idx, &n, err, sizeof err), 0);
    eval_ft_subset_hash(tr.labels, idx, n, hash);
    nn_net *ckpt = small_net("simclr", 5);
    char *desc = eval_ft_classifier_desc(nn_net_desc(ckpt), CLASSES, err, sizeof err);
    assert_non_null(desc);
    eval_ft_opts o;
    eval_ft_defaults(&o);
    o.eval_batch = 64;
    eval_ft_result scratch, ft, again;
    int rc = eval_ft_train(desc, NULL, &tr, idx, n, &te, CLASSES, &o, &scratch, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    rc = eval_ft_train(desc, ckpt, &tr, idx, n, &te, CLASSES, &o, &ft, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    printf("# separable: scratch %.2f%% (lr %g, wd %g), fine-tuned %.2f%% (lr %g, wd %g), %ld steps\n",
           100 * scratch.top1, scratch.lr, scratch.weight_decay, 100 * ft.top1, ft.lr, ft.weight_decay, ft.steps);
    assert_true(scratch.top1 >= 0.99);
    assert_true(ft.top1 >= 0.99);
    /* the same items for both, those that were picked */
    assert_string_equal(scratch.subset_hash, hash);
    assert_string_equal(ft.subset_hash, hash);
    /* 80 items, 32 a step: 20 epochs are 50 steps, the minimum is 100 */
    assert_int_equal(ft.steps, EVAL_FT_MIN_STEPS);
    assert_true(fabs(ft.epochs - (double)EVAL_FT_MIN_STEPS * EVAL_FT_BATCH / (double)n) < 1e-9);
    assert_true(ft.chosen_by_validation);
    /* seeded: the same again */
    rc = eval_ft_train(desc, ckpt, &tr, idx, n, &te, CLASSES, &o, &again, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_true(again.top1 == ft.top1);
    assert_true(again.lr == ft.lr && again.weight_decay == ft.weight_decay);
    assert_true(again.val_top1 == ft.val_top1);
    free(idx);
    free(desc);
    nn_net_destroy(&ckpt);
    free_images(&tr);
    free_images(&te);
}

static void test_finetune_record(void **state)
{
    (void)state;
    eval_data data;
    memset(&data, 0, sizeof data);
    make_images(&data.train, N_TRAIN, 31);
    make_images(&data.test, N_TEST, 32);
    data.n_classes = CLASSES;
    eval_options o;
    memset(&o, 0, sizeof o);
    o.batch = 64;
    o.seed = 3;
    o.readout.stage = EVAL_READOUT_POOLED;
    char err[1024];
    assert_int_equal(eval_ft_parse_option(&o.finetune, "finetune-per-class", "5", err, sizeof err), 0);
    assert_int_equal(eval_ft_parse_option(&o.finetune, "finetune", "0.1", err, sizeof err), 0);
    assert_int_equal(eval_ft_parse_option(&o.finetune, "finetune-epochs", "10", err, sizeof err), 0);
    assert_int_not_equal(eval_ft_parse_option(&o.finetune, "finetune", "1.5", err, sizeof err), 0);
    assert_int_not_equal(eval_ft_parse_option(&o.finetune, "finetune-per-class", "0", err, sizeof err), 0);
    assert_int_not_equal(eval_ft_parse_option(&o.finetune, "finetune-on", "last", err, sizeof err), 0);
    assert_non_null(strstr(err, "--finetune-on"));
    assert_int_equal(o.finetune.n_per_class, 1);
    assert_int_equal(o.finetune.n_fractions, 1);
    eval_probe_opts po;
    eval_probe_defaults(&po);
    po.max_iter = 200;
    nn_net *ckpt = small_net("simclr", 9);
    json_t *list = eval_finetune(ckpt, &data, &o, &po, NULL, err, sizeof err);
    if (!list)
        fail_msg("%s", err);
    assert_int_equal(json_array_size(list), 2);
    static const char *const keys[] = { "subset", "labels", "seed", "subset_hash", "scratch_top1", "probe_top1",
                                        "finetune_top1", "epochs", "steps", "lr", "weight_decay", "seconds" };
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++)
            assert_non_null(json_object_get(e, keys[j]));
        /* the recorded subset is the one the seed picks */
        size_t *idx = NULL, n = 0;
        char hash[EVAL_FT_HASH_HEX];
        assert_int_equal(eval_ft_subset_pick(data.train.labels, data.train.n, CLASSES, i == 0 ? 5 : 0, 0.1, 3,
                                             &idx, &n, err, sizeof err), 0);
        eval_ft_subset_hash(data.train.labels, idx, n, hash);
        free(idx);
        assert_string_equal(json_string_value(json_object_get(e, "subset_hash")), hash);
        assert_int_equal(json_integer_value(json_object_get(e, "labels")), (json_int_t)n);
        assert_string_equal(json_string_value(json_object_get(e, "subset")), i == 0 ? "5/class" : "10%");
        double top1 = json_real_value(json_object_get(e, "finetune_top1"));
        assert_true(top1 >= 0 && top1 <= 1);       /* a share, as every top-1 of eval.jsonl */
    }
    json_decref(list);
    nn_net_destroy(&ckpt);
    eval_data_release(&data);
}

int main(void)
{
    /* one thread of nn/parallel, so that nothing but the seed decides: the
     * seeded run must repeat exactly */
    setenv("NN_THREADS", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classifier_desc),
        cmocka_unit_test(test_subset_balance),
        cmocka_unit_test(test_subset_seeded),
        cmocka_unit_test(test_separable),
        cmocka_unit_test(test_finetune_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of dataset/: the binary formats, folder discovery, decoding
 * rules (channels, alpha, 16-bit, CMYK, shrinking) and the refusal of bad
 * files with the right reason. Every input is written into a fresh temporary
 * folder; images are made with libvips, broken ones by hand. */
#define _GNU_SOURCE  /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#include <zlib.h>

#include "dataset/dataset.h"
#include "dataset/split.h"

static char g_tmp[256];

/* ---------------------------------------------------------------- helpers */

static char *path_of(const char *rel)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, rel);
    return buf[k];
}

static void make_dir(const char *rel)
{
    assert_int_equal(mkdir(path_of(rel), 0755), 0);
}

static void write_bytes(const char *rel, const void *data, size_t len)
{
    FILE *f = fopen(path_of(rel), "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_gz(const char *rel, const void *data, size_t len)
{
    gzFile f = gzopen(path_of(rel), "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    gzclose(f);
}

static uint8_t *read_bytes(const char *rel, size_t *len)
{
    FILE *f = fopen(path_of(rel), "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Deterministic test pattern: value of (y, x, c) in image k. */
static uint8_t pattern(int k, int y, int x, int c)
{
    return (uint8_t)(k * 37 + y * 11 + x * 5 + c * 71);
}

/* Writes an h x w image with `bands` uchar bands (pattern k) with libvips,
 * in the format chosen by the file suffix (".png", ".jpg[Q=95]", ...). */
static void write_image(const char *rel, int k, int h, int w, int bands, VipsInterpretation interp,
                        const char *suffix_opts)
{
    size_t n = (size_t)h * w * bands;
    uint8_t *px = malloc(n);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < bands; c++)
                px[((size_t)y * w + x) * bands + c] = pattern(k, y, x, c);
    VipsImage *im = vips_image_new_from_memory_copy(px, n, w, h, bands, VIPS_FORMAT_UCHAR);
    assert_non_null(im);
    im->Type = interp;
    char name[600];
    snprintf(name, sizeof name, "%s%s", path_of(rel), suffix_opts ? suffix_opts : "");
    if (vips_image_write_to_file(im, name, NULL))
        fail_msg("cannot write %s: %s", name, vips_error_buffer());
    g_object_unref(im);
    free(px);
}

/* The pixels libvips itself decodes from a file, as (H, W, bands) uchar. */
static uint8_t *vips_decode(const char *rel, int *h, int *w, int *bands)
{
    VipsImage *im = vips_image_new_from_file(path_of(rel), NULL);
    assert_non_null(im);
    size_t len;
    uint8_t *p = vips_image_write_to_memory(im, &len);
    *h = im->Ysize, *w = im->Xsize, *bands = im->Bands;
    g_object_unref(im);
    return p;
}

static dataset_decode_opts_t opts(int channels, uint32_t max_side)
{
    return (dataset_decode_opts_t){.channels = channels, .max_side = max_side,
                                   .max_pixels = DATASET_DEFAULT_MAX_PIXELS};
}

/* Opens a dataset expected to load; fails the test with its message otherwise. */
static dataset_t *open_ok(const char *path, dataset_format_t f)
{
    char err[1024];
    dataset_t *ds = dataset_new(path, f, err, sizeof err);
    if (!ds)
        fail_msg("cannot open %s: %s", path, err);
    return ds;
}

static void open_fails(const char *path, dataset_format_t f, const char *expect_in_message)
{
    char err[1024] = "";
    dataset_t *ds = dataset_new(path, f, err, sizeof err);
    if (ds)
        fail_msg("%s opened, expected a refusal", path);
    if (expect_in_message && !strstr(err, expect_in_message))
        fail_msg("message \"%s\" lacks \"%s\"", err, expect_in_message);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_dataset.XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---------------------------------------------------------------- IDX */

#define IDX_N 5
#define IDX_H 4
#define IDX_W 3

static void idx_buffers(uint8_t **images, size_t *ilen, uint8_t **labels, size_t *llen, uint32_t claim_images,
                        uint32_t claim_labels)
{
    *ilen = 16 + IDX_N * IDX_H * IDX_W;
    *images = calloc(1, *ilen);
    (*images)[2] = 0x08, (*images)[3] = 3;
    put_be32(*images + 4, claim_images);
    put_be32(*images + 8, IDX_H);
    put_be32(*images + 12, IDX_W);
    for (int k = 0; k < IDX_N; k++)
        for (int y = 0; y < IDX_H; y++)
            for (int x = 0; x < IDX_W; x++)
                (*images)[16 + (k * IDX_H + y) * IDX_W + x] = pattern(k, y, x, 0);
    *llen = 8 + IDX_N;
    *labels = calloc(1, *llen);
    (*labels)[2] = 0x08, (*labels)[3] = 1;
    put_be32(*labels + 4, claim_labels);
    for (int k = 0; k < IDX_N; k++)
        (*labels)[8 + k] = (uint8_t)(9 - k);
}

static void check_idx(dataset_t *ds)
{
    assert_int_equal(dataset_format(ds), DATASET_FORMAT_IDX);
    assert_int_equal(dataset_count(ds), IDX_N);
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    for (int k = 0; k < IDX_N; k++) {
        assert_int_equal(dataset_label(ds, (size_t)k), 9 - k);
        dataset_decode_opts_t o = opts(0, 0);
        assert_int_equal(dataset_read(ds, (size_t)k, &o, &img, &err), 0);
        assert_int_equal(img.height, IDX_H);
        assert_int_equal(img.width, IDX_W);
        assert_int_equal(img.channels, 1);
        for (int y = 0; y < IDX_H; y++)
            for (int x = 0; x < IDX_W; x++)
                assert_int_equal(img.pixels[y * IDX_W + x], pattern(k, y, x, 0));
        o = opts(3, 0);
        assert_int_equal(dataset_read(ds, (size_t)k, &o, &img, &err), 0);
        assert_int_equal(img.channels, 3);
        assert_int_equal(img.pixels[3 * 5 + 2], pattern(k, 1, 2, 0));
    }
    dataset_image_release(&img);
}

static void test_idx_plain(void **state)
{
    (void)state;
    uint8_t *im, *lb;
    size_t il, ll;
    idx_buffers(&im, &il, &lb, &ll, IDX_N, IDX_N);
    make_dir("idx");
    write_bytes("idx/train-images-idx3-ubyte", im, il);
    write_bytes("idx/train-labels-idx1-ubyte", lb, ll);
    dataset_t *ds = open_ok(path_of("idx"), DATASET_FORMAT_AUTO);  /* the folder */
    check_idx(ds);
    dataset_destroy(&ds);
    assert_null(ds);
    ds = open_ok(path_of("idx/train-images-idx3-ubyte"), DATASET_FORMAT_AUTO);  /* the images file */
    check_idx(ds);
    dataset_destroy(&ds);
    ds = open_ok(path_of("idx/train-labels-idx1-ubyte"), DATASET_FORMAT_IDX);  /* the labels file */
    check_idx(ds);
    dataset_destroy(&ds);
    free(im);
    free(lb);
}

static void test_idx_gz(void **state)
{
    (void)state;
    uint8_t *im, *lb;
    size_t il, ll;
    idx_buffers(&im, &il, &lb, &ll, IDX_N, IDX_N);
    make_dir("idxgz");
    write_gz("idxgz/t10k-images-idx3-ubyte.gz", im, il);
    write_gz("idxgz/t10k-labels-idx1-ubyte.gz", lb, ll);
    dataset_t *ds = open_ok(path_of("idxgz"), DATASET_FORMAT_AUTO);  /* the only images file */
    check_idx(ds);
    char name[256];
    assert_non_null(strstr(dataset_item_name(ds, 2, name, sizeof name), "t10k-images-idx3-ubyte.gz[2]"));
    dataset_destroy(&ds);
    free(im);
    free(lb);
}

static void test_idx_refused(void **state)
{
    (void)state;
    uint8_t *im, *lb;
    size_t il, ll;
    make_dir("idxbad");
    /* Images header claims one more image than the file holds. */
    idx_buffers(&im, &il, &lb, &ll, IDX_N + 1, IDX_N);
    write_bytes("idxbad/train-images-idx3-ubyte", im, il);
    write_bytes("idxbad/train-labels-idx1-ubyte", lb, ll);
    open_fails(path_of("idxbad"), DATASET_FORMAT_AUTO, "header says 6 images");
    free(im), free(lb);
    /* Label count differs from the image count. */
    idx_buffers(&im, &il, &lb, &ll, IDX_N, IDX_N - 1);
    write_bytes("idxbad/train-images-idx3-ubyte", im, il);
    write_bytes("idxbad/train-labels-idx1-ubyte", lb, ll);
    open_fails(path_of("idxbad"), DATASET_FORMAT_AUTO, "labels declared");
    free(im), free(lb);
    /* Wrong magic. */
    idx_buffers(&im, &il, &lb, &ll, IDX_N, IDX_N);
    im[3] = 2;
    write_bytes("idxbad/train-images-idx3-ubyte", im, il);
    write_bytes("idxbad/train-labels-idx1-ubyte", lb, ll);
    open_fails(path_of("idxbad"), DATASET_FORMAT_AUTO, "magic");
    /* Truncated gzip. */
    free(im), free(lb);
    idx_buffers(&im, &il, &lb, &ll, IDX_N, IDX_N);
    remove(path_of("idxbad/train-images-idx3-ubyte"));
    write_gz("idxbad/train-images-idx3-ubyte.gz", im, il);
    size_t gl;
    uint8_t *gz = read_bytes("idxbad/train-images-idx3-ubyte.gz", &gl);
    write_bytes("idxbad/train-images-idx3-ubyte.gz", gz, gl / 2);
    open_fails(path_of("idxbad/train-images-idx3-ubyte.gz"), DATASET_FORMAT_AUTO, NULL);
    /* No labels file. */
    remove(path_of("idxbad/train-labels-idx1-ubyte"));
    write_gz("idxbad/train-images-idx3-ubyte.gz", im, il);
    open_fails(path_of("idxbad"), DATASET_FORMAT_AUTO, "no labels file");
    free(gz), free(im), free(lb);
}

/* ---------------------------------------------------------------- CIFAR */

static uint8_t *cifar_records(int n, int label_bytes, int first_label)
{
    size_t rec = (size_t)label_bytes + 3072;
    uint8_t *p = malloc(rec * (size_t)n);
    for (int k = 0; k < n; k++) {
        uint8_t *r = p + rec * (size_t)k;
        if (label_bytes == 2)
            r[0] = (uint8_t)(k % 20), r[1] = (uint8_t)(first_label + k);   /* coarse, fine */
        else
            r[0] = (uint8_t)(first_label + k);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    r[label_bytes + c * 1024 + y * 32 + x] = pattern(first_label + k, y, x, c);
    }
    return p;
}

static void check_cifar_item(dataset_t *ds, size_t i, int label, int k)
{
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    assert_int_equal(dataset_label(ds, i), label);
    assert_int_equal(dataset_read(ds, i, &o, &img, &err), 0);
    assert_int_equal(img.height, 32);
    assert_int_equal(img.width, 32);
    assert_int_equal(img.channels, 3);
    for (int y = 0; y < 32; y += 7)
        for (int x = 0; x < 32; x += 5)
            for (int c = 0; c < 3; c++)
                assert_int_equal(img.pixels[(y * 32 + x) * 3 + c], pattern(k, y, x, c));
    o = opts(1, 0);
    assert_int_equal(dataset_read(ds, i, &o, &img, &err), 0);
    assert_int_equal(img.channels, 1);
    dataset_image_release(&img);
}

static void test_cifar10(void **state)
{
    (void)state;
    make_dir("c10");
    uint8_t *a = cifar_records(3, 1, 0), *b = cifar_records(2, 1, 3);
    write_bytes("c10/data_batch_1.bin", a, 3 * 3073);
    write_bytes("c10/data_batch_2.bin", b, 2 * 3073);
    write_bytes("c10/test_batch.bin", a, 3073);   /* not part of the training set */
    dataset_t *ds = open_ok(path_of("c10"), DATASET_FORMAT_AUTO);
    assert_int_equal(dataset_format(ds), DATASET_FORMAT_CIFAR10);
    assert_int_equal(dataset_count(ds), 5);
    assert_int_equal(dataset_n_classes(ds), 10);
    for (int k = 0; k < 5; k++)
        check_cifar_item(ds, (size_t)k, k, k);
    char name[256];
    assert_non_null(strstr(dataset_item_name(ds, 4, name, sizeof name), "data_batch_2.bin[1]"));
    dataset_destroy(&ds);
    ds = open_ok(path_of("c10/test_batch.bin"), DATASET_FORMAT_AUTO);
    assert_int_equal(dataset_count(ds), 1);
    dataset_destroy(&ds);
    free(a), free(b);
}

/* The evaluator's held-out test part, which the loader's --hold-out leaves out:
 * disjoint from the rest, class-balanced, the same for the same seed. */
static void test_held_out_part(void **state)
{
    (void)state;
    enum { N = 200 };
    make_dir("c10held");
    uint8_t *recs = cifar_records(N, 1, 0);
    for (int k = 0; k < N; k++)
        recs[(size_t)k * 3073] = (uint8_t)(k % 10);
    write_bytes("c10held/data_batch_1.bin", recs, (size_t)N * 3073);
    dataset_t *ds = open_ok(path_of("c10held"), DATASET_FORMAT_AUTO);
    size_t *rest, *held, n_rest, n_held, *rest2, *held2, n_rest2, n_held2;
    char err[256];
    assert_int_equal(split_test_part(ds, 0.1, 1, &rest, &n_rest, &held, &n_held, err, sizeof err), 0);
    assert_int_equal(n_held, 20);
    assert_int_equal(n_rest, 180);
    int seen[N] = {0}, per_class[10] = {0};
    for (size_t i = 0; i < n_held; i++)
        seen[held[i]]++, per_class[held[i] % 10]++;
    for (size_t i = 0; i < n_rest; i++)
        seen[rest[i]]++;
    for (int k = 0; k < N; k++)
        assert_int_equal(seen[k], 1);
    for (int c = 0; c < 10; c++)
        assert_int_equal(per_class[c], 2);
    assert_int_equal(split_test_part(ds, 0.1, 1, &rest2, &n_rest2, &held2, &n_held2, err, sizeof err), 0);
    assert_memory_equal(held, held2, n_held * sizeof *held);
    free(rest2), free(held2);
    assert_int_equal(split_test_part(ds, 0.1, 2, &rest2, &n_rest2, &held2, &n_held2, err, sizeof err), 0);
    assert_int_equal(n_held2, n_held);
    assert_true(memcmp(held, held2, n_held * sizeof *held) != 0);
    free(rest2), free(held2), free(rest), free(held), free(recs);
    dataset_destroy(&ds);
}

static void test_cifar100(void **state)
{
    (void)state;
    make_dir("c100");
    uint8_t *a = cifar_records(4, 2, 90);
    write_bytes("c100/train.bin", a, 4 * 3074);
    dataset_t *ds = open_ok(path_of("c100"), DATASET_FORMAT_AUTO);
    assert_int_equal(dataset_format(ds), DATASET_FORMAT_CIFAR100);
    assert_int_equal(dataset_count(ds), 4);
    assert_int_equal(dataset_n_classes(ds), 100);
    for (int k = 0; k < 4; k++)
        check_cifar_item(ds, (size_t)k, 90 + k, 90 + k);   /* the fine label */
    dataset_destroy(&ds);
    free(a);
}

static void test_cifar_refused(void **state)
{
    (void)state;
    make_dir("cbad");
    uint8_t *a = cifar_records(2, 1, 0);
    write_bytes("cbad/data_batch_1.bin", a, 2 * 3073 - 100);
    open_fails(path_of("cbad"), DATASET_FORMAT_AUTO, "not a whole number");
    /* A CIFAR-10 file read as CIFAR-100 is refused: its length is no multiple of 3074. */
    write_bytes("cbad/data_batch_1.bin", a, 2 * 3073);
    open_fails(path_of("cbad/data_batch_1.bin"), DATASET_FORMAT_CIFAR100, "3074-byte");
    write_bytes("cbad/empty.bin", a, 0);
    open_fails(path_of("cbad/empty.bin"), DATASET_FORMAT_CIFAR10, NULL);
    free(a);
}

/* ---------------------------------------------------------------- folders */

static void test_class_folders(void **state)
{
    (void)state;
    make_dir("cls");
    make_dir("cls/zebra");
    make_dir("cls/ant");
    make_dir("cls/ant/nested");
    make_dir("cls/.hidden");
    write_image("cls/zebra/b.png", 1, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    write_image("cls/zebra/a.png", 2, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    write_image("cls/ant/x.png", 3, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    write_image("cls/ant/nested/y.png", 4, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    write_image("cls/.hidden/z.png", 5, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    write_image("cls/stray.png", 6, 8, 6, 3, VIPS_INTERPRETATION_sRGB, NULL);
    dataset_t *ds = open_ok(path_of("cls"), DATASET_FORMAT_AUTO);
    assert_int_equal(dataset_format(ds), DATASET_FORMAT_FOLDER);
    assert_int_equal(dataset_count(ds), 4);
    assert_int_equal(dataset_n_classes(ds), 2);
    assert_string_equal(dataset_class_name(ds, 0), "ant");
    assert_string_equal(dataset_class_name(ds, 1), "zebra");
    const char *expect[] = {"cls/ant/x.png", "cls/ant/nested/y.png", "cls/zebra/a.png", "cls/zebra/b.png"};
    const int labels[] = {0, 0, 1, 1}, ks[] = {3, 4, 2, 1};
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    for (size_t i = 0; i < 4; i++) {
        char name[512];
        dataset_item_name(ds, i, name, sizeof name);
        assert_string_equal(name, path_of(expect[i]));
        assert_int_equal(dataset_label(ds, i), labels[i]);
        assert_int_equal(dataset_read(ds, i, &o, &img, &err), 0);
        assert_int_equal(img.height, 8);
        assert_int_equal(img.width, 6);
        assert_int_equal(img.channels, 3);
        assert_int_equal(img.pixels[(5 * 6 + 4) * 3 + 1], pattern(ks[i], 5, 4, 1));
    }
    dataset_image_release(&img);
    dataset_destroy(&ds);
}

static void test_flat_folder(void **state)
{
    (void)state;
    make_dir("flat");
    write_image("flat/2.png", 1, 5, 5, 1, VIPS_INTERPRETATION_B_W, NULL);
    write_image("flat/1.jpg", 2, 5, 5, 3, VIPS_INTERPRETATION_sRGB, NULL);
    dataset_t *ds = open_ok(path_of("flat"), DATASET_FORMAT_AUTO);
    assert_int_equal(dataset_count(ds), 2);
    assert_int_equal(dataset_n_classes(ds), 0);
    assert_int_equal(dataset_label(ds, 0), DATASET_LABEL_NONE);
    assert_int_equal(dataset_label(ds, 1), DATASET_LABEL_NONE);
    char name[512];
    assert_string_equal(dataset_item_name(ds, 0, name, sizeof name), path_of("flat/1.jpg"));
    dataset_destroy(&ds);
}

static void test_missing_and_empty(void **state)
{
    (void)state;
    open_fails(path_of("does-not-exist"), DATASET_FORMAT_AUTO, "HINT");
    make_dir("empty");
    open_fails(path_of("empty"), DATASET_FORMAT_AUTO, "holds no items");
    make_dir("empty/cls");
    open_fails(path_of("empty"), DATASET_FORMAT_AUTO, "holds no items");
}

/* ---------------------------------------------------------------- decoding */

/* Reads the only item of a one-file flat folder. */
static int read_single(const char *dir, const char *file_rel, const dataset_decode_opts_t *o, dataset_image_t *img,
                       dataset_error_t *err)
{
    (void)file_rel;
    dataset_t *ds = open_ok(path_of(dir), DATASET_FORMAT_FOLDER);
    assert_int_equal(dataset_count(ds), 1);
    int rc = dataset_read(ds, 0, o, img, err);
    dataset_destroy(&ds);
    return rc;
}

static void expect_reason(const char *dir, const char *file, dataset_reason_t reason)
{
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err = {0};
    dataset_decode_opts_t o = opts(0, 0);
    int rc = read_single(dir, file, &o, &img, &err);
    if (rc != -1)
        fail_msg("%s/%s decoded, expected a %s failure", dir, file, dataset_reason_name(reason));
    if (err.reason != reason)
        fail_msg("%s/%s: reason %s, expected %s (%s)", dir, file, dataset_reason_name(err.reason),
                 dataset_reason_name(reason), err.message);
    if (!strstr(err.message, file))
        fail_msg("message \"%s\" does not name %s", err.message, file);
    dataset_image_release(&img);
}

/* Writes a valid image, then keeps only `keep` of its bytes. */
static void write_truncated(const char *dir, const char *file, const char *suffix_opts, double keep)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", dir, file);
    write_image(rel, 7, 64, 64, 3, VIPS_INTERPRETATION_sRGB, suffix_opts);
    size_t len;
    uint8_t *p = read_bytes(rel, &len);
    write_bytes(rel, p, (size_t)((double)len * keep));
    free(p);
}

static void put_chunk(uint8_t **p, const char *type, const uint8_t *data, uint32_t len)
{
    put_be32(*p, len);
    memcpy(*p + 4, type, 4);
    if (len)
        memcpy(*p + 8, data, len);
    put_be32(*p + 8 + len, (uint32_t)crc32(0, *p + 4, 4 + len));
    *p += 12 + len;
}

/* A valid-looking PNG header claiming width x height, with almost no data. */
static void write_png_bomb(const char *rel, uint32_t width, uint32_t height)
{
    uint8_t buf[256], *p = buf;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(p, sig, 8);
    p += 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, width);
    put_be32(ihdr + 4, height);
    ihdr[8] = 8;   /* bit depth */
    ihdr[9] = 2;   /* RGB */
    put_chunk(&p, "IHDR", ihdr, 13);
    uint8_t raw[4] = {0}, z[64];
    uLongf zl = sizeof z;
    compress(z, &zl, raw, sizeof raw);
    put_chunk(&p, "IDAT", z, (uint32_t)zl);
    put_chunk(&p, "IEND", NULL, 0);
    write_bytes(rel, buf, (size_t)(p - buf));
}

static void test_corrupt_files(void **state)
{
    (void)state;
    make_dir("bad1"), make_dir("bad2"), make_dir("bad3"), make_dir("bad4"), make_dir("bad5"), make_dir("bad6");
    write_truncated("bad1", "cut.jpg", NULL, 0.5);
    expect_reason("bad1", "cut.jpg", DATASET_ERR_CORRUPT);
    write_truncated("bad2", "cut.png", NULL, 0.5);
    expect_reason("bad2", "cut.png", DATASET_ERR_CORRUPT);
    write_bytes("bad3/zero.jpg", "", 0);
    expect_reason("bad3", "zero.jpg", DATASET_ERR_CORRUPT);
    const char *text = "this is not an image, only text\n";
    write_bytes("bad4/text.jpg", text, strlen(text));
    expect_reason("bad4", "text.jpg", DATASET_ERR_CORRUPT);
    write_png_bomb("bad5/bomb.png", 30000, 30000);
    expect_reason("bad5", "bomb.png", DATASET_ERR_TOO_LARGE);
    /* Listed, then gone: unreadable. */
    write_image("bad6/gone.png", 1, 4, 4, 3, VIPS_INTERPRETATION_sRGB, NULL);
    dataset_t *ds = open_ok(path_of("bad6"), DATASET_FORMAT_AUTO);
    remove(path_of("bad6/gone.png"));
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    assert_int_equal(dataset_read(ds, 0, &o, &img, &err), -1);
    assert_int_equal(err.reason, DATASET_ERR_UNREADABLE);
    assert_non_null(strstr(err.message, "gone.png"));
    dataset_destroy(&ds);
    /* max_pixels also applies to a real, decodable JPEG (checked on its header). */
    make_dir("bad7");
    write_image("bad7/big.jpg", 1, 100, 100, 3, VIPS_INTERPRETATION_sRGB, NULL);
    ds = open_ok(path_of("bad7"), DATASET_FORMAT_AUTO);
    o.max_pixels = 9999;
    assert_int_equal(dataset_read(ds, 0, &o, &img, &err), -1);
    assert_int_equal(err.reason, DATASET_ERR_TOO_LARGE);
    o.max_pixels = 10000;
    assert_int_equal(dataset_read(ds, 0, &o, &img, &err), 0);
    dataset_destroy(&ds);
    dataset_image_release(&img);
}

static void test_channels(void **state)
{
    (void)state;
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    make_dir("gray");
    write_image("gray/g.png", 3, 6, 7, 1, VIPS_INTERPRETATION_B_W, NULL);
    dataset_decode_opts_t o = opts(0, 0);
    assert_int_equal(read_single("gray", "g.png", &o, &img, &err), 0);
    assert_int_equal(img.channels, 1);
    assert_int_equal(img.pixels[2 * 7 + 5], pattern(3, 2, 5, 0));
    o = opts(3, 0);
    assert_int_equal(read_single("gray", "g.png", &o, &img, &err), 0);
    assert_int_equal(img.channels, 3);
    for (int c = 0; c < 3; c++)
        assert_int_equal(img.pixels[(2 * 7 + 5) * 3 + c], pattern(3, 2, 5, 0));

    /* A colour JPEG forced to one channel, a gray JPEG forced to three. */
    make_dir("cj");
    write_image("cj/c.jpg", 1, 16, 16, 3, VIPS_INTERPRETATION_sRGB, NULL);
    o = opts(1, 0);
    assert_int_equal(read_single("cj", "c.jpg", &o, &img, &err), 0);
    assert_int_equal(img.channels, 1);
    make_dir("gj");
    write_image("gj/g.jpg", 1, 16, 16, 1, VIPS_INTERPRETATION_B_W, NULL);
    o = opts(0, 0);
    assert_int_equal(read_single("gj", "g.jpg", &o, &img, &err), 0);
    assert_int_equal(img.channels, 1);
    o = opts(3, 0);
    assert_int_equal(read_single("gj", "g.jpg", &o, &img, &err), 0);
    assert_int_equal(img.channels, 3);
    dataset_image_release(&img);
}

static void test_alpha_dropped(void **state)
{
    (void)state;
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    make_dir("rgba");
    write_image("rgba/a.png", 2, 5, 9, 4, VIPS_INTERPRETATION_sRGB, NULL);
    dataset_decode_opts_t o = opts(0, 0);
    assert_int_equal(read_single("rgba", "a.png", &o, &img, &err), 0);
    assert_int_equal(img.channels, 3);
    assert_non_null(strstr(img.note, "a.png: alpha dropped"));
    for (int c = 0; c < 3; c++)
        assert_int_equal(img.pixels[(4 * 9 + 8) * 3 + c], pattern(2, 4, 8, c));
    make_dir("ga");
    write_image("ga/a.png", 2, 5, 9, 2, VIPS_INTERPRETATION_B_W, NULL);
    assert_int_equal(read_single("ga", "a.png", &o, &img, &err), 0);
    assert_int_equal(img.channels, 1);
    assert_non_null(strstr(img.note, "alpha dropped"));
    assert_int_equal(img.pixels[4 * 9 + 8], pattern(2, 4, 8, 0));
    dataset_image_release(&img);
}

static void test_16bit_png(void **state)
{
    (void)state;
    const int h = 4, w = 5;
    uint16_t px[4 * 5 * 3];
    for (int i = 0; i < h * w * 3; i++)
        px[i] = (uint16_t)(pattern(1, i / 15, i % 15, 0) * 257);
    VipsImage *im = vips_image_new_from_memory_copy(px, sizeof px, w, h, 3, VIPS_FORMAT_USHORT);
    im->Type = VIPS_INTERPRETATION_RGB16;
    make_dir("p16");
    assert_int_equal(vips_image_write_to_file(im, path_of("p16/deep.png"), NULL), 0);
    g_object_unref(im);
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    assert_int_equal(read_single("p16", "deep.png", &o, &img, &err), 0);
    assert_int_equal(img.channels, 3);
    assert_non_null(strstr(img.note, "16-bit integer samples reduced to 8-bit"));
    for (int i = 0; i < h * w * 3; i++)
        assert_int_equal(img.pixels[i], px[i] / 257);
    dataset_image_release(&img);
}

static void test_cmyk_jpeg(void **state)
{
    (void)state;
    make_dir("cmyk");
    write_image("cmyk/k.jpg", 1, 8, 8, 4, VIPS_INTERPRETATION_CMYK, NULL);
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    if (read_single("cmyk", "k.jpg", &o, &img, &err))
        fail_msg("%s", err.message);
    assert_int_equal(img.channels, 3);
    assert_non_null(strstr(img.note, "CMYK converted to sRGB"));
    assert_int_equal(img.height, 8);
    dataset_image_release(&img);
}

static void test_max_side(void **state)
{
    (void)state;
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    make_dir("big");
    write_image("big/wide.jpg", 1, 100, 200, 3, VIPS_INTERPRETATION_sRGB, NULL);
    dataset_decode_opts_t o = opts(0, 50);
    assert_int_equal(read_single("big", "wide.jpg", &o, &img, &err), 0);
    assert_int_equal(img.width, 50);
    assert_int_equal(img.height, 25);
    assert_int_equal(img.channels, 3);
    o = opts(0, 400);   /* already small enough: untouched */
    assert_int_equal(read_single("big", "wide.jpg", &o, &img, &err), 0);
    assert_int_equal(img.width, 200);
    make_dir("bigpng");
    write_image("bigpng/tall.png", 1, 90, 30, 1, VIPS_INTERPRETATION_B_W, NULL);
    o = opts(0, 30);
    assert_int_equal(read_single("bigpng", "tall.png", &o, &img, &err), 0);
    assert_int_equal(img.height, 30);
    assert_int_equal(img.width, 10);
    assert_int_equal(img.channels, 1);
    dataset_image_release(&img);
}

/* Our JPEG decoding equals libvips' own decode of the same file. */
static void test_jpeg_matches_libvips(void **state)
{
    (void)state;
    make_dir("jp");
    write_image("jp/a.jpg", 1, 32, 32, 3, VIPS_INTERPRETATION_sRGB, "[Q=90]");
    write_image("jp/b.jpg", 2, 33, 17, 3, VIPS_INTERPRETATION_sRGB, "[Q=75,no_subsample]");
    write_image("jp/c.jpg", 3, 32, 32, 1, VIPS_INTERPRETATION_B_W, NULL);
    dataset_t *ds = open_ok(path_of("jp"), DATASET_FORMAT_AUTO);
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t err;
    dataset_decode_opts_t o = opts(0, 0);
    const char *files[] = {"jp/a.jpg", "jp/b.jpg", "jp/c.jpg"};
    for (size_t i = 0; i < 3; i++) {
        int h, w, bands;
        uint8_t *ref = vips_decode(files[i], &h, &w, &bands);
        assert_int_equal(dataset_read(ds, i, &o, &img, &err), 0);
        assert_int_equal(img.height, h);
        assert_int_equal(img.width, w);
        assert_int_equal(img.channels, bands);
        assert_memory_equal(img.pixels, ref, (size_t)h * w * bands);
        g_free(ref);
    }
    dataset_image_release(&img);
    dataset_destroy(&ds);
}

static void test_names(void **state)
{
    (void)state;
    dataset_format_t f;
    assert_int_equal(dataset_format_parse("cifar100", &f), 0);
    assert_int_equal(f, DATASET_FORMAT_CIFAR100);
    assert_int_equal(dataset_format_parse("jpeg", &f), -1);
    assert_string_equal(dataset_reason_name(DATASET_ERR_TOO_LARGE), "too_large");
}

int main(int argc, char **argv)
{
    (void)argc;
    if (VIPS_INIT(argv[0]))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_plain),         cmocka_unit_test(test_idx_gz),
        cmocka_unit_test(test_idx_refused),       cmocka_unit_test(test_cifar10),
        cmocka_unit_test(test_cifar100),          cmocka_unit_test(test_cifar_refused),
        cmocka_unit_test(test_class_folders),     cmocka_unit_test(test_flat_folder),
        cmocka_unit_test(test_missing_and_empty), cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_channels),          cmocka_unit_test(test_alpha_dropped),
        cmocka_unit_test(test_16bit_png),         cmocka_unit_test(test_cmyk_jpeg),
        cmocka_unit_test(test_max_side),          cmocka_unit_test(test_jpeg_matches_libvips),
        cmocka_unit_test(test_names),             cmocka_unit_test(test_held_out_part),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    vips_shutdown();
    return failed;
}

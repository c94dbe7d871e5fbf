/* test_proto: unit tests of the wire protocol (proto/).
 *
 * Round trips of every message type with edge values; the exact bytes of a
 * small message, written by an independent msgpack writer below (the oracle
 * for the wire layout of PROTOCOL.md); refusal of truncated, oversized,
 * wrong-type, wrong-format, wrong-version, inconsistent and over-limit
 * messages; random and mutated inputs.
 *
 *   test_proto                      run the tests
 *   test_proto --write-corpus DIR   write fuzzer seed messages to DIR/fuzz_<type>/
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "proto/proto.h"
#include "tests/fuzz/proto_equal.h"

#define RANDOM_SEED        0x5eedf00du
#define RANDOM_INPUTS      5000
#define RANDOM_MAX_LEN     300
#define MUTATIONS_PER_SEED 3000
#define THREAD_MESSAGES    2000

/* What the last refusing call said; per thread, as test_threads decodes in several. */
static _Thread_local char g_err[PROTO_ERR_MAX];

/* ------------------------------------------------------------------------ */
/* A minimal msgpack writer, independent of proto/ and of msgpack-c.        */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} wbuf_t;

static void w_bytes(wbuf_t *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        w->p = realloc(w->p, cap);
        assert_non_null(w->p);
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->len, p, n);
    w->len += n;
}

static void w_byte(wbuf_t *w, uint8_t b)
{
    w_bytes(w, &b, 1);
}

/* tag, then v as n big-endian bytes */
static void w_tag_be(wbuf_t *w, uint8_t tag, uint64_t v, int n)
{
    w_byte(w, tag);
    for (int i = n - 1; i >= 0; i--)
        w_byte(w, (uint8_t)(v >> (8 * i)));
}

static void w_uint(wbuf_t *w, uint64_t v)
{
    if (v < 0x80)
        w_byte(w, (uint8_t)v);
    else if (v <= UINT8_MAX)
        w_tag_be(w, 0xcc, v, 1);
    else if (v <= UINT16_MAX)
        w_tag_be(w, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        w_tag_be(w, 0xce, v, 4);
    else
        w_tag_be(w, 0xcf, v, 8);
}

static void w_int(wbuf_t *w, int64_t v)
{
    if (v >= 0)
        w_uint(w, (uint64_t)v);
    else if (v >= -32)
        w_byte(w, (uint8_t)v);
    else if (v >= INT8_MIN)
        w_tag_be(w, 0xd0, (uint64_t)v & 0xff, 1);
    else if (v >= INT16_MIN)
        w_tag_be(w, 0xd1, (uint64_t)v & 0xffff, 2);
    else if (v >= INT32_MIN)
        w_tag_be(w, 0xd2, (uint64_t)v & 0xffffffff, 4);
    else
        w_tag_be(w, 0xd3, (uint64_t)v, 8);
}

static void w_f64(wbuf_t *w, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    w_tag_be(w, 0xcb, u, 8);
}

static void w_strn(wbuf_t *w, const char *s, size_t n)
{
    if (n < 32)
        w_byte(w, (uint8_t)(0xa0 | n));
    else if (n <= UINT8_MAX)
        w_tag_be(w, 0xd9, n, 1);
    else if (n <= UINT16_MAX)
        w_tag_be(w, 0xda, n, 2);
    else
        w_tag_be(w, 0xdb, n, 4);
    w_bytes(w, s, n);
}

static void w_str(wbuf_t *w, const char *s)
{
    w_strn(w, s, strlen(s));
}

static void w_bin(wbuf_t *w, const void *p, size_t n)
{
    if (n <= UINT8_MAX)
        w_tag_be(w, 0xc4, n, 1);
    else if (n <= UINT16_MAX)
        w_tag_be(w, 0xc5, n, 2);
    else
        w_tag_be(w, 0xc6, n, 4);
    w_bytes(w, p, n);
}

static void w_container(wbuf_t *w, uint8_t fix, uint8_t tag16, uint32_t n)
{
    if (n < 16)
        w_byte(w, (uint8_t)(fix | n));
    else if (n <= UINT16_MAX)
        w_tag_be(w, tag16, n, 2);
    else
        w_tag_be(w, (uint8_t)(tag16 + 1), n, 4);
}

static void w_map(wbuf_t *w, uint32_t n)
{
    w_container(w, 0x80, 0xde, n);
}

static void w_array(wbuf_t *w, uint32_t n)
{
    w_container(w, 0x90, 0xdc, n);
}

static void w_header(wbuf_t *w, uint32_t n_fields, const char *type)
{
    w_map(w, 3 + n_fields);
    w_str(w, "fmt");
    w_str(w, PROTO_FORMAT);
    w_str(w, "ver");
    w_uint(w, PROTO_VERSION);
    w_str(w, "type");
    w_str(w, type);
}

static void w_free(wbuf_t *w)
{
    free(w->p);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------------------ */
/* Messages described as field lists, to build valid and broken variants.   */

typedef enum { V_UINT, V_INT, V_F64, V_STR, V_BIN, V_NIL, V_BOOL, V_RAW } vkind_t;

typedef struct {
    const char *key;
    vkind_t kind;
    uint64_t u;
    int64_t i;
    double d;
    const char *s;
    const void *p;   /* V_BIN data, or V_RAW ready msgpack bytes */
    size_t n;
    int optional;    /* the message stays valid without it */
} tfield_t;

static void w_value(wbuf_t *w, const tfield_t *v)
{
    switch (v->kind) {
    case V_UINT: w_uint(w, v->u); break;
    case V_INT: w_int(w, v->i); break;
    case V_F64: w_f64(w, v->d); break;
    case V_STR: w_str(w, v->s); break;
    case V_BIN: w_bin(w, v->p, v->n); break;
    case V_NIL: w_byte(w, 0xc0); break;
    case V_BOOL: w_byte(w, 0xc3); break;
    case V_RAW: w_bytes(w, v->p, v->n); break;
    }
}

/* Writes the message `type` with fields f[0..n); field `omit` left out,
 * field `replace` given the value `with` (-1: none). */
static void build(wbuf_t *w, const char *type, const tfield_t *f, int n, int omit, int replace,
                  const tfield_t *with)
{
    w->len = 0;
    w_header(w, (uint32_t)(n - (omit >= 0)), type);
    for (int k = 0; k < n; k++) {
        if (k == omit)
            continue;
        w_str(w, f[k].key);
        w_value(w, k == replace ? with : &f[k]);
    }
}

/* Decodes with the decoder of `type` into a scratch struct and clears it. */
static int decode_as(proto_msg_type_t type, const void *buf, size_t len)
{
    int rc = -1;
    switch (type) {
    case PROTO_MSG_SAMPLE: {
        proto_sample_t s;
        rc = proto_sample_decode(&s, buf, len, g_err, sizeof g_err);
        break;
    }
    case PROTO_MSG_VIEWBATCH: {
        proto_viewbatch_t vb;
        rc = proto_viewbatch_decode(&vb, buf, len, g_err, sizeof g_err);
        proto_viewbatch_clear(&vb);
        break;
    }
    case PROTO_MSG_CHECKPOINT: {
        proto_checkpoint_t c;
        rc = proto_checkpoint_decode(&c, buf, len, g_err, sizeof g_err);
        break;
    }
    case PROTO_MSG_CONTROL: {
        proto_control_t c;
        rc = proto_control_decode(&c, buf, len, g_err, sizeof g_err);
        break;
    }
    case PROTO_MSG_STATS: {
        proto_stats_t st;
        rc = proto_stats_decode(&st, buf, len, g_err, sizeof g_err);
        proto_stats_clear(&st);
        break;
    }
    case PROTO_MSG_ACK: {
        proto_ack_t a;
        rc = proto_ack_decode(&a, buf, len, g_err, sizeof g_err);
        proto_ack_clear(&a);
        break;
    }
    case PROTO_MSG_HAVE: {
        proto_have_t h;
        rc = proto_have_decode(&h, buf, len, g_err, sizeof g_err);
        break;
    }
    default:
        break;
    }
    return rc;
}

/* Decodes a copy in a buffer of exactly len bytes, so that the sanitizer
 * build catches any read past the end. */
static int decode_copy(proto_msg_type_t type, const void *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    int rc = decode_as(type, copy, len);
    free(copy);
    return rc;
}

static const proto_msg_type_t all_types[] = {
    PROTO_MSG_SAMPLE, PROTO_MSG_VIEWBATCH, PROTO_MSG_CHECKPOINT, PROTO_MSG_CONTROL,
    PROTO_MSG_STATS, PROTO_MSG_ACK, PROTO_MSG_HAVE,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Fails, at the caller's line, unless rc is -1 and the error contains needle. */
#define expect_error(rc, needle) expect_error_at((rc), (needle), __FILE__, __LINE__)

static void expect_error_at(int rc, const char *needle, const char *file, int line)
{
    if (rc != -1) {
        print_error("ERROR: expected -1 (error containing \"%s\"), got %d\n", needle, rc);
        _fail(file, line);
    }
    if (!strstr(g_err, needle)) {
        print_error("ERROR: error \"%s\" does not contain \"%s\"\n", g_err, needle);
        _fail(file, line);
    }
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ------------------------------------------------------------------------ */
/* Valid example messages.                                                  */

typedef struct {
    uint8_t pixels[4 * 5 * 3];
    proto_sample_t s;
} sample_fixture_t;

static void sample_fixture(sample_fixture_t *f)
{
    for (size_t i = 0; i < sizeof f->pixels; i++)
        f->pixels[i] = (uint8_t)(i * 37 + 11);
    f->s = (proto_sample_t){ .index = 123456789012ull, .epoch = 7, .label = 9, .height = 4,
                             .width = 5, .channels = 3, .pixels = f->pixels };
}

#define VB_SAMPLES 3
#define VB_VIEWS   2
#define VB_C       3
#define VB_H       4
#define VB_W       5
#define VB_FLOATS  (VB_VIEWS * VB_C * VB_H * VB_W)

typedef struct {
    float data[VB_SAMPLES][VB_FLOATS];
    proto_view_sample_t samples[VB_SAMPLES];
    proto_viewbatch_t vb;
} vb_fixture_t;

static void vb_fixture(vb_fixture_t *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < VB_SAMPLES; i++) {
        for (int k = 0; k < VB_FLOATS; k++)
            f->data[i][k] = (float)(i * 1000 + k) * 0.125f - 3.0f;
        f->samples[i].index = (uint64_t)i * 1000 + 1;
        f->samples[i].epoch = 2;
        f->samples[i].label = i == 1 ? PROTO_LABEL_NONE : i;
        for (int k = 0; k < VB_VIEWS; k++)
            f->samples[i].target[k] = (i + k) % 4;
        f->samples[i].data = f->data[i];
    }
    f->vb = (proto_viewbatch_t){ .dtype = PROTO_DTYPE_F32, .views = VB_VIEWS, .channels = VB_C,
                                 .height = VB_H, .width = VB_W, .n_samples = VB_SAMPLES,
                                 .samples = f->samples };
}

static const uint8_t ckpt_bytes[] = { 'C', 'K', 'P', 'T', 0, 1, 2, 3, 0xff, 0xfe };

static void ckpt_fixture(proto_checkpoint_t *c)
{
    memset(c, 0, sizeof *c);
    c->step = 50000;
    c->epoch = 12;
    strcpy(c->method, "simclr");
    strcpy(c->arch, "conv3x3-32,conv3x3-64,pool,fc-128");
    strcpy(c->path, "runs/simclr/step-50000.ckpt");
    c->bytes = ckpt_bytes;
    c->n_bytes = sizeof ckpt_bytes;
}

static void control_fixture(proto_control_t *c)
{
    memset(c, 0, sizeof *c);
    c->kind = PROTO_CONTROL_END_OF_EPOCH;
    strcpy(c->sender, "loader@host:1234");
    c->epoch = 3;
    c->count = 50000;
}

static proto_stat_t stats_items[3] = {
    { "samples_sent", 123456.0 }, { "skipped_corrupt", 2.0 }, { "images_per_s", 51234.5 },
};

static void stats_fixture(proto_stats_t *st)
{
    memset(st, 0, sizeof *st);
    strcpy(st->sender, "augmenter@host:77");
    st->time = 1732770000.25;
    st->n_stats = 3;
    st->stats = stats_items;
}

static uint64_t ack_items[4] = { 0, 59999, 123456789012ull, UINT64_MAX };

static void ack_fixture(proto_ack_t *a)
{
    memset(a, 0, sizeof *a);
    strcpy(a->sender, "trainer@host:99");
    a->epoch = 5;
    a->n_indices = 4;
    a->indices = ack_items;
}

/* epoch 7: samples 0, 9 and 15 done; epoch 8: none; epoch 9: sample 2 */
static const uint8_t have_bits0[2] = { 0x01, 0x82 }, have_bits2[1] = { 0x04 };

static void have_fixture(proto_have_t *h)
{
    memset(h, 0, sizeof *h);
    strcpy(h->sender, "trainer@host:99");
    h->epoch = 7;
    h->step = 1234;
    h->n_epochs = 3;
    h->done[0] = have_bits0;
    h->done_bytes[0] = sizeof have_bits0;
    h->done[2] = have_bits2;
    h->done_bytes[2] = sizeof have_bits2;
}

/* Encodes the example message of `type` into out. */
static void encode_fixture(proto_msg_type_t type, proto_buf_t *out)
{
    static sample_fixture_t sf;
    static vb_fixture_t vf;
    proto_checkpoint_t c;
    proto_control_t ctl;
    proto_stats_t st;
    proto_ack_t ack;
    proto_have_t have;
    int rc = -1;
    switch (type) {
    case PROTO_MSG_SAMPLE: sample_fixture(&sf); rc = proto_sample_encode(out, &sf.s, g_err, sizeof g_err); break;
    case PROTO_MSG_VIEWBATCH: vb_fixture(&vf); rc = proto_viewbatch_encode(out, &vf.vb, g_err, sizeof g_err); break;
    case PROTO_MSG_CHECKPOINT: ckpt_fixture(&c); rc = proto_checkpoint_encode(out, &c, g_err, sizeof g_err); break;
    case PROTO_MSG_CONTROL: control_fixture(&ctl); rc = proto_control_encode(out, &ctl, g_err, sizeof g_err); break;
    case PROTO_MSG_STATS: stats_fixture(&st); rc = proto_stats_encode(out, &st, g_err, sizeof g_err); break;
    case PROTO_MSG_ACK: ack_fixture(&ack); rc = proto_ack_encode(out, &ack, g_err, sizeof g_err); break;
    case PROTO_MSG_HAVE: have_fixture(&have); rc = proto_have_encode(out, &have, g_err, sizeof g_err); break;
    default: break;
    }
    if (rc)
        fail_msg("encoding the %s fixture failed: %s", proto_msg_type_name(type), g_err);
}

/* ------------------------------------------------------------------------ */
/* Round trips.                                                             */

static void roundtrip_sample(const proto_sample_t *in)
{
    proto_buf_t buf;
    proto_sample_t out;
    proto_msg_type_t type;
    proto_buf_init(&buf);
    assert_int_equal(proto_sample_encode(&buf, in, g_err, sizeof g_err), 0);
    assert_int_equal(proto_peek_type(buf.data, buf.len, &type, g_err, sizeof g_err), 0);
    assert_int_equal(type, PROTO_MSG_SAMPLE);
    if (proto_sample_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_sample_equal(in, &out));
    assert_int_equal(out.index, in->index);
    assert_int_equal(out.label, in->label);
    /* pixels are borrowed from the message, not copied */
    assert_true(out.pixels > buf.data && out.pixels + proto_sample_bytes(&out) == buf.data + buf.len);
    proto_buf_release(&buf);
}

static void test_sample_roundtrip(void **state)
{
    (void)state;
    sample_fixture_t f;
    sample_fixture(&f);
    roundtrip_sample(&f.s);

    /* edge values */
    uint8_t one = 0xab;
    proto_sample_t edge = { .index = UINT64_MAX, .epoch = UINT32_MAX, .label = PROTO_LABEL_NONE,
                            .height = 1, .width = 1, .channels = 1, .pixels = &one };
    roundtrip_sample(&edge);
    edge.label = INT32_MAX;
    edge.index = 0;
    edge.epoch = 0;
    roundtrip_sample(&edge);

    /* a long thin image at the side limit, 4 channels */
    size_t n = (size_t)PROTO_MAX_SIDE * 2 * PROTO_MAX_CHANNELS;
    uint8_t *px = malloc(n);
    assert_non_null(px);
    for (size_t i = 0; i < n; i++)
        px[i] = (uint8_t)(i ^ (i >> 8));
    proto_sample_t wide = { .index = 1, .height = 2, .width = PROTO_MAX_SIDE,
                            .channels = PROTO_MAX_CHANNELS, .label = 0, .pixels = px };
    roundtrip_sample(&wide);
    free(px);
}

static void test_sample_wire_bytes(void **state)
{
    (void)state;
    /* The documented layout, written by the test's own writer. */
    uint8_t px[2] = { 0x7f, 0x80 };
    proto_sample_t s = { .index = 5, .epoch = 300, .label = -1, .height = 1, .width = 2,
                         .channels = 1, .pixels = px };
    wbuf_t w = { 0 };
    w_header(&w, 7, "sample");
    w_str(&w, "index"); w_uint(&w, 5);
    w_str(&w, "epoch"); w_uint(&w, 300);
    w_str(&w, "label"); w_int(&w, -1);
    w_str(&w, "height"); w_uint(&w, 1);
    w_str(&w, "width"); w_uint(&w, 2);
    w_str(&w, "channels"); w_uint(&w, 1);
    w_str(&w, "pixels"); w_bin(&w, px, 2);

    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_sample_encode(&buf, &s, g_err, sizeof g_err), 0);
    assert_int_equal(buf.len, w.len);
    assert_memory_equal(buf.data, w.p, w.len);
    /* the first bytes spelled out: map of 10, "fmt": "sslpipe", "ver": 1 */
    static const uint8_t head[] = { 0x8a, 0xa3, 'f', 'm', 't', 0xa7, 's', 's', 'l', 'p',
                                    'i', 'p', 'e', 0xa3, 'v', 'e', 'r', 0x01 };
    assert_memory_equal(buf.data, head, sizeof head);
    proto_buf_release(&buf);
    w_free(&w);
}

static void test_viewbatch_wire_bytes(void **state)
{
    (void)state;
    /* one sample, one 1x1x1 float view: data is the float's little-endian bytes */
    float v = 1.5f;  /* 0x3fc00000 */
    proto_view_sample_t s = { .index = 9, .epoch = 1, .label = 2, .target = { 3 }, .data = &v };
    proto_viewbatch_t vb = { .dtype = PROTO_DTYPE_F32, .views = 1, .channels = 1, .height = 1,
                             .width = 1, .n_samples = 1, .samples = &s };
    static const uint8_t le[4] = { 0x00, 0x00, 0xc0, 0x3f };
    wbuf_t w = { 0 };
    w_header(&w, 6, "viewbatch");
    w_str(&w, "dtype"); w_str(&w, "f32");
    w_str(&w, "views"); w_uint(&w, 1);
    w_str(&w, "channels"); w_uint(&w, 1);
    w_str(&w, "height"); w_uint(&w, 1);
    w_str(&w, "width"); w_uint(&w, 1);
    w_str(&w, "samples"); w_array(&w, 1);
    w_map(&w, 5);
    w_str(&w, "index"); w_uint(&w, 9);
    w_str(&w, "epoch"); w_uint(&w, 1);
    w_str(&w, "label"); w_int(&w, 2);
    w_str(&w, "targets"); w_array(&w, 1); w_int(&w, 3);
    w_str(&w, "data"); w_bin(&w, le, 4);

    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err), 0);
    assert_int_equal(buf.len, w.len);
    assert_memory_equal(buf.data, w.p, w.len);

    /* with the optional target_classes, after width; without it (0), the
     * bytes above: the same as before the field existed */
    vb.target_classes = 8;
    w.len = 0;
    w_header(&w, 7, "viewbatch");
    w_str(&w, "dtype"); w_str(&w, "f32");
    w_str(&w, "views"); w_uint(&w, 1);
    w_str(&w, "channels"); w_uint(&w, 1);
    w_str(&w, "height"); w_uint(&w, 1);
    w_str(&w, "width"); w_uint(&w, 1);
    w_str(&w, "target_classes"); w_uint(&w, 8);
    w_str(&w, "samples"); w_array(&w, 1);
    w_map(&w, 5);
    w_str(&w, "index"); w_uint(&w, 9);
    w_str(&w, "epoch"); w_uint(&w, 1);
    w_str(&w, "label"); w_int(&w, 2);
    w_str(&w, "targets"); w_array(&w, 1); w_int(&w, 3);
    w_str(&w, "data"); w_bin(&w, le, 4);
    assert_int_equal(proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err), 0);
    assert_int_equal(buf.len, w.len);
    assert_memory_equal(buf.data, w.p, w.len);
    /* a target the announced classes do not hold is refused */
    vb.target_classes = 3;
    expect_error(proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err), "below target_classes");
    vb.target_classes = PROTO_MAX_TARGET_CLASSES + 1;
    expect_error(proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err), "PROTO_MAX_TARGET_CLASSES");
    proto_buf_release(&buf);
    w_free(&w);
}

static void roundtrip_viewbatch(const proto_viewbatch_t *in)
{
    proto_buf_t buf;
    proto_viewbatch_t out;
    proto_buf_init(&buf);
    if (proto_viewbatch_encode(&buf, in, g_err, sizeof g_err))
        fail_msg("encode: %s", g_err);
    if (proto_viewbatch_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_viewbatch_equal(in, &out));
    assert_int_equal(out.n_samples, in->n_samples);
    for (uint32_t i = 0; i < out.n_samples; i++) {
        const uint8_t *d = out.samples[i].data;
        assert_true(d > buf.data && d < buf.data + buf.len);  /* borrowed */
    }
    proto_viewbatch_clear(&out);
    assert_null(out.samples);
    assert_int_equal(out.n_samples, 0);
    proto_buf_release(&buf);
}

static void test_viewbatch_roundtrip(void **state)
{
    (void)state;
    vb_fixture_t f;
    vb_fixture(&f);
    roundtrip_viewbatch(&f.vb);
    assert_int_equal(proto_viewbatch_sample_bytes(&f.vb), VB_FLOATS * sizeof(float));

    /* edge floats keep their bits (little-endian on the wire) */
    f.data[0][0] = -0.0f;
    f.data[0][1] = INFINITY;
    f.data[0][2] = 1e-45f;
    f.data[0][3] = NAN;
    f.samples[0].index = UINT64_MAX;
    f.samples[0].epoch = UINT32_MAX;
    f.samples[0].label = INT32_MAX;
    f.samples[0].target[0] = PROTO_TARGET_NONE;
    f.samples[0].target[1] = INT32_MAX;
    roundtrip_viewbatch(&f.vb);
    /* announced target classes travel too */
    f.samples[0].target[1] = PROTO_MAX_TARGET_CLASSES - 1;
    f.vb.target_classes = PROTO_MAX_TARGET_CLASSES;
    roundtrip_viewbatch(&f.vb);
    f.vb.target_classes = 0;

    /* uint8 views, the maximum number of views, one sample */
    uint8_t u8[PROTO_MAX_VIEWS * 2 * 3 * 1];
    for (size_t i = 0; i < sizeof u8; i++)
        u8[i] = (uint8_t)(255 - i);
    proto_view_sample_t s = { .index = 4, .epoch = 0, .label = 1, .data = u8 };
    for (uint32_t k = 0; k < PROTO_MAX_VIEWS; k++)
        s.target[k] = (int32_t)k % 4;
    proto_viewbatch_t vb = { .dtype = PROTO_DTYPE_U8, .views = PROTO_MAX_VIEWS, .channels = 1,
                             .height = 2, .width = 3, .n_samples = 1, .samples = &s };
    roundtrip_viewbatch(&vb);

    /* the maximum number of samples */
    proto_view_sample_t *many = calloc(PROTO_MAX_BATCH_SAMPLES, sizeof *many);
    assert_non_null(many);
    uint8_t px = 42;
    for (uint32_t i = 0; i < PROTO_MAX_BATCH_SAMPLES; i++) {
        many[i].index = i;
        many[i].label = (int32_t)(i % 10);
        many[i].target[0] = (int32_t)(i % 4);
        many[i].data = &px;
    }
    proto_viewbatch_t big = { .dtype = PROTO_DTYPE_U8, .views = 1, .channels = 1, .height = 1,
                              .width = 1, .n_samples = PROTO_MAX_BATCH_SAMPLES, .samples = many };
    roundtrip_viewbatch(&big);
    free(many);
}

static void roundtrip_checkpoint(const proto_checkpoint_t *in)
{
    proto_buf_t buf;
    proto_checkpoint_t out;
    proto_buf_init(&buf);
    if (proto_checkpoint_encode(&buf, in, g_err, sizeof g_err))
        fail_msg("encode: %s", g_err);
    if (proto_checkpoint_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_checkpoint_equal(in, &out));
    assert_string_equal(out.method, in->method);
    assert_string_equal(out.arch, in->arch);
    assert_string_equal(out.path, in->path);
    proto_buf_release(&buf);
}

static void test_checkpoint_roundtrip(void **state)
{
    (void)state;
    proto_checkpoint_t c;
    ckpt_fixture(&c);
    roundtrip_checkpoint(&c);

    /* path only */
    c.bytes = NULL;
    c.n_bytes = 0;
    c.step = UINT64_MAX;
    c.epoch = UINT32_MAX;
    roundtrip_checkpoint(&c);

    /* bytes only, names and texts at their length limits, UTF-8 */
    ckpt_fixture(&c);
    c.path[0] = '\0';
    memset(c.method, 'm', sizeof c.method - 1);
    c.method[sizeof c.method - 1] = '\0';
    memset(c.arch, 'a', sizeof c.arch - 1);
    c.arch[sizeof c.arch - 1] = '\0';
    memcpy(c.arch, "r\xc3\xa9seau \xe2\x86\x92 \xf0\x9f\x98\x80", 16);
    c.step = 0;
    c.epoch = 0;
    roundtrip_checkpoint(&c);
}

static void test_control_roundtrip(void **state)
{
    (void)state;
    static const proto_control_kind_t kinds[] = {
        PROTO_CONTROL_STOP, PROTO_CONTROL_END_OF_EPOCH, PROTO_CONTROL_END_OF_STREAM,
        PROTO_CONTROL_HEARTBEAT,
    };
    static const char *const names[] = { "stop", "end_of_epoch", "end_of_stream", "heartbeat" };
    for (size_t k = 0; k < 4; k++) {
        proto_control_t c, out;
        proto_buf_t buf;
        control_fixture(&c);
        c.kind = kinds[k];
        c.epoch = k == 0 ? UINT32_MAX : (uint32_t)k;
        c.count = k == 1 ? UINT64_MAX : k;
        assert_string_equal(proto_control_kind_name(c.kind), names[k]);
        proto_buf_init(&buf);
        assert_int_equal(proto_control_encode(&buf, &c, g_err, sizeof g_err), 0);
        if (proto_control_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
            fail_msg("decode: %s", g_err);
        assert_true(proto_control_equal(&c, &out));
        assert_int_equal(out.kind, kinds[k]);
        assert_int_equal(out.count, c.count);
        proto_buf_release(&buf);
    }
    assert_string_equal(proto_control_kind_name((proto_control_kind_t)0), "invalid");
    assert_string_equal(proto_control_kind_name((proto_control_kind_t)99), "invalid");
}

/* The Control socket's topics: one per kind and per type that travels there,
 * short ASCII, none the prefix of another (a SUB matches prefixes), and
 * checked against the body whatever order the body's fields are in. */
static void test_topics(void **state)
{
    (void)state;
    const char *topics[] = {
        proto_control_topic(PROTO_CONTROL_STOP), proto_control_topic(PROTO_CONTROL_END_OF_EPOCH),
        proto_control_topic(PROTO_CONTROL_END_OF_STREAM), proto_control_topic(PROTO_CONTROL_HEARTBEAT),
        proto_type_topic(PROTO_MSG_ACK), proto_type_topic(PROTO_MSG_HAVE), proto_type_topic(PROTO_MSG_STATS),
    };
    const size_t n = sizeof topics / sizeof topics[0];
    assert_string_equal(topics[0], "stop");
    assert_string_equal(topics[3], "heartbeat");
    for (size_t i = 0; i < n; i++) {
        assert_non_null(topics[i]);
        size_t len = strlen(topics[i]);
        assert_true(len >= 1 && len <= PROTO_MAX_TOPIC);
        for (size_t k = 0; k < len; k++)
            assert_true(topics[i][k] > 0x20 && topics[i][k] < 0x7f);
        for (size_t j = 0; j < n; j++)
            if (i != j)
                assert_false(strncmp(topics[i], topics[j], len) == 0);
    }
    assert_null(proto_control_topic((proto_control_kind_t)0));
    assert_null(proto_control_topic((proto_control_kind_t)99));
    assert_null(proto_type_topic(PROTO_MSG_SAMPLE));
    assert_null(proto_type_topic(PROTO_MSG_CONTROL));

    /* a STOP with its fields in another order than the encoder's */
    wbuf_t w = {0};
    w_header(&w, 4, "control");
    w_str(&w, "count"); w_uint(&w, 0);
    w_str(&w, "sender"); w_str(&w, "python@test:1");
    w_str(&w, "epoch"); w_uint(&w, 0);
    w_str(&w, "kind"); w_str(&w, "stop");
    assert_int_equal(proto_topic_check("stop", 4, w.p, w.len, g_err, sizeof g_err), 0);
    expect_error(proto_topic_check("heartbeat", 9, w.p, w.len, g_err, sizeof g_err), "travels under topic \"stop\"");
    expect_error(proto_topic_check("sto", 3, w.p, w.len, g_err, sizeof g_err), "not \"sto\"");
    uint8_t old[128];
    size_t n_old = proto_control_stop_prefix(old, sizeof old);
    assert_true(n_old > 0);
    assert_false(w.len >= n_old && memcmp(w.p, old, n_old) == 0);   /* the old prefix cannot see it */
    w_free(&w);

    proto_buf_t b;
    proto_buf_init(&b);
    proto_sample_t smp = {.index = 1, .label = 2, .height = 1, .width = 1, .channels = 1, .pixels = (const uint8_t *)"x"};
    assert_int_equal(proto_sample_encode(&b, &smp, g_err, sizeof g_err), 0);
    expect_error(proto_topic_check("stop", 4, b.data, b.len, g_err, sizeof g_err), "no topic");
    expect_error(proto_topic_check("stop", 4, "\x80", 1, g_err, sizeof g_err), "");   /* not one of ours */
    proto_buf_release(&b);
}

static void roundtrip_stats(const proto_stats_t *in)
{
    proto_buf_t buf;
    proto_stats_t out;
    proto_buf_init(&buf);
    if (proto_stats_encode(&buf, in, g_err, sizeof g_err))
        fail_msg("encode: %s", g_err);
    if (proto_stats_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_stats_equal(in, &out));
    proto_stats_clear(&out);
    assert_null(out.stats);
    proto_buf_release(&buf);
}

static void test_stats_roundtrip(void **state)
{
    (void)state;
    proto_stats_t st;
    stats_fixture(&st);
    roundtrip_stats(&st);

    st.n_stats = 0;  /* no counters */
    st.stats = NULL;
    st.time = 0;
    roundtrip_stats(&st);

    /* the maximum number of counters, with awkward values */
    proto_stat_t *many = calloc(PROTO_MAX_STATS, sizeof *many);
    assert_non_null(many);
    for (uint32_t i = 0; i < PROTO_MAX_STATS; i++) {
        snprintf(many[i].name, sizeof many[i].name, "counter_%u", i);
        many[i].value = (double)i * -1.5;
    }
    many[0].value = NAN;
    many[1].value = -INFINITY;
    many[2].value = 1e308;
    many[3].value = -0.0;
    memset(many[4].name, 'n', PROTO_MAX_NAME - 1);
    many[4].name[PROTO_MAX_NAME - 1] = '\0';
    st.stats = many;
    st.n_stats = PROTO_MAX_STATS;
    st.time = 4e9;
    roundtrip_stats(&st);
    free(many);
}

static void roundtrip_ack(const proto_ack_t *in)
{
    proto_buf_t buf;
    proto_ack_t out;
    proto_msg_type_t type;
    proto_buf_init(&buf);
    if (proto_ack_encode(&buf, in, g_err, sizeof g_err))
        fail_msg("encode: %s", g_err);
    assert_int_equal(proto_peek_type(buf.data, buf.len, &type, g_err, sizeof g_err), 0);
    assert_int_equal(type, PROTO_MSG_ACK);
    if (proto_ack_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_ack_equal(in, &out));
    proto_ack_clear(&out);
    assert_null(out.indices);
    proto_buf_release(&buf);
}

static void test_ack_roundtrip(void **state)
{
    (void)state;
    proto_ack_t a;
    ack_fixture(&a);
    roundtrip_ack(&a);
    assert_string_equal(proto_msg_type_name(PROTO_MSG_ACK), "ack");

    /* one index; then the most indices a message may hold, epoch at its limit */
    a.n_indices = 1;
    a.epoch = UINT32_MAX;
    roundtrip_ack(&a);
    uint64_t *many = malloc(PROTO_MAX_ACK_INDICES * sizeof *many);
    assert_non_null(many);
    for (uint32_t i = 0; i < PROTO_MAX_ACK_INDICES; i++)
        many[i] = (uint64_t)i * 977u + (i % 3 ? 0 : (1ull << 40));
    a.indices = many;
    a.n_indices = PROTO_MAX_ACK_INDICES;
    a.epoch = 0;
    roundtrip_ack(&a);
    free(many);
}

static void roundtrip_have(const proto_have_t *in)
{
    proto_buf_t buf;
    proto_have_t out;
    proto_msg_type_t type;
    proto_buf_init(&buf);
    if (proto_have_encode(&buf, in, g_err, sizeof g_err))
        fail_msg("encode: %s", g_err);
    assert_int_equal(proto_peek_type(buf.data, buf.len, &type, g_err, sizeof g_err), 0);
    assert_int_equal(type, PROTO_MSG_HAVE);
    if (proto_have_decode(&out, buf.data, buf.len, g_err, sizeof g_err))
        fail_msg("decode: %s", g_err);
    assert_true(proto_have_equal(in, &out));
    proto_buf_release(&buf);
}

static void test_have_roundtrip(void **state)
{
    (void)state;
    proto_have_t h;
    have_fixture(&h);
    roundtrip_have(&h);
    assert_string_equal(proto_msg_type_name(PROTO_MSG_HAVE), "have");

    /* the bits as the loader reads them */
    proto_buf_t buf;
    proto_buf_init(&buf);
    assert_int_equal(proto_have_encode(&buf, &h, g_err, sizeof g_err), 0);
    proto_have_t d;
    assert_int_equal(proto_have_decode(&d, buf.data, buf.len, g_err, sizeof g_err), 0);
    for (uint64_t i = 0; i < 20; i++) {
        assert_int_equal(proto_have_bit(&d, 7, i), i == 0 || i == 9 || i == 15);
        assert_int_equal(proto_have_bit(&d, 8, i), 0);
        assert_int_equal(proto_have_bit(&d, 9, i), i == 2);
        assert_int_equal(proto_have_bit(&d, 6, i), 0);    /* before: not described */
        assert_int_equal(proto_have_bit(&d, 10, i), 0);   /* after: nothing done */
    }
    assert_null(d.done[1]);
    assert_int_equal(d.done_bytes[1], 0);
    proto_buf_release(&buf);

    /* no epoch described; then the most, one of them at the size limit */
    h.n_epochs = 0;
    h.epoch = UINT32_MAX;
    h.step = UINT64_MAX;
    roundtrip_have(&h);
    uint8_t *big = malloc(PROTO_MAX_HAVE_BYTES);
    assert_non_null(big);
    for (size_t i = 0; i < PROTO_MAX_HAVE_BYTES; i++)
        big[i] = (uint8_t)(i * 31u);
    have_fixture(&h);
    h.n_epochs = PROTO_MAX_HAVE_EPOCHS;
    h.done[3] = big;
    h.done_bytes[3] = PROTO_MAX_HAVE_BYTES;
    roundtrip_have(&h);
    free(big);
}

static void test_buf_reuse_and_detach(void **state)
{
    (void)state;
    proto_buf_t buf;
    proto_buf_init(&buf);
    encode_fixture(PROTO_MSG_VIEWBATCH, &buf);
    size_t big = buf.len;
    uint8_t *first = buf.data;
    encode_fixture(PROTO_MSG_CONTROL, &buf);
    assert_true(buf.len < big);   /* replaced, not appended */
    assert_ptr_equal(buf.data, first);  /* the buffer was reused */
    assert_int_equal(decode_as(PROTO_MSG_CONTROL, buf.data, buf.len), 0);
    size_t len = 0;
    uint8_t *owned = proto_buf_detach(&buf, &len);
    assert_non_null(owned);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_int_equal(decode_as(PROTO_MSG_CONTROL, owned, len), 0);
    free(owned);
    proto_buf_release(&buf);
}

/* ------------------------------------------------------------------------ */
/* Refusals.                                                                */

static void test_truncated_every_prefix(void **state)
{
    (void)state;
    proto_buf_t buf;
    proto_buf_init(&buf);
    for (size_t t = 0; t < N_TYPES; t++) {
        encode_fixture(all_types[t], &buf);
        assert_int_equal(decode_copy(all_types[t], buf.data, buf.len), 0);
        for (size_t len = 0; len < buf.len; len++) {
            if (decode_copy(all_types[t], buf.data, len) != -1)
                fail_msg("%s: the %zu-byte prefix of a %zu-byte message decoded",
                         proto_msg_type_name(all_types[t]), len, buf.len);
        }
        /* and one byte too many is trailing garbage */
        uint8_t *longer = malloc(buf.len + 1);
        assert_non_null(longer);
        memcpy(longer, buf.data, buf.len);
        longer[buf.len] = 0xc0;
        expect_error(decode_as(all_types[t], longer, buf.len + 1), "trailing");
        free(longer);
    }
    proto_buf_release(&buf);
}

static void test_oversized_claims(void **state)
{
    (void)state;
    /* containers and blobs declaring far more than is present: the pre-scan
     * must refuse them ("declares") before msgpack-c allocates anything */
    static const uint8_t array32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
    static const uint8_t map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    for (size_t t = 0; t < N_TYPES; t++) {
        expect_error(decode_copy(all_types[t], array32, sizeof array32), "map");
        expect_error(decode_copy(all_types[t], map32, sizeof map32), "declares");
    }

    wbuf_t w = { 0 };
    /* a sample whose pixels bin32 claims 4 GB */
    w_header(&w, 7, "sample");
    w_str(&w, "index"); w_uint(&w, 0);
    w_str(&w, "epoch"); w_uint(&w, 0);
    w_str(&w, "label"); w_int(&w, 0);
    w_str(&w, "height"); w_uint(&w, 32);
    w_str(&w, "width"); w_uint(&w, 32);
    w_str(&w, "channels"); w_uint(&w, 3);
    w_str(&w, "pixels"); w_tag_be(&w, 0xc6, 0xffffffffu, 4);
    expect_error(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len), "declares 4294967295 bytes");

    /* an unknown field holding array32 of 2^32-1 elements in 5 bytes */
    w.len = 0;
    w_header(&w, 1, "control");
    w_str(&w, "x");
    w_tag_be(&w, 0xdd, 0xffffffffu, 4);
    expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), "declares 4294967295 elements");

    /* a viewbatch whose samples array claims 65535 elements, 2 present */
    w.len = 0;
    w_header(&w, 6, "viewbatch");
    w_str(&w, "dtype"); w_str(&w, "u8");
    w_str(&w, "views"); w_uint(&w, 1);
    w_str(&w, "channels"); w_uint(&w, 1);
    w_str(&w, "height"); w_uint(&w, 1);
    w_str(&w, "width"); w_uint(&w, 1);
    w_str(&w, "samples"); w_tag_be(&w, 0xdc, 0xffff, 2);
    w_byte(&w, 0x80);
    w_byte(&w, 0x80);
    expect_error(decode_copy(PROTO_MSG_VIEWBATCH, w.p, w.len), "declares 65535 elements");

    /* a map in the counters declaring 2^32-1 entries */
    w.len = 0;
    w_header(&w, 3, "stats");
    w_str(&w, "sender"); w_str(&w, "s");
    w_str(&w, "time"); w_f64(&w, 1);
    w_str(&w, "counters"); w_tag_be(&w, 0xdf, 0xffffffffu, 4);
    expect_error(decode_copy(PROTO_MSG_STATS, w.p, w.len), "declares 4294967295 entries");

    /* an ext32 and a str32 declaring 4 GB in an unknown field */
    w.len = 0;
    w_header(&w, 1, "stats");
    w_str(&w, "x");
    w_tag_be(&w, 0xc9, 0xffffffffu, 4);
    w_byte(&w, 0x01);
    expect_error(decode_copy(PROTO_MSG_STATS, w.p, w.len), "an ext at byte 31 declares 4294967295 bytes");
    w.len = 0;
    w_header(&w, 1, "stats");
    w_str(&w, "x");
    w_tag_be(&w, 0xdb, 0xfffffff0u, 4);
    expect_error(decode_copy(PROTO_MSG_STATS, w.p, w.len), "a str at byte 31 declares 4294967280 bytes");

    /* nesting deeper than PROTO_MAX_DEPTH in an unknown field */
    w.len = 0;
    w_header(&w, 1, "control");
    w_str(&w, "deep");
    for (int i = 0; i < 40; i++)
        w_array(&w, 1);
    w_uint(&w, 0);
    expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), "PROTO_MAX_DEPTH");

    /* more values than PROTO_MAX_OBJECTS, all present */
    w.len = 0;
    w_header(&w, 3, "control");
    w_str(&w, "kind"); w_str(&w, "stop");
    w_str(&w, "sender"); w_str(&w, "t");
    w_str(&w, "many"); w_array(&w, PROTO_MAX_OBJECTS + 1);
    for (uint32_t i = 0; i <= PROTO_MAX_OBJECTS; i++)
        w_byte(&w, 0xc0);
    expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), "PROTO_MAX_OBJECTS");

    /* a message larger than PROTO_MAX_MESSAGE_BYTES is refused by its length
     * alone, before a byte of it is read */
    expect_error(decode_as(PROTO_MSG_SAMPLE, w.p, (size_t)PROTO_MAX_MESSAGE_BYTES + 1),
                 "PROTO_MAX_MESSAGE_BYTES");

    /* the never-used byte */
    w.len = 0;
    w_header(&w, 1, "control");
    w_str(&w, "x");
    w_byte(&w, 0xc1);
    expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), "0xc1");
    w_free(&w);
}

static void test_header_refusals(void **state)
{
    (void)state;
    proto_msg_type_t type;
    wbuf_t w = { 0 };

    expect_error(proto_peek_type("", 0, &type, g_err, sizeof g_err), "empty");
    assert_int_equal(type, PROTO_MSG_INVALID);
    expect_error(proto_peek_type("\x93\x01\x02\x03", 4, &type, g_err, sizeof g_err), "must be a msgpack map");

    /* wrong format tag */
    w_map(&w, 3);
    w_str(&w, "fmt"); w_str(&w, "otherfmt");
    w_str(&w, "ver"); w_uint(&w, 1);
    w_str(&w, "type"); w_str(&w, "control");
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), "format tag (fmt) is \"otherfmt\"");
    expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), "expected \"sslpipe\"");

    /* fmt of the wrong type */
    w.len = 0;
    w_map(&w, 3);
    w_str(&w, "fmt"); w_uint(&w, 7);
    w_str(&w, "ver"); w_uint(&w, 1);
    w_str(&w, "type"); w_str(&w, "control");
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), "fmt) must be a str, found an int");

    /* another protocol version: both versions named */
    for (uint64_t ver = 0; ver < 4; ver += 2) {
        char want[64];
        w.len = 0;
        w_map(&w, 5);
        w_str(&w, "fmt"); w_str(&w, PROTO_FORMAT);
        w_str(&w, "ver"); w_uint(&w, ver);
        w_str(&w, "type"); w_str(&w, "control");
        w_str(&w, "kind"); w_str(&w, "stop");
        w_str(&w, "sender"); w_str(&w, "x");
        snprintf(want, sizeof want, "protocol version %" PRIu64 ", this program speaks "
                 "version %d", ver, PROTO_VERSION);
        expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), want);
        expect_error(decode_copy(PROTO_MSG_CONTROL, w.p, w.len), want);
    }
    w.len = 0;
    w_map(&w, 3);
    w_str(&w, "fmt"); w_str(&w, PROTO_FORMAT);
    w_str(&w, "ver"); w_int(&w, -1);
    w_str(&w, "type"); w_str(&w, "control");
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), "must be a non-negative int");

    /* header keys out of order */
    w.len = 0;
    w_map(&w, 3);
    w_str(&w, "ver"); w_uint(&w, 1);
    w_str(&w, "fmt"); w_str(&w, PROTO_FORMAT);
    w_str(&w, "type"); w_str(&w, "stop");
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err),
                 "entry 0 of the message map must be the key \"fmt\"");

    /* unknown message type, and a message of another type */
    w.len = 0;
    w_header(&w, 0, "telemetry");
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), "unknown message type \"telemetry\"");
    w.len = 0;
    w_header(&w, 0, "control");
    assert_int_equal(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), 0);
    assert_int_equal(type, PROTO_MSG_CONTROL);
    expect_error(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len),
                 "expected a \"sample\" message, found a \"control\" message");

    /* a map too small to hold the header */
    w.len = 0;
    w_map(&w, 2);
    w_str(&w, "fmt"); w_str(&w, PROTO_FORMAT);
    w_str(&w, "ver"); w_uint(&w, 1);
    expect_error(proto_peek_type(w.p, w.len, &type, g_err, sizeof g_err), "fewer than the 3 of the header");

    static const char *const type_names[N_TYPES] = {
        "sample", "viewbatch", "checkpoint", "control", "stats", "ack", "have",
    };
    for (size_t t = 0; t < N_TYPES; t++)
        assert_string_equal(proto_msg_type_name(all_types[t]), type_names[t]);
    assert_string_equal(proto_msg_type_name((proto_msg_type_t)42), "invalid");
    w_free(&w);
}

/* Field lists of valid messages, for the wrong-type and missing-field tests. */

static uint8_t t_pixels[2 * 3 * 1];
static wbuf_t t_samples;   /* a viewbatch's samples array */
static wbuf_t t_counters;  /* a stats' counters map */
static wbuf_t t_indices;   /* an ack's indices array */
static wbuf_t t_done;      /* a have's done array */
static const float t_views[1 * 1 * 2 * 2];

static const tfield_t sample_fields[] = {
    { .key = "index", .kind = V_UINT, .u = 1 },
    { .key = "epoch", .kind = V_UINT, .u = 0 },
    { .key = "label", .kind = V_INT, .i = 3 },
    { .key = "height", .kind = V_UINT, .u = 2 },
    { .key = "width", .kind = V_UINT, .u = 3 },
    { .key = "channels", .kind = V_UINT, .u = 1 },
    { .key = "pixels", .kind = V_BIN, .p = t_pixels, .n = sizeof t_pixels },
};

static tfield_t viewbatch_fields[] = {
    { .key = "dtype", .kind = V_STR, .s = "f32" },
    { .key = "views", .kind = V_UINT, .u = 1 },
    { .key = "channels", .kind = V_UINT, .u = 1 },
    { .key = "height", .kind = V_UINT, .u = 2 },
    { .key = "width", .kind = V_UINT, .u = 2 },
    { .key = "samples", .kind = V_RAW },  /* filled by setup */
    { .key = "target_classes", .kind = V_UINT, .u = 8, .optional = 1 },
};

static const tfield_t checkpoint_fields[] = {
    { .key = "step", .kind = V_UINT, .u = 10 },
    { .key = "epoch", .kind = V_UINT, .u = 1 },
    { .key = "method", .kind = V_STR, .s = "rotnet" },
    { .key = "arch", .kind = V_STR, .s = "tiny" },
    { .key = "path", .kind = V_STR, .s = "/tmp/x.ckpt", .optional = 1 },
    { .key = "bytes", .kind = V_BIN, .p = ckpt_bytes, .n = sizeof ckpt_bytes, .optional = 1 },
};

static const tfield_t control_fields[] = {
    { .key = "kind", .kind = V_STR, .s = "end_of_stream" },
    { .key = "sender", .kind = V_STR, .s = "loader@h:1" },
    { .key = "epoch", .kind = V_UINT, .u = 4 },
    { .key = "count", .kind = V_UINT, .u = 60000 },
};

static tfield_t stats_fields[] = {
    { .key = "sender", .kind = V_STR, .s = "trainer@h:2" },
    { .key = "time", .kind = V_F64, .d = 1700000000.5 },
    { .key = "counters", .kind = V_RAW },  /* filled by setup */
};

static tfield_t ack_fields[] = {
    { .key = "sender", .kind = V_STR, .s = "trainer@h:3" },
    { .key = "epoch", .kind = V_UINT, .u = 2 },
    { .key = "indices", .kind = V_RAW },  /* filled by setup */
};

static tfield_t have_fields[] = {
    { .key = "sender", .kind = V_STR, .s = "trainer@h:4" },
    { .key = "epoch", .kind = V_UINT, .u = 3 },
    { .key = "step", .kind = V_UINT, .u = 77 },
    { .key = "done", .kind = V_RAW },  /* filled by setup */
};

typedef struct {
    proto_msg_type_t type;
    const tfield_t *fields;
    int n;
} tmsg_t;

static const tmsg_t tmsgs[] = {
    { PROTO_MSG_SAMPLE, sample_fields, 7 },
    { PROTO_MSG_VIEWBATCH, viewbatch_fields, 7 },
    { PROTO_MSG_CHECKPOINT, checkpoint_fields, 6 },
    { PROTO_MSG_CONTROL, control_fields, 4 },
    { PROTO_MSG_STATS, stats_fields, 3 },
    { PROTO_MSG_ACK, ack_fields, 3 },
    { PROTO_MSG_HAVE, have_fields, 4 },
};
#define N_TMSGS (sizeof tmsgs / sizeof tmsgs[0])
/* indices into tmsgs */
enum { M_SAMPLE, M_VIEWBATCH, M_CHECKPOINT, M_CONTROL, M_STATS, M_ACK, M_HAVE };

/* Writes one viewbatch element (a 1 x 1 x 2 x 2 f32 view). */
static void w_vb_sample(wbuf_t *w, uint64_t index, size_t data_len, uint32_t n_targets)
{
    w_map(w, 5);
    w_str(w, "index"); w_uint(w, index);
    w_str(w, "epoch"); w_uint(w, 0);
    w_str(w, "label"); w_int(w, 1);
    w_str(w, "targets"); w_array(w, n_targets);
    for (uint32_t k = 0; k < n_targets; k++)
        w_int(w, 2);
    w_str(w, "data"); w_bin(w, t_views, data_len);
}

static int setup_fields(void **state)
{
    (void)state;
    t_samples.len = 0;
    w_array(&t_samples, 2);
    w_vb_sample(&t_samples, 1, sizeof t_views, 1);
    w_vb_sample(&t_samples, 2, sizeof t_views, 1);
    viewbatch_fields[5].p = t_samples.p;
    viewbatch_fields[5].n = t_samples.len;
    t_counters.len = 0;
    w_map(&t_counters, 2);
    w_str(&t_counters, "a"); w_f64(&t_counters, 1.0);
    w_str(&t_counters, "b"); w_uint(&t_counters, 7);
    stats_fields[2].p = t_counters.p;
    stats_fields[2].n = t_counters.len;
    t_indices.len = 0;
    w_array(&t_indices, 3);
    w_uint(&t_indices, 7);
    w_uint(&t_indices, 70000);
    w_uint(&t_indices, UINT64_MAX);
    ack_fields[2].p = t_indices.p;
    ack_fields[2].n = t_indices.len;
    t_done.len = 0;
    w_array(&t_done, 2);
    w_bin(&t_done, "\x05\x80", 2);
    w_bin(&t_done, "", 0);
    have_fields[3].p = t_done.p;
    have_fields[3].n = t_done.len;
    return 0;
}

static int teardown_fields(void **state)
{
    (void)state;
    w_free(&t_samples);
    w_free(&t_counters);
    w_free(&t_indices);
    w_free(&t_done);
    return 0;
}

static void test_field_lists_are_valid(void **state)
{
    (void)state;
    wbuf_t w = { 0 };
    for (size_t m = 0; m < N_TMSGS; m++) {
        build(&w, proto_msg_type_name(tmsgs[m].type), tmsgs[m].fields, tmsgs[m].n, -1, -1, NULL);
        if (decode_copy(tmsgs[m].type, w.p, w.len))
            fail_msg("%s: %s", proto_msg_type_name(tmsgs[m].type), g_err);
    }
    w_free(&w);
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const uint8_t empty_array = 0x90, empty_map = 0x80;
    const tfield_t wrong[] = {
        { .kind = V_STR, .s = "12" },
        { .kind = V_F64, .d = 1.0 },
        { .kind = V_NIL },
        { .kind = V_BOOL },
        { .kind = V_BIN, .p = "x", .n = 1 },
        { .kind = V_UINT, .u = 1 },
        { .kind = V_INT, .i = -5 },
        { .kind = V_RAW, .p = &empty_array, .n = 1 },
        { .kind = V_RAW, .p = &empty_map, .n = 1 },
    };
    wbuf_t w = { 0 };
    int checked = 0;
    for (size_t m = 0; m < N_TMSGS; m++) {
        const tmsg_t *tm = &tmsgs[m];
        for (int k = 0; k < tm->n; k++) {
            const tfield_t *f = &tm->fields[k];
            for (size_t r = 0; r < sizeof wrong / sizeof wrong[0]; r++) {
                vkind_t rk = wrong[r].kind;
                /* skip replacements the field legitimately accepts */
                if (rk == f->kind && rk != V_RAW)
                    continue;
                if ((f->kind == V_UINT || f->kind == V_INT) && (rk == V_UINT || rk == V_INT))
                    continue;  /* range tests cover signed/unsigned */
                if (f->kind == V_F64 && (rk == V_UINT || rk == V_INT || rk == V_F64))
                    continue;  /* numbers are accepted for float fields */
                if (f->optional && rk == V_NIL)
                    continue;  /* nil means absent */
                if (f->kind == V_RAW && rk == V_RAW && m == 1 && r == 7)
                    continue;  /* an empty samples array is a range error, below */
                if (f->kind == V_RAW && rk == V_RAW && m == 4 && r == 8)
                    continue;  /* an empty counters map is valid */
                if (f->kind == V_RAW && rk == V_RAW && m == M_HAVE && r == 7)
                    continue;  /* an empty done array is valid */
                build(&w, proto_msg_type_name(tm->type), tm->fields, tm->n, -1, k, &wrong[r]);
                int rc = decode_copy(tm->type, w.p, w.len);
                if (rc != -1 || !strstr(g_err, f->key))
                    fail_msg("%s.%s given a wrong %d value: rc %d, error \"%s\"",
                             proto_msg_type_name(tm->type), f->key, (int)rk, rc, g_err);
                if (!strstr(g_err, " must be ") && !strstr(g_err, " is "))
                    fail_msg("unclear error: %s", g_err);
                checked++;
            }
        }
    }
    assert_true(checked > 100);
    w_free(&w);
}

static void test_missing_fields(void **state)
{
    (void)state;
    wbuf_t w = { 0 };
    for (size_t m = 0; m < N_TMSGS; m++) {
        const tmsg_t *tm = &tmsgs[m];
        for (int k = 0; k < tm->n; k++) {
            build(&w, proto_msg_type_name(tm->type), tm->fields, tm->n, k, -1, NULL);
            int rc = decode_copy(tm->type, w.p, w.len);
            if (tm->fields[k].optional) {
                if (rc)
                    fail_msg("without optional %s: %s", tm->fields[k].key, g_err);
                continue;
            }
            char want[64];
            snprintf(want, sizeof want, "\"%s\" is missing", tm->fields[k].key);
            expect_error(rc, want);
        }
    }
    /* epoch and count are optional only for stop and heartbeat */
    tfield_t stop[2] = { control_fields[0], control_fields[1] };
    stop[0].s = "stop";
    build(&w, "control", stop, 2, -1, -1, NULL);
    proto_control_t c;
    assert_int_equal(proto_control_decode(&c, w.p, w.len, g_err, sizeof g_err), 0);
    assert_int_equal(c.kind, PROTO_CONTROL_STOP);
    assert_int_equal(c.epoch, 0);
    assert_int_equal(c.count, 0);
    /* a checkpoint without path and without bytes */
    build(&w, "checkpoint", checkpoint_fields, 4, -1, -1, NULL);
    expect_error(decode_copy(PROTO_MSG_CHECKPOINT, w.p, w.len), "neither path nor bytes");
    w_free(&w);
}

/* Builds the message m with field k replaced by `with` and expects an error. */
#define expect_replaced(m, k, with, needle) expect_replaced_at(m, k, with, needle, __LINE__)

static void expect_replaced_at(int m, int k, tfield_t with, const char *needle, int line)
{
    wbuf_t w = { 0 };
    build(&w, proto_msg_type_name(tmsgs[m].type), tmsgs[m].fields, tmsgs[m].n, -1, k, &with);
    int rc = decode_copy(tmsgs[m].type, w.p, w.len);
    w_free(&w);
    expect_error_at(rc, needle, __FILE__, line);
}

static void expect_replaced_ok(int m, int k, tfield_t with)
{
    wbuf_t w = { 0 };
    build(&w, proto_msg_type_name(tmsgs[m].type), tmsgs[m].fields, tmsgs[m].n, -1, k, &with);
    if (decode_copy(tmsgs[m].type, w.p, w.len))
        fail_msg("%s.%s: %s", proto_msg_type_name(tmsgs[m].type), tmsgs[m].fields[k].key,
                 g_err);
    w_free(&w);
}

#define UINTV(x) ((tfield_t){ .kind = V_UINT, .u = (x) })
#define INTV(x)  ((tfield_t){ .kind = V_INT, .i = (x) })
#define STRV(x)  ((tfield_t){ .kind = V_STR, .s = (x) })
#define F64V(x)  ((tfield_t){ .kind = V_F64, .d = (x) })
#define RAWV(w)  ((tfield_t){ .kind = V_RAW, .p = (w).p, .n = (w).len })

static void test_sample_limits(void **state)
{
    (void)state;
    expect_replaced(M_SAMPLE, 3, UINTV(0), "height is 0, expected 1..16384");
    expect_replaced(M_SAMPLE, 3, UINTV(PROTO_MAX_SIDE + 1), "height is 16385");
    expect_replaced(M_SAMPLE, 4, UINTV(UINT64_MAX), "width is 18446744073709551615");
    expect_replaced(M_SAMPLE, 5, UINTV(PROTO_MAX_CHANNELS + 1), "channels is 5, expected 1..4");
    expect_replaced(M_SAMPLE, 5, UINTV(0), "channels is 0");
    expect_replaced(M_SAMPLE, 2, INTV(-2), "label is -2, expected -1..2147483647");
    expect_replaced(M_SAMPLE, 2, INTV(INT64_MIN), "label is");
    expect_replaced(M_SAMPLE, 2, UINTV((uint64_t)INT32_MAX + 1), "label is 2147483648");
    expect_replaced(M_SAMPLE, 1, UINTV((uint64_t)UINT32_MAX + 1), "epoch is 4294967296");
    expect_replaced(M_SAMPLE, 0, INTV(-1), "index is -1");
    expect_replaced_ok(M_SAMPLE, 2, INTV(-1));
    expect_replaced_ok(M_SAMPLE, 0, UINTV(UINT64_MAX));

    /* payload length mismatches */
    tfield_t px = sample_fields[6];
    px.n = sizeof t_pixels - 1;
    expect_replaced(M_SAMPLE, 6, px, "pixels is 5 bytes, expected 6 (2 x 3 x 1 uint8");
    px.n = 0;
    expect_replaced(M_SAMPLE, 6, px, "pixels is 0 bytes, expected 6");
    /* dimensions within the side limit but too many pixels in all */
    wbuf_t w = { 0 };
    tfield_t f[7];
    memcpy(f, sample_fields, sizeof f);
    f[3].u = PROTO_MAX_SIDE;
    f[4].u = PROTO_MAX_SIDE;
    build(&w, "sample", f, 7, -1, -1, NULL);
    expect_error(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len), "PROTO_MAX_PIXELS");
    /* 3 x 2 x 1 = 6 = 2 x 3 x 1: the product is checked, not just the sides */
    f[3].u = 3;
    f[4].u = 2;
    build(&w, "sample", f, 7, -1, -1, NULL);
    assert_int_equal(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len), 0);
    /* a repeated field */
    tfield_t dup[8];
    memcpy(dup, sample_fields, sizeof sample_fields);
    dup[7] = sample_fields[0];
    build(&w, "sample", dup, 8, -1, -1, NULL);
    expect_error(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len), "field \"index\" appears twice");
    /* a non-string key */
    w.len = 0;
    w_header(&w, 8, "sample");
    for (int k = 0; k < 7; k++) {
        w_str(&w, sample_fields[k].key);
        w_value(&w, &sample_fields[k]);
    }
    w_uint(&w, 5);
    w_uint(&w, 5);
    expect_error(decode_copy(PROTO_MSG_SAMPLE, w.p, w.len), "keys must be str");
    w_free(&w);
}

static void test_viewbatch_limits(void **state)
{
    (void)state;
    wbuf_t s = { 0 };
    expect_replaced(M_VIEWBATCH, 0, STRV("f64"), "dtype is \"f64\", expected one of \"f32\", \"u8\"");
    expect_replaced(M_VIEWBATCH, 1, UINTV(0), "views is 0, expected 1..16");
    expect_replaced(M_VIEWBATCH, 1, UINTV(PROTO_MAX_VIEWS + 1), "views is 17");
    expect_replaced(M_VIEWBATCH, 2, UINTV(5), "channels is 5");
    expect_replaced(M_VIEWBATCH, 3, UINTV(0), "height is 0");
    /* target_classes: at most PROTO_MAX_TARGET_CLASSES, and above every target (2 here) */
    expect_replaced(M_VIEWBATCH, 6, UINTV(PROTO_MAX_TARGET_CLASSES + 1), "target_classes is 65537");
    expect_replaced(M_VIEWBATCH, 6, UINTV(2),
                    "samples[0].targets[0] is 2, expected -1 (none) or 0..1 (target_classes is 2)");
    expect_replaced_ok(M_VIEWBATCH, 6, UINTV(3));
    expect_replaced_ok(M_VIEWBATCH, 6, UINTV(0));   /* 0: not announced */

    /* data of the wrong length: expected 1 x 1 x 2 x 2 x f32 = 16 bytes */
    w_array(&s, 2);
    w_vb_sample(&s, 1, sizeof t_views, 1);
    w_vb_sample(&s, 2, sizeof t_views - 4, 1);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s),
                    "samples[1].data is 12 bytes, expected 16 (1 views x 1 x 2 x 2 x f32)");
    /* u8 with float-sized data */
    expect_replaced(M_VIEWBATCH, 0, STRV("u8"), "samples[0].data is 16 bytes, expected 4");
    /* targets count != views */
    s.len = 0;
    w_array(&s, 1);
    w_vb_sample(&s, 1, sizeof t_views, 2);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples[0].targets has 2 elements, expected 1");
    /* a target below -1, and of the wrong type */
    s.len = 0;
    w_array(&s, 1);
    w_map(&s, 5);
    w_str(&s, "index"); w_uint(&s, 1);
    w_str(&s, "epoch"); w_uint(&s, 0);
    w_str(&s, "label"); w_int(&s, 1);
    w_str(&s, "targets"); w_array(&s, 1); w_int(&s, -2);
    w_str(&s, "data"); w_bin(&s, t_views, sizeof t_views);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples[0].targets[0] is -2");
    s.p[s.len - sizeof t_views - 2 - 5 - 1] = 0xc0;  /* the target byte, now nil */
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples[0].targets[0] must be an int, found nil");
    /* a sample that is not a map */
    s.len = 0;
    w_array(&s, 1);
    w_uint(&s, 3);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples[0] must be a map, found non-negative int");
    /* a sample's field missing, or of the wrong type */
    s.len = 0;
    w_array(&s, 1);
    w_map(&s, 4);
    w_str(&s, "index"); w_uint(&s, 1);
    w_str(&s, "label"); w_int(&s, 1);
    w_str(&s, "targets"); w_array(&s, 1); w_int(&s, 0);
    w_str(&s, "data"); w_bin(&s, t_views, sizeof t_views);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "\"samples[0].epoch\" is missing");
    s.len = 0;
    w_array(&s, 1);
    w_map(&s, 5);
    w_str(&s, "index"); w_str(&s, "1");
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "truncated message");  /* 4 entries missing */
    s.len = 0;
    w_array(&s, 1);
    w_map(&s, 5);
    w_str(&s, "index"); w_str(&s, "1");
    w_str(&s, "epoch"); w_uint(&s, 0);
    w_str(&s, "label"); w_int(&s, 1);
    w_str(&s, "targets"); w_array(&s, 1); w_int(&s, 0);
    w_str(&s, "data"); w_bin(&s, t_views, sizeof t_views);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples[0].index must be a non-negative int, found str");
    /* no samples, and one more than the limit */
    s.len = 0;
    w_array(&s, 0);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples has 0 elements, expected 1..4096");
    s.len = 0;
    w_array(&s, PROTO_MAX_BATCH_SAMPLES + 1);
    for (uint32_t i = 0; i <= PROTO_MAX_BATCH_SAMPLES; i++)
        w_vb_sample(&s, i, sizeof t_views, 1);
    expect_replaced(M_VIEWBATCH, 5, RAWV(s), "samples has 4097 elements");
    w_free(&s);
}

static void test_checkpoint_limits(void **state)
{
    (void)state;
    char long_name[PROTO_MAX_NAME + 1];
    memset(long_name, 'x', PROTO_MAX_NAME);
    long_name[PROTO_MAX_NAME] = '\0';
    expect_replaced(M_CHECKPOINT, 2, STRV(long_name), "method is 128 bytes long, the limit is 127");
    long_name[PROTO_MAX_NAME - 1] = '\0';
    expect_replaced_ok(M_CHECKPOINT, 2, STRV(long_name));
    expect_replaced(M_CHECKPOINT, 2, STRV(""), "method is empty");
    expect_replaced(M_CHECKPOINT, 3, STRV("bad \xff utf-8"), "arch is not valid UTF-8");
    expect_replaced(M_CHECKPOINT, 3, STRV("overlong \xc0\xaf"), "not valid UTF-8");
    expect_replaced(M_CHECKPOINT, 3, STRV("surrogate \xed\xa0\x80"), "not valid UTF-8");
    expect_replaced(M_CHECKPOINT, 3, STRV("cut \xe2\x82"), "not valid UTF-8");
    /* a NUL inside a str would silently shorten it: refused */
    tfield_t nul = { .kind = V_RAW, .p = "\xa3" "a\0b", .n = 4 };
    expect_replaced(M_CHECKPOINT, 4, nul, "path is not valid UTF-8 (or holds a NUL byte)");
    char *long_text = malloc(PROTO_MAX_TEXT + 1);
    assert_non_null(long_text);
    memset(long_text, 'p', PROTO_MAX_TEXT);
    long_text[PROTO_MAX_TEXT] = '\0';
    expect_replaced(M_CHECKPOINT, 4, STRV(long_text), "path is 4096 bytes long, the limit is 4095");
    free(long_text);
    tfield_t empty = { .kind = V_BIN, .p = "", .n = 0 };
    expect_replaced(M_CHECKPOINT, 5, empty, "bytes is an empty bin");
    /* nil path and bytes mean absent */
    tfield_t nil = { .kind = V_NIL };
    expect_replaced_ok(M_CHECKPOINT, 4, nil);
    expect_replaced_ok(M_CHECKPOINT, 5, nil);
}

static void test_control_limits(void **state)
{
    (void)state;
    expect_replaced(M_CONTROL, 0, STRV("pause"), "kind is \"pause\", expected one of \"stop\", "
                    "\"end_of_epoch\", \"end_of_stream\", \"heartbeat\"");
    expect_replaced(M_CONTROL, 1, STRV(""), "sender is empty");
    expect_replaced(M_CONTROL, 2, UINTV((uint64_t)UINT32_MAX + 1), "epoch is 4294967296");
    expect_replaced(M_CONTROL, 3, INTV(-1), "count is -1");
    expect_replaced_ok(M_CONTROL, 3, UINTV(UINT64_MAX));
}

static void test_stats_limits(void **state)
{
    (void)state;
    wbuf_t c = { 0 };
    expect_replaced(M_STATS, 1, F64V(NAN), "time is nan");
    expect_replaced(M_STATS, 1, F64V(-1), "time is -1");
    expect_replaced_ok(M_STATS, 1, UINTV(1700000000));
    /* too many counters */
    w_map(&c, PROTO_MAX_STATS + 1);
    for (uint32_t i = 0; i <= PROTO_MAX_STATS; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%u", i);
        w_str(&c, name);
        w_uint(&c, i);
    }
    expect_replaced(M_STATS, 2, RAWV(c), "counters has 257 entries, the limit is 256");
    /* a duplicate name, a non-str name, an empty name, a non-number value */
    c.len = 0;
    w_map(&c, 2);
    w_str(&c, "a"); w_f64(&c, 1);
    w_str(&c, "a"); w_f64(&c, 2);
    expect_replaced(M_STATS, 2, RAWV(c), "counters[1] and counters[0] are both named \"a\"");
    c.len = 0;
    w_map(&c, 1);
    w_uint(&c, 1); w_f64(&c, 1);
    expect_replaced(M_STATS, 2, RAWV(c), "counters[0].name must be a str, found non-negative int");
    c.len = 0;
    w_map(&c, 1);
    w_str(&c, ""); w_f64(&c, 1);
    expect_replaced(M_STATS, 2, RAWV(c), "counters[0].name is empty");
    c.len = 0;
    w_map(&c, 1);
    w_str(&c, "x"); w_str(&c, "1.0");
    expect_replaced(M_STATS, 2, RAWV(c), "counters[0].value must be a number");
    w_free(&c);
}

static void test_ack_limits(void **state)
{
    (void)state;
    wbuf_t a = { 0 };
    expect_replaced(M_ACK, 0, STRV(""), "sender is empty");
    expect_replaced(M_ACK, 1, UINTV((uint64_t)UINT32_MAX + 1), "epoch is 4294967296");
    expect_replaced(M_ACK, 1, INTV(-2), "epoch is -2");
    /* an empty array, one too many, a negative index, an index of the wrong type */
    w_array(&a, 0);
    expect_replaced(M_ACK, 2, RAWV(a), "the length of indices is 0, expected 1..65536");
    a.len = 0;
    w_array(&a, PROTO_MAX_ACK_INDICES + 1);
    for (uint32_t i = 0; i <= PROTO_MAX_ACK_INDICES; i++)
        w_uint(&a, i);
    expect_replaced(M_ACK, 2, RAWV(a), "the length of indices is 65537, expected 1..65536 "
                    "(PROTO_MAX_ACK_INDICES)");
    a.len = 0;
    w_array(&a, 2);
    w_uint(&a, 1);
    w_int(&a, -1);
    expect_replaced(M_ACK, 2, RAWV(a), "indices[1].index is -1");
    a.len = 0;
    w_array(&a, 2);
    w_uint(&a, 1);
    w_str(&a, "2");
    expect_replaced(M_ACK, 2, RAWV(a), "indices[1].index must be a non-negative int, found str");
    a.len = 0;
    w_array(&a, 1);
    w_f64(&a, 1.0);
    expect_replaced(M_ACK, 2, RAWV(a), "indices[0].index must be a non-negative int, found float64");
    /* the most indices allowed */
    a.len = 0;
    w_array(&a, PROTO_MAX_ACK_INDICES);
    for (uint32_t i = 0; i < PROTO_MAX_ACK_INDICES; i++)
        w_uint(&a, UINT64_MAX - i);
    expect_replaced_ok(M_ACK, 2, RAWV(a));
    w_free(&a);
}

static void test_have_limits(void **state)
{
    (void)state;
    wbuf_t a = { 0 };
    expect_replaced(M_HAVE, 0, STRV(""), "sender is empty");
    expect_replaced(M_HAVE, 1, UINTV((uint64_t)UINT32_MAX + 1), "epoch is 4294967296");
    expect_replaced(M_HAVE, 2, INTV(-1), "step is -1");
    /* one epoch too many, an element that is not a bin, no epoch at all */
    w_array(&a, PROTO_MAX_HAVE_EPOCHS + 1);
    for (uint32_t k = 0; k <= PROTO_MAX_HAVE_EPOCHS; k++)
        w_bin(&a, "\x01", 1);
    expect_replaced(M_HAVE, 3, RAWV(a), "the length of done is 5, expected 0..4 (PROTO_MAX_HAVE_EPOCHS)");
    a.len = 0;
    w_array(&a, 2);
    w_bin(&a, "\x01", 1);
    w_str(&a, "\x01");
    expect_replaced(M_HAVE, 3, RAWV(a), "done[1].bits must be a bin, found str");
    a.len = 0;
    w_array(&a, 0);
    expect_replaced_ok(M_HAVE, 3, RAWV(a));
    expect_replaced(M_HAVE, 3, UINTV(1), "done must be an array");
    w_free(&a);

    /* the encoder refuses what the decoder would */
    proto_buf_t buf;
    proto_buf_init(&buf);
    proto_have_t h;
    have_fixture(&h);
    h.n_epochs = PROTO_MAX_HAVE_EPOCHS + 1;
    expect_error(proto_have_encode(&buf, &h, g_err, sizeof g_err), "have: n_epochs is 5");
    have_fixture(&h);
    h.done_bytes[1] = 3;
    expect_error(proto_have_encode(&buf, &h, g_err, sizeof g_err), "done[1] is NULL but done_bytes[1] is 3");
    have_fixture(&h);
    h.done_bytes[0] = (size_t)PROTO_MAX_HAVE_BYTES + 1;
    expect_error(proto_have_encode(&buf, &h, g_err, sizeof g_err),
                 "done[0] is 33554433 bytes, expected at most 33554432");
    have_fixture(&h);
    h.sender[0] = '\0';
    expect_error(proto_have_encode(&buf, &h, g_err, sizeof g_err), "have: sender is empty");
    proto_buf_release(&buf);
}

static void test_unknown_fields_ignored(void **state)
{
    (void)state;
    /* a newer sender of the same version adds fields: they are skipped */
    wbuf_t w = { 0 };
    for (size_t m = 0; m < N_TMSGS; m++) {
        const tmsg_t *tm = &tmsgs[m];
        w.len = 0;
        w_header(&w, (uint32_t)tm->n + 3, proto_msg_type_name(tm->type));
        w_str(&w, "zz_future"); w_array(&w, 2); w_map(&w, 1); w_str(&w, "a"); w_byte(&w, 0xc0);
        w_f64(&w, 2.5);
        for (int k = 0; k < tm->n; k++) {
            w_str(&w, tm->fields[k].key);
            w_value(&w, &tm->fields[k]);
        }
        w_str(&w, "zz_ext"); w_tag_be(&w, 0xd4, 0x0107, 2);  /* fixext1 */
        w_str(&w, "zz_bin"); w_bin(&w, "abc", 3);
        if (decode_copy(tm->type, w.p, w.len))
            fail_msg("%s with unknown fields: %s", proto_msg_type_name(tm->type), g_err);
    }
    w_free(&w);
}

static void test_encoder_refusals(void **state)
{
    (void)state;
    proto_buf_t buf;
    proto_buf_init(&buf);
    sample_fixture_t sf;
    sample_fixture(&sf);
    sf.s.height = 0;
    expect_error(proto_sample_encode(&buf, &sf.s, g_err, sizeof g_err), "sample: height is 0");
    sample_fixture(&sf);
    sf.s.pixels = NULL;
    expect_error(proto_sample_encode(&buf, &sf.s, g_err, sizeof g_err), "pixels is NULL");
    sample_fixture(&sf);
    sf.s.label = -7;
    expect_error(proto_sample_encode(&buf, &sf.s, g_err, sizeof g_err), "label is -7");

    vb_fixture_t vf;
    vb_fixture(&vf);
    vf.vb.views = PROTO_MAX_VIEWS + 1;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "views is 17");
    vb_fixture(&vf);
    vf.vb.n_samples = 0;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "n_samples is 0");
    vb_fixture(&vf);
    vf.vb.dtype = (proto_dtype_t)7;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "dtype is 7");
    vb_fixture(&vf);
    vf.samples[2].data = NULL;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "samples[2].data is NULL");
    vb_fixture(&vf);
    vf.samples[1].target[1] = -3;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "samples[1].targets[1] is -3");
    vb_fixture(&vf);
    vf.vb.height = vf.vb.width = PROTO_MAX_SIDE / 2;
    vf.vb.views = PROTO_MAX_VIEWS;
    expect_error(proto_viewbatch_encode(&buf, &vf.vb, g_err, sizeof g_err), "PROTO_MAX_MESSAGE_BYTES");

    proto_checkpoint_t c;
    ckpt_fixture(&c);
    c.path[0] = '\0';
    c.bytes = NULL;
    c.n_bytes = 0;
    expect_error(proto_checkpoint_encode(&buf, &c, g_err, sizeof g_err), "neither path nor bytes");
    ckpt_fixture(&c);
    c.n_bytes = 0;
    expect_error(proto_checkpoint_encode(&buf, &c, g_err, sizeof g_err), "n_bytes is 0");
    ckpt_fixture(&c);
    memset(c.method, 'x', sizeof c.method);  /* no NUL */
    expect_error(proto_checkpoint_encode(&buf, &c, g_err, sizeof g_err), "method is 128 bytes or longer");

    proto_control_t ctl;
    control_fixture(&ctl);
    ctl.kind = (proto_control_kind_t)0;
    expect_error(proto_control_encode(&buf, &ctl, g_err, sizeof g_err), "kind is 0");
    control_fixture(&ctl);
    ctl.sender[0] = '\0';
    expect_error(proto_control_encode(&buf, &ctl, g_err, sizeof g_err), "sender is empty");

    proto_stats_t st;
    proto_stat_t two[2] = { { "same", 1 }, { "same", 2 } };
    stats_fixture(&st);
    st.stats = two;
    st.n_stats = 2;
    expect_error(proto_stats_encode(&buf, &st, g_err, sizeof g_err), "both named \"same\"");
    stats_fixture(&st);
    st.n_stats = PROTO_MAX_STATS + 1;
    expect_error(proto_stats_encode(&buf, &st, g_err, sizeof g_err), "n_stats is 257");
    stats_fixture(&st);
    st.time = INFINITY;
    expect_error(proto_stats_encode(&buf, &st, g_err, sizeof g_err), "time is inf");
    stats_fixture(&st);
    proto_stat_t bad[2] = { { "ok", 1 }, { "", 2 } };
    st.stats = bad;
    st.n_stats = 2;
    expect_error(proto_stats_encode(&buf, &st, g_err, sizeof g_err), "stats: stats[1].name is empty");

    proto_ack_t ack;
    ack_fixture(&ack);
    ack.n_indices = 0;
    expect_error(proto_ack_encode(&buf, &ack, g_err, sizeof g_err), "ack: n_indices is 0");
    ack_fixture(&ack);
    ack.n_indices = PROTO_MAX_ACK_INDICES + 1;
    expect_error(proto_ack_encode(&buf, &ack, g_err, sizeof g_err), "n_indices is 65537");
    ack_fixture(&ack);
    ack.indices = NULL;
    expect_error(proto_ack_encode(&buf, &ack, g_err, sizeof g_err), "indices is NULL");
    ack_fixture(&ack);
    ack.sender[0] = '\0';
    expect_error(proto_ack_encode(&buf, &ack, g_err, sizeof g_err), "ack: sender is empty");
    proto_buf_release(&buf);
}

static void test_clear_after_failed_decode(void **state)
{
    (void)state;
    proto_viewbatch_t vb;
    proto_stats_t st;
    proto_buf_t buf;
    proto_buf_init(&buf);
    /* a failure after the samples array was allocated */
    wbuf_t s = { 0 };
    w_array(&s, 2);
    w_vb_sample(&s, 1, sizeof t_views, 1);
    w_vb_sample(&s, 2, 3, 1);
    wbuf_t w = { 0 };
    tfield_t with = RAWV(s);
    build(&w, "viewbatch", viewbatch_fields, 6, -1, 5, &with);
    assert_int_equal(proto_viewbatch_decode(&vb, w.p, w.len, g_err, sizeof g_err), -1);
    assert_null(vb.samples);
    assert_int_equal(vb.n_samples, 0);
    proto_viewbatch_clear(&vb);
    /* and after the counters were allocated */
    s.len = 0;
    w_map(&s, 2);
    w_str(&s, "a"); w_f64(&s, 1);
    w_str(&s, "b"); w_byte(&s, 0xc0);
    with = RAWV(s);
    build(&w, "stats", stats_fields, 3, -1, 2, &with);
    assert_int_equal(proto_stats_decode(&st, w.p, w.len, g_err, sizeof g_err), -1);
    assert_null(st.stats);
    proto_stats_clear(&st);
    /* and after the indices were allocated */
    proto_ack_t ack;
    s.len = 0;
    w_array(&s, 2);
    w_uint(&s, 1);
    w_byte(&s, 0xc0);
    with = RAWV(s);
    build(&w, "ack", ack_fields, 3, -1, 2, &with);
    assert_int_equal(proto_ack_decode(&ack, w.p, w.len, g_err, sizeof g_err), -1);
    assert_null(ack.indices);
    assert_int_equal(ack.n_indices, 0);
    proto_ack_clear(&ack);
    w_free(&s);
    w_free(&w);
    proto_buf_release(&buf);
}

/* ------------------------------------------------------------------------ */
/* Random inputs.                                                           */

static void test_random_bytes(void **state)
{
    (void)state;
    uint8_t data[RANDOM_MAX_LEN];
    proto_msg_type_t type;
    rng_state = RANDOM_SEED;
    for (int i = 0; i < RANDOM_INPUTS; i++) {
        size_t len = rng() % RANDOM_MAX_LEN;
        for (size_t k = 0; k < len; k++)
            data[k] = (uint8_t)rng();
        /* half of them look like the start of a map, to get past the first byte */
        if (len && i % 2)
            data[0] = (uint8_t)(0x80 | (data[0] & 0x0f));
        for (size_t t = 0; t < N_TYPES; t++)
            assert_int_equal(decode_copy(all_types[t], data, len), -1);
        assert_int_equal(proto_peek_type(data, len, &type, g_err, sizeof g_err), -1);
    }
}

/* Decodes `buf` as `type`; when it decodes, re-encodes and checks equality. */
static int decode_reencode(proto_msg_type_t type, const uint8_t *buf, size_t len, proto_buf_t *out)
{
    int rc = -1;
#define REENCODE(T, name, clear)                                                        \
    do {                                                                                \
        T a, b;                                                                         \
        rc = proto_##name##_decode(&a, buf, len, g_err, sizeof g_err);                  \
        if (rc == 0) {                                                                  \
            if (proto_##name##_encode(out, &a, g_err, sizeof g_err) ||                  \
                proto_##name##_decode(&b, out->data, out->len, g_err, sizeof g_err))    \
                fail_msg("re-encoding an accepted " #name ": %s", g_err);               \
            assert_true(proto_##name##_equal(&a, &b));                                  \
            clear(&b);                                                                  \
        }                                                                               \
        clear(&a);                                                                      \
    } while (0)
#define NO_CLEAR(p) ((void)(p))
    switch (type) {
    case PROTO_MSG_SAMPLE: REENCODE(proto_sample_t, sample, NO_CLEAR); break;
    case PROTO_MSG_VIEWBATCH: REENCODE(proto_viewbatch_t, viewbatch, proto_viewbatch_clear); break;
    case PROTO_MSG_CHECKPOINT: REENCODE(proto_checkpoint_t, checkpoint, NO_CLEAR); break;
    case PROTO_MSG_CONTROL: REENCODE(proto_control_t, control, NO_CLEAR); break;
    case PROTO_MSG_STATS: REENCODE(proto_stats_t, stats, proto_stats_clear); break;
    case PROTO_MSG_ACK: REENCODE(proto_ack_t, ack, proto_ack_clear); break;
    case PROTO_MSG_HAVE: REENCODE(proto_have_t, have, NO_CLEAR); break;
    default: break;
    }
#undef REENCODE
#undef NO_CLEAR
    return rc;
}

static void test_random_mutations(void **state)
{
    (void)state;
    proto_buf_t seed, out;
    proto_buf_init(&seed);
    proto_buf_init(&out);
    rng_state = RANDOM_SEED ^ 0xabcdefu;
    int accepted = 0, refused = 0;
    for (size_t t = 0; t < N_TYPES; t++) {
        encode_fixture(all_types[t], &seed);
        uint8_t *m = malloc(seed.len + 8);
        assert_non_null(m);
        for (int i = 0; i < MUTATIONS_PER_SEED; i++) {
            size_t len = seed.len;
            memcpy(m, seed.data, len);
            int edits = 1 + (int)(rng() % 4);
            for (int e = 0; e < edits; e++) {
                size_t at = rng() % len;
                switch (rng() % 5) {
                case 0: m[at] ^= (uint8_t)(1u << (rng() % 8)); break;  /* flip a bit */
                case 1: m[at] = (uint8_t)rng(); break;                   /* any byte */
                case 2: m[at] = (uint8_t[]){ 0x00, 0x7f, 0x80, 0xff, 0xc0, 0xdd, 0xdf,
                                             0xc6, 0xdb }[rng() % 9]; break;
                case 3: if (len > 1) { memmove(m + at, m + at + 1, len - at - 1); len--; }  /* delete */
                        break;
                default: if (len < seed.len + 8) {                         /* insert */
                             memmove(m + at + 1, m + at, len - at);
                             m[at] = (uint8_t)rng();
                             len++;
                         }
                         break;
                }
            }
            uint8_t *exact = malloc(len);
            assert_non_null(exact);
            memcpy(exact, m, len);
            if (decode_reencode(all_types[t], exact, len, &out) == 0)
                accepted++;
            else
                refused++;
            free(exact);
        }
        free(m);
    }
    /* most mutations break something; a few (a changed pixel) stay valid */
    assert_true(refused > accepted);
    assert_true(accepted > 0);
    proto_buf_release(&seed);
    proto_buf_release(&out);
}

/* Threads decode concurrently: each has its own error buffer and unpack zone. */
static void *decode_thread(void *arg)
{
    proto_msg_type_t type = *(const proto_msg_type_t *)arg;
    proto_buf_t buf;
    proto_buf_init(&buf);
    encode_fixture(type, &buf);
    long bad = 0;
    for (int i = 0; i < THREAD_MESSAGES; i++) {
        if (decode_as(type, buf.data, buf.len) != 0)
            bad++;
        if (decode_as(type, buf.data, buf.len - 1) != -1)  /* truncated */
            bad++;
    }
    proto_buf_release(&buf);
    return (void *)bad;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[N_TYPES];
    for (size_t t = 0; t < N_TYPES; t++)
        assert_int_equal(pthread_create(&th[t], NULL, decode_thread, (void *)&all_types[t]), 0);
    for (size_t t = 0; t < N_TYPES; t++) {
        void *bad;
        assert_int_equal(pthread_join(th[t], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Fuzzer seeds.                                                            */

static int write_file(const char *dir, const char *sub, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir(path, 0755) && errno != EEXIST) {
        fprintf(stderr, "test_proto: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "test_proto: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* A handful of small valid messages of each type, for the fuzzers to start from. */
static int write_corpus(const char *dir)
{
    proto_buf_t buf;
    proto_buf_init(&buf);
    int rc = 0;
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "test_proto: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (size_t t = 0; t < N_TYPES; t++) {
        char sub[64];
        snprintf(sub, sizeof sub, "fuzz_%s", proto_msg_type_name(all_types[t]));
        encode_fixture(all_types[t], &buf);
        rc |= write_file(dir, sub, "seed-fixture", buf.data, buf.len);
    }
    uint8_t px[4 * 4 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 5);
    proto_sample_t s = { .index = 7, .epoch = 1, .label = PROTO_LABEL_NONE, .height = 1,
                         .width = 1, .channels = 1, .pixels = px };
    proto_sample_encode(&buf, &s, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_sample", "seed-1x1-unlabeled", buf.data, buf.len);
    s = (proto_sample_t){ .index = UINT64_MAX, .epoch = UINT32_MAX, .label = INT32_MAX,
                          .height = 4, .width = 4, .channels = 3, .pixels = px };
    proto_sample_encode(&buf, &s, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_sample", "seed-4x4x3-max", buf.data, buf.len);

    float f[2 * 2 * 2];
    for (size_t i = 0; i < 8; i++)
        f[i] = (float)i - 2.5f;
    proto_view_sample_t vs[2] = {
        { .index = 1, .epoch = 0, .label = 3, .target = { 0, 3 }, .data = f },
        { .index = 300, .epoch = 0, .label = PROTO_LABEL_NONE, .target = { -1, 1 }, .data = f },
    };
    proto_viewbatch_t vb = { .dtype = PROTO_DTYPE_U8, .views = 2, .channels = 1, .height = 2,
                             .width = 2, .n_samples = 2, .samples = vs };
    proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_viewbatch", "seed-u8-2x2", buf.data, buf.len);
    vb.dtype = PROTO_DTYPE_F32;
    vb.views = 1;
    vb.n_samples = 1;
    proto_viewbatch_encode(&buf, &vb, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_viewbatch", "seed-f32-1", buf.data, buf.len);

    proto_checkpoint_t c;
    ckpt_fixture(&c);
    c.bytes = NULL;
    c.n_bytes = 0;
    proto_checkpoint_encode(&buf, &c, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_checkpoint", "seed-path", buf.data, buf.len);
    ckpt_fixture(&c);
    c.path[0] = '\0';
    proto_checkpoint_encode(&buf, &c, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_checkpoint", "seed-bytes", buf.data, buf.len);

    static const proto_control_kind_t kinds[] = {
        PROTO_CONTROL_STOP, PROTO_CONTROL_END_OF_STREAM, PROTO_CONTROL_HEARTBEAT,
    };
    for (size_t k = 0; k < 3; k++) {
        proto_control_t ctl;
        control_fixture(&ctl);
        ctl.kind = kinds[k];
        proto_control_encode(&buf, &ctl, g_err, sizeof g_err);
        char name[64];
        snprintf(name, sizeof name, "seed-%s", proto_control_kind_name(kinds[k]));
        rc |= write_file(dir, "fuzz_control", name, buf.data, buf.len);
    }

    proto_stats_t st;
    stats_fixture(&st);
    st.n_stats = 0;
    proto_stats_encode(&buf, &st, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_stats", "seed-empty", buf.data, buf.len);

    uint64_t idx[3] = { 0, 255, 70000 };
    proto_ack_t ack = { .sender = "trainer@h:1", .epoch = 1, .n_indices = 1, .indices = idx };
    proto_ack_encode(&buf, &ack, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_ack", "seed-one", buf.data, buf.len);
    ack.n_indices = 3;
    proto_ack_encode(&buf, &ack, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_ack", "seed-three", buf.data, buf.len);

    proto_have_t have = { .sender = "trainer@h:1", .epoch = 2, .step = 40 };
    proto_have_encode(&buf, &have, g_err, sizeof g_err);
    rc |= write_file(dir, "fuzz_have", "seed-none", buf.data, buf.len);
    proto_buf_release(&buf);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]) ? 1 : 0;
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-corpus DIR]\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_roundtrip),
        cmocka_unit_test(test_sample_wire_bytes),
        cmocka_unit_test(test_viewbatch_wire_bytes),
        cmocka_unit_test(test_viewbatch_roundtrip),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_control_roundtrip),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_stats_roundtrip),
        cmocka_unit_test(test_ack_roundtrip),
        cmocka_unit_test(test_have_roundtrip),
        cmocka_unit_test(test_buf_reuse_and_detach),
        cmocka_unit_test(test_truncated_every_prefix),
        cmocka_unit_test(test_oversized_claims),
        cmocka_unit_test(test_header_refusals),
        cmocka_unit_test(test_field_lists_are_valid),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_sample_limits),
        cmocka_unit_test(test_viewbatch_limits),
        cmocka_unit_test(test_checkpoint_limits),
        cmocka_unit_test(test_control_limits),
        cmocka_unit_test(test_stats_limits),
        cmocka_unit_test(test_ack_limits),
        cmocka_unit_test(test_have_limits),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_encoder_refusals),
        cmocka_unit_test(test_clear_after_failed_decode),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup_fields, teardown_fields);
}

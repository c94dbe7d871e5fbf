/* viewbatch.c: ViewBatch, the augmented views of one or more samples,
 * augmenter -> trainer. Each sample carries K views of (C, H, W) in one
 * bin, plus one target per view. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "viewbatch"
#define VB_OVERHEAD_BYTES     128  /* header and top-level fields */
#define SAMPLE_OVERHEAD_BYTES 64   /* keys and scalars around one sample's data */
#define TARGET_MAX_BYTES      5    /* one int32 target, packed */

enum { F_DTYPE, F_VIEWS, F_CHANNELS, F_HEIGHT, F_WIDTH, F_SAMPLES, F_TARGET_CLASSES, F_COUNT };
enum { S_INDEX, S_EPOCH, S_LABEL, S_TARGETS, S_DATA, S_COUNT };

static const char *const dtype_names[] = {
    [PROTO_DTYPE_F32] = "f32",
    [PROTO_DTYPE_U8] = "u8",
};
#define N_DTYPES (sizeof dtype_names / sizeof dtype_names[0])

size_t proto_dtype_size(proto_dtype_t dtype)
{
    switch (dtype) {
    case PROTO_DTYPE_F32: return sizeof(float);
    case PROTO_DTYPE_U8: return 1;
    }
    return 0;
}

const char *proto_dtype_name(proto_dtype_t dtype)
{
    return (unsigned)dtype < N_DTYPES ? dtype_names[dtype] : "invalid";
}

size_t proto_viewbatch_sample_bytes(const proto_viewbatch_t *vb)
{
    return (size_t)vb->views * vb->channels * vb->height * vb->width * proto_dtype_size(vb->dtype);
}

void proto_viewbatch_clear(proto_viewbatch_t *vb)
{
    free(vb->samples);
    memset(vb, 0, sizeof *vb);
}

/* Checks the shape shared by every sample of the batch. */
static int check_shape(const proto_viewbatch_t *vb, char *err, size_t errlen)
{
    if (proto_dtype_size(vb->dtype) == 0)
        return proto_fail(err, errlen, MSG ": dtype is %d, expected PROTO_DTYPE_F32 or PROTO_DTYPE_U8",
                                       (int)vb->dtype);
    if (vb->views < 1 || vb->views > PROTO_MAX_VIEWS)
        return proto_fail(err, errlen, MSG ": views is %" PRIu32 ", expected 1..%u (PROTO_MAX_VIEWS)",
                                       vb->views, PROTO_MAX_VIEWS);
    return proto_check_image(MSG, vb->height, vb->width, vb->channels, err, errlen);
}

int proto_viewbatch_encode(proto_buf_t *out, const proto_viewbatch_t *vb, char *err, size_t errlen)
{
    proto_enc_t e;
    if (check_shape(vb, err, errlen))
        return -1;
    if (vb->n_samples < 1 || vb->n_samples > PROTO_MAX_BATCH_SAMPLES)
        return proto_fail(err, errlen, MSG ": n_samples is %" PRIu32 ", expected 1..%u "
                                       "(PROTO_MAX_BATCH_SAMPLES)", vb->n_samples, PROTO_MAX_BATCH_SAMPLES);
    if (!vb->samples)
        return proto_fail(err, errlen, MSG ": samples is NULL");
    if (vb->target_classes > PROTO_MAX_TARGET_CLASSES)
        return proto_fail(err, errlen, MSG ": target_classes is %" PRIu32 ", expected 0 (none) .. %u "
                                       "(PROTO_MAX_TARGET_CLASSES)", vb->target_classes, PROTO_MAX_TARGET_CLASSES);
    size_t per_sample = proto_viewbatch_sample_bytes(vb);
    if (per_sample > PROTO_MAX_MESSAGE_BYTES / vb->n_samples)
        return proto_fail(err, errlen, MSG ": %" PRIu32 " samples x %zu bytes exceed PROTO_MAX_MESSAGE_BYTES "
                                       "(%u); HINT: send fewer samples per message", vb->n_samples,
                                       per_sample, PROTO_MAX_MESSAGE_BYTES);
    for (uint32_t i = 0; i < vb->n_samples; i++) {
        const proto_view_sample_t *s = &vb->samples[i];
        if (s->label < PROTO_LABEL_NONE)
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].label is %" PRId32 ", expected %d "
                                           "(none) or more", i, s->label, PROTO_LABEL_NONE);
        if (!s->data)
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].data is NULL", i);
        for (uint32_t k = 0; k < vb->views; k++)
            if (s->target[k] < PROTO_TARGET_NONE ||
                (vb->target_classes && s->target[k] >= (int32_t)vb->target_classes))
                return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets[%" PRIu32 "] is %" PRId32
                                               ", expected %d (none) or more%s", i, k, s->target[k],
                                               PROTO_TARGET_NONE, vb->target_classes ? ", below target_classes" : "");
    }

    size_t hint = VB_OVERHEAD_BYTES + (size_t)vb->n_samples *
                  (per_sample + SAMPLE_OVERHEAD_BYTES + TARGET_MAX_BYTES * vb->views);
    /* target_classes is optional: written only when announced, so that a
     * batch without it has the bytes it had before the field existed */
    uint32_t n_fields = vb->target_classes ? F_COUNT : F_COUNT - 1;
    if (proto_enc_begin(&e, out, PROTO_MSG_VIEWBATCH, n_fields, hint, err, errlen))
        return -1;
    proto_enc_str(&e, "dtype", proto_dtype_name(vb->dtype));
    proto_enc_uint(&e, "views", vb->views);
    proto_enc_uint(&e, "channels", vb->channels);
    proto_enc_uint(&e, "height", vb->height);
    proto_enc_uint(&e, "width", vb->width);
    if (vb->target_classes)
        proto_enc_uint(&e, "target_classes", vb->target_classes);
    proto_enc_key(&e, "samples");
    msgpack_pack_array(&e.pk, vb->n_samples);
    for (uint32_t i = 0; i < vb->n_samples; i++) {
        const proto_view_sample_t *s = &vb->samples[i];
        msgpack_pack_map(&e.pk, S_COUNT);
        proto_enc_uint(&e, "index", s->index);
        proto_enc_uint(&e, "epoch", s->epoch);
        proto_enc_int(&e, "label", s->label);
        proto_enc_key(&e, "targets");
        msgpack_pack_array(&e.pk, vb->views);
        for (uint32_t k = 0; k < vb->views; k++)
            proto_enc_int(&e, NULL, s->target[k]);
        proto_enc_bin(&e, "data", s->data, per_sample);
    }
    return proto_enc_end(&e, PROTO_MSG_VIEWBATCH, err, errlen);
}

/* One element of the samples array into s. */
static int decode_sample(const proto_viewbatch_t *vb, uint32_t i, const msgpack_object *o,
                         size_t per_sample, proto_view_sample_t *s, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, "samples", i };
    proto_field_t f[S_COUNT] = {
        [S_INDEX] = { "index", NULL },     [S_EPOCH] = { "epoch", NULL },
        [S_LABEL] = { "label", NULL },     [S_TARGETS] = { "targets", NULL },
        [S_DATA] = { "data", NULL },
    };
    const msgpack_object_array *targets;
    uint64_t index, epoch;
    int64_t label;
    const uint8_t *data;
    size_t n;

    if (o->type != MSGPACK_OBJECT_MAP)
        return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "] must be a map, found %s", i,
                                       proto_obj_type_name(o->type));
    if (proto_dec_fields(&w, &o->via.map, 0, f, S_COUNT, err, errlen) ||
        proto_dec_uint(&w, &f[S_INDEX], 0, UINT64_MAX, &index, err, errlen) ||
        proto_dec_uint(&w, &f[S_EPOCH], 0, UINT32_MAX, &epoch, err, errlen) ||
        proto_dec_int(&w, &f[S_LABEL], PROTO_LABEL_NONE, INT32_MAX, &label, err, errlen) ||
        proto_dec_array(&w, &f[S_TARGETS], &targets, err, errlen) ||
        proto_dec_bin(&w, &f[S_DATA], &data, &n, err, errlen))
        return -1;
    if (targets->size != vb->views)
        return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets has %" PRIu32 " elements, "
                                       "expected %" PRIu32 " (one per view)", i, targets->size, vb->views);
    for (uint32_t k = 0; k < targets->size; k++) {
        const msgpack_object *t = &targets->ptr[k];
        int64_t v;
        if (t->type == MSGPACK_OBJECT_POSITIVE_INTEGER && t->via.u64 <= INT32_MAX)
            v = (int64_t)t->via.u64;
        else if (t->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            v = t->via.i64;
        else if (t->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets[%" PRIu32 "] is %" PRIu64
                                           ", expected %d..%d", i, k, t->via.u64, PROTO_TARGET_NONE,
                                           INT32_MAX);
        else
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets[%" PRIu32 "] must be an int, "
                                           "found %s", i, k, proto_obj_type_name(t->type));
        if (v < PROTO_TARGET_NONE)
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets[%" PRIu32 "] is %" PRId64
                                           ", expected %d..%d", i, k, v, PROTO_TARGET_NONE, INT32_MAX);
        if (vb->target_classes && v >= (int64_t)vb->target_classes)
            return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].targets[%" PRIu32 "] is %" PRId64
                                           ", expected -1 (none) or 0..%" PRIu32 " (target_classes is %" PRIu32 ")",
                                           i, k, v, vb->target_classes - 1, vb->target_classes);
        s->target[k] = (int32_t)v;
    }
    if (n != per_sample)
        return proto_fail(err, errlen, MSG ": samples[%" PRIu32 "].data is %zu bytes, expected %zu "
                                       "(%" PRIu32 " views x %" PRIu32 " x %" PRIu32 " x %" PRIu32 " x %s)",
                                       i, n, per_sample, vb->views, vb->channels, vb->height, vb->width,
                                       proto_dtype_name(vb->dtype));
    s->index = index;
    s->epoch = (uint32_t)epoch;
    s->label = (int32_t)label;
    s->data = data;
    return 0;
}

int proto_viewbatch_decode(proto_viewbatch_t *vb, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_DTYPE] = { "dtype", NULL },       [F_VIEWS] = { "views", NULL },
        [F_CHANNELS] = { "channels", NULL }, [F_HEIGHT] = { "height", NULL },
        [F_WIDTH] = { "width", NULL },       [F_SAMPLES] = { "samples", NULL },
        [F_TARGET_CLASSES] = { "target_classes", NULL },
    };
    msgpack_object_map root;
    const msgpack_object_array *samples;
    uint64_t views, channels, height, width, target_classes = 0;
    size_t dtype;
    int rc = -1;

    memset(vb, 0, sizeof *vb);
    if (proto_dec_begin(PROTO_MSG_VIEWBATCH, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_enum(&w, &f[F_DTYPE], dtype_names, N_DTYPES, &dtype, err, errlen) ||
        proto_dec_uint(&w, &f[F_VIEWS], 1, PROTO_MAX_VIEWS, &views, err, errlen) ||
        proto_dec_uint(&w, &f[F_CHANNELS], 1, PROTO_MAX_CHANNELS, &channels, err, errlen) ||
        proto_dec_uint(&w, &f[F_HEIGHT], 1, PROTO_MAX_SIDE, &height, err, errlen) ||
        proto_dec_uint(&w, &f[F_WIDTH], 1, PROTO_MAX_SIDE, &width, err, errlen) ||
        proto_check_image(MSG, (uint32_t)height, (uint32_t)width, (uint32_t)channels, err, errlen) ||
        proto_dec_array(&w, &f[F_SAMPLES], &samples, err, errlen) ||
        (f[F_TARGET_CLASSES].val && f[F_TARGET_CLASSES].val->type != MSGPACK_OBJECT_NIL &&
         proto_dec_uint(&w, &f[F_TARGET_CLASSES], 0, PROTO_MAX_TARGET_CLASSES, &target_classes, err, errlen)))
        goto done;
    if (samples->size < 1 || samples->size > PROTO_MAX_BATCH_SAMPLES) {
        proto_fail(err, errlen, MSG ": samples has %" PRIu32 " elements, expected 1..%u "
                                "(PROTO_MAX_BATCH_SAMPLES)", samples->size, PROTO_MAX_BATCH_SAMPLES);
        goto done;
    }
    vb->dtype = (proto_dtype_t)dtype;
    vb->views = (uint32_t)views;
    vb->channels = (uint32_t)channels;
    vb->height = (uint32_t)height;
    vb->width = (uint32_t)width;
    vb->target_classes = (uint32_t)target_classes;
    size_t per_sample = proto_viewbatch_sample_bytes(vb);
    /* samples->size elements are present in the message (the pre-scan saw them). */
    vb->samples = calloc(samples->size, sizeof *vb->samples);
    if (!vb->samples) {
        proto_fail(err, errlen, MSG ": out of memory for %" PRIu32 " samples", samples->size);
        goto done;
    }
    for (uint32_t i = 0; i < samples->size; i++)
        if (decode_sample(vb, i, &samples->ptr[i], per_sample, &vb->samples[i], err, errlen))
            goto done;
    vb->n_samples = samples->size;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        proto_viewbatch_clear(vb);
    return rc;
}

/* sample.c: Sample, one decoded 8-bit HWC image, loader -> augmenter. */
#include <inttypes.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "sample"
#define SAMPLE_OVERHEAD_BYTES 128  /* keys and scalars around the pixels */

enum { F_INDEX, F_EPOCH, F_LABEL, F_HEIGHT, F_WIDTH, F_CHANNELS, F_PIXELS, F_COUNT };

size_t proto_sample_bytes(const proto_sample_t *s)
{
    return (size_t)s->height * s->width * s->channels;
}

int proto_sample_encode(proto_buf_t *out, const proto_sample_t *s, char *err, size_t errlen)
{
    proto_enc_t e;
    if (proto_check_image(MSG, s->height, s->width, s->channels, err, errlen))
        return -1;
    if (s->label < PROTO_LABEL_NONE)
        return proto_fail(err, errlen, MSG ": label is %" PRId32 ", expected %d (none) or more", s->label,
                                       PROTO_LABEL_NONE);
    if (!s->pixels)
        return proto_fail(err, errlen, MSG ": pixels is NULL");
    size_t n = proto_sample_bytes(s);
    if (proto_enc_begin(&e, out, PROTO_MSG_SAMPLE, F_COUNT, n + SAMPLE_OVERHEAD_BYTES, err, errlen))
        return -1;
    proto_enc_uint(&e, "index", s->index);
    proto_enc_uint(&e, "epoch", s->epoch);
    proto_enc_int(&e, "label", s->label);
    proto_enc_uint(&e, "height", s->height);
    proto_enc_uint(&e, "width", s->width);
    proto_enc_uint(&e, "channels", s->channels);
    proto_enc_bin(&e, "pixels", s->pixels, n);
    return proto_enc_end(&e, PROTO_MSG_SAMPLE, err, errlen);
}

int proto_sample_decode(proto_sample_t *s, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_INDEX] = { "index", NULL },   [F_EPOCH] = { "epoch", NULL },
        [F_LABEL] = { "label", NULL },   [F_HEIGHT] = { "height", NULL },
        [F_WIDTH] = { "width", NULL },   [F_CHANNELS] = { "channels", NULL },
        [F_PIXELS] = { "pixels", NULL },
    };
    msgpack_object_map root;
    uint64_t index, epoch, height, width, channels;
    int64_t label;
    const uint8_t *pixels;
    size_t n;
    int rc = -1;

    memset(s, 0, sizeof *s);
    if (proto_dec_begin(PROTO_MSG_SAMPLE, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_uint(&w, &f[F_INDEX], 0, UINT64_MAX, &index, err, errlen) ||
        proto_dec_uint(&w, &f[F_EPOCH], 0, UINT32_MAX, &epoch, err, errlen) ||
        proto_dec_int(&w, &f[F_LABEL], PROTO_LABEL_NONE, INT32_MAX, &label, err, errlen) ||
        proto_dec_uint(&w, &f[F_HEIGHT], 1, PROTO_MAX_SIDE, &height, err, errlen) ||
        proto_dec_uint(&w, &f[F_WIDTH], 1, PROTO_MAX_SIDE, &width, err, errlen) ||
        proto_dec_uint(&w, &f[F_CHANNELS], 1, PROTO_MAX_CHANNELS, &channels, err, errlen) ||
        proto_check_image(MSG, (uint32_t)height, (uint32_t)width, (uint32_t)channels, err, errlen) ||
        proto_dec_bin(&w, &f[F_PIXELS], &pixels, &n, err, errlen))
        goto done;
    uint64_t expected = height * width * channels;
    if (n != expected) {
        proto_fail(err, errlen, MSG ": pixels is %zu bytes, expected %" PRIu64 " (%" PRIu64 " x %" PRIu64
                            " x %" PRIu64 " uint8, height x width x channels)", n, expected, height, width,
                            channels);
        goto done;
    }
    s->index = index;
    s->epoch = (uint32_t)epoch;
    s->label = (int32_t)label;
    s->height = (uint32_t)height;
    s->width = (uint32_t)width;
    s->channels = (uint32_t)channels;
    s->pixels = pixels;
    rc = 0;
done:
    proto_dec_end();
    return rc;
}

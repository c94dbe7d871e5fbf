/* control.c: Control, stream and lifecycle events (stop, end of epoch, end
 * of stream, heartbeat) with the sender's identity. */
#include <inttypes.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "control"
#define CONTROL_SIZE_HINT 256

enum { F_KIND, F_SENDER, F_EPOCH, F_COUNT_, F_COUNT };

static const char *const kind_names[] = {
    [PROTO_CONTROL_STOP] = "stop",
    [PROTO_CONTROL_END_OF_EPOCH] = "end_of_epoch",
    [PROTO_CONTROL_END_OF_STREAM] = "end_of_stream",
    [PROTO_CONTROL_HEARTBEAT] = "heartbeat",
};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

const char *proto_control_kind_name(proto_control_kind_t kind)
{
    if ((unsigned)kind < N_KINDS && kind_names[kind])
        return kind_names[kind];
    return "invalid";
}

/* end_of_epoch and end_of_stream must say which epoch and how many items. */
static int kind_needs_count(proto_control_kind_t kind)
{
    return kind == PROTO_CONTROL_END_OF_EPOCH || kind == PROTO_CONTROL_END_OF_STREAM;
}

int proto_control_encode(proto_buf_t *out, const proto_control_t *c, char *err, size_t errlen)
{
    proto_enc_t e;
    if ((unsigned)c->kind >= N_KINDS || !kind_names[c->kind])
        return proto_fail(err, errlen, MSG ": kind is %d, not a proto_control_kind_t", (int)c->kind);
    if (proto_check_name(MSG, "sender", c->sender, sizeof c->sender, err, errlen))
        return -1;
    if (proto_enc_begin(&e, out, PROTO_MSG_CONTROL, F_COUNT, CONTROL_SIZE_HINT, err, errlen))
        return -1;
    proto_enc_str(&e, "kind", kind_names[c->kind]);
    proto_enc_str(&e, "sender", c->sender);
    proto_enc_uint(&e, "epoch", c->epoch);
    proto_enc_uint(&e, "count", c->count);
    return proto_enc_end(&e, PROTO_MSG_CONTROL, err, errlen);
}

size_t proto_control_stop_prefix(uint8_t *out, size_t cap)
{
    static const char kind_stop[] = "\xa4" "kind" "\xa4" "stop";   /* fixstr "kind", fixstr "stop" */
    proto_control_t c = {.kind = PROTO_CONTROL_STOP};
    snprintf(c.sender, sizeof c.sender, "x");
    proto_buf_t b;
    proto_buf_init(&b);
    size_t n = 0;
    if (proto_control_encode(&b, &c, NULL, 0) == 0) {
        size_t k = sizeof kind_stop - 1;
        for (size_t i = 0; i + k <= b.len; i++)
            if (memcmp(b.data + i, kind_stop, k) == 0) {
                n = i + k <= cap ? i + k : 0;
                break;
            }
        if (n)
            memcpy(out, b.data, n);
    }
    proto_buf_release(&b);
    return n;
}

int proto_control_decode(proto_control_t *c, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_KIND] = { "kind", NULL },   [F_SENDER] = { "sender", NULL },
        [F_EPOCH] = { "epoch", NULL }, [F_COUNT_] = { "count", NULL },
    };
    msgpack_object_map root;
    uint64_t epoch = 0, count = 0;
    size_t kind;
    int rc = -1;

    memset(c, 0, sizeof *c);
    if (proto_dec_begin(PROTO_MSG_CONTROL, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_enum(&w, &f[F_KIND], kind_names, N_KINDS, &kind, err, errlen) ||
        proto_dec_name(&w, &f[F_SENDER], c->sender, sizeof c->sender, err, errlen))
        goto done;
    /* epoch and count are optional (0) for stop and heartbeat. */
    int required = kind_needs_count((proto_control_kind_t)kind);
    if ((required || f[F_EPOCH].val) &&
        proto_dec_uint(&w, &f[F_EPOCH], 0, UINT32_MAX, &epoch, err, errlen))
        goto done;
    if ((required || f[F_COUNT_].val) &&
        proto_dec_uint(&w, &f[F_COUNT_], 0, UINT64_MAX, &count, err, errlen))
        goto done;
    c->kind = (proto_control_kind_t)kind;
    c->epoch = (uint32_t)epoch;
    c->count = count;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        memset(c, 0, sizeof *c);
    return rc;
}

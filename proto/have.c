/* have.c: Have, the trainer telling the loader which samples of its current
 * epochs its model holds, so that a loader can send again what a trainer
 * resumed from a checkpoint lost (it had acknowledged them before it died). */
#include <inttypes.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "have"
#define HAVE_OVERHEAD_BYTES 256

enum { F_SENDER, F_EPOCH, F_STEP, F_DONE, F_COUNT };

static int check_epochs(uint32_t n, const char *what, char *err, size_t errlen)
{
    if (n > PROTO_MAX_HAVE_EPOCHS)
        return proto_fail(err, errlen, MSG ": %s is %" PRIu32 ", expected 0..%u (PROTO_MAX_HAVE_EPOCHS)", what, n,
                                       PROTO_MAX_HAVE_EPOCHS);
    return 0;
}

static int check_bytes(size_t n, uint32_t k, char *err, size_t errlen)
{
    if (n > PROTO_MAX_HAVE_BYTES)
        return proto_fail(err, errlen,
                          MSG ": done[%" PRIu32 "] is %zu bytes, expected at most %u (PROTO_MAX_HAVE_BYTES)", k, n,
                          PROTO_MAX_HAVE_BYTES);
    return 0;
}

int proto_have_encode(proto_buf_t *out, const proto_have_t *h, char *err, size_t errlen)
{
    proto_enc_t e;
    if (proto_check_name(MSG, "sender", h->sender, sizeof h->sender, err, errlen) ||
        check_epochs(h->n_epochs, "n_epochs", err, errlen))
        return -1;
    size_t hint = HAVE_OVERHEAD_BYTES;
    for (uint32_t k = 0; k < h->n_epochs; k++) {
        if (check_bytes(h->done_bytes[k], k, err, errlen))
            return -1;
        if (!h->done[k] && h->done_bytes[k])
            return proto_fail(err, errlen, MSG ": done[%" PRIu32 "] is NULL but done_bytes[%" PRIu32 "] is %zu", k, k,
                                           h->done_bytes[k]);
        hint += h->done_bytes[k] + 8;
    }
    if (proto_enc_begin(&e, out, PROTO_MSG_HAVE, F_COUNT, hint, err, errlen))
        return -1;
    proto_enc_str(&e, "sender", h->sender);
    proto_enc_uint(&e, "epoch", h->epoch);
    proto_enc_uint(&e, "step", h->step);
    proto_enc_key(&e, "done");
    msgpack_pack_array(&e.pk, h->n_epochs);
    for (uint32_t k = 0; k < h->n_epochs; k++)
        proto_enc_bin(&e, NULL, h->done[k] ? (const void *)h->done[k] : (const void *)"", h->done_bytes[k]);
    return proto_enc_end(&e, PROTO_MSG_HAVE, err, errlen);
}

/* The done array: one bin per epoch, borrowed. */
static int decode_done(proto_have_t *h, const msgpack_object_array *arr, char *err, size_t errlen)
{
    if (check_epochs(arr->size, "the length of done", err, errlen))
        return -1;
    for (uint32_t k = 0; k < arr->size; k++) {
        const proto_where_t w = { MSG, "done", k };
        proto_field_t f = { "bits", &arr->ptr[k] };
        if (proto_dec_bin(&w, &f, &h->done[k], &h->done_bytes[k], err, errlen) ||
            check_bytes(h->done_bytes[k], k, err, errlen))
            return -1;
        if (h->done_bytes[k] == 0)
            h->done[k] = NULL;
    }
    h->n_epochs = arr->size;
    return 0;
}

int proto_have_decode(proto_have_t *h, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_SENDER] = { "sender", NULL }, [F_EPOCH] = { "epoch", NULL },
        [F_STEP] = { "step", NULL },     [F_DONE] = { "done", NULL },
    };
    msgpack_object_map root;
    const msgpack_object_array *done;
    uint64_t epoch = 0, step = 0;
    int rc = -1;

    memset(h, 0, sizeof *h);
    if (proto_dec_begin(PROTO_MSG_HAVE, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_name(&w, &f[F_SENDER], h->sender, sizeof h->sender, err, errlen) ||
        proto_dec_uint(&w, &f[F_EPOCH], 0, UINT32_MAX, &epoch, err, errlen) ||
        proto_dec_uint(&w, &f[F_STEP], 0, UINT64_MAX, &step, err, errlen) ||
        proto_dec_array(&w, &f[F_DONE], &done, err, errlen) || decode_done(h, done, err, errlen))
        goto done;
    h->epoch = (uint32_t)epoch;
    h->step = step;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        memset(h, 0, sizeof *h);
    return rc;
}

int proto_have_bit(const proto_have_t *h, uint32_t epoch, uint64_t index)
{
    if (epoch < h->epoch || epoch - h->epoch >= h->n_epochs)
        return 0;
    uint32_t k = epoch - h->epoch;
    if (index / 8 >= h->done_bytes[k])
        return 0;
    return (h->done[k][index / 8] >> (index % 8)) & 1u;
}

/* ack.c: Ack, the trainer telling the loader which samples of an epoch it
 * has trained (or already holds), so that the loader re-sends only the others. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "ack"
#define ACK_OVERHEAD_BYTES 256
#define ACK_INDEX_MAX_BYTES 9   /* a uint64 in its widest msgpack form */

enum { F_SENDER, F_EPOCH, F_INDICES, F_COUNT };

void proto_ack_clear(proto_ack_t *a)
{
    free(a->indices);
    memset(a, 0, sizeof *a);
}

static int check_count(uint32_t n, const char *what, char *err, size_t errlen)
{
    if (n < 1 || n > PROTO_MAX_ACK_INDICES)
        return proto_fail(err, errlen, MSG ": %s is %" PRIu32 ", expected 1..%u (PROTO_MAX_ACK_INDICES)", what, n,
                                       PROTO_MAX_ACK_INDICES);
    return 0;
}

int proto_ack_encode(proto_buf_t *out, const proto_ack_t *a, char *err, size_t errlen)
{
    proto_enc_t e;
    if (proto_check_name(MSG, "sender", a->sender, sizeof a->sender, err, errlen) ||
        check_count(a->n_indices, "n_indices", err, errlen))
        return -1;
    if (!a->indices)
        return proto_fail(err, errlen, MSG ": indices is NULL but n_indices is %" PRIu32, a->n_indices);
    size_t hint = ACK_OVERHEAD_BYTES + (size_t)a->n_indices * ACK_INDEX_MAX_BYTES;
    if (proto_enc_begin(&e, out, PROTO_MSG_ACK, F_COUNT, hint, err, errlen))
        return -1;
    proto_enc_str(&e, "sender", a->sender);
    proto_enc_uint(&e, "epoch", a->epoch);
    proto_enc_key(&e, "indices");
    msgpack_pack_array(&e.pk, a->n_indices);
    for (uint32_t i = 0; i < a->n_indices; i++)
        proto_enc_uint(&e, NULL, a->indices[i]);
    return proto_enc_end(&e, PROTO_MSG_ACK, err, errlen);
}

/* The indices array into a->indices. */
static int decode_indices(proto_ack_t *a, const msgpack_object_array *arr, char *err, size_t errlen)
{
    if (check_count(arr->size, "the length of indices", err, errlen))
        return -1;
    /* arr->size elements are present in the message (the pre-scan saw them). */
    a->indices = malloc((size_t)arr->size * sizeof *a->indices);
    if (!a->indices)
        return proto_fail(err, errlen, MSG ": out of memory for %" PRIu32 " indices", arr->size);
    for (uint32_t i = 0; i < arr->size; i++) {
        const proto_where_t w = { MSG, "indices", i };
        proto_field_t f = { "index", &arr->ptr[i] };
        if (proto_dec_uint(&w, &f, 0, UINT64_MAX, &a->indices[i], err, errlen))
            return -1;
    }
    a->n_indices = arr->size;
    return 0;
}

int proto_ack_decode(proto_ack_t *a, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_SENDER] = { "sender", NULL }, [F_EPOCH] = { "epoch", NULL },
        [F_INDICES] = { "indices", NULL },
    };
    msgpack_object_map root;
    const msgpack_object_array *indices;
    uint64_t epoch = 0;
    int rc = -1;

    memset(a, 0, sizeof *a);
    if (proto_dec_begin(PROTO_MSG_ACK, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_name(&w, &f[F_SENDER], a->sender, sizeof a->sender, err, errlen) ||
        proto_dec_uint(&w, &f[F_EPOCH], 0, UINT32_MAX, &epoch, err, errlen) ||
        proto_dec_array(&w, &f[F_INDICES], &indices, err, errlen) || decode_indices(a, indices, err, errlen))
        goto done;
    a->epoch = (uint32_t)epoch;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        proto_ack_clear(a);
    return rc;
}

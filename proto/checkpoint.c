/* checkpoint.c: Checkpoint, a trained model is ready, trainer -> evaluator.
 * Carries the checkpoint file's bytes, or its path on a shared filesystem,
 * or both. */
#include <inttypes.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "checkpoint"
#define CKPT_OVERHEAD_BYTES 128

enum { F_STEP, F_EPOCH, F_METHOD, F_ARCH, F_PATH, F_BYTES, F_COUNT };

int proto_checkpoint_encode(proto_buf_t *out, const proto_checkpoint_t *c, char *err, size_t errlen)
{
    proto_enc_t e;
    if (proto_check_name(MSG, "method", c->method, sizeof c->method, err, errlen) ||
        proto_check_name(MSG, "arch", c->arch, sizeof c->arch, err, errlen) ||
        proto_check_text(MSG, "path", c->path, sizeof c->path, err, errlen))
        return -1;
    if (c->bytes && c->n_bytes == 0)
        return proto_fail(err, errlen, MSG ": bytes is set but n_bytes is 0; set bytes to NULL when there "
                                       "are none");
    if (!c->bytes && c->n_bytes != 0)
        return proto_fail(err, errlen, MSG ": n_bytes is %zu but bytes is NULL", c->n_bytes);
    int has_path = c->path[0] != '\0', has_bytes = c->bytes != NULL;
    if (!has_path && !has_bytes)
        return proto_fail(err, errlen, MSG ": neither path nor bytes is set; a checkpoint needs at least one");
    if (c->n_bytes > PROTO_MAX_MESSAGE_BYTES)
        return proto_fail(err, errlen, MSG ": %zu checkpoint bytes exceed PROTO_MAX_MESSAGE_BYTES (%u); "
                                       "HINT: send the path instead", c->n_bytes, PROTO_MAX_MESSAGE_BYTES);

    size_t hint = CKPT_OVERHEAD_BYTES + strlen(c->arch) + strlen(c->path) + c->n_bytes;
    if (proto_enc_begin(&e, out, PROTO_MSG_CHECKPOINT, 4 + has_path + has_bytes, hint, err, errlen))
        return -1;
    proto_enc_uint(&e, "step", c->step);
    proto_enc_uint(&e, "epoch", c->epoch);
    proto_enc_str(&e, "method", c->method);
    proto_enc_str(&e, "arch", c->arch);
    if (has_path)
        proto_enc_str(&e, "path", c->path);
    if (has_bytes)
        proto_enc_bin(&e, "bytes", c->bytes, c->n_bytes);
    return proto_enc_end(&e, PROTO_MSG_CHECKPOINT, err, errlen);
}

int proto_checkpoint_decode(proto_checkpoint_t *c, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_STEP] = { "step", NULL },     [F_EPOCH] = { "epoch", NULL },
        [F_METHOD] = { "method", NULL }, [F_ARCH] = { "arch", NULL },
        [F_PATH] = { "path", NULL },     [F_BYTES] = { "bytes", NULL },
    };
    msgpack_object_map root;
    uint64_t step, epoch;
    int rc = -1;

    memset(c, 0, sizeof *c);
    if (proto_dec_begin(PROTO_MSG_CHECKPOINT, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_uint(&w, &f[F_STEP], 0, UINT64_MAX, &step, err, errlen) ||
        proto_dec_uint(&w, &f[F_EPOCH], 0, UINT32_MAX, &epoch, err, errlen) ||
        proto_dec_name(&w, &f[F_METHOD], c->method, sizeof c->method, err, errlen) ||
        proto_dec_name(&w, &f[F_ARCH], c->arch, sizeof c->arch, err, errlen))
        goto done;
    /* path and bytes are optional: absent or nil means none. */
    if (f[F_PATH].val && f[F_PATH].val->type != MSGPACK_OBJECT_NIL &&
        proto_dec_text(&w, &f[F_PATH], c->path, sizeof c->path, err, errlen))
        goto done;
    if (f[F_BYTES].val && f[F_BYTES].val->type != MSGPACK_OBJECT_NIL) {
        if (proto_dec_bin(&w, &f[F_BYTES], &c->bytes, &c->n_bytes, err, errlen))
            goto done;
        if (c->n_bytes == 0) {
            proto_fail(err, errlen, MSG ": bytes is an empty bin; omit it (or send nil) when there are none");
            goto done;
        }
    }
    if (c->path[0] == '\0' && !c->bytes) {
        proto_fail(err, errlen, MSG ": neither path nor bytes is present; a checkpoint needs at least one");
        goto done;
    }
    c->step = step;
    c->epoch = (uint32_t)epoch;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        memset(c, 0, sizeof *c);
    return rc;
}

/* proto.c: what every message type shares: the error helper, the output
 * buffer, the packer, the header, the unpack step and the typed field getters.
 * The encode/decode pair of each type live in sample.c, viewbatch.c,
 * checkpoint.c, control.c, stats.c, ack.c and have.c; the pre-scan in scan.c.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto_internal.h"

#define ZONE_CHUNK_BYTES (16u << 10)  /* holds the unpacked objects of a typical message */
#define BUF_MIN_CAP      256u


static const char *const type_names[] = {
    [PROTO_MSG_INVALID] = "invalid",
    [PROTO_MSG_SAMPLE] = "sample",
    [PROTO_MSG_VIEWBATCH] = "viewbatch",
    [PROTO_MSG_CHECKPOINT] = "checkpoint",
    [PROTO_MSG_CONTROL] = "control",
    [PROTO_MSG_STATS] = "stats",
    [PROTO_MSG_ACK] = "ack",
    [PROTO_MSG_HAVE] = "have",
};

int proto_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *proto_msg_type_name(proto_msg_type_t type)
{
    if ((unsigned)type < sizeof type_names / sizeof type_names[0] && type != PROTO_MSG_INVALID)
        return type_names[type];
    return "invalid";
}

/* ---- proto_buf_t ---- */

void proto_buf_init(proto_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void proto_buf_release(proto_buf_t *b)
{
    free(b->data);
    proto_buf_init(b);
}

uint8_t *proto_buf_detach(proto_buf_t *b, size_t *len)
{
    uint8_t *data = b->data;
    if (len)
        *len = b->len;
    proto_buf_init(b);
    return data;
}

int proto_buf_reserve(proto_buf_t *b, size_t extra, char *err, size_t errlen)
{
    if (extra > SIZE_MAX - b->len)
        return proto_fail(err, errlen, "proto: buffer of %zu bytes cannot grow by %zu", b->len, extra);
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data)
        return proto_fail(err, errlen, "proto: out of memory growing a message buffer to %zu bytes", cap);
    b->data = data;
    b->cap = cap;
    return 0;
}

/* ---- encoding ---- */

static int enc_write(void *data, const char *p, size_t n)
{
    proto_enc_t *e = data;
    if (e->failed || proto_buf_reserve(e->out, n, NULL, 0)) {   /* proto_enc_end says why */
        e->failed = 1;
        return -1;
    }
    memcpy(e->out->data + e->out->len, p, n);
    e->out->len += n;
    return 0;
}

static void enc_raw_str(proto_enc_t *e, const char *s, size_t n)
{
    msgpack_pack_str(&e->pk, n);
    msgpack_pack_str_body(&e->pk, s, n);
}

void proto_enc_key(proto_enc_t *e, const char *key)
{
    enc_raw_str(e, key, strlen(key));
}

int proto_enc_begin(proto_enc_t *e, proto_buf_t *out, proto_msg_type_t type,
                    uint32_t n_fields, size_t size_hint, char *err, size_t errlen)
{
    e->out = out;
    e->failed = 0;
    out->len = 0;
    if (proto_buf_reserve(out, size_hint, err, errlen))
        return -1;
    msgpack_packer_init(&e->pk, e, enc_write);
    msgpack_pack_map(&e->pk, PROTO_HEADER_ENTRIES + n_fields);
    proto_enc_str(e, "fmt", PROTO_FORMAT);
    proto_enc_uint(e, "ver", PROTO_VERSION);
    proto_enc_str(e, "type", proto_msg_type_name(type));
    return 0;
}

void proto_enc_uint(proto_enc_t *e, const char *key, uint64_t v)
{
    if (key)
        proto_enc_key(e, key);
    msgpack_pack_uint64(&e->pk, v);
}

void proto_enc_int(proto_enc_t *e, const char *key, int64_t v)
{
    if (key)
        proto_enc_key(e, key);
    msgpack_pack_int64(&e->pk, v);
}

void proto_enc_double(proto_enc_t *e, const char *key, double v)
{
    if (key)
        proto_enc_key(e, key);
    msgpack_pack_double(&e->pk, v);
}

void proto_enc_str(proto_enc_t *e, const char *key, const char *s)
{
    if (key)
        proto_enc_key(e, key);
    enc_raw_str(e, s, strlen(s));
}

void proto_enc_bin(proto_enc_t *e, const char *key, const void *p, size_t n)
{
    if (key)
        proto_enc_key(e, key);
    msgpack_pack_bin(&e->pk, n);
    msgpack_pack_bin_body(&e->pk, p, n);
}

int proto_enc_end(proto_enc_t *e, proto_msg_type_t type, char *err, size_t errlen)
{
    if (!e->failed && e->out->len > PROTO_MAX_MESSAGE_BYTES) {
        size_t n = e->out->len;
        e->out->len = 0;
        return proto_fail(err, errlen, "%s: encoded message is %zu bytes, more than PROTO_MAX_MESSAGE_BYTES "
                                       "(%u); HINT: send fewer samples per message",
                                       proto_msg_type_name(type), n, PROTO_MAX_MESSAGE_BYTES);
    }
    if (!e->failed)
        return 0;
    e->out->len = 0;
    return proto_fail(err, errlen, "%s: out of memory while encoding", proto_msg_type_name(type));
}

/* ---- checks shared by encoders and decoders ---- */

int proto_utf8_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= extra)
            return 0;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += extra + 1;
    }
    return 1;
}

static int check_str(const char *msg, const char *field, const char *s, size_t cap, int allow_empty,
                     char *err, size_t errlen)
{
    if (!s)
        return proto_fail(err, errlen, "%s: %s is NULL", msg, field);
    size_t n = strnlen(s, cap);
    if (n == cap)
        return proto_fail(err, errlen, "%s: %s is %zu bytes or longer, the limit is %zu", msg, field, cap, cap - 1);
    if (n == 0 && !allow_empty)
        return proto_fail(err, errlen, "%s: %s is empty", msg, field);
    if (!proto_utf8_ok(s, n))
        return proto_fail(err, errlen, "%s: %s is not valid UTF-8", msg, field);
    return 0;
}

int proto_check_name(const char *msg, const char *field, const char *s, size_t cap, char *err, size_t errlen)
{
    return check_str(msg, field, s, cap, 0, err, errlen);
}

int proto_check_text(const char *msg, const char *field, const char *s, size_t cap, char *err, size_t errlen)
{
    return check_str(msg, field, s, cap, 1, err, errlen);
}

int proto_check_image(const char *msg, uint32_t height, uint32_t width, uint32_t channels, char *err, size_t errlen)
{
    if (height < 1 || height > PROTO_MAX_SIDE)
        return proto_fail(err, errlen, "%s: height is %" PRIu32 ", expected 1..%u (PROTO_MAX_SIDE)",
                                       msg, height, PROTO_MAX_SIDE);
    if (width < 1 || width > PROTO_MAX_SIDE)
        return proto_fail(err, errlen, "%s: width is %" PRIu32 ", expected 1..%u (PROTO_MAX_SIDE)",
                                       msg, width, PROTO_MAX_SIDE);
    if ((uint64_t)height * width > PROTO_MAX_PIXELS)
        return proto_fail(err, errlen, "%s: %" PRIu32 " x %" PRIu32 " is %" PRIu64 " pixels, the limit is %u "
                                       "(PROTO_MAX_PIXELS)", msg, height, width, (uint64_t)height * width,
                                       PROTO_MAX_PIXELS);
    if (channels < 1 || channels > PROTO_MAX_CHANNELS)
        return proto_fail(err, errlen, "%s: channels is %" PRIu32 ", expected 1..%u (PROTO_MAX_CHANNELS)",
                                       msg, channels, PROTO_MAX_CHANNELS);
    return 0;
}

/* ---- decoding ---- */

/* Each thread unpacks into its own zone, cleared after every message, so a
 * steady stream of messages costs no allocation. The key frees the zone when
 * the thread exits. */
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;
static int zone_key_ok;
static __thread msgpack_zone *thread_zone;

static void zone_free(void *z)
{
    msgpack_zone_free(z);
}

static void zone_key_create(void)
{
    zone_key_ok = pthread_key_create(&zone_key, zone_free) == 0;
}

static msgpack_zone *zone_get(void)
{
    if (thread_zone)
        return thread_zone;
    pthread_once(&zone_once, zone_key_create);
    msgpack_zone *z = msgpack_zone_new(ZONE_CHUNK_BYTES);
    if (!z)
        return NULL;
    if (zone_key_ok)
        pthread_setspecific(zone_key, z);
    thread_zone = z;
    return z;
}

void proto_dec_end(void)
{
    if (thread_zone)
        msgpack_zone_clear(thread_zone);
}

int proto_dec_begin(proto_msg_type_t type, const void *buf, size_t len, msgpack_object_map *root,
                    char *err, size_t errlen)
{
    const char *msg = proto_msg_type_name(type);
    proto_msg_type_t found;
    uint32_t n_entries;
    if (!buf && len)
        return proto_fail(err, errlen, "%s: NULL buffer of %zu bytes", msg, len);
    if (proto_read_header(msg, buf, len, &found, &n_entries, err, errlen))
        return -1;
    if (found != type)
        return proto_fail(err, errlen, "%s: expected a \"%s\" message, found a \"%s\" message",
                                       msg, msg, proto_msg_type_name(found));
    if (proto_scan(msg, buf, len, err, errlen))
        return -1;

    msgpack_zone *z = zone_get();
    if (!z)
        return proto_fail(err, errlen, "%s: out of memory creating the unpack zone", msg);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack(buf, len, &off, z, &obj);
    if (r != MSGPACK_UNPACK_SUCCESS || obj.type != MSGPACK_OBJECT_MAP ||
        obj.via.map.size != n_entries) {
        /* The pre-scan accepted it, so only an allocation failure lands here. */
        msgpack_zone_clear(z);
        return proto_fail(err, errlen, "%s: msgpack unpack failed (code %d) on a %zu-byte message",
                                       msg, (int)r, len);
    }
    *root = obj.via.map;
    return 0;
}

const char *proto_obj_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "non-negative int";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "unknown msgpack type";
}

const char *proto_field_path(const proto_where_t *w, const char *key, char *tmp, size_t n)
{
    if (!w->parent)
        return key;
    snprintf(tmp, n, "%s[%" PRIu32 "].%s", w->parent, w->index, key);
    return tmp;
}

#define PATH_BYTES 96

static int fail_type(const proto_where_t *w, const proto_field_t *f, const char *expected, char *err, size_t errlen)
{
    char tmp[PATH_BYTES];
    return proto_fail(err, errlen, "%s: %s must be %s, found %s", w->msg,
                                   proto_field_path(w, f->key, tmp, sizeof tmp), expected,
                                   proto_obj_type_name(f->val->type));
}

static int fail_missing(const proto_where_t *w, const proto_field_t *f, char *err, size_t errlen)
{
    char tmp[PATH_BYTES];
    return proto_fail(err, errlen, "%s: required field \"%s\" is missing", w->msg,
                                   proto_field_path(w, f->key, tmp, sizeof tmp));
}

int proto_dec_fields(const proto_where_t *w, const msgpack_object_map *m, uint32_t first,
                     proto_field_t *f, size_t n, char *err, size_t errlen)
{
    for (size_t k = 0; k < n; k++)
        f[k].val = NULL;
    for (uint32_t i = first; i < m->size; i++) {
        const msgpack_object_kv *kv = &m->ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            if (w->parent)
                return proto_fail(err, errlen, "%s: %s[%" PRIu32 "] has a %s key at entry %" PRIu32
                                               ", keys must be str", w->msg, w->parent, w->index,
                                               proto_obj_type_name(kv->key.type), i);
            return proto_fail(err, errlen, "%s: the message map has a %s key at entry %" PRIu32
                                           ", keys must be str", w->msg, proto_obj_type_name(kv->key.type), i);
        }
        const char *key = kv->key.via.str.ptr;
        uint32_t key_len = kv->key.via.str.size;
        for (size_t k = 0; k < n; k++) {
            if (strlen(f[k].key) != key_len || memcmp(f[k].key, key, key_len) != 0)
                continue;
            if (f[k].val) {
                char tmp[PATH_BYTES];
                return proto_fail(err, errlen, "%s: field \"%s\" appears twice", w->msg,
                                               proto_field_path(w, f[k].key, tmp, sizeof tmp));
            }
            f[k].val = &kv->val;
            break;
        }
    }
    return 0;
}

int proto_dec_uint(const proto_where_t *w, const proto_field_t *f, uint64_t min, uint64_t max,
                   uint64_t *out, char *err, size_t errlen)
{
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (f->val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            char tmp[PATH_BYTES];
            return proto_fail(err, errlen, "%s: %s is %" PRId64 ", expected %" PRIu64 "..%" PRIu64, w->msg,
                                           proto_field_path(w, f->key, tmp, sizeof tmp), f->val->via.i64,
                                           min, max);
        }
        return fail_type(w, f, "a non-negative int", err, errlen);
    }
    uint64_t v = f->val->via.u64;
    if (v < min || v > max) {
        char tmp[PATH_BYTES];
        return proto_fail(err, errlen, "%s: %s is %" PRIu64 ", expected %" PRIu64 "..%" PRIu64, w->msg,
                                       proto_field_path(w, f->key, tmp, sizeof tmp), v, min, max);
    }
    *out = v;
    return 0;
}

int proto_dec_int(const proto_where_t *w, const proto_field_t *f, int64_t min, int64_t max,
                  int64_t *out, char *err, size_t errlen)
{
    char tmp[PATH_BYTES];
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    int64_t v;
    if (f->val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = f->val->via.i64;
    } else if (f->val->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (f->val->via.u64 > (uint64_t)max)
            return proto_fail(err, errlen, "%s: %s is %" PRIu64 ", expected %" PRId64 "..%" PRId64, w->msg,
                                           proto_field_path(w, f->key, tmp, sizeof tmp), f->val->via.u64,
                                           min, max);
        v = (int64_t)f->val->via.u64;
    } else {
        return fail_type(w, f, "an int", err, errlen);
    }
    if (v < min || v > max)
        return proto_fail(err, errlen, "%s: %s is %" PRId64 ", expected %" PRId64 "..%" PRId64, w->msg,
                                       proto_field_path(w, f->key, tmp, sizeof tmp), v, min, max);
    *out = v;
    return 0;
}

int proto_dec_double(const proto_where_t *w, const proto_field_t *f, double *out, char *err, size_t errlen)
{
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    switch (f->val->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = f->val->via.f64;
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)f->val->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)f->val->via.i64;
        return 0;
    default:
        return fail_type(w, f, "a number (float64, float32 or int)", err, errlen);
    }
}

static int dec_str(const proto_where_t *w, const proto_field_t *f, char *dst, size_t cap,
                   int allow_empty, char *err, size_t errlen)
{
    char tmp[PATH_BYTES];
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_STR)
        return fail_type(w, f, "a str", err, errlen);
    uint32_t n = f->val->via.str.size;
    if (n >= cap)
        return proto_fail(err, errlen, "%s: %s is %" PRIu32 " bytes long, the limit is %zu", w->msg,
                                       proto_field_path(w, f->key, tmp, sizeof tmp), n, cap - 1);
    if (n == 0 && !allow_empty)
        return proto_fail(err, errlen, "%s: %s is empty, expected a name", w->msg,
                                       proto_field_path(w, f->key, tmp, sizeof tmp));
    if (!proto_utf8_ok(f->val->via.str.ptr, n))
        return proto_fail(err, errlen, "%s: %s is not valid UTF-8 (or holds a NUL byte)", w->msg,
                                       proto_field_path(w, f->key, tmp, sizeof tmp));
    memcpy(dst, f->val->via.str.ptr, n);
    dst[n] = '\0';
    return 0;
}

int proto_dec_name(const proto_where_t *w, const proto_field_t *f, char *dst, size_t cap, char *err, size_t errlen)
{
    return dec_str(w, f, dst, cap, 0, err, errlen);
}

int proto_dec_text(const proto_where_t *w, const proto_field_t *f, char *dst, size_t cap, char *err, size_t errlen)
{
    return dec_str(w, f, dst, cap, 1, err, errlen);
}

int proto_dec_bin(const proto_where_t *w, const proto_field_t *f, const uint8_t **p, size_t *n,
                  char *err, size_t errlen)
{
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_BIN)
        return fail_type(w, f, "a bin", err, errlen);
    *p = (const uint8_t *)f->val->via.bin.ptr;
    *n = f->val->via.bin.size;
    return 0;
}

int proto_dec_array(const proto_where_t *w, const proto_field_t *f, const msgpack_object_array **a,
                    char *err, size_t errlen)
{
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_ARRAY)
        return fail_type(w, f, "an array", err, errlen);
    *a = &f->val->via.array;
    return 0;
}

int proto_dec_map(const proto_where_t *w, const proto_field_t *f, const msgpack_object_map **m,
                  char *err, size_t errlen)
{
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_MAP)
        return fail_type(w, f, "a map", err, errlen);
    *m = &f->val->via.map;
    return 0;
}

int proto_dec_enum(const proto_where_t *w, const proto_field_t *f, const char *const *names,
                   size_t n, size_t *out, char *err, size_t errlen)
{
    char tmp[PATH_BYTES], q[PROTO_QUOTE_BYTES], list[256];
    if (!f->val)
        return fail_missing(w, f, err, errlen);
    if (f->val->type != MSGPACK_OBJECT_STR)
        return fail_type(w, f, "a str", err, errlen);
    const char *s = f->val->via.str.ptr;
    uint32_t len = f->val->via.str.size;
    size_t used = 0;
    list[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        if (!names[k])
            continue;
        if (strlen(names[k]) == len && memcmp(names[k], s, len) == 0) {
            *out = k;
            return 0;
        }
        if (used < sizeof list) {
            int r = snprintf(list + used, sizeof list - used, "%s\"%s\"", used ? ", " : "",
                             names[k]);
            used += r > 0 ? (size_t)r : 0;
        }
    }
    return proto_fail(err, errlen, "%s: %s is \"%s\", expected one of %s", w->msg,
                                   proto_field_path(w, f->key, tmp, sizeof tmp), proto_quote(s, len, q), list);
}

const char *proto_quote(const void *str, size_t n, char *out)
{
    const unsigned char *s = str;
    const size_t shown = PROTO_QUOTE_BYTES - 4;
    size_t k = 0;
    for (size_t i = 0; i < n && k < shown; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? (char)s[i] : '?';
    if (n > shown) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

int proto_peek_type(const void *buf, size_t len, proto_msg_type_t *type, char *err, size_t errlen)
{
    uint32_t n_entries;
    *type = PROTO_MSG_INVALID;
    if (!buf && len)
        return proto_fail(err, errlen, "message: NULL buffer of %zu bytes", len);
    return proto_read_header(NULL, buf, len, type, &n_entries, err, errlen);
}

/* proto_internal.h: helpers shared by the C files of proto/ (error helper, the
 * encoder's packer, the pre-scan, field extraction). Nothing outside proto/
 * includes this file or msgpack.h.
 */
#ifndef PROTO_PROTO_INTERNAL_H
#define PROTO_PROTO_INTERNAL_H

#include <msgpack.h>

#include "proto/proto.h"

/* View data and float fields go on the wire little-endian and are borrowed
 * without conversion, which is only right on a little-endian host. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "proto/ assumes a little-endian host (float32 view data is borrowed as is)"
#endif

/* Number of header entries (fmt, ver, type) at the start of every message map. */
#define PROTO_HEADER_ENTRIES 3u

/* Formats the error message into err[0..errlen) (nothing when err is NULL)
 * and returns -1. */
int proto_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- encoding ---- */

typedef struct {
    msgpack_packer pk;
    proto_buf_t *out;
    int failed;       /* a write could not grow the buffer: the message is incomplete */
} proto_enc_t;

/* Empties out, reserves size_hint bytes, and writes the map header for
 * n_fields fields after fmt, ver and type. */
int proto_enc_begin(proto_enc_t *e, proto_buf_t *out, proto_msg_type_t type,
                    uint32_t n_fields, size_t size_hint, char *err, size_t errlen);
void proto_enc_uint(proto_enc_t *e, const char *key, uint64_t v);
void proto_enc_int(proto_enc_t *e, const char *key, int64_t v);
void proto_enc_double(proto_enc_t *e, const char *key, double v);
void proto_enc_str(proto_enc_t *e, const char *key, const char *s);
void proto_enc_bin(proto_enc_t *e, const char *key, const void *p, size_t n);
void proto_enc_key(proto_enc_t *e, const char *key);
/* 0, or -1 (out of memory) with the output emptied. */
int proto_enc_end(proto_enc_t *e, proto_msg_type_t type, char *err, size_t errlen);

/* Encoder-side checks that mirror the decoder's, so that we never send what
 * we would refuse. msg is the message type name for the error text. */
int proto_check_name(const char *msg, const char *field, const char *s, size_t cap, char *err, size_t errlen);
int proto_check_text(const char *msg, const char *field, const char *s, size_t cap, char *err, size_t errlen);
int proto_check_image(const char *msg, uint32_t height, uint32_t width, uint32_t channels, char *err, size_t errlen);

/* ---- decoding ---- */

/* Where a field lives, for error text: "viewbatch: samples[3].data ...". */
typedef struct {
    const char *msg;      /* message type name */
    const char *parent;   /* enclosing array field, or NULL at the top level */
    uint32_t index;       /* element of parent */
} proto_where_t;

/* A field the decoder looks for: key in, val out (NULL when absent). */
typedef struct {
    const char *key;
    const msgpack_object *val;
} proto_field_t;

/* Walks the raw bytes without allocating and refuses anything msgpack-c could
 * be tricked into allocating for: declared lengths and counts beyond the bytes
 * present, nesting beyond PROTO_MAX_DEPTH, more than PROTO_MAX_OBJECTS values,
 * trailing bytes, bytes that are not msgpack. */
int proto_scan(const char *msg, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* Reads the header (fmt, ver, type) from the raw bytes. msg names the
 * expected type for errors (NULL: any type). n_entries gets the map size. */
int proto_read_header(const char *msg, const uint8_t *buf, size_t len,
                      proto_msg_type_t *type, uint32_t *n_entries, char *err, size_t errlen);

/* Checks the header against `type`, pre-scans, and unpacks into this thread's
 * zone; root gets the message map (entries from PROTO_HEADER_ENTRIES on are
 * the fields). Pair every successful call with proto_dec_end(). */
int proto_dec_begin(proto_msg_type_t type, const void *buf, size_t len, msgpack_object_map *root,
                    char *err, size_t errlen);
void proto_dec_end(void);

/* Matches the map's entries from `first` on against f[0..n): fills val, refuses
 * non-string keys and repeated known keys, ignores unknown keys. */
int proto_dec_fields(const proto_where_t *w, const msgpack_object_map *m, uint32_t first,
                     proto_field_t *f, size_t n, char *err, size_t errlen);

/* Typed getters: fail with the field's path when it is missing, of the wrong
 * type or out of [min, max]. */
int proto_dec_uint(const proto_where_t *w, const proto_field_t *f, uint64_t min, uint64_t max,
                   uint64_t *out, char *err, size_t errlen);
int proto_dec_int(const proto_where_t *w, const proto_field_t *f, int64_t min, int64_t max,
                  int64_t *out, char *err, size_t errlen);
int proto_dec_double(const proto_where_t *w, const proto_field_t *f, double *out, char *err, size_t errlen);
/* A name: non-empty, at most cap-1 bytes, UTF-8, no NUL; copied into dst[cap]. */
int proto_dec_name(const proto_where_t *w, const proto_field_t *f, char *dst, size_t cap, char *err, size_t errlen);
/* A text: like a name, but may be empty. */
int proto_dec_text(const proto_where_t *w, const proto_field_t *f, char *dst, size_t cap, char *err, size_t errlen);
int proto_dec_bin(const proto_where_t *w, const proto_field_t *f, const uint8_t **p, size_t *n,
                  char *err, size_t errlen);
int proto_dec_array(const proto_where_t *w, const proto_field_t *f, const msgpack_object_array **a,
                    char *err, size_t errlen);
int proto_dec_map(const proto_where_t *w, const proto_field_t *f, const msgpack_object_map **m,
                  char *err, size_t errlen);

/* Formats a field path ("samples[3].data" or "height") into tmp. */
const char *proto_field_path(const proto_where_t *w, const char *key, char *tmp, size_t n);
const char *proto_obj_type_name(msgpack_object_type t);
/* A str field holding one of names[0..n) (NULL entries are skipped); *out
 * gets its index. */
int proto_dec_enum(const proto_where_t *w, const proto_field_t *f, const char *const *names,
                   size_t n, size_t *out, char *err, size_t errlen);

/* Printable, shortened copy of s[0..n) for error text, in out[PROTO_QUOTE_BYTES]. */
#define PROTO_QUOTE_BYTES 48
const char *proto_quote(const void *s, size_t n, char *out);
/* 1 when s[0..n) is valid UTF-8 without NUL bytes. */
int proto_utf8_ok(const char *s, size_t n);

#endif

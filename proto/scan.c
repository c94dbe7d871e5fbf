/* scan.c: reading raw message bytes before msgpack-c sees them.
 *
 * msgpack-c allocates storage for every element an array or map declares as
 * soon as it reads the declaration, so a few bytes can ask it for gigabytes.
 * proto_scan walks the whole message without allocating and lets it through
 * only when every declared element and byte is really there; after that the
 * unpacker allocates in proportion to the bytes received.
 *
 * proto_read_header reads fmt, ver and type straight from the bytes, so that
 * peeking at a message and refusing a foreign or other-version one is cheap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proto/proto_internal.h"

/* Big-endian unsigned of n bytes (msgpack's byte order for lengths and ints). */
static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The msgpack family of a format byte, for error text. */
static const char *raw_kind(uint8_t t)
{
    if (t <= 0x7f || t >= 0xe0)
        return "an int";
    if (t <= 0x8f)
        return "a map";
    if (t <= 0x9f)
        return "an array";
    if (t <= 0xbf)
        return "a str";
    switch (t) {
    case 0xc0: return "nil";
    case 0xc1: return "the never-used byte 0xc1";
    case 0xc2: case 0xc3: return "a bool";
    case 0xc4: case 0xc5: case 0xc6: return "a bin";
    case 0xc7: case 0xc8: case 0xc9: return "an ext";
    case 0xca: case 0xcb: return "a float";
    case 0xcc: case 0xcd: case 0xce: case 0xcf: return "an int";
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return "a negative-capable int";
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return "an ext";
    case 0xd9: case 0xda: case 0xdb: return "a str";
    case 0xdc: case 0xdd: return "an array";
    default: return "a map";  /* 0xde, 0xdf */
    }
}

int proto_scan(const char *msg, const uint8_t *b, size_t len, char *err, size_t errlen)
{
    uint64_t need[PROTO_MAX_DEPTH + 1];  /* values still expected at each nesting level */
    int depth = 0;
    uint64_t pending = 1;                /* sum of need[]: each needs at least one byte */
    uint64_t objects = 0;
    size_t pos = 0;

    if (len > PROTO_MAX_MESSAGE_BYTES)
        return proto_fail(err, errlen, "%s: message is %zu bytes, more than PROTO_MAX_MESSAGE_BYTES (%u)",
                                       msg, len, PROTO_MAX_MESSAGE_BYTES);
    need[0] = 1;
    while (depth >= 0) {
        if (need[depth] == 0) {
            depth--;
            continue;
        }
        need[depth]--;
        pending--;
        objects++;
        if (pos >= len)
            return proto_fail(err, errlen, "%s: truncated message: %" PRIu64 " more value(s) expected at "
                                           "byte %zu, where the message ends", msg, pending + 1, pos);
        size_t at = pos;
        uint8_t t = b[pos++];
        size_t hdr = 0;        /* bytes of the length that follow the format byte */
        uint64_t payload = 0;  /* bytes of data after the length */
        uint64_t count = 0;    /* values a container holds (keys and values for a map) */
        int is_map = 0, is_blob = 0, is_ext = 0;

        if (t <= 0x7f || t >= 0xe0) {
            /* fixint */
        } else if (t <= 0x8f) {
            is_map = 1, count = 2u * (t & 0x0f);
        } else if (t <= 0x9f) {
            count = t & 0x0f;
        } else if (t <= 0xbf) {
            is_blob = 1, payload = t & 0x1f;
        } else {
            switch (t) {
            case 0xc0: case 0xc2: case 0xc3: break;
            case 0xc1:
                return proto_fail(err, errlen, "%s: byte %zu is 0xc1, which is not valid msgpack", msg, at);
            case 0xc4: is_blob = 1, hdr = 1; break;
            case 0xc5: is_blob = 1, hdr = 2; break;
            case 0xc6: is_blob = 1, hdr = 4; break;
            case 0xc7: is_ext = 1, hdr = 1; break;
            case 0xc8: is_ext = 1, hdr = 2; break;
            case 0xc9: is_ext = 1, hdr = 4; break;
            case 0xca: payload = 4; break;
            case 0xcb: payload = 8; break;
            case 0xcc: case 0xd0: payload = 1; break;
            case 0xcd: case 0xd1: payload = 2; break;
            case 0xce: case 0xd2: payload = 4; break;
            case 0xcf: case 0xd3: payload = 8; break;
            case 0xd4: payload = 2; break;   /* fixext: type byte + 1, 2, 4, 8, 16 */
            case 0xd5: payload = 3; break;
            case 0xd6: payload = 5; break;
            case 0xd7: payload = 9; break;
            case 0xd8: payload = 17; break;
            case 0xd9: is_blob = 1, hdr = 1; break;
            case 0xda: is_blob = 1, hdr = 2; break;
            case 0xdb: is_blob = 1, hdr = 4; break;
            case 0xdc: hdr = 2; break;          /* array16 */
            case 0xdd: hdr = 4; break;          /* array32 */
            case 0xde: is_map = 1, hdr = 2; break;
            default:   is_map = 1, hdr = 4; break;  /* 0xdf */
            }
        }
        if (hdr) {
            if (len - pos < hdr)
                return proto_fail(err, errlen, "%s: truncated message: %s at byte %zu needs a %zu-byte "
                                               "length, only %zu bytes remain", msg, raw_kind(t), at, hdr,
                                               len - pos);
            uint64_t n = read_be(b + pos, hdr);
            pos += hdr;
            if (is_blob)
                payload = n;
            else if (is_ext)
                payload = n + 1;  /* the ext type byte, then n bytes */
            else
                count = is_map ? 2 * n : n;
        }
        if (payload > len - pos)
            return proto_fail(err, errlen, "%s: truncated or corrupt message: %s at byte %zu declares %" PRIu64
                                           " bytes, only %zu remain", msg, raw_kind(t), at,
                                           payload - (is_ext ? 1 : 0), len - pos);
        pos += payload;
        if (count) {
            if (depth + 1 > (int)PROTO_MAX_DEPTH)
                return proto_fail(err, errlen, "%s: %s at byte %zu nests deeper than %u levels "
                                               "(PROTO_MAX_DEPTH)", msg, raw_kind(t), at, PROTO_MAX_DEPTH);
            pending += count;
            if (pending > len - pos)
                return proto_fail(err, errlen, "%s: truncated or corrupt message: %s at byte %zu declares %"
                                               PRIu64 " %s, but only %zu bytes remain for %" PRIu64
                                               " pending values", msg, raw_kind(t), at,
                                               is_map ? count / 2 : count, is_map ? "entries" : "elements",
                                               len - pos, pending);
            if (objects + pending > PROTO_MAX_OBJECTS)
                return proto_fail(err, errlen, "%s: message holds more than %u msgpack values "
                                               "(PROTO_MAX_OBJECTS); %s at byte %zu declares %" PRIu64,
                                               msg, PROTO_MAX_OBJECTS, raw_kind(t), at,
                                               is_map ? count / 2 : count);
            need[++depth] = count;
        }
    }
    if (pos != len)
        return proto_fail(err, errlen, "%s: %zu bytes of trailing data after the message, which ends at "
                                       "byte %zu", msg, len - pos, pos);
    return 0;
}

/* ---- header ---- */

typedef struct {
    const char *msg;
    const uint8_t *b;
    size_t len, pos;
} reader_t;

static int rd_need(reader_t *r, size_t n, char *err, size_t errlen)
{
    if (r->len - r->pos >= n)
        return 0;
    return proto_fail(err, errlen, "%s: truncated message: the header needs %zu bytes at byte %zu, only %zu "
                                   "remain", r->msg, n, r->pos, r->len - r->pos);
}

static int rd_str(reader_t *r, const char *what, const uint8_t **p, uint32_t *n, char *err, size_t errlen)
{
    if (rd_need(r, 1, err, errlen))
        return -1;
    uint8_t t = r->b[r->pos];
    size_t hdr;
    if (t >= 0xa0 && t <= 0xbf)
        hdr = 0;
    else if (t == 0xd9)
        hdr = 1;
    else if (t == 0xda)
        hdr = 2;
    else if (t == 0xdb)
        hdr = 4;
    else
        return proto_fail(err, errlen, "%s: %s must be a str, found %s at byte %zu", r->msg, what,
                                       raw_kind(t), r->pos);
    if (rd_need(r, 1 + hdr, err, errlen))
        return -1;
    uint64_t len = hdr ? read_be(r->b + r->pos + 1, hdr) : (uint64_t)(t & 0x1f);
    r->pos += 1 + hdr;
    if (len > r->len - r->pos)
        return proto_fail(err, errlen, "%s: truncated message: %s at byte %zu declares %" PRIu64 " bytes, "
                                       "only %zu remain", r->msg, what, r->pos - 1 - hdr, len,
                                       r->len - r->pos);
    *p = r->b + r->pos;
    *n = (uint32_t)len;
    r->pos += len;
    return 0;
}

static int rd_key(reader_t *r, unsigned entry, const char *key, char *err, size_t errlen)
{
    char what[48], q[PROTO_QUOTE_BYTES];
    const uint8_t *p;
    uint32_t n;
    snprintf(what, sizeof what, "the key of entry %u", entry);
    if (rd_str(r, what, &p, &n, err, errlen))
        return -1;
    if (n != strlen(key) || memcmp(p, key, n) != 0)
        return proto_fail(err, errlen, "%s: entry %u of the message map must be the key \"%s\", found "
                                       "\"%s\" (every message starts with fmt, ver, type)", r->msg, entry,
                                       key, proto_quote(p, n, q));
    return 0;
}

static int rd_uint(reader_t *r, const char *what, uint64_t *v, char *err, size_t errlen)
{
    if (rd_need(r, 1, err, errlen))
        return -1;
    uint8_t t = r->b[r->pos];
    size_t n;
    if (t <= 0x7f) {
        *v = t;
        r->pos++;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf)
        n = (size_t)1 << (t - 0xcc);
    else
        return proto_fail(err, errlen, "%s: %s must be a non-negative int, found %s at byte %zu", r->msg, what,
                                       raw_kind(t), r->pos);
    if (rd_need(r, 1 + n, err, errlen))
        return -1;
    *v = read_be(r->b + r->pos + 1, n);
    r->pos += 1 + n;
    return 0;
}

int proto_read_header(const char *msg, const uint8_t *b, size_t len,
                      proto_msg_type_t *type, uint32_t *n_entries, char *err, size_t errlen)
{
    reader_t r = { msg ? msg : "message", b, len, 0 };
    char q[PROTO_QUOTE_BYTES];
    const uint8_t *p;
    uint32_t n;
    uint64_t ver = 0;

    if (len == 0)
        return proto_fail(err, errlen, "%s: empty message (0 bytes)", r.msg);
    if (len > PROTO_MAX_MESSAGE_BYTES)
        return proto_fail(err, errlen, "%s: message is %zu bytes, more than PROTO_MAX_MESSAGE_BYTES (%u)",
                                       r.msg, len, PROTO_MAX_MESSAGE_BYTES);
    uint8_t t = b[0];
    uint64_t entries;
    if (t >= 0x80 && t <= 0x8f) {
        entries = t & 0x0f;
        r.pos = 1;
    } else if (t == 0xde || t == 0xdf) {
        size_t hdr = t == 0xde ? 2 : 4;
        if (rd_need(&r, 1 + hdr, err, errlen))
            return -1;
        entries = read_be(b + 1, hdr);
        r.pos = 1 + hdr;
    } else {
        return proto_fail(err, errlen, "%s: not a pipeline message: it must be a msgpack map, found %s",
                                       r.msg, raw_kind(t));
    }
    if (entries > (r.len - r.pos) / 2)
        return proto_fail(err, errlen, "%s: truncated or corrupt message: the message map declares %" PRIu64
                                       " entries, only %zu bytes remain", r.msg, entries, r.len - r.pos);
    if (entries < PROTO_HEADER_ENTRIES)
        return proto_fail(err, errlen, "%s: the message map has %" PRIu64 " entries, fewer than the %u of "
                                       "the header (fmt, ver, type)", r.msg, entries, PROTO_HEADER_ENTRIES);

    if (rd_key(&r, 0, "fmt", err, errlen) || rd_str(&r, "the format tag (fmt)", &p, &n, err, errlen))
        return -1;
    if (n != strlen(PROTO_FORMAT) || memcmp(p, PROTO_FORMAT, n) != 0)
        return proto_fail(err, errlen, "%s: format tag (fmt) is \"%s\", expected \"%s\": not a pipeline "
                                       "message", r.msg, proto_quote(p, n, q), PROTO_FORMAT);
    if (rd_key(&r, 1, "ver", err, errlen) || rd_uint(&r, "the protocol version (ver)", &ver, err, errlen))
        return -1;
    if (ver != PROTO_VERSION)
        return proto_fail(err, errlen, "%s: message has protocol version %" PRIu64 ", this program speaks "
                                       "version %d; HINT: run every stage from builds with the same "
                                       "protocol version", r.msg, ver, PROTO_VERSION);
    if (rd_key(&r, 2, "type", err, errlen) || rd_str(&r, "the message type (type)", &p, &n, err, errlen))
        return -1;
    for (int k = PROTO_MSG_SAMPLE; k <= PROTO_MSG_HAVE; k++) {
        const char *name = proto_msg_type_name((proto_msg_type_t)k);
        if (n == strlen(name) && memcmp(p, name, n) == 0) {
            *type = (proto_msg_type_t)k;
            *n_entries = (uint32_t)entries;
            return 0;
        }
    }
    return proto_fail(err, errlen, "%s: unknown message type \"%s\"", r.msg, proto_quote(p, n, q));
}

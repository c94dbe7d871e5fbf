/* stats.c: Stats, a stage's named counters, for monitoring. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto_internal.h"

#define MSG "stats"
#define STATS_OVERHEAD_BYTES 256
#define STAT_MAX_BYTES       (PROTO_MAX_NAME + 16)  /* one packed name and float64 */

enum { F_SENDER, F_TIME, F_COUNTERS, F_COUNT };

void proto_stats_clear(proto_stats_t *st)
{
    free(st->stats);
    memset(st, 0, sizeof *st);
}

static int check_time(double t, char *err, size_t errlen)
{
    if (!isfinite(t) || t < 0)
        return proto_fail(err, errlen, MSG ": time is %g, expected a finite number of seconds >= 0", t);
    return 0;
}

/* Index of the first earlier stat named like stats[i], or -1. */
static int find_duplicate(const proto_stat_t *stats, uint32_t i)
{
    for (uint32_t k = 0; k < i; k++)
        if (strcmp(stats[k].name, stats[i].name) == 0)
            return (int)k;
    return -1;
}

int proto_stats_encode(proto_buf_t *out, const proto_stats_t *st, char *err, size_t errlen)
{
    proto_enc_t e;
    if (proto_check_name(MSG, "sender", st->sender, sizeof st->sender, err, errlen) ||
        check_time(st->time, err, errlen))
        return -1;
    if (st->n_stats > PROTO_MAX_STATS)
        return proto_fail(err, errlen, MSG ": n_stats is %" PRIu32 ", the limit is %u (PROTO_MAX_STATS)",
                                       st->n_stats, PROTO_MAX_STATS);
    if (st->n_stats && !st->stats)
        return proto_fail(err, errlen, MSG ": stats is NULL but n_stats is %" PRIu32, st->n_stats);
    for (uint32_t i = 0; i < st->n_stats; i++) {
        char field[32];
        snprintf(field, sizeof field, "stats[%" PRIu32 "].name", i);
        if (proto_check_name(MSG, field, st->stats[i].name, sizeof st->stats[i].name, err, errlen))
            return -1;
        int dup = find_duplicate(st->stats, i);
        if (dup >= 0)
            return proto_fail(err, errlen, MSG ": stats[%" PRIu32 "] and stats[%d] are both named \"%s\"",
                                           i, dup, st->stats[i].name);
    }
    size_t hint = STATS_OVERHEAD_BYTES + (size_t)st->n_stats * STAT_MAX_BYTES;
    if (proto_enc_begin(&e, out, PROTO_MSG_STATS, F_COUNT, hint, err, errlen))
        return -1;
    proto_enc_str(&e, "sender", st->sender);
    proto_enc_double(&e, "time", st->time);
    proto_enc_key(&e, "counters");
    msgpack_pack_map(&e.pk, st->n_stats);
    for (uint32_t i = 0; i < st->n_stats; i++)
        proto_enc_double(&e, st->stats[i].name, st->stats[i].value);
    return proto_enc_end(&e, PROTO_MSG_STATS, err, errlen);
}

/* The counters map into st->stats. */
static int decode_counters(proto_stats_t *st, const msgpack_object_map *m, char *err, size_t errlen)
{
    if (m->size > PROTO_MAX_STATS)
        return proto_fail(err, errlen, MSG ": counters has %" PRIu32 " entries, the limit is %u "
                                       "(PROTO_MAX_STATS)", m->size, PROTO_MAX_STATS);
    if (m->size == 0)
        return 0;
    /* m->size entries are present in the message (the pre-scan saw them). */
    st->stats = calloc(m->size, sizeof *st->stats);
    if (!st->stats)
        return proto_fail(err, errlen, MSG ": out of memory for %" PRIu32 " counters", m->size);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object_kv *kv = &m->ptr[i];
        proto_stat_t *s = &st->stats[i];
        /* The key is the counter's name; report it as counters[i]. */
        const proto_where_t w = { MSG, "counters", i };
        proto_field_t key = { "name", &kv->key };
        proto_field_t val = { "value", &kv->val };
        if (proto_dec_name(&w, &key, s->name, sizeof s->name, err, errlen) ||
            proto_dec_double(&w, &val, &s->value, err, errlen))
            return -1;
        int dup = find_duplicate(st->stats, i);
        if (dup >= 0)
            return proto_fail(err, errlen, MSG ": counters[%" PRIu32 "] and counters[%d] are both named "
                                           "\"%s\"", i, dup, s->name);
    }
    st->n_stats = m->size;
    return 0;
}

int proto_stats_decode(proto_stats_t *st, const void *buf, size_t len, char *err, size_t errlen)
{
    const proto_where_t w = { MSG, NULL, 0 };
    proto_field_t f[F_COUNT] = {
        [F_SENDER] = { "sender", NULL }, [F_TIME] = { "time", NULL },
        [F_COUNTERS] = { "counters", NULL },
    };
    msgpack_object_map root;
    const msgpack_object_map *counters;
    int rc = -1;

    memset(st, 0, sizeof *st);
    if (proto_dec_begin(PROTO_MSG_STATS, buf, len, &root, err, errlen))
        return -1;
    if (proto_dec_fields(&w, &root, PROTO_HEADER_ENTRIES, f, F_COUNT, err, errlen) ||
        proto_dec_name(&w, &f[F_SENDER], st->sender, sizeof st->sender, err, errlen) ||
        proto_dec_double(&w, &f[F_TIME], &st->time, err, errlen) || check_time(st->time, err, errlen) ||
        proto_dec_map(&w, &f[F_COUNTERS], &counters, err, errlen) || decode_counters(st, counters, err, errlen))
        goto done;
    rc = 0;
done:
    proto_dec_end();
    if (rc)
        proto_stats_clear(st);
    return rc;
}

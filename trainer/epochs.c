/* trainer/epochs: per-epoch sets of admitted samples and their records. */
#include "errmsg/errmsg.h"
#include "trainer/epochs.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BITS 4096u

void epochs_init(epochs_t *e)
{
    memset(e, 0, sizeof *e);
}

static void slot_free(epochs_slot_t *s)
{
    free(s->seen);
    free(s->done);
    memset(s, 0, sizeof *s);
}

void epochs_release(epochs_t *e)
{
    for (int i = 0; i < EPOCHS_KEPT; i++)
        slot_free(&e->slot[i]);
    memset(e, 0, sizeof *e);
}

static epochs_slot_t *find(epochs_t *e, uint32_t epoch)
{
    for (int i = 0; i < EPOCHS_KEPT; i++)
        if (e->slot[i].used && e->slot[i].epoch == epoch)
            return &e->slot[i];
    return NULL;
}

/* Every sample of the epoch was trained or skipped. */
static int slot_done(const epochs_slot_t *s)
{
    return s->ended && s->trained + s->skipped >= s->expected;
}

static epochs_record_t record_of(const epochs_slot_t *s)
{
    epochs_record_t r = {
        .epoch = s->epoch, .distinct = s->trained, .skipped = s->skipped, .duplicates = s->duplicates,
        .expected = s->ended ? s->expected : 0,
        .complete = s->ended && s->trained + s->skipped == s->expected,
    };
    return r;
}

static void close_slot(epochs_t *e, epochs_slot_t *s)
{
    if (!s->reported && e->n_pending < EPOCHS_KEPT)
        e->pending[e->n_pending++] = record_of(s);
    if (!e->have_closed || s->epoch > e->closed_upto)
        e->closed_upto = s->epoch;
    e->have_closed = 1;
    slot_free(s);
}

/* A slot for a new epoch: a free one, else the oldest reported one, else the
 * oldest. NULL when the epoch is older than every kept one and all are in
 * use (it is then treated as closed). */
static epochs_slot_t *open_slot(epochs_t *e, uint32_t epoch)
{
    epochs_slot_t *victim = NULL;
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        epochs_slot_t *s = &e->slot[i];
        if (!s->used) {
            victim = s;
            break;
        }
        if (!victim || (s->reported && !victim->reported) ||
            (s->reported == victim->reported && s->epoch < victim->epoch))
            victim = s;
    }
    if (victim->used) {
        if (!victim->reported && epoch < victim->epoch)
            return NULL;
        close_slot(e, victim);
    }
    victim->used = 1;
    victim->epoch = epoch;
    return victim;
}

/* Grows a bitset of old_bits to bits (the new bits cleared). */
static int grow_bits(uint8_t **set, uint64_t old_bits, uint64_t bits)
{
    uint8_t *p = realloc(*set, bits / 8);
    if (!p)
        return -1;
    memset(p + old_bits / 8, 0, (bits - old_bits) / 8);
    *set = p;
    return 0;
}

/* Grows s->seen and s->done to hold bit `index`; -1 when out of memory. */
static int cover(epochs_slot_t *s, uint64_t index)
{
    if (index < s->n_bits)
        return 0;
    if (index >= EPOCHS_MAX_INDEX)
        return -1;
    uint64_t bits = s->n_bits ? s->n_bits : MIN_BITS;
    while (bits <= index)
        bits *= 2;
    if (bits > EPOCHS_MAX_INDEX)
        bits = EPOCHS_MAX_INDEX;
    if (grow_bits(&s->seen, s->n_bits, bits) || grow_bits(&s->done, s->n_bits, bits))
        return -1;
    s->n_bits = bits;
    return 0;
}

static int bit_get(const uint8_t *set, uint64_t index)
{
    return (set[index / 8] >> (index % 8)) & 1u;
}

static void bit_set(uint8_t *set, uint64_t index)
{
    set[index / 8] |= (uint8_t)(1u << (index % 8));
}

epochs_verdict_t epochs_admit(epochs_t *e, uint32_t epoch, uint64_t index)
{
    epochs_slot_t *s = find(e, epoch);
    if (!s && e->have_closed && epoch <= e->closed_upto)
        s = NULL;   /* an epoch that was closed: late */
    else if (!s)
        s = open_slot(e, epoch);
    if (!s) {
        e->duplicates++;
        return EPOCHS_CLOSED;
    }
    if (index >= EPOCHS_MAX_INDEX || cover(s, index)) {
        s->untracked++;
        s->admitted++;
        return EPOCHS_NEW;
    }
    if (bit_get(s->seen, index)) {
        s->duplicates++;
        e->duplicates++;
        return bit_get(s->done, index) ? EPOCHS_DUPLICATE : EPOCHS_QUEUED;
    }
    bit_set(s->seen, index);
    s->admitted++;
    return EPOCHS_NEW;
}

/* The slot of epoch, with `index` marked done (when it is tracked). */
static epochs_slot_t *mark_done(epochs_t *e, uint32_t epoch, uint64_t index)
{
    epochs_slot_t *s = find(e, epoch);
    if (s && index < s->n_bits)
        bit_set(s->done, index);
    return s;
}

void epochs_trained(epochs_t *e, uint32_t epoch, uint64_t index)
{
    epochs_slot_t *s = mark_done(e, epoch, index);
    if (s)
        s->trained++;
}

void epochs_skipped(epochs_t *e, uint32_t epoch, uint64_t index)
{
    epochs_slot_t *s = mark_done(e, epoch, index);
    if (s)
        s->skipped++;
}

void epochs_done_elsewhere(epochs_t *e, uint32_t epoch, uint64_t index, int skipped)
{
    epochs_slot_t *s = find(e, epoch);
    if (!s && e->have_closed && epoch <= e->closed_upto)
        return;   /* closed here: its record is out */
    if (!s && !(s = open_slot(e, epoch)))
        return;
    if (index >= EPOCHS_MAX_INDEX || cover(s, index)) {
        s->untracked++;
        s->admitted++;
    } else {
        if (bit_get(s->done, index))
            return;
        if (!bit_get(s->seen, index)) {
            bit_set(s->seen, index);
            s->admitted++;
        }
        bit_set(s->done, index);
    }
    if (skipped)
        s->skipped++;
    else
        s->trained++;
}

int epochs_is_done(const epochs_t *e, uint32_t epoch, uint64_t index)
{
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        const epochs_slot_t *s = &e->slot[i];
        if (s->used && s->epoch == epoch)
            return index < s->n_bits && bit_get(s->done, index);
    }
    return 0;
}

void epochs_copy_dropped(epochs_t *e, uint32_t epoch, uint64_t index, int readmit)
{
    epochs_slot_t *s = find(e, epoch);
    if (s) {
        s->duplicates++;
        if (readmit && index < s->n_bits && bit_get(s->seen, index) && !bit_get(s->done, index)) {
            s->seen[index / 8] &= (uint8_t)~(1u << (index % 8));
            s->admitted--;
        }
    }
    e->duplicates++;
}

int epochs_end_missing(const epochs_t *e, uint64_t size)
{
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        const epochs_slot_t *s = &e->slot[i];
        if (s->used && !s->ended && !s->reported && size && s->trained + s->skipped >= size)
            return 1;
    }
    return 0;
}

void epochs_end(epochs_t *e, uint32_t epoch, uint64_t count)
{
    epochs_slot_t *s = find(e, epoch);
    if (!s && !(e->have_closed && epoch <= e->closed_upto))
        s = open_slot(e, epoch);
    if (s) {
        s->ended = 1;
        s->expected = count;
    }
}

int epochs_next_record(epochs_t *e, int all, epochs_record_t *out)
{
    if (e->n_pending > 0) {
        *out = e->pending[0];
        memmove(e->pending, e->pending + 1, (size_t)(e->n_pending - 1) * sizeof e->pending[0]);
        e->n_pending--;
        return 1;
    }
    epochs_slot_t *best = NULL;
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        epochs_slot_t *s = &e->slot[i];
        if (!s->used || s->reported)
            continue;
        int ready = all || slot_done(s);
        if (ready && (!best || s->epoch < best->epoch))
            best = s;
    }
    if (!best)
        return 0;
    *out = record_of(best);
    best->reported = 1;   /* kept: late duplicates of it are still recognised */
    return 1;
}

uint32_t epochs_current(const epochs_t *e, int *known)
{
    int have_open = 0, have_any = e->have_closed;
    uint32_t oldest_open = 0, newest = e->closed_upto;
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        const epochs_slot_t *s = &e->slot[i];
        if (!s->used)
            continue;
        if (!have_any || s->epoch > newest)
            newest = s->epoch;
        have_any = 1;
        int complete = slot_done(s);
        if (!complete && (!have_open || s->epoch < oldest_open)) {
            oldest_open = s->epoch;
            have_open = 1;
        }
    }
    *known = have_any;
    if (have_open)
        return oldest_open;
    return have_any ? newest + 1 : 0;
}

/* Length of a done set without its trailing zero bytes. */
static size_t used_bytes(const epochs_slot_t *s)
{
    size_t n = (size_t)(s->n_bits / 8);
    while (n > 0 && s->done[n - 1] == 0)
        n--;
    return n;
}

int epochs_have(const epochs_t *e, epochs_have_t *out)
{
    int known;
    memset(out, 0, sizeof *out);
    out->epoch = epochs_current(e, &known);
    if (!known)
        return 0;
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        const epochs_slot_t *s = &e->slot[i];
        if (!s->used || s->epoch < out->epoch || s->epoch - out->epoch >= EPOCHS_KEPT)
            continue;
        uint32_t k = s->epoch - out->epoch;
        out->bytes[k] = used_bytes(s);
        out->done[k] = out->bytes[k] ? s->done : NULL;
        if (k + 1 > out->n)
            out->n = k + 1;
    }
    return 1;
}

uint64_t epochs_done_total(const epochs_t *e)
{
    uint64_t n = 0;
    for (int i = 0; i < EPOCHS_KEPT; i++)
        if (e->slot[i].used)
            n += e->slot[i].trained + e->slot[i].skipped;
    return n;
}

int epochs_record_out(const epochs_t *e, uint32_t epoch)
{
    for (int i = 0; i < EPOCHS_KEPT; i++)
        if (e->slot[i].used && e->slot[i].epoch == epoch)
            return e->slot[i].reported;
    for (int i = 0; i < e->n_pending; i++)
        if (e->pending[i].epoch == epoch)
            return 0;
    return e->have_closed && epoch <= e->closed_upto;
}

/* ---- checkpoint state ---- */

static const char HEX[] = "0123456789abcdef";

static json_t *hex_of(const uint8_t *p, size_t n)
{
    char *text = malloc(2 * n + 1);
    if (!text)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        text[2 * i] = HEX[p[i] >> 4];
        text[2 * i + 1] = HEX[p[i] & 15];
    }
    text[2 * n] = '\0';
    json_t *j = json_string(text);
    free(text);
    return j;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static json_t *record_json(const epochs_record_t *r)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "epoch", (json_int_t)r->epoch,
                     "distinct", (json_int_t)r->distinct, "skipped", (json_int_t)r->skipped,
                     "duplicates", (json_int_t)r->duplicates, "expected", (json_int_t)r->expected,
                     "complete", r->complete);
}

json_t *epochs_to_json(const epochs_t *e)
{
    json_t *slots = json_array(), *pending = json_array();
    json_t *j = json_pack("{s:I, s:I, s:o, s:o}", "closed_upto",
                          e->have_closed ? (json_int_t)e->closed_upto : (json_int_t)-1,
                          "duplicates", (json_int_t)e->duplicates, "slots", slots, "pending", pending);
    if (!j)
        return NULL;
    for (int i = 0; i < EPOCHS_KEPT; i++) {
        const epochs_slot_t *s = &e->slot[i];
        if (!s->used)
            continue;
        json_t *done = hex_of(s->done, s->n_bits ? used_bytes(s) : 0);
        json_t *o = done ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:o}", "epoch", (json_int_t)s->epoch,
                                     "trained", (json_int_t)s->trained, "skipped", (json_int_t)s->skipped,
                                     "duplicates", (json_int_t)s->duplicates, "expected", (json_int_t)s->expected,
                                     "ended", s->ended, "reported", s->reported, "done", done)
                         : NULL;
        if (!o || json_array_append_new(slots, o)) {
            json_decref(j);
            return NULL;
        }
    }
    for (int i = 0; i < e->n_pending; i++) {
        json_t *o = record_json(&e->pending[i]);
        if (!o || json_array_append_new(pending, o)) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* A whole number 0..max from object o's key; -1 with err when missing or out of range. */
static int get_count(const json_t *o, const char *key, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        errmsg_set(err, errlen, "epochs: \"%s\" is missing or out of range", key);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_flag(const json_t *o, const char *key, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v)) {
        errmsg_set(err, errlen, "epochs: \"%s\" is missing or not true/false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* A slot from its JSON object: counts, flags and the done set (also taken
 * as the admitted set: what is not done is taken again). */
static int slot_from_json(epochs_slot_t *s, const json_t *o, char *err, size_t errlen)
{
    uint64_t epoch;
    if (!json_is_object(o) || get_count(o, "epoch", UINT32_MAX, &epoch, err, errlen) ||
        get_count(o, "trained", UINT64_MAX >> 1, &s->trained, err, errlen) ||
        get_count(o, "skipped", UINT64_MAX >> 1, &s->skipped, err, errlen) ||
        get_count(o, "duplicates", UINT64_MAX >> 1, &s->duplicates, err, errlen) ||
        get_count(o, "expected", UINT64_MAX >> 1, &s->expected, err, errlen) ||
        get_flag(o, "ended", &s->ended, err, errlen) || get_flag(o, "reported", &s->reported, err, errlen)) {
        if (!json_is_object(o))
            errmsg_set(err, errlen, "epochs: a slot is not an object");
        return -1;
    }
    s->used = 1;
    s->epoch = (uint32_t)epoch;
    s->admitted = s->trained + s->skipped;
    const char *hex = json_string_value(json_object_get(o, "done"));
    size_t len = hex ? strlen(hex) : 1;
    if (len % 2 || len / 2 > EPOCHS_MAX_INDEX / 8) {
        errmsg_set(err, errlen, "epochs: the done set of epoch %u is not a hex string of at most %llu bytes",
                   s->epoch, (unsigned long long)(EPOCHS_MAX_INDEX / 8));
        return -1;
    }
    size_t bytes = len / 2;
    if (bytes && cover(s, (uint64_t)bytes * 8 - 1)) {
        errmsg_set(err, errlen, "epochs: out of memory for the done set of epoch %u", s->epoch);
        return -1;
    }
    for (size_t i = 0; i < bytes; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            errmsg_set(err, errlen, "epochs: the done set of epoch %u holds a character that is not hex", s->epoch);
            return -1;
        }
        s->done[i] = s->seen[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int record_from_json(epochs_record_t *r, const json_t *o, char *err, size_t errlen)
{
    uint64_t epoch;
    if (!json_is_object(o) || get_count(o, "epoch", UINT32_MAX, &epoch, err, errlen) ||
        get_count(o, "distinct", UINT64_MAX >> 1, &r->distinct, err, errlen) ||
        get_count(o, "skipped", UINT64_MAX >> 1, &r->skipped, err, errlen) ||
        get_count(o, "duplicates", UINT64_MAX >> 1, &r->duplicates, err, errlen) ||
        get_count(o, "expected", UINT64_MAX >> 1, &r->expected, err, errlen) ||
        get_flag(o, "complete", &r->complete, err, errlen)) {
        if (!json_is_object(o))
            errmsg_set(err, errlen, "epochs: a pending record is not an object");
        return -1;
    }
    r->epoch = (uint32_t)epoch;
    return 0;
}

int epochs_from_json(epochs_t *e, const json_t *j, char *err, size_t errlen)
{
    json_t *slots = json_object_get(j, "slots"), *pending = json_object_get(j, "pending");
    json_t *closed = json_object_get(j, "closed_upto");
    uint64_t dups;
    if (!json_is_object(j) || !json_is_array(slots) || !json_is_array(pending) || !json_is_integer(closed) ||
        json_integer_value(closed) < -1 || json_integer_value(closed) > UINT32_MAX ||
        json_array_size(slots) > EPOCHS_KEPT || json_array_size(pending) > EPOCHS_KEPT) {
        errmsg_set(err, errlen, "epochs: not an object with closed_upto, at most %d slots and %d pending records",
                   EPOCHS_KEPT, EPOCHS_KEPT);
        return -1;
    }
    if (get_count(j, "duplicates", UINT64_MAX >> 1, &dups, err, errlen))
        return -1;
    e->duplicates = dups;
    e->have_closed = json_integer_value(closed) >= 0;
    e->closed_upto = e->have_closed ? (uint32_t)json_integer_value(closed) : 0;
    for (size_t i = 0; i < json_array_size(slots); i++) {
        if (slot_from_json(&e->slot[i], json_array_get(slots, i), err, errlen))
            goto fail;
        for (size_t k = 0; k < i; k++)
            if (e->slot[k].epoch == e->slot[i].epoch) {
                errmsg_set(err, errlen, "epochs: epoch %u appears twice", e->slot[i].epoch);
                goto fail;
            }
    }
    for (size_t i = 0; i < json_array_size(pending); i++)
        if (record_from_json(&e->pending[i], json_array_get(pending, i), err, errlen))
            goto fail;
    e->n_pending = (int)json_array_size(pending);
    return 0;
fail:
    epochs_release(e);
    return -1;
}

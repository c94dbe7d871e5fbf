/* trainer/epochs: per-epoch sets of admitted samples and their records. */
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

/* Grows s->seen to hold bit `index`; -1 when out of memory. */
static int cover(epochs_slot_t *s, uint64_t index)
{
    if (index < s->n_bits)
        return 0;
    uint64_t bits = s->n_bits ? s->n_bits : MIN_BITS;
    while (bits <= index)
        bits *= 2;
    if (bits > EPOCHS_MAX_INDEX)
        bits = EPOCHS_MAX_INDEX;
    uint8_t *seen = realloc(s->seen, bits / 8);
    if (!seen)
        return -1;
    memset(seen + s->n_bits / 8, 0, (bits - s->n_bits) / 8);
    s->seen = seen;
    s->n_bits = bits;
    return 0;
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
    uint8_t bit = (uint8_t)(1u << (index % 8));
    if (s->seen[index / 8] & bit) {
        s->duplicates++;
        e->duplicates++;
        return EPOCHS_DUPLICATE;
    }
    s->seen[index / 8] |= bit;
    s->admitted++;
    return EPOCHS_NEW;
}

void epochs_trained(epochs_t *e, uint32_t epoch, uint64_t n)
{
    epochs_slot_t *s = find(e, epoch);
    if (s)
        s->trained += n;
}

void epochs_skipped(epochs_t *e, uint32_t epoch, uint64_t n)
{
    epochs_slot_t *s = find(e, epoch);
    if (s)
        s->skipped += n;
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

/* ledger: sent-but-unacknowledged Samples of the open epochs. */
#include "loader/ledger.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
    ITEM_UNSENT = 0,
    ITEM_OUT = 1,      /* sent, not acknowledged */
    ITEM_ACKED = 2,
    ITEM_DUE = 3,      /* acknowledged, then lost by a resumed trainer: send at the next look */
};

typedef struct {
    int used, sealed;
    uint32_t epoch;
    uint8_t *state;         /* (n_items) ITEM_* */
    double *sent_at;        /* (n_items) time of the last send */
    uint64_t outstanding;
    uint64_t count;         /* sealed: items of the epoch */
} slot_t;

struct ledger {
    pthread_mutex_t mu;
    size_t n_items;
    double min_timeout;
    slot_t slot[LEDGER_MAX_OPEN];
    double lat_cur, lat_prev;   /* largest send-to-ack time of this window and the previous */
    double window_start;
    double lost_at;             /* when a worker left, 0 = none pending */
    double restart_at;          /* when another trainer took over, 0 = never */
    int opened;                 /* an epoch was opened since the last reset ... */
    uint32_t next_epoch;        /* ... and this is one past the newest */
    uint64_t generation;        /* resets */
};

ledger_t *ledger_new(size_t n_items, double min_timeout_s)
{
    ledger_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    l->n_items = n_items;
    l->min_timeout = min_timeout_s;
    for (int i = 0; i < LEDGER_MAX_OPEN; i++) {
        l->slot[i].state = calloc(n_items ? n_items : 1, 1);
        l->slot[i].sent_at = calloc(n_items ? n_items : 1, sizeof(double));
        if (!l->slot[i].state || !l->slot[i].sent_at) {
            ledger_destroy(&l);
            return NULL;
        }
    }
    return l;
}

void ledger_destroy(ledger_t **self_p)
{
    ledger_t *l = *self_p;
    if (!l)
        return;
    for (int i = 0; i < LEDGER_MAX_OPEN; i++) {
        free(l->slot[i].state);
        free(l->slot[i].sent_at);
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
    *self_p = NULL;
}

static slot_t *find(ledger_t *l, uint32_t epoch)
{
    for (int i = 0; i < LEDGER_MAX_OPEN; i++)
        if (l->slot[i].used && l->slot[i].epoch == epoch)
            return &l->slot[i];
    return NULL;
}

int ledger_open(ledger_t *l, uint32_t epoch)
{
    int rc = -1;
    pthread_mutex_lock(&l->mu);
    if (find(l, epoch)) {
        rc = 0;
    } else {
        for (int i = 0; i < LEDGER_MAX_OPEN; i++) {
            slot_t *s = &l->slot[i];
            if (s->used)
                continue;
            memset(s->state, ITEM_UNSENT, l->n_items);
            s->used = 1;
            s->sealed = 0;
            s->epoch = epoch;
            s->outstanding = 0;
            rc = 0;
            break;
        }
    }
    if (rc == 0 && (!l->opened || epoch >= l->next_epoch)) {
        l->opened = 1;
        l->next_epoch = epoch + 1;
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void ledger_held(ledger_t *l, uint32_t epoch, size_t item)
{
    pthread_mutex_lock(&l->mu);
    slot_t *s = find(l, epoch);
    if (s && item < l->n_items && s->state[item] == ITEM_UNSENT)
        s->state[item] = ITEM_ACKED;
    pthread_mutex_unlock(&l->mu);
}

void ledger_reset(ledger_t *l)
{
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < LEDGER_MAX_OPEN; i++)
        l->slot[i].used = 0;
    l->lost_at = 0;
    l->opened = 0;
    l->next_epoch = 0;
    l->generation++;
    pthread_mutex_unlock(&l->mu);
}

uint64_t ledger_generation(ledger_t *l)
{
    pthread_mutex_lock(&l->mu);
    uint64_t g = l->generation;
    pthread_mutex_unlock(&l->mu);
    return g;
}

/* The acknowledged items of slot s whose bit is clear in done[0..bytes) are due (mu held). */
static size_t revert(ledger_t *l, slot_t *s, const uint8_t *done, size_t bytes)
{
    size_t n = 0;
    for (size_t k = 0; k < l->n_items; k++) {
        if (s->state[k] != ITEM_ACKED || (k / 8 < bytes && (done[k / 8] >> (k % 8)) & 1u))
            continue;
        s->state[k] = ITEM_DUE;
        s->outstanding++;
        n++;
    }
    return n;
}

size_t ledger_have(ledger_t *l, uint32_t first, uint32_t n, const uint8_t *const *done, const size_t *bytes,
                   uint32_t *closed, size_t max, size_t *n_closed, uint64_t *generation)
{
    size_t reverted = 0;
    *n_closed = 0;
    pthread_mutex_lock(&l->mu);
    *generation = l->generation;
    for (uint32_t e = first; l->opened && e < l->next_epoch; e++) {
        slot_t *s = find(l, e);
        uint32_t k = e - first;
        if (s)
            reverted += revert(l, s, k < n ? done[k] : NULL, k < n ? bytes[k] : 0);
        else if (*n_closed < max)
            closed[(*n_closed)++] = e;
        else if (e - first >= n)
            break;   /* enough epochs to check, and none of the later ones is described */
    }
    pthread_mutex_unlock(&l->mu);
    return reverted;
}

int ledger_n_open(ledger_t *l)
{
    int n = 0;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < LEDGER_MAX_OPEN; i++)
        n += l->slot[i].used;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void ledger_sent(ledger_t *l, uint32_t epoch, size_t item, double now)
{
    pthread_mutex_lock(&l->mu);
    slot_t *s = find(l, epoch);
    if (s && item < l->n_items && s->state[item] != ITEM_ACKED) {
        if (s->state[item] == ITEM_UNSENT)
            s->outstanding++;   /* a due one is counted already */
        s->state[item] = ITEM_OUT;
        s->sent_at[item] = now;
    }
    pthread_mutex_unlock(&l->mu);
}

void ledger_seal(ledger_t *l, uint32_t epoch, uint64_t count)
{
    pthread_mutex_lock(&l->mu);
    slot_t *s = find(l, epoch);
    if (s) {
        s->sealed = 1;
        s->count = count;
    }
    pthread_mutex_unlock(&l->mu);
}

int ledger_sealed(ledger_t *l, uint32_t epoch, uint64_t *count)
{
    pthread_mutex_lock(&l->mu);
    slot_t *s = find(l, epoch);
    int sealed = s && s->sealed;
    if (sealed)
        *count = s->count;
    pthread_mutex_unlock(&l->mu);
    return sealed;
}

/* Starts a new latency window every LEDGER_WINDOW_S (mu held). */
static void rotate_window(ledger_t *l, double now)
{
    if (now - l->window_start >= LEDGER_WINDOW_S) {
        l->lat_prev = l->lat_cur;
        l->lat_cur = 0;
        l->window_start = now;
    }
}

size_t ledger_ack(ledger_t *l, uint32_t epoch, const uint64_t *index, size_t n, double now)
{
    size_t got = 0;
    pthread_mutex_lock(&l->mu);
    rotate_window(l, now);
    slot_t *s = find(l, epoch);
    for (size_t i = 0; s && i < n; i++) {
        uint64_t item = index[i];
        if (item >= l->n_items || (s->state[item] != ITEM_OUT && s->state[item] != ITEM_DUE))
            continue;
        /* a due item, or one sent before another trainer took over, went out
         * to a trainer that died: its latency is the outage's */
        if (s->state[item] == ITEM_OUT && s->sent_at[item] >= l->restart_at) {
            double lat = now - s->sent_at[item];
            if (lat > l->lat_cur)
                l->lat_cur = lat;
        }
        s->state[item] = ITEM_ACKED;
        s->outstanding--;
        got++;
    }
    pthread_mutex_unlock(&l->mu);
    return got;
}

int ledger_close_next(ledger_t *l, uint32_t *epoch, uint64_t *count)
{
    slot_t *best = NULL;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < LEDGER_MAX_OPEN; i++) {
        slot_t *s = &l->slot[i];
        if (s->used && s->sealed && s->outstanding == 0 && (!best || s->epoch < best->epoch))
            best = s;
    }
    if (best) {
        *epoch = best->epoch;
        *count = best->count;
        best->used = 0;
    }
    pthread_mutex_unlock(&l->mu);
    return best != NULL;
}

static double timeout_locked(const ledger_t *l)
{
    double lat = l->lat_cur > l->lat_prev ? l->lat_cur : l->lat_prev;
    double t = LEDGER_LATENCY_FACTOR * lat;
    return t > l->min_timeout ? t : l->min_timeout;
}

double ledger_timeout(ledger_t *l)
{
    pthread_mutex_lock(&l->mu);
    double t = timeout_locked(l);
    pthread_mutex_unlock(&l->mu);
    return t;
}

size_t ledger_due(ledger_t *l, double now, uint32_t *epoch, size_t *item, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&l->mu);
    rotate_window(l, now);
    double limit = timeout_locked(l);
    double lost_at = l->lost_at > 0 && now - l->lost_at >= LEDGER_LOST_GRACE_S ? l->lost_at : 0;
    /* the open slots, oldest epoch first */
    slot_t *order[LEDGER_MAX_OPEN];
    int n_open = 0;
    for (int i = 0; i < LEDGER_MAX_OPEN; i++) {
        if (!l->slot[i].used)
            continue;
        int k = n_open++;
        while (k > 0 && order[k - 1]->epoch > l->slot[i].epoch) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = &l->slot[i];
    }
    for (int o = 0; o < n_open && n < max; o++) {
        slot_t *s = order[o];
        for (size_t k = 0; s->outstanding && k < l->n_items && n < max; k++) {
            if (s->state[k] == ITEM_DUE)
                s->state[k] = ITEM_OUT;
            else if (s->state[k] != ITEM_OUT || (now - s->sent_at[k] < limit && s->sent_at[k] > lost_at) ||
                     (l->restart_at > 0 && s->sent_at[k] <= l->restart_at && now - l->restart_at < LEDGER_LOST_GRACE_S))
                continue;   /* not overdue; or the new trainer's grace, whatever the age */
            s->sent_at[k] = now;
            epoch[n] = s->epoch;
            item[n++] = k;
        }
    }
    if (lost_at > 0 && n < max)   /* every item sent before the loss was looked at */
        l->lost_at = 0;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void ledger_peer_lost(ledger_t *l, double now)
{
    pthread_mutex_lock(&l->mu);
    l->lost_at = now;
    pthread_mutex_unlock(&l->mu);
}

void ledger_restart(ledger_t *l, double now)
{
    pthread_mutex_lock(&l->mu);
    l->lost_at = now;
    l->restart_at = now;
    pthread_mutex_unlock(&l->mu);
}

uint64_t ledger_outstanding(ledger_t *l)
{
    uint64_t n = 0;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < LEDGER_MAX_OPEN; i++)
        if (l->slot[i].used)
            n += l->slot[i].outstanding;
    pthread_mutex_unlock(&l->mu);
    return n;
}

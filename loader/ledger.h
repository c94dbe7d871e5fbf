/* ledger: for --exactly-once, the Samples of the open epochs that the
 * trainer has not acknowledged yet, and when each was last sent.
 *
 * At most LEDGER_MAX_OPEN epochs are open at once: the loader streams the
 * next epoch while the previous one is still being acknowledged, but waits
 * before a third. A sample unacknowledged for longer than the timeout was
 * most likely lost with a worker that died; the loader sends it again. The
 * timeout adapts to the acknowledgement latency the ledger observes:
 * LEDGER_LATENCY_FACTOR times the largest send-to-ack time of the last
 * 2 x LEDGER_WINDOW_S seconds, and never less than the minimum given.
 *
 * An acknowledged item is not necessarily kept: a trainer killed after an
 * Ack and resumed from an older checkpoint no longer holds it. Its Have
 * says what it holds; ledger_have makes the others of an open epoch due at
 * once, and names the epochs already closed that the caller must check;
 * ledger_reset starts over when one of those lacks items (the loader then
 * streams from the trainer's epoch again, less what the trainer holds).
 *
 * Thread use: every function locks the ledger's mutex (the loader's control
 * thread records Acks while its main thread sends).
 */
#ifndef LOADER_LEDGER_H
#define LOADER_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#define LEDGER_MAX_OPEN       2
#define LEDGER_LATENCY_FACTOR 3.0
#define LEDGER_WINDOW_S       20.0
#define LEDGER_LOST_GRACE_S   2.0   /* after a worker left: how long the others get to acknowledge */

typedef struct ledger ledger_t;

/* A ledger for dataset items 0..n_items-1; NULL when out of memory. */
ledger_t *ledger_new(size_t n_items, double min_timeout_s);
void ledger_destroy(ledger_t **self_p);

/* Opens epoch: 0, or -1 when LEDGER_MAX_OPEN epochs are open already. */
int ledger_open(ledger_t *l, uint32_t epoch);
int ledger_n_open(ledger_t *l);
/* item of epoch was sent (first time or again) at `now`. */
void ledger_sent(ledger_t *l, uint32_t epoch, size_t item, double now);
/* Every item of epoch has been sent once, count in all (its END_OF_EPOCH went out). */
void ledger_seal(ledger_t *l, uint32_t epoch, uint64_t count);
/* 1 with *count set when epoch is open and sealed, else 0. */
int ledger_sealed(ledger_t *l, uint32_t epoch, uint64_t *count);
/* item of epoch is not sent because the trainer holds it already: it counts
 * as acknowledged (until a Have says otherwise). */
void ledger_held(ledger_t *l, uint32_t epoch, size_t item);
/* Closes every epoch without a word (the loader starts over from an earlier
 * one) and starts a new generation; the latency it learnt is kept. */
void ledger_reset(ledger_t *l);
/* Counts ledger_reset calls. */
uint64_t ledger_generation(ledger_t *l);

/* A Have from the trainer, looked at when it arrives (so in order with the
 * Acks before and after it): from epoch `first` on, the trainer holds of
 * epoch first + k the items whose bit is set in done[k] (bytes[k] bytes; bit
 * i%8 of byte i/8 for item i), for k < n, and nothing of later epochs. The
 * acknowledged items of open epochs it does not hold are due at once;
 * returns how many. closed[] gets up to max epochs from `first` on, older
 * than the newest one opened, that are not open (closed, or never opened
 * since the last reset): whether the trainer lacks items of those is for
 * the caller to check, against the generation put in *generation. */
size_t ledger_have(ledger_t *l, uint32_t first, uint32_t n, const uint8_t *const *done, const size_t *bytes,
                   uint32_t *closed, size_t max, size_t *n_closed, uint64_t *generation);
/* An Ack: returns how many of the indices were outstanding (the others: acknowledged
 * before, of an epoch not open, or out of range). */
size_t ledger_ack(ledger_t *l, uint32_t epoch, const uint64_t *index, size_t n, double now);
/* Closes the next sealed epoch whose items are all acknowledged: 1 with
 * *epoch and *count (its END_OF_EPOCH count) set, or 0 when none. */
int ledger_close_next(ledger_t *l, uint32_t *epoch, uint64_t *count);

/* Up to max items unacknowledged for longer than the timeout (or made due by
 * ledger_have), oldest epoch first, into epoch[] and item[]; each is
 * marked sent at `now` (the caller sends it). Returns how many. */
size_t ledger_due(ledger_t *l, double now, uint32_t *epoch, size_t *item, size_t max);
/* A worker disconnected at `now`: whatever was sent before and is still
 * unacknowledged LEDGER_LOST_GRACE_S later is due at once, without waiting
 * for the timeout (what the other workers held arrives twice at most; the
 * trainer drops the copy). */
void ledger_peer_lost(ledger_t *l, double now);
/* Another trainer took over at `now` (a killed one resumed): what the dead
 * one held, and what the augmenters had queued for it, is lost. As after
 * ledger_peer_lost, what was sent before and is still unacknowledged
 * LEDGER_LOST_GRACE_S later is due, and not sooner whatever its age (the
 * new trainer first takes what the augmenters still held; a copy of that
 * arrives twice at most); the Acks of items sent before `now` teach no
 * latency (they measure the outage). */
void ledger_restart(ledger_t *l, double now);
/* The current re-send timeout in seconds. */
double ledger_timeout(ledger_t *l);
/* Items sent and not acknowledged, over the open epochs. */
uint64_t ledger_outstanding(ledger_t *l);

#endif

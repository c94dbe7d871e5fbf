/* loader/exactly_once: --exactly-once, seen from the sending thread. The
 * ledger (loader/ledger.h) knows which Samples of the open epochs the
 * trainer has not acknowledged; these functions re-send those overdue while
 * the trainer's heartbeat says it is alive, close the epochs acknowledged in
 * full (their END_OF_EPOCH again), check the trainer's Have against the
 * epochs already closed (r->rewind: start over at its epoch), and at start
 * join a trainer that is already running. Each does nothing without a ledger
 * (r->ledger NULL) unless it says otherwise.
 */
#ifndef LOADER_EXACTLY_ONCE_H
#define LOADER_EXACTLY_ONCE_H

#include <stddef.h>
#include <stdint.h>

#include "loader/run.h"

/* Every RESEND_TICK_S (or now, with force): checks the trainer's last Have,
 * closes the epochs whose Samples are all acknowledged and sends again those
 * overdue. -1 when stopping; sets r->rewind when the loader must start over. */
int exactly_once_tick(run_t *r, int force);

/* Waits, re-sending what is overdue, until fewer than LEDGER_MAX_OPEN epochs
 * are open (all = 0) or none is (all = 1). -1 when stopping, 1 when the
 * loader must start over (r->rewind). Needs a ledger. */
int wait_acknowledged(run_t *r, int all);

/* A Sample of epoch is about to go out for the first time. */
void before_send(run_t *r, uint32_t epoch, size_t item);

/* At start: waits a little for a running trainer's heartbeat and Have, and
 * returns the epoch to start at (first_epoch when none answers); what the
 * Have lists goes to r->held, not to be sent. Needs a ledger. */
uint32_t join_trainer(run_t *r, uint32_t first_epoch);

#endif

/* loader/loader: the loading stage as one object. loader_new opens the
 * dataset, selects the items this loader serves, and (unless --count) opens
 * the sockets and starts the control thread (loader/control.h) and the
 * decoding pool (loader/pool.h); loader_run streams the epochs until done or
 * stopped, then END_OF_STREAM.
 *
 *
 * --exactly-once (loader/ledger.h): the loader keeps, for at most two open
 * epochs, which Samples the trainer has not acknowledged yet and sends again
 * those unacknowledged for much longer than the acknowledgement latency it
 * observes (a worker that died took them), only while the trainer's heartbeat
 * says it is alive. It streams the next epoch meanwhile, opens a third only
 * once the oldest is fully acknowledged, and sends END_OF_STREAM only when
 * every epoch is. Started while a trainer runs (a restarted loader), it waits
 * up to HEARTBEAT_WAIT_S for a heartbeat and starts at the trainer's epoch,
 * leaving out what the trainer's Have says it holds.
 *
 * A trainer killed and resumed from its last checkpoint no longer holds what
 * it trained (and acknowledged) after that checkpoint. Its Have (with every
 * heartbeat) says what it holds of its current epochs: what an open epoch
 * lacks of its acknowledged Samples is sent again at once (ledger_have);
 * when an epoch this loader has already closed lacks Samples, the loader
 * starts over at the trainer's epoch, sending only what the Have does not
 * list ("rewind"). What was in flight to the dead trainer is lost with its
 * queues: a heartbeat from another sender makes it due LEDGER_LOST_GRACE_S
 * later (ledger_restart), as a lost augmenter does. The resumed trainer's
 * first heartbeat and Have may go out before this loader has subscribed
 * again, while its Acks already arrive: once another trainer speaks, no
 * epoch closes (and END_OF_STREAM waits) until one of its Haves has been
 * looked at (at most TAKEOVER_HAVE_MAX_S, for a consumer that sends none).
 *
 * The first epoch decodes (on --threads threads) and fills a bounded cache of
 * decoded images (--cache-mb); later epochs stream from it and decode only
 * what did not fit. Every epoch is shuffled from --seed. Unreadable, corrupt
 * and oversized files are skipped with one warning each and counted.
 */
#ifndef LOADER_LOADER_H
#define LOADER_LOADER_H

#include <stddef.h>

#include "loader/options.h"

typedef struct loader loader_t;

/* Opens the dataset and selects the items (all that --count needs), then
 * opens the sockets and starts the control thread and the decoding pool;
 * o must outlive the loader. NULL with *status (CLI_EXIT_USAGE: bad options
 * or dataset, else CLI_EXIT_FAILED) and err set, or empty when the message
 * is printed. */
loader_t *loader_new(const loader_options_t *o, int *status, char *err, size_t errlen);

/* With --count, prints the number of items served. Otherwise streams the
 * epochs until done or stopped and sends END_OF_STREAM; the exit status. */
int loader_run(loader_t *l);

void loader_destroy(loader_t **self_p);

#endif

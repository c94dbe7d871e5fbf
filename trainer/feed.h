/* trainer/feed: the receive thread. It owns the PULL socket, decodes
 * ViewBatches and assembles them into a small ring of training batches while
 * the main thread computes on another one (double buffering). When every
 * batch of the ring is full and waiting, it stops reading the socket, so the
 * augmenters block on their high-water mark instead of filling memory.
 *
 * Malformed messages, ViewBatches of the wrong shape and unknown message
 * types are dropped and counted; the last reason is kept for the log.
 * A sample whose (epoch, dataset index) was already taken is dropped too
 * (trainer/epochs.h) and, once that index is trained, queued to be
 * acknowledged again. A sample the
 * method cannot train on (supervised: label missing or not in
 * 0..classes-1, batch_sample_usable) is skipped: counted, recorded in its
 * epoch as skipped, and acknowledged, so that the loader does not send it
 * again and the epoch can complete without it.
 * Control messages forwarded by the augmenters (END_OF_EPOCH, END_OF_STREAM)
 * are recorded.
 */
#ifndef TRAINER_FEED_H
#define TRAINER_FEED_H

#include <stdint.h>

#include "proto/proto.h"
#include "trainer/batch.h"
#include "trainer/epochs.h"

typedef struct feed feed_t;

typedef struct {
    uint64_t messages;          /* received, any type */
    uint64_t viewbatches;       /* ViewBatches accepted */
    uint64_t samples;           /* samples accepted */
    uint64_t dropped;           /* messages dropped (malformed, wrong shape, unknown) */
    uint64_t duplicates;        /* samples dropped as already trained (or of a closed epoch) */
    uint64_t skipped;           /* samples skipped for their label (supervised) */
    int32_t last_skipped_label; /* the label of the last one ... */
    uint64_t last_skipped_index;/* ... and its dataset index */
    uint64_t batches;           /* full batches handed to the trainer */
    uint64_t end_of_epochs;     /* END_OF_EPOCH messages */
    uint64_t epoch_count;       /* count of the first END_OF_EPOCH (images per epoch), 0 until then */
    int end_of_stream;          /* an END_OF_STREAM arrived */
    double last_data;           /* console_now() of the last accepted ViewBatch, 0 = none yet */
    char last_error[256];       /* why the last message was dropped */
} feed_stats_t;

/* What one process of a data-parallel run tells the others after each step
 * (trainer.c exchanges them over MPI), so that every rank's bookkeeping is
 * the whole run's: what it trained and skipped, the copies it dropped (rank
 * 0 acknowledges them), the END_OF_EPOCH and END_OF_STREAM it received. */
typedef enum {
    FEED_EV_TRAINED = 1, FEED_EV_SKIPPED, FEED_EV_ACK, FEED_EV_END_OF_EPOCH, FEED_EV_END_OF_STREAM
} feed_event_kind_t;

typedef struct {
    uint32_t kind;      /* feed_event_kind_t */
    uint32_t epoch;
    uint64_t value;     /* the dataset index, or END_OF_EPOCH's count */
} feed_event_t;

/* Binds a PULL socket on `endpoint` (hwm messages queued) and starts the
 * thread. With `share`, the thread also records the events the other ranks
 * need (feed_take_events). `shape` gives method, images and classes, and the dimensions
 * already known (0 = learn from the first valid ViewBatch). `slots` >= 2
 * batches are allocated once the shape is complete. `restored` (NULL: none)
 * is what a resumed checkpoint's model holds (epochs_from_json): the feed
 * takes it over and leaves *restored empty. NULL with err set. */
feed_t *feed_new(const char *endpoint, int hwm, const batch_shape_t *shape, int slots, epochs_t *restored,
                 int share, char *err, size_t errlen);
/* Stops the thread, closes the socket, frees the batches. */
void feed_destroy(feed_t **self_p);

/* The next full batch, waiting up to timeout_ms; NULL on timeout. The batch
 * belongs to the caller until feed_give_back. */
batch_t *feed_take(feed_t *f, int timeout_ms);
void feed_give_back(feed_t *f, batch_t *b);

/* Data-parallel runs, before a step: marks in drop[] (b->filled entries) the
 * images of b that are done already (another rank trained them after b was
 * assembled) and returns how many; drop[] entries of the others are left
 * as they are. */
uint32_t feed_mark_done(feed_t *f, const batch_t *b, uint8_t *drop);
/* Takes the images marked in drop[] out of b untrained (copies of samples
 * another rank trains or trained: counted as duplicates, acknowledged by the
 * rank that trains them) and hands the partly filled b back: the receive
 * thread fills it up before it starts an empty batch. An image marked
 * FEED_DROP_READMIT is taken again when a copy comes later (see
 * epochs_copy_dropped). */
#define FEED_DROP_READMIT 2
void feed_refill(feed_t *f, batch_t *b, const uint8_t *drop);

/* The complete shape (valid once a batch has been taken). */
void feed_shape(feed_t *f, batch_shape_t *out);
void feed_stats(feed_t *f, feed_stats_t *out);

/* The samples of b were trained (call before feed_give_back). */
void feed_trained(feed_t *f, const batch_t *b);
/* Moves up to max samples dropped without training (duplicates, skipped
 * samples) that wait to be acknowledged into epoch[] and index[]; returns
 * how many. */
size_t feed_take_duplicates(feed_t *f, uint32_t *epoch, uint64_t *index, size_t max);
/* The next per-epoch record (see epochs_next_record): 1 with *out filled, or 0. */
int feed_epoch_record(feed_t *f, int all, epochs_record_t *out);
/* The epoch training is in (see epochs_current). */
uint32_t feed_epoch(feed_t *f, int *known);
/* epochs_end_missing on the feed's epochs. */
int feed_end_missing(feed_t *f, uint64_t size);
/* What the model holds of the current epochs, for a Have message (sender
 * and step left for the caller): 1 with h filled (its done sets are copies,
 * freed by feed_have_release), 0 when no epoch is known yet, -1 when out of
 * memory. */
int feed_have(feed_t *f, proto_have_t *h);
void feed_have_release(proto_have_t *h);
/* Moves up to max recorded events (skipped samples, END_OF_EPOCH,
 * END_OF_STREAM; with `share` only) into out; returns how many. */
size_t feed_take_events(feed_t *f, feed_event_t *out, size_t max);
/* Applies another rank's events: its trained and skipped samples are done
 * here too (epochs_done_elsewhere), its END_OF_EPOCH and END_OF_STREAM count
 * as received here. ACK events change nothing. */
void feed_merge(feed_t *f, const feed_event_t *ev, size_t n);
/* The per-epoch state a checkpoint keeps (epochs_to_json), NULL when out of memory. */
json_t *feed_epochs_json(feed_t *f);

#endif

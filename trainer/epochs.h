/* trainer/epochs: which samples of each recent epoch the trainer has taken
 * (pure bookkeeping, no sockets, no locking: trainer/feed.c holds it under
 * its mutex).
 *
 * Every sample that arrives is "admitted" (it goes into a batch) unless the
 * same (epoch, dataset index) was admitted before: a duplicate, which the
 * loader sent again because it had no acknowledgement yet. A bitset over the
 * dataset index per epoch tells them apart; EPOCHS_KEPT recent epochs are
 * kept, older ones are closed and their late samples count as duplicates.
 *
 * A second bitset says which admitted samples are done: trained (a finished
 * optimizer step) or skipped (admitted but unusable: a supervised sample
 * without a usable label). Only done samples are acknowledged; a copy of a
 * sample that is admitted but still waits in a batch is dropped without an
 * Ack (the step that trains the original acknowledges it).
 *
 * An epoch is complete once the loader's END_OF_EPOCH said how many samples
 * it holds and that many are done. Then, or when it is closed to make room,
 * or at the end of the run, it yields one record: distinct samples trained,
 * skipped, and duplicates dropped.
 *
 * Checkpoints keep the done sets and the records' state (epochs_to_json), so
 * that a trainer resumed from one knows exactly what its model holds: it
 * takes again neither what it trained before the checkpoint nor less than
 * what it trained after (epochs_have tells the loader what is missing).
 */
#ifndef TRAINER_EPOCHS_H
#define TRAINER_EPOCHS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define EPOCHS_KEPT      4            /* epochs whose samples are told apart */
#define EPOCHS_MAX_INDEX (1ull << 28) /* dataset indices tracked (32 MB of bits per epoch) */

typedef enum {
    EPOCHS_NEW = 0,         /* first time: train it */
    EPOCHS_DUPLICATE = 1,   /* done before: drop it (and acknowledge it again) */
    EPOCHS_CLOSED = 2,      /* its epoch was closed: drop it (and acknowledge it) */
    EPOCHS_QUEUED = 3,      /* admitted before, not done yet: drop it, no Ack (the original's follows) */
} epochs_verdict_t;

typedef struct {
    int used;
    uint32_t epoch;
    uint8_t *seen;          /* (n_bits / 8) bitset over the dataset index: admitted */
    uint8_t *done;          /* (n_bits / 8) of those, trained or skipped */
    uint64_t n_bits;
    uint64_t admitted;      /* distinct samples put into a batch */
    uint64_t trained;       /* of those, in a finished step */
    uint64_t skipped;       /* of those, never to be trained (no usable label) */
    uint64_t duplicates;    /* samples dropped as duplicates (or late) */
    uint64_t untracked;     /* indices beyond EPOCHS_MAX_INDEX: admitted without a check */
    uint64_t expected;      /* the END_OF_EPOCH count */
    int ended;              /* END_OF_EPOCH arrived */
    int reported;           /* its record was handed out */
} epochs_slot_t;

typedef struct {
    uint32_t epoch;
    uint64_t distinct;      /* distinct samples trained */
    uint64_t skipped;       /* distinct samples skipped (no usable label) */
    uint64_t duplicates;
    uint64_t expected;      /* 0 when the END_OF_EPOCH never arrived */
    int complete;           /* distinct + skipped == expected, END_OF_EPOCH seen */
} epochs_record_t;

typedef struct {
    epochs_slot_t slot[EPOCHS_KEPT];
    int have_closed;
    uint32_t closed_upto;   /* with have_closed: epochs <= this one without a slot are closed */
    epochs_record_t pending[EPOCHS_KEPT];   /* records of slots closed before they were reported */
    int n_pending;
    uint64_t duplicates;    /* in all */
} epochs_t;

void epochs_init(epochs_t *e);
void epochs_release(epochs_t *e);

/* Sample (epoch, index) arrived: NEW (now admitted), DUPLICATE or CLOSED. */
epochs_verdict_t epochs_admit(epochs_t *e, uint32_t epoch, uint64_t index);
/* The admitted sample (epoch, index) was trained. */
void epochs_trained(epochs_t *e, uint32_t epoch, uint64_t index);
/* The admitted sample (epoch, index) will never be trained (no usable label). */
void epochs_skipped(epochs_t *e, uint32_t epoch, uint64_t index);
/* Another process of a data-parallel run trained (or, with skipped, skipped)
 * sample (epoch, index): it is done here too, admitted if it was not, so
 * that a copy arriving here later is a duplicate and the epoch's counts are
 * the whole run's. Nothing when it is done here already or its epoch is
 * closed. (A copy admitted here but not yet trained is trained again: the
 * loader sends a copy only long after its original went unacknowledged.) */
void epochs_done_elsewhere(epochs_t *e, uint32_t epoch, uint64_t index, int skipped);
/* 1 when (epoch, index) is done here (trained or skipped, here or, as far as
 * the exchanged events tell, on another rank); 0 otherwise, and for an index
 * beyond the tracked ones. */
int epochs_is_done(const epochs_t *e, uint32_t epoch, uint64_t index);
/* An admitted sample was taken out of its batch untrained, as a copy of one
 * another rank trains or trained (data-parallel runs): counted as a
 * duplicate. It stays admitted (a later copy is dropped here), unless
 * readmit and it is not done: then a later copy is taken again. A rank
 * asks that when the holder of the original gave its own batch back to be
 * filled up, so that the original may wait behind other batches there
 * while this rank needs the sample to fill its own. */
void epochs_copy_dropped(epochs_t *e, uint32_t epoch, uint64_t index, int readmit);
/* 1 when an epoch has as many samples done as the dataset holds (size) but
 * its END_OF_EPOCH has not arrived yet (it may be on its way). */
int epochs_end_missing(const epochs_t *e, uint64_t size);
/* The loader's END_OF_EPOCH: epoch holds count samples. */
void epochs_end(epochs_t *e, uint32_t epoch, uint64_t count);

/* Hands out one record: a complete epoch, or one closed to make room; with
 * `all`, also every epoch still open (the end of the run). 1 when *out was
 * filled, 0 when there is none. */
int epochs_next_record(epochs_t *e, int all, epochs_record_t *out);

/* The epoch training is in: the oldest one not complete, else the one after
 * the newest seen. 0 with *known = 0 when nothing arrived yet. */
uint32_t epochs_current(const epochs_t *e, int *known);

/* The done sets from the epoch training is in, for a Have message: epoch
 * `epoch` + k has done[k] (bytes[k] bytes, NULL when none is done; borrowed:
 * valid until e changes). Epochs after the n described have nothing done. */
typedef struct {
    uint32_t epoch;                     /* epochs_current */
    uint32_t n;                         /* 0..EPOCHS_KEPT */
    const uint8_t *done[EPOCHS_KEPT];
    size_t bytes[EPOCHS_KEPT];
} epochs_have_t;

/* 1 with *out filled, 0 when nothing is known yet (epochs_current's known). */
int epochs_have(const epochs_t *e, epochs_have_t *out);

/* What a checkpoint keeps: for each kept epoch its done set, its counts and
 * whether its record was written, and the records not written yet. Samples
 * admitted but not done are left out: the resumed trainer takes them again.
 * NULL when out of memory. */
json_t *epochs_to_json(const epochs_t *e);
/* Fills e (epochs_init'ed, empty) from epochs_to_json's object: 0, or -1
 * with err (e is then empty again). */
int epochs_from_json(epochs_t *e, const json_t *j, char *err, size_t errlen);
/* Distinct samples done in all kept epochs (for the log). */
uint64_t epochs_done_total(const epochs_t *e);
/* 1 when e counts the record of epoch as handed out (epochs_next_record):
 * its slot was reported, or it was closed earlier and its record is not
 * among the pending ones. 0 for an epoch e never saw. */
int epochs_record_out(const epochs_t *e, uint32_t epoch);

#endif

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
 * An epoch is complete once the loader's END_OF_EPOCH said how many samples
 * it holds and that many have been trained (a finished optimizer step) or
 * skipped (admitted but unusable: a supervised sample without a usable
 * label). Then, or when it is closed to make room, or at the end of the run,
 * it yields one record: distinct samples trained, skipped, and duplicates
 * dropped.
 */
#ifndef TRAINER_EPOCHS_H
#define TRAINER_EPOCHS_H

#include <stddef.h>
#include <stdint.h>

#define EPOCHS_KEPT      4            /* epochs whose samples are told apart */
#define EPOCHS_MAX_INDEX (1ull << 28) /* dataset indices tracked (32 MB of bits per epoch) */

typedef enum {
    EPOCHS_NEW = 0,         /* first time: train it */
    EPOCHS_DUPLICATE = 1,   /* admitted before: drop it (and acknowledge it again) */
    EPOCHS_CLOSED = 2,      /* its epoch was closed: drop it (and acknowledge it) */
} epochs_verdict_t;

typedef struct {
    int used;
    uint32_t epoch;
    uint8_t *seen;          /* (n_bits / 8) bitset over the dataset index */
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
/* n admitted samples of epoch were trained. */
void epochs_trained(epochs_t *e, uint32_t epoch, uint64_t n);
/* n admitted samples of epoch will never be trained (no usable label). */
void epochs_skipped(epochs_t *e, uint32_t epoch, uint64_t n);
/* The loader's END_OF_EPOCH: epoch holds count samples. */
void epochs_end(epochs_t *e, uint32_t epoch, uint64_t count);

/* Hands out one record: a complete epoch, or one closed to make room; with
 * `all`, also every epoch still open (the end of the run). 1 when *out was
 * filled, 0 when there is none. */
int epochs_next_record(epochs_t *e, int all, epochs_record_t *out);

/* The epoch training is in: the oldest one not complete, else the one after
 * the newest seen. 0 with *known = 0 when nothing arrived yet. */
uint32_t epochs_current(const epochs_t *e, int *known);

#endif

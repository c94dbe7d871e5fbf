/* loader/run: one run's state, shared by the epoch loop (loader/loader.c)
 * and --exactly-once's re-sending (loader/exactly_once.c). */
#ifndef LOADER_RUN_H
#define LOADER_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "console/console.h"
#include "dataset/dataset.h"
#include "loader/cache.h"
#include "loader/control.h"
#include "loader/ledger.h"
#include "loader/options.h"
#include "loader/pool.h"
#include "loader/sender.h"
#include "proto/proto.h"

typedef struct {
    uint64_t sent;
    uint64_t skipped[DATASET_N_REASONS];
    uint64_t skipped_total;
    uint64_t converted;       /* decoded with a lossy conversion (alpha, 16-bit, CMYK, frames) */
    uint32_t epochs_done;
    uint64_t resent;          /* --exactly-once: Samples sent again */
    uint64_t rewinds;         /* --exactly-once: starts over at a resumed trainer's epoch */
} counters_t;

typedef struct {
    const loader_options_t *o;
    const dataset_t *ds;
    cache_t *cache;
    pool_t *pool;
    sender_t *tx;
    counters_t *cnt;
    uint8_t *bad;              /* (n items) 1 when the item failed once: not retried */
    progress_t progress;
    double epoch_start;
    control_t *ctl;            /* NULL without a control socket */
    ledger_t *ledger;          /* --exactly-once, else NULL */
    double next_tick;          /* console_now() of the next look for overdue Samples */
    const size_t *selected;    /* (n_sel) the items this loader serves */
    size_t n_sel;
    proto_have_t held;         /* what the trainer held when this loader (re)started: not sent */
    int rewind;                /* start over at rewind_epoch (a resumed trainer lacks Samples of
                                  an epoch already closed) */
    uint32_t rewind_epoch;
    dataset_image_t img;       /* scratch for re-sending an item the cache lacks */
    int img_used;
    int peers;                 /* augmenters connected at the last look */
} run_t;

#endif

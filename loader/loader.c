/* loader/loader: the loading stage (loader.h): setting up, the epochs (the
 * first decoded, later ones from the cache), the end of the stream. */
#include "loader/loader.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "console/console.h"
#include "dataset/dataset.h"
#include "dataset/split.h"
#include "errmsg/errmsg.h"
#include "loader/cache.h"
#include "loader/control.h"
#include "loader/exactly_once.h"
#include "loader/ledger.h"
#include "loader/order.h"
#include "loader/pool.h"
#include "loader/queue.h"
#include "loader/run.h"
#include "loader/sender.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define POOL_WINDOW        256       /* positions decoded ahead of the sender */
#define DRAIN_LINGER_MS    60000     /* at a normal end, time allowed to deliver what is queued */

static void skip_item(run_t *r, size_t item, const dataset_error_t *err)
{
    r->bad[item] = 1;
    r->cnt->skipped[err->reason]++;
    r->cnt->skipped_total++;
    console_log("warning: skipped (%s): %s", dataset_reason_name(err->reason), err->message);
}

/* 1 (err filled) when a decoded image is beyond what a Sample may carry:
 * sending it would fail, so it is skipped like an oversized file. */
static int unsendable(const run_t *r, const pool_result_t *res, dataset_error_t *err)
{
    if (res->height <= PROTO_MAX_SIDE && res->width <= PROTO_MAX_SIDE &&
        (uint64_t)res->height * res->width <= PROTO_MAX_PIXELS)
        return 0;
    char name[DATASET_MESSAGE_MAX / 2];
    err->reason = DATASET_ERR_TOO_LARGE;
    snprintf(err->message, sizeof err->message,
             "%s: %ux%u is beyond a Sample's limits (side %u, %u pixels); HINT: --max-side shrinks it",
             dataset_item_name(r->ds, res->item, name, sizeof name), res->width, res->height, PROTO_MAX_SIDE,
             PROTO_MAX_PIXELS);
    return 1;
}

/* A first decode that dropped something (alpha, bits, CMYK, frames): one
 * note per item, counted (later epochs read it from the cache or skip it). */
static void note_converted(run_t *r, uint32_t epoch, const pool_result_t *res)
{
    if (!res->note || epoch != r->o->start_epoch)
        return;
    r->cnt->converted++;
    console_log("note: converted: %s", res->note);
}

static void show_progress(run_t *r, uint32_t epoch)
{
    if (r->o->quiet)
        return;
    char extra[96];
    if (r->o->epochs)
        snprintf(extra, sizeof extra, "epoch %u/%u, %" PRIu64 " skipped", epoch + 1 - r->o->start_epoch, r->o->epochs,
                 r->cnt->skipped_total);
    else
        snprintf(extra, sizeof extra, "epoch %u, %" PRIu64 " skipped", epoch + 1, r->cnt->skipped_total);
    progress_update(&r->progress, r->cnt->sent, extra);
}

/* Streams one epoch over items[0..n); returns the Samples sent, and sets
 * *stopped when the run must end. */
static uint64_t run_epoch(run_t *r, uint32_t epoch, size_t *items, size_t n, int *stopped)
{
    uint64_t sent = 0;
    int all_cached = 1;
    for (size_t k = 0; k < n && all_cached; k++)
        all_cached = cache_get(r->cache, items[k]) != NULL;

    if (all_cached) {
        /* Every item is in memory: stream straight from the cache. */
        for (size_t k = 0; k < n; k++) {
            const cache_entry_t *e = cache_get(r->cache, items[k]);
            before_send(r, epoch, items[k]);
            if (transport_stop ||
                send_sample(r->tx, r->ds, items[k], epoch, e->pixels, e->height, e->width, e->channels) ||
                exactly_once_tick(r, 0)) {
                *stopped = 1;
                return sent;
            }
            sent++;
            r->cnt->sent++;
            show_progress(r, epoch);
            if (r->rewind)
                return sent;
        }
        return sent;
    }

    pool_start_epoch(r->pool, items, n);
    const pool_result_t *res;
    dataset_error_t too_large;
    while ((res = pool_next(r->pool))) {
        int fail = 0;
        if (transport_stop) {
            fail = 1;
        } else if (!res->ok) {
            skip_item(r, res->item, &res->err);
        } else if (unsendable(r, res, &too_large)) {
            skip_item(r, res->item, &too_large);
        } else {
            note_converted(r, epoch, res);
            if (!res->cached)
                cache_put(r->cache, res->item, res->pixels, res->height, res->width, res->channels);
            before_send(r, epoch, res->item);
            if (send_sample(r->tx, r->ds, res->item, epoch, res->pixels, res->height, res->width,
                            res->channels) || exactly_once_tick(r, 0))
                fail = 1;
            else {
                sent++;
                r->cnt->sent++;
                show_progress(r, epoch);
            }
        }
        pool_release(r->pool);
        if (fail || r->rewind) {
            /* Let the items in hand finish so the pool is idle. */
            pool_cancel_epoch(r->pool);
            while (pool_next(r->pool))
                pool_release(r->pool);
            *stopped = fail;
            break;
        }
    }
    return sent;
}

/* Removes from selected[0..*n_sel) the items of the evaluator's held-out
 * test part; returns how many were removed, or SIZE_MAX with err set. */
static size_t hold_out(const dataset_t *ds, const loader_options_t *o, size_t *selected, size_t *n_sel, char *err,
                       size_t errlen)
{
    char why[512];
    size_t *rest = NULL, *held = NULL, n_rest, n_held;
    if (split_test_part(ds, o->hold_out, o->hold_out_seed, &rest, &n_rest, &held, &n_held, why, sizeof why)) {
        errmsg_set(err, errlen, "--hold-out %g: %s: %s\n"
                                "HINT: hold out a test part only from a labeled dataset (class folders, IDX, CIFAR)",
                   o->hold_out, o->data, why);
        return SIZE_MAX;
    }
    free(rest);
    size_t kept = 0, h = 0, removed = 0;
    for (size_t k = 0; k < *n_sel; k++) {   /* both lists are in increasing order */
        while (h < n_held && held[h] < selected[k])
            h++;
        if (h < n_held && held[h] == selected[k])
            removed++;
        else
            selected[kept++] = selected[k];
    }
    free(held);
    *n_sel = kept;
    return removed;
}

/* Every selected item failed: the dataset is unusable (exit status 2). */
static int none_readable(run_t *r, size_t n_sel)
{
    progress_end(&r->progress);
    fprintf(stderr, "loader: none of the %zu items could be read\n"
                    "HINT: check the warnings above; is --data the right folder?\n",
            n_sel);
    return CLI_EXIT_USAGE;
}

/* ---------------------------------------------------------------- lifecycle */

/* What one run owns: loader_new sets it up, loader_run streams the epochs,
 * loader_destroy releases it whatever point the setup reached. */
struct loader {
    const loader_options_t *o;
    dataset_t *ds;
    size_t n_all;
    size_t *selected;          /* (n_sel) the items this loader serves, in increasing order */
    size_t n_sel;
    size_t n_held;             /* left out: the evaluator's test part */
    size_t *items;             /* (n_all) an epoch's items, shuffled */
    uint8_t *bad;              /* (n_all) 1 when the item failed once: not retried */
    sender_t tx;
    control_t ctl;
    pthread_t ctl_thread;
    int ctl_running;           /* the control thread was started */
    cache_t *cache;
    pool_t *pool;
    counters_t cnt;
    run_t r;
};

void loader_destroy(loader_t **self_p)
{
    loader_t *l = *self_p;
    if (!l)
        return;
    pool_destroy(&l->pool);
    if (l->ctl_running) {
        l->ctl.quit = 1;
        pthread_join(l->ctl_thread, NULL);
    }
    transport_close(&l->ctl.sub);
    ledger_destroy(&l->ctl.ledger);
    have_free(&l->ctl.have);
    have_free(&l->r.held);
    pthread_mutex_destroy(&l->ctl.mu);
    if (l->r.img_used)
        dataset_image_release(&l->r.img);
    dataset_thread_done();   /* this thread read the probes, and maybe re-sent items */
    transport_close(&l->tx.push);
    transport_shutdown();
    proto_buf_release(&l->tx.buf);
    cache_destroy(&l->cache);
    dataset_destroy(&l->ds);
    free(l->selected);
    free(l->items);
    free(l->bad);
    free(l);
    *self_p = NULL;
}

/* Opens the dataset and selects the items (all that --count needs), then
 * opens the sockets and starts the control thread and the decoding pool.
 * NULL with *status (CLI_EXIT_USAGE: bad options or dataset, else
 * CLI_EXIT_FAILED) and err set, or empty when the message is printed. */
loader_t *loader_new(const loader_options_t *o, int *status, char *err, size_t errlen)
{
    *status = CLI_EXIT_USAGE;
    errmsg_set(err, errlen, "%s", "");
    if (o->curve && transport_use_curve(o->curve, TRANSPORT_CURVE_SERVER | TRANSPORT_CURVE_CLIENT, err, errlen))
        return NULL;
    transport_catch_signals();   /* before the (possibly long) dataset opening */
    loader_t *l = calloc(1, sizeof *l);
    if (!l) {
        *status = CLI_EXIT_FAILED;
        errmsg_set(err, errlen, "out of memory");
        return NULL;
    }
    l->o = o;
    pthread_mutex_init(&l->ctl.mu, NULL);
    proto_buf_init(&l->tx.buf);
    if (!(l->ds = dataset_new(o->data, o->format, err, errlen)))
        goto fail;
    if (dataset_format(l->ds) == DATASET_FORMAT_FOLDER && dataset_decoder_start(err, errlen)) {
        *status = CLI_EXIT_FAILED;
        goto fail;
    }
    l->n_all = dataset_count(l->ds);
    l->selected = malloc(l->n_all * sizeof *l->selected);
    l->items = malloc(l->n_all * sizeof *l->items);
    l->bad = calloc(l->n_all, 1);
    if (!l->selected || !l->items || !l->bad) {
        *status = CLI_EXIT_FAILED;
        errmsg_set(err, errlen, "out of memory for %zu items", l->n_all);
        goto fail;
    }
    l->n_sel = order_select(l->selected, l->n_all, o->limit, o->shard_index, o->shard_count);
    if (o->hold_out > 0.0 &&
        (l->n_held = hold_out(l->ds, o, l->selected, &l->n_sel, err, errlen)) == SIZE_MAX)
        goto fail;
    if (l->n_sel == 0) {
        errmsg_set(err, errlen, "no items selected (%zu in the dataset, --limit %zu, --shard %u/%u)\n"
                                "HINT: a shard needs at least one item: lower N or raise --limit",
                   l->n_all, o->limit, o->shard_index, o->shard_count);
        goto fail;
    }
    if (o->count_only)
        return l;

    *status = CLI_EXIT_FAILED;
    if (!o->quiet)
        console_log("%s dataset %s: %zu items, %d classes; serving %zu (%zu held out for testing; seed %" PRIu64
                    ", %d threads)",
                    dataset_format_name(dataset_format(l->ds)), o->data, l->n_all, dataset_n_classes(l->ds), l->n_sel,
                    l->n_held, o->seed, o->threads);
    /* The queue for each augmenter: --hwm Samples, fewer when they would
     * exceed --queue-mb (loader/queue.h). */
    uint64_t sample_bytes = queue_probe_sample_bytes(l->ds, &o->decode, l->selected, l->n_sel);
    int hwm = queue_hwm((uint64_t)o->queue_mb << 20, sample_bytes, o->hwm);
    if (!o->quiet || hwm < o->hwm)
        console_log("queue: at most %d Sample(s) per augmenter connection (%.2f MB each, the largest of %d "
                    "probed; --queue-mb %zu, --hwm %d)", hwm, (double)sample_bytes / (1 << 20),
                    l->n_sel < QUEUE_PROBES ? (int)l->n_sel : QUEUE_PROBES, o->queue_mb, o->hwm);
    l->tx.identity = transport_identity("loader");
    if (!(l->tx.push = transport_open_peer(ZMQ_PUSH, TRANSPORT_BIND, o->bind, hwm, "augmenters")))
        goto fail;
    if (o->exactly_once && !(l->ctl.ledger = ledger_new(l->n_all, o->resend_after))) {
        errmsg_set(err, errlen, "out of memory for the acknowledgement ledger of %zu items", l->n_all);
        goto fail;
    }
    if (o->control) {
        l->ctl.identity = l->tx.identity;
        if (!(l->ctl.sub = transport_open_peer(ZMQ_XSUB, TRANSPORT_CONNECT, o->control, 0, "trainer control")))
            goto fail;
        if (pthread_create(&l->ctl_thread, NULL, control_thread, &l->ctl) != 0) {
            errmsg_set(err, errlen, "cannot start the control thread");
            goto fail;
        }
        l->ctl_running = 1;
    }
    l->cache = cache_new(l->n_all, o->cache_mb << 20);
    l->pool = l->cache ? pool_new(l->ds, &o->decode, l->cache, o->threads, POOL_WINDOW) : NULL;
    if (!l->pool) {
        errmsg_set(err, errlen, "cannot start %d decoding threads", o->threads);
        goto fail;
    }
    l->r = (run_t){.o = o, .ds = l->ds, .cache = l->cache, .pool = l->pool, .tx = &l->tx, .cnt = &l->cnt,
                   .bad = l->bad, .ctl = o->control ? &l->ctl : NULL, .ledger = l->ctl.ledger,
                   .selected = l->selected, .n_sel = l->n_sel};
    return l;
fail:
    loader_destroy(&l);
    return NULL;
}

/* With --count, prints the number of items served. Otherwise streams the
 * epochs until done or stopped and sends END_OF_STREAM; the exit status. */
int loader_run(loader_t *l)
{
    const loader_options_t *o = l->o;
    if (o->count_only) {
        printf("%zu\n", l->n_sel);
        return CLI_EXIT_OK;
    }
    run_t *r = &l->r;
    counters_t *cnt = &l->cnt;
    uint32_t first_epoch = o->start_epoch;
    if (r->ledger)
        first_epoch = join_trainer(r, first_epoch);
    uint64_t end_epoch = (uint64_t)o->start_epoch + o->epochs;   /* with o->epochs: one past the last */
    progress_start(&r->progress, "images", o->epochs ? (uint64_t)l->n_sel * o->epochs : 0);
    double start = console_now();
    int stopped = 0, failed = 0;

    uint32_t epoch = first_epoch;
    while (!stopped) {
        if (r->rewind) {
            /* a resumed trainer lacks Samples of an epoch already closed */
            ledger_reset(r->ledger);
            epoch = r->rewind_epoch;
            r->rewind = 0;
            cnt->rewinds++;
        }
        if (o->epochs != 0 && epoch >= end_epoch) {
            /* every epoch streamed: wait until the trainer has them all */
            if (!r->ledger)
                break;
            progress_end(&r->progress);
            if (!o->quiet)
                console_log("exactly once: waiting for the trainer to acknowledge the last %" PRIu64 " Sample(s)",
                            ledger_outstanding(r->ledger));
            int w = wait_acknowledged(r, 1);
            if (w < 0)
                stopped = 1;
            if (w <= 0)
                break;
            continue;   /* start over */
        }
        if (r->ledger) {
            int w = wait_acknowledged(r, 0);
            if (w > 0)
                continue;
            if (w < 0 || ledger_open(r->ledger, epoch)) {
                stopped = 1;
                break;
            }
        }
        /* what the trainer held when this loader (re)started is not sent again */
        size_t n = 0, held = 0;
        for (size_t k = 0; k < l->n_sel; k++) {
            size_t item = l->selected[k];
            if (l->bad[item])
                continue;
            if (proto_have_bit(&r->held, epoch, item)) {
                ledger_held(r->ledger, epoch, item);
                held++;
            } else {
                l->items[n++] = item;
            }
        }
        if (n + held == 0) {
            failed = none_readable(r, l->n_sel);
            break;
        }
        order_shuffle(l->items, n, o->seed, epoch);
        double t0 = console_now();
        uint64_t sent = run_epoch(r, epoch, l->items, n, &stopped);
        if (stopped)
            break;
        if (r->rewind)
            continue;
        if (sent == 0 && held == 0 && cnt->skipped_total >= l->n_sel) {
            failed = none_readable(r, l->n_sel);
            break;
        }
        /* the epoch's count: the trainer completes it with the Samples it held */
        if (send_control(&l->tx, PROTO_CONTROL_END_OF_EPOCH, epoch, sent + held)) {
            stopped = 1;
            break;
        }
        if (r->ledger)
            ledger_seal(r->ledger, epoch, sent + held);
        cnt->epochs_done++;
        double dt = console_now() - t0;
        if (!o->quiet) {
            progress_end(&r->progress);
            char kept[64] = "";
            if (held)
                snprintf(kept, sizeof kept, " (%zu more the trainer held)", held);
            console_log("epoch %u: %" PRIu64 " images%s in %.2f s (%.0f images/s); cache holds %zu items, %.0f MB",
                        epoch, sent, kept, dt, dt > 0 ? (double)sent / dt : 0.0, cache_count(l->cache),
                        (double)cache_bytes(l->cache) / (1 << 20));
        }
        epoch++;
    }
    progress_end(&r->progress);

    if (!failed) {
        /* Tell consumers the stream ended (best effort when stopping). */
        int drained = !stopped;
        if (send_control(&l->tx, PROTO_CONTROL_END_OF_STREAM, cnt->epochs_done, cnt->sent) == 0 && drained) {
            int linger = DRAIN_LINGER_MS;
            zmq_setsockopt(l->tx.push, ZMQ_LINGER, &linger, sizeof linger);
        }
    }
    double elapsed = console_now() - start;
    console_log("%s: sent %" PRIu64 " images in %.2f s (%.0f images/s), %u epochs; skipped %" PRIu64
                " (unreadable %" PRIu64 ", corrupt %" PRIu64 ", too_large %" PRIu64 "); converted %" PRIu64,
                stopped ? "stopped" : failed ? "failed" : "done", cnt->sent, elapsed,
                elapsed > 0 ? (double)cnt->sent / elapsed : 0.0, cnt->epochs_done, cnt->skipped_total,
                cnt->skipped[DATASET_ERR_UNREADABLE], cnt->skipped[DATASET_ERR_CORRUPT],
                cnt->skipped[DATASET_ERR_TOO_LARGE], cnt->converted);
    if (r->ledger)
        console_log("exactly once: re-sent %" PRIu64 " Sample(s); started over %" PRIu64 " time(s) for a resumed "
                    "trainer", cnt->resent, cnt->rewinds);
    return failed;
}

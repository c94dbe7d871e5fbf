/* loader: reads an image dataset, decodes it, and streams it as Samples.
 *
 * Sockets:
 *   PUSH  bind     tcp://127.0.0.1:5555  (--bind)     Sample messages, then Control
 *                                                     END_OF_EPOCH after each epoch and
 *                                                     END_OF_STREAM at the end; the
 *                                                     high-water mark (--hwm, fewer when
 *                                                     that many Samples exceed --queue-mb:
 *                                                     loader/queue.h) makes a slow
 *                                                     consumer slow the loader down
 *   XSUB  connect  tcp://127.0.0.1:5558  (--control)  the trainer's Control PUB ([topic, body]
 *                                                     frames); STOP ends the run; the
 *                                                     trainer's HEARTBEAT (silent for 3 s:
 *                                                     logged), with --exactly-once also its
 *                                                     epoch, Acks and Haves. Up it, a beat
 *                                                     every second so that the trainer sees
 *                                                     a stopped or hung loader
 * With --curve DIR both are CURVE-encrypted: the PUSH accepts only the client
 * keys in DIR/allowed/ (transport/transport.h); lost peers are logged.
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
 * later (ledger_restart), as a lost augmenter does.
 *
 * The first epoch decodes (on --threads threads) and fills a bounded cache of
 * decoded images (--cache-mb); later epochs stream from it and decode only
 * what did not fit. Every epoch is shuffled from --seed. Unreadable, corrupt
 * and oversized files are skipped with one warning each and counted.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "console/console.h"
#include "dataset/dataset.h"
#include "dataset/split.h"
#include "errmsg/errmsg.h"
#include "loader/cache.h"
#include "loader/ledger.h"
#include "loader/options.h"
#include "loader/order.h"
#include "loader/pool.h"
#include "loader/queue.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define POOL_WINDOW        256       /* positions decoded ahead of the sender */
#define DRAIN_LINGER_MS    60000     /* at a normal end, time allowed to deliver what is queued */
#define CONTROL_POLL_MS    100
#define RESEND_MIN_S       3.0       /* --exactly-once: never re-send sooner than this */
#define RESEND_TICK_S      0.25      /* how often overdue Samples are looked for */
#define RESEND_BATCH       4096      /* Samples re-sent per look at most */
#define TRAINER_ALIVE_S    3.0       /* a heartbeat this recent: the trainer is alive */
#define HEARTBEAT_WAIT_S   3.0       /* at start, time to wait for the trainer's epoch */
#define HAVE_WAIT_S        1.5       /* then for its Have (sent with every heartbeat, once it knows an epoch) */
#define HAVE_CHECK_MAX     8         /* closed epochs checked against one Have at most */
#define ACK_WAIT_MS        50        /* sleep while waiting for Acks */

typedef struct {
    uint64_t sent;
    uint64_t skipped[DATASET_N_REASONS];
    uint64_t skipped_total;
    uint64_t converted;       /* decoded with a lossy conversion (alpha, 16-bit, CMYK, frames) */
    uint32_t epochs_done;
    uint64_t resent;          /* --exactly-once: Samples sent again */
    uint64_t rewinds;         /* --exactly-once: starts over at a resumed trainer's epoch */
} counters_t;

/* ---------------------------------------------------------------- control */

typedef struct {
    void *sub;                /* an XSUB: it carries this loader's beats up to the trainer */
    const char *identity;     /* "loader@host:pid", the sender of the beats */
    atomic_int quit;
    ledger_t *ledger;         /* --exactly-once, else NULL */
    pthread_mutex_t mu;       /* guards the trainer's heartbeat and Have below */
    double last_heartbeat;    /* console_now() of the last one, 0 = none */
    uint32_t trainer_epoch;   /* the epoch it says training is in */
    char trainer[PROTO_MAX_NAME];     /* the sender of the last heartbeat (control thread only) */
    proto_have_t have;        /* its last Have, done sets owned (have_copy) */
    uint64_t haves;           /* Haves received */
    uint32_t check[HAVE_CHECK_MAX];   /* epochs not open when it arrived, for the main */
    size_t n_check;                   /* thread to check against `have` (0: none to check) */
    uint64_t check_generation;        /* the ledger's generation then */
} control_t;

static void have_free(proto_have_t *h)
{
    for (uint32_t k = 0; k < PROTO_MAX_HAVE_EPOCHS; k++)
        free((void *)h->done[k]);
    memset(h, 0, sizeof *h);
}

/* *dst = src with its done sets copied (a decoded Have borrows them from
 * the message); -1 when out of memory. */
static int have_copy(proto_have_t *dst, const proto_have_t *src)
{
    *dst = *src;
    memset(dst->done, 0, sizeof dst->done);
    for (uint32_t k = 0; k < src->n_epochs; k++) {
        if (!src->done_bytes[k])
            continue;
        uint8_t *p = malloc(src->done_bytes[k]);
        if (!p) {
            have_free(dst);
            return -1;
        }
        memcpy(p, src->done[k], src->done_bytes[k]);
        dst->done[k] = p;
    }
    return 0;
}

/* A Have, looked at as it arrives, in order with the Acks: what an open
 * epoch lacks of its acknowledged Samples is due at once (a trainer resumed
 * from a checkpoint taken before those Acks); the epochs already closed are
 * left to the main thread to check (it knows which items each holds). */
static void on_have(control_t *ctl, const proto_have_t *h)
{
    uint32_t check[HAVE_CHECK_MAX];
    size_t n_check;
    uint64_t generation;
    size_t reverted = ledger_have(ctl->ledger, h->epoch, h->n_epochs, h->done, h->done_bytes, check,
                                  HAVE_CHECK_MAX, &n_check, &generation);
    if (reverted)
        console_log("exactly once: the trainer (%s, step %" PRIu64 ") does not hold %zu acknowledged Sample(s) "
                    "(it resumed from a checkpoint taken before it trained them): sending them again",
                    h->sender, h->step, reverted);
    proto_have_t copy;
    if (have_copy(&copy, h))
        return;
    pthread_mutex_lock(&ctl->mu);
    have_free(&ctl->have);
    ctl->have = copy;
    ctl->haves++;
    memcpy(ctl->check, check, n_check * sizeof check[0]);
    ctl->n_check = n_check;
    ctl->check_generation = generation;
    pthread_mutex_unlock(&ctl->mu);
}

/* Receives Control messages ([topic, body], or the deprecated body alone); a
 * STOP raises the process-wide stop flag, and the trainer's heartbeats are
 * watched (a silence of TRANSPORT_SILENT_S is logged, and its end). With
 * --exactly-once, heartbeats, Acks and Haves are recorded too. Sends this
 * loader's beat up the same socket every TRANSPORT_BEAT_S. */
static void *control_thread(void *arg)
{
    control_t *ctl = arg;
    liveness_t *trainer_beats = liveness_new(TRANSPORT_SILENT_S, 0, 1);
    double next_beat = 0;
    while (!ctl->quit && !transport_stop) {
        double now = console_now();
        if (now >= next_beat) {
            transport_beat(ctl->sub, ctl->identity, PROTO_CONTROL_HEARTBEAT);
            if (trainer_beats)
                liveness_check(trainer_beats, now);
            next_beat = now + TRANSPORT_BEAT_S;
        }
        zmq_msg_t msg;
        char topic[PROTO_MAX_TOPIC + 1];
        int rc = transport_recv_topic(ctl->sub, &msg, topic, CONTROL_POLL_MS);
        if (rc <= 0)
            continue;
        proto_msg_type_t type;
        proto_control_t c;
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (proto_peek_type(data, len, &type, NULL, 0) != 0 ||
            (topic[0] && proto_topic_check(topic, strlen(topic), data, len, NULL, 0))) {
            zmq_msg_close(&msg);
            continue;
        }
        if (type == PROTO_MSG_CONTROL && proto_control_decode(&c, data, len, NULL, 0) == 0) {
            if (c.kind == PROTO_CONTROL_STOP) {
                console_log("stop received from %s", c.sender);
                transport_stop = 1;
            } else if (c.kind == PROTO_CONTROL_HEARTBEAT) {
                now = console_now();
                if (trainer_beats)
                    liveness_beat(trainer_beats, c.sender, now);
            }
            if (c.kind == PROTO_CONTROL_HEARTBEAT && ctl->ledger) {
                int restarted = ctl->trainer[0] && strcmp(ctl->trainer, c.sender) != 0;
                if (restarted) {
                    /* what the dead one held is lost, like a dead worker's */
                    ledger_restart(ctl->ledger, now);
                    console_log("exactly once: another trainer took over (%s after %s); what is not "
                                "acknowledged %.0f s from now goes out again", c.sender, ctl->trainer,
                                LEDGER_LOST_GRACE_S);
                }
                snprintf(ctl->trainer, sizeof ctl->trainer, "%s", c.sender);
                pthread_mutex_lock(&ctl->mu);
                ctl->last_heartbeat = now;
                ctl->trainer_epoch = c.epoch;
                pthread_mutex_unlock(&ctl->mu);
            }
        } else if (type == PROTO_MSG_ACK && ctl->ledger) {
            proto_ack_t a;
            if (proto_ack_decode(&a, data, len, NULL, 0) == 0)
                ledger_ack(ctl->ledger, a.epoch, a.indices, a.n_indices, console_now());
            proto_ack_clear(&a);
        } else if (type == PROTO_MSG_HAVE && ctl->ledger) {
            proto_have_t h;
            if (proto_have_decode(&h, data, len, NULL, 0) == 0)
                on_have(ctl, &h);
        }
        zmq_msg_close(&msg);
    }
    /* leaving normally: the trainer forgets this loader without calling it silent */
    transport_beat(ctl->sub, ctl->identity, PROTO_CONTROL_END_OF_STREAM);
    liveness_destroy(&trainer_beats);
    return NULL;
}

/* ---------------------------------------------------------------- sending */

typedef struct {
    void *push;
    proto_buf_t buf;
    const char *identity;
} sender_t;

static int send_sample(sender_t *s, const dataset_t *ds, size_t item, uint32_t epoch, const uint8_t *pixels,
                       uint32_t h, uint32_t w, uint32_t c)
{
    proto_sample_t m = {
        .index = item, .epoch = epoch, .label = dataset_label(ds, item),
        .height = h, .width = w, .channels = c, .pixels = pixels,
    };
    char perr[PROTO_ERR_MAX];
    if (proto_sample_encode(&s->buf, &m, perr, sizeof perr)) {
        console_log("cannot encode item %zu: %s", item, perr);
        return -1;
    }
    return transport_send(s->push, s->buf.data, s->buf.len);
}

static int send_control(sender_t *s, proto_control_kind_t kind, uint32_t epoch, uint64_t count)
{
    proto_control_t m = {.kind = kind, .epoch = epoch, .count = count};
    snprintf(m.sender, sizeof m.sender, "%s", s->identity);
    char perr[PROTO_ERR_MAX];
    if (proto_control_encode(&s->buf, &m, perr, sizeof perr)) {
        console_log("cannot encode a control message: %s", perr);
        return -1;
    }
    return transport_send(s->push, s->buf.data, s->buf.len);
}

/* ---------------------------------------------------------------- run */

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

/* ---------------------------------------------------------------- exactly once */

/* 1 when the trainer's heartbeat is recent: Samples it has not acknowledged
 * are then really missing, not waiting for it to come back. */
static int trainer_alive(run_t *r, double now)
{
    pthread_mutex_lock(&r->ctl->mu);
    double last = r->ctl->last_heartbeat;
    pthread_mutex_unlock(&r->ctl->mu);
    return last > 0 && now - last <= TRAINER_ALIVE_S;
}

/* Sends item of epoch again, from the cache or decoded anew; -1 when stopping. */
static int resend_item(run_t *r, uint32_t epoch, size_t item)
{
    const cache_entry_t *e = cache_get(r->cache, item);
    if (e)
        return send_sample(r->tx, r->ds, item, epoch, e->pixels, e->height, e->width, e->channels);
    dataset_error_t err;
    if (!r->img_used) {
        dataset_image_init(&r->img);
        r->img_used = 1;
    }
    if (dataset_read(r->ds, item, &r->o->decode, &r->img, &err)) {
        console_log("warning: cannot read item %zu again to re-send it: %s", item, err.message);
        return 0;   /* it stays unacknowledged and is tried again later */
    }
    return send_sample(r->tx, r->ds, item, epoch, r->img.pixels, r->img.height, r->img.width,
                       r->img.channels);
}

/* 1 when the trainer, by Have h, lacks an item of epoch that this loader
 * serves (and could read). */
static int trainer_lacks(const run_t *r, const proto_have_t *h, uint32_t epoch)
{
    for (size_t k = 0; k < r->n_sel; k++)
        if (!r->bad[r->selected[k]] && !proto_have_bit(h, epoch, r->selected[k]))
            return 1;
    return 0;
}

/* The epochs that were not open when the trainer's last Have arrived: when
 * it lacks items of one of them (it resumed from a checkpoint taken before
 * it trained them, and they were all acknowledged), the loader starts over
 * at the trainer's epoch (r->rewind), sending only what the Have does not
 * list. */
static void check_closed_epochs(run_t *r)
{
    uint32_t check[HAVE_CHECK_MAX];
    proto_have_t h;
    pthread_mutex_lock(&r->ctl->mu);
    size_t n = r->ctl->n_check;
    int current = r->ctl->check_generation == ledger_generation(r->ledger);
    memcpy(check, r->ctl->check, n * sizeof check[0]);
    r->ctl->n_check = 0;
    int got = n > 0 && current && have_copy(&h, &r->ctl->have) == 0;
    pthread_mutex_unlock(&r->ctl->mu);
    if (!got)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!trainer_lacks(r, &h, check[i]))
            continue;
        console_log("exactly once: the trainer (%s, step %" PRIu64 ") lacks Samples of epoch %u, which it had "
                    "acknowledged in full (it resumed from a checkpoint taken before); starting over at epoch %u "
                    "with what it lacks", h.sender, h.step, check[i], h.epoch);
        have_free(&r->held);
        r->held = h;
        r->rewind = 1;
        r->rewind_epoch = h.epoch;
        return;
    }
    have_free(&h);
}

/* Every RESEND_TICK_S (or now, with force): checks the trainer's last Have,
 * closes the epochs whose Samples are all acknowledged and sends again those
 * overdue. -1 when stopping; sets r->rewind when the loader must start over. */
static int exactly_once_tick(run_t *r, int force)
{
    static uint32_t due_epoch[RESEND_BATCH];
    static size_t due_item[RESEND_BATCH];
    if (!r->ledger)
        return 0;
    double now = console_now();
    if (!force && now < r->next_tick)
        return 0;
    r->next_tick = now + RESEND_TICK_S;
    check_closed_epochs(r);
    if (r->rewind)
        return 0;
    uint32_t done;
    uint64_t count;
    while (ledger_close_next(r->ledger, &done, &count)) {
        if (!r->o->quiet)
            console_log("epoch %u: every Sample acknowledged by the trainer", done);
        /* Its END_OF_EPOCH went to one worker, which may have died with it:
         * the trainer counts a repeated one once. */
        if (send_control(r->tx, PROTO_CONTROL_END_OF_EPOCH, done, count))
            return -1;
    }
    int peers = transport_peers(r->tx->push);
    if (peers >= 0 && peers < r->peers)
        ledger_peer_lost(r->ledger, now);   /* what it held is due soon, not after the timeout */
    r->peers = peers;
    if (!trainer_alive(r, now))
        return 0;
    size_t n = ledger_due(r->ledger, now, due_epoch, due_item, RESEND_BATCH);
    if (n == 0)
        return 0;
    console_log("re-sending %zu Sample(s) of epoch %u not acknowledged (a worker left, or none within %.1f s)",
                n, due_epoch[0], ledger_timeout(r->ledger));
    for (size_t k = 0; k < n; k++) {
        if (transport_stop || resend_item(r, due_epoch[k], due_item[k]))
            return -1;
        r->cnt->resent++;
        /* after the last re-sent Sample of a sealed epoch, its END_OF_EPOCH again */
        if ((k + 1 == n || due_epoch[k + 1] != due_epoch[k]) && ledger_sealed(r->ledger, due_epoch[k], &count) &&
            send_control(r->tx, PROTO_CONTROL_END_OF_EPOCH, due_epoch[k], count))
            return -1;
    }
    return 0;
}

/* Waits, re-sending what is overdue, until fewer than LEDGER_MAX_OPEN epochs
 * are open (all = 0) or none is (all = 1). -1 when stopping, 1 when the
 * loader must start over (r->rewind). */
static int wait_acknowledged(run_t *r, int all)
{
    for (;;) {
        if (transport_stop || exactly_once_tick(r, 1))
            return -1;
        if (r->rewind)
            return 1;
        int open = ledger_n_open(r->ledger);
        if (all ? open == 0 : open < LEDGER_MAX_OPEN)
            return 0;
        usleep(ACK_WAIT_MS * 1000);
    }
}

/* A Sample of epoch is about to go out for the first time. */
static void before_send(run_t *r, uint32_t epoch, size_t item)
{
    if (r->ledger)
        ledger_sent(r->ledger, epoch, item, console_now());
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

/* --exactly-once at start: a trainer already running (this loader was
 * restarted) says with its heartbeat the epoch it is in, and with its Have
 * what it holds; the loader starts at that epoch and leaves those out.
 * Returns the first epoch. */
static uint32_t join_trainer(run_t *r, uint32_t first_epoch)
{
    control_t *ctl = r->ctl;
    double until = console_now() + HEARTBEAT_WAIT_S;
    while (!transport_stop && console_now() < until && !trainer_alive(r, console_now()))
        usleep(ACK_WAIT_MS * 1000);
    if (!trainer_alive(r, console_now())) {
        if (!r->o->quiet)
            console_log("exactly once: no trainer heartbeat yet; starting at epoch %u", first_epoch);
        return first_epoch;
    }
    until = console_now() + HAVE_WAIT_S;
    pthread_mutex_lock(&ctl->mu);
    while (!transport_stop && ctl->haves == 0 && console_now() < until) {
        pthread_mutex_unlock(&ctl->mu);
        usleep(ACK_WAIT_MS * 1000);
        pthread_mutex_lock(&ctl->mu);
    }
    uint32_t trainer_epoch = ctl->trainer_epoch;
    int got = ctl->haves > 0 && have_copy(&r->held, &ctl->have) == 0;
    ctl->n_check = 0;   /* nothing is open yet: every epoch would look closed */
    pthread_mutex_unlock(&ctl->mu);
    if (got) {
        /* the trainer knows best: an earlier epoch it has not completed comes first */
        first_epoch = r->held.epoch;
        uint64_t held = 0;
        for (uint32_t k = 0; k < r->held.n_epochs; k++)
            for (size_t i = 0; i < r->held.done_bytes[k]; i++)
                held += (uint64_t)__builtin_popcount(r->held.done[k][i]);
        console_log("exactly once: the trainer is in epoch %u and holds %" PRIu64 " Sample(s) of epochs %u to %u; "
                    "starting at epoch %u without them", r->held.epoch, held, r->held.epoch,
                    r->held.epoch + (r->held.n_epochs ? r->held.n_epochs - 1 : 0), first_epoch);
    } else {
        if (trainer_epoch > first_epoch)
            first_epoch = trainer_epoch;
        console_log("exactly once: the trainer is in epoch %u; starting at epoch %u", trainer_epoch, first_epoch);
    }
    return first_epoch;
}

/* ---------------------------------------------------------------- lifecycle */

/* What one run owns: loader_new sets it up, loader_run streams the epochs,
 * loader_destroy releases it whatever point the setup reached. */
typedef struct {
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
} loader_t;

static void loader_destroy(loader_t **self_p)
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
static loader_t *loader_new(const loader_options_t *o, int *status, char *err, size_t errlen)
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
    if (o->exactly_once && !(l->ctl.ledger = ledger_new(l->n_all, RESEND_MIN_S))) {
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
static int loader_run(loader_t *l)
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

int main(int argc, char **argv)
{
    loader_options_t o;
    char err[1024];
    console_init("loader");
    int rc = loader_options_parse(&o, argc, argv, err, sizeof err);
    if (rc)
        return cli_parse_exit(rc, "loader", loader_usage, err);
    loader_t *l = loader_new(&o, &rc, err, sizeof err);
    if (l) {
        rc = loader_run(l);
        loader_destroy(&l);
    } else if (err[0]) {
        fprintf(stderr, "loader: %s\n", err);
    }
    return rc;
}

/* loader/exactly_once: --exactly-once's side of the run (exactly_once.h). */
#include "loader/exactly_once.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "console/console.h"
#include "transport/transport.h"

#define RESEND_TICK_S      0.25      /* how often overdue Samples are looked for */
#define RESEND_BATCH       4096      /* Samples re-sent per look at most */
#define TRAINER_ALIVE_S    3.0       /* a heartbeat this recent: the trainer is alive */
#define HEARTBEAT_WAIT_S   3.0       /* at start, time to wait for the trainer's epoch */
#define HAVE_WAIT_S        1.5       /* then for its Have (sent with every heartbeat, once it knows an epoch) */
#define ACK_WAIT_MS        50        /* sleep while waiting for Acks */
#define TAKEOVER_HAVE_MAX_S 10.0     /* after another trainer spoke: longest wait for its Have before closing */

/* 1 when the trainer's heartbeat is recent: Samples it has not acknowledged
 * are then really missing, not waiting for it to come back. */
static int trainer_alive(run_t *r, double now)
{
    pthread_mutex_lock(&r->ctl->mu);
    double last = r->ctl->last_heartbeat;
    pthread_mutex_unlock(&r->ctl->mu);
    return last > 0 && now - last <= TRAINER_ALIVE_S;
}

/* 0 while the Acks of another trainer than the last one wait for its Have
 * (heard_trainer), up to TAKEOVER_HAVE_MAX_S (a consumer that sends none). */
static int trainer_settled(run_t *r, double now)
{
    pthread_mutex_lock(&r->ctl->mu);
    int settled = !r->ctl->unsettled || now - r->ctl->unsettled_at >= TAKEOVER_HAVE_MAX_S;
    pthread_mutex_unlock(&r->ctl->mu);
    return settled;
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
int exactly_once_tick(run_t *r, int force)
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
    while (trainer_settled(r, now) && ledger_close_next(r->ledger, &done, &count)) {
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
int wait_acknowledged(run_t *r, int all)
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
void before_send(run_t *r, uint32_t epoch, size_t item)
{
    if (r->ledger)
        ledger_sent(r->ledger, epoch, item, console_now());
}


/* --exactly-once at start: a trainer already running (this loader was
 * restarted) says with its heartbeat the epoch it is in, and with its Have
 * what it holds; the loader starts at that epoch and leaves those out.
 * Returns the first epoch. */
uint32_t join_trainer(run_t *r, uint32_t first_epoch)
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

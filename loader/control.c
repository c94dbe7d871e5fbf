/* loader/control: the control thread (control.h). */
#include "loader/control.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "transport/transport.h"

#define CONTROL_POLL_MS    100

void have_free(proto_have_t *h)
{
    for (uint32_t k = 0; k < PROTO_MAX_HAVE_EPOCHS; k++)
        free((void *)h->done[k]);
    memset(h, 0, sizeof *h);
}

/* *dst = src with its done sets copied (a decoded Have borrows them from
 * the message); -1 when out of memory. */
int have_copy(proto_have_t *dst, const proto_have_t *src)
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
    ctl->unsettled = 0;   /* every Ack before it has been looked at against what it holds */
    pthread_mutex_unlock(&ctl->mu);
}

/* A heartbeat, Ack or Have from sender. When another trainer than the last
 * one speaks (a resumed one, whose first heartbeat and Have may have gone
 * out before this loader was subscribed again; or a late message of the
 * dead one), the Acks so far may name Samples the trainer now training
 * does not hold: no epoch closes (and END_OF_STREAM waits) until one of its
 * Haves has been looked at, after them. */
static void heard_trainer(control_t *ctl, const char *sender, double now)
{
    if (ctl->speaker[0] && strcmp(ctl->speaker, sender) != 0) {
        pthread_mutex_lock(&ctl->mu);
        ctl->unsettled = 1;
        ctl->unsettled_at = now;
        pthread_mutex_unlock(&ctl->mu);
    }
    snprintf(ctl->speaker, sizeof ctl->speaker, "%s", sender);
}

/* Receives Control messages ([topic, body], or the deprecated body alone); a
 * STOP raises the process-wide stop flag, and the trainer's heartbeats are
 * watched (a silence of TRANSPORT_SILENT_S is logged, and its end). With
 * --exactly-once, heartbeats, Acks and Haves are recorded too. Sends this
 * loader's beat up the same socket every TRANSPORT_BEAT_S. */
void *control_thread(void *arg)
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
                heard_trainer(ctl, c.sender, now);
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
            if (proto_ack_decode(&a, data, len, NULL, 0) == 0) {
                heard_trainer(ctl, a.sender, console_now());
                ledger_ack(ctl->ledger, a.epoch, a.indices, a.n_indices, console_now());
            }
            proto_ack_clear(&a);
        } else if (type == PROTO_MSG_HAVE && ctl->ledger) {
            proto_have_t h;
            if (proto_have_decode(&h, data, len, NULL, 0) == 0) {
                heard_trainer(ctl, h.sender, console_now());
                on_have(ctl, &h);
            }
        }
        zmq_msg_close(&msg);
    }
    /* leaving normally: the trainer forgets this loader without calling it silent */
    transport_beat(ctl->sub, ctl->identity, PROTO_CONTROL_END_OF_STREAM);
    liveness_destroy(&trainer_beats);
    return NULL;
}

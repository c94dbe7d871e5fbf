/* trainer/control: HEARTBEAT, Have, Stats, Acks and STOP on the Control XPUB;
 * the other stages' beats heard on it. */
#include "trainer/control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "transport/transport.h"

#define STOP_REPEATS     5      /* STOP is published this many times ... */
#define STOP_INTERVAL_MS 100    /* ... this far apart */
#define DUP_ACK_CHUNK    4096   /* dropped copies taken from the feed at a time */

struct control {
    void *pub;              /* XPUB, to hear the beats of the loader and augmenters */
    liveness_t *peers;      /* whose beats stopped */
    char sender[PROTO_MAX_NAME];
};

control_t *control_new(const char *endpoint, const char *sender)
{
    control_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->sender, sizeof c->sender, "%s", sender);
    if (!(c->pub = transport_open_peer(ZMQ_XPUB, TRANSPORT_BIND, endpoint, 0, "control subscribers")) ||
        !(c->peers = liveness_new(TRANSPORT_SILENT_S, TRANSPORT_FORGET_S, 0)))
        control_destroy(&c);
    return c;
}

void control_destroy(control_t **self_p)
{
    control_t *c = *self_p;
    if (!c)
        return;
    transport_close(&c->pub);
    liveness_destroy(&c->peers);
    free(c);
    *self_p = NULL;
}

void control_hear(control_t *c, double now)
{
    if (!c)
        return;
    transport_hear_beats(c->pub, c->peers, now);
    liveness_check(c->peers, now);
}

/* Publishes [topic, body], without ever waiting. */
static void publish(control_t *c, const char *topic, const proto_buf_t *b)
{
    if (topic && b->len)
        transport_publish(c->pub, topic, b->data, b->len);
}

void control_publish(control_t *c, proto_control_kind_t kind, uint32_t epoch, long step)
{
    if (!c)
        return;
    proto_control_t m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    snprintf(m.sender, sizeof m.sender, "%s", c->sender);
    m.epoch = epoch;
    m.count = (uint64_t)step;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_control_encode(&b, &m, NULL, 0) == 0)
        publish(c, proto_control_topic(kind), &b);
    proto_buf_release(&b);
}

void control_stop(control_t *c, uint32_t epoch, long step)
{
    if (!c)
        return;
    for (int i = 0; i < STOP_REPEATS; i++) {
        control_publish(c, PROTO_CONTROL_STOP, epoch, step);
        usleep(STOP_INTERVAL_MS * 1000);
    }
}

void control_publish_have(control_t *c, feed_t *feed, long step)
{
    proto_have_t h;
    if (!c || feed_have(feed, &h) <= 0)
        return;
    snprintf(h.sender, sizeof h.sender, "%s", c->sender);
    h.step = (uint64_t)step;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_have_encode(&b, &h, NULL, 0) == 0)
        publish(c, PROTO_TOPIC_HAVE, &b);
    proto_buf_release(&b);
    feed_have_release(&h);
}

void control_publish_stats(control_t *c, proto_stat_t *stats, size_t n)
{
    if (!c)
        return;
    proto_stats_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.sender, sizeof s.sender, "%s", c->sender);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s.time = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    s.n_stats = n;
    s.stats = stats;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_stats_encode(&b, &s, NULL, 0) == 0)
        publish(c, PROTO_TOPIC_STATS, &b);
    proto_buf_release(&b);
}

void control_publish_acks(control_t *c, const uint32_t *epoch, const uint64_t *index, size_t n)
{
    if (!c || n == 0)
        return;
    uint64_t *sel = malloc(n * sizeof *sel);
    uint8_t *taken = calloc(n, 1);
    proto_buf_t b;
    proto_buf_init(&b);
    for (size_t i = 0; sel && taken && i < n; i++) {
        if (taken[i])
            continue;
        proto_ack_t a;
        memset(&a, 0, sizeof a);
        snprintf(a.sender, sizeof a.sender, "%s", c->sender);
        a.epoch = epoch[i];
        a.indices = sel;
        for (size_t j = i; j < n; j++) {
            if (taken[j] || epoch[j] != a.epoch)
                continue;
            taken[j] = 1;
            sel[a.n_indices++] = index[j];
            if (a.n_indices == PROTO_MAX_ACK_INDICES) {
                if (proto_ack_encode(&b, &a, NULL, 0) == 0)
                    publish(c, PROTO_TOPIC_ACK, &b);
                a.n_indices = 0;
            }
        }
        if (a.n_indices && proto_ack_encode(&b, &a, NULL, 0) == 0)
            publish(c, PROTO_TOPIC_ACK, &b);
    }
    proto_buf_release(&b);
    free(sel);
    free(taken);
}

void control_ack_duplicates(control_t *c, feed_t *feed)
{
    static uint32_t epoch[DUP_ACK_CHUNK];
    static uint64_t index[DUP_ACK_CHUNK];
    size_t n;
    while ((n = feed_take_duplicates(feed, epoch, index, DUP_ACK_CHUNK)) > 0)
        control_publish_acks(c, epoch, index, n);
}

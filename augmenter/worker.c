/* augmenter/worker: a worker process (worker.h). */
#include "augmenter/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment/augment.h"
#include "console/console.h"
#include "transport/transport.h"

#define FLUSH_MS          100     /* a partial batch waits at most this long for more */
#define DRAIN_IDLE_MS     500     /* after end of stream: quiet this long means drained */
#define MAX_WARNINGS      10      /* malformed-message warnings printed per worker */

atomic_int drain_requested = 0;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler sets drain_requested");

void on_drain_signal(int sig)
{
    (void)sig;
    atomic_store(&drain_requested, 1);
}

typedef struct {
    const augmenter_options_t *o;
    int id;
    const char *identity;
    void *pull, *push, *sub;  /* sub: an XSUB, which also carries this worker's beats up */
    liveness_t *trainer;      /* the trainer's heartbeats (worker 0 only, else NULL) */
    double next_beat;         /* console_now() of the next beat up the control socket */
    aug_t *aug;
    aug_batch_t batch;
    proto_view_sample_t *vs;  /* (batch) */
    proto_buf_t buf;
    int stopped;              /* STOP received or signal */
    int report_fd;            /* the parent's pipe */
    uint64_t samples, batches, malformed;
    uint64_t reported[3];     /* samples, batches, malformed in earlier COUNTS */
} worker_t;

static double now_ms(void)
{
    return console_now() * 1e3;
}

/* Marks the worker stopped and tells the parent: a STOP ends the whole run. */
static void report_stop(worker_t *w)
{
    w->stopped = 1;
    report_t r = {.kind = REPORT_STOP};
    if (write(w->report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        console_log("worker %d: cannot tell the parent about the stop: %s", w->id, strerror(errno));
}

/* Reads the pending messages of the control socket: 1 when one is a STOP.
 * Heartbeats go to the trainer's liveness (worker 0). */
static int stop_received(worker_t *w)
{
    if (!w->sub) return 0;
    for (;;) {
        zmq_msg_t msg;
        char topic[PROTO_MAX_TOPIC + 1];
        if (transport_recv_topic(w->sub, &msg, topic, 0) != 1) return 0;
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        proto_control_t c;
        int ok = proto_control_decode(&c, data, len, NULL, 0) == 0 &&
                 (!topic[0] || proto_topic_check(topic, strlen(topic), data, len, NULL, 0) == 0);
        zmq_msg_close(&msg);
        if (ok && c.kind == PROTO_CONTROL_HEARTBEAT && w->trainer)
            liveness_beat(w->trainer, c.sender, console_now());
        if (ok && c.kind == PROTO_CONTROL_STOP) {
            if (!w->o->quiet) console_log("worker %d: stop from %s", w->id, c.sender);
            report_stop(w);
            return 1;
        }
    }
}

/* Once every TRANSPORT_BEAT_S: a beat up the control socket, and a look at
 * the trainer's heartbeats. */
static void beat(worker_t *w)
{
    double now = console_now();
    if (!w->sub || now < w->next_beat) return;
    transport_beat(w->sub, w->identity, PROTO_CONTROL_HEARTBEAT);
    if (w->trainer) liveness_check(w->trainer, now);
    w->next_beat = now + TRANSPORT_BEAT_S;
}

static void free_owned_buf(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends the encoded buffer (handed to ZeroMQ, no copy); while the trainer is at its high-water mark, keeps
 * watching for STOP and signals. Returns 0, or -1 when stopped or on error. */
static int send_buf(worker_t *w)
{
    size_t len;
    uint8_t *data = proto_buf_detach(&w->buf, &len);
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, data, len, free_owned_buf, NULL)) {
        free(data);
        return -1;
    }
    for (;;) {
        if (zmq_msg_send(&msg, w->push, ZMQ_DONTWAIT) >= 0) return 0;
        if (errno != EAGAIN && errno != EINTR) break;
        zmq_pollitem_t items[2] = {{w->push, 0, ZMQ_POLLOUT, 0}, {w->sub, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, w->sub ? 2 : 1, POLL_MS);
        beat(w);
        if (transport_stop || stop_received(w)) break;
    }
    zmq_msg_close(&msg);
    return -1;
}

/* Tells the parent what this worker did since its last report. */
static void report_counts(worker_t *w)
{
    report_t r = {.kind = REPORT_COUNTS, .samples = w->samples - w->reported[0],
                  .batches = w->batches - w->reported[1], .malformed = w->malformed - w->reported[2]};
    if (write(w->report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) return;   /* pipe full, or the parent gone */
    w->reported[0] = w->samples;
    w->reported[1] = w->batches;
    w->reported[2] = w->malformed;
}

static int send_batch(worker_t *w)
{
    aug_batch_t *b = &w->batch;
    if (b->n == 0) return 0;
    const aug_config_t *cfg = &w->o->cfg;
    for (uint32_t i = 0; i < b->n; i++) {
        proto_view_sample_t *s = &w->vs[i];
        s->index = b->index[i];
        s->epoch = b->epoch[i];
        s->label = b->label[i];
        for (uint32_t k = 0; k < PROTO_MAX_VIEWS; k++)
            s->target[k] = k < b->views ? b->target[(size_t)i * b->views + k] : -1;
        s->data = b->data + (size_t)i * b->sample_bytes;
    }
    proto_viewbatch_t vb = {
        .dtype = cfg->dtype == AUG_DTYPE_U8 ? PROTO_DTYPE_U8 : PROTO_DTYPE_F32,
        .views = b->views, .channels = cfg->channels, .height = cfg->size, .width = cfg->size,
        .n_samples = b->n, .samples = w->vs, .target_classes = aug_target_classes(w->aug),
    };
    char perr[PROTO_ERR_MAX];
    if (proto_viewbatch_encode(&w->buf, &vb, perr, sizeof perr)) {
        console_log("worker %d: cannot encode a ViewBatch: %s", w->id, perr);
        return -1;
    }
    aug_batch_reset(b);
    if (send_buf(w)) return -1;
    w->batches++;
    report_counts(w);
    return 0;
}

int encode_control(proto_buf_t *buf, proto_control_kind_t kind, const char *identity,
                          uint32_t epoch, uint64_t count)
{
    proto_control_t c = {.kind = kind, .epoch = epoch, .count = count};
    snprintf(c.sender, sizeof(c.sender), "%s", identity);
    char perr[PROTO_ERR_MAX];
    if (proto_control_encode(buf, &c, perr, sizeof perr)) {
        console_log("cannot encode a Control message: %s", perr);
        return -1;
    }
    return 0;
}

static void warn_malformed(worker_t *w, const char *what)
{
    w->malformed++;
    if (w->malformed <= MAX_WARNINGS)
        console_log("worker %d: dropped a malformed message (%s)%s", w->id, what,
                    w->malformed == MAX_WARNINGS ? "; further ones are only counted" : "");
}

/* One message from the loader. Returns 1 at end of stream, -1 to stop, 0 otherwise. */
static int handle_message(worker_t *w, const void *data, size_t len)
{
    proto_msg_type_t type;
    char perr[PROTO_ERR_MAX];
    if (proto_peek_type(data, len, &type, perr, sizeof perr)) {
        warn_malformed(w, perr);
        return 0;
    }
    if (type == PROTO_MSG_SAMPLE) {
        proto_sample_t s;
        if (proto_sample_decode(&s, data, len, perr, sizeof perr)) {
            warn_malformed(w, perr);
            return 0;
        }
        aug_image_t im = {s.pixels, s.height, s.width, s.channels, s.index, s.epoch};
        char err[AUG_ERR_MAX];
        if (aug_batch_add(&w->batch, w->aug, &im, s.label, err, sizeof err)) {
            warn_malformed(w, err);
            return 0;
        }
        w->samples++;
        if (aug_batch_full(&w->batch) && send_batch(w)) return -1;
        return 0;
    }
    if (type != PROTO_MSG_CONTROL) {
        warn_malformed(w, proto_msg_type_name(type));
        return 0;
    }
    proto_control_t c;
    if (proto_control_decode(&c, data, len, perr, sizeof perr)) {
        warn_malformed(w, perr);
        return 0;
    }
    switch (c.kind) {
    case PROTO_CONTROL_STOP:
        report_stop(w);
        return -1;
    case PROTO_CONTROL_END_OF_EPOCH:
        /* Forwarded like a batch: a trainer that is gone must not keep this
         * worker from hearing its STOP. */
        if (send_batch(w) ||
            encode_control(&w->buf, PROTO_CONTROL_END_OF_EPOCH, w->identity, c.epoch, c.count) ||
            send_buf(w))
            return -1;
        return 0;
    case PROTO_CONTROL_END_OF_STREAM: {
        if (send_batch(w)) return -1;
        report_t r = {.kind = REPORT_END_OF_STREAM, .epoch = c.epoch, .samples = c.count};
        if (write(w->report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
            console_log("worker %d: cannot tell the parent about the end of stream: %s", w->id,
                        strerror(errno));
        return 1;
    }
    default:
        return 0;
    }
}

int worker_run(const augmenter_options_t *o, int id, int report_fd)
{
    worker_t w = {.o = o, .id = id, .report_fd = report_fd};
    char name[32];
    snprintf(name, sizeof(name), "augmenter-%d", id);
    console_init("augmenter");
    w.identity = transport_identity(name);
    proto_buf_init(&w.buf);
    int rc = 1;
    char err[AUG_ERR_MAX] = "out of memory";
    w.aug = aug_new(&o->recipe, &o->cfg, err, sizeof err);
    if (!w.aug || aug_batch_init(&w.batch, w.aug, o->batch, err, sizeof err) ||
        !(w.vs = calloc(o->batch, sizeof(*w.vs)))) {
        console_log("worker %d: %s", id, err);
        goto done;
    }
    w.pull = transport_open_peer(ZMQ_PULL, TRANSPORT_CONNECT, o->connect, o->pull_hwm, "loader");
    w.push = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, o->push, o->push_hwm, "trainer");
    if (o->control)
        w.sub = transport_open_peer(ZMQ_XSUB, TRANSPORT_CONNECT, o->control, 0, "trainer control");
    if (!w.pull || !w.push || (o->control && (!w.sub || transport_subscribe_stop(w.sub))))
        goto done;
    /* one worker is enough to say that the trainer went quiet */
    if (w.sub && id == 0 &&
        (transport_subscribe(w.sub, PROTO_TOPIC_HEARTBEAT, strlen(PROTO_TOPIC_HEARTBEAT), 1) ||
         !(w.trainer = liveness_new(TRANSPORT_SILENT_S, 0, 1))))
        goto done;

    double last_input = now_ms(), drain_since = -1.0;
    int eos = 0;
    rc = 0;
    while (!transport_stop && !w.stopped) {
        beat(&w);
        if (atomic_load(&drain_requested) && drain_since < 0) drain_since = now_ms();
        zmq_pollitem_t items[2] = {{w.pull, 0, ZMQ_POLLIN, 0}, {w.sub, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, w.sub ? 2 : 1, POLL_MS);
        if (n < 0) {
            if (errno == EINTR) continue;
            console_log("worker %d: poll: %s", id, zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (w.sub && (items[1].revents & ZMQ_POLLIN) && stop_received(&w)) break;
        if (items[0].revents & ZMQ_POLLIN) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, w.pull, ZMQ_DONTWAIT) >= 0) {
                last_input = now_ms();
                int h = handle_message(&w, zmq_msg_data(&msg), zmq_msg_size(&msg));
                zmq_msg_close(&msg);
                if (h < 0) break;
                if (h > 0 && drain_since < 0) {
                    eos = 1;
                    drain_since = now_ms();
                }
            } else {
                zmq_msg_close(&msg);
            }
            continue;
        }
        /* quiet: send a partial batch, and after end of stream, leave once drained */
        double t = now_ms();
        if (w.batch.n > 0 && t - last_input >= FLUSH_MS && send_batch(&w)) break;
        if (drain_since >= 0 && t - last_input >= DRAIN_IDLE_MS && t - drain_since >= DRAIN_IDLE_MS) break;
    }
    if (!transport_stop && !w.stopped) send_batch(&w);
    if (!o->quiet)
        console_log("worker %d: %" PRIu64 " samples, %" PRIu64 " views in %" PRIu64 " batches, %" PRIu64
                    " malformed dropped%s", id, w.samples, w.samples * o->recipe.views, w.batches,
                    w.malformed, eos ? "; saw the end of stream" : "");
done:
    report_counts(&w);
    /* leaving normally: the trainer forgets this worker without calling it silent */
    if (w.sub) transport_beat(w.sub, w.identity, PROTO_CONTROL_END_OF_STREAM);
    transport_close(&w.sub);
    liveness_destroy(&w.trainer);
    transport_close(&w.pull);
    transport_close(&w.push);
    transport_shutdown();
    proto_buf_release(&w.buf);
    aug_batch_release(&w.batch);
    free(w.vs);
    aug_destroy(&w.aug);
    return rc;
}

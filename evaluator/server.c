/* evaluator/server: the server loop (server.h). */
#include "evaluator/server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "console/console.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define RECV_SLICE_MS 200          /* the loop wakes this often while idle */
#define RECV_SETTLE_MS 50          /* after a message, wait this long for the rest of a burst */
#define PULL_HWM      1024       /* Checkpoints are small; a full queue would throttle the socket, and
                                      libzmq 4.3.4 aborts (!_io_error, stream_engine_base.cpp) when
                                      the trainer disconnects while it is throttled (a stopped evaluator,
                                      tests/it_evaluator_down.sh) */
#define STOP_GRACE_S  2.0          /* after STOP, wait this long for a Checkpoint sent just before it */

typedef struct {
    uint64_t step;
    uint32_t epoch;
    uint64_t seq;                  /* arrival order */
    char path[PROTO_MAX_TEXT + 64];
    int temporary;                 /* written from the message's bytes: delete after use */
} pending_t;

struct eval_server {
    const eval_options *o;
    eval_ctx *ctx;
    pending_t *pending;
    int n_pending;
    uint64_t seq;
    int stop_requested;
    double stop_time;              /* console_now() when STOP came */
    uint64_t max_step;             /* the newest step received */
    uint64_t current_step;         /* of the checkpoint being evaluated */
    void *pull, *sub;              /* the sockets, while serving */
    long evaluated, failed;
};

static void drop_pending(eval_server_t *s, int i, const char *why)
{
    pending_t *p = &s->pending[i];
    if (why)
        console_log("checkpoint step %" PRIu64 " (%s) skipped: %s", p->step, p->path, why);
    if (p->temporary)
        unlink(p->path);
    s->pending[i] = s->pending[--s->n_pending];
}

/* Writes the bytes of a Checkpoint message to a file of the output folder. */
static int save_bytes(eval_server_t *s, const proto_checkpoint_t *c, char *path, size_t len)
{
    snprintf(path, len, "%s/.incoming-%08" PRIu64 "-%" PRIu64 ".safetensors", s->o->out, c->step, s->seq);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(c->bytes, 1, c->n_bytes, f) != c->n_bytes || fclose(f)) {
        console_log("cannot write the checkpoint bytes of step %" PRIu64 " to %s: %s", c->step, path,
                    strerror(errno));
        if (f)
            unlink(path);
        return -1;
    }
    return 0;
}

/* Handles one message of the PULL socket, or of the SUB socket (from_control:
 * only Control STOP matters there; heartbeats and Stats pass silently). */
static void handle_message(eval_server_t *s, zmq_msg_t *msg, int from_control)
{
    const void *data = zmq_msg_data(msg);
    size_t len = zmq_msg_size(msg);
    proto_msg_type_t type;
    char perr[PROTO_ERR_MAX];
    if (proto_peek_type(data, len, &type, perr, sizeof perr)) {
        if (!from_control)
            console_log("ignoring a message of %zu bytes: %s", len, perr);
        return;
    }
    if (type == PROTO_MSG_CONTROL) {
        proto_control_t c;
        if (proto_control_decode(&c, data, len, NULL, 0) == 0 && c.kind == PROTO_CONTROL_STOP && !s->stop_requested) {
            if (s->o->after_stop_all)
                console_log("STOP from %s: evaluating the %d waiting checkpoint%s, then exiting", c.sender,
                            s->n_pending, s->n_pending == 1 ? "" : "s");
            else
                console_log("STOP from %s: evaluating the final checkpoint, then exiting", c.sender);
            s->stop_requested = 1;
            s->stop_time = console_now();
        }
        return;
    }
    if (from_control)
        return;
    if (type != PROTO_MSG_CHECKPOINT) {
        console_log("ignoring a %s message (this socket takes Checkpoint messages)", proto_msg_type_name(type));
        return;
    }
    proto_checkpoint_t c;
    if (proto_checkpoint_decode(&c, data, len, perr, sizeof perr)) {
        console_log("ignoring a bad Checkpoint message: %s", perr);
        return;
    }
    pending_t p;
    memset(&p, 0, sizeof p);
    p.step = c.step;
    if (c.step > s->max_step)
        s->max_step = c.step;
    p.epoch = c.epoch;
    p.seq = s->seq++;
    if (c.path[0])
        snprintf(p.path, sizeof p.path, "%s", c.path);
    else if (save_bytes(s, &c, p.path, sizeof p.path))
        return;
    else
        p.temporary = 1;
    for (int i = 0; i < s->n_pending; i++)
        if (!strcmp(s->pending[i].path, p.path) && s->pending[i].step == p.step) {
            console_log("checkpoint step %" PRIu64 " (%s) is already waiting", p.step, p.path);
            return;
        }
    console_log("checkpoint step %" PRIu64 " epoch %" PRIu32 " (%s, %s) received", p.step, p.epoch, c.method,
                p.temporary ? "sent as bytes" : p.path);
    s->pending[s->n_pending++] = p;
    if (s->n_pending > s->o->max_pending) {
        int oldest = 0;
        for (int i = 1; i < s->n_pending; i++)
            if (s->pending[i].step < s->pending[oldest].step ||
                (s->pending[i].step == s->pending[oldest].step && s->pending[i].seq < s->pending[oldest].seq))
                oldest = i;
        drop_pending(s, oldest, "more than --max-pending checkpoints waiting; the oldest goes");
    }
}

static int newest_pending(const eval_server_t *s)
{
    int best = -1;
    for (int i = 0; i < s->n_pending; i++)
        if (best < 0 || s->pending[i].step > s->pending[best].step ||
            (s->pending[i].step == s->pending[best].step && s->pending[i].seq > s->pending[best].seq))
            best = i;
    return best;
}

/* Receives what is there (waiting up to timeout_ms for the first message).
 * After each message it waits RECV_SETTLE_MS for another: when a stopped or
 * busy evaluator resumes, the checkpoints queued meanwhile arrive over a few
 * milliseconds, and the newest must be among those received before one is
 * picked. */
static void receive(eval_server_t *s, void *pull, void *sub, int timeout_ms)
{
    zmq_msg_t msg;
    for (int wait = timeout_ms;; wait = RECV_SETTLE_MS) {
        int r = transport_recv(pull, &msg, wait);
        if (r == 1) {
            handle_message(s, &msg, 0);
            zmq_msg_close(&msg);
            continue;
        }
        break;
    }
    char topic[PROTO_MAX_TOPIC + 1];   /* "stop", or "" (the deprecated single-frame form) */
    while (sub && transport_recv_topic(sub, &msg, topic, 0) == 1) {
        handle_message(s, &msg, 1);
        zmq_msg_close(&msg);
    }
}

/* eval_final_fn of the server: takes in what has arrived meanwhile (the
 * trainer publishes STOP just after pushing its last checkpoint); the
 * checkpoint is the last one when STOP has come and nothing newer. */
static int is_final(void *arg)
{
    eval_server_t *s = arg;
    receive(s, s->pull, s->sub, 0);
    if (s->stop_requested && s->sub)
        transport_close(&s->sub);
    return s->stop_requested && s->current_step >= s->max_step;
}

int eval_server_run(eval_server_t *s)
{
    char err[1024];
    if (eval_mkdir_p(s->o->out, err, sizeof err)) {
        console_log("%s", err);
        return CLI_EXIT_FAILED;
    }
    s->pull = transport_open_peer(ZMQ_PULL, TRANSPORT_BIND, s->o->bind, PULL_HWM, "trainer");
    if (!s->pull)
        return CLI_EXIT_FAILED;
    s->sub = NULL;
    if (s->o->control &&
        (!(s->sub = transport_open_peer(ZMQ_SUB, TRANSPORT_CONNECT, s->o->control, 0, "trainer control")) ||
         transport_subscribe_stop(s->sub))) {
        transport_close(&s->sub);
        transport_close(&s->pull);
        return CLI_EXIT_FAILED;
    }
    eval_ctx_set_final_check(s->ctx, is_final, s);
    console_log("listening on %s for checkpoints%s%s; results in %s/%s", s->o->bind,
                s->sub ? ", control on " : "", s->sub ? s->o->control : "", s->o->out, EVAL_JSONL);
    /* the raw-pixel baseline needs only the data: under way before the first checkpoint */
    if (eval_ctx_start_baselines(s->ctx, err, sizeof err))
        console_log("baselines not started ahead: %s; they come with the first checkpoint", err);
    while (!transport_stop) {
        receive(s, s->pull, s->sub, s->n_pending ? 0 : RECV_SLICE_MS);
        if (s->stop_requested && s->sub)
            transport_close(&s->sub);   /* the trainer is leaving: its going is no loss to report */
        if (s->stop_requested && !s->o->after_stop_all)   /* the trainer's last one is the newest */
            for (int j = s->n_pending - 1; j >= 0; j--)
                if (s->pending[j].step < s->max_step)
                    drop_pending(s, j, "the trainer stopped and this is not its last checkpoint "
                                       "(--after-stop all evaluates every one)");
        int i = newest_pending(s);
        if (i < 0) {
            /* the trainer pushes its last Checkpoint just before STOP, on another socket */
            if (s->stop_requested && console_now() - s->stop_time >= STOP_GRACE_S)
                break;
            continue;
        }
        pending_t p = s->pending[i];
        s->pending[i] = s->pending[--s->n_pending];
        if (s->n_pending)
            console_log("%d older checkpoint%s waiting", s->n_pending, s->n_pending == 1 ? "" : "s");
        char eerr[2048];
        s->current_step = p.step;
        if (eval_checkpoint(s->ctx, p.path, NULL, eerr, sizeof eerr)) {
            if (transport_stop)
                console_log("stopped during the evaluation of step %" PRIu64, p.step);
            else
                console_log("checkpoint step %" PRIu64 " not evaluated: %s; still serving", p.step, eerr);
            s->failed++;
        } else
            s->evaluated++;
        if (p.temporary)
            unlink(p.path);
    }
    while (s->n_pending)
        drop_pending(s, 0, NULL);
    console_log("%ld checkpoint%s evaluated, %ld failed", s->evaluated, s->evaluated == 1 ? "" : "s", s->failed);
    eval_ctx_set_final_check(s->ctx, NULL, NULL);
    transport_close(&s->sub);
    transport_close(&s->pull);
    transport_shutdown();
    return CLI_EXIT_OK;
}

eval_server_t *eval_server_new(const eval_options *o, eval_ctx *ctx)
{
    eval_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = o;
    s->ctx = ctx;
    s->pending = calloc((size_t)o->max_pending + 1, sizeof *s->pending);
    if (!s->pending)
        eval_server_destroy(&s);
    return s;
}

void eval_server_destroy(eval_server_t **self_p)
{
    eval_server_t *s = *self_p;
    if (!s)
        return;
    free(s->pending);
    free(s);
    *self_p = NULL;
}

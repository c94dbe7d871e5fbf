/* trainer: trains an encoder with SimCLR or RotNet (or supervised, on the
 * samples' labels) on the views the augmenters send, checkpoints it, and
 * tells the evaluator.
 *
 * Sockets:
 *   PULL  bind     tcp://127.0.0.1:5556  (--bind)       ViewBatches, and the loader's Control
 *                                                       (END_OF_EPOCH, END_OF_STREAM) forwarded
 *                                                       by the augmenters; read by the receive
 *                                                       thread (trainer/feed.c)
 *   XPUB  bind     tcp://127.0.0.1:5558  (--control)    Control HEARTBEAT every second (its epoch:
 *                                                       the epoch training is in) with a Have (the
 *                                                       samples of the current epochs the model
 *                                                       holds), STOP at the end, the trainer's
 *                                                       Stats, and an Ack after each step naming
 *                                                       the samples it trained, to the loader and
 *                                                       the augmenters; each as [topic, body]
 *                                                       (proto.h PROTO_TOPIC_*). Up the same
 *                                                       socket come their beats (once a second):
 *                                                       one silent for 3 s is logged as stopped
 *                                                       or hung, and again when it is back
 *   PUSH  connect  tcp://127.0.0.1:5557  (--evaluator)  a Checkpoint message after each save;
 *                                                       conflated and non-blocking, so a slow or
 *                                                       absent evaluator never holds training up
 *                                                       (newest wins; the file is on disk anyway)
 * With --curve DIR every socket is CURVE-encrypted and the bound ones accept
 * only the client keys in DIR/allowed/ (transport/transport.h).
 *
 * The receive thread assembles the next batches while this thread computes;
 * the time this thread blocks waiting for one is the "data wait".
 *
 * Exactly once per epoch: the receive thread drops a sample whose (epoch,
 * index) it already took (trainer/epochs.h); this thread acknowledges every
 * trained sample, and every dropped copy of a trained one, with Ack
 * messages, so that a loader run with --exactly-once re-sends only what
 * never arrived (a killed augmenter's samples). Checkpoints keep which
 * samples of the recent epochs the model holds; with every heartbeat a Have
 * message tells the loader that set, so that what a killed trainer
 * acknowledged after its last checkpoint is sent again to the trainer
 * resumed from it. metrics.jsonl gets one record per epoch
 * ({"record": "epoch", "distinct": ..., "duplicates": ...}) once the epoch is
 * complete, and for the epochs still open at the end of the run.
 * The run folder (--out) is described in trainer/rundir.h.
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "console/console.h"
#include "nn/blas.h"
#include "nn/ckpt.h"
#include "nn/net.h"
#include "proto/proto.h"
#include "splitmix/splitmix.h"
#include "transport/transport.h"
#include "trainer/batch.h"
#include "trainer/feed.h"
#include "trainer/model.h"
#include "trainer/options.h"
#include "trainer/rundir.h"

#define EXIT_OK       0
#define EXIT_RUNTIME  1
#define EXIT_USAGE    2

#define TAKE_SLICE_MS      200    /* the main loop wakes this often while it waits */
#define HEARTBEAT_S        1.0    /* Control HEARTBEAT and Stats period */
#define EOS_IDLE_S         1.0    /* after END_OF_STREAM, this long without data ends the run */
#define WAIT_LOG_S         10.0   /* "waiting for data" reminder period */
#define DROP_LOG_S         5.0    /* dropped-message log period */
#define STOP_REPEATS       5      /* STOP is published this many times ... */
#define STOP_INTERVAL_MS   100    /* ... this far apart: PUB/SUB may lose the first ones */
#define EVALUATOR_LINGER_MS 500   /* how long closing waits to deliver the last Checkpoint */
#define SUMMARY_UNKNOWN    (-1.0)
#define ACC_WINDOW         20     /* the summary's train accuracy: mean over this many last steps */
#define HEAD_NAME_MAX      32

typedef struct {
    trainer_options_t o;
    const char *stage_id;

    /* network */
    int preset;                     /* arch is a preset name: desc built from the first batch */
    char desc[NN_MAX_DESC];         /* known up front for a file or a resumed checkpoint */
    int have_desc;
    batch_shape_t shape;
    model_t *model;

    /* resuming */
    char resume_path[RUNDIR_MAX_PATH];
    int resuming, have_state, resume_optimizer;
    train_state_t rs;
    epochs_t restored;              /* what the resumed checkpoint's model holds (rs.epoch_sets) */
    int have_restored;

    /* sockets and data */
    void *pub, *eval;               /* pub: an XPUB, to hear the beats of the loader and augmenters */
    liveness_t *peers;              /* whose beats stopped (NULL without a control socket) */
    feed_t *feed;
    FILE *metrics;

    /* progress of the run */
    long step, total_steps, warmup_steps, last_ckpt_step;
    uint64_t images_seen, dataset_size, rng;
    uint32_t last_batch_epoch;
    double train_seconds_before;    /* training time of the runs this one resumes */
    double run_start;               /* console_now() when this process trained its first step */
    double sum_wait, sum_period;    /* since the first step of this process */
    long timed_steps;
    float last_loss;
    char last_ckpt[RUNDIR_MAX_PATH];
    progress_t progress;
    double next_heartbeat, last_drop_log, last_wait_log;
    uint64_t drops_logged;
    double last_skip_log;
    uint64_t skips_logged;
    float acc_ring[ACC_WINDOW];     /* batch train accuracy of the last steps (rotnet, supervised) */
    int acc_count, acc_next;
} trainer_t;

static int is_preset(const char *arch)
{
    return strcmp(arch, "resnet-mini") == 0 || strcmp(arch, "conv4") == 0;
}

/* The preset head for the method: "simclr", "rotation" or "classifier:N". */
static const char *head_of(const trainer_options_t *o, char *buf, size_t len)
{
    switch (o->method) {
    case TRAIN_ROTNET: return "rotation";
    case TRAIN_SUPERVISED:
        snprintf(buf, len, "%s:%u", NN_HEAD_CLASSIFIER, o->classes);
        return buf;
    default: return "simclr";
    }
}

static int read_text_file(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--arch %s: not a preset (resnet-mini, conv4) and not a readable file", path);
        return -1;
    }
    size_t n = fread(buf, 1, len - 1, f);
    int too_long = n == len - 1 && fgetc(f) != EOF;
    fclose(f);
    if (too_long) {
        snprintf(err, errlen, "--arch %s: longer than %zu bytes", path, len - 1);
        return -1;
    }
    buf[n] = '\0';
    return 0;
}

/* ---- resuming ---- */

/* Training options that must match the resumed run. */
static int check_same(const char *what, int given, int equal, const char *run_value)
{
    if (given && !equal) {
        console_log("%s differs from the resumed run's (%s); resume with the same value or "
                    "start a new run in another --out folder", what, run_value);
        return -1;
    }
    return 0;
}

static void warn_kept(const char *what, int given, double mine, double run)
{
    if (given && fabs(mine - run) > 1e-12 * fmax(1.0, fabs(run)))
        console_log("%s %g ignored: the resumed run keeps its %g", what, mine, run);
}

/* Takes the run's settings from its state file; -1 on a conflicting option. */
static int apply_state(trainer_t *t)
{
    trainer_options_t *o = &t->o;
    train_state_t *s = &t->rs;
    train_method_t m;
    nn_opt_kind k;
    char num[32];
    if (trainer_method_parse(s->method, &m) || nn_optim_kind_parse(s->optimizer, &k)) {
        console_log("%s: unknown method '%s' or optimizer '%s' in the state file", t->resume_path,
                    s->method, s->optimizer);
        return -1;
    }
    snprintf(num, sizeof num, "%u", s->batch);
    if (check_same("--method", o->set_method, o->method == m, s->method) ||
        check_same("--optimizer", o->set_optimizer, o->optimizer == k, s->optimizer) ||
        check_same("--batch", o->set_batch, o->batch == s->batch, num) ||
        check_same("--arch", o->set_arch, strcmp(o->arch, s->arch) == 0, s->arch))
        return -1;
    snprintf(num, sizeof num, "%d", s->width);
    if (check_same("--width", o->set_width && is_preset(s->arch), o->width == s->width, num))
        return -1;
    warn_kept("--lr", o->set_lr, o->lr, s->lr);
    warn_kept("--weight-decay", o->set_wd, o->weight_decay, s->weight_decay);
    warn_kept("--momentum", o->set_momentum, o->momentum, s->momentum);
    warn_kept("--tau", o->set_tau, o->tau, s->tau);
    if (o->set_warmup)
        console_log("--warmup ignored: the resumed run keeps its %ld steps", s->warmup_steps);
    o->method = m;
    o->arch = s->arch;
    o->optimizer = k;
    o->batch = s->batch;
    o->width = s->width;
    o->lr = s->lr;
    o->weight_decay = s->weight_decay;
    o->momentum = s->momentum;
    o->tau = s->tau;
    o->seed = s->seed;
    t->warmup_steps = s->warmup_steps;
    t->total_steps = s->total_steps;
    if (!o->dataset_size)
        o->dataset_size = s->dataset_size;
    if (!o->set_length) {
        o->epochs = s->epochs;
        o->steps = s->epochs > 0 ? 0 : s->total_steps;
    } else {
        t->total_steps = 0;   /* recomputed from the new --steps / --epochs */
    }
    t->images_seen = s->images_seen;
    t->rng = s->rng;
    t->train_seconds_before = s->train_seconds;
    return 0;
}

/* Reads the checkpoint's metadata and its trainer state. */
static int setup_resume(trainer_t *t)
{
    char err[1024];
    static char folder[RUNDIR_MAX_PATH];
    if (rundir_resolve(t->o.out, t->o.resume, t->resume_path, sizeof t->resume_path, err, sizeof err)) {
        console_log("%s", err);
        return -1;
    }
    if (!t->o.set_out && strcmp(t->o.resume, RUNDIR_LATEST) != 0) {
        /* continue beside the checkpoint */
        snprintf(folder, sizeof folder, "%s", t->resume_path);
        char *slash = strrchr(folder, '/');
        if (slash)
            *slash = '\0';
        t->o.out = folder;
    }
    nn_ckpt_meta meta;
    if (nn_ckpt_read_meta(t->resume_path, &meta, err, sizeof err)) {
        console_log("cannot resume: %s", err);
        return -1;
    }
    snprintf(t->desc, sizeof t->desc, "%s", meta.desc);
    t->have_desc = 1;
    t->step = t->last_ckpt_step = meta.step;
    t->resume_optimizer = meta.has_optimizer;
    nn_ckpt_meta_clear(&meta);

    char state[RUNDIR_MAX_PATH + 8];
    rundir_state_path(state, sizeof state, t->resume_path);
    if (access(state, F_OK) == 0) {
        if (rundir_state_load(state, &t->rs, err, sizeof err)) {
            console_log("cannot resume: %s", err);
            return -1;
        }
        if (t->rs.step != t->step) {
            console_log("cannot resume: %s says step %ld, its checkpoint step %ld", state, t->rs.step, t->step);
            return -1;
        }
        t->have_state = 1;
        if (apply_state(t))
            return -1;
        if (t->rs.epoch_sets) {
            epochs_init(&t->restored);
            if (epochs_from_json(&t->restored, t->rs.epoch_sets, err, sizeof err)) {
                console_log("cannot resume: %s: %s", state, err);
                return -1;
            }
            t->have_restored = 1;
        }
    } else {
        /* A checkpoint from elsewhere (nntool, another trainer): the command
         * line gives the schedule; the step count starts from the file's. */
        console_log("%s: no trainer state beside the checkpoint; taking the schedule and random state "
                    "from the command line", state);
        t->images_seen = (uint64_t)t->step * t->o.batch;
    }
    if (!t->resume_optimizer)
        console_log("%s holds no optimizer state: the optimizer starts afresh", t->resume_path);
    return 0;
}

/* ---- set-up before any data ---- */

static int setup_network(trainer_t *t)
{
    char err[1024];
    t->shape.method = t->o.method;
    t->shape.images = t->o.batch;
    t->shape.classes = t->o.method == TRAIN_SUPERVISED ? t->o.classes : NN_ROT_CLASSES;
    if (t->o.set_classes && t->o.method != TRAIN_SUPERVISED)
        console_log("--classes ignored: only --method supervised uses it");
    if (!t->have_desc) {
        if (is_preset(t->o.arch)) {
            /* checked now on a typical input; built for the real one later */
            char probe[NN_MAX_DESC], head[HEAD_NAME_MAX];
            if (nn_preset_desc(probe, sizeof probe, t->o.arch, t->o.width, head_of(&t->o, head, sizeof head), 3,
                               32, 32, err, sizeof err)) {
                console_log("--arch %s --width %d: %s", t->o.arch, t->o.width, err);
                return -1;
            }
            t->preset = 1;
            return 0;
        }
        if (read_text_file(t->o.arch, t->desc, sizeof t->desc, err, sizeof err)) {
            console_log("%s", err);
            return -1;
        }
        t->have_desc = 1;
    }
    int c, h, w, out;
    if (model_probe(t->desc, &c, &h, &w, &out, err, sizeof err)) {
        console_log("%s: %s", t->resuming ? t->resume_path : t->o.arch, err);
        return -1;
    }
    if (t->o.method == TRAIN_ROTNET && out < NN_ROT_CLASSES) {
        console_log("%s: the head has %d outputs, rotnet needs %d", t->resuming ? t->resume_path : t->o.arch,
                    out, NN_ROT_CLASSES);
        return -1;
    }
    if (t->o.method == TRAIN_SUPERVISED) {
        /* the description's head is the classifier: its width is the number of classes */
        if (t->o.set_classes && (uint32_t)out != t->o.classes) {
            console_log("%s: the head has %d outputs, --classes is %u; give --classes %d or a network whose "
                        "head ends in linear out=%u", t->resuming ? t->resume_path : t->o.arch, out,
                        t->o.classes, out, t->o.classes);
            return -1;
        }
        if (out < 2 || out > TRAINER_MAX_CLASSES) {
            console_log("%s: the head has %d outputs, supervised needs 2..%d classes",
                        t->resuming ? t->resume_path : t->o.arch, out, TRAINER_MAX_CLASSES);
            return -1;
        }
        t->o.classes = (uint32_t)out;
        t->shape.classes = t->o.classes;
    }
    t->shape.channels = (uint32_t)c;
    t->shape.height = (uint32_t)h;
    t->shape.width = (uint32_t)w;
    return 0;
}

/* Steps of the whole run, once the dataset size is known (0 = not yet). */
static long steps_for(const trainer_options_t *o, uint64_t dataset_size)
{
    if (o->steps > 0)
        return o->steps;
    if (!dataset_size)
        return 0;
    long n = (long)floor(o->epochs * (double)dataset_size / (double)o->batch);
    return n > 0 ? n : 1;
}

static void setup_schedule(trainer_t *t)
{
    trainer_options_t *o = &t->o;
    t->dataset_size = o->dataset_size;
    if (!t->total_steps)
        t->total_steps = steps_for(o, t->dataset_size);
    if (t->have_state)
        return;   /* warm-up restored */
    if (o->warmup_epochs > 0)
        t->warmup_steps = (long)llround(o->warmup_epochs * (double)t->dataset_size / (double)o->batch);
    else if (o->warmup_steps >= 0)
        t->warmup_steps = o->warmup_steps;
    else
        t->warmup_steps = t->total_steps > 0 ? (long)llround(TRAINER_WARMUP_SHARE * (double)t->total_steps) : 0;
}

static float lr_at(const trainer_t *t, long step)
{
    long total = t->total_steps > 0 ? t->total_steps : LONG_MAX;
    return nn_lr_schedule((float)t->o.lr, step, t->warmup_steps, total);
}

static void *open_evaluator(const char *endpoint)
{
    void *s = transport_socket(ZMQ_PUSH, TRANSPORT_CONNECT, 0);
    if (!s)
        return NULL;
    int one = 1, linger = EVALUATOR_LINGER_MS;
    /* conflate: the queue holds only the newest Checkpoint */
    zmq_setsockopt(s, ZMQ_CONFLATE, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_SNDHWM, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (transport_attach(s, TRANSPORT_CONNECT, endpoint, "evaluator") != 0) {
        console_log("cannot connect the evaluator socket to %s", endpoint);
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Sends without ever waiting; a message that cannot go now is dropped. */
static void send_now(void *sock, const proto_buf_t *b)
{
    if (sock && b->len)
        zmq_send(sock, b->data, b->len, ZMQ_DONTWAIT);
}

/* Publishes on the Control socket as [topic, body], without ever waiting. */
static void publish(trainer_t *t, const char *topic, const proto_buf_t *b)
{
    if (t->pub && topic && b->len)
        transport_publish(t->pub, topic, b->data, b->len);
}

/* The epoch training is in: the oldest one not complete, which a restarted
 * loader starts from. */
static uint32_t training_epoch(trainer_t *t)
{
    int known = 0;
    uint32_t e = t->feed ? feed_epoch(t->feed, &known) : 0;
    if (known)
        return e;
    if (t->dataset_size)
        return (uint32_t)(t->images_seen / t->dataset_size);
    return t->last_batch_epoch;
}

static void publish_control(trainer_t *t, proto_control_kind_t kind)
{
    if (!t->pub)
        return;
    proto_control_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    snprintf(c.sender, sizeof c.sender, "%s", t->stage_id);
    c.epoch = training_epoch(t);
    c.count = (uint64_t)t->step;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_control_encode(&b, &c, NULL, 0) == 0)
        publish(t, proto_control_topic(kind), &b);
    proto_buf_release(&b);
}

/* Publishes what the model holds of the current epochs (a Have), so that a
 * loader sends again what a trainer acknowledged and then lost by dying
 * before its next checkpoint. Nothing before the first epoch is known. */
static void publish_have(trainer_t *t)
{
    proto_have_t h;
    if (!t->pub || feed_have(t->feed, &h) <= 0)
        return;
    snprintf(h.sender, sizeof h.sender, "%s", t->stage_id);
    h.step = (uint64_t)t->step;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_have_encode(&b, &h, NULL, 0) == 0)
        publish(t, PROTO_TOPIC_HAVE, &b);
    proto_buf_release(&b);
    feed_have_release(&h);
}

static double images_per_s(const trainer_t *t)
{
    return t->sum_period > 0 ? (double)t->timed_steps * t->o.batch / t->sum_period : 0;
}

static double wait_share(const trainer_t *t)
{
    return t->sum_period > 0 ? t->sum_wait / t->sum_period : 0;
}

static void publish_stats(trainer_t *t)
{
    if (!t->pub)
        return;
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    proto_stat_t st[] = {
        { "step", (double)t->step },
        { "total_steps", (double)t->total_steps },
        { "loss", (double)t->last_loss },
        { "images_per_s", images_per_s(t) },
        { "data_wait", wait_share(t) },
        { "viewbatches", (double)fs.viewbatches },
        { "dropped", (double)fs.dropped },
        { "duplicates", (double)fs.duplicates },
        { "skipped", (double)fs.skipped },
    };
    proto_stats_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.sender, sizeof s.sender, "%s", t->stage_id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s.time = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    s.n_stats = sizeof st / sizeof st[0];
    s.stats = st;
    proto_buf_t b;
    proto_buf_init(&b);
    if (proto_stats_encode(&b, &s, NULL, 0) == 0)
        publish(t, PROTO_TOPIC_STATS, &b);
    proto_buf_release(&b);
}

/* Publishes Acks for the n samples (epoch[i], index[i]): one message per
 * epoch (and per PROTO_MAX_ACK_INDICES). Never waits: a lost Ack only makes
 * the loader send the sample again, and the copy is acknowledged then. */
static void publish_acks(trainer_t *t, const uint32_t *epoch, const uint64_t *index, size_t n)
{
    if (!t->pub || n == 0)
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
        snprintf(a.sender, sizeof a.sender, "%s", t->stage_id);
        a.epoch = epoch[i];
        a.indices = sel;
        for (size_t j = i; j < n; j++) {
            if (taken[j] || epoch[j] != a.epoch)
                continue;
            taken[j] = 1;
            sel[a.n_indices++] = index[j];
            if (a.n_indices == PROTO_MAX_ACK_INDICES) {
                if (proto_ack_encode(&b, &a, NULL, 0) == 0)
                    publish(t, PROTO_TOPIC_ACK, &b);
                a.n_indices = 0;
            }
        }
        if (a.n_indices && proto_ack_encode(&b, &a, NULL, 0) == 0)
            publish(t, PROTO_TOPIC_ACK, &b);
    }
    proto_buf_release(&b);
    free(sel);
    free(taken);
}

#define DUP_ACK_CHUNK 4096

/* Acknowledges the copies the receive thread dropped. */
static void ack_duplicates(trainer_t *t)
{
    static uint32_t epoch[DUP_ACK_CHUNK];
    static uint64_t index[DUP_ACK_CHUNK];
    size_t n;
    while ((n = feed_take_duplicates(t->feed, epoch, index, DUP_ACK_CHUNK)) > 0)
        publish_acks(t, epoch, index, n);
}

static double current_epoch(const trainer_t *t)
{
    if (t->dataset_size)
        return (double)t->images_seen / (double)t->dataset_size;
    return (double)t->last_batch_epoch;
}

/* ---- checkpoints ---- */

static void tell_evaluator(trainer_t *t, const char *path, long epoch)
{
    if (!t->eval)
        return;
    proto_checkpoint_t c;
    memset(&c, 0, sizeof c);
    c.step = (uint64_t)t->step;
    c.epoch = (uint32_t)epoch;
    snprintf(c.method, sizeof c.method, "%s", trainer_method_name(t->o.method));
    const char *desc = nn_net_desc(t->model->net);
    if (strlen(desc) < sizeof c.arch)
        snprintf(c.arch, sizeof c.arch, "%s", desc);
    else
        snprintf(c.arch, sizeof c.arch, "%s", t->o.arch);   /* the file has the full description */
    snprintf(c.path, sizeof c.path, "%s", path);
    proto_buf_t b;
    proto_buf_init(&b);
    char perr[PROTO_ERR_MAX];
    if (proto_checkpoint_encode(&b, &c, perr, sizeof perr) == 0)
        send_now(t->eval, &b);
    else
        console_log("cannot encode the Checkpoint message: %s", perr);
    proto_buf_release(&b);
}

static int save_checkpoint(trainer_t *t)
{
    char path[RUNDIR_MAX_PATH], state[RUNDIR_MAX_PATH + 8], err[1024];
    rundir_ckpt_path(path, sizeof path, t->o.out, t->step);
    rundir_state_path(state, sizeof state, path);
    long epoch = (long)floor(current_epoch(t));
    if (nn_ckpt_save(path, t->model->net, t->model->opt, trainer_method_name(t->o.method), t->step, epoch,
                     err, sizeof err)) {
        console_log("checkpoint failed: %s", err);
        return -1;
    }
    train_state_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.method, sizeof s.method, "%s", trainer_method_name(t->o.method));
    snprintf(s.arch, sizeof s.arch, "%s", t->o.arch);
    s.width = t->o.width;
    s.batch = t->o.batch;
    snprintf(s.optimizer, sizeof s.optimizer, "%s", nn_optim_kind_name(t->o.optimizer));
    s.lr = t->o.lr;
    s.weight_decay = t->o.weight_decay;
    s.momentum = t->o.momentum;
    s.tau = t->o.tau;
    s.warmup_steps = t->warmup_steps;
    s.total_steps = t->total_steps;
    s.epochs = t->o.epochs;
    s.dataset_size = t->dataset_size;
    s.step = t->step;
    s.images_seen = t->images_seen;
    s.seed = t->o.seed;
    s.rng = t->rng;
    s.train_seconds = t->train_seconds_before + (t->run_start > 0 ? console_now() - t->run_start : 0);
    /* exactly the samples of the steps done so far: this thread trains no other meanwhile */
    s.epoch_sets = feed_epochs_json(t->feed);
    if (!s.epoch_sets)
        snprintf(err, sizeof err, "out of memory for the per-epoch state");
    if (!s.epoch_sets || rundir_state_save(state, &s, err, sizeof err) ||
        rundir_point_latest(t->o.out, path, err, sizeof err)) {
        rundir_state_release(&s);
        console_log("checkpoint failed: %s", err);
        return -1;
    }
    rundir_state_release(&s);
    rundir_prune(t->o.out, t->o.keep, t->step);
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof real, "%s", path);
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", real);
    t->last_ckpt_step = t->step;
    tell_evaluator(t, real, epoch);
    return 0;
}

/* ---- the model, built when the first batch shows the input shape ---- */

static int build_model(trainer_t *t)
{
    char err[1024], head[HEAD_NAME_MAX];
    feed_shape(t->feed, &t->shape);
    if (t->preset &&
        nn_preset_desc(t->desc, sizeof t->desc, t->o.arch, t->o.width, head_of(&t->o, head, sizeof head),
                       (int)t->shape.channels, (int)t->shape.height, (int)t->shape.width, err, sizeof err)) {
        console_log("--arch %s on %ux%ux%u views: %s", t->o.arch, t->shape.channels, t->shape.height,
                    t->shape.width, err);
        return -1;
    }
    nn_optim_config oc;
    nn_optim_defaults(&oc, t->o.optimizer);
    oc.weight_decay = (float)t->o.weight_decay;
    if (t->o.optimizer != NN_OPT_ADAMW)
        oc.momentum = (float)t->o.momentum;
    int rows = (int)batch_rows(&t->shape);
    t->model = model_new(t->desc, t->o.method, rows, (int)t->shape.classes, &oc, (float)t->o.tau, err, sizeof err);
    if (!t->model) {
        console_log("cannot build the network: %s", err);
        return -1;
    }
    if (t->resuming) {
        nn_ckpt_meta meta;
        if (nn_ckpt_load(t->resume_path, t->model->net, t->resume_optimizer ? t->model->opt : NULL, &meta,
                         err, sizeof err)) {
            console_log("cannot resume: %s", err);
            return -1;
        }
        nn_ckpt_meta_clear(&meta);
        int known;
        uint32_t epoch = feed_epoch(t->feed, &known);
        if (known)
            console_log("resumed %s at step %ld, in epoch %u", t->resume_path, t->step, epoch);
        else
            console_log("resumed %s at step %ld", t->resume_path, t->step);
    } else {
        if (!t->rng)
            t->rng = t->o.seed;
        nn_net_init_params(t->model->net, splitmix64_next(&t->rng));
    }
    char total[64];
    if (t->total_steps)
        snprintf(total, sizeof total, "%ld steps", t->total_steps);
    else
        snprintf(total, sizeof total, "steps known after the first epoch");
    char classes[48] = "";
    if (t->o.method == TRAIN_SUPERVISED)
        snprintf(classes, sizeof classes, " (%u classes)", t->o.classes);
    console_log("%s%s, %s, %u images (%d views of %ux%ux%u) per step, %s lr %.4g, weight decay %.2g, "
                "warm-up %ld steps, %s", trainer_method_name(t->o.method), classes, t->o.arch, t->o.batch, rows,
                t->shape.channels, t->shape.height, t->shape.width, nn_optim_kind_name(t->o.optimizer), t->o.lr,
                t->o.weight_decay, t->warmup_steps, total);
    return 0;
}

/* ---- bookkeeping between steps ---- */

/* Mean batch train accuracy of the last ACC_WINDOW steps; NAN when none. */
static double recent_accuracy(const trainer_t *t)
{
    if (t->acc_count == 0)
        return NAN;
    double sum = 0;
    for (int i = 0; i < t->acc_count; i++)
        sum += t->acc_ring[i];
    return sum / t->acc_count;
}

static void note_accuracy(trainer_t *t, float acc)
{
    if (!isfinite(acc))
        return;
    t->acc_ring[t->acc_next] = acc;
    t->acc_next = (t->acc_next + 1) % ACC_WINDOW;
    if (t->acc_count < ACC_WINDOW)
        t->acc_count++;
}

static void write_metrics(trainer_t *t, float loss, float acc, float lr, double period, double wait)
{
    json_t *j = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)t->step,
                          "epoch", current_epoch(t), "loss", (double)loss, "lr", (double)lr,
                          "images_per_s", period > 0 ? t->o.batch / period : 0.0,
                          "data_wait", period > 0 ? wait / period : 0.0,
                          "time", t->train_seconds_before + console_now() - t->run_start);
    if (!j)
        return;
    if (isfinite(acc))
        json_object_set_new(j, "accuracy", json_real((double)acc));   /* this batch, before the update */
    if (json_dumpf(j, t->metrics, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0)
        fputc('\n', t->metrics);
    json_decref(j);
}

/* Writes the per-epoch records that are ready (with `all`, every epoch
 * still open too) into metrics.jsonl and the log. */
static void write_epoch_records(trainer_t *t, int all)
{
    epochs_record_t r;
    while (feed_epoch_record(t->feed, all, &r)) {
        double time = t->run_start > 0 ? t->train_seconds_before + console_now() - t->run_start
                                       : t->train_seconds_before;
        json_t *j = json_pack("{s:I, s:f, s:s, s:I, s:I, s:I, s:I, s:b}", "step", (json_int_t)t->step,
                              "time", time, "record", "epoch", "epoch", (json_int_t)r.epoch,
                              "distinct", (json_int_t)r.distinct, "duplicates", (json_int_t)r.duplicates,
                              "expected", (json_int_t)r.expected, "complete", r.complete);
        if (j && t->o.method == TRAIN_SUPERVISED)
            json_object_set_new(j, "skipped", json_integer((json_int_t)r.skipped));
        if (j && json_dumpf(j, t->metrics, JSON_COMPACT) == 0)
            fputc('\n', t->metrics);
        json_decref(j);
        char skipped[80] = "";
        if (r.skipped)
            snprintf(skipped, sizeof skipped, ", %" PRIu64 " skipped (no label in 0..%u)", r.skipped,
                     t->o.classes - 1);
        if (!t->o.quiet || !r.complete)
            console_log("epoch %u %s: %" PRIu64 " distinct samples trained%s%s, %" PRIu64 " duplicate(s) dropped",
                        r.epoch, r.complete ? "complete" : "open at the end", r.distinct,
                        r.expected ? "" : " (its end was not seen)", skipped, r.duplicates);
    }
}

static void housekeeping(trainer_t *t, double now)
{
    ack_duplicates(t);
    write_epoch_records(t, 0);
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    if (!t->dataset_size && fs.epoch_count) {
        t->dataset_size = fs.epoch_count;
        if (!t->total_steps) {
            t->total_steps = steps_for(&t->o, t->dataset_size);
            t->progress.total = (uint64_t)t->total_steps * t->o.batch;
        }
        console_log("the loader's epoch has %" PRIu64 " images: %ld steps in all", t->dataset_size,
                    t->total_steps);
    }
    if (fs.dropped > t->drops_logged && now - t->last_drop_log >= DROP_LOG_S) {
        console_log("dropped %" PRIu64 " message(s) so far; last: %s", fs.dropped, fs.last_error);
        t->drops_logged = fs.dropped;
        t->last_drop_log = now;
    }
    if (fs.skipped > t->skips_logged && now - t->last_skip_log >= DROP_LOG_S) {
        int unlabeled = fs.last_skipped_label == PROTO_LABEL_NONE;
        console_log("skipped %" PRIu64 " sample(s) so far whose label is missing (-1) or outside 0..%u, "
                    "not trained on (the last: dataset index %" PRIu64 ", label %d)\nHINT: %s",
                    fs.skipped, t->o.classes - 1, fs.last_skipped_index, (int)fs.last_skipped_label,
                    unlabeled ? "--method supervised needs labeled images (class folders, IDX or CIFAR); "
                                "train unlabeled ones with simclr or rotnet"
                              : "--classes N must exceed the largest label");
        t->skips_logged = fs.skipped;
        t->last_skip_log = now;
    }
    if (t->pub) {
        /* the beats that came while a step computed are read before anyone is found silent */
        transport_hear_beats(t->pub, t->peers, now);
        liveness_check(t->peers, now);
    }
    if (now >= t->next_heartbeat) {
        publish_control(t, PROTO_CONTROL_HEARTBEAT);
        publish_have(t);
        publish_stats(t);
        t->next_heartbeat = now + HEARTBEAT_S;
    }
}

static void show_progress(trainer_t *t, float loss)
{
    if (t->o.quiet)
        return;
    char extra[160], total[32] = "";
    if (t->total_steps)
        snprintf(total, sizeof total, "/%ld", t->total_steps);
    char acc[32] = "";
    if (t->acc_count)
        snprintf(acc, sizeof acc, ", acc %.1f%%", 100 * recent_accuracy(t));
    snprintf(extra, sizeof extra, "step %ld%s, epoch %.2f, loss %.4f%s, data wait %.1f%%", t->step, total,
             current_epoch(t), (double)loss, acc, 100 * wait_share(t));
    progress_update(&t->progress, (uint64_t)t->step * t->o.batch, extra);
}

/* ---- the run ---- */

typedef enum { END_DONE, END_SIGNAL, END_STREAM, END_DIVERGED, END_FAILED } end_reason_t;

static end_reason_t train(trainer_t *t)
{
    double wait = 0, period_start = 0;
    t->last_wait_log = console_now();
    for (;;) {
        if (transport_stop)
            return END_SIGNAL;
        if (t->total_steps && t->step >= t->total_steps)
            return END_DONE;
        double t0 = console_now();
        batch_t *b = feed_take(t->feed, TAKE_SLICE_MS);
        double now = console_now();
        wait += now - t0;
        housekeeping(t, now);
        if (!b) {
            feed_stats_t fs;
            feed_stats(t->feed, &fs);
            if (fs.end_of_stream && now - fs.last_data >= EOS_IDLE_S)
                return END_STREAM;
            if (!t->model && now - t->last_wait_log >= WAIT_LOG_S) {
                console_log("waiting for ViewBatches on %s (%" PRIu64 " received, %" PRIu64 " dropped)",
                            t->o.bind, fs.viewbatches, fs.dropped);
                t->last_wait_log = now;
            }
            continue;
        }
        if (!t->model) {
            if (build_model(t)) {
                feed_give_back(t->feed, b);
                return END_FAILED;
            }
            /* the wait for the pipeline to start is not data wait */
            t->run_start = period_start = console_now();
            wait = 0;
            progress_start(&t->progress, "images", (uint64_t)t->total_steps * t->o.batch);
            t->progress.last_done = (uint64_t)t->step * t->o.batch;
        }
        float lr = lr_at(t, t->step);
        float acc;
        float loss = model_step(t->model, b, lr, &acc);
        t->last_batch_epoch = b->max_epoch;
        if (isfinite(loss)) {
            feed_trained(t->feed, b);
            publish_acks(t, b->epoch, b->index, b->filled);
        }
        feed_give_back(t->feed, b);
        if (!isfinite(loss)) {
            console_log("the loss is %f at step %ld (lr %g): training diverged; nothing saved after "
                        "step %ld\nHINT: lower --lr", (double)loss, t->step + 1, (double)lr, t->last_ckpt_step);
            return END_DIVERGED;
        }
        t->step++;
        t->images_seen += t->o.batch;
        t->last_loss = loss;
        note_accuracy(t, acc);
        now = console_now();
        double period = now - period_start;
        t->sum_period += period;
        t->sum_wait += wait;
        t->timed_steps++;
        write_metrics(t, loss, acc, lr, period, wait);
        show_progress(t, loss);
        if (t->step % t->o.ckpt_every == 0 || t->step == t->total_steps) {
            if (save_checkpoint(t))
                return END_FAILED;
        }
        period_start = console_now();
        wait = 0;
    }
}

static void print_summary(trainer_t *t, end_reason_t why, double seconds)
{
    static const char *names[] = { "done", "signal", "end of stream", "diverged", "failed" };
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    char skipped[80] = "", acc[80] = "";
    if (t->o.method == TRAIN_SUPERVISED)
        snprintf(skipped, sizeof skipped, ", %" PRIu64 " samples skipped for their label", fs.skipped);
    if (t->acc_count)
        snprintf(acc, sizeof acc, ", train accuracy %.1f%% (mean of the last %d steps)", 100 * recent_accuracy(t),
                 t->acc_count);
    console_log("%s after %ld steps (%ld in this process, %.1f s): %.1f images/s, data wait %.1f%% "
                "of step time, %" PRIu64 " ViewBatches, %" PRIu64 " dropped, %" PRIu64 " duplicate samples%s; "
                "last loss %.4f%s; checkpoint %s",
                names[why], t->step, t->timed_steps, seconds, images_per_s(t), 100 * wait_share(t),
                fs.viewbatches, fs.dropped, fs.duplicates, skipped, (double)t->last_loss, acc,
                t->last_ckpt[0] ? t->last_ckpt : "none");
    json_t *j = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:s}", "end", names[why],
                          "step", (json_int_t)t->step, "steps_this_run", (json_int_t)t->timed_steps,
                          "loss", t->timed_steps ? (double)t->last_loss : SUMMARY_UNKNOWN,
                          "images_per_s", images_per_s(t), "data_wait", wait_share(t),
                          "viewbatches", (json_int_t)fs.viewbatches, "dropped", (json_int_t)fs.dropped,
                          "checkpoint", t->last_ckpt);
    if (j && t->acc_count)
        json_object_set_new(j, "train_accuracy", json_real(recent_accuracy(t)));
    if (j && t->o.method == TRAIN_SUPERVISED)
        json_object_set_new(j, "skipped", json_integer((json_int_t)fs.skipped));
    if (j) {
        json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
    }
}

static void publish_stop(trainer_t *t)
{
    if (!t->pub)
        return;
    for (int i = 0; i < STOP_REPEATS; i++) {
        publish_control(t, PROTO_CONTROL_STOP);
        usleep(STOP_INTERVAL_MS * 1000);
    }
}

/* rundir_record_kept_fn: the epoch records the resumed checkpoint counts as
 * written stay in metrics.jsonl; the others are written again. */
static int record_kept(uint32_t epoch, void *arg)
{
    return epochs_record_out(arg, epoch);
}

/* Refuses to start a new run over another one's checkpoints. */
static int check_fresh_folder(const char *out)
{
    char latest[RUNDIR_MAX_PATH];
    snprintf(latest, sizeof latest, "%s/" RUNDIR_LATEST, out);
    struct stat st;
    if (lstat(latest, &st) == 0) {
        console_log("%s already holds a run (%s exists)\nHINT: continue it with --resume latest, or give "
                    "another --out", out, latest);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static trainer_t tr;   /* large (descriptions, paths): not on the stack */
    trainer_t *t = &tr;
    char err[1024];
    console_init("trainer");
    nn_blas_init(argv);   /* may restart the trainer on a faster OpenBLAS kernel */
    int rc = trainer_options_parse(&t->o, argc, argv, err, sizeof err);
    if (rc == 1) {
        trainer_usage(stdout);
        return EXIT_OK;
    }
    if (rc < 0) {
        fprintf(stderr, "trainer: %s\n", err);
        trainer_usage(stderr);
        return EXIT_USAGE;
    }
    nn_blas_log(t->o.quiet);
    transport_catch_signals();
    if (t->o.curve && transport_use_curve(t->o.curve, TRANSPORT_CURVE_SERVER |
                                          (strcmp(t->o.evaluator, "none") ? TRANSPORT_CURVE_CLIENT : 0),
                                          err, sizeof err)) {
        fprintf(stderr, "trainer: %s\n", err);
        return EXIT_USAGE;
    }
    t->stage_id = transport_identity("trainer");
    t->resuming = t->o.resume != NULL;

    if (t->resuming ? setup_resume(t) : check_fresh_folder(t->o.out))
        return EXIT_USAGE;
    if (setup_network(t))
        return EXIT_USAGE;
    setup_schedule(t);
    if (rundir_make(t->o.out, err, sizeof err)) {
        console_log("%s", err);
        return EXIT_RUNTIME;
    }
    int stale = rundir_clean_tmp(t->o.out);
    if (stale > 0)
        console_log("removed %d temporary file(s) that a killed trainer left in %s", stale, t->o.out);
    t->metrics = rundir_metrics_open(t->o.out, t->resuming ? t->step : -1, t->have_restored ? record_kept : NULL,
                                     &t->restored, err, sizeof err);
    if (!t->metrics) {
        console_log("%s", err);
        return EXIT_RUNTIME;
    }

    rc = EXIT_RUNTIME;
    if (strcmp(t->o.control, "none") != 0 &&
        (!(t->pub = transport_open_peer(ZMQ_XPUB, TRANSPORT_BIND, t->o.control, 0, "control subscribers")) ||
         !(t->peers = liveness_new(TRANSPORT_SILENT_S, TRANSPORT_FORGET_S, 0))))
        goto out;
    if (strcmp(t->o.evaluator, "none") != 0 && !(t->eval = open_evaluator(t->o.evaluator)))
        goto out;
    t->feed = feed_new(t->o.bind, t->o.hwm, &t->shape, t->o.queue, t->have_restored ? &t->restored : NULL, err,
                       sizeof err);
    if (!t->feed) {
        console_log("%s", err);
        goto out;
    }
    console_log("listening on %s for ViewBatches, control on %s, evaluator %s, run folder %s", t->o.bind,
                t->o.control, t->o.evaluator, t->o.out);

    double start = console_now();
    end_reason_t why = train(t);
    if (!t->o.quiet && t->model)
        progress_end(&t->progress);
    if (why == END_STREAM && t->step == 0 && !t->model) {
        console_log("the stream ended before a full batch of %u images arrived", t->o.batch);
        why = END_FAILED;
    } else if (why == END_STREAM) {
        console_log("the stream ended at step %ld%s", t->step,
                    t->total_steps && t->step < t->total_steps ? " before the planned total" : "");
    }
    rc = (why == END_DONE || why == END_SIGNAL || why == END_STREAM) ? EXIT_OK : EXIT_RUNTIME;
    if (t->model && why != END_DIVERGED && t->step > t->last_ckpt_step && save_checkpoint(t))
        rc = EXIT_RUNTIME;
    if (t->model) {
        ack_duplicates(t);
        write_epoch_records(t, 1);
    }
    print_summary(t, why, t->run_start > 0 ? console_now() - t->run_start : console_now() - start);
    publish_stop(t);
out:
    feed_destroy(&t->feed);
    model_destroy(&t->model);
    if (t->metrics)
        fclose(t->metrics);
    transport_close(&t->pub);
    liveness_destroy(&t->peers);
    transport_close(&t->eval);
    transport_shutdown();
    epochs_release(&t->restored);
    rundir_state_release(&t->rs);
    return rc;
}

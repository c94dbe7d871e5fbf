/* trainer/trainer: the training stage: set-up, the training loop, checkpoints
 * and the evaluator's Checkpoint message (what the run reports is in
 * trainer/report.c). */
#include "trainer/trainer.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "console/console.h"
#include "dist/dist.h"
#include "errmsg/errmsg.h"
#include "nn/ckpt.h"
#include "nn/net.h"
#include "proto/proto.h"
#include "splitmix/splitmix.h"
#include "transport/transport.h"
#include "trainer/batch.h"
#include "trainer/config.h"
#include "trainer/control.h"
#include "trainer/epochs.h"
#include "trainer/feed.h"
#include "trainer/model.h"
#include "trainer/report.h"
#include "trainer/rundir.h"
#include "trainer/schedule.h"

#define TAKE_SLICE_MS      200    /* the loop wakes this often while it waits */
#define HEARTBEAT_S        1.0    /* Control HEARTBEAT and Stats period */
#define EOS_IDLE_S         1.0    /* after END_OF_STREAM, this long without data ends the run */
#define WAIT_LOG_S         10.0   /* "waiting for data" reminder period */
#define DROP_LOG_S         5.0    /* dropped-message log period */
#define EVALUATOR_LINGER_MS 500   /* how long closing waits to deliver the last Checkpoint */
#define HEAD_NAME_MAX      32
#define MSG_MAX            1024   /* a message of a library call, before the trainer adds its context */
#define SHARE_ACKS_MAX     (1u << 16)  /* dropped copies a rank passes on to rank 0 per exchange */
#define END_GRACE_S        2.0         /* the last epoch's END_OF_EPOCH may follow its last step */
#define END_GRACE_TICK_US  50000
#define SHARE_EVENTS_MAX   (1u << 16)  /* feed events (skipped, END_OF_EPOCH, ...) per exchange */

/* What each rank tells the others at every exchange (data-parallel runs):
 * its state for the common decision, rank 0's schedule, and how many
 * feed_event_t follow. */
typedef struct {
    int32_t have_batch;             /* a full batch waits on this rank */
    int32_t stop;                   /* a signal came */
    int32_t stream_over;            /* END_OF_STREAM known, no batch, nothing new for EOS_IDLE_S */
    uint32_t n_events;
    int64_t total_steps, warmup_steps;   /* rank 0's schedule, which every rank follows */
    uint64_t dataset_size;
} rank_state_t;

/* The decision every rank takes alike from the exchanged states. */
typedef struct {
    int step;           /* every rank has a batch */
    int stop, stream_over;
} agreed_t;

struct trainer {
    dist_t *d;                      /* the ranks of a data-parallel run (a world of one alone) */
    int rank, size;
    char bind[DIST_MAX_ENDPOINT];   /* this rank's ViewBatch endpoint */
    trainer_config_t config;        /* the run's settings: recorded in each checkpoint, restored on resume */
    const trainer_options_t *o;     /* sockets, run folder, checkpoints, log (its training
                                       settings were read once into config) */
    char out[RUNDIR_MAX_PATH];      /* the run folder: --out, or the resumed checkpoint's */
    const char *stage_id;

    /* network */
    int preset;                     /* arch is a preset name: desc built from the first batch */
    char desc[NN_MAX_DESC];         /* known up front for a file or a resumed checkpoint */
    int have_desc;
    batch_shape_t shape;
    model_t *model;

    /* resuming */
    char resume_path[RUNDIR_MAX_PATH];
    int resuming, resume_optimizer;
    epochs_t restored;              /* what the resumed checkpoint's model holds */
    int have_restored;

    /* sockets and data */
    control_t *control;             /* NULL with --control none */
    void *eval;                     /* PUSH to the evaluator, NULL with --evaluator none */
    feed_t *feed;
    report_t report;                /* metrics.jsonl, progress line, summary, the figures behind them */

    /* progress of the run */
    long step, last_ckpt_step;
    uint64_t images_seen, rng;
    uint32_t last_batch_epoch;
    double seconds_before;          /* training time of the runs this one resumes */
    long first_step;                /* the step this process started at (a time budget's rate) */
    char last_ckpt[RUNDIR_MAX_PATH];
    double next_heartbeat, last_drop_log, last_wait_log;
    uint64_t drops_logged;
    double last_skip_log;
    uint64_t skips_logged;

    /* data-parallel bookkeeping exchange (size > 1) */
    feed_event_t *ev_out;           /* (ev_cap) this rank's events for the others */
    size_t n_out, ev_cap;
    feed_event_t *ev_all;           /* (size * ev_all_cap) every rank's, padded */
    size_t ev_all_cap;
    rank_state_t *states;           /* (size) */
    uint32_t *dup_epoch;            /* (SHARE_ACKS_MAX) dropped copies taken from the feed */
    uint64_t *dup_index;
    batch_id_t *ids_mine;           /* (images) this rank's batch, before a step */
    batch_id_t *ids_all;            /* (size * images) every rank's */
    uint8_t *drop;                  /* (images) this rank's images to take out */
    int32_t *drop_counts;           /* (size) how many each rank took out */
    uint64_t copies_dropped;        /* images this rank took out of its batches, in all */
    double sync_seconds;            /* time in the exchanges (dist calls) */
    double sync_bytes;
};

/* Classes of the pretext head checked before the augmenters announce theirs. */
#define PRETEXT_PROBE_CLASSES 2

/* The preset head for the method: "simclr", "rotation" or "classifier:N"
 * (pretext: N the announced target classes, when known). */
static const char *head_of(const trainer_config_t *c, uint32_t pretext_classes, char *buf, size_t len)
{
    switch (c->method) {
    case TRAIN_ROTNET: return "rotation";
    case TRAIN_SUPERVISED:
        snprintf(buf, len, "%s:%u", NN_HEAD_CLASSIFIER, c->classes);
        return buf;
    case TRAIN_PRETEXT:
        snprintf(buf, len, "%s:%u", NN_HEAD_CLASSIFIER, pretext_classes ? pretext_classes : PRETEXT_PROBE_CLASSES);
        return buf;
    default: return "simclr";
    }
}

static int read_text_file(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        errmsg_set(err, errlen, "--arch %s: not a preset (resnet-mini, conv4) and not a readable file", path);
        return -1;
    }
    size_t n = fread(buf, 1, len - 1, f);
    int too_long = n == len - 1 && fgetc(f) != EOF;
    fclose(f);
    if (too_long) {
        errmsg_set(err, errlen, "--arch %s: longer than %zu bytes", path, len - 1);
        return -1;
    }
    buf[n] = '\0';
    return 0;
}

/* ---- set-up before any socket ---- */

/* Refuses to start a new run over another one's checkpoints. */
static int check_fresh_folder(const char *out, char *err, size_t errlen)
{
    char latest[RUNDIR_MAX_PATH];
    snprintf(latest, sizeof latest, "%s/" RUNDIR_LATEST, out);
    struct stat st;
    if (lstat(latest, &st) == 0) {
        errmsg_set(err, errlen, "%s already holds a run (%s exists)\nHINT: continue it with --resume latest, or "
                   "give another --out", out, latest);
        return -1;
    }
    return 0;
}

#define STATE_MAX_BYTES (256u << 20)   /* a state file's epoch sets stay far below */

/* Rank 0 (or a world of one): the checkpoint to resume, its network, step
 * and optimizer flag, and the text of the trainer state beside it in
 * *state (NULL for a checkpoint from elsewhere, which has none). */
static int read_resume(trainer_t *t, char **state, char *err, size_t errlen)
{
    char why[MSG_MAX];
    *state = NULL;
    if (rundir_resolve(t->out, t->o->resume, t->resume_path, sizeof t->resume_path, err, errlen))
        return -1;
    if (!t->o->set_out && strcmp(t->o->resume, RUNDIR_LATEST) != 0) {
        /* continue beside the checkpoint */
        snprintf(t->out, sizeof t->out, "%s", t->resume_path);
        char *slash = strrchr(t->out, '/');
        if (slash)
            *slash = '\0';
    }
    nn_ckpt_meta meta;
    if (nn_ckpt_read_meta(t->resume_path, &meta, why, sizeof why)) {
        errmsg_set(err, errlen, "cannot resume: %s", why);
        return -1;
    }
    snprintf(t->desc, sizeof t->desc, "%s", meta.desc);
    t->step = meta.step;
    t->resume_optimizer = meta.has_optimizer;
    nn_ckpt_meta_clear(&meta);
    char path[RUNDIR_MAX_PATH + 8];
    rundir_state_path(path, sizeof path, t->resume_path);
    if (access(path, F_OK) != 0)
        return 0;
    if (!(*state = rundir_read_text(path, STATE_MAX_BYTES, why, sizeof why))) {
        errmsg_set(err, errlen, "cannot resume: %s", why);
        return -1;
    }
    return 0;
}

/* What rank 0 found to every rank, so that ranks on other machines need
 * not see the run folder. */
typedef struct {
    int32_t failed, has_optimizer, has_state;
    int64_t step;
    uint32_t path_len, desc_len, state_len;
} resume_head_t;

static int share_resume(trainer_t *t, int *failed, char **state, char *err, size_t errlen)
{
    char why[MSG_MAX];
    resume_head_t h;
    memset(&h, 0, sizeof h);
    if (t->rank == 0) {
        h.failed = *failed;
        h.has_optimizer = t->resume_optimizer;
        h.has_state = *state != NULL;
        h.step = t->step;
        h.path_len = (uint32_t)strlen(t->resume_path);
        h.desc_len = (uint32_t)strlen(t->desc);
        h.state_len = *state ? (uint32_t)strlen(*state) : 0;
    }
    if (dist_broadcast(t->d, &h, sizeof h, 0, why, sizeof why))
        goto fail;
    if (h.failed) {
        if (t->rank > 0)
            errmsg_set(err, errlen, "cannot resume: rank 0 could not read the checkpoint (its message says why)");
        *failed = 1;
        return 0;
    }
    if (h.path_len >= sizeof t->resume_path || h.desc_len >= sizeof t->desc || h.state_len > STATE_MAX_BYTES) {
        snprintf(why, sizeof why, "rank 0 sent a checkpoint description too long to take");
        goto fail;
    }
    size_t n = (size_t)h.path_len + h.desc_len + h.state_len;
    char *buf = malloc(n + 1);
    if (!buf) {
        snprintf(why, sizeof why, "out of memory for %zu bytes", n);
        goto fail;
    }
    if (t->rank == 0) {
        memcpy(buf, t->resume_path, h.path_len);
        memcpy(buf + h.path_len, t->desc, h.desc_len);
        if (*state)
            memcpy(buf + h.path_len + h.desc_len, *state, h.state_len);
    }
    if (dist_broadcast(t->d, buf, n, 0, why, sizeof why)) {
        free(buf);
        goto fail;
    }
    if (t->rank > 0) {
        memcpy(t->resume_path, buf, h.path_len);
        t->resume_path[h.path_len] = '\0';
        memcpy(t->desc, buf + h.path_len, h.desc_len);
        t->desc[h.desc_len] = '\0';
        t->step = (long)h.step;
        t->resume_optimizer = h.has_optimizer;
        if (h.has_state) {
            memmove(buf, buf + h.path_len + h.desc_len, h.state_len);
            buf[h.state_len] = '\0';
            *state = buf;
            buf = NULL;
        }
    }
    free(buf);
    return 0;
fail:
    errmsg_set(err, errlen, "cannot resume: the ranks cannot share the checkpoint's state: %s", why);
    *failed = 1;
    return -1;
}

/* The trainer state beside the checkpoint (state: its text, NULL when there
 * is none): the run's settings, progress, random state and what the model
 * holds of the recent epochs. */
static int restore_state(trainer_t *t, const char *state, char *err, size_t errlen)
{
    char why[MSG_MAX], path[RUNDIR_MAX_PATH + 8];
    rundir_state_path(path, sizeof path, t->resume_path);
    if (!state) {
        /* A checkpoint from elsewhere (nntool, another trainer): the command
         * line gives the schedule; the step count starts from the file's. */
        if (t->rank == 0)
            console_log("%s: no trainer state beside the checkpoint; taking the schedule and random state "
                        "from the command line", path);
        t->images_seen = (uint64_t)t->step * t->config.batch;
        return 0;
    }
    train_state_t s;
    int rc = -1;
    if (rundir_state_parse(state, path, &s, why, sizeof why)) {
        errmsg_set(err, errlen, "cannot resume: %s", why);
        return -1;
    }
    if (s.step != t->step)
        errmsg_set(err, errlen, "cannot resume: %s says step %ld, its checkpoint step %ld", path, s.step, t->step);
    else if (trainer_config_resume(&t->config, &s.config, t->o, err, errlen) == 0)
        rc = 0;
    if (rc == 0 && s.epoch_sets) {
        epochs_init(&t->restored);
        if (epochs_from_json(&t->restored, s.epoch_sets, why, sizeof why)) {
            errmsg_set(err, errlen, "cannot resume: %s: %s", path, why);
            rc = -1;
        } else {
            t->have_restored = 1;
        }
    }
    t->images_seen = s.images_seen;
    t->rng = s.rng;
    t->seconds_before = s.train_seconds;
    rundir_state_release(&s);
    return rc;
}

/* Rank 0 reads the checkpoint and its state; every rank restores them. */
static int setup_resume(trainer_t *t, char *err, size_t errlen)
{
    char *state = NULL;
    int failed = t->rank == 0 && read_resume(t, &state, err, errlen) != 0;
    if (t->size > 1 && share_resume(t, &failed, &state, err, errlen))
        failed = 1;
    if (!failed) {
        t->have_desc = 1;
        t->last_ckpt_step = t->step;
        failed = restore_state(t, state, err, errlen) != 0;
    }
    free(state);
    if (failed)
        return -1;
    if (!t->resume_optimizer && t->rank == 0)
        console_log("%s holds no optimizer state: the optimizer starts afresh", t->resume_path);
    return 0;
}

/* Checks the network on what is known before any data: its description
 * (a file's, a resumed checkpoint's) against the method, or a preset on a
 * typical input. */
static int setup_network(trainer_t *t, char *err, size_t errlen)
{
    char why[MSG_MAX];
    trainer_config_t *c = &t->config;
    const char *source = t->resuming ? t->resume_path : c->arch;
    t->shape.method = c->method;
    t->shape.images = c->batch;
    t->shape.classes = c->method == TRAIN_SUPERVISED ? c->classes
                     : c->method == TRAIN_PRETEXT ? 0 : NN_ROT_CLASSES;   /* pretext: learnt from the data */
    if (t->o->set_classes && c->method != TRAIN_SUPERVISED)
        console_log("--classes ignored: only --method supervised uses it");
    if (!t->have_desc) {
        if (trainer_arch_is_preset(c->arch)) {
            /* checked now on a typical input; built for the real one later */
            char probe[NN_MAX_DESC], head[HEAD_NAME_MAX];
            if (nn_preset_desc(probe, sizeof probe, c->arch, c->width, head_of(c, 0, head, sizeof head), 3, 32, 32,
                               why, sizeof why)) {
                errmsg_set(err, errlen, "--arch %s --width %d: %s", c->arch, c->width, why);
                return -1;
            }
            t->preset = 1;
            return 0;
        }
        if (read_text_file(c->arch, t->desc, sizeof t->desc, err, errlen))
            return -1;
        t->have_desc = 1;
    }
    int ch, h, w, out;
    if (model_probe(t->desc, &ch, &h, &w, &out, why, sizeof why)) {
        errmsg_set(err, errlen, "%s: %s", source, why);
        return -1;
    }
    if (c->method == TRAIN_ROTNET && out < NN_ROT_CLASSES) {
        errmsg_set(err, errlen, "%s: the head has %d outputs, rotnet needs %d", source, out, NN_ROT_CLASSES);
        return -1;
    }
    if (c->method == TRAIN_SUPERVISED) {
        /* the description's head is the classifier: its width is the number of classes */
        if (t->o->set_classes && (uint32_t)out != c->classes) {
            errmsg_set(err, errlen, "%s: the head has %d outputs, --classes is %u; give --classes %d or a network "
                       "whose head ends in linear out=%u", source, out, c->classes, out, c->classes);
            return -1;
        }
        if (out < 2 || out > TRAINER_MAX_CLASSES) {
            errmsg_set(err, errlen, "%s: the head has %d outputs, supervised needs 2..%d classes", source, out,
                       TRAINER_MAX_CLASSES);
            return -1;
        }
        c->classes = (uint32_t)out;
        t->shape.classes = c->classes;
    }
    if (c->method == TRAIN_PRETEXT) {
        /* the head's width is the number of classes the ViewBatches must announce */
        if (out < 2 || out > TRAINER_MAX_CLASSES) {
            errmsg_set(err, errlen, "%s: the head has %d outputs, pretext needs 2..%d classes", source, out,
                       TRAINER_MAX_CLASSES);
            return -1;
        }
        t->shape.classes = (uint32_t)out;
    }
    t->shape.channels = (uint32_t)ch;
    t->shape.height = (uint32_t)h;
    t->shape.width = (uint32_t)w;
    return 0;
}

/* The buffers of the data-parallel exchange. */
static int setup_ranks(trainer_t *t, char *err, size_t errlen)
{
    if (dist_endpoint(t->bind, sizeof t->bind, t->o->bind, t->rank, err, errlen))
        return -1;
    if (t->size == 1)
        return 0;
    if (t->config.batch % (uint32_t)t->size) {
        errmsg_set(err, errlen, "--batch %u is not a multiple of the %d ranks: each rank takes batch/%d images "
                   "of a step\nHINT: give a --batch divisible by %d (for example %u)", t->config.batch, t->size, t->size,
                   t->size, (t->config.batch / (uint32_t)t->size + 1) * (uint32_t)t->size);
        return -1;
    }
    t->shape.images = t->config.batch / (uint32_t)t->size;
    t->ev_cap = t->shape.images + SHARE_ACKS_MAX + SHARE_EVENTS_MAX;
    t->ev_out = malloc(t->ev_cap * sizeof *t->ev_out);
    t->states = calloc((size_t)t->size, sizeof *t->states);
    t->dup_epoch = malloc(SHARE_ACKS_MAX * sizeof *t->dup_epoch);
    t->dup_index = malloc(SHARE_ACKS_MAX * sizeof *t->dup_index);
    t->ids_mine = calloc(t->shape.images, sizeof *t->ids_mine);
    t->ids_all = calloc((size_t)t->size * t->shape.images, sizeof *t->ids_all);
    t->drop = malloc(t->shape.images);
    t->drop_counts = calloc((size_t)t->size, sizeof *t->drop_counts);
    if (!t->ev_out || !t->states || !t->dup_epoch || !t->dup_index || !t->ids_mine || !t->ids_all || !t->drop ||
        !t->drop_counts) {
        errmsg_set(err, errlen, "out of memory for the exchange between ranks");
        return -1;
    }
    return 0;
}

trainer_t *trainer_new(const trainer_options_t *o, dist_t *d, char *err, size_t errlen)
{
    trainer_t *t = calloc(1, sizeof *t);
    if (!t) {
        errmsg_set(err, errlen, "out of memory for the trainer");
        return NULL;
    }
    t->o = o;
    t->d = d;
    t->rank = dist_rank(d);
    t->size = dist_size(d);
    trainer_config_from_options(&t->config, o);
    snprintf(t->out, sizeof t->out, "%s", o->out);
    t->stage_id = transport_identity("trainer");
    t->resuming = o->resume != NULL;
    if ((t->resuming ? setup_resume(t, err, errlen) : check_fresh_folder(t->out, err, errlen)) ||
        setup_network(t, err, errlen) || setup_ranks(t, err, errlen)) {
        trainer_destroy(&t);
        return NULL;
    }
    schedule_plan(&t->config);
    /* rank 0 reports for the run */
    report_init(&t->report, t->config.batch, o->quiet || t->rank > 0, t->seconds_before);
    return t;
}

void trainer_destroy(trainer_t **self_p)
{
    trainer_t *t = *self_p;
    if (!t)
        return;
    feed_destroy(&t->feed);
    model_destroy(&t->model);
    report_close(&t->report);
    control_destroy(&t->control);
    transport_close(&t->eval);
    epochs_release(&t->restored);
    free(t->ev_out);
    free(t->ev_all);
    free(t->states);
    free(t->dup_epoch);
    free(t->dup_index);
    free(t->ids_mine);
    free(t->ids_all);
    free(t->drop);
    free(t->drop_counts);
    free(t);
    *self_p = NULL;
}

/* ---- where the run stands ---- */

/* The epoch training is in: the oldest one not complete, which a restarted
 * loader starts from. */
static uint32_t training_epoch(trainer_t *t)
{
    int known = 0;
    uint32_t e = t->feed ? feed_epoch(t->feed, &known) : 0;
    if (known)
        return e;
    if (t->config.dataset_size)
        return (uint32_t)(t->images_seen / t->config.dataset_size);
    return t->last_batch_epoch;
}

static double current_epoch(const trainer_t *t)
{
    if (t->config.dataset_size)
        return (double)t->images_seen / (double)t->config.dataset_size;
    return (double)t->last_batch_epoch;
}

static void publish_stats(trainer_t *t)
{
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    proto_stat_t st[] = {
        { "step", (double)t->step },
        { "total_steps", (double)t->config.total_steps },
        { "loss", (double)t->report.last_loss },
        { "images_per_s", report_images_per_s(&t->report) },
        { "data_wait", report_wait_share(&t->report) },
        { "viewbatches", (double)fs.viewbatches },
        { "dropped", (double)fs.dropped },
        { "duplicates", (double)fs.duplicates },
        { "skipped", (double)fs.skipped },
    };
    control_publish_stats(t->control, st, sizeof st / sizeof st[0]);
}

/* ---- checkpoints ---- */

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

/* Sends a Checkpoint message without ever waiting; one that cannot go now
 * is dropped (the file is on disk anyway). */
static void tell_evaluator(trainer_t *t, const char *path, long epoch)
{
    if (!t->eval)
        return;
    proto_checkpoint_t c;
    memset(&c, 0, sizeof c);
    c.step = (uint64_t)t->step;
    c.epoch = (uint32_t)epoch;
    snprintf(c.method, sizeof c.method, "%s", trainer_method_name(t->config.method));
    const char *desc = nn_net_desc(t->model->net);
    if (strlen(desc) < sizeof c.arch)
        snprintf(c.arch, sizeof c.arch, "%s", desc);
    else
        snprintf(c.arch, sizeof c.arch, "%s", t->config.arch);   /* the file has the full description */
    snprintf(c.path, sizeof c.path, "%s", path);
    proto_buf_t b;
    proto_buf_init(&b);
    char perr[PROTO_ERR_MAX];
    if (proto_checkpoint_encode(&b, &c, perr, sizeof perr) == 0) {
        if (b.len)
            zmq_send(t->eval, b.data, b.len, ZMQ_DONTWAIT);
    } else {
        console_log("cannot encode the Checkpoint message: %s", perr);
    }
    proto_buf_release(&b);
}

static int save_checkpoint(trainer_t *t)
{
    char path[RUNDIR_MAX_PATH], state[RUNDIR_MAX_PATH + 8], err[MSG_MAX];
    rundir_ckpt_path(path, sizeof path, t->out, t->step);
    rundir_state_path(state, sizeof state, path);
    long epoch = (long)floor(current_epoch(t));
    if (nn_ckpt_save(path, t->model->net, t->model->opt, trainer_method_name(t->config.method), t->step, epoch,
                     err, sizeof err)) {
        console_log("checkpoint failed: %s", err);
        return -1;
    }
    /* the moving average beside it: what the evaluator is given */
    char ema[RUNDIR_MAX_PATH + 8];
    rundir_ema_path(ema, sizeof ema, path);
    if (t->model->ema) {
        model_ema_swap(t->model);
        int rc = nn_ckpt_save(ema, t->model->net, NULL, trainer_method_name(t->config.method), t->step, epoch,
                              err, sizeof err);
        model_ema_swap(t->model);
        if (rc) {
            console_log("checkpoint failed: the weights' average: %s", err);
            return -1;
        }
    }
    train_state_t s = {
        .config = t->config,
        .step = t->step,
        .images_seen = t->images_seen,
        .rng = t->rng,
        .train_seconds = report_seconds(&t->report),
        /* exactly the samples of the steps done so far: this thread trains no other meanwhile */
        .epoch_sets = feed_epochs_json(t->feed),
    };
    if (!s.epoch_sets)
        snprintf(err, sizeof err, "out of memory for the per-epoch state");
    if (!s.epoch_sets || rundir_state_save(state, &s, err, sizeof err) ||
        rundir_point_latest(t->out, path, err, sizeof err)) {
        rundir_state_release(&s);
        console_log("checkpoint failed: %s", err);
        return -1;
    }
    rundir_state_release(&s);
    rundir_prune(t->out, t->o->keep, t->step);
    char real[PATH_MAX], real_ema[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof real, "%s", path);
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", real);
    t->last_ckpt_step = t->step;
    if (t->model->ema && !realpath(ema, real_ema)) {
        size_t n = strnlen(ema, sizeof real_ema - 1);
        memcpy(real_ema, ema, n);
        real_ema[n] = '\0';
    }
    tell_evaluator(t, t->model->ema ? real_ema : real, epoch);
    return 0;
}

/* ---- the model, built when the first batch shows the input shape ---- */

/* --ema: the weights' moving average starts at the weights, or, resumed,
 * at the average saved beside the checkpoint (rank 0 alone keeps it: it
 * alone saves). */
static int start_average(trainer_t *t)
{
    model_t *m = t->model;
    if (model_ema_start(m, (float)t->config.ema)) {
        console_log("out of memory for the weights' moving average");
        return -1;
    }
    m->ema_updates = t->step;
    if (!t->resuming)
        return 0;
    char ema[RUNDIR_MAX_PATH + 8], err[MSG_MAX];
    rundir_ema_path(ema, sizeof ema, t->resume_path);
    model_ema_swap(m);   /* the weights wait in the average's place */
    int rc = nn_ckpt_load(ema, m->net, NULL, NULL, err, sizeof err);
    model_ema_swap(m);
    if (rc) {
        console_log("the weights' moving average starts again from the weights: %s", err);
        if (model_ema_start(m, (float)t->config.ema)) {
            console_log("out of memory for the weights' moving average");
            return -1;
        }
    }
    return 0;
}

static int build_model(trainer_t *t)
{
    char err[MSG_MAX], head[HEAD_NAME_MAX];
    const trainer_config_t *c = &t->config;
    feed_shape(t->feed, &t->shape);
    if (t->preset &&
        nn_preset_desc(t->desc, sizeof t->desc, c->arch, c->width, head_of(c, t->shape.classes, head, sizeof head),
                       (int)t->shape.channels, (int)t->shape.height, (int)t->shape.width, err, sizeof err)) {
        console_log("--arch %s on %ux%ux%u views: %s", c->arch, t->shape.channels, t->shape.height,
                    t->shape.width, err);
        return -1;
    }
    nn_optim_config oc;
    nn_optim_defaults(&oc, c->optimizer);
    oc.weight_decay = (float)c->weight_decay;
    if (c->optimizer != NN_OPT_ADAMW)
        oc.momentum = (float)c->momentum;
    int rows = (int)batch_rows(&t->shape);
    t->model = model_new(t->desc, c->method, rows, (int)t->shape.classes, &oc, (float)c->tau, err, sizeof err);
    if (!t->model) {
        console_log("cannot build the network: %s", err);
        return -1;
    }
    t->model->decoupled = c->decoupled;
    if (model_set_dist(t->model, t->d, c->sync_bn, err, sizeof err)) {
        console_log("cannot spread the network over %d ranks: %s", t->size, err);
        return -1;
    }
    if (t->resuming && t->rank > 0) {
        /* rank 0's parameters and optimizer state come below */
    } else if (t->resuming) {
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
            t->rng = c->seed;
        nn_net_init_params(t->model->net, splitmix64_next(&t->rng));
    }
    if (model_broadcast(t->model, 0, err, sizeof err)) {
        console_log("cannot copy rank 0's parameters to the other ranks: %s", err);
        return -1;
    }
    if (c->ema > 0 && t->rank == 0 && start_average(t))
        return -1;
    char total[96];
    if (c->minutes > 0 && !c->total_steps)
        snprintf(total, sizeof total, "%g minutes (the steps planned from the measured rate)", c->minutes);
    else if (c->minutes > 0)
        snprintf(total, sizeof total, "%g minutes in all (%ld steps planned so far)", c->minutes, c->total_steps);
    else if (c->total_steps)
        snprintf(total, sizeof total, "%ld steps", c->total_steps);
    else
        snprintf(total, sizeof total, "steps known after the first epoch");
    char classes[48] = "";
    if (c->method == TRAIN_SUPERVISED || c->method == TRAIN_PRETEXT)
        snprintf(classes, sizeof classes, " (%u classes)", t->shape.classes);
    char ranks[96] = "";
    if (t->size > 1)
        snprintf(ranks, sizeof ranks, " over %d ranks (%u images each, %s batch norm)", t->size, t->shape.images,
                 c->sync_bn ? "synchronised" : "per-rank");
    if (t->rank > 0)
        return 0;
    char warmup[48];
    if (c->warmup_steps < 0)
        snprintf(warmup, sizeof warmup, "%.0f%% of the steps", 100 * TRAINER_WARMUP_SHARE);
    else
        snprintf(warmup, sizeof warmup, "%ld steps", c->warmup_steps);
    console_log("%s%s, %s, %u images%s (%d views of %ux%ux%u) per step, %s lr %.4g, weight decay %.2g, "
                "warm-up %s, %s", trainer_method_name(c->method), classes, c->arch, c->batch, ranks, rows,
                t->shape.channels, t->shape.height, t->shape.width, nn_optim_kind_name(c->optimizer), c->lr,
                c->weight_decay, warmup, total);
    return 0;
}

/* ---- bookkeeping between steps ---- */

static void housekeeping(trainer_t *t, double now)
{
    trainer_config_t *c = &t->config;
    if (t->rank == 0) {
        /* the other ranks' dropped copies come to rank 0 in the exchange */
        control_ack_duplicates(t->control, t->feed);
        report_epochs(&t->report, t->feed, t->step, c, 0);
    }
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    if (!c->dataset_size && fs.epoch_count && t->rank == 0) {
        c->dataset_size = fs.epoch_count;
        if (!c->total_steps) {
            c->total_steps = schedule_total_steps(c);
            report_total(&t->report, c->total_steps);
        }
        if (c->minutes > 0)
            console_log("the loader's epoch has %" PRIu64 " images", c->dataset_size);
        else
            console_log("the loader's epoch has %" PRIu64 " images: %ld steps in all", c->dataset_size,
                        c->total_steps);
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
                    fs.skipped, c->classes - 1, fs.last_skipped_index, (int)fs.last_skipped_label,
                    unlabeled ? "--method supervised needs labeled images (class folders, IDX or CIFAR); "
                                "train unlabeled ones with simclr or rotnet"
                              : "--classes N must exceed the largest label");
        t->skips_logged = fs.skipped;
        t->last_skip_log = now;
    }
    /* the beats that came while a step computed are read before anyone is found silent */
    control_hear(t->control, now);
    if (now >= t->next_heartbeat) {
        control_publish(t->control, PROTO_CONTROL_HEARTBEAT, training_epoch(t), t->step);
        control_publish_have(t->control, t->feed, t->step);
        if (t->control)
            publish_stats(t);
        t->next_heartbeat = now + HEARTBEAT_S;
    }
}

/* ---- the ranks of a data-parallel run agree ---- */

/* Queues this rank's trained samples for the other ranks. */
static void share_trained(trainer_t *t, const batch_t *b)
{
    for (uint32_t i = 0; i < b->filled && t->n_out < t->ev_cap; i++)
        t->ev_out[t->n_out++] = (feed_event_t){ .kind = FEED_EV_TRAINED, .epoch = b->epoch[i], .value = b->index[i] };
}

/* Acknowledges, on rank 0, the samples another rank trained, skipped or
 * dropped as copies. */
static void ack_events(trainer_t *t, const feed_event_t *ev, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].kind != FEED_EV_TRAINED && ev[i].kind != FEED_EV_SKIPPED && ev[i].kind != FEED_EV_ACK)
            continue;
        t->dup_epoch[k] = ev[i].epoch;
        t->dup_index[k++] = ev[i].value;
        if (k == SHARE_ACKS_MAX) {
            control_publish_acks(t->control, t->dup_epoch, t->dup_index, k);
            k = 0;
        }
    }
    if (k)
        control_publish_acks(t->control, t->dup_epoch, t->dup_index, k);
}

/* Every rank's state and events to every rank: each applies the others'
 * events to its own bookkeeping (so that rank 0's epochs, Have and
 * checkpoints are the whole run's), rank 0 acknowledges them, and all take
 * rank 0's schedule and the same decision. A world of one only decides. */
static int agree(trainer_t *t, const rank_state_t *mine, agreed_t *a)
{
    char err[MSG_MAX];
    if (t->size == 1) {
        a->step = mine->have_batch;
        a->stop = mine->stop;
        a->stream_over = mine->stream_over;
        return 0;
    }
    double t0 = console_now();
    t->n_out += feed_take_events(t->feed, t->ev_out + t->n_out, t->ev_cap - t->n_out);
    if (t->rank > 0) {
        size_t room = t->ev_cap - t->n_out, max = room < SHARE_ACKS_MAX ? room : SHARE_ACKS_MAX;
        size_t n = feed_take_duplicates(t->feed, t->dup_epoch, t->dup_index, max);
        for (size_t i = 0; i < n; i++)
            t->ev_out[t->n_out++] = (feed_event_t){ .kind = FEED_EV_ACK, .epoch = t->dup_epoch[i],
                                                    .value = t->dup_index[i] };
    }
    rank_state_t st = *mine;
    st.n_events = (uint32_t)t->n_out;
    if (dist_allgather_bytes(t->d, &st, t->states, sizeof st, err, sizeof err))
        goto fail;
    size_t most = 0;
    for (int r = 0; r < t->size; r++)
        if (t->states[r].n_events > most)
            most = t->states[r].n_events;
    if (most) {
        if (most > t->ev_all_cap) {
            feed_event_t *all = realloc(t->ev_all, (size_t)t->size * most * sizeof *all);
            if (!all) {
                snprintf(err, sizeof err, "out of memory for %zu events of %d ranks", most, t->size);
                goto fail;
            }
            t->ev_all = all;
            t->ev_all_cap = most;
        }
        /* every rank sends `most` records (all have the same ev_cap); only its n_events count */
        if (most > t->ev_cap) {
            snprintf(err, sizeof err, "%zu events from one rank, at most %zu", most, t->ev_cap);
            goto fail;
        }
        memset(t->ev_out + t->n_out, 0, (most - t->n_out) * sizeof *t->ev_out);
        if (dist_allgather_bytes(t->d, t->ev_out, t->ev_all, most * sizeof *t->ev_out, err, sizeof err))
            goto fail;
        t->sync_bytes += (double)most * sizeof *t->ev_out;
    }
    t->n_out = 0;
    memset(a, 0, sizeof *a);
    a->step = 1;
    for (int r = 0; r < t->size; r++) {
        const rank_state_t *s = &t->states[r];
        a->step &= s->have_batch != 0;
        a->stop |= s->stop != 0;
        a->stream_over |= s->stream_over != 0;
        if (r == t->rank || !s->n_events)
            continue;
        const feed_event_t *ev = t->ev_all + (size_t)r * most;
        feed_merge(t->feed, ev, s->n_events);
        if (t->rank == 0)
            ack_events(t, ev, s->n_events);
    }
    trainer_config_t *c = &t->config;
    const rank_state_t *root = &t->states[0];
    if (t->rank > 0 && ((long)root->total_steps != c->total_steps || root->dataset_size != c->dataset_size)) {
        c->dataset_size = root->dataset_size;
        c->total_steps = (long)root->total_steps;
        report_total(&t->report, c->total_steps);
    }
    c->warmup_steps = (long)root->warmup_steps;
    t->sync_seconds += console_now() - t0;
    t->sync_bytes += sizeof st;
    return 0;
fail:
    console_log("the ranks cannot exchange their state: %s", err);
    return -1;
}

/* Of the images drop_copies takes out as copies of what a lower rank holds,
 * those whose holder also took images out and so gave its batch back to be
 * filled up: the holder's next batch may be another one, with the original
 * waiting behind it, so a later copy must be taken here again (else, at the
 * end of the data, this rank could be left unable to fill its batch). A
 * holder that took nothing out keeps its batch and trains the original at
 * the next step. */
static void mark_readmit(trainer_t *t, uint32_t per)
{
    const batch_id_t *mine = t->ids_all + (size_t)t->rank * per;
    for (uint32_t i = 0; i < per; i++) {
        if (!t->drop[i])
            continue;
        for (int q = 0; q < t->rank; q++) {
            const batch_id_t *theirs = t->ids_all + (size_t)q * per;
            int held = 0;
            for (uint32_t j = 0; j < per && !held; j++)
                held = theirs[j].epoch == mine[i].epoch && theirs[j].index == mine[i].index;
            if (held) {
                if (t->drop_counts[q] > 0)
                    t->drop[i] = FEED_DROP_READMIT;
                break;   /* the lowest holder is the one that keeps it */
            }
        }
    }
}

/* Before each step of a data-parallel run every rank shows the others the
 * images of its batch, so that none is trained twice: a copy the loader sent
 * again can wait on one rank while its original waits on another. A rank
 * takes out of its batch the images a lower rank holds for this step and
 * those another rank trained since the batch was assembled (the exchange
 * after each step told it), and has the feed fill it up again. 1: every
 * batch is clean, step; 0: some rank took images out, no step this time
 * (*bp is NULL on those ranks); -1: the exchange failed. */
static int drop_copies(trainer_t *t, batch_t **bp)
{
    char err[MSG_MAX];
    batch_t *b = *bp;
    uint32_t per = t->shape.images;
    double t0 = console_now();
    for (uint32_t i = 0; i < per; i++)
        t->ids_mine[i] = (batch_id_t){ .epoch = b->epoch[i], .index = b->index[i] };
    if (dist_allgather_bytes(t->d, t->ids_mine, t->ids_all, per * sizeof *t->ids_mine, err, sizeof err))
        goto fail;
    memset(t->drop, 0, per);
    feed_mark_done(t->feed, b, t->drop);
    batch_mark_copies(t->ids_all, t->rank, per, t->drop);
    int32_t mine = 0;
    for (uint32_t i = 0; i < per; i++)
        mine += t->drop[i];
    if (dist_allgather_bytes(t->d, &mine, t->drop_counts, sizeof mine, err, sizeof err))
        goto fail;
    t->sync_seconds += console_now() - t0;
    t->sync_bytes += (double)per * sizeof *t->ids_mine + sizeof mine;
    int64_t any = 0;
    for (int r = 0; r < t->size; r++)
        any += t->drop_counts[r];
    if (!any)
        return 1;
    if (mine) {
        mark_readmit(t, per);
        feed_refill(t->feed, b, t->drop);
        *bp = NULL;
        t->copies_dropped += (uint64_t)mine;
    }
    return 0;
fail:
    console_log("the ranks cannot compare their batches: %s", err);
    return -1;
}

/* This rank's part of the decision. */
static void rank_state(trainer_t *t, const batch_t *b, double now, rank_state_t *st)
{
    feed_stats_t fs;
    feed_stats(t->feed, &fs);
    memset(st, 0, sizeof *st);
    st->have_batch = b != NULL;
    st->stop = transport_stop != 0;
    st->stream_over = !b && fs.end_of_stream && now - fs.last_data >= EOS_IDLE_S;
    st->total_steps = t->config.total_steps;
    st->warmup_steps = t->config.warmup_steps;
    st->dataset_size = t->config.dataset_size;
}

/* ---- the run ---- */

typedef enum { END_DONE, END_SIGNAL, END_STREAM, END_DIVERGED, END_FAILED } end_reason_t;
static const char *const end_names[] = { "done", "signal", "end of stream", "diverged", "failed" };

/* A time budget: the total that ends training when the time is up, at the
 * rate of this process's steps so far; the other ranks take rank 0's. */
static void plan_budget(trainer_t *t)
{
    double now = console_now(), spent = now - t->report.run_start;
    double rate = spent > 0 ? (double)(t->step - t->first_step) / spent : 0;
    schedule_budget(&t->config, t->step, rate, report_seconds(&t->report));
    report_total(&t->report, t->config.total_steps);
}

/* One step on the batch every rank holds; END_DONE to go on. */
static end_reason_t step_once(trainer_t *t, batch_t *b, double *period_start, double *wait)
{
    const trainer_config_t *c = &t->config;
    if (!t->model) {
        if (build_model(t))
            return END_FAILED;
        /* the wait for the pipeline to start is not data wait */
        *period_start = report_start(&t->report, t->step, c->total_steps);
        t->first_step = t->step;
        *wait = 0;
    }
    float lr = schedule_lr(c, t->step);
    float acc;
    float loss = model_step(t->model, b, lr, &acc);
    if (t->model->comm_failed) {
        console_log("step %ld: %s", t->step + 1, t->model->comm_error);
        return END_FAILED;
    }
    t->last_batch_epoch = b->max_epoch;
    if (isfinite(loss)) {
        feed_trained(t->feed, b);
        control_publish_acks(t->control, b->epoch, b->index, b->filled);
        if (t->size > 1)
            share_trained(t, b);
    }
    if (!isfinite(loss)) {
        console_log("the loss is %f at step %ld (lr %g): training diverged; nothing saved after "
                    "step %ld\nHINT: lower --lr", (double)loss, t->step + 1, (double)lr, t->last_ckpt_step);
        return END_DIVERGED;
    }
    t->step++;
    t->images_seen += c->batch;
    if (c->minutes > 0 && t->rank == 0)
        plan_budget(t);
    report_step_t rs = {
        .step = t->step, .total_steps = c->total_steps, .epoch = current_epoch(t),
        .loss = loss, .accuracy = acc, .lr = lr, .period = console_now() - *period_start, .wait = *wait,
    };
    report_step(&t->report, &rs);
    return END_DONE;
}

static end_reason_t train(trainer_t *t)
{
    const trainer_config_t *c = &t->config;
    double wait = 0, period_start = 0;
    batch_t *b = NULL;   /* held until every rank has one */
    end_reason_t why;
    t->last_wait_log = console_now();
    for (;;) {
        double t0 = console_now();
        if (!b && !(c->total_steps && t->step >= c->total_steps))
            b = feed_take(t->feed, TAKE_SLICE_MS);
        double now = console_now();
        wait += now - t0;
        housekeeping(t, now);
        rank_state_t mine;
        agreed_t a;
        rank_state(t, b, now, &mine);
        if (agree(t, &mine, &a)) {
            why = END_FAILED;
            break;
        }
        if (a.stop) {
            why = END_SIGNAL;
            break;
        }
        if (c->total_steps && t->step >= c->total_steps) {
            why = END_DONE;
            break;
        }
        if (!a.step) {
            if (a.stream_over) {
                why = END_STREAM;
                break;
            }
            feed_stats_t fs;
            feed_stats(t->feed, &fs);
            if (!t->model && now - t->last_wait_log >= WAIT_LOG_S) {
                console_log("waiting for ViewBatches on %s (%" PRIu64 " received, %" PRIu64 " dropped)",
                            t->bind, fs.viewbatches, fs.dropped);
                t->last_wait_log = now;
            }
            continue;
        }
        if (t->size > 1) {
            int clean = drop_copies(t, &b);
            if (clean < 0) {
                why = END_FAILED;
                break;
            }
            if (!clean)
                continue;
        }
        why = step_once(t, b, &period_start, &wait);
        feed_give_back(t->feed, b);
        b = NULL;
        if (why != END_DONE)
            break;
        if (t->size > 1) {
            /* the others' samples of this step, before a checkpoint records them */
            rank_state(t, NULL, console_now(), &mine);
            if (agree(t, &mine, &a)) {
                why = END_FAILED;
                break;
            }
        }
        if (t->rank == 0 && (t->step % t->o->ckpt_every == 0 || t->step == c->total_steps)) {
            if (save_checkpoint(t)) {
                why = END_FAILED;
                break;
            }
        }
        period_start = console_now();
        wait = 0;
    }
    if (b)
        feed_give_back(t->feed, b);
    return why;
}

/* rundir_record_kept_fn: the epoch records the resumed checkpoint counts as
 * written stay in metrics.jsonl; the others are written again. */
static int record_kept(uint32_t epoch, void *arg)
{
    return epochs_record_out(arg, epoch);
}

/* The run folder, its metrics file and the sockets. */
static int open_run(trainer_t *t)
{
    char err[MSG_MAX];
    const trainer_options_t *o = t->o;
    if (t->rank > 0)
        goto feed;   /* rank 0 alone writes the run folder, publishes Control and tells the evaluator */
    if (rundir_make(t->out, err, sizeof err)) {
        console_log("%s", err);
        return -1;
    }
    int stale = rundir_clean_tmp(t->out);
    if (stale > 0)
        console_log("removed %d temporary file(s) that a killed trainer left in %s", stale, t->out);
    t->report.metrics = rundir_metrics_open(t->out, t->resuming ? t->step : -1,
                                            t->have_restored ? record_kept : NULL, &t->restored, err, sizeof err);
    if (!t->report.metrics) {
        console_log("%s", err);
        return -1;
    }
    if (o->control && !(t->control = control_new(o->control, t->stage_id)))
        return -1;
    if (o->evaluator && !(t->eval = open_evaluator(o->evaluator)))
        return -1;
feed:
    t->feed = feed_new(t->bind, o->hwm, &t->shape, o->queue, t->have_restored ? &t->restored : NULL, t->size > 1,
                       err, sizeof err);
    if (!t->feed) {
        console_log("%s", err);
        return -1;
    }
    if (t->rank > 0)
        console_log("rank %d of %d: listening on %s for ViewBatches", t->rank, t->size, t->bind);
    else
        console_log("listening on %s for ViewBatches, control on %s, evaluator %s, run folder %s%s", t->bind,
                    cli_endpoint_name(o->control), cli_endpoint_name(o->evaluator), t->out,
                    t->size > 1 ? " (rank 0)" : "");
    return 0;
}

/* The run trained its last step: an epoch whose samples are all done may
 * still wait for its END_OF_EPOCH, which the loader sent after its last
 * sample and which may reach another rank, or this one, a little after
 * that sample's step. Waits for it (at most END_GRACE_S), so that the
 * epoch's record is complete; the ranks exchange their events meanwhile. */
static void await_epoch_ends(trainer_t *t)
{
    char err[MSG_MAX];
    for (double until = console_now() + END_GRACE_S;;) {
        /* every rank leaves at the same round: a signal counts once agreed */
        int stop = transport_stop != 0;
        if (t->size > 1) {
            rank_state_t mine;
            agreed_t a;
            rank_state(t, NULL, console_now(), &mine);
            if (agree(t, &mine, &a))
                return;
            stop = a.stop;
        }
        if (stop)
            return;
        int32_t waiting = t->rank == 0 && console_now() < until && feed_end_missing(t->feed, t->config.dataset_size);
        if (t->size > 1 && dist_broadcast(t->d, &waiting, sizeof waiting, 0, err, sizeof err)) {
            console_log("the ranks cannot agree on the end: %s", err);
            return;
        }
        if (!waiting)
            return;
        usleep(END_GRACE_TICK_US);
    }
}

int trainer_run(trainer_t *t)
{
    if (open_run(t))
        return -1;
    double start = console_now();
    end_reason_t why = train(t);
    if (why == END_DONE && t->model)
        await_epoch_ends(t);
    if (t->model)
        report_finish(&t->report);
    if (why == END_STREAM && t->step == 0 && !t->model) {
        console_log("the stream ended before a full batch of %u images arrived", t->config.batch);
        why = END_FAILED;
    } else if (why == END_STREAM) {
        console_log("the stream ended at step %ld%s", t->step,
                    t->config.total_steps && t->step < t->config.total_steps ? " before the planned total" : "");
    }
    int rc = (why == END_DONE || why == END_SIGNAL || why == END_STREAM) ? 0 : -1;
    if (t->copies_dropped)
        console_log("rank %d: %" PRIu64 " image(s) taken out of batches before their step: copies of samples "
                    "another rank held or had trained", t->rank, t->copies_dropped);
    if (t->rank > 0) {
        if (t->model)
            console_log("rank %d: %ld steps, %.3f s in collectives", t->rank, t->step,
                        t->model->comm_seconds + t->sync_seconds);
        return rc;
    }
    if (t->model && why != END_DIVERGED && t->step > t->last_ckpt_step && save_checkpoint(t))
        rc = -1;
    if (t->model) {
        control_ack_duplicates(t->control, t->feed);
        report_epochs(&t->report, t->feed, t->step, &t->config, 1);
    }
    double run_start = t->report.run_start > 0 ? t->report.run_start : start;
    if (t->size > 1 && t->model) {
        t->report.ranks = t->size;
        t->report.comm_seconds = t->model->comm_seconds + t->sync_seconds;
        t->report.comm_bytes = t->model->comm_bytes + t->sync_bytes;
    }
    if (t->config.minutes > 0 && t->model)
        console_log("time budget: %ld steps in %.1f of the %g minutes", t->step, report_seconds(&t->report) / 60,
                    t->config.minutes);
    report_summary(&t->report, end_names[why], t->step, t->feed, &t->config, t->last_ckpt,
                   console_now() - run_start);
    control_stop(t->control, training_epoch(t), t->step);
    return rc;
}

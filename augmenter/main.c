/* augmenter: pulls Samples, augments them, pushes ViewBatches.
 *
 * Sockets, in each worker process:
 *   PULL  connect  tcp://127.0.0.1:5555  (--connect)  Samples and the loader's Control
 *   PUSH  connect  tcp://127.0.0.1:5556  (--push)     ViewBatches of --batch samples, and
 *                                                     the loader's END_OF_EPOCH forwarded
 *   XSUB  connect  tcp://127.0.0.1:5558  (--control)  the trainer's Control PUB, topic "stop"
 *                                                     (and the deprecated single-frame STOP):
 *                                                     STOP ends the run; worker 0 also takes
 *                                                     "heartbeat" and logs when the trainer's
 *                                                     heartbeats stop and resume. Up it, each
 *                                                     worker's beat every second, so that the
 *                                                     trainer sees a stopped or hung worker
 * and in the parent, once every worker has finished after an end of stream:
 *   PUSH  connect  (--push)  one Control END_OF_STREAM carrying the loader's count
 * With --curve DIR every socket is CURVE-encrypted, with DIR's client key pair
 * (transport/transport.h); a lost loader or trainer is logged, and reconnected.
 *
 * --workers N forks N single-threaded workers; PUSH/PULL spreads the samples
 * among them, and more augmenter processes, here or on other machines, add
 * workers with no other change. The loader sends END_OF_STREAM once, so it
 * reaches one worker: that worker tells the parent (a pipe), the parent tells
 * the others (SIGUSR1) to finish what is queued, each exits once DRAIN_IDLE_MS
 * pass with nothing new, and the parent sends END_OF_STREAM downstream.
 *
 * The parent replaces a worker that dies (a signal, such as the OOM killer's
 * SIGKILL, or a non-zero exit) after a back-off of RESTART_DELAY_MS doubling
 * up to RESTART_DELAY_MAX_MS; CRASH_LIMIT deaths within CRASH_WINDOW_S mean
 * something is wrong for good, and it gives up (exit status 1). What a dead
 * worker held is lost here: the loader's --exactly-once sends it again. A
 * worker that ends normally (end of stream, STOP, SIGTERM) is not replaced,
 * and a worker whose parent dies stops too (PR_SET_PDEATHSIG), so that a
 * killed augmenter leaves no orphans behind.
 *
 * The built-in operations never call libvips: on images this size their own
 * loops are faster than any libvips call (see bench/augment_bench.c --ideas).
 * libvips runs only the recipe's vips: and jpeg steps (augment/vipsstep.h),
 * and decodes and assembles the --preview grid.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>
#include <vips/vips.h>

#include "augment/augment.h"
#include "augment/preview.h"
#include "cli/cli.h"
#include "cli/defaults.h"
#include "console/console.h"
#include "errmsg/errmsg.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define DEFAULT_RECIPE    "simclr"
#define DEFAULT_SIZE      32
#define DEFAULT_CHANNELS  3
#define DEFAULT_BATCH     64
#define DEFAULT_SEED      1
#define DEFAULT_PULL_HWM  64      /* queued Samples per worker */
#define DEFAULT_PUSH_HWM  8       /* queued ViewBatches per worker */
#define MAX_WORKERS       256
#define MAX_HWM           1000000
#define POLL_MS           50      /* wake-up period of the worker loop */
#define FLUSH_MS          100     /* a partial batch waits at most this long for more */
#define DRAIN_IDLE_MS     500     /* after end of stream: quiet this long means drained */
#define MAX_WARNINGS      10      /* malformed-message warnings printed per worker */
#define RESTART_DELAY_MS      500     /* a dead worker is replaced after this ... */
#define RESTART_DELAY_MAX_MS  4000    /* ... doubled for each recent death, up to this */
#define CRASH_LIMIT           5       /* this many worker deaths ... */
#define CRASH_WINDOW_S        60.0    /* ... within this long: give up */

/* Well-known per-channel statistics for --normalize. */
static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
static const float cifar10_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar10_std[3] = {0.2470f, 0.2435f, 0.2616f};

typedef struct {
    const char *connect, *push;
    const char *control;      /* NULL ("none"): no control socket */
    const char *curve;        /* --curve key folder, or NULL */
    int workers;
    const char *recipe_text;
    aug_recipe_t recipe;
    aug_config_t cfg;
    uint32_t batch;
    int pull_hwm, push_hwm;
    const char *preview, *output;
    int quiet;
} options_t;

/* Records a worker writes to the parent's pipe (atomic: < PIPE_BUF). COUNTS
 * carry what happened since the worker's previous COUNTS, after every batch
 * and at the end, so that the parent's summary includes workers that died.
 * STOP: the worker heard the trainer's STOP, so no worker is to be replaced. */
enum { REPORT_END_OF_STREAM = 1, REPORT_COUNTS = 2, REPORT_STOP = 3 };
typedef struct {
    uint32_t kind;
    uint32_t epoch;
    uint64_t samples;       /* END_OF_STREAM: the loader's count */
    uint64_t batches;
    uint64_t malformed;
} report_t;

static volatile sig_atomic_t drain_requested = 0;

static void on_drain_signal(int sig)
{
    (void)sig;
    drain_requested = 1;
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: augmenter [options]\n"
            "       augmenter --preview IMAGE -o GRID.png [--size N] [--seed N]\n"
            "\n"
            "Pulls Samples from the loader, applies random augmentations and pushes\n"
            "ViewBatches (K views per sample, C x S x S each) to the trainer.\n"
            "\n"
            "  --connect EP     loader endpoint to pull Samples from (default %s)\n"
            "  --push EP        trainer endpoint to push ViewBatches to (default %s)\n"
            "  --control EP     trainer's Control PUB to subscribe to, or none (default %s)\n"
            "  --workers N      worker processes, single-threaded each (default 1)\n"
            "  --recipe R       simclr, rotnet, supervised (one view: crop and flip), or a\n"
            "                   list such as\n"
            "                   crop:scale=0.2-1,flip:p=0.5,jitter:s=0.5:p=0.8,gray:p=0.2,\n"
            "                   blur:sigma=0.1-2:p=0.5,noise:sigma=0.05,cutout:size=8,sobel:p=0\n"
            "                   (operations: crop flip jitter gray rotate cutout noise blur sobel\n"
            "                   original; views=K sets the views per sample; default %s)\n"
            "                   libvips steps: vips:NAME[:arg=LO-HI...], jpeg[:q=LO-HI] (docs/augment)\n"
            "  --size S         side of the square views (default %d)\n"
            "  --channels C     1 or 3 (default %d)\n"
            "  --normalize N    none, imagenet, cifar10, or MEAN/STD as m0,m1,m2/s0,s1,s2\n"
            "                   (float32 only; default none: values in [0, 1])\n"
            "  --dtype T        f32 or u8 (0..255, a quarter of the bytes; default f32)\n"
            "  --seed N         randomness seed; views depend on (seed, epoch, index, view)\n"
            "                   only, whichever worker computes them (default %d)\n"
            "  --batch N        samples per ViewBatch (default %d)\n"
            "  --hwm N          Samples queued per worker (default %d)\n"
            "  --curve DIR      encrypt every socket with CURVE and authenticate with the client\n"
            "                   key pair and server.public in DIR (see keygen --help)\n"
            "  --preview IMAGE  write a grid of every augmentation of IMAGE (with -o) and exit\n"
            "  -o, --output F   the grid's PNG file\n"
            "  --quiet          only errors and the final summary\n"
            "  --help\n"
            "\n"
            "Stops on a Control STOP, after the loader's END_OF_STREAM (once queued samples\n"
            "are done), or on SIGINT/SIGTERM. A worker that dies (killed by a signal, such\n"
            "as the OOM killer's SIGKILL, or failed) is replaced after %.1f s, doubled for each\n"
            "recent death up to %.0f s; after %d deaths within %.0f s the augmenter gives up.\n"
            "What a dead worker held is sent again only by a loader run with --exactly-once\n"
            "(as run.sh does). The workers stop when the augmenter dies.\n"
            "Exit status: 0 done, 1 error (or gave up), 2 bad usage.\n",
            CLI_ENDPOINT_LOADER, CLI_ENDPOINT_TRAINER, CLI_ENDPOINT_CONTROL, DEFAULT_RECIPE, DEFAULT_SIZE,
            DEFAULT_CHANNELS, DEFAULT_SEED, DEFAULT_BATCH, DEFAULT_PULL_HWM, RESTART_DELAY_MS / 1e3,
            RESTART_DELAY_MAX_MS / 1e3, CRASH_LIMIT, CRASH_WINDOW_S);
}

/* "m0,m1,m2" into v (1 value repeats). Returns how many were read, or -1. */
static int parse_floats(const char *text, float *v)
{
    int n = 0;
    const char *p = text;
    while (n < 3) {
        char *end;
        double d = strtod(p, &end);
        if (end == p) return -1;
        v[n++] = (float)d;
        if (*end == 0) break;
        if (*end != ',') return -1;
        p = end + 1;
    }
    if (n == 1) v[1] = v[2] = v[0];
    return n;
}

/* --normalize v into cfg: 0, or -1 with err set. */
static int parse_normalize(aug_config_t *cfg, const char *v, char *err, size_t errlen)
{
    cfg->normalize = 1;
    if (!strcmp(v, "none")) {
        cfg->normalize = 0;
    } else if (!strcmp(v, "imagenet")) {
        memcpy(cfg->mean, imagenet_mean, sizeof(cfg->mean));
        memcpy(cfg->std, imagenet_std, sizeof(cfg->std));
    } else if (!strcmp(v, "cifar10")) {
        memcpy(cfg->mean, cifar10_mean, sizeof(cfg->mean));
        memcpy(cfg->std, cifar10_std, sizeof(cfg->std));
    } else {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", v);
        char *slash = strchr(buf, '/');
        if (!slash) {
            errmsg_set(err, errlen, "--normalize %s: expected none, imagenet, cifar10 or m0,m1,m2/s0,s1,s2", v);
            return -1;
        }
        *slash = 0;
        int nm = parse_floats(buf, cfg->mean), ns = parse_floats(slash + 1, cfg->std);
        if (nm < 0 || ns < 0 || (nm != 1 && nm != 3) || (ns != 1 && ns != 3)) {
            errmsg_set(err, errlen, "--normalize %s: expected 1 or 3 means, '/', then 1 or 3 standard deviations", v);
            return -1;
        }
    }
    return 0;
}

enum {
    OPT_CONNECT = 256, OPT_PUSH, OPT_CONTROL, OPT_WORKERS, OPT_RECIPE, OPT_SIZE, OPT_CHANNELS,
    OPT_NORMALIZE, OPT_DTYPE, OPT_SEED, OPT_BATCH, OPT_HWM, OPT_CURVE, OPT_PREVIEW, OPT_QUIET
};

typedef struct {
    options_t *o;
    int size_given, normalize_given;
} parse_ctx;

/* One option c with value v into ctx's options: 0, or -1 with err set. */
static int parse_option(void *ctx, int c, const char *v, char *err, size_t n)
{
    parse_ctx *pc = ctx;
    options_t *o = pc->o;
    long x;
    switch (c) {
    case OPT_CONNECT: return cli_endpoint("--connect", v, CLI_REQUIRED, &o->connect, err, n);
    case OPT_PUSH: return cli_endpoint("--push", v, CLI_REQUIRED, &o->push, err, n);
    case OPT_CONTROL: return cli_endpoint("--control", v, CLI_OPTIONAL, &o->control, err, n);
    case OPT_WORKERS: return cli_int("--workers", v, 1, MAX_WORKERS, &o->workers, err, n);
    case OPT_RECIPE: o->recipe_text = v; return 0;
    case OPT_SIZE:
        if (cli_long("--size", v, 1, AUG_MAX_SIDE, &x, err, n)) return -1;
        o->cfg.size = (uint32_t)x;
        pc->size_given = 1;
        return 0;
    case OPT_CHANNELS:
        if (cli_long("--channels", v, 1, 3, &x, err, n)) return -1;
        o->cfg.channels = (uint32_t)x;
        return 0;
    case OPT_NORMALIZE:
        if (parse_normalize(&o->cfg, v, err, n)) return -1;
        pc->normalize_given = o->cfg.normalize;
        return 0;
    case OPT_DTYPE:
        if (!strcmp(v, "f32")) o->cfg.dtype = AUG_DTYPE_F32;
        else if (!strcmp(v, "u8")) o->cfg.dtype = AUG_DTYPE_U8;
        else {
            errmsg_set(err, n, "--dtype %s: expected f32 or u8", v);
            return -1;
        }
        return 0;
    case OPT_SEED: return cli_u64("--seed", v, 0, UINT64_MAX, &o->cfg.seed, err, n);
    case OPT_BATCH:
        if (cli_long("--batch", v, 1, PROTO_MAX_BATCH_SAMPLES, &x, err, n)) return -1;
        o->batch = (uint32_t)x;
        return 0;
    case OPT_HWM: return cli_int("--hwm", v, 1, MAX_HWM, &o->pull_hwm, err, n);
    case OPT_PREVIEW: o->preview = v; return 0;
    case 'o': o->output = v; return 0;
    case OPT_CURVE: o->curve = v; return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    default:
        errmsg_set(err, n, "option %d is not handled", c);
        return -1;
    }
}

/* Parses argv into o: 0, 1 when --help was asked, or -1 with err set. */
static int parse_options(options_t *o, int argc, char **argv, char *err, size_t n)
{
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, OPT_CONNECT},
        {"push", required_argument, NULL, OPT_PUSH},
        {"control", required_argument, NULL, OPT_CONTROL},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"recipe", required_argument, NULL, OPT_RECIPE},
        {"size", required_argument, NULL, OPT_SIZE},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"normalize", required_argument, NULL, OPT_NORMALIZE},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"hwm", required_argument, NULL, OPT_HWM},
        {"curve", required_argument, NULL, OPT_CURVE},
        {"preview", required_argument, NULL, OPT_PREVIEW},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->connect = CLI_ENDPOINT_LOADER;
    o->push = CLI_ENDPOINT_TRAINER;
    o->control = CLI_ENDPOINT_CONTROL;
    o->workers = 1;
    o->recipe_text = DEFAULT_RECIPE;
    o->batch = DEFAULT_BATCH;
    o->pull_hwm = DEFAULT_PULL_HWM;
    o->push_hwm = DEFAULT_PUSH_HWM;
    o->cfg.size = DEFAULT_SIZE;
    o->cfg.channels = DEFAULT_CHANNELS;
    o->cfg.dtype = AUG_DTYPE_F32;
    o->cfg.seed = DEFAULT_SEED;
    parse_ctx pc = {.o = o};
    int rc = cli_parse(argc, argv, "o:h", longopts, 'h', parse_option, &pc, err, n);
    if (rc)
        return rc;
    int size_given = pc.size_given, normalize_given = pc.normalize_given;
    if (optind < argc) {
        errmsg_set(err, n, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (o->preview) {
        if (!o->output) {
            errmsg_set(err, n, "--preview %s needs -o GRID.png", o->preview);
            return -1;
        }
        if (!size_given) o->cfg.size = 0;
        return 0;
    }
    if (o->cfg.channels == 2) {
        errmsg_set(err, n, "--channels wants 1 or 3, got 2");
        return -1;
    }
    if (o->cfg.dtype == AUG_DTYPE_U8 && normalize_given) {
        errmsg_set(err, n, "--dtype u8 carries 0..255 pixels and cannot be normalised\n"
                           "HINT: normalise in the trainer, or use --dtype f32");
        return -1;
    }
    if (aug_recipe_parse(&o->recipe, o->recipe_text, o->cfg.size, err, n))
        return -1;
    if (o->recipe.views > PROTO_MAX_VIEWS) {
        errmsg_set(err, n, "%s: too many views for a ViewBatch", o->recipe_text);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- worker */

typedef struct {
    const options_t *o;
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

static int encode_control(proto_buf_t *buf, proto_control_kind_t kind, const char *identity,
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

static int worker_run(const options_t *o, int id, int report_fd)
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
        if (drain_requested && drain_since < 0) drain_since = now_ms();
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

/* ------------------------------------------------------------------- parent */

/* The parent's side of the workers: a slot per --workers, each with a
 * running worker, a replacement waiting for its back-off, or neither. */
typedef struct {
    pid_t pid;                /* 0: none running */
    double restart_at;        /* console_now() when its replacement is due; 0: none due */
} slot_t;

typedef struct {
    const options_t *o;
    int pipe_fd[2];           /* the workers' reports: read end, write end (kept for replacements) */
    slot_t slot[MAX_WORKERS];
    int running, pending;     /* workers alive, replacements waiting */
    double death[CRASH_LIMIT];/* when the latest deaths were (a ring) */
    int deaths;               /* worker deaths so far */
    int replaced;             /* replacements started */
} supervisor_t;

/* Forks worker `id` into its slot. Returns 0, or -1 when fork fails. */
static int worker_start(supervisor_t *sv, int id)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        console_log("cannot start worker %d: fork: %s", id, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(sv->pipe_fd[0]);
#ifdef __linux__
        /* the parent's death, even by SIGKILL, stops this worker as a SIGTERM does */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
        if (getppid() != parent) _exit(0);   /* it died before prctl */
        int rc = worker_run(sv->o, id, sv->pipe_fd[1]);
        close(sv->pipe_fd[1]);
        _exit(rc);
    }
    sv->slot[id].pid = pid;
    sv->slot[id].restart_at = 0;
    sv->running++;
    return 0;
}

/* "was killed by signal 9 (Killed)" or "exited with status 1" */
static void describe_exit(int status, char *text, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(text, len, "was killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(text, len, "exited with status %d", WEXITSTATUS(status));
}

/* Worker `id` (pid, or 0 when it could not be started) died as `how` says:
 * schedules its replacement after the back-off. Returns -1 when this is the
 * CRASH_LIMIT-th death within CRASH_WINDOW_S: time to give up. */
static int worker_died(supervisor_t *sv, int id, pid_t pid, const char *how)
{
    char who[64];
    if (pid > 0) snprintf(who, sizeof(who), "worker %d (pid %ld)", id, (long)pid);
    else snprintf(who, sizeof(who), "worker %d", id);
    double now = console_now();
    sv->death[sv->deaths % CRASH_LIMIT] = now;
    sv->deaths++;
    int recent = 0;
    for (int i = 0; i < CRASH_LIMIT && i < sv->deaths; i++)
        if (now - sv->death[i] <= CRASH_WINDOW_S) recent++;
    if (recent >= CRASH_LIMIT) {
        console_log("%s %s: %d worker deaths within %.0f s; giving up\n"
                    "HINT: the lines above say how each worker ended; a SIGKILL (signal 9) that nobody "
                    "sent is often the kernel's OOM killer (see dmesg): try fewer --workers or a smaller --hwm",
                    who, how, recent, CRASH_WINDOW_S);
        return -1;
    }
    int delay_ms = RESTART_DELAY_MS;
    for (int i = 1; i < recent && delay_ms < RESTART_DELAY_MAX_MS; i++) delay_ms *= 2;
    if (delay_ms > RESTART_DELAY_MAX_MS) delay_ms = RESTART_DELAY_MAX_MS;
    sv->slot[id].restart_at = now + delay_ms / 1e3;
    sv->pending++;
    console_log("%s %s; starting a new worker %d in %.1f s (%d death(s) within %.0f s; "
                "the augmenter gives up at %d)", who, how, id, delay_ms / 1e3, recent,
                CRASH_WINDOW_S, CRASH_LIMIT);
    return 0;
}

/* Starts the replacements whose back-off is over. Returns -1 to give up. */
static int start_replacements(supervisor_t *sv)
{
    double now = console_now();
    for (int id = 0; id < sv->o->workers; id++) {
        slot_t *s = &sv->slot[id];
        if (s->restart_at <= 0 || now < s->restart_at) continue;
        sv->pending--;
        s->restart_at = 0;
        if (worker_start(sv, id)) {
            if (worker_died(sv, id, 0, "could not be replaced")) return -1;
            continue;
        }
        sv->replaced++;
        console_log("worker %d: started a new one (pid %ld), replacement %d", id, (long)s->pid, sv->replaced);
    }
    return 0;
}

/* Drops the replacements not started yet (the run is ending). */
static void cancel_replacements(supervisor_t *sv)
{
    for (int id = 0; id < sv->o->workers; id++) sv->slot[id].restart_at = 0;
    sv->pending = 0;
}

static void signal_workers(const supervisor_t *sv, int sig)
{
    for (int id = 0; id < sv->o->workers; id++)
        if (sv->slot[id].pid > 0) kill(sv->slot[id].pid, sig);
}

/* Reaps the workers that ended and schedules replacements for those that
 * died (unless `replace` is 0: the run is ending). Returns -1 to give up. */
static int reap_workers(supervisor_t *sv, int replace)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int id = 0;
        while (id < sv->o->workers && sv->slot[id].pid != pid) id++;
        if (id == sv->o->workers) continue;
        sv->slot[id].pid = 0;
        sv->running--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;   /* end of stream, STOP, SIGTERM */
        char how[128];
        describe_exit(status, how, sizeof(how));
        if (!replace) {
            console_log("worker %d (pid %ld) %s", id, (long)pid, how);
            continue;
        }
        if (worker_died(sv, id, pid, how)) return -1;
    }
    if (pid < 0 && errno == ECHILD) {   /* none left, whatever the slots say */
        for (int id = 0; id < sv->o->workers; id++) sv->slot[id].pid = 0;
        sv->running = 0;
    }
    return 0;
}

static int run_preview(const options_t *o, const char *argv0)
{
    if (VIPS_INIT(argv0)) {
        fprintf(stderr, "augmenter: libvips: %s", vips_error_buffer());
        return CLI_EXIT_FAILED;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    char err[AUG_ERR_MAX];
    int rc = aug_preview_write_recipe(o->preview, o->output, o->cfg.size, o->cfg.seed, o->recipe_text, err,
                                      sizeof err);
    if (rc) fprintf(stderr, "augmenter: %s\n", err);
    else if (!o->quiet) console_log("wrote %s", o->output);
    vips_shutdown();
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    options_t o;
    char err[1024];
    console_init("augmenter");
    int rc = parse_options(&o, argc, argv, err, sizeof err);
    if (rc) return cli_parse_exit(rc, "augmenter", usage, err);
    if (o.curve && !o.preview && transport_use_curve(o.curve, TRANSPORT_CURVE_CLIENT, err, sizeof err))
        return cli_usage_error("augmenter", "%s", err);
    if (o.preview) return run_preview(&o, argv[0]);

    /* configuration errors show here, once, before any worker starts */
    char aug_err[AUG_ERR_MAX];
    aug_t *check = aug_new(&o.recipe, &o.cfg, aug_err, sizeof aug_err);
    if (!check) {
        fprintf(stderr, "augmenter: %s\n", aug_err);
        return CLI_EXIT_USAGE;
    }
    aug_destroy(&check);
    if (!o.quiet) {
        char text[1024];
        console_log("%d worker(s), recipe %s (%s), %u views of %ux%ux%u %s per sample, batches of %u; "
                    "pull %s, push %s, control %s", o.workers, o.recipe.name,
                    aug_recipe_format(&o.recipe, text, sizeof(text)), o.recipe.views, o.cfg.channels,
                    o.cfg.size, o.cfg.size, o.cfg.dtype == AUG_DTYPE_U8 ? "u8" : "f32", o.batch,
                    o.connect, o.push, cli_endpoint_name(o.control));
    }

    transport_catch_signals();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_drain_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);   /* inherited: a worker can be told to drain at once */

    supervisor_t sv = {.o = &o};
    /* The workers' end does not block: a parent that falls behind (or is
     * stopped) never stalls a worker; its counts wait for the next report. */
    if (pipe(sv.pipe_fd) || fcntl(sv.pipe_fd[1], F_SETFL, O_NONBLOCK)) {
        perror("augmenter: pipe");
        return CLI_EXIT_FAILED;
    }
    int failed = 0;
    for (int i = 0; i < o.workers && !failed; i++)
        if (worker_start(&sv, i)) failed = 1;
    if (failed) transport_stop = 1;

    double start = console_now();
    uint64_t samples = 0, batches = 0, malformed = 0, eos_count = 0;
    uint32_t eos_epoch = 0;
    int eos = 0, stop_heard = 0, gave_up = 0, forwarded_stop = 0;
    for (;;) {
        if ((transport_stop || stop_heard) && !forwarded_stop) {
            /* Ending: no more replacements, and a worker started too late to
             * hear the trainer's STOP is told by signal. */
            cancel_replacements(&sv);
            signal_workers(&sv, SIGTERM);
            forwarded_stop = 1;
        }
        if (sv.running == 0 && sv.pending == 0) break;
        if (!forwarded_stop && start_replacements(&sv)) gave_up = 1;
        struct pollfd pfd = {.fd = sv.pipe_fd[0], .events = POLLIN};
        int n = poll(&pfd, 1, POLL_MS);
        for (; n > 0; n = poll(&pfd, 1, 0)) {
            report_t r[64];
            ssize_t got = read(sv.pipe_fd[0], r, sizeof(r));
            if (got <= 0) break;
            for (size_t k = 0; k < (size_t)got / sizeof(r[0]); k++) {
                if (r[k].kind == REPORT_END_OF_STREAM && !eos) {
                    eos = 1;
                    eos_count = r[k].samples;
                    eos_epoch = r[k].epoch;
                    drain_requested = 1;   /* inherited by a replacement forked from now on */
                    signal_workers(&sv, SIGUSR1);
                } else if (r[k].kind == REPORT_STOP) {
                    stop_heard = 1;
                } else if (r[k].kind == REPORT_COUNTS) {
                    samples += r[k].samples;
                    batches += r[k].batches;
                    malformed += r[k].malformed;
                }
            }
            if (got < (ssize_t)sizeof(r)) break;
        }
        if (reap_workers(&sv, !transport_stop && !stop_heard)) gave_up = 1;
        if (gave_up && !transport_stop) {
            failed = 1;
            transport_stop = 1;   /* stop the other workers too */
        }
    }
    close(sv.pipe_fd[0]);
    close(sv.pipe_fd[1]);

    if (eos && !transport_stop) {
        proto_buf_t buf;
        proto_buf_init(&buf);
        void *push = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, o.push, 0, "trainer");
        if (!push ||
            encode_control(&buf, PROTO_CONTROL_END_OF_STREAM, transport_identity("augmenter"), eos_epoch,
                           eos_count) ||
            transport_send(push, buf.data, buf.len)) {
            console_log("could not send END_OF_STREAM to %s", o.push);
            failed = 1;
        }
        transport_close(&push);
        transport_shutdown();
        proto_buf_release(&buf);
    }
    double el = console_now() - start;
    console_log("%s: %" PRIu64 " samples, %" PRIu64 " views in %" PRIu64 " batches in %.1f s "
                "(%.0f views/s), %" PRIu64 " malformed messages dropped, %d worker(s) replaced",
                gave_up ? "gave up" : transport_stop ? "stopped" : eos ? "end of stream" : "done", samples,
                samples * o.recipe.views, batches, el, el > 0 ? samples * o.recipe.views / el : 0.0,
                malformed, sv.replaced);
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

/* loader/options: command-line parsing of the loader (options.h). */
#include "loader/options.h"

#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/defaults.h"
#include "errmsg/errmsg.h"
#include "loader/queue.h"
#include "proto/proto.h"

void loader_usage(FILE *f)
{
    fprintf(f,
            "Usage: loader --data PATH [options]\n"
            "Reads an image dataset and streams decoded images (8-bit HWC) as Sample messages\n"
            "on a ZeroMQ PUSH socket, shuffled every epoch.\n"
            "\n"
            "Dataset:\n"
            "  --data PATH        dataset to read (required): a folder with one sub-folder per\n"
            "                     class, a flat folder of images (unlabeled), IDX files\n"
            "                     (*-images-idx3-ubyte[.gz] or a folder holding train-*), or\n"
            "                     CIFAR-10/100 binary batches (a .bin file or their folder)\n"
            "  --format F         auto|folder|idx|cifar10|cifar100 (default auto: detect)\n"
            "  --channels N       0 keeps each image's own (grayscale 1, colour 3), 1 or 3\n"
            "                     forces it (default 0); alpha is always dropped\n"
            "  --max-side N       shrink larger images while loading so that neither side\n"
            "                     exceeds N pixels (default 0: no limit)\n"
            "  --max-pixels N     skip images whose header says more than N pixels, before\n"
            "                     decoding (default %u: 50 megapixels)\n"
            "  --limit N          use only the first N items (default 0: all)\n"
            "  --shard I/N        serve only items whose index %% N == I, when N loaders split\n"
            "                     one dataset (default 0/1)\n"
            "  --hold-out F       leave out the class-balanced test part (fraction F of the\n"
            "                     labeled items) that the evaluator holds out of this dataset\n"
            "                     with --test-fraction F, so training never sees it (default 0)\n"
            "  --hold-out-seed N  the evaluator's --seed for that split (default %d)\n"
            "\n"
            "Epochs:\n"
            "  --epochs N         epochs to stream, 0 = until stopped (default 1)\n"
            "  --start-epoch N    number the first epoch N (its shuffle order and messages),\n"
            "                     to continue a resumed training run (default 0)\n"
            "  --seed N           shuffle seed: same seed, same orders (default %d)\n"
            "  --cache-mb N       memory for decoded images; the first epoch fills it, later\n"
            "                     epochs read it and decode only what did not fit (default %d,\n"
            "                     0 disables)\n"
            "  --threads N        decoding threads (default: one per CPU core)\n"
            "\n"
            "Sockets:\n"
            "  --bind ENDPOINT    PUSH socket for Samples (default %s)\n"
            "  --control ENDPOINT SUB socket connected to the trainer's Control PUB; a STOP\n"
            "                     message ends the run (default %s, \"none\" to disable)\n"
            "  --hwm N            high-water mark in messages of the PUSH socket, per augmenter\n"
            "                     connection (default %d)\n"
            "  --queue-mb N       and in bytes: at most N MB of Samples queued per connection; the\n"
            "                     high-water mark becomes the number of Samples that fit, from\n"
            "                     the largest of %d images decoded at start (default %d)\n"
            "  --curve DIR        encrypt and authenticate both sockets with CURVE, with the keys\n"
            "                     in DIR (server and client pairs, allowed/; see keygen --help)\n"
            "  --exactly-once     every Sample is trained once per epoch: keep what the trainer\n"
            "                     has not acknowledged (Ack messages on --control) and send it\n"
            "                     again when a worker died with it, or a trainer resumed from a\n"
            "                     checkpoint lost it; start at the running trainer's epoch. Needs\n"
            "                     a trainer that sends Acks and Haves (default off)\n"
            "  --resend-after S   --exactly-once: a Sample goes out again after S seconds without\n"
            "                     an Ack at the least, and after 3 times the slowest Ack of the\n"
            "                     last 40 s (default %.0f)\n"
            "\n"
            "Other:\n"
            "  --count            print the number of items this loader would serve (after\n"
            "                     --limit and --shard) on stdout and exit\n"
            "  --quiet            no progress line (warnings and the summary still print)\n"
            "  --help             this text\n"
            "\n"
            "After each epoch a Control END_OF_EPOCH (count = Samples sent in that epoch) is\n"
            "sent, and END_OF_STREAM at the end. SIGINT/SIGTERM stop the run. Exit status: 0\n"
            "done or stopped, 1 runtime failure, 2 bad options or missing/empty dataset.\n",
            DATASET_DEFAULT_MAX_PIXELS, LOADER_DEFAULT_HOLD_OUT_SEED, LOADER_DEFAULT_SEED, LOADER_DEFAULT_CACHE_MB, CLI_ENDPOINT_LOADER, CLI_ENDPOINT_CONTROL,
            LOADER_DEFAULT_HWM, QUEUE_PROBES, LOADER_DEFAULT_QUEUE_MB, LOADER_DEFAULT_RESEND_S);
}

enum {
    OPT_DATA = 1000, OPT_FORMAT, OPT_CHANNELS, OPT_MAX_SIDE, OPT_MAX_PIXELS, OPT_CACHE_MB, OPT_SEED,
    OPT_EPOCHS, OPT_START_EPOCH, OPT_COUNT, OPT_LIMIT, OPT_SHARD,
    OPT_HOLD_OUT, OPT_HOLD_OUT_SEED, OPT_BIND, OPT_CONTROL, OPT_EXACTLY_ONCE, OPT_RESEND_AFTER, OPT_HWM, OPT_QUEUE_MB, OPT_THREADS,
    OPT_CURVE, OPT_QUIET, OPT_HELP
};

static const struct option longopts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"channels", required_argument, NULL, OPT_CHANNELS},
    {"max-side", required_argument, NULL, OPT_MAX_SIDE},
    {"max-pixels", required_argument, NULL, OPT_MAX_PIXELS},
    {"cache-mb", required_argument, NULL, OPT_CACHE_MB},
    {"seed", required_argument, NULL, OPT_SEED},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"start-epoch", required_argument, NULL, OPT_START_EPOCH},
    {"count", no_argument, NULL, OPT_COUNT},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"hold-out", required_argument, NULL, OPT_HOLD_OUT},
    {"hold-out-seed", required_argument, NULL, OPT_HOLD_OUT_SEED},
    {"bind", required_argument, NULL, OPT_BIND},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"exactly-once", no_argument, NULL, OPT_EXACTLY_ONCE},
    {"resend-after", required_argument, NULL, OPT_RESEND_AFTER},
    {"hwm", required_argument, NULL, OPT_HWM},
    {"queue-mb", required_argument, NULL, OPT_QUEUE_MB},
    {"curve", required_argument, NULL, OPT_CURVE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void defaults(loader_options_t *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (loader_options_t){
        .format = DATASET_FORMAT_AUTO,
        .decode = {.channels = 0, .max_side = 0, .max_pixels = DATASET_DEFAULT_MAX_PIXELS},
        .cache_mb = LOADER_DEFAULT_CACHE_MB,
        .seed = LOADER_DEFAULT_SEED,
        .epochs = 1,
        .shard_count = 1,
        .hold_out_seed = LOADER_DEFAULT_HOLD_OUT_SEED,
        .bind = CLI_ENDPOINT_LOADER,
        .control = CLI_ENDPOINT_CONTROL,
        .hwm = LOADER_DEFAULT_HWM,
        .resend_after = LOADER_DEFAULT_RESEND_S,
        .queue_mb = LOADER_DEFAULT_QUEUE_MB,
        .threads = cpus > 0 ? (int)(cpus < LOADER_MAX_THREADS ? cpus : LOADER_MAX_THREADS) : 1,
    };
}

/* "I/N" with 0 <= I < N into o: 0, or -1 with err set. */
static int parse_shard(loader_options_t *o, const char *s, char *err, size_t errlen)
{
    unsigned i, n;
    char tail;
    if (sscanf(s, "%u/%u%c", &i, &n, &tail) != 2 || n == 0 || i >= n || strchr(s, '-')) {
        errmsg_set(err, errlen, "--shard wants I/N with 0 <= I < N (for example 0/2), got \"%s\"", s);
        return -1;
    }
    o->shard_index = i;
    o->shard_count = n;
    return 0;
}

/* One option c with value v into ctx, the options: 0, or -1 with err set. */
static int parse_option(void *ctx, int c, const char *v, char *err, size_t n)
{
    loader_options_t *o = ctx;
    uint64_t u;
    switch (c) {
    case OPT_DATA: o->data = v; return 0;
    case OPT_FORMAT:
        if (dataset_format_parse(v, &o->format)) {
            errmsg_set(err, n, "--format wants auto, folder, idx, cifar10 or cifar100, got \"%s\"", v);
            return -1;
        }
        return 0;
    case OPT_CHANNELS:
        if (cli_int("--channels", v, 0, 3, &o->decode.channels, err, n))
            return -1;
        if (o->decode.channels == 2) {
            errmsg_set(err, n, "--channels wants 0, 1 or 3, got 2");
            return -1;
        }
        return 0;
    case OPT_MAX_SIDE:
        if (cli_u64("--max-side", v, 0, PROTO_MAX_SIDE, &u, err, n))
            return -1;
        o->decode.max_side = (uint32_t)u;
        return 0;
    case OPT_MAX_PIXELS: return cli_u64("--max-pixels", v, 1, UINT64_MAX, &o->decode.max_pixels, err, n);
    case OPT_CACHE_MB: return cli_size("--cache-mb", v, 0, SIZE_MAX >> 20, &o->cache_mb, err, n);
    case OPT_SEED: return cli_u64("--seed", v, 0, UINT64_MAX, &o->seed, err, n);
    case OPT_EPOCHS:
        if (cli_u64("--epochs", v, 0, UINT32_MAX, &u, err, n))
            return -1;
        o->epochs = (uint32_t)u;
        return 0;
    case OPT_START_EPOCH:
        if (cli_u64("--start-epoch", v, 0, UINT32_MAX / 2, &u, err, n))
            return -1;
        o->start_epoch = (uint32_t)u;
        return 0;
    case OPT_COUNT: o->count_only = 1; return 0;
    case OPT_LIMIT: return cli_size("--limit", v, 0, SIZE_MAX, &o->limit, err, n);
    case OPT_SHARD: return parse_shard(o, v, err, n);
    case OPT_HOLD_OUT: return cli_double("--hold-out", v, 0.0, LOADER_MAX_HOLD_OUT, &o->hold_out, err, n);
    case OPT_HOLD_OUT_SEED: return cli_u64("--hold-out-seed", v, 0, UINT64_MAX, &o->hold_out_seed, err, n);
    case OPT_BIND: return cli_endpoint("--bind", v, CLI_REQUIRED, &o->bind, err, n);
    case OPT_CONTROL: return cli_endpoint("--control", v, CLI_OPTIONAL, &o->control, err, n);
    case OPT_EXACTLY_ONCE: o->exactly_once = 1; return 0;
    case OPT_RESEND_AFTER: return cli_double_above("--resend-after", v, 0.0, 86400.0, &o->resend_after, err, n);
    case OPT_HWM: return cli_int("--hwm", v, 1, INT_MAX, &o->hwm, err, n);
    case OPT_QUEUE_MB: return cli_size("--queue-mb", v, 1, SIZE_MAX >> 20, &o->queue_mb, err, n);
    case OPT_THREADS: return cli_int("--threads", v, 1, LOADER_MAX_THREADS, &o->threads, err, n);
    case OPT_CURVE: o->curve = v; return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    default:
        errmsg_set(err, n, "option %d is not handled", c);
        return -1;
    }
}

int loader_options_parse(loader_options_t *o, int argc, char **argv, char *err, size_t errlen)
{
    defaults(o);
    int rc = cli_parse(argc, argv, "", longopts, OPT_HELP, parse_option, o, err, errlen);
    if (rc)
        return rc;
    if (optind < argc) {
        errmsg_set(err, errlen, "unexpected argument \"%s\"", argv[optind]);
        return -1;
    }
    if (!o->data) {
        errmsg_set(err, errlen, "--data PATH is required");
        return -1;
    }
    if (o->exactly_once && !o->control) {
        errmsg_set(err, errlen, "--exactly-once needs the trainer's control socket (--control ENDPOINT)");
        return -1;
    }
    return 0;
}

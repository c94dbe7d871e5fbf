/* augmenter/options: command-line parsing of the augmenter (options.h). */
#include "augmenter/options.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/defaults.h"
#include "errmsg/errmsg.h"
#include "proto/proto.h"

/* Well-known per-channel statistics for --normalize. */
static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
static const float cifar10_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar10_std[3] = {0.2470f, 0.2435f, 0.2616f};

void augmenter_usage(FILE *f)
{
    fprintf(f,
            "usage: augmenter [options]\n"
            "       augmenter --preview IMAGE -o GRID.png [--size N] [--seed N]\n"
            "\n"
            "Pulls Samples from the loader, applies random augmentations and pushes\n"
            "ViewBatches (K views per sample, C x S x S each) to the trainer.\n"
            "\n"
            "  --connect EP     loader endpoint to pull Samples from (default %s)\n"
            "  --push EP        trainer endpoint to push ViewBatches to (default %s); a\n"
            "                   comma list (a trainer of several ranks) gets them\n"
            "                   round-robin\n"
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
    augmenter_options_t *o;
    int size_given, normalize_given;
} parse_ctx;

/* One option c with value v into ctx's options: 0, or -1 with err set. */
static int parse_option(void *ctx, int c, const char *v, char *err, size_t n)
{
    parse_ctx *pc = ctx;
    augmenter_options_t *o = pc->o;
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
int augmenter_options_parse(augmenter_options_t *o, int argc, char **argv, char *err, size_t n)
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

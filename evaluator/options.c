/* evaluator/options: the command line (options.h). */
#include "evaluator/options.h"

#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/defaults.h"
#include "errmsg/errmsg.h"
#include "evaluator/cache.h"
#include "evaluator/finetune.h"

#define DEFAULT_BATCH         256
#define DEFAULT_ALIGN_ITEMS   2000
#define DEFAULT_ATTENTION     8
#define DEFAULT_CLASSMAP      2000    /* exact t-SNE, O(N^2): 5,000 points take about 20 s per representation */
#define DEFAULT_TEST_FRACTION 0.1
#define DEFAULT_PROBE_ITERS   1000
#define DEFAULT_MAX_PENDING   4
#define DEFAULT_SEED          1
#define DEFAULT_KNN_K         200
#define DEFAULT_KNN_T         0.1
#define MAX_COUNT             1000000000   /* the largest --batch, --knn-k, --probe-iters ... */
#define MAX_TEST_FRACTION     0.9
#define MAX_KNN_T             100.0

void eval_usage(FILE *f)
{
    fprintf(f,
"usage: evaluator [--bind ENDPOINT] --out DIR [options]     serve: evaluate each Checkpoint message\n"
"       evaluator --checkpoint FILE [--out DIR] [options]  evaluate one file and exit\n"
"       evaluator --compare CKPT_A CKPT_B --out DIR        stage maps of two checkpoints side by side\n"
"\n"
"Evaluates frozen encoders: linear probe (top-1/top-5, with few labels), weighted\n"
"kNN, alignment and uniformity, raw-pixel and random-encoder baselines, attention\n"
"maps; appends one JSON line per checkpoint to DIR/eval.jsonl and keeps DIR/report/.\n"
"\n"
"  --bind EP            PULL endpoint for Checkpoint messages (default " CLI_ENDPOINT_EVALUATOR ")\n"
"  --control EP         also listen to the trainer's Control PUB (e.g. " CLI_ENDPOINT_CONTROL "):\n"
"                       on STOP, finish the waiting checkpoints and exit (default none)\n"
"  --curve DIR          encrypt and authenticate both sockets with CURVE, with the keys in\n"
"                       DIR (server and client pairs, allowed/; see keygen --help)\n"
"  --checkpoint FILE    evaluate FILE and exit (DIR defaults to FILE's folder)\n"
"  --out DIR            where eval.jsonl and report/ go\n"
"  --train-data PATH    labeled training images, any format the loader reads\n"
"                       (default " EVAL_FASHION_TRAIN ")\n"
"  --test-data PATH     labeled test images (default: Fashion-MNIST's t10k files with the\n"
"                       default training data, else a held-out part of the training data)\n"
"  --format F           auto|folder|idx|cifar10|cifar100 (default auto)\n"
"  --test-fraction F    held out for testing when there is no test set (default %.2f)\n"
"  --label-fraction L   comma-separated label fractions for the probe (default 0.01,0.1,1)\n"
"  --max-train N        use at most N training images (class-balanced, seeded; 0 = all)\n"
"  --max-test N         use at most N test images (0 = all)\n"
"  --batch N            images per forward pass (default %d)\n"
"  --knn-k K            neighbours of the kNN monitor (default %d)\n"
"  --knn-t T            its temperature (default %.2f)\n"
"  --align-items N      test images whose two views give alignment and uniformity (default %d)\n"
"  --align-recipe R     augmentation of those views (default simclr; see the augmenter)\n"
"  --readout R          what the probe, kNN and metrics read of the encoder: maps (the last\n"
"                       stage's maps, flattened; max-pooled to at most %d values), pooled (its\n"
"                       global average, the encoder's output) or stage:K (stage K's maps)\n"
"                       (default maps)\n"
"  --feature-views V    each image's features for the probe and kNN are the mean over its views:\n"
"                       one (the image alone), flip (the image and its mirror image) or\n"
"                       flip-shift (both, each also moved right, left, down and up by about a\n"
"                       16th of the image, 2 pixels at sizes 24 to 39: ten forward passes per image);\n"
"                       the same for the random encoder, not for raw pixels or fine-tuning's\n"
"                       comparison (default flip)\n"
"  --no-baselines       skip the raw-pixel and random-encoder baselines\n"
"  --baseline-cache DIR keep the baselines in DIR and reuse them in later runs; none: compute\n"
"                       them every time (default $XDG_CACHE_HOME/" EVAL_CACHE_SUBDIR ", else\n"
"                       ~/.cache/" EVAL_CACHE_SUBDIR ")\n"
"  --attention N        images in the attention-map figure (default %d, 0 = none)\n"
"  --classmap N         test images in the class map (PCA and t-SNE of the features, by class;\n"
"                       seeded, class-balanced; default %d, 0 = none)\n"
"  --compare A B        write DIR/compare.png: the same test images through an early, a middle\n"
"                       and the last stage of checkpoint A and of checkpoint B, then exit\n"
"  --no-report          no report folder (plots, summary)\n"
"  --probe-iters N      L-BFGS iterations per probe fit (default %d)\n"
"  --max-pending N      checkpoints kept waiting, newest first (default %d)\n"
"  --after-stop W       when the trainer stops: final: evaluate the newest checkpoint and skip\n"
"                       the older ones still waiting (the run ends sooner); all: evaluate every\n"
"                       waiting checkpoint (default final)\n"
"  --seed S             seed of every split and subset (default %d)\n"
"  --finetune L         fine-tune the whole encoder with a new linear classifier on these shares of\n"
"                       the training labels (comma-separated, e.g. 0.01,0.1; class-balanced, seeded),\n"
"                       against the same network trained from scratch and the linear probe on the\n"
"                       same labels (default none)\n"
"  --finetune-per-class N  the same with N labels of each class (e.g. 10,100; default none)\n"
"  --finetune-on W      final: only the run's last checkpoint (the one with the trainer's STOP, or\n"
"                       --checkpoint FILE); all: every checkpoint (default final)\n"
"  --finetune-epochs E  passes over a subset, at least %d steps of %d images (default %d)\n"
"  --help\n",
            DEFAULT_TEST_FRACTION, DEFAULT_BATCH, DEFAULT_KNN_K, DEFAULT_KNN_T, DEFAULT_ALIGN_ITEMS, EVAL_READOUT_MAX_DIM,
            DEFAULT_ATTENTION, DEFAULT_CLASSMAP, DEFAULT_PROBE_ITERS, DEFAULT_MAX_PENDING, DEFAULT_SEED,
            EVAL_FT_MIN_STEPS, EVAL_FT_BATCH, EVAL_FT_DEFAULT_EPOCHS);
}

/* --label-fraction s: comma-separated fractions in (0, 1]; 0, or -1 with err set. */
static int parse_fractions(eval_options *o, const char *s, char *err, size_t errlen)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    o->n_fractions = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->n_fractions == EVAL_MAX_FRACTIONS) {
            errmsg_set(err, errlen, "--label-fraction takes at most %d values", EVAL_MAX_FRACTIONS);
            return -1;
        }
        if (cli_double_above("--label-fraction", tok, 0.0, 1.0, &o->fractions[o->n_fractions], err, errlen))
            return -1;
        o->n_fractions++;
    }
    if (o->n_fractions == 0) {
        errmsg_set(err, errlen, "--label-fraction needs at least one value, e.g. 0.01,0.1,1");
        return -1;
    }
    return 0;
}

enum { O_BIND = 256, O_CONTROL, O_CKPT, O_OUT, O_TRAIN, O_TEST, O_FORMAT, O_TEST_FRACTION, O_FRACTION,
       O_MAX_TRAIN, O_MAX_TEST, O_BATCH, O_KNN_K, O_KNN_T, O_ALIGN_ITEMS, O_ALIGN_RECIPE,
       O_NO_BASELINES, O_READOUT, O_VIEWS, O_BASELINE_CACHE, O_ATTENTION, O_NO_REPORT, O_PROBE_ITERS, O_MAX_PENDING, O_SEED,
       O_CURVE, O_CLASSMAP, O_COMPARE, O_FT_FRACTIONS, O_FT_PER_CLASS, O_FT_ON, O_FT_EPOCHS, O_AFTER_STOP };

typedef struct {
    eval_options *o;
    const char *out, *cache;
} parse_ctx;

/* One option c with value v into ctx's options: 0, or -1 with err set. */
static int parse_option(void *ctx, int c, const char *v, char *err, size_t n)
{
    parse_ctx *pc = ctx;
    eval_options *o = pc->o;
    int bad = 0;
    switch (c) {
    case O_BIND: bad = cli_endpoint("--bind", v, CLI_REQUIRED, &o->bind, err, n); break;
    case O_CONTROL: bad = cli_endpoint("--control", v, CLI_OPTIONAL, &o->control, err, n); break;
    case O_CKPT: o->checkpoint = v; break;
    case O_OUT: pc->out = v; break;
    case O_TRAIN: o->train_data = v; break;
    case O_TEST: o->test_data = v; break;
    case O_FORMAT: o->format = v; break;
    case O_TEST_FRACTION:
        bad = cli_double_above("--test-fraction", v, 0.0, MAX_TEST_FRACTION, &o->test_fraction, err, n);
        break;
    case O_FRACTION: bad = parse_fractions(o, v, err, n); break;
    case O_MAX_TRAIN: bad = cli_size("--max-train", v, 0, SIZE_MAX, &o->max_train, err, n); break;
    case O_MAX_TEST: bad = cli_size("--max-test", v, 0, SIZE_MAX, &o->max_test, err, n); break;
    case O_BATCH: bad = cli_int("--batch", v, 1, MAX_COUNT, &o->batch, err, n); break;
    case O_KNN_K: bad = cli_int("--knn-k", v, 1, MAX_COUNT, &o->knn_k, err, n); break;
    case O_KNN_T: bad = cli_double_above("--knn-t", v, 0.0, MAX_KNN_T, &o->knn_t, err, n); break;
    case O_ALIGN_ITEMS: bad = cli_size("--align-items", v, 0, SIZE_MAX, &o->align_items, err, n); break;
    case O_ALIGN_RECIPE: o->align_recipe = v; break;
    case O_NO_BASELINES: o->baselines = 0; break;
    case O_VIEWS: {
        char verr[256];
        if (eval_views_parse(&o->views, v, verr, sizeof verr)) {
            errmsg_set(err, n, "--feature-views: %s", verr);
            bad = 1;
        }
        break;
    }
    case O_READOUT: {
        char rerr[256];
        if (eval_readout_parse(&o->readout, v, rerr, sizeof rerr)) {
            errmsg_set(err, n, "--readout: %s", rerr);
            bad = 1;
        }
        break;
    }
    case O_BASELINE_CACHE: pc->cache = v; break;
    case O_ATTENTION: bad = cli_int("--attention", v, 0, EVAL_MAX_ATTENTION, &o->attention, err, n); break;
    case O_NO_REPORT: o->report = 0; break;
    case O_PROBE_ITERS: bad = cli_int("--probe-iters", v, 1, MAX_COUNT, &o->probe_iters, err, n); break;
    case O_MAX_PENDING: bad = cli_int("--max-pending", v, 1, MAX_COUNT, &o->max_pending, err, n); break;
    case O_AFTER_STOP:
        if (!strcmp(v, "final") || !strcmp(v, "all"))
            o->after_stop_all = !strcmp(v, "all");
        else {
            errmsg_set(err, n, "--after-stop must be final or all, not '%s'", v);
            bad = 1;
        }
        break;
    case O_SEED: bad = cli_u64("--seed", v, 0, UINT64_MAX, &o->seed, err, n); break;
    case O_CURVE: o->curve = v; break;
    case O_CLASSMAP: bad = cli_size("--classmap", v, 0, SIZE_MAX, &o->classmap, err, n); break;
    case O_COMPARE: o->compare[0] = v; break;   /* B: the one positional argument */
    case O_FT_FRACTIONS: bad = eval_ft_parse_option(&o->finetune, "finetune", v, err, n); break;
    case O_FT_PER_CLASS: bad = eval_ft_parse_option(&o->finetune, "finetune-per-class", v, err, n); break;
    case O_FT_ON: bad = eval_ft_parse_option(&o->finetune, "finetune-on", v, err, n); break;
    case O_FT_EPOCHS: bad = eval_ft_parse_option(&o->finetune, "finetune-epochs", v, err, n); break;
    default:
        errmsg_set(err, n, "option %d is not handled", c);
        bad = -1;
    }
    return bad ? -1 : 0;
}

int eval_options_parse(eval_options *o, int argc, char **argv, char *err, size_t n)
{
    static const struct option opts[] = {
        { "bind", required_argument, 0, O_BIND }, { "control", required_argument, 0, O_CONTROL },
        { "checkpoint", required_argument, 0, O_CKPT }, { "out", required_argument, 0, O_OUT },
        { "train-data", required_argument, 0, O_TRAIN }, { "test-data", required_argument, 0, O_TEST },
        { "format", required_argument, 0, O_FORMAT },
        { "test-fraction", required_argument, 0, O_TEST_FRACTION },
        { "label-fraction", required_argument, 0, O_FRACTION },
        { "max-train", required_argument, 0, O_MAX_TRAIN }, { "max-test", required_argument, 0, O_MAX_TEST },
        { "batch", required_argument, 0, O_BATCH }, { "knn-k", required_argument, 0, O_KNN_K },
        { "knn-t", required_argument, 0, O_KNN_T }, { "align-items", required_argument, 0, O_ALIGN_ITEMS },
        { "align-recipe", required_argument, 0, O_ALIGN_RECIPE },
        { "no-baselines", no_argument, 0, O_NO_BASELINES }, { "attention", required_argument, 0, O_ATTENTION },
        { "baseline-cache", required_argument, 0, O_BASELINE_CACHE }, { "readout", required_argument, 0, O_READOUT },
        { "feature-views", required_argument, 0, O_VIEWS },
        { "no-report", no_argument, 0, O_NO_REPORT }, { "probe-iters", required_argument, 0, O_PROBE_ITERS },
        { "max-pending", required_argument, 0, O_MAX_PENDING }, { "seed", required_argument, 0, O_SEED },
        { "after-stop", required_argument, 0, O_AFTER_STOP },
        { "curve", required_argument, 0, O_CURVE },
        { "classmap", required_argument, 0, O_CLASSMAP }, { "compare", required_argument, 0, O_COMPARE },
        { "finetune", required_argument, 0, O_FT_FRACTIONS }, { "finetune-per-class", required_argument, 0, O_FT_PER_CLASS },
        { "finetune-on", required_argument, 0, O_FT_ON }, { "finetune-epochs", required_argument, 0, O_FT_EPOCHS },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    memset(o, 0, sizeof *o);
    o->bind = CLI_ENDPOINT_EVALUATOR;
    o->format = "auto";
    o->test_fraction = DEFAULT_TEST_FRACTION;
    o->batch = DEFAULT_BATCH;
    o->knn_k = DEFAULT_KNN_K;
    o->knn_t = DEFAULT_KNN_T;
    o->align_items = DEFAULT_ALIGN_ITEMS;
    o->align_recipe = "simclr";
    o->baselines = 1;
    o->attention = DEFAULT_ATTENTION;
    o->classmap = DEFAULT_CLASSMAP;
    o->report = 1;
    o->readout.stage = EVAL_READOUT_MAPS;
    o->views = EVAL_VIEWS_FLIP;
    o->probe_iters = DEFAULT_PROBE_ITERS;
    o->max_pending = DEFAULT_MAX_PENDING;
    o->seed = DEFAULT_SEED;
    o->finetune.epochs = EVAL_FT_DEFAULT_EPOCHS;
    parse_fractions(o, "0.01,0.1,1", NULL, 0);
    parse_ctx pc = {.o = o};
    int rc = cli_parse(argc, argv, "h", opts, 'h', parse_option, &pc, err, n);
    if (rc)
        return rc;
    const char *out = pc.out, *cache = pc.cache;
    if (o->compare[0]) {
        if (optind != argc - 1) {
            errmsg_set(err, n, "--compare wants two checkpoints: --compare CKPT_A CKPT_B --out DIR");
            return -1;
        }
        o->compare[1] = argv[optind++];
        if (!out) {
            errmsg_set(err, n, "--compare needs --out DIR (where compare.png goes)");
            return -1;
        }
    }
    if (optind < argc) {
        errmsg_set(err, n, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (out)
        snprintf(o->out, sizeof o->out, "%s", out);
    else if (o->checkpoint) {
        char tmp[EVAL_MAX_PATH];
        snprintf(tmp, sizeof tmp, "%s", o->checkpoint);
        snprintf(o->out, sizeof o->out, "%s", dirname(tmp));
    } else {
        errmsg_set(err, n, "the server needs --out DIR (where eval.jsonl and report/ go)");
        return -1;
    }
    if (cache && !cache[0]) {
        errmsg_set(err, n, "--baseline-cache wants a folder, or " CLI_NONE);
        return -1;
    }
    if (cache && strcmp(cache, CLI_NONE))
        snprintf(o->baseline_cache, sizeof o->baseline_cache, "%s", cache);
    else if (!cache && eval_cache_default_dir(o->baseline_cache, sizeof o->baseline_cache))
        o->baseline_cache[0] = 0;          /* no HOME: nowhere to keep them */
    if (o->classmap == 1) {
        errmsg_set(err, n, "--classmap needs at least 2 images (or 0 for none)");
        return -1;
    }
    if (o->align_items == 1) {
        errmsg_set(err, n, "--align-items needs at least 2 images (or 0 for none)");
        return -1;
    }
    return 0;
}

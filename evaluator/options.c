/* evaluator/options: the command line (options.h). */
#include "evaluator/options.h"

#include "evaluator/cache.h"
#include "evaluator/finetune.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void usage(FILE *f)
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
"  --bind EP            PULL endpoint for Checkpoint messages (default " EVAL_DEFAULT_BIND ")\n"
"  --control EP         also listen to the trainer's Control PUB (e.g. tcp://127.0.0.1:5558):\n"
"                       on STOP, finish the waiting checkpoints and exit\n"
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

static int parse_size(const char *name, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "evaluator: %s wants a non-negative integer, got '%s'\n", name, s);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int parse_int_min(const char *name, const char *s, int min, int *out)
{
    size_t v;
    if (parse_size(name, s, &v))
        return -1;
    if (v < (size_t)min || v > 1000000000) {
        fprintf(stderr, "evaluator: %s must be in %d..1000000000, got '%s'\n", name, min, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > lo && v <= hi)) {
        fprintf(stderr, "evaluator: %s wants a number in (%g, %g], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_fractions(eval_options *o, const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    o->n_fractions = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->n_fractions == EVAL_MAX_FRACTIONS) {
            fprintf(stderr, "evaluator: --label-fraction takes at most %d values\n", EVAL_MAX_FRACTIONS);
            return -1;
        }
        if (parse_double("--label-fraction", tok, 0.0, 1.0, &o->fractions[o->n_fractions]))
            return -1;
        o->n_fractions++;
    }
    if (o->n_fractions == 0) {
        fprintf(stderr, "evaluator: --label-fraction needs at least one value, e.g. 0.01,0.1,1\n");
        return -1;
    }
    return 0;
}

int eval_options_parse(eval_options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->bind = EVAL_DEFAULT_BIND;
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
    o->probe_iters = DEFAULT_PROBE_ITERS;
    o->max_pending = DEFAULT_MAX_PENDING;
    o->seed = DEFAULT_SEED;
    parse_fractions(o, "0.01,0.1,1");
    const char *out = NULL, *cache = NULL;
    enum { O_BIND = 256, O_CONTROL, O_CKPT, O_OUT, O_TRAIN, O_TEST, O_FORMAT, O_TEST_FRACTION, O_FRACTION,
           O_MAX_TRAIN, O_MAX_TEST, O_BATCH, O_KNN_K, O_KNN_T, O_ALIGN_ITEMS, O_ALIGN_RECIPE,
           O_NO_BASELINES, O_READOUT, O_BASELINE_CACHE, O_ATTENTION, O_NO_REPORT, O_PROBE_ITERS, O_MAX_PENDING, O_SEED,
           O_CURVE, O_CLASSMAP, O_COMPARE, O_FINETUNE, O_HELP };
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
        { "no-report", no_argument, 0, O_NO_REPORT }, { "probe-iters", required_argument, 0, O_PROBE_ITERS },
        { "max-pending", required_argument, 0, O_MAX_PENDING }, { "seed", required_argument, 0, O_SEED },
        { "curve", required_argument, 0, O_CURVE },
        { "classmap", required_argument, 0, O_CLASSMAP }, { "compare", required_argument, 0, O_COMPARE },
        { "finetune", required_argument, 0, O_FINETUNE }, { "finetune-per-class", required_argument, 0, O_FINETUNE },
        { "finetune-on", required_argument, 0, O_FINETUNE }, { "finetune-epochs", required_argument, 0, O_FINETUNE },
        { "help", no_argument, 0, O_HELP }, { 0, 0, 0, 0 } };
    int ch, at = 0;
    size_t sz;
    optind = 1;
    o->finetune.epochs = EVAL_FT_DEFAULT_EPOCHS;
    while ((ch = getopt_long(argc, argv, "h", opts, &at)) != -1) {
        int bad = 0;
        switch (ch) {
        case O_BIND: o->bind = optarg; break;
        case O_CONTROL: o->control = optarg; break;
        case O_CKPT: o->checkpoint = optarg; break;
        case O_OUT: out = optarg; break;
        case O_TRAIN: o->train_data = optarg; break;
        case O_TEST: o->test_data = optarg; break;
        case O_FORMAT: o->format = optarg; break;
        case O_TEST_FRACTION: bad = parse_double("--test-fraction", optarg, 0.0, 0.9, &o->test_fraction); break;
        case O_FRACTION: bad = parse_fractions(o, optarg); break;
        case O_MAX_TRAIN: bad = parse_size("--max-train", optarg, &o->max_train); break;
        case O_MAX_TEST: bad = parse_size("--max-test", optarg, &o->max_test); break;
        case O_BATCH: bad = parse_int_min("--batch", optarg, 1, &o->batch); break;
        case O_KNN_K: bad = parse_int_min("--knn-k", optarg, 1, &o->knn_k); break;
        case O_KNN_T: bad = parse_double("--knn-t", optarg, 0.0, 100.0, &o->knn_t); break;
        case O_ALIGN_ITEMS: bad = parse_size("--align-items", optarg, &o->align_items); break;
        case O_ALIGN_RECIPE: o->align_recipe = optarg; break;
        case O_NO_BASELINES: o->baselines = 0; break;
        case O_READOUT: {
            char rerr[256];
            if (eval_readout_parse(&o->readout, optarg, rerr, sizeof rerr)) {
                fprintf(stderr, "evaluator: --readout: %s\n", rerr);
                bad = 1;
            }
            break;
        }
        case O_BASELINE_CACHE: cache = optarg; break;
        case O_ATTENTION: bad = parse_int_min("--attention", optarg, 0, &o->attention); break;
        case O_NO_REPORT: o->report = 0; break;
        case O_PROBE_ITERS: bad = parse_int_min("--probe-iters", optarg, 1, &o->probe_iters); break;
        case O_MAX_PENDING: bad = parse_int_min("--max-pending", optarg, 1, &o->max_pending); break;
        case O_SEED: bad = parse_size("--seed", optarg, &sz); o->seed = sz; break;
        case O_CURVE: o->curve = optarg; break;
        case O_CLASSMAP: bad = parse_size("--classmap", optarg, &o->classmap); break;
        case O_COMPARE: o->compare[0] = optarg; break;   /* B: the one positional argument */
        case O_FINETUNE: bad = eval_ft_parse_option(&o->finetune, opts[at].name, optarg); break;
        case 'h':
        case O_HELP: usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
        if (bad)
            return 2;
    }
    if (o->compare[0]) {
        if (optind != argc - 1) {
            fprintf(stderr, "evaluator: --compare wants two checkpoints: --compare CKPT_A CKPT_B --out DIR\n");
            return 2;
        }
        o->compare[1] = argv[optind++];
        if (!out) {
            fprintf(stderr, "evaluator: --compare needs --out DIR (where compare.png goes)\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "evaluator: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (out)
        snprintf(o->out, sizeof o->out, "%s", out);
    else if (o->checkpoint) {
        char tmp[EVAL_MAX_PATH];
        snprintf(tmp, sizeof tmp, "%s", o->checkpoint);
        snprintf(o->out, sizeof o->out, "%s", dirname(tmp));
    } else {
        fprintf(stderr, "evaluator: the server needs --out DIR (where eval.jsonl and report/ go)\n");
        return 2;
    }
    if (cache && !cache[0]) {
        fprintf(stderr, "evaluator: --baseline-cache wants a folder, or none\n");
        return 2;
    }
    if (cache && strcmp(cache, "none"))
        snprintf(o->baseline_cache, sizeof o->baseline_cache, "%s", cache);
    else if (!cache && eval_cache_default_dir(o->baseline_cache, sizeof o->baseline_cache))
        o->baseline_cache[0] = 0;          /* no HOME: nowhere to keep them */
    if (o->classmap == 1) {
        fprintf(stderr, "evaluator: --classmap needs at least 2 images (or 0 for none)\n");
        return 2;
    }
    if (o->attention > EVAL_MAX_ATTENTION) {
        fprintf(stderr, "evaluator: --attention takes at most %d images\n", EVAL_MAX_ATTENTION);
        return 2;
    }
    if (o->align_items == 1) {
        fprintf(stderr, "evaluator: --align-items needs at least 2 images (or 0 for none)\n");
        return 2;
    }
    return 0;
}

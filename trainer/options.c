/* trainer/options: command-line parsing of the trainer. */
#include "trainer/options.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/defaults.h"
#include "errmsg/errmsg.h"

#define MAX_WIDTH  1024
#define MAX_KEEP   1000
#define MAX_QUEUE  64
#define MAX_BATCH  65536
#define MAX_LR     1e3
#define MAX_WD     10.0
#define MAX_MOMENTUM 0.9999
#define MIN_TAU    1e-3
#define MAX_TAU    100.0
#define MAX_EMA    0.999999
#define MAX_EPOCHS 1e6
#define MAX_MINUTES 1e7   /* about 19 years */
#define MAX_WARMUP_EPOCHS 1e6
#define MAX_HWM    (1 << 20)

static const char *const method_names[] = {
    [TRAIN_SIMCLR] = "simclr", [TRAIN_ROTNET] = "rotnet", [TRAIN_SUPERVISED] = "supervised",
    [TRAIN_PRETEXT] = "pretext",
};
#define N_METHODS (sizeof method_names / sizeof method_names[0])

const char *trainer_method_name(train_method_t m)
{
    return (unsigned)m < N_METHODS ? method_names[m] : "?";
}

int trainer_method_parse(const char *s, train_method_t *m)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (train_method_t)i;
            return 0;
        }
    return -1;
}

int trainer_method_has_targets(train_method_t m)
{
    return m == TRAIN_ROTNET || m == TRAIN_SUPERVISED || m == TRAIN_PRETEXT;
}

int trainer_parse_warmup(const char *s, long *steps, double *epochs)
{
    size_t n = strlen(s);
    if (n > 2 && strcmp(s + n - 2, "ep") == 0) {
        char num[64];
        if (n - 2 >= sizeof num)
            return -1;
        memcpy(num, s, n - 2);
        num[n - 2] = '\0';
        double e;
        if (cli_double("--warmup", num, 0, MAX_WARMUP_EPOCHS, &e, NULL, 0))
            return -1;
        *epochs = e;
        *steps = -1;
        return 0;
    }
    long v;
    if (cli_long("--warmup", s, 0, LONG_MAX / 2, &v, NULL, 0))
        return -1;
    *steps = v;
    *epochs = 0;
    return 0;
}

void trainer_usage(FILE *f)
{
    fprintf(f,
"usage: trainer [options]\n"
"Pulls ViewBatches from the augmenters, trains an encoder with SimCLR or RotNet\n"
"(or supervised on the samples' labels), writes checkpoints and metrics into the\n"
"run folder, and tells the evaluator about each checkpoint.\n"
"\n"
"Training:\n"
"  --method M         simclr (2 views per image, NT-Xent), rotnet (4 rotations\n"
"                     per image, 4-way cross-entropy), supervised (1 view per\n"
"                     image, cross-entropy on its label, linear classifier head;\n"
"                     augmenter --recipe supervised) or pretext (every view,\n"
"                     N-way cross-entropy on its target, N the classes the\n"
"                     augmenters' recipe announces with its ':target' items,\n"
"                     such as augmenter --recipe 'flip:target,\n"
"                     rotate:k=random:target' (8); linear classifier head)\n"
"                     (default simclr)\n"
"  --classes N        supervised: labels 0..N-1 are trained on; samples without a\n"
"                     label (-1) or with a larger one are skipped, counted and\n"
"                     logged (default %d; a description file's or resumed\n"
"                     checkpoint's head width when not given)\n"
"  --arch A           resnet-mini, conv4, or a network description file (see\n"
"                     nn/README.md; its head must suit the method) (default %s)\n"
"  --width W          channels of the first stage of a preset (default %d)\n"
"  --batch N          images per step: 2N views for simclr, 4N for rotnet, N for\n"
"                     supervised, K N for pretext (K views per image) (default %d\n"
"                     for simclr, %d for the others)\n"
"  --optimizer O      sgd, lars or adamw (default sgd)\n"
"  --lr X             peak learning rate (default: base x batch/256 with base %.2g\n"
"                     for simclr, %.2g for rotnet and pretext, %.2g for supervised;\n"
"                     adamw %.0e x sqrt(batch/256))\n"
"  --weight-decay X   (default sgd %.0e for simclr and supervised, %.0e for rotnet\n"
"                     and pretext; lars %.0e, adamw %.0e)\n"
"  --momentum X       sgd and lars momentum (default %.1f)\n"
"  --tau X            temperature of the contrastive loss (default %.1f)\n"
"  --loss L           simclr: ntxent (SimCLR's loss) or dcl (decoupled: the\n"
"                     positive pair left out of the denominator, which helps\n"
"                     small batches) (default dcl)\n"
"  --ema D            also keep a moving average of the weights, each step\n"
"                     avg = D avg + (1 - D) weights (D rises from 0.1 over the\n"
"                     first steps), written beside each checkpoint as\n"
"                     ckpt-<step>.ema.safetensors and given to the evaluator in\n"
"                     its place; e.g. 0.99 (default 0: none)\n"
"  --warmup N|Nep     linear warm-up in steps, or in epochs with the suffix ep\n"
"                     (needs a known dataset size) (default %.0f%% of the steps)\n"
"  --epochs E         train E epochs (may be fractional) (default %d)\n"
"  --steps N          or train exactly N steps\n"
"  --minutes M        or train for M minutes (may be fractional; a resumed run's\n"
"                     earlier training counts): the schedule's length in steps\n"
"                     follows the rate measured so far, re-planned at every\n"
"                     step, so that the cosine ends when the time is up; the\n"
"                     first step, before any rate is known, runs at lr 0\n"
"  --dataset-size N   images per epoch; when not given, learnt from the loader's\n"
"                     end-of-epoch count (the cosine schedule then starts once it\n"
"                     is known)\n"
"  --seed N           parameter initialisation seed (default %d)\n"
"\n"
"Several processes (mpirun -np N trainer ...; see README, Training on several\n"
"machines): each rank binds its own --bind endpoint (a comma list, or the port\n"
"plus the rank) and takes batch/N images of each step; --batch stays the global\n"
"batch and must be a multiple of N. Rank 0 alone writes the run folder and\n"
"publishes Control.\n"
"  --sync-bn          batch norm normalises with the statistics of the whole\n"
"                     global batch (every rank's), as one process would; without\n"
"                     it each rank uses its own images' (recorded in checkpoints)\n"
"\n"
"Sockets:\n"
"  --bind EP          PULL for ViewBatches (default %s)\n"
"  --control EP       PUB for Control stop/heartbeat, or none (default %s)\n"
"  --evaluator EP     PUSH to the evaluator, or none (default %s)\n"
"  --hwm N            ViewBatches queued in the PULL socket (default %d)\n"
"  --curve DIR        encrypt and authenticate every socket with CURVE, with the\n"
"                     keys in DIR (server and client pairs, allowed/; see keygen --help)\n"
"  --queue N          assembled batches buffered ahead of the step (default %d)\n"
"\n"
"Run folder:\n"
"  --out DIR          metrics.jsonl, ckpt-<step>.safetensors (+ .json trainer\n"
"                     state) and the symlink latest (default %s)\n"
"  --ckpt-every N     checkpoint every N steps, and always at the end (default %d)\n"
"  --keep K           keep the last K checkpoints (default %d)\n"
"  --resume P         continue from checkpoint P, or 'latest' of --out: restores\n"
"                     the model, optimizer, schedule, step and random state; without\n"
"                     --out, a run resumed from a file continues in the file's folder\n"
"  --quiet            no progress line\n"
"  --help             this text\n"
"\n"
"Stops after the steps, epochs or minutes, at the end of the stream, or on SIGINT/SIGTERM\n"
"(after writing a checkpoint); then publishes Control STOP so that the loader and\n"
"augmenters exit. Exit status: 0 done, 1 runtime failure, 2 bad usage.\n",
            TRAINER_DEFAULT_CLASSES, TRAINER_DEFAULT_ARCH, TRAINER_DEFAULT_WIDTH, TRAINER_DEFAULT_BATCH_SIMCLR,
            TRAINER_DEFAULT_BATCH, TRAINER_BASE_LR_SIMCLR, TRAINER_BASE_LR_ROTNET, TRAINER_BASE_LR_SUPERVISED,
            TRAINER_BASE_LR_ADAMW, TRAINER_WD_SGD_SIMCLR, TRAINER_WD_SGD, TRAINER_WD_LARS,
            TRAINER_WD_ADAMW, TRAINER_DEFAULT_MOMENTUM,
            TRAINER_DEFAULT_TAU, 100 * TRAINER_WARMUP_SHARE, TRAINER_DEFAULT_EPOCHS,
            TRAINER_DEFAULT_SEED, CLI_ENDPOINT_TRAINER, CLI_ENDPOINT_CONTROL,
            CLI_ENDPOINT_EVALUATOR, TRAINER_DEFAULT_HWM, TRAINER_DEFAULT_QUEUE,
            TRAINER_DEFAULT_OUT, TRAINER_DEFAULT_CKPT_EVERY, TRAINER_DEFAULT_KEEP);
}

static void defaults(trainer_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->method = TRAIN_SIMCLR;
    o->arch = TRAINER_DEFAULT_ARCH;
    o->width = TRAINER_DEFAULT_WIDTH;
    o->batch = TRAINER_DEFAULT_BATCH;
    o->optimizer = NN_OPT_SGD;
    o->lr = -1;
    o->weight_decay = -1;
    o->momentum = TRAINER_DEFAULT_MOMENTUM;
    o->tau = TRAINER_DEFAULT_TAU;
    o->classes = TRAINER_DEFAULT_CLASSES;
    o->warmup_steps = -1;
    o->epochs = TRAINER_DEFAULT_EPOCHS;
    o->seed = TRAINER_DEFAULT_SEED;
    o->bind = CLI_ENDPOINT_TRAINER;
    o->control = CLI_ENDPOINT_CONTROL;
    o->evaluator = CLI_ENDPOINT_EVALUATOR;
    o->out = TRAINER_DEFAULT_OUT;
    o->ckpt_every = TRAINER_DEFAULT_CKPT_EVERY;
    o->keep = TRAINER_DEFAULT_KEEP;
    o->queue = TRAINER_DEFAULT_QUEUE;
    o->hwm = TRAINER_DEFAULT_HWM;
}

static double base_lr(train_method_t m)
{
    switch (m) {
    case TRAIN_ROTNET: return TRAINER_BASE_LR_ROTNET;
    case TRAIN_PRETEXT: return TRAINER_BASE_LR_PRETEXT;
    case TRAIN_SUPERVISED: return TRAINER_BASE_LR_SUPERVISED;
    default: return TRAINER_BASE_LR_SIMCLR;
    }
}

void trainer_options_finish(trainer_options_t *o)
{
    if (!o->set_batch)
        o->batch = o->method == TRAIN_SIMCLR ? TRAINER_DEFAULT_BATCH_SIMCLR : TRAINER_DEFAULT_BATCH;
    if (!o->set_loss)
        o->decoupled = o->method == TRAIN_SIMCLR;
    double scale = (double)o->batch / TRAINER_LR_BATCH_REF;
    if (!o->set_lr)
        o->lr = o->optimizer == NN_OPT_ADAMW ? TRAINER_BASE_LR_ADAMW * sqrt(scale) : base_lr(o->method) * scale;
    if (!o->set_wd) {
        if (o->optimizer == NN_OPT_LARS)
            o->weight_decay = TRAINER_WD_LARS;
        else if (o->optimizer == NN_OPT_ADAMW)
            o->weight_decay = TRAINER_WD_ADAMW;
        else
            o->weight_decay = o->method == TRAIN_SIMCLR       ? TRAINER_WD_SGD_SIMCLR
                              : o->method == TRAIN_SUPERVISED ? TRAINER_WD_SGD_SUPERVISED
                                                              : TRAINER_WD_SGD;
    }
}

enum {
    OPT_METHOD = 256, OPT_CLASSES, OPT_ARCH, OPT_WIDTH, OPT_BATCH, OPT_OPTIMIZER, OPT_LR, OPT_WD, OPT_MOMENTUM,
    OPT_TAU, OPT_LOSS, OPT_EMA, OPT_WARMUP, OPT_EPOCHS, OPT_STEPS, OPT_MINUTES, OPT_DATASET_SIZE, OPT_SEED, OPT_BIND,
    OPT_CONTROL, OPT_EVALUATOR, OPT_OUT, OPT_CKPT_EVERY, OPT_KEEP, OPT_RESUME, OPT_QUEUE, OPT_HWM, OPT_CURVE, OPT_QUIET,
    OPT_SYNC_BN, OPT_HELP,
};

typedef struct {
    trainer_options_t *o;
    int got_epochs, got_steps, got_minutes;
} parse_ctx;

/* One option c with value v into ctx's options: 0, or -1 with err set. */
static int parse_option(void *ctx, int c, const char *v, char *err, size_t n)
{
    parse_ctx *pc = ctx;
    trainer_options_t *o = pc->o;
    pc->got_epochs |= c == OPT_EPOCHS;
    pc->got_steps |= c == OPT_STEPS;
    pc->got_minutes |= c == OPT_MINUTES;
    long l;
    switch (c) {
    case OPT_METHOD:
        if (trainer_method_parse(v, &o->method)) {
            errmsg_set(err, n, "--method: '%s' is not simclr, rotnet, supervised or pretext", v);
            return -1;
        }
        o->set_method = 1;
        return 0;
    case OPT_CLASSES:
        /* two at least: one class has nothing to learn */
        if (cli_long("--classes", v, 2, TRAINER_MAX_CLASSES, &l, err, n))
            return -1;
        o->classes = (uint32_t)l;
        o->set_classes = 1;
        return 0;
    case OPT_ARCH:
        o->arch = v;
        o->set_arch = 1;
        return 0;
    case OPT_WIDTH:
        o->set_width = 1;
        return cli_int("--width", v, 1, MAX_WIDTH, &o->width, err, n);
    case OPT_BATCH:
        /* a batch is at least two images: NT-Xent needs negatives */
        if (cli_long("--batch", v, 2, MAX_BATCH, &l, err, n))
            return -1;
        o->batch = (uint32_t)l;
        o->set_batch = 1;
        return 0;
    case OPT_OPTIMIZER:
        if (nn_optim_kind_parse(v, &o->optimizer)) {
            errmsg_set(err, n, "--optimizer: '%s' is not sgd, lars or adamw", v);
            return -1;
        }
        o->set_optimizer = 1;
        return 0;
    case OPT_LR:
        o->set_lr = 1;
        return cli_double_above("--lr", v, 0, MAX_LR, &o->lr, err, n);
    case OPT_WD:
        o->set_wd = 1;
        return cli_double("--weight-decay", v, 0, MAX_WD, &o->weight_decay, err, n);
    case OPT_MOMENTUM:
        o->set_momentum = 1;
        return cli_double("--momentum", v, 0, MAX_MOMENTUM, &o->momentum, err, n);
    case OPT_TAU:
        o->set_tau = 1;
        return cli_double("--tau", v, MIN_TAU, MAX_TAU, &o->tau, err, n);
    case OPT_EMA:
        o->set_ema = 1;
        return cli_double("--ema", v, 0.0, MAX_EMA, &o->ema, err, n);
    case OPT_LOSS:
        if (strcmp(v, "ntxent") && strcmp(v, "dcl")) {
            errmsg_set(err, n, "--loss: '%s' is not ntxent or dcl", v);
            return -1;
        }
        o->decoupled = strcmp(v, "dcl") == 0;
        o->set_loss = 1;
        return 0;
    case OPT_WARMUP:
        if (trainer_parse_warmup(v, &o->warmup_steps, &o->warmup_epochs)) {
            errmsg_set(err, n, "--warmup wants N steps or Nep epochs (for example 500 or 2ep), got \"%s\"", v);
            return -1;
        }
        o->set_warmup = 1;
        return 0;
    case OPT_EPOCHS: return cli_double_above("--epochs", v, 0, MAX_EPOCHS, &o->epochs, err, n);
    case OPT_STEPS: return cli_long("--steps", v, 1, LONG_MAX / 2, &o->steps, err, n);
    case OPT_MINUTES: return cli_double_above("--minutes", v, 0, MAX_MINUTES, &o->minutes, err, n);
    case OPT_DATASET_SIZE: return cli_u64("--dataset-size", v, 1, UINT64_MAX, &o->dataset_size, err, n);
    case OPT_SEED:
        o->set_seed = 1;
        return cli_u64("--seed", v, 0, UINT64_MAX, &o->seed, err, n);
    case OPT_BIND: return cli_endpoint("--bind", v, CLI_REQUIRED, &o->bind, err, n);
    case OPT_CONTROL: return cli_endpoint("--control", v, CLI_OPTIONAL, &o->control, err, n);
    case OPT_EVALUATOR: return cli_endpoint("--evaluator", v, CLI_OPTIONAL, &o->evaluator, err, n);
    case OPT_OUT:
        o->out = v;
        o->set_out = 1;
        return 0;
    case OPT_CKPT_EVERY: return cli_long("--ckpt-every", v, 1, LONG_MAX / 2, &o->ckpt_every, err, n);
    case OPT_KEEP: return cli_int("--keep", v, 1, MAX_KEEP, &o->keep, err, n);
    case OPT_RESUME: o->resume = v; return 0;
    case OPT_QUEUE: return cli_int("--queue", v, 2, MAX_QUEUE, &o->queue, err, n);
    case OPT_HWM: return cli_int("--hwm", v, 1, MAX_HWM, &o->hwm, err, n);
    case OPT_CURVE: o->curve = v; return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    case OPT_SYNC_BN: o->sync_bn = 1; o->set_sync_bn = 1; return 0;
    default:
        errmsg_set(err, n, "option %d is not handled", c);
        return -1;
    }
}

int trainer_options_parse(trainer_options_t *o, int argc, char **argv, char *err, size_t errlen)
{
    static const struct option opts[] = {
        { "method", required_argument, 0, OPT_METHOD },
        { "classes", required_argument, 0, OPT_CLASSES },
        { "arch", required_argument, 0, OPT_ARCH },
        { "width", required_argument, 0, OPT_WIDTH },
        { "batch", required_argument, 0, OPT_BATCH },
        { "optimizer", required_argument, 0, OPT_OPTIMIZER },
        { "lr", required_argument, 0, OPT_LR },
        { "weight-decay", required_argument, 0, OPT_WD },
        { "momentum", required_argument, 0, OPT_MOMENTUM },
        { "tau", required_argument, 0, OPT_TAU },
        { "loss", required_argument, 0, OPT_LOSS },
        { "ema", required_argument, 0, OPT_EMA },
        { "warmup", required_argument, 0, OPT_WARMUP },
        { "epochs", required_argument, 0, OPT_EPOCHS },
        { "steps", required_argument, 0, OPT_STEPS },
        { "minutes", required_argument, 0, OPT_MINUTES },
        { "dataset-size", required_argument, 0, OPT_DATASET_SIZE },
        { "seed", required_argument, 0, OPT_SEED },
        { "bind", required_argument, 0, OPT_BIND },
        { "control", required_argument, 0, OPT_CONTROL },
        { "evaluator", required_argument, 0, OPT_EVALUATOR },
        { "out", required_argument, 0, OPT_OUT },
        { "ckpt-every", required_argument, 0, OPT_CKPT_EVERY },
        { "keep", required_argument, 0, OPT_KEEP },
        { "resume", required_argument, 0, OPT_RESUME },
        { "queue", required_argument, 0, OPT_QUEUE },
        { "hwm", required_argument, 0, OPT_HWM },
        { "curve", required_argument, 0, OPT_CURVE },
        { "quiet", no_argument, 0, OPT_QUIET },
        { "sync-bn", no_argument, 0, OPT_SYNC_BN },
        { "help", no_argument, 0, OPT_HELP },
        { 0, 0, 0, 0 },
    };
    defaults(o);
    parse_ctx pc = {.o = o};
    int rc = cli_parse(argc, argv, "", opts, OPT_HELP, parse_option, &pc, err, errlen);
    if (rc)
        return rc;
    int got_epochs = pc.got_epochs, got_steps = pc.got_steps, got_minutes = pc.got_minutes;
    if (optind < argc) {
        errmsg_set(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (got_epochs + got_steps + got_minutes > 1) {
        errmsg_set(err, errlen, "give one of --epochs, --steps and --minutes, not both %s",
                   got_minutes ? (got_epochs ? "--epochs and --minutes" : "--steps and --minutes")
                               : "--epochs and --steps");
        return -1;
    }
    if (got_steps || got_minutes)
        o->epochs = 0;
    o->set_length = got_epochs || got_steps || got_minutes;
    if ((o->set_loss || o->set_tau) && o->set_method && o->method != TRAIN_SIMCLR) {
        errmsg_set(err, errlen, "--%s is SimCLR's contrastive loss setting; --method %s trains with its own "
                   "cross-entropy (leave --%s out)", o->set_loss ? "loss" : "tau", trainer_method_name(o->method),
                   o->set_loss ? "loss" : "tau");
        return -1;
    }
    if (o->warmup_epochs > 0 && !o->dataset_size) {
        errmsg_set(err, errlen, "--warmup in epochs needs --dataset-size (or give the warm-up in steps)");
        return -1;
    }
    if (!*o->out) {
        errmsg_set(err, errlen, "--out: empty folder name");
        return -1;
    }
    trainer_options_finish(o);
    return 0;
}

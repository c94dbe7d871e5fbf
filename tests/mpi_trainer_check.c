/* mpi_trainer_check: the trainer's data-parallel step (trainer/model.c:
 * model_set_dist, model_broadcast, model_step) over real ranks against one
 * process, run by tests/it_mpi_train.sh as
 *
 *   mpirun -np N build/tools/mpi_trainer_check --ranks N --method simclr|rotnet
 *
 * Every rank builds the trainer's model (resnet-mini, width 4, without max
 * pooling: see below) for its share of a global batch of
 * CHECK_BATCH images, with synchronised batch norm, takes rank 0's
 * parameters and runs CHECK_STEPS steps of SGD with momentum on its rows of
 * the same deterministic views; rank 0 also runs one process on the whole
 * batch with the same initial parameters. It compares the loss of every step
 * and, after the last, every parameter and batch-norm statistic (relative to
 * the tensor's largest entry), and that the ranks hold the same parameters.
 * Prints one line per check on rank 0; exits 0 when all pass, 1 when one
 * fails, 2 on bad usage.
 *
 * Tolerances. The first step starts from the same parameters on the same
 * views: only rounding differs (sums in another order; the Winograd
 * convolution's is the largest), observed up to 2e-4 of a tensor's largest
 * entry, limit STEP1_TOL. After it the parameters differ by rounding, and
 * the ReLU and max-pool decisions of values near their edge may then go the
 * other way, which moves a gradient by one element's share: the difference
 * grows step by step with the learning rate (observed 5e-3 to 1e-2 after 3 steps at
 * lr 0.01, 0.1 at lr 0.1), so the last comparison is coarser (PARAM_TOL),
 * with a small learning rate and without max pooling (resnet-mini's pools
 * made these jumps larger). A wrong scale of the gradient (a missing
 * allreduce, dloss not 1/size) moves the first step by its own size: far
 * beyond STEP1_TOL; per-rank batch norm, the negative control, by about 1e-2. */
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dist/dist.h"
#include "nn/net.h"
#include "trainer/batch.h"
#include "trainer/model.h"
#include "tests/mpi_report.h"

#define CHECK_BATCH   64      /* images of a global step (a multiple of the ranks) */
#define CHECK_STEPS   3
#define CHECK_C       3
#define CHECK_HW      16
#define CHECK_WIDTH   4       /* resnet-mini's first stage */
#define CHECK_SEED    7
#define CHECK_LR      0.01f
#define CHECK_TAU     0.5f
#define ROT_VIEWS     4       /* rotnet: four rotations per image */
#define LOSS_RTOL     1e-4    /* a step's loss, relative */
#define STEP1_TOL     1e-3    /* a tensor after the first step, relative to its largest entry ... */
#define PARAM_FLOOR   1e-2    /* ... or to this, when all its entries are smaller (batch-norm shifts
                                 start at 0) */
#define PARAM_TOL     5e-2    /* the same after the last step (see above) */


static void must(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "mpi_trainer_check: rank %d: %s: %s\n", dist_rank(world), what, err);
        dist_abort(world, 1);
    }
}

static void *alloc_or_die(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "mpi_trainer_check: out of memory\n");
        dist_abort(world, 1);
    }
    return p;
}

/* A value in [-0.5, 0.5) from (seed, i): the same on every rank. */
static float hash_float(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) / (float)(1ull << 24) - 0.5f;
}

/* Removes the lines of desc that start with word. */
static void drop_lines(char *desc, const char *word)
{
    char *w = desc;
    for (const char *r = desc; *r;) {
        size_t n = strcspn(r, "\n");
        int keep = strncmp(r, word, strlen(word)) != 0;
        if (keep) {
            memmove(w, r, n);
            w += n;
        }
        r += n;
        if (*r == '\n') {
            if (keep)
                *w++ = '\n';
            r++;
        }
    }
    *w = '\0';
}

/* The row of the whole batch that is row i of rank r's block. SimCLR: the
 * trainer lays out first views then second views, in a rank's block as in
 * the whole batch; RotNet: a rank's rows are a slice (the loss is a mean
 * over rows, in any order). */
static int global_row(train_method_t m, int r, int i, int n, int rows, int size)
{
    if (m == TRAIN_SIMCLR)
        return i < n ? r * n + i : n * size + r * n + (i - n);
    return r * rows + i;
}

static model_t *build(const char *desc, train_method_t method, int rows)
{
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    oc.momentum = 0.9f;
    oc.weight_decay = 1e-4f;
    model_t *m = model_new(desc, method, rows, ROT_VIEWS, &oc, CHECK_TAU, err, sizeof err);
    must(!m, "model");
    return m;
}

/* Largest |a - b| over the tensor, relative to its largest |b| (at least PARAM_FLOOR). */
static double tensor_diff(const nn_tensor *ta, const nn_tensor *tb)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < ta->numel; i++) {
        double d = fabs((double)ta->data[i] - (double)tb->data[i]);
        worst = d > worst ? d : worst;
        scale = fabs((double)tb->data[i]) > scale ? fabs((double)tb->data[i]) : scale;
    }
    return worst / fmax(scale, PARAM_FLOOR);
}

/* The largest tensor_diff over the arenas, and where. */
static double arena_diff(const nn_arena *a, const nn_arena *b, const char **where)
{
    double worst = 0;
    *where = "-";
    for (int k = 0; k < a->n; k++) {
        double d = tensor_diff(&a->t[k], &b->t[k]);
        if (d > worst) {
            worst = d;
            *where = a->t[k].name;
        }
    }
    return worst;
}

/* sync: synchronised batch norm (the trainer's --sync-bn), which makes the
 * step the single process's; without it the step-1 parameters must differ
 * by more than STEP1_TOL (the check can tell). */
static void check(train_method_t method, int sync)
{
    int rank = dist_rank(world), size = dist_size(world);
    const char *name = trainer_method_name(method);
    if (CHECK_BATCH % size) {
        report(0, "%d images do not split over %d ranks", CHECK_BATCH, size);
        return;
    }
    int n = CHECK_BATCH / size;
    int views = method == TRAIN_SIMCLR ? 2 : ROT_VIEWS;
    int rows = n * views, big = CHECK_BATCH * views, img = CHECK_C * CHECK_HW * CHECK_HW;
    char desc[NN_MAX_DESC];
    must(nn_preset_desc(desc, sizeof desc, "resnet-mini", CHECK_WIDTH, method == TRAIN_SIMCLR ? "simclr" : "rotation",
                        CHECK_C, CHECK_HW, CHECK_HW, err, sizeof err), "network description");
    drop_lines(desc, "maxpool");

    /* the replica, as the trainer builds it */
    model_t *m = build(desc, method, rows);
    must(model_set_dist(m, world, sync, err, sizeof err), "model_set_dist");
    nn_net_init_params(m->net, CHECK_SEED + (uint64_t)rank);   /* rank 0's must win */
    must(model_broadcast(m, 0, err, sizeof err), "model_broadcast");
    /* one process on the whole batch, from the same parameters */
    model_t *one = NULL;
    if (rank == 0) {
        one = build(desc, method, big);
        nn_arena *a = nn_net_params(one->net), *b = nn_net_params(m->net);
        memcpy(a->base, b->base, a->size * sizeof *a->base);
    }

    batch_t local = { 0 }, whole = { 0 };
    local.x = alloc_or_die((size_t)rows * img * sizeof(float));
    local.targets = alloc_or_die((size_t)rows * sizeof(int32_t));
    whole.x = alloc_or_die((size_t)big * img * sizeof(float));
    whole.targets = alloc_or_die((size_t)big * sizeof(int32_t));
    double worst_loss = 0, first = 0;
    for (int step = 0; step < CHECK_STEPS; step++) {
        for (size_t i = 0; i < (size_t)big * img; i++)
            whole.x[i] = hash_float(100 + (uint64_t)step, i);
        for (int i = 0; i < big; i++)
            whole.targets[i] = i % ROT_VIEWS;
        for (int i = 0; i < rows; i++) {
            int g = global_row(method, rank, i, n, rows, size);
            memcpy(local.x + (size_t)i * img, whole.x + (size_t)g * img, (size_t)img * sizeof(float));
            local.targets[i] = whole.targets[g];
        }
        float acc, loss = model_step(m, &local, CHECK_LR, &acc);
        if (m->comm_failed)
            snprintf(err, sizeof err, "%s", m->comm_error);
        must(m->comm_failed, "data-parallel step");
        if (rank == 0) {
            float want = model_step(one, &whole, CHECK_LR, &acc);
            double rel = fabs((double)loss - (double)want) / fmax(fabs((double)want), 1e-6);
            worst_loss = rel > worst_loss ? rel : worst_loss;
            const char *where;
            double worst = arena_diff(nn_net_params(m->net), nn_net_params(one->net), &where);
            if (step == 0)
                first = worst;
            if (!sync)
                continue;
            report(rel <= LOSS_RTOL, "%s step %d: loss %.6f over %d ranks, %.6f in one process; parameters then "
                   "at most %.2g apart (%s)", name, step + 1, (double)loss, size, (double)want, worst, where);
        }
    }

    /* every rank holds rank 0's parameters: compare each rank's with rank 0's */
    nn_arena *p = nn_net_params(m->net);
    float *theirs = alloc_or_die(p->size * sizeof *theirs);
    double spread = 0;
    for (int r = 1; r < size; r++) {
        if (rank == r)
            memcpy(theirs, p->base, p->size * sizeof *theirs);
        must(dist_broadcast(world, theirs, p->size * sizeof *theirs, r, err, sizeof err), "broadcast parameters");
        for (size_t i = 0; rank == 0 && i < p->size; i++)
            spread = fmax(spread, fabs((double)theirs[i] - (double)p->base[i]));
    }
    if (rank == 0 && !sync) {
        report(first > STEP1_TOL, "%s without synchronised batch norm: the first step is not one process's "
               "(parameters %.2g apart, more than %.0e)", name, first, STEP1_TOL);
    } else if (rank == 0) {
        report(first <= STEP1_TOL, "%s: parameters after the first step at most %.2g apart, limit %.0e", name,
               first, STEP1_TOL);
        report(spread == 0, "%s: after %d steps every rank holds the same parameters (largest difference %.3g)",
               name, CHECK_STEPS, spread);
        const char *where;
        double worst = arena_diff(p, nn_net_params(one->net), &where);
        report(worst <= PARAM_TOL, "%s: parameters and batch-norm statistics after %d steps against one process: "
               "at most %.2g of a tensor's largest entry or %.0e (%s), limit %.0e; loss at most %.2g apart, limit %.0e",
               name, CHECK_STEPS, worst, PARAM_FLOOR, where, PARAM_TOL, worst_loss, LOSS_RTOL);
    }
    free(theirs);
    free(local.x);
    free(local.targets);
    free(whole.x);
    free(whole.targets);
    model_destroy(&m);
    model_destroy(&one);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mpi_trainer_check --ranks N [--method simclr|rotnet]\n"
               "  Runs %d data-parallel training steps of the trainer's model (synchronised\n"
               "  batch norm, a global batch of %d images split over the ranks) and compares\n"
               "  losses and parameters with one process on the whole batch.\n"
               "  Run as: mpirun -np N mpi_trainer_check --ranks N\n"
               "  --ranks N    the number of processes expected (1 without mpirun)\n"
               "  --method M   simclr or rotnet (default: both)\n"
               "  --help       this text\n"
               "Exit status: 0 all checks pass, 1 a check failed, 2 bad usage.\n", CHECK_STEPS, CHECK_BATCH);
}

int main(int argc, char **argv)
{
    int want_ranks = 0, only = -1;
    static const struct option opts[] = {
        { "ranks", required_argument, NULL, 'r' },
        { "method", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r') {
            if (cli_int("--ranks", optarg, 1, CHECK_BATCH, &want_ranks, err, sizeof err))
                return cli_usage_error("mpi_trainer_check", "%s", err);
        } else if (c == 'm') {
            train_method_t m;
            if (trainer_method_parse(optarg, &m) || m == TRAIN_SUPERVISED) {
                fprintf(stderr, "mpi_trainer_check: --method '%s': give simclr or rotnet\n", optarg);
                return 2;
            }
            only = (int)m;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!want_ranks || optind < argc) {
        usage(stderr);
        return 2;
    }
    world = dist_new(&argc, &argv, err, sizeof err);
    if (!world) {
        fprintf(stderr, "mpi_trainer_check: %s\n", err);
        return 1;
    }
    report(dist_size(world) == want_ranks, "%d ranks, %d expected", dist_size(world), want_ranks);
    /* the negative control needs ranks: one process's batch norm is the whole batch's */
    for (int m = TRAIN_SIMCLR; m <= TRAIN_ROTNET; m++) {
        if (only >= 0 && only != m)
            continue;
        check((train_method_t)m, 1);
        if (dist_size(world) > 1)
            check((train_method_t)m, 0);
    }
    float f = (float)failures;
    must(dist_allreduce_sum(world, &f, 1, err, sizeof err), "allreduce failures");
    int total = (int)f;
    if (dist_rank(world) == 0)
        printf("mpi_trainer_check: %d ranks, %s\n", dist_size(world), total ? "FAILED" : "all checks passed");
    dist_destroy(&world);
    return total ? 1 : 0;
}

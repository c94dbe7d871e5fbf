/* mpi_step_bench: the trainer's data-parallel training step (trainer/model.c)
 * timed on its own, without the pipeline in front of it, run by
 * bench/mpi_bench.sh as
 *
 *   mpi_step_bench [--width W] [--batch B] [--steps S]          one process
 *   mpirun -np N mpi_step_bench ...                               N ranks
 *
 * Every rank builds the trainer's SimCLR model (resnet-mini, 32x32x3 views)
 * for B/N images, takes rank 0's parameters and runs one warm-up step and S
 * timed steps on random views. Rank 0 prints one JSON line: global images
 * per second, the time per step spent inside the dist_* calls (allgather of
 * the embeddings, gradient allreduce, batch-norm sums with --sync-bn) and
 * the bytes each rank sends in them per step, split into gradients and
 * embeddings. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "dist/dist.h"
#include "nn/net.h"
#include "nn/parallel.h"
#include "trainer/batch.h"
#include "trainer/model.h"

#define BENCH_C   3
#define BENCH_HW  32
#define BENCH_TAU 0.5f
#define BENCH_LR  0.01f

static void usage(FILE *f)
{
    fprintf(f, "usage: [mpirun -np N] mpi_step_bench [--width W] [--batch B] [--steps S] [--sync-bn]\n"
               "                      [--no-overlap]\n"
               "  Times the trainer's SimCLR step (resnet-mini, 32x32x3 views) on random data, the global\n"
               "  batch B split over the N ranks; prints one JSON line (rank 0).\n"
               "  --width W   first-stage channels (default 16)\n"
               "  --batch B   global images per step, a multiple of N (default 256)\n"
               "  --steps S   timed steps after one warm-up step (default 5)\n"
               "  --sync-bn   synchronised batch norm\n"
               "  --no-overlap  sum the gradients in one call after the backward, not range by\n"
               "              range during it\n"
               "Exit status: 0 done, 1 failure, 2 bad usage.\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        fprintf(stderr, "mpi_step_bench: %s '%s': give a whole number from %d to %d\n", flag, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv)
{
    int width = 16, batch = 256, steps = 5, sync_bn = 0, overlap = 1;
    static const struct option opts[] = {
        { "width", required_argument, NULL, 'w' }, { "batch", required_argument, NULL, 'b' },
        { "steps", required_argument, NULL, 's' }, { "sync-bn", no_argument, NULL, 'y' },
        { "no-overlap", no_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'w': rc = parse_int("--width", optarg, 1, 256, &width); break;
        case 'b': rc = parse_int("--batch", optarg, 2, 1 << 16, &batch); break;
        case 's': rc = parse_int("--steps", optarg, 1, 1000, &steps); break;
        case 'y': sync_bn = 1; break;
        case 'o': overlap = 0; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (rc)
            return 2;
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    char err[512];
    dist_t *d = dist_new(&argc, &argv, err, sizeof err);
    if (!d) {
        fprintf(stderr, "mpi_step_bench: %s\n", err);
        return 1;
    }
    int rank = dist_rank(d), size = dist_size(d);
    if (batch % size) {
        if (rank == 0)
            fprintf(stderr, "mpi_step_bench: --batch %d is not a multiple of %d ranks\n", batch, size);
        dist_destroy(&d);
        return 2;
    }
    int n = batch / size, rows = 2 * n;
    char desc[NN_MAX_DESC];
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    model_t *m = NULL;
    if (nn_preset_desc(desc, sizeof desc, "resnet-mini", width, "simclr", BENCH_C, BENCH_HW, BENCH_HW, err,
                       sizeof err) ||
        !(m = model_new(desc, TRAIN_SIMCLR, rows, 0, &oc, BENCH_TAU, err, sizeof err)) ||
        model_set_dist(m, d, sync_bn, err, sizeof err) || model_set_overlap(m, overlap, err, sizeof err)) {
        fprintf(stderr, "mpi_step_bench: rank %d: %s\n", rank, err);
        dist_abort(d, 1);
    }
    nn_net_init_params(m->net, 1);
    if (model_broadcast(m, 0, err, sizeof err)) {
        fprintf(stderr, "mpi_step_bench: %s\n", err);
        dist_abort(d, 1);
    }
    size_t img = (size_t)BENCH_C * BENCH_HW * BENCH_HW;
    batch_t b = { 0 };
    b.x = malloc((size_t)rows * img * sizeof *b.x);
    if (!b.x) {
        fprintf(stderr, "mpi_step_bench: out of memory\n");
        dist_abort(d, 1);
    }
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1);
    for (size_t i = 0; i < (size_t)rows * img; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        b.x[i] = (float)(s >> 40) / (float)(1u << 24) - 0.5f;
    }
    model_step(m, &b, BENCH_LR, NULL);   /* warm-up: first-touch, BLAS threads */
    double comm0 = m->comm_seconds, bytes0 = m->comm_bytes;
    if (dist_barrier(d, err, sizeof err)) {
        fprintf(stderr, "mpi_step_bench: %s\n", err);
        dist_abort(d, 1);
    }
    double t0 = console_now();
    for (int k = 0; k < steps && !m->comm_failed; k++)
        model_step(m, &b, BENCH_LR, NULL);
    double took = console_now() - t0;
    if (m->comm_failed) {
        fprintf(stderr, "mpi_step_bench: rank %d: %s\n", rank, m->comm_error);
        dist_abort(d, 1);
    }
    double grad_bytes = size > 1 ? (double)nn_net_grads(m->net)->size * sizeof(float) : 0;
    double emb_bytes = size > 1 ? (double)rows * m->out_dim * sizeof(float) : 0;
    if (rank == 0)
        printf("{\"bench\": \"mpi_step\", \"ranks\": %d, \"threads\": %d, \"width\": %d, \"batch\": %d, "
               "\"sync_bn\": %s, \"overlap\": %s, \"steps\": %d, \"images_per_s\": %.1f, \"step_s\": %.4f, "
               "\"comm_s_per_step\": %.5f, \"comm_share\": %.3f, \"comm_bytes_per_step\": %.0f, "
               "\"grad_bytes\": %.0f, \"embedding_bytes\": %.0f}\n",
               size, nn_parallel_threads(), width, batch, sync_bn ? "true" : "false",
               overlap && size > 1 ? "true" : "false", steps, batch * steps / took,
               took / steps, (m->comm_seconds - comm0) / steps, (m->comm_seconds - comm0) / took,
               (m->comm_bytes - bytes0) / steps, grad_bytes, emb_bytes);
    free(b.x);
    model_destroy(&m);
    dist_destroy(&d);
    return 0;
}

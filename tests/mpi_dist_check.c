/* mpi_dist_check: the collectives of dist/ and the pieces of data-parallel
 * training over real ranks, run by tests/it_mpi_dist.sh as
 *
 *   mpirun -np N build/tools/mpi_dist_check --ranks N
 *
 * (or alone, --ranks 1: the world of one without MPI). Every rank checks
 * allreduce (floats and doubles), allgather and broadcast against values it
 * can work out itself; then one SimCLR step of a small network with
 * synchronised batch norm, the gathered NT-Xent and the gradient allreduce,
 * which rank 0 compares with one process's step on the whole batch. Prints
 * one line per check on rank 0; exits 0 when all pass, 1 when one fails,
 * 2 on bad usage. */
#include <getopt.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dist/dist.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/net.h"
#include "tests/mpi_report.h"

#define CHECK_TAU     0.5f
#define CHECK_IMGS    3       /* images per rank */
#define CHECK_C       3
#define CHECK_HW      16
#define CHECK_FLOATS  1000    /* length of the allreduce buffer */
#define CHECK_ROW     7       /* floats per rank in the allgather */
#define LOSS_RTOL     1e-5
#define GRAD_TOL      1e-5    /* the loss's gradient, relative to its largest entry */
#define NET_TOL       3e-4    /* a network step, relative to the largest entry */
#define ABORT_CODE    3       /* the status of --abort-rank */


/* Exits on a failed collective: the ranks can no longer agree. */
static void must(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "mpi_dist_check: rank %d: %s: %s\n", dist_rank(world), what, err);
        exit(1);
    }
}

/* a value every rank computes alike: uniform in [-1, 1) from (seed, i) */
static float hash_float(uint64_t seed, uint64_t i)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + i + 1;
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (float)((x >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *alloc_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "mpi_dist_check: out of memory\n");
        exit(1);
    }
    return p;
}

/* max |a - b| relative to max |b| */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0, scale = 1e-12;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst || isnan(d))
            worst = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > scale)
            scale = fabs(b[i]);
    }
    return worst / scale;
}

static void check_collectives(void)
{
    int rank = dist_rank(world), size = dist_size(world);
    /* allreduce: small integers and halves add up exactly */
    float *buf = alloc_floats(CHECK_FLOATS);
    for (int i = 0; i < CHECK_FLOATS; i++)
        buf[i] = (float)(rank + 1) + 0.5f * (float)(i % 17);
    must(dist_allreduce_sum(world, buf, CHECK_FLOATS, err, sizeof err), "allreduce");
    int bad = 0;
    for (int i = 0; i < CHECK_FLOATS; i++)
        bad += buf[i] != (float)(size * (size + 1) / 2) + 0.5f * (float)(size * (i % 17));
    report(!bad, "allreduce of %d floats (%d wrong)", CHECK_FLOATS, bad);

    /* started sums: 70 ranges, more than the 64 that may wait at once (the
     * 65th waits for those before it), a blocking collective among them,
     * then waited for */
    for (int i = 0; i < CHECK_FLOATS; i++)
        buf[i] = (float)(rank + 1) + 0.5f * (float)(i % 17);
    for (int k = 0; k < 70; k++) {
        int from = k * CHECK_FLOATS / 70, to = (k + 1) * CHECK_FLOATS / 70;
        must(dist_allreduce_start(world, buf + from, (size_t)(to - from), err, sizeof err), "allreduce start");
        must(dist_progress(world, err, sizeof err), "progress");
        if (k == 35) {
            double one = 1.0;
            must(dist_allreduce_sum_f64(world, &one, 1, err, sizeof err), "allreduce between");
        }
    }
    must(dist_allreduce_wait(world, err, sizeof err), "allreduce wait");
    must(dist_allreduce_wait(world, err, sizeof err), "allreduce wait (nothing left)");
    bad = 0;
    for (int i = 0; i < CHECK_FLOATS; i++)
        bad += buf[i] != (float)(size * (size + 1) / 2) + 0.5f * (float)(size * (i % 17));
    report(!bad, "allreduce started in 70 ranges, waited for: %d floats (%d wrong)", CHECK_FLOATS, bad);
    free(buf);

    double d[3] = { 1e-3 * rank, (double)rank * rank, 1.0 };
    must(dist_allreduce_sum_f64(world, d, 3, err, sizeof err), "allreduce f64");
    double s1 = 0.0, s2 = 0.0;
    for (int r = 0; r < size; r++) {
        s1 += 1e-3 * r;
        s2 += (double)r * r;
    }
    report(fabs(d[0] - s1) < 1e-12 && d[1] == s2 && d[2] == size, "allreduce of doubles");

    /* allgather: rows in rank order */
    float row[CHECK_ROW], *all = alloc_floats((size_t)size * CHECK_ROW);
    for (int j = 0; j < CHECK_ROW; j++)
        row[j] = hash_float(7, (uint64_t)rank * CHECK_ROW + j);
    must(dist_allgather(world, row, all, CHECK_ROW, err, sizeof err), "allgather");
    bad = 0;
    for (int r = 0; r < size; r++)
        for (int j = 0; j < CHECK_ROW; j++)
            bad += all[r * CHECK_ROW + j] != hash_float(7, (uint64_t)r * CHECK_ROW + j);
    report(!bad, "allgather of %d x %d floats (%d wrong)", size, CHECK_ROW, bad);
    free(all);

    /* broadcast from rank 0 and from the last rank: a string and floats */
    char conf[64] = "";
    if (rank == 0)
        snprintf(conf, sizeof conf, "config from rank 0 of %d", size);
    must(dist_broadcast(world, conf, sizeof conf, 0, err, sizeof err), "broadcast");
    char want[64];
    snprintf(want, sizeof want, "config from rank 0 of %d", size);
    report(strcmp(conf, want) == 0, "broadcast of bytes from rank 0 ('%s')", conf);
    float p[5] = { 0 };
    if (rank == size - 1)
        for (int j = 0; j < 5; j++)
            p[j] = hash_float(11, j);
    must(dist_broadcast(world, p, sizeof p, size - 1, err, sizeof err), "broadcast");
    bad = 0;
    for (int j = 0; j < 5; j++)
        bad += p[j] != hash_float(11, j);
    report(!bad, "broadcast of floats from rank %d", size - 1);
    report(dist_broadcast(world, p, sizeof p, size, err, sizeof err) == -1, "broadcast from a rank that is not there is refused");
    must(dist_barrier(world, err, sizeof err), "barrier");
}

/* rows of rank r's block (views 1 then views 2 of its images) in the
 * single-process layout of the whole batch (views 1 of all, then views 2) */
static int single_row(int r, int i, int n, int size)
{
    return i < n ? r * n + i : n * size + r * n + (i - n);
}

static void check_training_step(void)
{
    int rank = dist_rank(world), size = dist_size(world);
    int n = CHECK_IMGS, n2 = 2 * n, big = n2 * size, img = CHECK_C * CHECK_HW * CHECK_HW;
    char desc[NN_MAX_DESC];
    if (nn_preset_desc(desc, sizeof desc, "resnet-mini", 2, "simclr", CHECK_C, CHECK_HW, CHECK_HW,
                       err, sizeof err)) {
        report(0, "network description: %s", err);
        return;
    }
    nn_net *net = nn_net_new(desc, n2, err, sizeof err);
    if (!net) {
        report(0, "network: %s", err);
        return;
    }
    int d = nn_net_out_dim(net);
    /* rank 0's parameters for everyone, as the trainer starts */
    nn_arena *par = nn_net_params(net);
    if (rank == 0)
        nn_net_init_params(net, 42);
    must(dist_broadcast(world, par->base, par->size * sizeof(float), 0, err, sizeof err), "broadcast parameters");
    nn_bn_sync sync = { dist_sum_f64_cb, world };
    must(nn_net_set_bn_sync(net, &sync, err, sizeof err), "batch-norm sync");

    /* the whole batch, the same on every rank; this rank's images from it */
    float *x = alloc_floats((size_t)big * img), *xl = alloc_floats((size_t)n2 * img);
    for (size_t i = 0; i < (size_t)big * img; i++)
        x[i] = hash_float(3, i) + 0.5f;
    for (int i = 0; i < n2; i++)
        memcpy(xl + (size_t)i * img, x + (size_t)single_row(rank, i, n, size) * img, (size_t)img * sizeof(float));

    /* the data-parallel step */
    const float *z = nn_net_forward(net, xl, n2, 1);
    if (!z)
        snprintf(err, sizeof err, "%s", dist_error(world));
    must(!z, "forward");
    float *z_all = alloc_floats((size_t)big * d), *cache = alloc_floats(nn_ntxent_cache_size(big, d));
    float *dz = alloc_floats((size_t)n2 * d);
    must(dist_allgather(world, z, z_all, (size_t)n2 * d, err, sizeof err), "allgather embeddings");
    float loss = nn_ntxent_gathered_forward(cache, z_all, size, n2, d, CHECK_TAU);
    nn_ntxent_gathered_backward(dz, cache, size, rank, n2, d, CHECK_TAU, 1.0f);
    nn_net_zero_grad(net);
    int brc = nn_net_backward(net, dz);
    if (brc)
        snprintf(err, sizeof err, "%s", dist_error(world));
    must(brc, "backward");
    nn_arena *gr = nn_net_grads(net);
    must(dist_allreduce_sum(world, gr->base, gr->size, err, sizeof err), "allreduce gradients");
    float *dz_all = alloc_floats((size_t)big * d);
    float *l_all = alloc_floats((size_t)size);
    must(dist_allgather(world, &loss, l_all, 1, err, sizeof err), "allgather losses");
    must(dist_allgather(world, dz, dz_all, (size_t)n2 * d, err, sizeof err), "allgather gradients");

    /* every rank: the gradient sum is the same everywhere (the flat buffer) */
    float *g0 = alloc_floats(gr->size);
    memcpy(g0, gr->base, gr->size * sizeof(float));
    must(dist_broadcast(world, g0, gr->size * sizeof(float), 0, err, sizeof err), "broadcast gradients");
    report(rel_diff(gr->base, g0, gr->size) == 0.0, "summed gradients equal on every rank");

    if (rank == 0) {
        /* one process, the whole batch, the same parameters */
        nn_net *one = nn_net_new(desc, big, err, sizeof err);
        must(!one, "network");
        nn_net_init_params(one, 42);              /* rank 0's parameters before the step */
        float *c1 = alloc_floats(nn_ntxent_cache_size(big, d)), *dz1 = alloc_floats((size_t)big * d);
        const float *z1 = nn_net_forward(one, x, big, 1);
        float loss1 = nn_ntxent_forward(c1, z1, big, d, CHECK_TAU);
        nn_ntxent_backward(dz1, c1, big, d, CHECK_TAU, 1.0f);
        nn_net_zero_grad(one);
        must(nn_net_backward(one, dz1), "backward");
        for (int r = 0; r < size; r++)
            report(fabs(l_all[r] - loss1) <= 1e-4 * fabs(loss1), "rank %d's loss %.6f, one process %.6f",
                   r, l_all[r], loss1);
        /* the loss's gradient: rank r's rows against the whole batch's */
        float *want = alloc_floats((size_t)big * d);
        for (int r = 0; r < size; r++)
            for (int i = 0; i < n2; i++)
                memcpy(want + ((size_t)r * n2 + i) * d, dz1 + (size_t)single_row(r, i, n, size) * d,
                       (size_t)d * sizeof(float));
        double e = rel_diff(dz_all, want, (size_t)big * d);
        report(e <= NET_TOL, "d loss / d z of every rank, max difference %.2g of the largest", e);
        /* per tensor, each relative to its own largest entry */
        nn_arena *g1 = nn_net_grads(one);
        double worst = 0.0;
        const char *worst_name = "";
        for (int t = 0; t < g1->n; t++) {
            size_t off = g1->t[t].offset;
            e = rel_diff(gr->base + off, g1->base + off, g1->t[t].numel);
            if (e >= worst) {
                worst = e;
                worst_name = g1->t[t].name;
            }
        }
        report(worst <= NET_TOL, "allreduce-summed parameter gradients against one process: at most %.2g "
               "of a tensor's largest entry (%s)", worst, worst_name);
        e = rel_diff(par->base, nn_net_params(one)->base, par->size);
        report(e <= NET_TOL, "batch-norm running statistics against one process: %.2g", e);
        /* the gathered NT-Xent alone, on exact data: tighter */
        float *zs = alloc_floats((size_t)big * d), *zg = alloc_floats((size_t)big * d);
        for (size_t i = 0; i < (size_t)big * d; i++)
            zs[i] = hash_float(5, i);
        for (int r = 0; r < size; r++)
            for (int i = 0; i < n2; i++)
                memcpy(zg + ((size_t)r * n2 + i) * d, zs + (size_t)single_row(r, i, n, size) * d,
                       (size_t)d * sizeof(float));
        float la = nn_ntxent_forward(c1, zs, big, d, CHECK_TAU), lb = nn_ntxent_gathered_forward(cache, zg, size, n2, d, CHECK_TAU);
        report(fabs(la - lb) <= LOSS_RTOL * fabs(la), "gathered NT-Xent %.6f, single process %.6f", lb, la);
        free(c1); free(dz1); free(want); free(zs); free(zg);
        nn_net_destroy(&one);
    }
    free(x); free(xl); free(z_all); free(cache); free(dz); free(dz_all); free(l_all); free(g0);
    nn_net_destroy(&net);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mpi_dist_check --ranks N [--abort-rank R]\n"
               "  Checks dist/ (allreduce, allgather, broadcast) and one data-parallel SimCLR\n"
               "  step (synchronised batch norm, gathered NT-Xent, gradient allreduce) against\n"
               "  one process. Run as: mpirun -np N mpi_dist_check --ranks N\n"
               "  --ranks N   the number of processes expected (1 without mpirun)\n"
               "  --abort-rank R  instead: rank R calls dist_abort(%d) while the others wait\n"
               "              in a barrier; the whole run must end with that status\n"
               "  --help      this text\n"
               "Exit status: 0 all checks pass, 1 a check failed, 2 bad usage.\n", ABORT_CODE);
}

int main(int argc, char **argv)
{
    int want_ranks = 0, abort_rank = -1;
    static const struct option opts[] = {
        { "ranks", required_argument, NULL, 'r' },
        { "abort-rank", required_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r') {
            if (cli_int("--ranks", optarg, 1, 64, &want_ranks, err, sizeof err))
                return cli_usage_error("mpi_dist_check", "%s", err);
        } else if (c == 'a') {
            if (cli_int("--abort-rank", optarg, 0, 63, &abort_rank, err, sizeof err))
                return cli_usage_error("mpi_dist_check", "%s", err);
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
        fprintf(stderr, "mpi_dist_check: %s\n", err);
        return 1;
    }
    if (abort_rank >= 0) {
        /* that rank gives up; the others wait in a barrier that dist_abort must end */
        if (dist_rank(world) == abort_rank) {
            fprintf(stderr, "mpi_dist_check: rank %d gives up (--abort-rank)\n", abort_rank);
            dist_abort(world, ABORT_CODE);
        }
        must(dist_barrier(world, err, sizeof err), "barrier");
        fprintf(stderr, "mpi_dist_check: rank %d passed the barrier that rank %d never reached\n",
                dist_rank(world), abort_rank);
        dist_destroy(&world);
        return 0;
    }
    report(dist_size(world) == want_ranks, "%d ranks, %d expected (MPI %s)", dist_size(world), want_ranks,
           dist_have_mpi() ? "built in" : "not built in");
    check_collectives();
    check_training_step();
    /* every rank learns whether any failed */
    float f = (float)failures;
    must(dist_allreduce_sum(world, &f, 1, err, sizeof err), "allreduce failures");
    int total = (int)f;
    if (dist_rank(world) == 0)
        printf("mpi_dist_check: %d ranks, %s\n", dist_size(world), total ? "FAILED" : "all checks passed");
    dist_destroy(&world);
    return total ? 1 : 0;
}

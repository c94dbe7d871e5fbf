/* nn_bench: one SimCLR training step (both views forward, NT-Xent, backward,
 * SGD update) of the mini-ResNet on synthetic 32x32 input, and the
 * cblas_sgemm ceiling measured in the same run. Prints one JSON line per
 * width (and per layer with --profile). gflops counts the step's work as
 * direct convolutions (2 flops per multiply-accumulate, backward twice the
 * forward): with the Winograd convolutions it is an effective rate and
 * share_of_sgemm can exceed 1. Each step line names the OpenBLAS kernel and the
 * CPU ("blas_kernel", "cpu"; nn/blas.h); --system prints only those, as one
 * {"bench": "system"} line (bench/run_all.sh adds them to every benchmark line).
 *
 *   nn_bench [--width 16,32] [--images 256] [--steps 3] [--profile] [--system]
 */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "console/console.h"
#include "nn/blas.h"
#include "nn/loss.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "nn/parallel.h"

#define TAU 0.5f
#define LR  0.1f
#define MAX_IMAGES 65536
#define MAX_STEPS  100000
#define MAX_WIDTH  1024
#define MAX_WIDTHS 16
/* a conv-shaped product: (M x K) x (K x N) as in the middle of the network */
#define GEMM_M 128
#define GEMM_N 4096
#define GEMM_K 576
#define GEMM_REPS 20

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double sgemm_gflops(void)
{
    float *a = malloc(sizeof(float) * GEMM_M * GEMM_K), *b = malloc(sizeof(float) * GEMM_K * GEMM_N),
          *c = malloc(sizeof(float) * GEMM_M * GEMM_N);
    for (int i = 0; i < GEMM_M * GEMM_K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < GEMM_K * GEMM_N; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int r = 0; r < GEMM_REPS; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, GEMM_M, GEMM_N, GEMM_K, 1.0f,
                        a, GEMM_K, b, GEMM_N, 0.0f, c, GEMM_N);
        double g = 2.0 * GEMM_M * GEMM_N * GEMM_K * GEMM_REPS / (now() - t0) / 1e9;
        if (g > best)
            best = g;
    }
    free(a); free(b); free(c);
    return best;
}

static int run(int width, int images, int steps, int profile, double ceiling)
{
    char desc[NN_MAX_DESC], err[512];
    int views = 2 * images;
    if (nn_preset_desc(desc, sizeof desc, "resnet-mini", width, "simclr", 3, 32, 32, err, sizeof err)) {
        fprintf(stderr, "nn_bench: %s\n", err);
        return -1;
    }
    nn_net *net = nn_net_new(desc, views, err, sizeof err);
    if (!net) {
        fprintf(stderr, "nn_bench: %s\n", err);
        return -1;
    }
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    oc.weight_decay = 1e-4f;
    nn_optim *opt = nn_optim_new(&oc, nn_net_params(net), err, sizeof err);
    size_t nx = (size_t)views * 3 * 32 * 32;
    int d = nn_net_out_dim(net);
    float *x = malloc(nx * sizeof *x), *dz = malloc((size_t)views * d * sizeof *dz);
    float *cache = calloc(nn_ntxent_cache_size(views, d), sizeof(float));
    srand(1);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    double best = 1e30, total = 0.0, loss = 0.0;
    for (int s = -1; s < steps; s++) {        /* step -1 warms up */
        if (s == 0 && profile)
            nn_net_profile(net, 1);
        double t0 = now();
        const float *z = nn_net_forward(net, x, views, 1);
        loss = nn_ntxent_forward(cache, z, views, d, TAU);
        memset(dz, 0, (size_t)views * d * sizeof *dz);
        nn_ntxent_backward(dz, cache, views, d, TAU, 1.0f);
        nn_net_zero_grad(net);
        nn_net_backward(net, dz);
        nn_optim_step(opt, nn_net_params(net), nn_net_grads(net), LR);
        double t = now() - t0;
        if (s >= 0) {
            total += t;
            if (t < best)
                best = t;
        }
    }
    double mean = total / steps;
    double gflop = nn_net_forward_macs(net) * 2.0 * 3.0 * views / 1e9;   /* forward + 2x backward */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\": \"nn_simclr_step\", \"impl\": \"c\", \"net\": \"resnet-mini\", \"width\": %d, "
           "\"images\": %d, \"views\": %d, \"threads\": %d, \"steps\": %d, \"step_s\": %.4f, "
           "\"best_step_s\": %.4f, \"images_per_s\": %.1f, \"gflop_per_step\": %.2f, \"gflops\": %.1f, "
           "\"sgemm_gflops\": %.1f, \"share_of_sgemm\": %.3f, \"arena_mb\": %.0f, \"peak_rss_mb\": %.0f, "
           "\"loss\": %.4f, \"blas_kernel\": \"%s\", \"cpu\": \"%s\"}\n",
           width, images, views, nn_parallel_threads(), steps, mean, best, images / mean, gflop,
           gflop / mean, ceiling, gflop / mean / ceiling, nn_net_bytes(net) / 1048576.0,
           ru.ru_maxrss / 1024.0, loss, nn_blas_kernel(), nn_blas_cpu());
    if (profile)
        nn_net_profile_print(net, stdout, 1.0 / steps);
    fflush(stdout);
    free(x); free(dz); free(cache);
    nn_optim_destroy(&opt);
    nn_net_destroy(&net);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nn_bench [options]\n"
            "Times SimCLR training steps (both views forward, NT-Xent, backward, SGD update) of\n"
            "resnet-mini on random 32x32x3 input beside the cblas_sgemm ceiling of this machine, and\n"
            "prints one JSON line per width (threads: NN_THREADS, default all cores).\n"
            "  --width W[,W...]  first-stage channels, one run per width, up to %d (default 16,32)\n"
            "  --images N        images per step, two views each (default 256)\n"
            "  --steps S         timed steps after one warm-up step: mean and best (default 3)\n"
            "  --profile         also one JSON line per layer: forward and backward ms per step\n"
            "  --system          print only {\"bench\": \"system\"} with the OpenBLAS kernel and\n"
            "                    the CPU, timing nothing\n"
            "  --help\n",
            MAX_WIDTHS);
}

int main(int argc, char **argv)
{
    console_init("nn_bench");
    nn_blas_init(argv);
    char widths[128] = "16,32";
    int images = 256, steps = 3, profile = 0, system_only = 0;
    static const struct option opts[] = {
        { "width", required_argument, 0, 'w' }, { "images", required_argument, 0, 'n' },
        { "steps", required_argument, 0, 's' }, { "profile", no_argument, 0, 'p' },
        { "system", no_argument, 0, 'S' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int ch, bad = 0;
    char err[256] = "";
    opterr = 0;
    while (!bad && (ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': snprintf(widths, sizeof widths, "%s", optarg); break;
        case 'n': bad = cli_int("--images", optarg, 1, MAX_IMAGES, &images, err, sizeof err); break;
        case 's': bad = cli_int("--steps", optarg, 1, MAX_STEPS, &steps, err, sizeof err); break;
        case 'p': profile = 1; break;
        case 'S': system_only = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            cli_option_error(ch, argv, err, sizeof err);
            bad = 1;
        }
    }
    int width[MAX_WIDTHS], n_widths = 0;
    for (char *w = strtok(widths, ","); w && !bad; w = strtok(NULL, ","))
        if (n_widths == MAX_WIDTHS)
            bad = snprintf(err, sizeof err, "--width takes at most %d widths", MAX_WIDTHS) > 0;
        else
            bad = cli_int("--width", w, 1, MAX_WIDTH, &width[n_widths++], err, sizeof err);
    if (bad)
        return cli_usage_error("nn_bench", "%s", err);
    nn_blas_log(0);
    if (system_only) {
        printf("{\"bench\": \"system\", \"blas_kernel\": \"%s\", \"cpu\": \"%s\"}\n", nn_blas_kernel(),
               nn_blas_cpu());
        return 0;
    }
    double ceiling = sgemm_gflops();
    for (int k = 0; k < n_widths; k++)
        if (run(width[k], images, steps, profile, ceiling))
            return 1;
    return 0;
}

/* nntool: makes and inspects nn checkpoints.
 *
 *   nntool init  --net resnet-mini --width 8 --head simclr [--input 3x32x32]
 *                [--seed 1] [--train-steps 2] --out ckpt.safetensors
 *       builds a preset network, runs a few SimCLR steps (SGD) on random
 *       images so weights and BN statistics are not at their initial values,
 *       and saves a checkpoint with the optimizer state.
 *   nntool embed CKPT [--images 8] [--seed 2] --out emb.safetensors
 *       rebuilds the network from the checkpoint alone and writes random
 *       input images with their features and outputs (evaluation mode).
 *   nntool info CKPT
 *       prints the metadata and the tensor table as one JSON object.
 * init and embed log the OpenBLAS kernel on stderr first (nn/blas.h).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "console/console.h"
#include "nn/blas.h"
#include "nn/ckpt.h"
#include "nn/loss.h"
#include "nn/safetensors.h"

#define NTXENT_TAU 0.5f
#define INIT_LR    0.1f
#define MAX_WIDTH  4096
#define MAX_STEPS  1000000
#define MAX_IMAGES 65536

static void usage(FILE *f)
{
    fprintf(f, "usage: nntool init --net NAME --width W --head HEAD [--input CxHxW] [--seed S]\n"
               "                   [--train-steps K] --out FILE\n"
               "       nntool embed CKPT [--images N] [--seed S] --out FILE\n"
               "       nntool info CKPT\n");
}

/* getopt_long's error c, or the flag and value it rejected: the usage error. */
static int bad_option(int c, char **argv)
{
    char err[256];
    cli_option_error(c, argv, err, sizeof err);
    return cli_usage_error("nntool", "%s", err);
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
    }
}

static int cmd_init(int argc, char **argv)
{
    const char *net_name = "resnet-mini", *head = "simclr", *out = NULL;
    int width = 8, c = 3, h = 32, w = 32, steps = 2, batch = 8;
    uint64_t seed = 1;
    static const struct option opts[] = {
        { "net", required_argument, 0, 'n' }, { "width", required_argument, 0, 'w' },
        { "head", required_argument, 0, 'H' }, { "input", required_argument, 0, 'i' },
        { "seed", required_argument, 0, 's' }, { "train-steps", required_argument, 0, 't' },
        { "out", required_argument, 0, 'o' }, { 0, 0, 0, 0 } };
    int ch;
    char err[512];
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': net_name = optarg; break;
        case 'w':
            if (cli_int("--width", optarg, 1, MAX_WIDTH, &width, err, sizeof err))
                return cli_usage_error("nntool", "%s", err);
            break;
        case 'H': head = optarg; break;
        case 'i':
            if (sscanf(optarg, "%dx%dx%d", &c, &h, &w) != 3 || c < 1 || h < 1 || w < 1)
                return cli_usage_error("nntool", "--input wants CxHxW, got '%s'", optarg);
            break;
        case 's':
            if (cli_u64("--seed", optarg, 0, UINT64_MAX, &seed, err, sizeof err))
                return cli_usage_error("nntool", "%s", err);
            break;
        case 't':
            if (cli_int("--train-steps", optarg, 0, MAX_STEPS, &steps, err, sizeof err))
                return cli_usage_error("nntool", "%s", err);
            break;
        case 'o': out = optarg; break;
        default: return bad_option(ch, argv);
        }
    }
    if (!out)
        return cli_usage_error("nntool", "init needs --out FILE");
    nn_blas_log(0);
    char desc[NN_MAX_DESC];
    if (nn_preset_desc(desc, sizeof desc, net_name, width, head, c, h, w, err, sizeof err)) {
        fprintf(stderr, "nntool: %s\n", err);
        return CLI_EXIT_FAILED;
    }
    nn_net *net = nn_net_new(desc, batch, err, sizeof err);
    if (!net) {
        fprintf(stderr, "nntool: %s\n", err);
        return CLI_EXIT_FAILED;
    }
    nn_net_init_params(net, seed);
    nn_optim_config oc;
    nn_optim_defaults(&oc, NN_OPT_SGD);
    nn_optim *opt = nn_optim_new(&oc, nn_net_params(net), err, sizeof err);
    int d = nn_net_out_dim(net), rc = 1;
    size_t img = (size_t)c * h * w;
    float *x = malloc((size_t)batch * img * sizeof *x);
    float *cache = calloc(nn_ntxent_cache_size(batch, d), sizeof(float));
    float *dz = malloc((size_t)batch * d * sizeof *dz);
    int32_t labels[8];
    for (int s = 0; s < steps; s++) {
        fill_random(x, (size_t)batch * img, seed + 100 + (uint64_t)s);
        const float *z = nn_net_forward(net, x, batch, 1);
        memset(dz, 0, (size_t)batch * d * sizeof *dz);
        if (strcmp(head, "rotation") == 0) {
            for (int i = 0; i < batch; i++)
                labels[i] = i % NN_ROT_CLASSES;
            nn_xent_forward(cache, z, labels, batch, d);
            nn_xent_backward(dz, cache, labels, batch, d, 1.0f);
        } else {
            nn_ntxent_forward(cache, z, batch, d, NTXENT_TAU);
            nn_ntxent_backward(dz, cache, batch, d, NTXENT_TAU, 1.0f);
        }
        nn_net_zero_grad(net);
        nn_net_backward(net, dz);
        nn_optim_step(opt, nn_net_params(net), nn_net_grads(net), INIT_LR);
    }
    if (nn_ckpt_save(out, net, opt, strcmp(head, "rotation") ? "simclr" : "rotation", steps, 0, err, sizeof err))
        fprintf(stderr, "nntool: %s\n", err);
    else
        rc = 0;
    free(x); free(cache); free(dz);
    nn_optim_destroy(&opt);
    nn_net_destroy(&net);
    return rc;
}

static int cmd_embed(int argc, char **argv)
{
    const char *out = NULL;
    int n = 8;
    uint64_t seed = 2;
    static const struct option opts[] = {
        { "images", required_argument, 0, 'n' }, { "seed", required_argument, 0, 's' },
        { "out", required_argument, 0, 'o' }, { 0, 0, 0, 0 } };
    int ch;
    char err[512];
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (cli_int("--images", optarg, 1, MAX_IMAGES, &n, err, sizeof err))
                return cli_usage_error("nntool", "%s", err);
            break;
        case 's':
            if (cli_u64("--seed", optarg, 0, UINT64_MAX, &seed, err, sizeof err))
                return cli_usage_error("nntool", "%s", err);
            break;
        case 'o': out = optarg; break;
        default: return bad_option(ch, argv);
        }
    }
    if (!out || optind >= argc)
        return cli_usage_error("nntool", "embed needs a checkpoint and --out FILE");
    nn_blas_log(0);
    nn_net *net = nn_ckpt_open(argv[optind], n, NULL, err, sizeof err);
    if (!net) {
        fprintf(stderr, "nntool: %s\n", err);
        return CLI_EXIT_FAILED;
    }
    int c, h, w;
    nn_net_input_shape(net, &c, &h, &w);
    size_t img = (size_t)c * h * w;
    float *x = malloc((size_t)n * img * sizeof *x);
    fill_random(x, (size_t)n * img, seed);
    int fd = nn_net_feat_dim(net), od = nn_net_out_dim(net);
    float *feat = malloc((size_t)n * fd * sizeof *feat);
    const float *y = nn_net_forward(net, x, n, 0);
    memcpy(feat, nn_net_features(net), (size_t)n * fd * sizeof *feat);
    int xs[4] = { n, c, h, w }, fs[2] = { n, fd }, os[2] = { n, od };
    nn_st_item items[3] = { { "input", 4, xs, x }, { "features", 2, fs, feat }, { "output", 2, os, y } };
    int rc = nn_st_write(out, items, 3, NULL, NULL, 0, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "nntool: %s\n", err);
    free(x);
    free(feat);
    nn_net_destroy(&net);
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static int cmd_info(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("nntool", "info needs a checkpoint");
    char err[512];
    nn_st_file f;
    nn_ckpt_meta m;
    if (nn_ckpt_read_meta(argv[1], &m, err, sizeof err) || nn_st_read(&f, argv[1], err, sizeof err)) {
        fprintf(stderr, "nntool: %s\n", err);
        return CLI_EXIT_FAILED;
    }
    printf("{\"file\": \"%s\", \"method\": \"%s\", \"step\": %ld, \"epoch\": %ld, \"optimizer\": %s, "
           "\"tensors\": %d, \"bytes\": %zu}\n", argv[1], m.method, m.step, m.epoch,
           m.has_optimizer ? "true" : "false", f.n, f.size);
    nn_ckpt_meta_clear(&m);
    nn_st_close(&f);
    return 0;
}

int main(int argc, char **argv)
{
    console_init("nntool");
    nn_blas_init(argv);
    if (argc < 2)
        return cli_usage_error("nntool", "a command is needed: init, embed or info");
    if (strcmp(argv[1], "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "embed") == 0)
        return cmd_embed(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    return cli_usage_error("nntool", "unknown command '%s' (init, embed or info)", argv[1]);
}

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
#include "errmsg/errmsg.h"
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

/* The options of init and embed. */
typedef struct {
    const char *net_name, *head, *out;
    int width, c, h, w, steps, images;
    uint64_t seed;
} tool_args;

/* One option ch with value v into ctx (tool_args): 0, or -1 with err set. */
static int take_option(void *ctx, int ch, const char *v, char *err, size_t len)
{
    tool_args *a = ctx;
    switch (ch) {
    case 'n': a->net_name = v; return 0;
    case 'w': return cli_int("--width", v, 1, MAX_WIDTH, &a->width, err, len);
    case 'H': a->head = v; return 0;
    case 'i':
        if (sscanf(v, "%dx%dx%d", &a->c, &a->h, &a->w) != 3 || a->c < 1 || a->h < 1 || a->w < 1) {
            errmsg_set(err, len, "--input wants CxHxW, got '%s'", v);
            return -1;
        }
        return 0;
    case 's': return cli_u64("--seed", v, 0, UINT64_MAX, &a->seed, err, len);
    case 't': return cli_int("--train-steps", v, 0, MAX_STEPS, &a->steps, err, len);
    case 'N': return cli_int("--images", v, 1, MAX_IMAGES, &a->images, err, len);
    case 'o': a->out = v; return 0;
    default:
        errmsg_set(err, len, "option %d is not handled", ch);
        return -1;
    }
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
    static const struct option opts[] = {
        { "net", required_argument, 0, 'n' }, { "width", required_argument, 0, 'w' },
        { "head", required_argument, 0, 'H' }, { "input", required_argument, 0, 'i' },
        { "seed", required_argument, 0, 's' }, { "train-steps", required_argument, 0, 't' },
        { "out", required_argument, 0, 'o' }, { 0, 0, 0, 0 } };
    tool_args a = { .net_name = "resnet-mini", .head = "simclr", .width = 8, .c = 3, .h = 32, .w = 32, .steps = 2,
                    .seed = 1 };
    char err[512];
    if (cli_parse(argc, argv, "", opts, -1, take_option, &a, err, sizeof err))
        return cli_usage_error("nntool", "%s", err);
    if (!a.out)
        return cli_usage_error("nntool", "init needs --out FILE");
    const char *net_name = a.net_name, *head = a.head, *out = a.out;
    int width = a.width, c = a.c, h = a.h, w = a.w, steps = a.steps, batch = 8;
    uint64_t seed = a.seed;
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
    static const struct option opts[] = {
        { "images", required_argument, 0, 'N' }, { "seed", required_argument, 0, 's' },
        { "out", required_argument, 0, 'o' }, { 0, 0, 0, 0 } };
    tool_args a = { .images = 8, .seed = 2 };
    char err[512];
    if (cli_parse(argc, argv, "", opts, -1, take_option, &a, err, sizeof err))
        return cli_usage_error("nntool", "%s", err);
    if (!a.out || optind >= argc)
        return cli_usage_error("nntool", "embed needs a checkpoint and --out FILE");
    const char *out = a.out;
    int n = a.images;
    uint64_t seed = a.seed;
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

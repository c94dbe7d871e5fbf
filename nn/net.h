/* nn/net: networks built from a declarative text description.
 *
 * Description format (one layer per line, '#' starts a comment):
 *
 *   nn 1                          format tag and version, first line
 *   input 3 32 32                 channels, height, width of one image
 *   encoder                       the layers up to the features
 *   conv out=32 k=3 s=1 p=1 bias=0
 *   bn                            batch norm (2-D on maps, 1-D on vectors)
 *   relu
 *   maxpool k=2 s=2
 *   res                           start of a residual block: remembers its input
 *   ...
 *   end                           end of the block: adds the remembered input
 *   gap                           global average pool (N, C, H, W) -> (N, C)
 *   flatten                       (N, C, H, W) -> (N, C*H*W)
 *   head                          optional: layers after the features
 *   linear out=128 bias=1
 *   l2norm
 *
 * Defaults: conv k=3 s=1 p=k/2 bias=0; maxpool k=2 s=k; linear bias=1.
 * Parameter names follow a PyTorch state_dict of a module with two
 * ModuleLists: "<section>.layers.<i>.weight", ".bias", ".running_mean",
 * ".running_var", where i counts the lines of the section (every layer line,
 * res and end included). tests/nn_torch_model.py builds the same module.
 */
#ifndef NN_NET_H
#define NN_NET_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"

#define NN_DESC_FORMAT   "nn"
#define NN_DESC_VERSION  1
#define NN_PROJ_DIM      128   /* SimCLR projection output */
#define NN_ROT_CLASSES   4     /* rotation prediction: 0, 90, 180, 270 degrees */
#define NN_MAX_DESC      16384 /* bytes of a description */
#define NN_HEAD_CLASSIFIER "classifier"   /* supervised head: linear 8w -> classes */
#define NN_DEFAULT_CLASSES 10    /* outputs of the head "classifier" without ":N" */
#define NN_MAX_CLASSES   100000  /* largest N of "classifier:N" */

typedef struct nn_net nn_net;

/* Writes the description of a preset network into buf: 0, or -1 with err set.
 *   net:  "resnet-mini" (conv-BN-ReLU stages of widths w, 2w, 4w, 8w, three
 *         max-pools, two residual blocks, global average pool) or "conv4"
 *         (four conv-BN-ReLU-maxpool stages of widths w, 2w, 4w, 8w, global
 *         average pool);
 *   head: "simclr" (linear 8w->8w, BN, ReLU, linear 8w->128), "rotation"
 *         (linear 8w->4), "classifier:N" (linear 8w->N, a linear classifier
 *         on the features for supervised training; "classifier" alone is
 *         N = NN_DEFAULT_CLASSES) or "none". */
int nn_preset_desc(char *buf, size_t len, const char *net, int width, const char *head,
                   int in_c, int in_h, int in_w, char *err, size_t errlen);

/* Builds a network for batches of up to max_batch images: parses desc (copied),
 * plans and allocates every arena once, initialises the parameters as torch
 * does by default (seed 1). NULL with err set on a bad description. */
nn_net *nn_net_new(const char *desc, int max_batch, char *err, size_t errlen);
void nn_net_destroy(nn_net **self_p);

/* Re-initialises the parameters from a seed (uniform +-1/sqrt(fan_in) for
 * conv and linear weights and biases; BN gamma 1, beta 0, statistics 0 and 1). */
void nn_net_init_params(nn_net *net, uint64_t seed);

/* Forward pass of n <= max_batch images x (n, C, H, W). train != 0 uses batch
 * statistics in BN and keeps what backward needs. Returns the output
 * (n, nn_net_out_dim) owned by the net, valid until the next forward; NULL
 * when n is out of range or a synchronised batch norm failed. */
const float *nn_net_forward(nn_net *net, const float *x, int n, int train);
/* Forward of the encoder only, in evaluation mode: returns (n, nn_net_feat_dim). */
const float *nn_net_forward_features(nn_net *net, const float *x, int n);
/* Features (n, feat_dim) of the last forward (the encoder's output). */
const float *nn_net_features(const nn_net *net);

/* Backward of the last training forward, given d loss / d output (n, out_dim):
 * ACCUMULATES into the parameter gradients. -1 when the last forward was not
 * a training forward. */
int nn_net_backward(nn_net *net, const float *dout);
void nn_net_zero_grad(nn_net *net);

/* Synchronised batch norm for data-parallel training (nn/layers.h): with
 * sync (copied) every BN layer of a training forward and of the backward
 * uses the statistics and gradient sums of the whole batch, through
 * sync->sum, called once per BN layer and pass, in layer order, on every
 * process alike. NULL (or sync->sum NULL) turns it off. When sum fails,
 * nn_net_forward returns NULL and nn_net_backward -1. 0, or -1 with err set. */
struct nn_bn_sync;
int nn_net_set_bn_sync(nn_net *net, const struct nn_bn_sync *sync, char *err, size_t errlen);

/* Gradients handed out as they become final during nn_net_backward, so
 * that a data-parallel run sums them while the backward goes on:
 * ready(ctx, grad, n) gets a range of the gradient arena that no later layer
 * of this backward writes (the last layers' first), ranges of at least
 * min_floats but the last, which together cover the whole arena once per
 * backward. Nonzero from ready fails the backward. While it is on, a
 * backward must start from zeroed gradients (nn_net_zero_grad): a range is
 * final for this backward only. tick(ctx), when set, is called after each
 * layer that hands out nothing once a range went out (to move the started
 * sums along); nonzero fails the backward. NULL (or ready NULL) turns it
 * off. */
typedef struct nn_grad_ready {
    int (*ready)(void *ctx, float *grad, size_t n);
    int (*tick)(void *ctx);
    void *ctx;
    size_t min_floats;
} nn_grad_ready;
int nn_net_set_grad_ready(nn_net *net, const nn_grad_ready *gr, char *err, size_t errlen);

/* Parameter table (with the BN running statistics, flagged NN_T_BUFFER) and
 * the gradient table with the same names, order and offsets. */
nn_arena *nn_net_params(nn_net *net);
nn_arena *nn_net_grads(nn_net *net);

const char *nn_net_desc(const nn_net *net);
int nn_net_out_dim(const nn_net *net);
int nn_net_feat_dim(const nn_net *net);
int nn_net_max_batch(const nn_net *net);
/* Input shape of one image. */
void nn_net_input_shape(const nn_net *net, int *c, int *h, int *w);
/* Bytes held by the net's arenas (parameters, gradients, activations). */
size_t nn_net_bytes(const nn_net *net);
/* Multiply-accumulates of one image's forward pass. */
double nn_net_forward_macs(const nn_net *net);

/* Per-layer timing: when on, forward and backward add each layer's seconds
 * to a table that nn_net_profile_print writes (one JSON line per layer). */
void nn_net_profile(nn_net *net, int on);
void nn_net_profile_print(const nn_net *net, void *file /* FILE * */, double scale);

#endif

/* nn/layers: forward/backward pairs of the network's layers.
 *
 * Conventions (all tensors float32, NCHW, contiguous):
 *  - arguments: outputs first, then caches, then inputs and weights, the dims
 *    struct last;
 *  - backward ACCUMULATES into every gradient it is given (din, dw, db...),
 *    so the caller zeroes gradients explicitly; a NULL din skips the input
 *    gradient (first layer);
 *  - caches are written by forward and read by the matching backward.
 * Flatten needs no code: (N, C, 1, 1) and (N, C) have the same memory.
 */
#ifndef NN_LAYERS_H
#define NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#define NN_BN_EPS       1e-5f   /* as torch.nn.BatchNorm */
#define NN_BN_MOMENTUM  0.1f    /* running = (1 - m) * running + m * batch */
#define NN_L2_EPS       1e-12f  /* as torch.nn.functional.normalize */

/* ---- 2-D convolution: im2col into a workspace + one sgemm per chunk of images */
typedef struct nn_conv_dims {
    int n, cin, h, w;        /* input (n, cin, h, w) */
    int cout, k, stride, pad;
    int oh, ow;              /* output (n, cout, oh, ow), set by nn_conv_dims_init */
} nn_conv_dims;

/* Fills d and computes oh, ow; -1 when the output would be empty. */
int nn_conv_dims_init(nn_conv_dims *d, int n, int cin, int h, int w,
                      int cout, int k, int stride, int pad);
/* Floats of workspace that forward and backward need (shareable between layers). */
size_t nn_conv2d_workspace(const nn_conv_dims *d);

void nn_conv2d_forward(float *out,            /* (n, cout, oh, ow) */
                       float *ws,             /* nn_conv2d_workspace(d) floats */
                       const float *in,       /* (n, cin, h, w) */
                       const float *w,        /* (cout, cin, k, k) */
                       const float *b,        /* (cout) or NULL */
                       const nn_conv_dims *d);
void nn_conv2d_backward(float *din,           /* (n, cin, h, w) or NULL */
                        float *dw,            /* (cout, cin, k, k) */
                        float *db,            /* (cout) or NULL */
                        const float *dout,    /* (n, cout, oh, ow) */
                        float *ws,
                        const float *in, const float *w,
                        const nn_conv_dims *d);
/* Direct (loop) convolution: the slow reference the tests compare against. */
void nn_conv2d_forward_direct(float *out, const float *in, const float *w,
                              const float *b, const nn_conv_dims *d);
void nn_conv2d_backward_direct(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *w, const nn_conv_dims *d);

/* ---- batch normalisation over (n, c, hw); hw = 1 for the 1-D form (n, c) */
typedef struct nn_bn_dims {
    int n, c, hw;
} nn_bn_dims;

/* Training (train != 0): normalises with the batch statistics, stores them in
 * mean/invstd (the cache) and updates run_mean/run_var (unbiased variance),
 * as torch does. Evaluation: uses run_mean/run_var and leaves them alone. */
void nn_batchnorm_forward(float *out,          /* (n, c, hw) */
                          float *mean,         /* (c) cache */
                          float *invstd,       /* (c) cache */
                          float *run_mean,     /* (c) */
                          float *run_var,      /* (c) */
                          const float *in,     /* (n, c, hw) */
                          const float *gamma,  /* (c) */
                          const float *beta,   /* (c) */
                          int train, const nn_bn_dims *d);
/* Backward of the training-mode forward. */
void nn_batchnorm_backward(float *din, float *dgamma, float *dbeta,
                           const float *dout, const float *in,
                           const float *mean, const float *invstd,
                           const float *gamma, const nn_bn_dims *d);

/* Batch norm followed by ReLU in one pass: out = max(0, batchnorm(in)), the
 * same arguments as nn_batchnorm_forward. */
void nn_batchnorm_relu_forward(float *out, float *mean, float *invstd, float *run_mean,
                               float *run_var, const float *in, const float *gamma,
                               const float *beta, int train, const nn_bn_dims *d);
/* Backward of the fused training forward; out is its output (the ReLU mask). */
void nn_batchnorm_relu_backward(float *din, float *dgamma, float *dbeta,
                                const float *dout, const float *out, const float *in,
                                const float *mean, const float *invstd,
                                const float *gamma, const nn_bn_dims *d);

/* ---- synchronised batch norm, for data-parallel training: each process
 * holds part of the batch and the statistics (forward) and the gradient sums
 * (backward) are those of the whole batch. nn does not know how the parts
 * talk: sum(ctx, buf, n) must replace buf (n doubles) by its element-wise
 * sum over every process (an allreduce) and return 0, or -1 on failure (the
 * message stays in ctx). ws is NN_BN_SYNC_WS(c) doubles of scratch. Both
 * return 0, or -1 when sum failed. Training mode only: evaluation uses the
 * running statistics, which stay equal on every process. The parameter
 * gradients dgamma, dbeta get this process's part only, so that the usual
 * sum of gradients over the processes completes them. */
typedef struct nn_bn_sync {
    int (*sum)(void *ctx, double *buf, size_t n);
    void *ctx;
} nn_bn_sync;
#define NN_BN_SYNC_WS(c) (2 * (size_t)(c) + 1)

int nn_batchnorm_sync_forward(float *out, float *mean, float *invstd, float *run_mean,
                              float *run_var, double *ws, const float *in, const float *gamma,
                              const float *beta, int relu, const nn_bn_sync *sync,
                              const nn_bn_dims *d);
/* out: the fused forward's output (ReLU mask) or NULL for plain batch norm;
 * overwrite as nn_batchnorm_backward_ow. */
int nn_batchnorm_sync_backward_ow(float *din, float *dgamma, float *dbeta, double *ws,
                                  const float *dout, const float *out, const float *in,
                                  const float *mean, const float *invstd, const float *gamma,
                                  const nn_bn_sync *sync, const nn_bn_dims *d, int overwrite);

/* ---- ReLU over n floats */
void nn_relu_forward(float *out, const float *in, size_t n);
void nn_relu_backward(float *din, const float *dout, const float *out, size_t n);

/* ---- max pooling, k x k windows, no padding */
typedef struct nn_pool_dims {
    int n, c, h, w, k, stride;
    int oh, ow;              /* set by nn_pool_dims_init */
} nn_pool_dims;
int nn_pool_dims_init(nn_pool_dims *d, int n, int c, int h, int w, int k, int stride);
void nn_maxpool_forward(float *out,            /* (n, c, oh, ow) */
                        int32_t *idx,          /* (n, c, oh, ow) cache: argmax in the input plane */
                        const float *in,       /* (n, c, h, w) */
                        const nn_pool_dims *d);
void nn_maxpool_backward(float *din, const float *dout, const int32_t *idx,
                         const nn_pool_dims *d);

/* ---- global average pool (n, c, hw) -> (n, c) */
void nn_avgpool_forward(float *out, const float *in, int n, int c, int hw);
void nn_avgpool_backward(float *din, const float *dout, int n, int c, int hw);

/* ---- fully connected: out = in W^T + b, W as torch (out, in) */
typedef struct nn_linear_dims {
    int n, in, out;
} nn_linear_dims;
void nn_linear_forward(float *out,             /* (n, out) */
                       const float *in,        /* (n, in) */
                       const float *w,         /* (out, in) */
                       const float *b,         /* (out) or NULL */
                       const nn_linear_dims *d);
void nn_linear_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const nn_linear_dims *d);

/* ---- residual add: out = a + b */
void nn_add_forward(float *out, const float *a, const float *b, size_t n);
void nn_add_backward(float *da, float *db, const float *dout, size_t n);

/* ---- row-wise L2 normalisation of (n, dim): out = in / max(|in|, NN_L2_EPS) */
void nn_l2norm_forward(float *out, float *norm /* (n) cache */, const float *in,
                       int n, int dim);
void nn_l2norm_backward(float *din, const float *dout, const float *out,
                        const float *norm, int n, int dim);

/* ---- input-gradient overwrite variants, for the network driver
 * The same as the backward functions above, except that with overwrite != 0
 * the input gradient din (for add: da, db separately) is written rather than
 * added to, so the caller need not zero it first. Parameter gradients still
 * accumulate. */
void nn_conv2d_backward_ow(float *din, float *dw, float *db, const float *dout, float *ws,
                           const float *in, const float *w, const nn_conv_dims *d, int overwrite);
void nn_batchnorm_backward_ow(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *mean, const float *invstd,
                              const float *gamma, const nn_bn_dims *d, int overwrite);
void nn_batchnorm_relu_backward_ow(float *din, float *dgamma, float *dbeta,
                                   const float *dout, const float *out, const float *in,
                                   const float *mean, const float *invstd,
                                   const float *gamma, const nn_bn_dims *d, int overwrite);
void nn_relu_backward_ow(float *din, const float *dout, const float *out, size_t n, int overwrite);
void nn_maxpool_backward_ow(float *din, const float *dout, const int32_t *idx,
                            const nn_pool_dims *d, int overwrite);
void nn_avgpool_backward_ow(float *din, const float *dout, int n, int c, int hw, int overwrite);
void nn_linear_backward_ow(float *din, float *dw, float *db, const float *dout,
                           const float *in, const float *w, const nn_linear_dims *d, int overwrite);
void nn_add_backward_ow(float *da, float *db, const float *dout, size_t n,
                        int overwrite_a, int overwrite_b);
void nn_l2norm_backward_ow(float *din, const float *dout, const float *out,
                           const float *norm, int n, int dim, int overwrite);

#endif

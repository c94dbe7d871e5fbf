/* nn/winograd: the 3x3, stride 1, padding 1 convolution with Winograd's
 * minimal filtering F(4x4, 3x3), used by nn_conv2d_forward/backward
 * (nn/layers.c) when nn_wino_applies(). Internal to the library.
 *
 * Each 4x4 output tile comes from a 6x6 input patch: in the transformed
 * domain the 3x3 filter becomes a 6x6 one and the convolution an
 * element-wise product, so over all tiles and channels it is 36 matrix
 * products (one per position of the 6x6 domain) of (cout x cin) by
 * (cin x tiles): 36 multiplications per 16 outputs instead of 144 (4x
 * fewer). The backward uses the same algebra: the input gradient is the
 * forward convolution of dout with the flipped, transposed filter, and the
 * filter gradient is G^T (sum over tiles of (AT^T dY AT) * (BT X BT^T)) G.
 *
 * Tiles are processed in chunks of about 2 MB of transformed data (8 MB for
 * the filter gradient, whose products want a long inner dimension):
 * a chunk's transform, its 36 products (single-threaded cblas_sgemm) and
 * its inverse transform run back to back on one thread; threads take chunks
 * from a shared counter, so a slow (shared) core does fewer of them.
 */
#ifndef NN_WINOGRAD_H
#define NN_WINOGRAD_H

#include <stddef.h>

#include "nn/layers.h"

/* 1 when d is a 3x3, stride 1, padding 1 convolution worth doing this way. */
int nn_wino_applies(const nn_conv_dims *d);
/* (NN_WINOGRAD=0 in the environment turns the path off: the im2col one runs.) */
/* Floats of workspace forward and backward need (all threads). */
size_t nn_wino_workspace(const nn_conv_dims *d);

/* out (n, cout, h, w) = conv(in, w) + b */
void nn_wino_forward(float *out, float *ws, const float *in, const float *w,
                     const float *b, const nn_conv_dims *d);
/* din += d/din (= when overwrite), dw += d/dw, db += d/db (din, db may be NULL) */
void nn_wino_backward(float *din, float *dw, float *db, const float *dout, float *ws,
                      const float *in, const float *w, const nn_conv_dims *d, int overwrite);

#endif

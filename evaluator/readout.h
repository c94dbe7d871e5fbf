/* evaluator/readout: which activations of a frozen encoder the probe, the kNN
 * monitor and the metrics read.
 *
 *   pooled   the encoder's output: the last stage's maps averaged over space
 *            (gap), as SimCLR's linear evaluation reads them
 *   maps     the last stage's maps themselves, flattened: the spatial layout
 *            kept (on Fashion-MNIST 28x28 at width 16: 128 x 3 x 3 = 1,152
 *            values instead of 128)
 *   stage:K  the maps of stage K (1 = the first; stages as evaluator/stages.h
 *            finds them), for encoders whose best features lie in the middle
 *            (RotNet)
 *
 * Maps larger than EVAL_READOUT_MAX_DIM values are max-pooled 2x2 (stride 2)
 * until they fit, so that a probe on them stays affordable.
 *
 * The features of an image can be the mean over several views of it
 * (evaluator --feature-views, EVAL_VIEWS_*), the same for every image,
 * training and test alike:
 *
 *   one         the image alone
 *   flip        the image and its mirror image (left-right): the features
 *               become symmetric, as the training's flips taught the encoder
 *               to be, and the probe need not learn it from the labels
 *   flip-shift  both, each at five positions: as it is and moved by
 *               EVAL_VIEW_SHIFT pixels right, left, down and up, the edge
 *               pixels repeated (ten forward passes per image)
 */
#ifndef EVALUATOR_READOUT_H
#define EVALUATOR_READOUT_H

#include <stddef.h>

#include "nn/net.h"

#define EVAL_READOUT_MAX_DIM 4096
#define EVAL_READOUT_NAME_MAX 32
#define EVAL_READOUT_POOLED   0     /* eval_readout.stage values */
#define EVAL_READOUT_MAPS     (-1)
#define EVAL_VIEWS_ONE        1     /* eval_views values: forward passes per image */
#define EVAL_VIEWS_FLIP       2
#define EVAL_VIEWS_FLIP_SHIFT 10
/* pixels a flip-shift view moves by, for images h pixels high: about h / 16 */
#define EVAL_VIEW_SHIFT(h)    ((h) >= 24 ? ((h) + 8) / 16 : 1)

typedef struct {
    int stage;      /* EVAL_READOUT_POOLED (the encoder's output), EVAL_READOUT_MAPS (the last
                     * stage's maps), or K >= 1: stage K's maps */
} eval_readout;

/* Parses "one", "flip" or "flip-shift" into *views (EVAL_VIEWS_*). 0, or -1
 * with err set. */
int eval_views_parse(int *views, const char *text, char *err, size_t errlen);

/* The name of views, as parsed. */
const char *eval_views_name(int views);

/* View v (0 .. views - 1) of n images x (n, C, H, W) into out (same shape):
 * v odd mirrored left-right; v / 2 the position (0 as it is, 1-4 moved right,
 * left, down, up by EVAL_VIEW_SHIFT(H), edge pixels repeated). */
void eval_view_images(const float *x, size_t n, int c, int h, int w, int v, float *out);

/* Parses "pooled", "maps" or "stage:K". 0, or -1 with err set. */
int eval_readout_parse(eval_readout *r, const char *text, char *err, size_t errlen);

/* Its name as parsed ("maps"), for logs and records. */
void eval_readout_name(const eval_readout *r, char *buf, size_t len);

/* The network whose nn_net_forward_features gives the readout of net's
 * encoder, for batches of up to `batch` images, with net's parameters copied
 * by name; the caller destroys it. For `pooled`, NULL with *same set: read net
 * itself. NULL with err set on failure (*same 0). */
nn_net *eval_readout_net(nn_net *net, const eval_readout *r, int batch, int *same, char *err,
                         size_t errlen);

/* Copies every parameter of dst from the tensor of the same name in src.
 * 0, or -1 with err set (a name missing in src, or another size). */
int eval_copy_params(nn_net *dst, nn_net *src, char *err, size_t errlen);

#endif

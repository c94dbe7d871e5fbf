/* evaluator/attention: attention maps of an encoder's convolutional stages,
 * as in the RotNet paper's figure: for each stage (evaluator/stages.h), the
 * mean over channels of the squared activation, upsampled to the image and
 * laid over it in false colour.
 */
#ifndef EVALUATOR_ATTENTION_H
#define EVALUATOR_ATTENTION_H

#include <stddef.h>

#include "evaluator/data.h"
#include "evaluator/stages.h"
#include "nn/net.h"

#define EVAL_ATTENTION_MIN_SIDE 96   /* tiles are enlarged by an integer factor to at least this */

/* Writes a PNG at path: one row per image (im's items idx[0..count)), the
 * image and then one map per stage, each map normalised to its maximum.
 * 0, or -1 with err set. */
int eval_attention_png(nn_net *net, const eval_images *im, const size_t *idx, int count, const char *path,
                       char *err, size_t errlen);

/* Writes a PNG at path in the manner of the RotNet paper's figure: two panels
 * side by side, one per network, titled titles[0] and titles[1] (e.g.
 * "(a) simclr"); in each, one row per image (im's items idx[0..count)): the
 * image, then the attention maps of an early, a middle and the last stage
 * (the first, middle and last of evaluator/stages.h), each column labelled
 * with its stage and map size ("stage 1, 28x28"). The networks take im's
 * input shape. 0, or -1 with err set. */
int eval_attention_compare_png(nn_net *const nets[2], const char *const titles[2], const eval_images *im,
                               const size_t *idx, int count, const char *path, char *err, size_t errlen);

/* Picks count items of im, one per class in turn (class 0, 1, ... then again),
 * into idx; returns how many it found. */
int eval_attention_pick(const eval_images *im, int count, size_t *idx);

#endif

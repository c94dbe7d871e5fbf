/* evaluator/stages: the convolutional stages of an encoder, found in its
 * network description (nn/net.h), for the attention maps.
 *
 * A stage ends where the spatial resolution is about to drop or the maps are
 * about to become a vector: before each maxpool, strided conv, gap or flatten
 * of the encoder, outside residual blocks, when at least one conv came since
 * the previous stage. The activation there (after the stage's last ReLU) is
 * the stage's output. eval_stage_desc writes the description of the encoder
 * cut at that point with a final flatten, so that nn_net_forward_features of
 * that network returns the stage's maps (n, C * H * W); its parameters have
 * the same names as in the whole network.
 */
#ifndef EVALUATOR_STAGES_H
#define EVALUATOR_STAGES_H

#include <stddef.h>

#define EVAL_MAX_STAGES 16

typedef struct {
    int n;
    int line[EVAL_MAX_STAGES];     /* 1-based description line the stage ends before */
    int c[EVAL_MAX_STAGES], h[EVAL_MAX_STAGES], w[EVAL_MAX_STAGES];  /* its maps (C, H, W) */
} eval_stage_list;

/* 0, or -1 with err set (no encoder section, no stage found). */
int eval_stages_find(const char *desc, eval_stage_list *st, char *err, size_t errlen);

/* The description of the encoder up to the end of stage i, plus "flatten". */
int eval_stage_desc(const char *desc, const eval_stage_list *st, int i, char *buf, size_t len,
                    char *err, size_t errlen);

/* Attention maps (count, H, W) of one stage from its activations
 * a (count, C, H, W): the mean over channels of the squared activation. */
void eval_attention_maps(float *maps, const float *a, int count, int c, int h, int w);

#endif

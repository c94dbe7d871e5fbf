/* nn/optim: optimizers over a parameter table, and the learning-rate schedule.
 *
 * The optimizer keeps its state (momentum buffers, Adam moments) in its own
 * arena, one tensor per trainable parameter, named
 * "optimizer.<param>.momentum_buffer", ".exp_avg", ".exp_avg_sq", so a
 * checkpoint saves it next to the parameters. Tensors flagged NN_T_BUFFER are
 * never touched; NN_T_DECAY marks the weights (conv, linear) that weight
 * decay and LARS adaptation apply to.
 */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include <stddef.h>

#include "nn/tensor.h"

typedef enum nn_opt_kind { NN_OPT_SGD, NN_OPT_LARS, NN_OPT_ADAMW } nn_opt_kind;

typedef struct nn_optim_config {
    nn_opt_kind kind;
    float momentum;        /* SGD, LARS (0.9) */
    int nesterov;          /* SGD, LARS */
    float weight_decay;
    int decay_all;         /* SGD, AdamW: 1 decays every trainable tensor (torch's
                            * default), 0 only NN_T_DECAY ones. LARS always
                            * excludes biases and BN parameters. */
    float beta1, beta2, eps;   /* AdamW (0.9, 0.999, 1e-8) */
    float trust_coef;      /* LARS eta (0.001) */
} nn_optim_config;

typedef struct nn_optim nn_optim;

/* Fills c with the defaults of `kind` (weight decay 0). */
void nn_optim_defaults(nn_optim_config *c, nn_opt_kind kind);
/* "sgd", "lars", "adamw" */
const char *nn_optim_kind_name(nn_opt_kind kind);
/* Parses a kind name: 0, or -1 when unknown. */
int nn_optim_kind_parse(const char *name, nn_opt_kind *kind);

/* An optimizer for the parameters of `params` (the table is read, not kept). */
nn_optim *nn_optim_new(const nn_optim_config *c, const nn_arena *params, char *err, size_t errlen);
void nn_optim_destroy(nn_optim **self_p);

/* One update of every trainable parameter with learning rate lr. */
void nn_optim_step(nn_optim *o, nn_arena *params, const nn_arena *grads, float lr);

const nn_optim_config *nn_optim_config_of(const nn_optim *o);
/* State tensors; their content, with the step count, is what resuming needs. */
nn_arena *nn_optim_state(nn_optim *o);
long nn_optim_steps(const nn_optim *o);
void nn_optim_set_steps(nn_optim *o, long steps);

/* Learning rate at `step` (0-based): linear warm-up from base/warmup to base
 * over `warmup` steps, then cosine decay to 0 at `total`; 0 after total. */
float nn_lr_schedule(float base, long step, long warmup, long total);

#endif

/* nn/ckpt: checkpoints as safetensors files.
 *
 * Tensors: every entry of the network's parameter table under its PyTorch
 * state_dict name (BN running statistics included, num_batches_tracked not
 * kept), F32 little-endian; with an optimizer, its state tensors
 * ("optimizer.<param>.momentum_buffer" ...) in the same file.
 * __metadata__ (all strings):
 *   format "pt", nn_format "sslcpu-nn", nn_version "1", nn_desc (the network
 *   description, enough to rebuild the network), method, step, epoch,
 *   checksum "crc32:<hex>" of the data section, and with an optimizer:
 *   optimizer (sgd/lars/adamw), optimizer_steps, optimizer_config (JSON).
 * Writes are atomic (temporary file, fsync, rename). Loading validates
 * everything before it changes anything, and says what is wrong.
 */
#ifndef NN_CKPT_H
#define NN_CKPT_H

#include <stddef.h>

#include "nn/net.h"
#include "nn/optim.h"

#define NN_CKPT_FORMAT  "sslcpu-nn"
#define NN_CKPT_VERSION 1
#define NN_CKPT_MAX_METHOD 64

typedef struct nn_ckpt_meta {
    char method[NN_CKPT_MAX_METHOD];   /* "simclr", "rotation", ... */
    long step, epoch;
    char *desc;                        /* network description (owned; nn_ckpt_meta_clear) */
    int has_optimizer;
} nn_ckpt_meta;

/* Saves the network (and the optimizer's state when opt is not NULL). */
int nn_ckpt_save(const char *path, nn_net *net, nn_optim *opt, const char *method,
                 long step, long epoch, char *err, size_t errlen);

/* Loads into an existing network (and optimizer, when not NULL): the file's
 * description must equal the network's, every tensor must be present with
 * the right shape, the checksum must match. meta (may be NULL) receives the
 * metadata. 0, or -1 with err set and net/opt unchanged. */
int nn_ckpt_load(const char *path, nn_net *net, nn_optim *opt, nn_ckpt_meta *meta,
                 char *err, size_t errlen);

/* Builds the network the file describes (batches up to max_batch) and loads
 * its parameters. NULL with err set. */
nn_net *nn_ckpt_open(const char *path, int max_batch, nn_ckpt_meta *meta, char *err, size_t errlen);

/* Reads and checks only the metadata (no network needed). */
int nn_ckpt_read_meta(const char *path, nn_ckpt_meta *meta, char *err, size_t errlen);
void nn_ckpt_meta_clear(nn_ckpt_meta *meta);

#endif

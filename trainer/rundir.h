/* trainer/rundir: the run folder.
 *
 *   metrics.jsonl                  one JSON object per step, and one per epoch
 *                                  ({"record": "epoch", ...}: see trainer/epochs.h)
 *   ckpt-<step>.safetensors        model + optimizer (nn_ckpt_save, atomic)
 *   ckpt-<step>.json               the trainer's state beside it (atomic)
 *   ckpt-<step>.ema.safetensors    with --ema: the weights' moving average (the
 *                                  model the evaluator is given)
 *   latest -> ckpt-<step>.safetensors   symlink, replaced atomically
 *
 * A checkpoint is complete once both files exist; `latest` is moved only
 * then, so a run killed at any moment resumes from a complete one.
 */
#ifndef TRAINER_RUNDIR_H
#define TRAINER_RUNDIR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trainer/config.h"

#define RUNDIR_STATE_FORMAT  "sslcpu-trainer-state"
#define RUNDIR_STATE_VERSION 1
#define RUNDIR_LATEST        "latest"
#define RUNDIR_METRICS       "metrics.jsonl"
#define RUNDIR_MAX_PATH      4096
#define RUNDIR_MAX_NAME      64

/* Everything besides the tensors that resuming needs: the state file holds
 * "format" and "version", the run's settings (trainer_config_to_json: method,
 * arch, width, batch, optimizer, lr, weight_decay, momentum, tau,
 * warmup_steps, total_steps, epochs, dataset_size, seed) and its progress. */
typedef struct {
    trainer_config_t config;           /* the run's settings */
    long step;                         /* optimizer steps done */
    uint64_t images_seen;
    uint64_t rng;                      /* the trainer's random state */
    double train_seconds;              /* wall time spent training so far */
    json_t *epoch_sets;                /* which samples of the recent epochs the model holds
                                          (epochs_to_json), owned; NULL = not recorded (a
                                          state written before the field existed) */
} train_state_t;

/* mkdir -p: 0 or -1 with err. */
int rundir_make(const char *dir, char *err, size_t errlen);

/* "<dir>/ckpt-<step, 8 digits or more>.safetensors" */
void rundir_ckpt_path(char *buf, size_t len, const char *dir, long step);
/* The state file of a checkpoint: its path with ".json" for ".safetensors". */
void rundir_state_path(char *buf, size_t len, const char *ckpt_path);

/* The moving-average weights of a checkpoint: ".ema.safetensors" for ".safetensors". */
void rundir_ema_path(char *buf, size_t len, const char *ckpt_path);

int rundir_state_save(const char *path, const train_state_t *s, char *err, size_t errlen);
/* Fills s (its epoch_sets a new reference: rundir_state_release drops it). */
int rundir_state_load(const char *path, train_state_t *s, char *err, size_t errlen);
/* The same from the file's text (path names it in errors). */
int rundir_state_parse(const char *text, const char *path, train_state_t *s, char *err, size_t errlen);
/* A whole file as a NUL-terminated string (free it), NULL with err when it
 * cannot be read or holds more than max bytes. */
char *rundir_read_text(const char *path, size_t max, char *err, size_t errlen);
void rundir_state_release(train_state_t *s);

/* Points <dir>/latest at ckpt_path's file name (atomic rename of a new symlink). */
int rundir_point_latest(const char *dir, const char *ckpt_path, char *err, size_t errlen);

/* Deletes the temporary files (NAME.tmp.PID) that writers killed mid-write
 * left in dir, those of processes no longer running; returns how many. They
 * are never taken for checkpoints (the names do not match), only clutter. */
int rundir_clean_tmp(const char *dir);

/* Deletes all but the `keep` newest checkpoints (and their state files) of
 * dir among those of steps up to `current`. Checkpoints of later steps (left
 * by a run that was resumed from an earlier point) are not touched and do
 * not count. */
void rundir_prune(const char *dir, int keep, long current);

/* The checkpoint a --resume argument names: "latest" is <dir>/latest
 * resolved; anything else a path. 0, or -1 with err (nothing there). */
int rundir_resolve(const char *dir, const char *arg, char *buf, size_t len, char *err, size_t errlen);

/* Whether the checkpoint resumed from counts the record of `epoch` as
 * written (1) or leaves it for the resumed run to write (0). */
typedef int (*rundir_record_kept_fn)(uint32_t epoch, void *arg);

/* Opens <dir>/metrics.jsonl for appending. With keep_upto >= 0 it first drops
 * the lines of steps after keep_upto (written by a run that died after its
 * last checkpoint) and any torn last line; with record_kept, also the epoch
 * records ({"record": "epoch", ...}) it refuses, so that the resumed run
 * writes each record once. NULL with err. */
FILE *rundir_metrics_open(const char *dir, long keep_upto, rundir_record_kept_fn record_kept, void *arg, char *err,
                          size_t errlen);

#endif

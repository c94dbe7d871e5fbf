/* evaluator/evaluate: the evaluation of one checkpoint.
 *
 * An eval_ctx lives as long as the process: it keeps the decoded images (for
 * the network's input shape), the augmented view pairs, and the baselines
 * (raw pixels for the data, random encoder per architecture), so a server
 * that evaluates many checkpoints of one run pays for them once; with a
 * baseline cache (evaluator/cache.h) later processes do not pay for them at
 * all.
 */
#ifndef EVALUATOR_EVALUATE_H
#define EVALUATOR_EVALUATE_H

#include <jansson.h>
#include <stddef.h>

#include "evaluator/cache.h"      /* eval_mkdir_p */
#include "evaluator/options.h"

#define EVAL_JSONL      "eval.jsonl"
#define EVAL_REPORT_DIR "report"

typedef struct eval_ctx eval_ctx;

eval_ctx *eval_ctx_new(const eval_options *o);
/* Stops a background baseline (at its next check) and frees everything. */
void eval_ctx_destroy(eval_ctx **self_p);

/* For a server, at start-up: starts a thread that decodes the images at the
 * shape they are stored in (the shape a checkpoint of this data most likely
 * takes), then computes the raw-pixel baseline (or takes it from the
 * baseline cache), so that both are done, or under way, when the first
 * checkpoint needs them; the main thread stays free for its sockets. A
 * checkpoint waits for the decoding (or, of another shape, stops the thread
 * and decodes again), and its record for the baseline. Nothing when the
 * options skip the baselines. 0, or -1 with err (the server can go on: the
 * baselines then come with the first checkpoint). */
int eval_ctx_start_baselines(eval_ctx *ctx, char *err, size_t errlen);

/* Whether the checkpoint being evaluated is the run's last one; asked just
 * before the fine-tuning (evaluator/finetune.h), which only the last
 * checkpoint gets unless --finetune-on all. The server answers whether the
 * trainer's STOP has come and no newer checkpoint with it. Without this hook
 * every checkpoint is the last one (`evaluator --checkpoint FILE`). */
typedef int (*eval_final_fn)(void *arg);
void eval_ctx_set_final_check(eval_ctx *ctx, eval_final_fn fn, void *arg);

/* Evaluates the checkpoint file at path, appends its record to
 * <out>/eval.jsonl and refreshes the report. *record (may be NULL) receives
 * the record (caller json_decref). 0, or -1 with err saying what failed: the
 * context stays usable for the next checkpoint. */
int eval_checkpoint(eval_ctx *ctx, const char *path, json_t **record, char *err, size_t errlen);

/* --compare: writes <out>/compare.png (evaluator/attention.h,
 * eval_attention_compare_png) for the checkpoints at path_a and path_b, with
 * --attention (else 8) test images, one per class in turn. 0, or -1 with err. */
int eval_compare(eval_ctx *ctx, const char *path_a, const char *path_b, char *err, size_t errlen);

#endif

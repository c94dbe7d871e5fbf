/* evaluator/evaluate: the evaluation of one checkpoint.
 *
 * An eval_ctx lives as long as the process: it keeps the decoded images (for
 * the network's input shape), the augmented view pairs, and the baselines
 * (raw pixels for the data, random encoder per architecture), so a server
 * that evaluates many checkpoints of one run pays for them once.
 */
#ifndef EVALUATOR_EVALUATE_H
#define EVALUATOR_EVALUATE_H

#include <jansson.h>
#include <stddef.h>

#include "evaluator/options.h"

#define EVAL_JSONL      "eval.jsonl"
#define EVAL_REPORT_DIR "report"

typedef struct eval_ctx eval_ctx;

eval_ctx *eval_ctx_new(const eval_options *o);
void eval_ctx_destroy(eval_ctx **self_p);

/* Evaluates the checkpoint file at path, appends its record to
 * <out>/eval.jsonl and refreshes the report. *record (may be NULL) receives
 * the record (caller json_decref). 0, or -1 with err saying what failed: the
 * context stays usable for the next checkpoint. */
int eval_checkpoint(eval_ctx *ctx, const char *path, json_t **record, char *err, size_t errlen);

/* mkdir -p: 0, or -1 with err. */
int eval_mkdir_p(const char *dir, char *err, size_t errlen);

#endif

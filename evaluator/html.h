/* evaluator/html: the report page <out>/report/index.html, one
 * self-contained file that a browser opens without a server and without the
 * network: CSS inline, the charts inline SVG drawn here, the PNGs the
 * evaluator writes embedded as base64 data: URIs, and a few lines of inline
 * script that mark an image that does not decode (and any script error) on
 * the page itself.
 *
 * It shows, from the files of the run:
 *   - the run's settings: <run>/run.json (written by run.sh: method, recipe,
 *     architecture, width, batch, epochs, seed, data, each stage's extra
 *     options), the trainer's state beside the newest checkpoint
 *     (ckpt-<step>.json: optimizer, learning rate, schedule...), a header
 *     record of metrics.jsonl when there is one, the checkpoint's own
 *     metadata (method, step, network description) and the evaluation's data;
 *   - the training loss against step (<run>/metrics.jsonl);
 *   - accuracy per checkpoint (<out>/eval.jsonl): linear probe top-1 and
 *     top-5, few-label probes, kNN, alignment and uniformity, as a chart with
 *     the baselines (raw pixels, random encoder) and as a table;
 *   - the newest evaluation against both baselines, the fine-tuning table
 *     (the record's "finetune" list; "not run" without one), the class map's
 *     numbers;
 *   - the newest attention maps and class map, and the augmentation preview
 *     <run>/augment-preview.png (run.sh writes it) when there is one.
 *
 * Every string read from a file is HTML-escaped. Table cells carry their
 * number in data-v (and the record field in data-k), so that a test or a
 * script can read the page back exactly.
 */
#ifndef EVALUATOR_HTML_H
#define EVALUATOR_HTML_H

#include <stddef.h>

#define EVAL_HTML_FILE     "index.html"
#define EVAL_RUN_SETTINGS  "run.json"              /* run.sh's settings, in the run folder */
#define EVAL_PREVIEW_FILE  "augment-preview.png"   /* augmenter --preview, in the run folder */

/* Writes <out_dir>/report/index.html from <out_dir>/eval.jsonl and the run
 * folder's files (run_dir, or out_dir when NULL or when a file is not
 * there): a temporary file in the same folder, then rename(2), so that a
 * browser reloading it never sees half a page. 0, or -1 with err. */
int eval_html_write(const char *out_dir, const char *run_dir, char *err, size_t errlen);

#endif

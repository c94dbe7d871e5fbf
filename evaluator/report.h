/* evaluator/report: the report folder <out>/report/.
 *
 *   accuracy.dat, accuracy.png   probe and kNN top-1 against step, with the
 *                                baselines (from <out>/eval.jsonl)
 *   loss.dat, loss.png           the trainer's loss against step (from the
 *                                run folder's metrics.jsonl, when there is one)
 *   plots.gp                     the gnuplot script that draws the two PNGs
 *   summary.txt                  the latest evaluation as a short text table
 *   index.html                   the whole run on one self-contained page
 *                                (evaluator/html.h): settings, loss, accuracy,
 *                                baselines, fine-tuning, the figures embedded
 *   attention-<step>.png         attention maps (evaluator/attention.h)
 *   classmap-<step>.png          PCA and t-SNE maps by class (evaluator/classmap.h);
 *                                their numbers are in the summary
 *
 * The plots need gnuplot (Debian package gnuplot-nox); without it the data
 * and the script are still written and a message says what to install.
 */
#ifndef EVALUATOR_REPORT_H
#define EVALUATOR_REPORT_H

#include <stddef.h>

/* Rewrites the report from <out_dir>/eval.jsonl and <run_dir>/metrics.jsonl
 * (run_dir may be NULL; then <out_dir>/metrics.jsonl). 0, or -1 with err (a
 * page that cannot be written is logged, not an error). */
int eval_report_update(const char *out_dir, const char *run_dir, char *err, size_t errlen);

#endif

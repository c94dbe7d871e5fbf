/* report_page: rewrites a run's report page (evaluator/html.h) from the
 * files already there, without evaluating anything, so that tests can render
 * an eval.jsonl they changed (a fine-tuning list, a damaged image).
 *
 *   report_page OUT_DIR [RUN_DIR]
 *
 * Exit status: 0 written, 1 failed (the reason on stderr), 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "evaluator/html.h"

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: report_page OUT_DIR [RUN_DIR]\n"
               "Rewrites OUT_DIR/report/" EVAL_HTML_FILE " from OUT_DIR/eval.jsonl and the run folder's files\n"
               "(RUN_DIR, default OUT_DIR), as the evaluator does after each evaluation.\n");
        return 0;
    }
    if (argc < 2 || argc > 3 || argv[1][0] == '-' || (argc == 3 && argv[2][0] == '-')) {
        fprintf(stderr, "usage: report_page OUT_DIR [RUN_DIR] (see --help)\n");
        return 2;
    }
    char err[2048];
    if (eval_html_write(argv[1], argc == 3 ? argv[2] : NULL, err, sizeof err)) {
        fprintf(stderr, "report_page: %s\n", err);
        return 1;
    }
    return 0;
}

/* evaluator: evaluates the encoders the trainer checkpoints (linear probe,
 * few-label probes, kNN, alignment/uniformity, baselines, attention maps;
 * on request, fine-tuning with few labels against training from scratch, on
 * the run's last checkpoint) and writes one JSON line per checkpoint to
 * <out>/eval.jsonl plus a report folder <out>/report/.
 *
 * Sockets (server mode):
 *   PULL  bind     tcp://127.0.0.1:5557  (--bind)     Checkpoint messages (a file path or the
 *                                                     file's bytes); several waiting: newest
 *                                                     step first, at most --max-pending kept
 *   SUB   connect  none by default       (--control)  the trainer's Control PUB: on STOP, the
 *                                                     waiting checkpoints are evaluated, then exit
 * With --curve DIR both are CURVE-encrypted (transport/transport.h).
 * `evaluator --checkpoint FILE` evaluates one file and exits, without sockets;
 * `evaluator --compare A B --out DIR` draws two checkpoints' stage maps side by side and exits.
 * A checkpoint that cannot be read gets a message naming the file and what is
 * wrong with it; the server goes on with the next one.
 *
 * The server loop is evaluator/server.h, the evaluation of one checkpoint
 * evaluator/evaluate.h; this file reads the command line, runs the mode it
 * asks for and turns the outcome into the exit status.
 */
#include <stdio.h>
#include <vips/vips.h>

#include "cli/cli.h"
#include "console/console.h"
#include "evaluator/evaluate.h"
#include "evaluator/options.h"
#include "evaluator/server.h"
#include "nn/blas.h"
#include "transport/transport.h"

#define COMPARE_MAX_TRAIN 100      /* training images decoded for --compare (it uses none) */

int main(int argc, char **argv)
{
    console_init("evaluator");
    nn_blas_init(argv);   /* may restart the evaluator on a faster OpenBLAS kernel */
    eval_options o;
    char opt_err[1024];
    int r = eval_options_parse(&o, argc, argv, opt_err, sizeof opt_err);
    if (r)
        return cli_parse_exit(r, "evaluator", eval_usage, opt_err);
    nn_blas_log(0);
    char curve_err[1024];
    if (o.curve && !o.checkpoint &&
        transport_use_curve(o.curve, TRANSPORT_CURVE_SERVER | (o.control ? TRANSPORT_CURVE_CLIENT : 0), curve_err,
                            sizeof curve_err)) {
        fprintf(stderr, "evaluator: %s\n", curve_err);
        return CLI_EXIT_USAGE;
    }
    if (VIPS_INIT(argv[0])) {
        console_log("cannot start libvips: %s", vips_error_buffer());
        return CLI_EXIT_FAILED;
    }
    vips_cache_set_max(0);
    transport_catch_signals();
    if (o.compare[0] && !o.max_train)
        o.max_train = COMPARE_MAX_TRAIN;   /* the comparison shows test images only: decode few training ones */
    eval_ctx *ctx = eval_ctx_new(&o);
    if (!ctx) {
        console_log("out of memory");
        return CLI_EXIT_FAILED;
    }
    int rc;
    if (o.compare[0]) {
        char err[2048];
        rc = eval_compare(ctx, o.compare[0], o.compare[1], err, sizeof err) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
        if (rc)
            console_log("%s", err);
    } else if (o.checkpoint) {
        char err[2048];
        rc = eval_checkpoint(ctx, o.checkpoint, NULL, err, sizeof err) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
        if (rc)
            console_log("%s", err);
    } else {
        eval_server_t *s = eval_server_new(&o, ctx);
        rc = s ? eval_server_run(s) : CLI_EXIT_FAILED;
        eval_server_destroy(&s);
    }
    eval_ctx_destroy(&ctx);
    vips_shutdown();
    return rc;
}

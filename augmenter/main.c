/* augmenter: pulls Samples, augments them, pushes ViewBatches.
 *
 * Sockets, in each worker process:
 *   PULL  connect  tcp://127.0.0.1:5555  (--connect)  Samples and the loader's Control
 *   PUSH  connect  tcp://127.0.0.1:5556  (--push)     ViewBatches of --batch samples, and
 *                                                     the loader's END_OF_EPOCH forwarded
 *   XSUB  connect  tcp://127.0.0.1:5558  (--control)  the trainer's Control PUB, topic "stop"
 *                                                     (and the deprecated single-frame STOP):
 *                                                     STOP ends the run; worker 0 also takes
 *                                                     "heartbeat" and logs when the trainer's
 *                                                     heartbeats stop and resume. Up it, each
 *                                                     worker's beat every second, so that the
 *                                                     trainer sees a stopped or hung worker
 * and in the parent, once every worker has finished after an end of stream:
 *   PUSH  connect  (--push)  one Control END_OF_STREAM carrying the loader's count
 * With --curve DIR every socket is CURVE-encrypted, with DIR's client key pair
 * (transport/transport.h); a lost loader or trainer is logged, and reconnected.
 *
 * --workers N forks N single-threaded workers; PUSH/PULL spreads the samples
 * among them, and more augmenter processes, here or on other machines, add
 * workers with no other change. The loader sends END_OF_STREAM once, so it
 * reaches one worker: that worker tells the parent (a pipe), the parent tells
 * the others (SIGUSR1) to finish what is queued, each exits once DRAIN_IDLE_MS
 * pass with nothing new, and the parent sends END_OF_STREAM downstream.
 *
 * The parent replaces a worker that dies (a signal, such as the OOM killer's
 * SIGKILL, or a non-zero exit) after a back-off of RESTART_DELAY_MS doubling
 * up to RESTART_DELAY_MAX_MS; CRASH_LIMIT deaths within CRASH_WINDOW_S mean
 * something is wrong for good, and it gives up (exit status 1). What a dead
 * worker held is lost here: the loader's --exactly-once sends it again. A
 * worker that ends normally (end of stream, STOP, SIGTERM) is not replaced,
 * and a worker whose parent dies stops too (PR_SET_PDEATHSIG), so that a
 * killed augmenter leaves no orphans behind.
 *
 * The built-in operations never call libvips: on images this size their own
 * loops are faster than any libvips call (see bench/augment_bench.c --ideas).
 * libvips runs only the recipe's vips: and jpeg steps (augment/vipsstep.h),
 * and decodes and assembles the --preview grid.
 *
 * The stage itself is augmenter/augmenter.h (the workers: augmenter/worker.h,
 * their replacement: augmenter/supervisor.h); this file reads the command
 * line, runs it and turns the outcome into the exit status.
 */
#include <stdio.h>

#include "augmenter/augmenter.h"
#include "augmenter/options.h"
#include "cli/cli.h"
#include "console/console.h"
#include "transport/transport.h"

int main(int argc, char **argv)
{
    augmenter_options_t o;
    char err[1024];
    console_init("augmenter");
    int rc = augmenter_options_parse(&o, argc, argv, err, sizeof err);
    if (rc) return cli_parse_exit(rc, "augmenter", augmenter_usage, err);
    if (o.curve && !o.preview && transport_use_curve(o.curve, TRANSPORT_CURVE_CLIENT, err, sizeof err))
        return cli_usage_error("augmenter", "%s", err);
    if (o.preview) return augmenter_preview(&o, argv[0]);

    augmenter_t *a = augmenter_new(&o, &rc, err, sizeof err);
    if (!a) {
        fprintf(stderr, "augmenter: %s\n", err);
        return rc;
    }
    rc = augmenter_run(a);
    augmenter_destroy(&a);
    return rc;
}

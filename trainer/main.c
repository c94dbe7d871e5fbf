/* trainer: trains an encoder with SimCLR or RotNet (or supervised, on the
 * samples' labels) on the views the augmenters send, checkpoints it, and
 * tells the evaluator.
 *
 * Sockets:
 *   PULL  bind     tcp://127.0.0.1:5556  (--bind)       ViewBatches, and the loader's Control
 *                                                       (END_OF_EPOCH, END_OF_STREAM) forwarded
 *                                                       by the augmenters; read by the receive
 *                                                       thread (trainer/feed.c)
 *   XPUB  bind     tcp://127.0.0.1:5558  (--control)    Control HEARTBEAT every second (its epoch:
 *                                                       the epoch training is in) with a Have (the
 *                                                       samples of the current epochs the model
 *                                                       holds), STOP at the end, the trainer's
 *                                                       Stats, and an Ack after each step naming
 *                                                       the samples it trained, to the loader and
 *                                                       the augmenters; each as [topic, body]
 *                                                       (proto.h PROTO_TOPIC_*). Up the same
 *                                                       socket come their beats (once a second):
 *                                                       one silent for 3 s is logged as stopped
 *                                                       or hung, and again when it is back
 *   PUSH  connect  tcp://127.0.0.1:5557  (--evaluator)  a Checkpoint message after each save;
 *                                                       conflated and non-blocking, so a slow or
 *                                                       absent evaluator never holds training up
 *                                                       (newest wins; the file is on disk anyway)
 * With --curve DIR every socket is CURVE-encrypted and the bound ones accept
 * only the client keys in DIR/allowed/ (transport/transport.h).
 *
 * Started by mpirun -np N, the N processes train one model data-parallel
 * (dist/dist.h): rank r binds its own PULL (the r-th entry of a --bind list,
 * or --bind's port + r) and takes batch/N images of each step; rank 0 alone
 * binds the Control XPUB, connects to the evaluator and writes the run
 * folder. Started alone, it is a world of one and MPI is never called.
 *
 * The stage itself is trainer/trainer.h; this file reads the command line,
 * runs it and turns the outcome into the exit status.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "console/console.h"
#include "dist/dist.h"
#include "nn/blas.h"
#include "transport/transport.h"
#include "trainer/options.h"
#include "trainer/trainer.h"

/* SIGUSR1: stop as on SIGTERM. mpirun ends its ranks at once on SIGTERM or
 * SIGINT but forwards SIGUSR1 to each, so that is how every rank of a
 * data-parallel run is asked to stop (after a checkpoint). */
static void on_usr1(int sig)
{
    (void)sig;
    transport_stop = 1;
}

/* Leaves the run: a rank that fails at run time ends every rank (the others
 * would wait for it in a collective forever); a usage error is every rank's
 * alike, and a world of one just exits. */
static int leave(dist_t **d, int code)
{
    if (code == CLI_EXIT_FAILED && *d && dist_size(*d) > 1)
        dist_abort(*d, code);
    dist_destroy(d);
    return code;
}

int main(int argc, char **argv)
{
    trainer_options_t o;
    char err[TRAINER_ERR_MAX], stage[32];
    console_init("trainer");
    nn_blas_init(argv);   /* may restart the trainer on a faster OpenBLAS kernel: before MPI starts */
    /* before any other thread (ZeroMQ's, the receive thread): MPI is called from this one only */
    dist_t *d = dist_new(&argc, &argv, err, sizeof err);
    if (!d) {
        fprintf(stderr, "trainer: %s\n", err);
        return CLI_EXIT_FAILED;
    }
    if (dist_rank(d) > 0) {
        snprintf(stage, sizeof stage, "trainer.%d", dist_rank(d));
        console_init(stage);
    }
    int rc = trainer_options_parse(&o, argc, argv, err, sizeof err);
    if (rc) {
        if (dist_rank(d) > 0)
            return leave(&d, rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE);   /* rank 0 says it */
        return leave(&d, cli_parse_exit(rc, "trainer", trainer_usage, err));
    }
    nn_blas_log(o.quiet);
    transport_catch_signals();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    int client = o.evaluator ? TRANSPORT_CURVE_CLIENT : 0;
    if (o.curve && transport_use_curve(o.curve, TRANSPORT_CURVE_SERVER | client, err, sizeof err)) {
        fprintf(stderr, "trainer: %s\n", err);
        return leave(&d, CLI_EXIT_USAGE);
    }

    trainer_t *t = trainer_new(&o, d, err, sizeof err);
    if (!t) {
        console_log("%s", err);
        return leave(&d, CLI_EXIT_USAGE);
    }
    rc = trainer_run(t);
    trainer_destroy(&t);
    transport_shutdown();
    return leave(&d, rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED);
}

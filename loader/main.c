/* loader: reads an image dataset, decodes it, and streams it as Samples.
 *
 * Sockets:
 *   PUSH  bind     tcp://127.0.0.1:5555  (--bind)     Sample messages, then Control
 *                                                     END_OF_EPOCH after each epoch and
 *                                                     END_OF_STREAM at the end; the
 *                                                     high-water mark (--hwm, fewer when
 *                                                     that many Samples exceed --queue-mb:
 *                                                     loader/queue.h) makes a slow
 *                                                     consumer slow the loader down
 *   XSUB  connect  tcp://127.0.0.1:5558  (--control)  the trainer's Control PUB ([topic, body]
 *                                                     frames); STOP ends the run; the
 *                                                     trainer's HEARTBEAT (silent for 3 s:
 *                                                     logged), with --exactly-once also its
 *                                                     epoch, Acks and Haves. Up it, a beat
 *                                                     every second so that the trainer sees
 *                                                     a stopped or hung loader
 * With --curve DIR both are CURVE-encrypted: the PUSH accepts only the client
 * keys in DIR/allowed/ (transport/transport.h); lost peers are logged.
 *
 * The stage itself is loader/loader.h (--exactly-once, the cache and the
 * decoding threads are described there); this file reads the command line,
 * runs it and turns the outcome into the exit status.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "console/console.h"
#include "loader/loader.h"
#include "loader/options.h"

int main(int argc, char **argv)
{
    loader_options_t o;
    char err[1024];
    console_init("loader");
    int rc = loader_options_parse(&o, argc, argv, err, sizeof err);
    if (rc)
        return cli_parse_exit(rc, "loader", loader_usage, err);
    loader_t *l = loader_new(&o, &rc, err, sizeof err);
    if (l) {
        rc = loader_run(l);
        loader_destroy(&l);
    } else if (err[0]) {
        fprintf(stderr, "loader: %s\n", err);
    }
    return rc;
}

/* view_sink: the benchmark consumer of the augmenters. Binds a PULL socket,
 * decodes every ViewBatch (the view data is borrowed, not copied, as in the
 * trainer), ignores the first --warmup seconds, counts views for the next
 * --seconds, prints one JSON line and exits:
 *
 *   view_sink --bind tcp://127.0.0.1:6000 --warmup 3 --seconds 10
 *   {"bench": "view_sink", "views": 41230, "seconds": 10.0, "views_per_s": 4123.0, "dropped": 0}
 *
 * Being in C, it costs little CPU next to the augmenter workers it measures.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "console/console.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define RECV_SLICE_MS 100

static void usage(FILE *f)
{
    fprintf(f, "usage: view_sink --bind ENDPOINT [--warmup S] [--seconds S]\n"
               "Counts the views of the ViewBatches pushed to ENDPOINT after a warm-up and\n"
               "prints {\"views_per_s\": ...} as one JSON line. Exit 0, 1 on a socket error, 2 on bad usage.\n");
}

#define MAX_SECONDS   3600

int main(int argc, char **argv)
{
    const char *endpoint = NULL;
    double warmup = 3, seconds = 10;
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},   {"warmup", required_argument, NULL, 'w'},
        {"seconds", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, bad = 0;
    char err[256];
    opterr = 0;
    while (!bad && (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': bad = cli_endpoint("--bind", optarg, CLI_REQUIRED, &endpoint, err, sizeof err); break;
        case 'w': bad = cli_double("--warmup", optarg, 0, MAX_SECONDS, &warmup, err, sizeof err); break;
        case 's': bad = cli_double("--seconds", optarg, 0, MAX_SECONDS, &seconds, err, sizeof err); break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default:
            cli_option_error(c, argv, err, sizeof err);
            bad = 1;
        }
    }
    if (bad)
        return cli_usage_error("view_sink", "%s", err);
    if (!endpoint || optind < argc)
        return cli_usage_error("view_sink", "%s", !endpoint ? "--bind ENDPOINT is required" : "unexpected argument");
    console_init("view_sink");
    transport_catch_signals();
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_BIND, endpoint, 0);
    if (!pull)
        return 1;
    double start = console_now(), begin = start + warmup, end = begin + seconds;
    uint64_t views = 0, dropped = 0;
    for (double now = start; now < end && !transport_stop; now = console_now()) {
        zmq_msg_t msg;
        int got = transport_recv(pull, &msg, RECV_SLICE_MS);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        proto_viewbatch_t vb;
        memset(&vb, 0, sizeof vb);
        proto_msg_type_t type;
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (proto_peek_type(data, len, &type, NULL, 0) == 0 && type == PROTO_MSG_VIEWBATCH) {
            if (proto_viewbatch_decode(&vb, data, len, NULL, 0) == 0) {
                if (console_now() >= begin)
                    views += (uint64_t)vb.views * vb.n_samples;
            } else {
                dropped++;
            }
            proto_viewbatch_clear(&vb);
        }
        zmq_msg_close(&msg);
    }
    json_t *j = json_pack("{s:s, s:I, s:f, s:f, s:I}", "bench", "view_sink", "views", (json_int_t)views,
                          "seconds", seconds, "views_per_s", seconds > 0 ? (double)views / seconds : 0.0,
                          "dropped", (json_int_t)dropped);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
    transport_close(&pull);
    transport_shutdown();
    return 0;
}

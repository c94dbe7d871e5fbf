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

static double parse_seconds(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 3600)) {
        fprintf(stderr, "view_sink: %s wants seconds from 0 to 3600, got \"%s\"\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL;
    double warmup = 3, seconds = 10;
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},   {"warmup", required_argument, NULL, 'w'},
        {"seconds", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': endpoint = optarg; break;
        case 'w': warmup = parse_seconds("--warmup", optarg); break;
        case 's': seconds = parse_seconds("--seconds", optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!endpoint || optind < argc) {
        usage(stderr);
        return 2;
    }
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

/* loader_sink: the benchmark consumer of the loader. PULLs Samples from a
 * running loader, decodes each one (as a real consumer would), and prints one
 * JSON line per epoch: images, seconds, images/s, megabytes/s. Exits at
 * END_OF_STREAM.
 *
 *   loader_sink --connect tcp://127.0.0.1:5555 --name cifar10-jpeg
 *
 * An epoch is timed from its first Sample (epoch 0) or from the previous
 * END_OF_EPOCH to its own END_OF_EPOCH.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/defaults.h"
#include "console/console.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define RECV_TIMEOUT_MS 60000

static void print_epoch(const char *name, uint32_t epoch, uint64_t images, uint64_t bytes, double seconds)
{
    json_t *j = json_pack("{s:s, s:s, s:i, s:I, s:f, s:f, s:f}", "bench", "loader", "dataset", name, "epoch",
                          (int)epoch, "images", (json_int_t)images, "seconds", seconds, "images_per_s",
                          seconds > 0 ? (double)images / seconds : 0.0, "mb_per_s",
                          seconds > 0 ? (double)bytes / seconds / 1e6 : 0.0);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loader_sink [options]\n"
            "Pulls Samples from a running loader, decodes each one, and prints one JSON line per\n"
            "epoch on stdout (images, seconds, images/s, MB/s). Exit 0 at END_OF_STREAM, 1 on a bad\n"
            "message or when nothing arrives for %d s, 2 on bad usage.\n"
            "  --connect ENDPOINT  the loader's PUSH socket (default " CLI_ENDPOINT_LOADER ")\n"
            "  --name NAME         the dataset's name in the JSON lines (default dataset)\n"
            "  --help\n",
            RECV_TIMEOUT_MS / 1000);
}

int main(int argc, char **argv)
{
    const char *endpoint = CLI_ENDPOINT_LOADER, *name = "dataset";
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'c') {
            endpoint = optarg;
        } else if (c == 'n') {
            name = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            return cli_usage_error("loader_sink", "usage: loader_sink --connect ENDPOINT --name NAME");
        }
    }
    console_init("loader_sink");
    transport_catch_signals();
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_CONNECT, endpoint, 0);
    if (!pull)
        return 1;
    uint64_t images = 0, bytes = 0;
    double t0 = 0;
    int rc = 1;
    for (;;) {
        zmq_msg_t msg;
        int got = transport_recv(pull, &msg, RECV_TIMEOUT_MS);
        if (got <= 0) {
            fprintf(stderr, "loader_sink: nothing received for %d ms\n", RECV_TIMEOUT_MS);
            break;
        }
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        proto_msg_type_t type;
        int end = 0;
        char perr[PROTO_ERR_MAX];
        if (proto_peek_type(data, len, &type, perr, sizeof perr) != 0) {
            fprintf(stderr, "loader_sink: bad message: %s\n", perr);
            end = -1;
        } else if (type == PROTO_MSG_SAMPLE) {
            proto_sample_t s;
            if (proto_sample_decode(&s, data, len, perr, sizeof perr) != 0) {
                fprintf(stderr, "loader_sink: bad sample: %s\n", perr);
                end = -1;
            } else {
                if (images == 0 && t0 == 0)
                    t0 = console_now();
                images++;
                bytes += (uint64_t)s.height * s.width * s.channels;
            }
        } else if (type == PROTO_MSG_CONTROL) {
            proto_control_t ctl;
            if (proto_control_decode(&ctl, data, len, NULL, 0) != 0) {
                end = -1;
            } else if (ctl.kind == PROTO_CONTROL_END_OF_EPOCH) {
                double now = console_now();
                print_epoch(name, ctl.epoch, images, bytes, now - t0);
                images = bytes = 0;
                t0 = now;
            } else if (ctl.kind == PROTO_CONTROL_END_OF_STREAM) {
                end = 1;
            }
        }
        zmq_msg_close(&msg);
        if (end) {
            rc = end > 0 ? 0 : 1;
            break;
        }
    }
    transport_close(&pull);
    transport_shutdown();
    return rc;
}

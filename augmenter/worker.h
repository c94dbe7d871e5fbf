/* augmenter/worker: one worker process. worker_run pulls Samples from the
 * loader, augments them into ViewBatches of --batch samples and pushes them
 * to the trainer, forwards the loader's END_OF_EPOCH, listens for the
 * trainer's STOP (worker 0 also watches its heartbeats) and beats up the
 * control socket. It tells the parent (augmenter/augmenter.c) what it did,
 * and the end of stream or a STOP it saw, as report_t records on a pipe.
 */
#ifndef AUGMENTER_WORKER_H
#define AUGMENTER_WORKER_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "augmenter/options.h"
#include "proto/proto.h"

#define POLL_MS           50      /* wake-up period of the worker loop */

/* Records a worker writes to the parent's pipe (atomic: < PIPE_BUF). COUNTS
 * carry what happened since the worker's previous COUNTS, after every batch
 * and at the end, so that the parent's summary includes workers that died.
 * STOP: the worker heard the trainer's STOP, so no worker is to be replaced. */
enum { REPORT_END_OF_STREAM = 1, REPORT_COUNTS = 2, REPORT_STOP = 3 };
typedef struct {
    uint32_t kind;
    uint32_t epoch;
    uint64_t samples;       /* END_OF_STREAM: the loader's count */
    uint64_t batches;
    uint64_t malformed;
} report_t;

/* Set by SIGUSR1 (on_drain_signal): finish what is queued and leave once
 * idle; set in the parent too, so that a replacement forked later inherits it.
 * A lock-free atomic, which C11 lets a signal handler set. */
extern atomic_int drain_requested;

void on_drain_signal(int sig);

/* Encodes a Control message of kind from identity into buf: 0, or -1 (logged). */
int encode_control(proto_buf_t *buf, proto_control_kind_t kind, const char *identity, uint32_t epoch,
                   uint64_t count);

/* Runs worker id (in the forked process) until the end of stream, a STOP or
 * a signal; reports go to report_fd. Its exit status: 0, or 1 on failure. */
int worker_run(const augmenter_options_t *o, int id, int report_fd);

#endif

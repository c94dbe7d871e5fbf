/* augmenter/augmenter: the parent process of the augmentation stage
 * (augmenter.h): the workers' reports, the drain after the end of stream,
 * END_OF_STREAM downstream, and the --preview mode. */
#include "augmenter/augmenter.h"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "augment/augment.h"
#include "augment/preview.h"
#include "augmenter/supervisor.h"
#include "augmenter/worker.h"
#include "cli/cli.h"
#include "console/console.h"
#include "errmsg/errmsg.h"
#include "proto/proto.h"
#include "transport/transport.h"

struct augmenter {
    const augmenter_options_t *o;
};

augmenter_t *augmenter_new(const augmenter_options_t *o, int *status, char *err, size_t errlen)
{
    *status = CLI_EXIT_USAGE;
    /* configuration errors show here, once, before any worker starts */
    aug_t *check = aug_new(&o->recipe, &o->cfg, err, errlen);
    if (!check)
        return NULL;
    aug_destroy(&check);
    if (!o->quiet) {
        char text[1024];
        console_log("%d worker(s), recipe %s (%s), %u views of %ux%ux%u %s per sample, batches of %u; "
                    "pull %s, push %s, control %s", o->workers, o->recipe.name,
                    aug_recipe_format(&o->recipe, text, sizeof(text)), o->recipe.views, o->cfg.channels,
                    o->cfg.size, o->cfg.size, o->cfg.dtype == AUG_DTYPE_U8 ? "u8" : "f32", o->batch,
                    o->connect, o->push, cli_endpoint_name(o->control));
    }
    augmenter_t *a = calloc(1, sizeof *a);
    if (!a) {
        *status = CLI_EXIT_FAILED;
        errmsg_set(err, errlen, "out of memory");
        return NULL;
    }
    a->o = o;
    return a;
}

int augmenter_run(augmenter_t *a)
{
    const augmenter_options_t *o = a->o;
    transport_catch_signals();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_drain_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);   /* inherited: a worker can be told to drain at once */

    supervisor_t sv = {.o = o};
    /* The workers' end does not block: a parent that falls behind (or is
     * stopped) never stalls a worker; its counts wait for the next report. */
    if (pipe(sv.pipe_fd) || fcntl(sv.pipe_fd[1], F_SETFL, O_NONBLOCK)) {
        perror("augmenter: pipe");
        return CLI_EXIT_FAILED;
    }
    int failed = 0;
    for (int i = 0; i < o->workers && !failed; i++)
        if (worker_start(&sv, i)) failed = 1;
    if (failed) transport_stop = 1;

    double start = console_now();
    uint64_t samples = 0, batches = 0, malformed = 0, eos_count = 0;
    uint32_t eos_epoch = 0;
    int eos = 0, stop_heard = 0, gave_up = 0, forwarded_stop = 0;
    for (;;) {
        if ((transport_stop || stop_heard) && !forwarded_stop) {
            /* Ending: no more replacements, and a worker started too late to
             * hear the trainer's STOP is told by signal. */
            cancel_replacements(&sv);
            signal_workers(&sv, SIGTERM);
            forwarded_stop = 1;
        }
        if (sv.running == 0 && sv.pending == 0) break;
        if (!forwarded_stop && start_replacements(&sv)) gave_up = 1;
        struct pollfd pfd = {.fd = sv.pipe_fd[0], .events = POLLIN};
        int n = poll(&pfd, 1, POLL_MS);
        for (; n > 0; n = poll(&pfd, 1, 0)) {
            report_t r[64];
            ssize_t got = read(sv.pipe_fd[0], r, sizeof(r));
            if (got <= 0) break;
            for (size_t k = 0; k < (size_t)got / sizeof(r[0]); k++) {
                if (r[k].kind == REPORT_END_OF_STREAM && !eos) {
                    eos = 1;
                    eos_count = r[k].samples;
                    eos_epoch = r[k].epoch;
                    atomic_store(&drain_requested, 1);   /* inherited by a replacement forked from now on */
                    signal_workers(&sv, SIGUSR1);
                } else if (r[k].kind == REPORT_STOP) {
                    stop_heard = 1;
                } else if (r[k].kind == REPORT_COUNTS) {
                    samples += r[k].samples;
                    batches += r[k].batches;
                    malformed += r[k].malformed;
                }
            }
            if (got < (ssize_t)sizeof(r)) break;
        }
        if (reap_workers(&sv, !transport_stop && !stop_heard)) gave_up = 1;
        if (gave_up && !transport_stop) {
            failed = 1;
            transport_stop = 1;   /* stop the other workers too */
        }
    }
    close(sv.pipe_fd[0]);
    close(sv.pipe_fd[1]);

    if (eos && !transport_stop) {
        proto_buf_t buf;
        proto_buf_init(&buf);
        void *push = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, o->push, 0, "trainer");
        if (!push ||
            encode_control(&buf, PROTO_CONTROL_END_OF_STREAM, transport_identity("augmenter"), eos_epoch,
                           eos_count) ||
            transport_send(push, buf.data, buf.len)) {
            console_log("could not send END_OF_STREAM to %s", o->push);
            failed = 1;
        }
        transport_close(&push);
        transport_shutdown();
        proto_buf_release(&buf);
    }
    double el = console_now() - start;
    console_log("%s: %" PRIu64 " samples, %" PRIu64 " views in %" PRIu64 " batches in %.1f s "
                "(%.0f views/s), %" PRIu64 " malformed messages dropped, %d worker(s) replaced",
                gave_up ? "gave up" : transport_stop ? "stopped" : eos ? "end of stream" : "done", samples,
                samples * o->recipe.views, batches, el, el > 0 ? samples * o->recipe.views / el : 0.0,
                malformed, sv.replaced);
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

void augmenter_destroy(augmenter_t **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int augmenter_preview(const augmenter_options_t *o, const char *argv0)
{
    if (VIPS_INIT(argv0)) {
        fprintf(stderr, "augmenter: libvips: %s", vips_error_buffer());
        return CLI_EXIT_FAILED;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    char err[AUG_ERR_MAX];
    int rc = aug_preview_write_recipe(o->preview, o->output, o->cfg.size, o->cfg.seed, o->recipe_text, err,
                                      sizeof err);
    if (rc) fprintf(stderr, "augmenter: %s\n", err);
    else if (!o->quiet) console_log("wrote %s", o->output);
    vips_shutdown();
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

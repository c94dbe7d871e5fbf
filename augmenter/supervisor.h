/* augmenter/supervisor: the parent's side of the worker processes: a slot
 * per --workers, each with a running worker, a replacement waiting for its
 * back-off, or neither. A worker that dies (a signal, or a non-zero exit)
 * is replaced after RESTART_DELAY_MS, doubled for each recent death up to
 * RESTART_DELAY_MAX_MS; the CRASH_LIMIT-th death within CRASH_WINDOW_S means
 * giving up. A worker stops when its parent dies (PR_SET_PDEATHSIG).
 */
#ifndef AUGMENTER_SUPERVISOR_H
#define AUGMENTER_SUPERVISOR_H

#include <sys/types.h>

#include "augmenter/options.h"

/* The parent's side of the workers: a slot per --workers, each with a
 * running worker, a replacement waiting for its back-off, or neither. */
typedef struct {
    pid_t pid;                /* 0: none running */
    double restart_at;        /* console_now() when its replacement is due; 0: none due */
} slot_t;

typedef struct {
    const augmenter_options_t *o;
    int pipe_fd[2];           /* the workers' reports: read end, write end (kept for replacements) */
    slot_t slot[MAX_WORKERS];
    int running, pending;     /* workers alive, replacements waiting */
    double death[CRASH_LIMIT];/* when the latest deaths were (a ring) */
    int deaths;               /* worker deaths so far */
    int replaced;             /* replacements started */
} supervisor_t;

/* Forks worker `id` into its slot. Returns 0, or -1 when fork fails. */
int worker_start(supervisor_t *sv, int id);

/* Starts the replacements whose back-off is over. Returns -1 to give up. */
int start_replacements(supervisor_t *sv);

/* Drops the replacements not started yet (the run is ending). */
void cancel_replacements(supervisor_t *sv);

void signal_workers(const supervisor_t *sv, int sig);

/* Reaps the workers that ended and schedules replacements for those that
 * died (unless `replace` is 0: the run is ending). Returns -1 to give up. */
int reap_workers(supervisor_t *sv, int replace);

#endif

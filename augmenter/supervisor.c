/* augmenter/supervisor: starting, reaping and replacing the worker
 * processes (supervisor.h). */
#include "augmenter/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include "augmenter/worker.h"
#include "console/console.h"

/* Forks worker `id` into its slot. Returns 0, or -1 when fork fails. */
int worker_start(supervisor_t *sv, int id)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        console_log("cannot start worker %d: fork: %s", id, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(sv->pipe_fd[0]);
#ifdef __linux__
        /* the parent's death, even by SIGKILL, stops this worker as a SIGTERM does */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
        if (getppid() != parent) _exit(0);   /* it died before prctl */
        int rc = worker_run(sv->o, id, sv->pipe_fd[1]);
        close(sv->pipe_fd[1]);
        _exit(rc);
    }
    sv->slot[id].pid = pid;
    sv->slot[id].restart_at = 0;
    sv->running++;
    return 0;
}

/* "was killed by signal 9 (Killed)" or "exited with status 1" */
static void describe_exit(int status, char *text, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(text, len, "was killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(text, len, "exited with status %d", WEXITSTATUS(status));
}

/* Worker `id` (pid, or 0 when it could not be started) died as `how` says:
 * schedules its replacement after the back-off. Returns -1 when this is the
 * CRASH_LIMIT-th death within CRASH_WINDOW_S: time to give up. */
static int worker_died(supervisor_t *sv, int id, pid_t pid, const char *how)
{
    char who[64];
    if (pid > 0) snprintf(who, sizeof(who), "worker %d (pid %ld)", id, (long)pid);
    else snprintf(who, sizeof(who), "worker %d", id);
    double now = console_now();
    sv->death[sv->deaths % CRASH_LIMIT] = now;
    sv->deaths++;
    int recent = 0;
    for (int i = 0; i < CRASH_LIMIT && i < sv->deaths; i++)
        if (now - sv->death[i] <= CRASH_WINDOW_S) recent++;
    if (recent >= CRASH_LIMIT) {
        console_log("%s %s: %d worker deaths within %.0f s; giving up\n"
                    "HINT: the lines above say how each worker ended; a SIGKILL (signal 9) that nobody "
                    "sent is often the kernel's OOM killer (see dmesg): try fewer --workers or a smaller --hwm",
                    who, how, recent, CRASH_WINDOW_S);
        return -1;
    }
    int delay_ms = RESTART_DELAY_MS;
    for (int i = 1; i < recent && delay_ms < RESTART_DELAY_MAX_MS; i++) delay_ms *= 2;
    if (delay_ms > RESTART_DELAY_MAX_MS) delay_ms = RESTART_DELAY_MAX_MS;
    sv->slot[id].restart_at = now + delay_ms / 1e3;
    sv->pending++;
    console_log("%s %s; starting a new worker %d in %.1f s (%d death(s) within %.0f s; "
                "the augmenter gives up at %d)", who, how, id, delay_ms / 1e3, recent,
                CRASH_WINDOW_S, CRASH_LIMIT);
    return 0;
}

/* Starts the replacements whose back-off is over. Returns -1 to give up. */
int start_replacements(supervisor_t *sv)
{
    double now = console_now();
    for (int id = 0; id < sv->o->workers; id++) {
        slot_t *s = &sv->slot[id];
        if (s->restart_at <= 0 || now < s->restart_at) continue;
        sv->pending--;
        s->restart_at = 0;
        if (worker_start(sv, id)) {
            if (worker_died(sv, id, 0, "could not be replaced")) return -1;
            continue;
        }
        sv->replaced++;
        console_log("worker %d: started a new one (pid %ld), replacement %d", id, (long)s->pid, sv->replaced);
    }
    return 0;
}

/* Drops the replacements not started yet (the run is ending). */
void cancel_replacements(supervisor_t *sv)
{
    for (int id = 0; id < sv->o->workers; id++) sv->slot[id].restart_at = 0;
    sv->pending = 0;
}

void signal_workers(const supervisor_t *sv, int sig)
{
    for (int id = 0; id < sv->o->workers; id++)
        if (sv->slot[id].pid > 0) kill(sv->slot[id].pid, sig);
}

/* Reaps the workers that ended and schedules replacements for those that
 * died (unless `replace` is 0: the run is ending). Returns -1 to give up. */
int reap_workers(supervisor_t *sv, int replace)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int id = 0;
        while (id < sv->o->workers && sv->slot[id].pid != pid) id++;
        if (id == sv->o->workers) continue;
        sv->slot[id].pid = 0;
        sv->running--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;   /* end of stream, STOP, SIGTERM */
        char how[128];
        describe_exit(status, how, sizeof(how));
        if (!replace) {
            console_log("worker %d (pid %ld) %s", id, (long)pid, how);
            continue;
        }
        if (worker_died(sv, id, pid, how)) return -1;
    }
    if (pid < 0 && errno == ECHILD) {   /* none left, whatever the slots say */
        for (int id = 0; id < sv->o->workers; id++) sv->slot[id].pid = 0;
        sv->running = 0;
    }
    return 0;
}

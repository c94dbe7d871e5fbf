#include "console/console.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_TTY  0.2
#define PROGRESS_INTERVAL_PIPE 5.0
#define RATE_SMOOTHING         0.3   /* weight of the newest rate sample */

static const char *g_stage = "?";
static int g_line_open;   /* a progress line is on screen without its newline */

void console_init(const char *stage)
{
    g_stage = stage;
}

double console_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define CONSOLE_LINE_MAX 16384   /* a logged line, longer ones are cut */

static void close_line(void)
{
    if (g_line_open) {
        fputc('\n', stderr);
        g_line_open = 0;
    }
}

void console_log(const char *fmt, ...)
{
    /* one line at a time: helper threads (the transport's peer watch) log too */
    char line[CONSOLE_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof line, "%s: ", g_stage);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len + 1 >= sizeof line)
        len = sizeof line - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    flockfile(stderr);
    close_line();
    /* one write per line: the lines of processes sharing the stream (the
     * ranks of a trainer under mpirun) do not cut into each other */
    fputs(line, stderr);
    funlockfile(stderr);
}

void progress_start(progress_t *p, const char *unit, uint64_t total)
{
    p->unit = unit;
    p->total = total;
    p->start = p->last_print = p->last_time = console_now();
    p->last_done = 0;
    p->rate = 0;
    p->tty = isatty(STDERR_FILENO);
}

static void format_duration(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

void progress_update(progress_t *p, uint64_t done, const char *extra)
{
    double now = console_now();
    double interval = p->tty ? PROGRESS_INTERVAL_TTY : PROGRESS_INTERVAL_PIPE;
    if (now - p->last_print < interval)
        return;
    double dt = now - p->last_time;
    if (dt > 0) {
        double recent = (double)(done - p->last_done) / dt;
        p->rate = p->rate > 0 ? RATE_SMOOTHING * recent + (1 - RATE_SMOOTHING) * p->rate : recent;
    }
    p->last_done = done;
    p->last_time = now;
    p->last_print = now;

    char eta[32] = "";
    if (p->total > 0 && p->rate > 0 && done <= p->total) {
        char d[24];
        format_duration(d, sizeof d, (double)(p->total - done) / p->rate);
        snprintf(eta, sizeof eta, ", ETA %s", d);
    }
    char elapsed[24];
    format_duration(elapsed, sizeof elapsed, now - p->start);
    if (p->total > 0)
        fprintf(stderr, "%s%s: %llu/%llu %s (%.0f%%), %.0f %s/s, %s elapsed%s%s%s%s",
                p->tty ? "\r\033[K" : "", g_stage, (unsigned long long)done,
                (unsigned long long)p->total, p->unit, 100.0 * (double)done / (double)p->total,
                p->rate, p->unit, elapsed, eta, extra ? ", " : "", extra ? extra : "",
                p->tty ? "" : "\n");
    else
        fprintf(stderr, "%s%s: %llu %s, %.0f %s/s, %s elapsed%s%s%s", p->tty ? "\r\033[K" : "",
                g_stage, (unsigned long long)done, p->unit, p->rate, p->unit, elapsed,
                extra ? ", " : "", extra ? extra : "", p->tty ? "" : "\n");
    g_line_open = p->tty;
    fflush(stderr);
}

void progress_end(progress_t *p)
{
    (void)p;
    close_line();
}

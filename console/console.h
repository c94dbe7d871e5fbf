/* console: what a stage prints on stderr. Log lines prefixed with the stage's
 * name, and one progress line (rate, ETA) refreshed in place on a terminal or
 * printed every few seconds otherwise. */
#ifndef CONSOLE_CONSOLE_H
#define CONSOLE_CONSOLE_H

#include <stdint.h>

/* Sets the prefix of every line ("loader"). */
void console_init(const char *stage);

/* "loader: <message>\n" on stderr; clears a progress line first. */
void console_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds on a monotonic clock. */
double console_now(void);

typedef struct {
    const char *unit;       /* "images" */
    uint64_t total;         /* expected count, 0 when unknown (no ETA) */
    double start;           /* console_now() at progress_start */
    double last_print;
    uint64_t last_done;     /* for the recent rate */
    double last_time;
    double rate;            /* smoothed units per second */
    int tty;
} progress_t;

void progress_start(progress_t *p, const char *unit, uint64_t total);
/* Prints when at least PROGRESS_INTERVAL has passed (0.2 s on a terminal,
 * 5 s otherwise). `extra` is appended ("epoch 2/10, 3 skipped"), may be NULL. */
void progress_update(progress_t *p, uint64_t done, const char *extra);
/* Ends the in-place line so that the next log starts on a fresh line. */
void progress_end(progress_t *p);

#endif

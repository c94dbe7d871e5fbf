/* transport/internal: what transport.c, watch.c and curve.c share; not for
 * the stages. */
#ifndef TRANSPORT_INTERNAL_H
#define TRANSPORT_INTERNAL_H

#include <stddef.h>

#include "transport/transport.h"

#define TRANSPORT_MAX_ENDPOINT 256

/* ---- peer watch (watch.c) ---- */

/* 1 when sockets on `endpoint` are watched (tcp:// and ipc://, not inproc://). */
int watch_wanted(const char *endpoint);

/* Starts ZeroMQ's monitor on `sock` (call before bind/connect, so that no
 * event is missed) and returns the connected PAIR socket that receives its
 * events, or NULL (the socket then simply is not watched). */
void *watch_begin(void *sock);

/* Hands `pair` (from watch_begin) over to the monitor thread, which watches
 * `sock` from now on; starts the thread on first use. `endpoint` is the one
 * actually bound or connected, `peer` the role of the other end (may be NULL). */
void watch_register(void *sock, void *pair, transport_mode_t mode, const char *endpoint, const char *peer);

/* Closes a PAIR that was never registered (bind or connect failed). */
void watch_cancel(void **pair_p);

/* Stops watching `sock` (before it is closed); no-op when it is not watched. */
void watch_forget(void *sock);

/* Stops and joins the monitor thread and closes every PAIR (before the
 * context is terminated). */
void watch_shutdown(void);

/* ---- CURVE (curve.c) ---- */

/* Sets the CURVE options of a new socket that will bind (server) or connect
 * (client), and on the first server socket starts the ZAP handler. Does
 * nothing when CURVE is off. Returns 0, or -1 after a message on stderr. */
int curve_configure(void *sock, transport_mode_t mode);

/* Stops and joins the ZAP handler thread (before the context is terminated). */
void curve_shutdown(void);

/* A limiter for repeated log lines: at most `burst` lines per `window_s`;
 * the rest are counted and summed up once the window is over. */
typedef struct {
    double window_s;
    int burst;
    double window_start;
    int printed;
    long suppressed;
} log_limit_t;

/* 1 when one more line may be printed now. */
int log_limit_allow(log_limit_t *l, double now);
/* When a window with suppressed lines is over, returns their number (and
 * resets it) so that the caller prints one summary line; else 0. */
long log_limit_flush(log_limit_t *l, double now);

#endif

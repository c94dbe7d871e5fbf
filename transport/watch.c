/* transport/watch: the peer watch. One monitor thread per process reads the
 * ZeroMQ monitor events (zmq_socket_monitor) of every watched socket and
 * turns them into a few log lines:
 *
 *   connecting socket  "lost the connection to EP (trainer); waiting for it to
 *                      come back", then "connected again to EP (trainer) after
 *                      12.3 s"; "no connection to EP (trainer) yet; retrying"
 *                      once when the first connection takes a while; one line
 *                      per outage for a failed handshake (refused key).
 *   bound socket       "augmenters on EP: 1 disconnected, 2 peers left",
 *                      "augmenters on EP: 2 connected, 3 peers", coalesced
 *                      (at most one line every PEERS_REPORT_EVERY_S);
 *                      handshake failures at most FAIL_LOG_BURST per minute.
 *
 * Reconnection attempts (every 100 ms while a peer is away) print nothing.
 * A disconnection shorter than LOST_GRACE_S, or one while the process is
 * stopping, is not reported. The heartbeats that transport_socket sets on the
 * Control sockets turn a silent peer into a disconnection there, so SIGSTOP
 * and cut cables are reported too (on the data sockets only a closed
 * connection is: see transport_socket).
 *
 * Ownership: a watched socket stays its owner's; its monitor PAIR belongs to
 * this thread once registered (the mutex hand-over is the memory barrier
 * ZeroMQ asks for when a socket changes threads). Entries are freed only by
 * this thread; the other threads only add entries or mark them forgotten.
 */
#include "transport/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "console/console.h"

#define WATCH_TICK_MS        100    /* the thread wakes this often for its timers */
#define LOST_GRACE_S         0.5    /* a disconnection shorter than this is not reported */
#define WAITING_SAY_S        2.0    /* "no connection yet" after this long without one */
#define PEERS_QUIET_S        0.5    /* a bound socket reports once its peers are stable this long, */
#define PEERS_MAX_DELAY_S    5.0    /* or this long after the first unreported change, */
#define PEERS_REPORT_EVERY_S 2.0    /* and at most this often */
#define FAIL_LOG_BURST       5      /* handshake failures logged on a bound socket ... */
#define FAIL_LOG_WINDOW_S    60.0   /* ... per this many seconds */
#define MONITOR_ADDR_FMT     "inproc://transport-watch-%ld-%lu"
#define WATCH_EVENTS                                                                                 \
    (ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |                       \
     ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                          \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
#define EVENT_FAILED                                                                                 \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                    \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

/* A connection accepted by a bound socket. Handshake events do not say which
 * connection they are about: they are taken to be about the oldest pending
 * one (handshakes finish in about the order they start), which keeps the
 * count right in every case but races between failing and succeeding
 * handshakes. */
typedef enum { CONN_PENDING, CONN_UP, CONN_FAILED } conn_state_t;
typedef struct {
    int fd;
    conn_state_t state;
} conn_t;

typedef struct watch {
    struct watch *next;
    void *sock;                  /* the watched socket: its identity only, never used here */
    void *pair;                  /* receives its monitor events; this thread's */
    transport_mode_t mode;
    char endpoint[TRANSPORT_MAX_ENDPOINT];
    char peer[TRANSPORT_MAX_PEER_NAME];
    int forgotten;               /* closed by its owner: drop at the next turn */
    double opened;
    /* connecting socket */
    int up, ever_up, said_waiting, said_failure, lost_reported;
    double lost_at;              /* > 0: the connection went down then and is not back */
    /* bound socket */
    conn_t *conns;               /* (n_conns) in the order accepted */
    int n_conns, cap_conns;
    int peers, joined, left;     /* joined/left: since the last report */
    double first_change, last_change, last_report;
    log_limit_t fail_limit;
} watch_t;

static struct {
    pthread_mutex_t mu;
    pthread_t thread;
    int running;
    int quit;
    pid_t pid;                   /* the process the thread runs in */
    unsigned long next_id;
    watch_t *list;
} g_watch = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------ log limiter */

int log_limit_allow(log_limit_t *l, double now)
{
    if (l->window_start == 0 || now - l->window_start >= l->window_s) {
        if (l->suppressed)
            return 0;   /* the caller flushes the summary first */
        l->window_start = now;
        l->printed = 0;
    }
    if (l->printed < l->burst) {
        l->printed++;
        return 1;
    }
    l->suppressed++;
    return 0;
}

long log_limit_flush(log_limit_t *l, double now)
{
    if (!l->suppressed || now - l->window_start < l->window_s)
        return 0;
    long n = l->suppressed;
    l->suppressed = 0;
    l->window_start = now;
    l->printed = 0;
    return n;
}

/* ------------------------------------------------------------ registration */

int watch_wanted(const char *endpoint)
{
    return strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0;
}

/* After a fork the child has none of the parent's threads: start afresh
 * (the parent's entries and PAIRs are not ours to close). Under g_watch.mu. */
static void forget_parent(void)
{
    if (g_watch.running && g_watch.pid != getpid()) {
        g_watch.running = 0;
        g_watch.quit = 0;
        g_watch.list = NULL;
    }
}

void *watch_begin(void *sock)
{
    pthread_mutex_lock(&g_watch.mu);
    unsigned long id = g_watch.next_id++;
    pthread_mutex_unlock(&g_watch.mu);
    char addr[64];
    snprintf(addr, sizeof addr, MONITOR_ADDR_FMT, (long)getpid(), id);
    if (zmq_socket_monitor(sock, addr, WATCH_EVENTS) != 0)
        return NULL;
    void *ctx = transport_context(NULL, 0);   /* made already: sock lives in it */
    void *pair = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    int linger = 0;
    if (!pair || zmq_setsockopt(pair, ZMQ_LINGER, &linger, sizeof linger) != 0 || zmq_connect(pair, addr) != 0) {
        if (pair)
            zmq_close(pair);
        zmq_socket_monitor(sock, NULL, 0);
        return NULL;
    }
    return pair;
}

void watch_cancel(void **pair_p)
{
    if (*pair_p) {
        zmq_close(*pair_p);
        *pair_p = NULL;
    }
}

static void *watch_main(void *arg);

void watch_register(void *sock, void *pair, transport_mode_t mode, const char *endpoint, const char *peer)
{
    watch_t *w = calloc(1, sizeof *w);
    if (!w) {
        zmq_close(pair);
        return;
    }
    w->sock = sock;
    w->pair = pair;
    w->mode = mode;
    snprintf(w->endpoint, sizeof w->endpoint, "%s", endpoint);
    snprintf(w->peer, sizeof w->peer, "%s", peer && *peer ? peer : mode == TRANSPORT_BIND ? "peers" : "peer");
    w->opened = console_now();
    w->fail_limit = (log_limit_t){.window_s = FAIL_LOG_WINDOW_S, .burst = FAIL_LOG_BURST};

    pthread_mutex_lock(&g_watch.mu);
    forget_parent();
    w->next = g_watch.list;
    g_watch.list = w;
    if (!g_watch.running) {
        g_watch.quit = 0;
        g_watch.pid = getpid();
        if (pthread_create(&g_watch.thread, NULL, watch_main, NULL) == 0) {
            g_watch.running = 1;
        } else {
            /* no watch then; the socket works all the same */
            g_watch.list = w->next;
            zmq_close(pair);
            free(w);
        }
    }
    pthread_mutex_unlock(&g_watch.mu);
}

void watch_forget(void *sock)
{
    pthread_mutex_lock(&g_watch.mu);
    forget_parent();
    for (watch_t *w = g_watch.list; w; w = w->next)
        if (w->sock == sock && !w->forgotten) {
            w->forgotten = 1;
            w->sock = NULL;
            break;
        }
    pthread_mutex_unlock(&g_watch.mu);
}

void watch_shutdown(void)
{
    pthread_mutex_lock(&g_watch.mu);
    forget_parent();
    int join = g_watch.running;
    g_watch.quit = 1;
    pthread_mutex_unlock(&g_watch.mu);
    if (join)
        pthread_join(g_watch.thread, NULL);
    pthread_mutex_lock(&g_watch.mu);
    g_watch.running = 0;
    g_watch.quit = 0;
    pthread_mutex_unlock(&g_watch.mu);
}

int transport_peers(void *sock)
{
    int n = -1;
    pthread_mutex_lock(&g_watch.mu);
    for (watch_t *w = g_watch.list; w; w = w->next)
        if (w->sock == sock && !w->forgotten) {
            n = w->mode == TRANSPORT_BIND ? w->peers : w->up;
            break;
        }
    pthread_mutex_unlock(&g_watch.mu);
    return n;
}

/* ------------------------------------------------------------ the thread */

static void free_watch(watch_t *w)
{
    zmq_close(w->pair);
    free(w->conns);
    free(w);
}

static const char *protocol_error_text(uint32_t code)
{
    switch (code) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mechanism mismatch: one side uses --curve and the other does not";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "CURVE decryption failed: the client does not use this server's server.public";
    case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
        return "CURVE key exchange failed";
    default:
        return code >= ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED && code < ZMQ_PROTOCOL_ERROR_WS_UNSPECIFIED
                   ? "the authentication handler failed" : "ZMTP protocol error";
    }
}

/* One line describing a failed handshake into buf. */
static void describe_failure(char *buf, size_t n, uint16_t event, uint32_t value)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf(buf, n, "authentication refused (status %u)", value);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        snprintf(buf, n, "%s (0x%08x)", protocol_error_text(value), value);
    else
        snprintf(buf, n, "%s", value ? zmq_strerror((int)value) : "connection closed during the handshake");
}

static void note_change(watch_t *w, double now)
{
    if (!w->joined && !w->left)
        w->first_change = now;
    w->last_change = now;
}

static conn_t *oldest_pending(watch_t *w)
{
    for (int i = 0; i < w->n_conns; i++)
        if (w->conns[i].state == CONN_PENDING)
            return &w->conns[i];
    return NULL;
}

static void on_bound_event(watch_t *w, uint16_t event, uint32_t value, double now)
{
    if (event == ZMQ_EVENT_ACCEPTED) {
        if (w->n_conns == w->cap_conns) {
            int cap = w->cap_conns ? 2 * w->cap_conns : 8;
            conn_t *c = realloc(w->conns, (size_t)cap * sizeof *c);
            if (!c)
                return;
            w->conns = c;
            w->cap_conns = cap;
        }
        w->conns[w->n_conns++] = (conn_t){.fd = (int)value, .state = CONN_PENDING};
    } else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        conn_t *c = oldest_pending(w);
        if (c)
            c->state = CONN_UP;
        w->peers++;
        w->joined++;
        note_change(w, now);
    } else if (event & EVENT_FAILED) {
        conn_t *c = oldest_pending(w);
        if (c)
            c->state = CONN_FAILED;
        /* refused keys are logged by the ZAP handler, with the key */
        if (event != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && log_limit_allow(&w->fail_limit, now)) {
            char why[200];
            describe_failure(why, sizeof why, event, value);
            console_log("a connection to %s failed its handshake: %s", w->endpoint, why);
        }
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        for (int i = 0; i < w->n_conns; i++) {
            if (w->conns[i].fd != (int)value)
                continue;
            if (w->conns[i].state == CONN_UP && w->peers > 0) {
                w->peers--;
                w->left++;
                note_change(w, now);
            }
            memmove(&w->conns[i], &w->conns[i + 1], (size_t)(w->n_conns - i - 1) * sizeof *w->conns);
            w->n_conns--;
            break;
        }
    }
}

static void on_connecting_event(watch_t *w, uint16_t event, uint32_t value, double now)
{
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (w->lost_reported)
            console_log("connected again to %s (%s) after %.1f s", w->endpoint, w->peer, now - w->lost_at);
        else if (w->said_waiting && !w->ever_up)
            console_log("connected to %s (%s)", w->endpoint, w->peer);
        w->up = w->ever_up = 1;
        w->lost_at = 0;
        w->lost_reported = w->said_failure = 0;
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        if (w->up) {
            w->up = 0;
            w->lost_at = now;
        }
    } else if (event & EVENT_FAILED) {
        if (w->said_failure || transport_stop)
            return;
        w->said_failure = 1;
        char why[200];
        describe_failure(why, sizeof why, event, value);
        const char *hint = "";
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            hint = "; HINT: add this machine's client.public to allowed/ in the server's --curve folder";
        else if (transport_curve_enabled())
            hint = "; HINT: check that both sides use --curve with the same server.public";
        else
            hint = "; HINT: if the other side runs with --curve, this one needs --curve too";
        console_log("cannot connect to %s (%s): %s; retrying%s", w->endpoint, w->peer, why, hint);
    }
}

static void on_timer(watch_t *w, double now)
{
    if (transport_stop)
        return;
    if (w->mode == TRANSPORT_CONNECT) {
        if (w->lost_at > 0 && !w->lost_reported && now - w->lost_at >= LOST_GRACE_S) {
            console_log("lost the connection to %s (%s); waiting for it to come back", w->endpoint, w->peer);
            w->lost_reported = 1;
        }
        if (!w->ever_up && !w->said_waiting && now - w->opened >= WAITING_SAY_S) {
            console_log("no connection to %s (%s) yet; retrying until it answers", w->endpoint, w->peer);
            w->said_waiting = 1;
        }
        return;
    }
    long more = log_limit_flush(&w->fail_limit, now);
    if (more)
        console_log("%ld more failed handshakes on %s in the last %.0f s", more, w->endpoint,
                    FAIL_LOG_WINDOW_S);
    if (!w->joined && !w->left)
        return;
    if (now - w->last_report < PEERS_REPORT_EVERY_S)
        return;
    if (now - w->last_change < PEERS_QUIET_S && now - w->first_change < PEERS_MAX_DELAY_S)
        return;
    const char *s = w->peers == 1 ? "" : "s";
    if (w->joined && w->left)
        console_log("%s on %s: %d connected, %d disconnected, %d peer%s now", w->peer, w->endpoint, w->joined,
                    w->left, w->peers, s);
    else if (w->joined)
        console_log("%s on %s: %d connected, %d peer%s", w->peer, w->endpoint, w->joined, w->peers, s);
    else
        console_log("%s on %s: %d disconnected, %d peer%s left", w->peer, w->endpoint, w->left, w->peers, s);
    w->joined = w->left = 0;
    w->last_report = now;
}

/* Reads one monitor event (two frames: event + value, endpoint). 1 read,
 * 0 nothing waiting, -1 a malformed one (skipped). */
static int read_event(void *pair, uint16_t *event, uint32_t *value)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, pair, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    int ok = zmq_msg_size(&m) >= 6;
    if (ok) {
        const uint8_t *d = zmq_msg_data(&m);
        memcpy(event, d, sizeof *event);
        memcpy(value, d + 2, sizeof *value);
    }
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, pair, ZMQ_DONTWAIT) < 0)
            more = 0;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return ok ? 1 : -1;
}

static void *watch_main(void *arg)
{
    (void)arg;
    zmq_pollitem_t *items = NULL;
    watch_t **which = NULL;
    int cap = 0;
    for (;;) {
        pthread_mutex_lock(&g_watch.mu);
        if (g_watch.quit) {
            pthread_mutex_unlock(&g_watch.mu);
            break;
        }
        int n = 0;
        for (watch_t **pp = &g_watch.list; *pp;) {
            watch_t *w = *pp;
            if (w->forgotten) {
                *pp = w->next;
                free_watch(w);
                continue;
            }
            n++;
            pp = &w->next;
        }
        if (n > cap) {
            zmq_pollitem_t *ni = realloc(items, (size_t)n * sizeof *ni);
            watch_t **nw = ni ? realloc(which, (size_t)n * sizeof *nw) : NULL;
            if (ni)
                items = ni;
            if (nw) {
                which = nw;
                cap = n;
            }
        }
        int k = 0;
        for (watch_t *w = g_watch.list; w && k < cap; w = w->next, k++) {
            items[k] = (zmq_pollitem_t){.socket = w->pair, .events = ZMQ_POLLIN};
            which[k] = w;
        }
        pthread_mutex_unlock(&g_watch.mu);

        int rc = k > 0 ? zmq_poll(items, k, WATCH_TICK_MS) : (usleep(WATCH_TICK_MS * 1000), 0);
        if (rc < 0 && errno != EINTR)
            usleep(WATCH_TICK_MS * 1000);
        double now = console_now();

        pthread_mutex_lock(&g_watch.mu);
        for (int i = 0; rc > 0 && i < k; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            watch_t *w = which[i];
            uint16_t event = 0;
            uint32_t value = 0;
            int got;
            while ((got = read_event(w->pair, &event, &value)) != 0) {
                if (got < 0 || w->forgotten)
                    continue;
                if (w->mode == TRANSPORT_BIND)
                    on_bound_event(w, event, value, now);
                else
                    on_connecting_event(w, event, value, now);
            }
        }
        for (watch_t *w = g_watch.list; w; w = w->next)
            if (!w->forgotten)
                on_timer(w, now);
        pthread_mutex_unlock(&g_watch.mu);
    }
    pthread_mutex_lock(&g_watch.mu);
    while (g_watch.list) {
        watch_t *w = g_watch.list;
        g_watch.list = w->next;
        free_watch(w);
    }
    pthread_mutex_unlock(&g_watch.mu);
    free(items);
    free(which);
    return NULL;
}

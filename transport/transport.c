#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errmsg/errmsg.h"
#include "proto/proto.h"
#include "transport/internal.h"

#define POLL_SLICE_MS 100

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "transport_stop is set in a signal handler: it must be lock-free");
atomic_int transport_stop = 0;

static void *g_context;

/* When the first stop signal came (CLOCK_MONOTONIC seconds). */
static volatile sig_atomic_t g_first_stop_s = -1;

static void on_stop_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);   /* async-signal-safe */
    if (transport_stop) {
        /* One request can arrive twice at once: `timeout` signals both the
         * command and its process group. Only a second signal a second or
         * more later (a second Ctrl-C) means: out now. */
        if (g_first_stop_s >= 0 && now.tv_sec - g_first_stop_s <= 1)
            return;
        signal(sig, SIG_DFL);
        raise(sig);
    }
    g_first_stop_s = (sig_atomic_t)now.tv_sec;
    transport_stop = 1;
}

void transport_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void *transport_context(char *err, size_t errlen)
{
    if (!g_context) {
        g_context = zmq_ctx_new();
        if (!g_context) {
            errmsg_set(err, errlen, "transport: cannot create a ZeroMQ context: %s", zmq_strerror(errno));
            return NULL;
        }
        /* We handle signals ourselves; ZeroMQ's I/O thread must not block them. */
        zmq_ctx_set(g_context, ZMQ_BLOCKY, 0);
    }
    return g_context;
}

void transport_shutdown(void)
{
    if (g_context) {
        /* the helper threads own sockets too: they must close them first */
        watch_shutdown();
        curve_shutdown();
        zmq_ctx_term(g_context);
        g_context = NULL;
    }
}

#define SEND_SIDE_MAX_BYTES 4096   /* inbound limit of PUSH, PUB and XPUB sockets (subscriptions, beats) */

static int receives(int type)
{
    return type == ZMQ_PULL || type == ZMQ_SUB || type == ZMQ_XSUB || type == ZMQ_REP || type == ZMQ_REQ ||
           type == ZMQ_DEALER || type == ZMQ_ROUTER || type == ZMQ_PAIR;
}

void *transport_socket(int type, transport_mode_t mode, int hwm)
{
    char err[TRANSPORT_ERR_MAX];
    void *ctx = transport_context(err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    void *s = zmq_socket(ctx, type);
    if (!s) {
        fprintf(stderr, "transport: cannot create a socket: %s\n", zmq_strerror(errno));
        return NULL;
    }
    int linger = TRANSPORT_LINGER_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (hwm > 0) {
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    }
    /* Sending sockets too: a PUSH never receives a message and a PUB only its
     * peers' subscriptions, but libzmq still reads what a peer sends them, and
     * without a limit a frame that declares 2^63 bytes becomes one malloc of
     * that size (fatal under ASan; tests/it_garbage.sh sends it). */
    int64_t max = receives(type) ? (int64_t)PROTO_MAX_MESSAGE_BYTES : SEND_SIDE_MAX_BYTES;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if ((type == ZMQ_SUB || type == ZMQ_XSUB) && transport_subscribe(s, "", 0, 1) != 0) {
        fprintf(stderr, "transport: cannot subscribe: %s\n", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    /* A peer cut off by the network is noticed by TCP keepalive probes
     * within about TRANSPORT_KEEPALIVE_IDLE_S + 3 probe intervals on an idle
     * connection. No ZMTP heartbeats: libzmq 4.3.4 aborts (assertion
     * _input_stopped / !_io_error, libzmq issues #4364, #4767) when a reader
     * with heartbeats is at its high-water mark and the connection resets,
     * and every stage here stops reading on purpose (back-pressure; the
     * evaluator while it evaluates). Heartbeats would also drop consumers
     * that are only slow, with the messages in flight. */
    int one = 1, idle = TRANSPORT_KEEPALIVE_IDLE_S, intvl = TRANSPORT_KEEPALIVE_INTVL_S, cnt = 3;
    zmq_setsockopt(s, ZMQ_TCP_KEEPALIVE, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle);
    zmq_setsockopt(s, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof intvl);
    zmq_setsockopt(s, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof cnt);
    if (curve_configure(s, mode)) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

int transport_attach(void *s, transport_mode_t mode, const char *endpoint, const char *peer)
{
    void *pair = watch_wanted(endpoint) ? watch_begin(s) : NULL;
    int rc = mode == TRANSPORT_BIND ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint);
    if (rc != 0) {
        int err = errno;
        watch_cancel(&pair);
        fprintf(stderr, "transport: cannot %s %s: %s\n", mode == TRANSPORT_BIND ? "bind" : "connect",
                endpoint, zmq_strerror(err));
        if (err == EADDRINUSE)
            fprintf(stderr, "HINT: another process uses this address; stop it or choose another "
                            "endpoint (for example tcp://127.0.0.1:6555)\n");
        else if (err == EINVAL || err == EPROTONOSUPPORT)
            fprintf(stderr, "HINT: endpoints look like tcp://127.0.0.1:5555 or ipc:///tmp/name\n");
        else if (err == EADDRNOTAVAIL)
            fprintf(stderr, "HINT: bind to an address of this machine (127.0.0.1, or the address "
                            "of one of its interfaces)\n");
        return -1;
    }
    if (pair) {
        /* the endpoint actually bound (tcp://127.0.0.1:0 picks a port) */
        char ep[TRANSPORT_MAX_ENDPOINT];
        size_t len = sizeof ep;
        if (mode != TRANSPORT_BIND || zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
            snprintf(ep, sizeof ep, "%s", endpoint);
        watch_register(s, pair, mode, ep, peer);
    }
    return 0;
}

/* Connects s to every endpoint of a comma-separated list: the first one
 * watched like any (transport_attach), the others plainly (one monitor per
 * socket); only to connected peers (ZMQ_IMMEDIATE). 0, or -1 with the reason
 * on stderr. */
static int connect_list(void *s, const char *list, const char *peer)
{
    /* messages go only to peers that are there: none is stranded in the
     * queue of one that is down while the others could take it */
    int one = 1;
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one);
    const char *p = list;
    for (int first = 1; *p; first = 0) {
        char ep[TRANSPORT_MAX_ENDPOINT];
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof ep) {
            fprintf(stderr, "transport: \"%s\" is not a list of endpoints\nHINT: separate them with commas, "
                            "without spaces: tcp://host:5556,tcp://host:5557\n", list);
            return -1;
        }
        memcpy(ep, p, n);
        ep[n] = '\0';
        if (first ? transport_attach(s, TRANSPORT_CONNECT, ep, peer) != 0 : zmq_connect(s, ep) != 0) {
            if (!first)
                fprintf(stderr, "transport: cannot connect %s: %s\n", ep, zmq_strerror(errno));
            return -1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

void *transport_open_peer(int type, transport_mode_t mode, const char *endpoint, int hwm, const char *peer)
{
    void *s = transport_socket(type, mode, hwm);
    int list = mode == TRANSPORT_CONNECT && strchr(endpoint, ',');
    if (s && (list ? connect_list(s, endpoint, peer) : transport_attach(s, mode, endpoint, peer)) != 0)
        transport_close(&s);
    return s;
}

void *transport_open(int type, transport_mode_t mode, const char *endpoint, int hwm)
{
    return transport_open_peer(type, mode, endpoint, hwm, NULL);
}

void transport_close(void **sock_p)
{
    if (sock_p && *sock_p) {
        watch_forget(*sock_p);
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
}

/* Waits until `sock` is ready for `events` or timeout_ms passes (-1: forever),
 * waking every POLL_SLICE_MS to check transport_stop. 1 ready, 0 timeout or
 * stop, -1 error. */
static int wait_ready(void *sock, short events, int timeout_ms)
{
    int waited = 0;
    while (!transport_stop) {
        int slice = POLL_SLICE_MS;
        if (timeout_ms >= 0 && timeout_ms - waited < slice)
            slice = timeout_ms - waited;
        zmq_pollitem_t item = {.socket = sock, .events = events};
        int rc = zmq_poll(&item, 1, slice);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (rc > 0)
            return 1;
        waited += slice;
        if (timeout_ms >= 0 && waited >= timeout_ms)
            return 0;
    }
    return 0;
}

static int send_msg(void *sock, zmq_msg_t *msg)
{
    for (;;) {
        if (zmq_msg_send(msg, sock, ZMQ_DONTWAIT) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            break;
        int ready = wait_ready(sock, ZMQ_POLLOUT, -1);
        if (ready <= 0)
            break;
    }
    zmq_msg_close(msg);
    return -1;
}

int transport_send(void *sock, const void *data, size_t len)
{
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, len) != 0)
        return -1;
    memcpy(zmq_msg_data(&msg), data, len);
    return send_msg(sock, &msg);
}

static void free_owned(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int transport_send_owned(void *sock, void *data, size_t len)
{
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, data, len, free_owned, NULL) != 0) {
        free(data);
        return -1;
    }
    return send_msg(sock, &msg);
}

int transport_recv(void *sock, zmq_msg_t *msg, int timeout_ms)
{
    int ready = wait_ready(sock, ZMQ_POLLIN, timeout_ms);
    if (ready <= 0)
        return ready;
    zmq_msg_init(msg);
    if (zmq_msg_recv(msg, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(msg);
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    }
    return 1;
}

const char *transport_identity(const char *stage)
{
    static char id[PROTO_MAX_NAME];
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(id, sizeof id, "%s@%s:%ld", stage, host, (long)getpid());
    return id;
}

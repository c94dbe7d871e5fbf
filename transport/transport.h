/* transport: ZeroMQ sockets set up the same way in every stage, and the
 * process-wide stop flag raised by SIGINT/SIGTERM or a Control stop message.
 *
 * Every socket gets a bounded linger (TRANSPORT_LINGER_MS) so that closing
 * never hangs, a high-water mark, and, when it receives, ZMQ_MAXMSGSIZE
 * (PROTO_MAX_MESSAGE_BYTES) so that a peer cannot make us allocate more.
 */
#ifndef TRANSPORT_TRANSPORT_H
#define TRANSPORT_TRANSPORT_H

#include <signal.h>
#include <stddef.h>
#include <zmq.h>

#define TRANSPORT_LINGER_MS 1000

typedef enum { TRANSPORT_BIND, TRANSPORT_CONNECT } transport_mode_t;

/* Raised by SIGINT/SIGTERM (after transport_catch_signals) or by the caller. */
extern volatile sig_atomic_t transport_stop;

/* Installs SIGINT/SIGTERM handlers that raise transport_stop (a second signal
 * exits at once), and ignores SIGPIPE. */
void transport_catch_signals(void);

/* One context for the process; created on first use. */
void *transport_context(void);
/* Closes the context (after every socket is closed). */
void transport_shutdown(void);

/* Opens a socket of `type` (ZMQ_PUSH, ZMQ_PULL, ZMQ_SUB, ...) and binds or
 * connects it to `endpoint`. `hwm` is the send and receive high-water mark in
 * messages (0 keeps ZeroMQ's default). SUB sockets subscribe to everything.
 * Returns NULL with a message on stderr naming the endpoint on failure. */
void *transport_open(int type, transport_mode_t mode, const char *endpoint, int hwm);
void transport_close(void **sock_p);

/* Sends len bytes; the buffer is copied. Blocks while the peer is at its
 * high-water mark, but wakes every 100 ms to check transport_stop.
 * Returns 0, or -1 when stopped or on error. */
int transport_send(void *sock, const void *data, size_t len);

/* Sends a heap buffer without copying: takes ownership of `data` (freed with
 * free() by ZeroMQ once sent). Same blocking rule as transport_send. */
int transport_send_owned(void *sock, void *data, size_t len);

/* Waits up to timeout_ms (-1: forever, still checking transport_stop every
 * 100 ms) for a message on `sock`. Returns 1 with msg filled (the caller
 * closes it with zmq_msg_close), 0 on timeout or stop, -1 on error. */
int transport_recv(void *sock, zmq_msg_t *msg, int timeout_ms);

/* "name@hostname:pid", the identity a stage puts in its Control messages. */
const char *transport_identity(const char *stage);

#endif

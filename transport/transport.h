/* transport: ZeroMQ sockets set up the same way in every stage, and the
 * process-wide stop flag raised by SIGINT/SIGTERM or a Control stop message.
 *
 * Every socket gets a bounded linger (TRANSPORT_LINGER_MS) so that closing
 * never hangs, a high-water mark, and, when it receives, ZMQ_MAXMSGSIZE
 * (PROTO_MAX_MESSAGE_BYTES) so that a peer cannot make us allocate more.
 *
 * Peer watch (transport/watch.c): a killed peer is seen at once on every
 * socket (its kernel closes the connection); one cut off by the network is
 * dropped by TCP keepalive after about 5 s of silence on an idle
 * connection; a stopped one (SIGSTOP) is not noticed here, since its kernel
 * still answers (no ZMTP heartbeats: see transport_socket): the stages'
 * own beats on the Control socket report it (liveness_t below). One
 * monitor thread per process logs on
 * stderr when a tcp:// or ipc:// socket loses its peer and when it comes
 * back ("lost the connection to tcp://127.0.0.1:5556 (trainer); waiting for
 * it to come back"), and how many peers a bound socket has. Repeated events
 * are coalesced: a few lines per outage, never one per reconnection attempt.
 *
 * CURVE (transport/curve.c): after transport_use_curve(DIR), every socket is
 * encrypted; bound sockets are CURVE servers that accept only the client
 * keys found in DIR/allowed/ (a ZAP handler thread), connecting sockets
 * authenticate with DIR's client key pair. Layout of DIR (written by keygen):
 *   server.public  server.secret    the servers' key pair (every bound socket)
 *   client.public  client.secret    this machine's client key pair
 *   allowed/NAME.public             one file per accepted client public key
 *   clients/NAME/                   a ready --curve folder for another machine
 *                                   (server.public + that client's key pair)
 * Key files hold the 40-character Z85 text of a 32-byte key.
 */
#ifndef TRANSPORT_TRANSPORT_H
#define TRANSPORT_TRANSPORT_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <zmq.h>

#include "proto/proto.h"

#define TRANSPORT_LINGER_MS 1000
#define TRANSPORT_KEEPALIVE_IDLE_S     2      /* TCP keepalive probes after this much silence, */
#define TRANSPORT_KEEPALIVE_INTVL_S    1      /* this often; 3 unanswered: the peer is gone */
#define TRANSPORT_KEY_LEN              40     /* Z85 characters of a CURVE key */
#define TRANSPORT_MAX_PEER_NAME        64
#define TRANSPORT_ERR_MAX              256    /* an error message of this library */

typedef enum { TRANSPORT_BIND, TRANSPORT_CONNECT } transport_mode_t;

/* Raised by SIGINT/SIGTERM (after transport_catch_signals) or by the caller;
 * read by any thread. A lock-free atomic, which a signal handler may set. */
extern atomic_int transport_stop;

/* Installs SIGINT/SIGTERM handlers that raise transport_stop (a second signal
 * exits at once), and ignores SIGPIPE. */
void transport_catch_signals(void);

/* One context for the process; created on first use. NULL with err filled
 * when ZeroMQ cannot create it. */
void *transport_context(char *err, size_t errlen);
/* Closes the context (after every socket is closed). */
void transport_shutdown(void);

/* Opens a socket of `type` (ZMQ_PUSH, ZMQ_PULL, ZMQ_SUB, ...) and binds or
 * connects it to `endpoint`. `hwm` is the send and receive high-water mark in
 * messages (0 keeps ZeroMQ's default). SUB sockets subscribe to everything.
 * Returns NULL with a message on stderr naming the endpoint on failure. */
void *transport_open(int type, transport_mode_t mode, const char *endpoint, int hwm);
/* The same, naming the role of the peers on the other end for the peer
 * watch's log lines: "trainer", "loader", "augmenters" (NULL: "peer").
 * A connecting socket takes a comma-separated list of endpoints too and
 * connects to each (a PUSH then deals its messages round-robin among them:
 * the ranks of a data-parallel trainer), queueing messages only for those
 * connected (ZMQ_IMMEDIATE). */
void *transport_open_peer(int type, transport_mode_t mode, const char *endpoint, int hwm, const char *peer);
/* Closes a socket (NULL-safe) and stops watching it; sets *sock_p to NULL. */
void transport_close(void **sock_p);

/* The two halves of transport_open_peer, for a caller that sets options of
 * its own in between: transport_socket creates a socket with every common
 * option (linger, hwm, size limit, heartbeats, CURVE for `mode`);
 * transport_attach binds or connects it and starts watching it. On failure
 * transport_attach prints the reason and returns -1; the caller still owns
 * (and closes) the socket. */
void *transport_socket(int type, transport_mode_t mode, int hwm);
int transport_attach(void *sock, transport_mode_t mode, const char *endpoint, const char *peer);

/* Peers currently connected (handshake done) to a watched socket: for a bound
 * socket the number of peers, for a connecting one 1 or 0; -1 when the socket
 * is not watched (inproc://, or not opened by transport). */
int transport_peers(void *sock);

/* ---- The trainer's Control socket (transport/control.c) ----
 * Down: the trainer publishes every message as two frames, [topic, body]
 * (PROTO_TOPIC_*); subscribers choose by topic. Up: the trainer binds an
 * XPUB, the loader and the augmenters connect an XSUB and send a beat, a
 * one-frame Control heartbeat with their identity, every TRANSPORT_BEAT_S,
 * and a Control end_of_stream when they leave normally. The trainer reads
 * them with transport_hear_beats and reports who falls silent; the others
 * report the trainer's own heartbeats the same way (liveness_t). */
#define TRANSPORT_BEAT_S      1.0   /* a beat this often */
#define TRANSPORT_SILENT_S    3.0   /* no beat for this long: reported silent (stopped or hung?) */
#define TRANSPORT_FORGET_S    60.0  /* a peer silent this long is no longer watched (killed) */

/* Publishes body (len bytes, copied) under `topic` as [topic, body]. Never
 * waits: a message a slow subscriber has no room for is dropped (PUB). 0, or
 * -1 when it was not sent. */
int transport_publish(void *pub, const char *topic, const void *body, size_t len);

/* Like transport_recv, for a SUB or XSUB socket of the Control PUB: fills
 * body and topic (NUL-terminated) with a [topic, body] message, or body
 * alone and topic "" with the deprecated single-frame form. A message of
 * another shape (three frames, a topic longer than PROTO_MAX_TOPIC) is
 * dropped: 0 as for a timeout. The caller closes body after a 1. */
int transport_recv_topic(void *sock, zmq_msg_t *body, char topic[PROTO_MAX_TOPIC + 1], int timeout_ms);

/* Subscribes (on 1) or unsubscribes (on 0) a SUB or XSUB socket to messages
 * whose first frame starts with prefix[0..n). 0, or -1 with errno. */
int transport_subscribe(void *sub, const void *prefix, size_t n, int on);

/* Narrows a SUB or XSUB socket (opened subscribed to everything) to Control
 * STOP messages only: the topic "stop", and, for one more version, the
 * deprecated single-frame STOP by the first bytes proto_control_encode
 * writes. The PUB then filters the rest out, so the queue of a SUB that is
 * not read for a long while (the evaluator evaluating) holds no Acks or
 * heartbeats and a STOP is never dropped for lack of room. 0, or -1 with a
 * message. */
int transport_subscribe_stop(void *sub);

/* Sends a beat upstream on an XSUB socket: a one-frame Control of `kind`
 * (PROTO_CONTROL_HEARTBEAT, or PROTO_CONTROL_END_OF_STREAM when leaving)
 * from `sender`. Never waits. 0, or -1 when it was not sent. */
int transport_beat(void *xsub, const char *sender, proto_control_kind_t kind);

/* Who is silent among the peers that send beats. Each caller owns its own
 * (not thread-safe). Log lines (console_log):
 *   "<sender> silent for 3 s (stopped or hung?)"   once per outage
 *   "<sender> back after 7 s"
 *   "<sender> silent for 60 s: no longer watched"  (forget_s > 0; a killed peer)
 * one_peer: a single peer is watched (the trainer): a beat from another
 * sender replaces it and ends its outage ("<new> heard after N s of silence
 * (<old> before it)"). */
typedef struct liveness liveness_t;
liveness_t *liveness_new(double silent_s, double forget_s, int one_peer);
void liveness_destroy(liveness_t **l_p);
/* A beat from `sender` at `now` (console_now()). */
void liveness_beat(liveness_t *l, const char *sender, double now);
/* `sender` left normally: forgotten without a word. */
void liveness_gone(liveness_t *l, const char *sender);
/* Reports the peers silent since silent_s, forgets those silent since
 * forget_s; returns how many are silent now. Call it about once a second,
 * after reading what has arrived: when the previous call is more than
 * silent_s ago (this process was stopped or busy), the peers' silence counts
 * from this call, for their beats of that time may still be queued. */
int liveness_check(liveness_t *l, double now);
/* 1 when `sender` is watched and reported silent. */
int liveness_silent(const liveness_t *l, const char *sender);

/* Reads (never waits) what the loader and the augmenters sent up an XPUB
 * socket: heartbeats go to liveness_beat, end_of_stream to liveness_gone;
 * subscriptions and anything else are dropped. Returns the beats read. */
int transport_hear_beats(void *xpub, liveness_t *l, double now);

/* What a process uses CURVE for: serving (bound sockets) and/or connecting. */
#define TRANSPORT_CURVE_SERVER 1
#define TRANSPORT_CURVE_CLIENT 2

/* Turns on CURVE for every socket opened afterwards, with the keys of folder
 * `dir` (layout above). `roles` says which key pairs this process needs:
 * TRANSPORT_CURVE_SERVER needs server.secret and allowed/, CLIENT needs
 * client.public and client.secret; both need server.public. Checks that the
 * keys are well-formed and that each public key matches its secret. Returns
 * 0, or -1 with a message (missing folder or key, libzmq without CURVE):
 * the caller exits with status 2. Call it before opening any socket.
 * dir NULL turns CURVE off again (for sockets opened afterwards). */
int transport_use_curve(const char *dir, int roles, char *err, size_t errlen);
/* 1 when transport_use_curve succeeded in this process. */
int transport_curve_enabled(void);

/* Reads a key file: the first line that is not empty or a '#' comment must be
 * 40 Z85 characters (surrounding blanks ignored). Fills key (41 bytes,
 * NUL-terminated). Returns 0, or -1 with a message naming the file. */
int transport_key_read(const char *path, char key[TRANSPORT_KEY_LEN + 1], char *err, size_t errlen);
/* Writes key and a newline to a new file `path` (fails if it exists) with
 * permissions `mode` (0600 for secrets). Returns 0 or -1 with a message. */
int transport_key_write(const char *path, const char *key, int mode, char *err, size_t errlen);

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

/* Unit tests of transport/: sockets on loopback, bounded waits, stop flag,
 * the peer watch, key files, CURVE with its ZAP handler, the Control
 * socket's topics and beats, the liveness table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include <sys/stat.h>
#include <unistd.h>

#include "console/console.h"
#include "proto/proto.h"
#include "transport/internal.h"
#include "transport/transport.h"

#define WAIT_LIMIT_S 10.0   /* bound on waits for the I/O and monitor threads */

#define ENDPOINT "inproc://transport-test"

static void test_push_pull_roundtrip(void **state)
{
    (void)state;
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT, 10);
    void *push = transport_open(ZMQ_PUSH, TRANSPORT_CONNECT, ENDPOINT, 10);
    assert_non_null(pull);
    assert_non_null(push);

    assert_int_equal(transport_send(push, "hello", 5), 0);
    char *owned = malloc(3);
    memcpy(owned, "abc", 3);
    assert_int_equal(transport_send_owned(push, owned, 3), 0);

    zmq_msg_t msg;
    assert_int_equal(transport_recv(pull, &msg, 1000), 1);
    assert_int_equal(zmq_msg_size(&msg), 5);
    assert_memory_equal(zmq_msg_data(&msg), "hello", 5);
    zmq_msg_close(&msg);
    assert_int_equal(transport_recv(pull, &msg, 1000), 1);
    assert_int_equal(zmq_msg_size(&msg), 3);
    assert_memory_equal(zmq_msg_data(&msg), "abc", 3);
    zmq_msg_close(&msg);

    transport_close(&push);
    transport_close(&pull);
    assert_null(push);
    assert_null(pull);
}

static void test_recv_times_out(void **state)
{
    (void)state;
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT "-timeout", 10);
    assert_non_null(pull);
    zmq_msg_t msg;
    double t0 = console_now();
    assert_int_equal(transport_recv(pull, &msg, 250), 0);
    double waited = console_now() - t0;
    assert_true(waited >= 0.2);
    assert_true(waited < 5.0);
    transport_close(&pull);
}

static void test_stop_flag_ends_waits(void **state)
{
    (void)state;
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT "-stop", 10);
    assert_non_null(pull);
    transport_stop = 1;
    zmq_msg_t msg;
    /* A wait forever returns at once when a stop has been requested. */
    assert_int_equal(transport_recv(pull, &msg, -1), 0);
    /* A send that cannot proceed (no peer) gives up instead of blocking. */
    void *push = transport_open(ZMQ_PUSH, TRANSPORT_BIND, ENDPOINT "-nopeer", 1);
    assert_non_null(push);
    assert_int_equal(transport_send(push, "x", 1), -1);
    transport_stop = 0;
    transport_close(&push);
    transport_close(&pull);
}

static void test_receiving_socket_limits_size(void **state)
{
    (void)state;
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_BIND, "tcp://127.0.0.1:0", 10);
    assert_non_null(pull);
    int64_t max = 0;
    size_t len = sizeof max;
    assert_int_equal(zmq_getsockopt(pull, ZMQ_MAXMSGSIZE, &max, &len), 0);
    assert_int_equal(max, (int64_t)PROTO_MAX_MESSAGE_BYTES);
    int linger = 0;
    len = sizeof linger;
    assert_int_equal(zmq_getsockopt(pull, ZMQ_LINGER, &linger, &len), 0);
    assert_int_equal(linger, TRANSPORT_LINGER_MS);
    transport_close(&pull);
}

static void test_bad_endpoint_is_refused(void **state)
{
    (void)state;
    assert_null(transport_open(ZMQ_PULL, TRANSPORT_BIND, "not-an-endpoint", 10));
    void *a = transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT "-twice", 10);
    assert_non_null(a);
    assert_null(transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT "-twice", 10));
    transport_close(&a);
}

static void test_identity_names_stage(void **state)
{
    (void)state;
    const char *id = transport_identity("loader");
    assert_true(strncmp(id, "loader@", 7) == 0);
    assert_non_null(strchr(id, ':'));
}

/* Waits until transport_peers(sock) == want (or WAIT_LIMIT_S passes). */
static int wait_peers(void *sock, int want)
{
    double t0 = console_now();
    while (console_now() - t0 < WAIT_LIMIT_S) {
        if (transport_peers(sock) == want)
            return 1;
        usleep(20000);
    }
    return 0;
}

static void test_peer_watch_counts_and_loses_peers(void **state)
{
    (void)state;
    void *pull = transport_open_peer(ZMQ_PULL, TRANSPORT_BIND, "tcp://127.0.0.1:0", 10, "pushers");
    assert_non_null(pull);
    char ep[256];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    void *a = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 10, "puller");
    void *b = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 10, "puller");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(wait_peers(pull, 2));
    assert_true(wait_peers(a, 1));
    transport_close(&b);
    assert_true(wait_peers(pull, 1));
    transport_close(&pull);
    assert_true(wait_peers(a, 0));   /* the connecting side notices the loss */
    transport_close(&a);
    /* inproc:// sockets are not watched */
    void *in = transport_open(ZMQ_PULL, TRANSPORT_BIND, ENDPOINT "-unwatched", 10);
    assert_int_equal(transport_peers(in), -1);
    transport_close(&in);
}

static void test_heartbeat_options(void **state)
{
    (void)state;
    void *push = transport_socket(ZMQ_PUSH, TRANSPORT_CONNECT, 0);
    void *pull = transport_socket(ZMQ_PULL, TRANSPORT_BIND, 0);
    int v;
    size_t len = sizeof v;
    /* no ZMTP heartbeat on any socket (libzmq 4.3.4 aborts when a reader
     * with heartbeats is at its high-water mark); TCP keepalive instead */
    void *sub = transport_socket(ZMQ_SUB, TRANSPORT_CONNECT, 0);
    void *socks[] = {push, pull, sub};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(zmq_getsockopt(socks[i], ZMQ_HEARTBEAT_IVL, &v, &len), 0);
        assert_int_equal(v, 0);
        assert_int_equal(zmq_getsockopt(socks[i], ZMQ_TCP_KEEPALIVE, &v, &len), 0);
        assert_int_equal(v, 1);
        assert_int_equal(zmq_getsockopt(socks[i], ZMQ_TCP_KEEPALIVE_IDLE, &v, &len), 0);
        assert_int_equal(v, TRANSPORT_KEEPALIVE_IDLE_S);
    }
    transport_close(&sub);
    assert_int_equal(transport_attach(push, TRANSPORT_CONNECT, "not-an-endpoint", NULL), -1);
    transport_close(&push);
    transport_close(&pull);
}

/* A SUB narrowed to STOP receives the STOPs of its PUB and nothing else. */
static void test_subscribe_stop(void **state)
{
    (void)state;
    void *pub = transport_open(ZMQ_PUB, TRANSPORT_BIND, ENDPOINT "-stop", 0);
    void *sub = transport_open(ZMQ_SUB, TRANSPORT_CONNECT, ENDPOINT "-stop", 0);
    assert_non_null(pub);
    assert_non_null(sub);
    assert_int_equal(transport_subscribe_stop(sub), 0);
    usleep(100 * 1000);   /* the subscription reaches the PUB */
    proto_buf_t b;
    proto_buf_init(&b);
    proto_control_kind_t kinds[] = {PROTO_CONTROL_HEARTBEAT, PROTO_CONTROL_END_OF_EPOCH, PROTO_CONTROL_STOP,
                                    PROTO_CONTROL_HEARTBEAT};
    for (int i = 0; i < 4; i++) {
        proto_control_t c = {.kind = kinds[i], .epoch = 3, .count = 7};
        snprintf(c.sender, sizeof c.sender, "trainer@test:%d", i);
        assert_int_equal(proto_control_encode(&b, &c, NULL, 0), 0);
        assert_int_equal(transport_send(pub, b.data, b.len), 0);
    }
    proto_buf_release(&b);
    zmq_msg_t msg;
    assert_int_equal(transport_recv(sub, &msg, 1000), 1);
    proto_control_t got;
    assert_int_equal(proto_control_decode(&got, zmq_msg_data(&msg), zmq_msg_size(&msg), NULL, 0), 0);
    assert_int_equal(got.kind, PROTO_CONTROL_STOP);
    assert_string_equal(got.sender, "trainer@test:2");
    zmq_msg_close(&msg);
    assert_int_equal(transport_recv(sub, &msg, 200), 0);   /* nothing else */
    transport_close(&sub);
    transport_close(&pub);
}

/* Publishes one Control of `kind` from `sender` as [topic, body]. */
static void publish_control(void *pub, proto_control_kind_t kind, const char *sender)
{
    proto_buf_t b;
    proto_buf_init(&b);
    proto_control_t c = {.kind = kind, .epoch = 1, .count = 2};
    snprintf(c.sender, sizeof c.sender, "%s", sender);
    assert_int_equal(proto_control_encode(&b, &c, NULL, 0), 0);
    assert_int_equal(transport_publish(pub, proto_control_topic(kind), b.data, b.len), 0);
    proto_buf_release(&b);
}

/* A SUB and an XSUB narrowed to STOP get the "stop" topic and the deprecated
 * single-frame STOP, and nothing else the XPUB publishes. */
static void test_subscribe_stop_topics(void **state)
{
    (void)state;
    void *pub = transport_open(ZMQ_XPUB, TRANSPORT_BIND, ENDPOINT "-topics", 0);
    void *subs[2] = {transport_open(ZMQ_SUB, TRANSPORT_CONNECT, ENDPOINT "-topics", 0),
                     transport_open(ZMQ_XSUB, TRANSPORT_CONNECT, ENDPOINT "-topics", 0)};
    assert_non_null(pub);
    for (int k = 0; k < 2; k++) {
        assert_non_null(subs[k]);
        assert_int_equal(transport_subscribe_stop(subs[k]), 0);
    }
    usleep(100 * 1000);   /* the subscriptions reach the XPUB */
    publish_control(pub, PROTO_CONTROL_HEARTBEAT, "trainer@test:1");
    publish_control(pub, PROTO_CONTROL_STOP, "trainer@test:2");
    uint8_t ack_indices_body[] = {0x80};   /* any body: filtered out by its topic before anyone reads it */
    assert_int_equal(transport_publish(pub, PROTO_TOPIC_ACK, ack_indices_body, sizeof ack_indices_body), 0);
    proto_buf_t b;
    proto_buf_init(&b);
    proto_control_t c = {.kind = PROTO_CONTROL_STOP};
    snprintf(c.sender, sizeof c.sender, "old@test:3");
    assert_int_equal(proto_control_encode(&b, &c, NULL, 0), 0);
    assert_int_equal(transport_send(pub, b.data, b.len), 0);   /* the deprecated form */
    c.kind = PROTO_CONTROL_HEARTBEAT;
    assert_int_equal(proto_control_encode(&b, &c, NULL, 0), 0);
    assert_int_equal(transport_send(pub, b.data, b.len), 0);
    proto_buf_release(&b);

    for (int k = 0; k < 2; k++) {
        zmq_msg_t msg;
        char topic[PROTO_MAX_TOPIC + 1];
        proto_control_t got;
        assert_int_equal(transport_recv_topic(subs[k], &msg, topic, 1000), 1);
        assert_string_equal(topic, PROTO_TOPIC_STOP);
        assert_int_equal(proto_topic_check(topic, strlen(topic), zmq_msg_data(&msg), zmq_msg_size(&msg), NULL, 0), 0);
        assert_int_equal(proto_control_decode(&got, zmq_msg_data(&msg), zmq_msg_size(&msg), NULL, 0), 0);
        assert_string_equal(got.sender, "trainer@test:2");
        zmq_msg_close(&msg);
        assert_int_equal(transport_recv_topic(subs[k], &msg, topic, 1000), 1);
        assert_string_equal(topic, "");
        assert_int_equal(proto_control_decode(&got, zmq_msg_data(&msg), zmq_msg_size(&msg), NULL, 0), 0);
        assert_int_equal(got.kind, PROTO_CONTROL_STOP);
        assert_string_equal(got.sender, "old@test:3");
        zmq_msg_close(&msg);
        assert_int_equal(transport_recv_topic(subs[k], &msg, topic, 200), 0);   /* nothing else */
        transport_close(&subs[k]);
    }
    transport_close(&pub);
}

/* Only [topic, body] with a short topic, or a body alone, is read. */
static void test_recv_topic_refuses_other_shapes(void **state)
{
    (void)state;
    void *pub = transport_open(ZMQ_PUB, TRANSPORT_BIND, ENDPOINT "-shapes", 0);
    void *sub = transport_open(ZMQ_SUB, TRANSPORT_CONNECT, ENDPOINT "-shapes", 0);
    assert_non_null(pub);
    assert_non_null(sub);
    usleep(100 * 1000);
    char long_topic[PROTO_MAX_TOPIC + 2];
    memset(long_topic, 's', sizeof long_topic - 1);
    long_topic[sizeof long_topic - 1] = '\0';
    assert_int_equal(transport_publish(pub, long_topic, "x", 1), 0);
    assert_int_equal(zmq_send(pub, "stop", 4, ZMQ_SNDMORE), 4);          /* three frames */
    assert_int_equal(zmq_send(pub, "a", 1, ZMQ_SNDMORE), 1);
    assert_int_equal(zmq_send(pub, "b", 1, 0), 1);
    assert_int_equal(zmq_send(pub, "st\0p", 4, ZMQ_SNDMORE), 4);         /* a NUL in the topic */
    assert_int_equal(zmq_send(pub, "c", 1, 0), 1);
    assert_int_equal(transport_publish(pub, "stop", "good", 4), 0);
    zmq_msg_t msg;
    char topic[PROTO_MAX_TOPIC + 1];
    int got = 0;
    for (int i = 0; i < 10 && !got; i++)
        got = transport_recv_topic(sub, &msg, topic, 200) == 1;
    assert_true(got);
    assert_string_equal(topic, "stop");
    assert_int_equal(zmq_msg_size(&msg), 4);
    assert_memory_equal(zmq_msg_data(&msg), "good", 4);
    zmq_msg_close(&msg);
    transport_close(&sub);
    transport_close(&pub);
}

/* Beats go up an XSUB to the trainer's XPUB, among the subscriptions; the
 * liveness table says who is silent and who is back. */
static void test_beats_and_liveness(void **state)
{
    (void)state;
    void *pub = transport_open(ZMQ_XPUB, TRANSPORT_BIND, ENDPOINT "-beats", 0);
    void *sub = transport_open(ZMQ_XSUB, TRANSPORT_CONNECT, ENDPOINT "-beats", 0);
    assert_non_null(pub);
    assert_non_null(sub);
    liveness_t *l = liveness_new(TRANSPORT_SILENT_S, TRANSPORT_FORGET_S, 0);
    assert_non_null(l);
    assert_int_equal(transport_beat(sub, "augmenter-0@test:1", PROTO_CONTROL_HEARTBEAT), 0);
    assert_int_equal(transport_beat(sub, "loader@test:2", PROTO_CONTROL_HEARTBEAT), 0);
    double t0 = 1000.0;
    int heard = 0;
    for (double waited = 0; heard < 2 && waited < WAIT_LIMIT_S; waited += 0.01) {
        heard += transport_hear_beats(pub, l, t0);
        usleep(10 * 1000);
    }
    assert_int_equal(heard, 2);   /* the subscription to everything is not a beat */
    assert_int_equal(liveness_check(l, t0), 0);
    assert_int_equal(liveness_check(l, t0 + 1), 0);
    liveness_beat(l, "loader@test:2", t0 + 2);
    assert_int_equal(liveness_check(l, t0 + 2 + 0.1), 0);
    assert_int_equal(liveness_check(l, t0 + TRANSPORT_SILENT_S + 0.1), 1);   /* the augmenter */
    assert_true(liveness_silent(l, "augmenter-0@test:1"));
    assert_false(liveness_silent(l, "loader@test:2"));
    liveness_beat(l, "augmenter-0@test:1", t0 + 4);
    assert_false(liveness_silent(l, "augmenter-0@test:1"));
    /* one that leaves says so, and is not called silent */
    assert_int_equal(transport_beat(sub, "loader@test:2", PROTO_CONTROL_END_OF_STREAM), 0);
    heard = 0;
    for (double waited = 0; heard < 1 && waited < WAIT_LIMIT_S; waited += 0.01) {
        heard += transport_hear_beats(pub, l, t0 + 4);
        usleep(10 * 1000);
    }
    assert_int_equal(liveness_check(l, t0 + 4 + TRANSPORT_SILENT_S - 0.5), 0);
    assert_false(liveness_silent(l, "loader@test:2"));
    /* a watcher that was not looking for longer than silent_s calls nobody silent for it */
    assert_int_equal(liveness_check(l, t0 + 20), 0);
    assert_int_equal(liveness_check(l, t0 + 21), 0);
    assert_int_equal(liveness_check(l, t0 + 22), 0);
    assert_int_equal(liveness_check(l, t0 + 20 + TRANSPORT_SILENT_S + 0.1), 1);
    /* a killed peer is forgotten */
    for (double t = t0 + 25; t < t0 + 25 + TRANSPORT_FORGET_S; t += 1)
        liveness_check(l, t);
    assert_int_equal(liveness_check(l, t0 + 25 + TRANSPORT_FORGET_S), 0);
    assert_false(liveness_silent(l, "augmenter-0@test:1"));
    liveness_destroy(&l);
    assert_null(l);
    transport_close(&sub);
    transport_close(&pub);
}

/* One peer watched (the trainer): another sender ends the outage of the one before. */
static void test_liveness_one_peer(void **state)
{
    (void)state;
    liveness_t *l = liveness_new(TRANSPORT_SILENT_S, 0, 1);
    assert_non_null(l);
    assert_int_equal(liveness_check(l, 10), 0);   /* nobody heard yet: nobody silent */
    liveness_beat(l, "trainer@test:1", 10);
    assert_int_equal(liveness_check(l, 11), 0);
    assert_int_equal(liveness_check(l, 12), 0);
    assert_int_equal(liveness_check(l, 13.5), 1);
    liveness_beat(l, "trainer@test:2", 20);
    assert_false(liveness_silent(l, "trainer@test:1"));
    assert_false(liveness_silent(l, "trainer@test:2"));
    assert_int_equal(liveness_check(l, 21), 0);
    liveness_destroy(&l);
}

static void test_log_limit(void **state)
{
    (void)state;
    log_limit_t l = {.window_s = 60, .burst = 2};
    assert_true(log_limit_allow(&l, 100.0));
    assert_true(log_limit_allow(&l, 101.0));
    assert_false(log_limit_allow(&l, 102.0));
    assert_false(log_limit_allow(&l, 103.0));
    assert_int_equal(log_limit_flush(&l, 110.0), 0);    /* window not over */
    assert_int_equal(log_limit_flush(&l, 161.0), 2);    /* 2 suppressed, summed up once */
    assert_int_equal(log_limit_flush(&l, 162.0), 0);
    assert_true(log_limit_allow(&l, 162.0));
}

/* A scratch key folder laid out as keygen makes it. */
static char g_keys[64];

static void write_pair(const char *dir, const char *stem, char *public_out)
{
    char pub[41], sec[41], path[256], err[512];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    snprintf(path, sizeof path, "%s/%s.public", dir, stem);
    assert_int_equal(transport_key_write(path, pub, 0644, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/%s.secret", dir, stem);
    assert_int_equal(transport_key_write(path, sec, 0600, err, sizeof err), 0);
    if (public_out)
        memcpy(public_out, pub, sizeof pub);
}

static void make_key_folder(void)
{
    snprintf(g_keys, sizeof g_keys, "/tmp/test_transport.XXXXXX");
    assert_non_null(mkdtemp(g_keys));
    char pub[41], path[256], err[512];
    write_pair(g_keys, "server", NULL);
    write_pair(g_keys, "client", pub);
    snprintf(path, sizeof path, "%s/allowed", g_keys);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/allowed/client.public", g_keys);
    assert_int_equal(transport_key_write(path, pub, 0644, err, sizeof err), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_key_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_transport_keys.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pub[41], sec[41], got[41], path[256], err[512];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    snprintf(path, sizeof path, "%s/a.public", dir);
    assert_int_equal(transport_key_write(path, pub, 0644, err, sizeof err), 0);
    assert_int_equal(transport_key_read(path, got, err, sizeof err), 0);
    assert_string_equal(got, pub);
    /* never overwrites */
    assert_int_equal(transport_key_write(path, sec, 0600, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    /* comments, blank lines and surrounding blanks are fine */
    char text[128];
    snprintf(text, sizeof text, "# the key of host b\n\n  %s \r\n", pub);
    snprintf(path, sizeof path, "%s/b.public", dir);
    write_text(path, text);
    assert_int_equal(transport_key_read(path, got, err, sizeof err), 0);
    assert_string_equal(got, pub);
    /* wrong length, a character outside Z85, nothing, no file */
    const char *bad[] = {"abc\n", "0123456789012345678901234567890123456789~\n",
                         "01234567890123456789012345678901234567,9\n", "# only a comment\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/bad%zu", dir, i);
        write_text(path, bad[i]);
        assert_int_equal(transport_key_read(path, got, err, sizeof err), -1);
        assert_non_null(strstr(err, path));
    }
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(transport_key_read(path, got, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing"));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_use_curve_checks_the_folder(void **state)
{
    (void)state;
    char err[1024], path[256];
    const int both = TRANSPORT_CURVE_SERVER | TRANSPORT_CURVE_CLIENT;
    assert_int_equal(transport_use_curve("/nonexistent/keys", both, err, sizeof err), -1);
    assert_non_null(strstr(err, "no such folder"));
    assert_false(transport_curve_enabled());
    make_key_folder();
    assert_int_equal(transport_use_curve(g_keys, both, err, sizeof err), 0);
    assert_true(transport_curve_enabled());
    assert_int_equal(transport_use_curve(NULL, 0, err, sizeof err), 0);
    assert_false(transport_curve_enabled());
    /* a public key that is not the secret's */
    char other[256];
    snprintf(other, sizeof other, "%s/other", g_keys);
    assert_int_equal(mkdir(other, 0700), 0);
    write_pair(other, "client", NULL);
    snprintf(path, sizeof path, "%s/client.public", g_keys);
    char moved[300];
    snprintf(moved, sizeof moved, "%s/client.public.orig", g_keys);
    assert_int_equal(rename(path, moved), 0);
    char src[300];
    snprintf(src, sizeof src, "%s/client.public", other);
    assert_int_equal(rename(src, path), 0);
    assert_int_equal(transport_use_curve(g_keys, both, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not belong"));
    /* the server side alone does not need the client pair */
    assert_int_equal(transport_use_curve(g_keys, TRANSPORT_CURVE_SERVER, err, sizeof err), 0);
    assert_int_equal(rename(moved, path), 0);
    assert_int_equal(transport_use_curve(NULL, 0, err, sizeof err), 0);
}

/* With CURVE on: the allowed client gets through; an unknown key and a
 * client without CURVE get nothing, and the server side keeps working. */
static void test_curve_accepts_only_allowed_keys(void **state)
{
    (void)state;
    char err[1024];
    if (!g_keys[0])
        make_key_folder();
    assert_int_equal(transport_use_curve(g_keys, TRANSPORT_CURVE_SERVER | TRANSPORT_CURVE_CLIENT, err, sizeof err), 0);
    void *pull = transport_open_peer(ZMQ_PULL, TRANSPORT_BIND, "tcp://127.0.0.1:0", 10, "pushers");
    assert_non_null(pull);
    int v = 0;
    size_t len = sizeof v;
    assert_int_equal(zmq_getsockopt(pull, ZMQ_CURVE_SERVER, &v, &len), 0);
    assert_int_equal(v, 1);
    char ep[256];
    len = sizeof ep;
    assert_int_equal(zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, ep, &len), 0);

    /* intruders: an unknown key, and no CURVE at all */
    char server_public[41], path[300], pub[41], sec[41];
    snprintf(path, sizeof path, "%s/server.public", g_keys);
    assert_int_equal(transport_key_read(path, server_public, err, sizeof err), 0);
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    void *unknown = zmq_socket(transport_context(err, sizeof err), ZMQ_PUSH);
    zmq_setsockopt(unknown, ZMQ_CURVE_SERVERKEY, server_public, 40);
    zmq_setsockopt(unknown, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(unknown, ZMQ_CURVE_SECRETKEY, sec, 40);
    void *plain = zmq_socket(transport_context(err, sizeof err), ZMQ_PUSH);
    int zero = 0;
    zmq_setsockopt(unknown, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(plain, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(unknown, ep), 0);
    assert_int_equal(zmq_connect(plain, ep), 0);
    zmq_send(unknown, "intruder", 8, ZMQ_DONTWAIT);
    zmq_send(plain, "intruder", 8, ZMQ_DONTWAIT);

    void *push = transport_open_peer(ZMQ_PUSH, TRANSPORT_CONNECT, ep, 10, "puller");
    assert_non_null(push);
    assert_int_equal(transport_send(push, "friend", 6), 0);
    zmq_msg_t msg;
    assert_int_equal(transport_recv(pull, &msg, (int)(WAIT_LIMIT_S * 1000)), 1);
    assert_int_equal(zmq_msg_size(&msg), 6);
    assert_memory_equal(zmq_msg_data(&msg), "friend", 6);
    zmq_msg_close(&msg);
    /* nothing else arrives: the intruders' messages never get in */
    assert_int_equal(transport_recv(pull, &msg, 1000), 0);
    assert_int_equal(transport_peers(pull), 1);

    zmq_close(unknown);
    zmq_close(plain);
    transport_close(&push);
    transport_close(&pull);
    assert_int_equal(transport_use_curve(NULL, 0, err, sizeof err), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_keys);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    console_init("test_transport");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pull_roundtrip),
        cmocka_unit_test(test_recv_times_out),
        cmocka_unit_test(test_stop_flag_ends_waits),
        cmocka_unit_test(test_receiving_socket_limits_size),
        cmocka_unit_test(test_bad_endpoint_is_refused),
        cmocka_unit_test(test_identity_names_stage),
        cmocka_unit_test(test_peer_watch_counts_and_loses_peers),
        cmocka_unit_test(test_heartbeat_options),
        cmocka_unit_test(test_subscribe_stop),
        cmocka_unit_test(test_subscribe_stop_topics),
        cmocka_unit_test(test_recv_topic_refuses_other_shapes),
        cmocka_unit_test(test_beats_and_liveness),
        cmocka_unit_test(test_liveness_one_peer),
        cmocka_unit_test(test_log_limit),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_use_curve_checks_the_folder),
        cmocka_unit_test(test_curve_accepts_only_allowed_keys),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    transport_shutdown();
    return failed;
}

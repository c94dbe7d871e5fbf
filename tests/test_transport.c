/* Unit tests of transport/: sockets on loopback, bounded waits, stop flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include "console/console.h"
#include "proto/proto.h"
#include "transport/transport.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pull_roundtrip),
        cmocka_unit_test(test_recv_times_out),
        cmocka_unit_test(test_stop_flag_ends_waits),
        cmocka_unit_test(test_receiving_socket_limits_size),
        cmocka_unit_test(test_bad_endpoint_is_refused),
        cmocka_unit_test(test_identity_names_stage),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    transport_shutdown();
    return failed;
}

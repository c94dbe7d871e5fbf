/* Unit tests of loader/: the acknowledgement ledger of --exactly-once
 * (re-send after a worker disconnects, after the timeout, across two open
 * epochs; a trainer resumed from a checkpoint that no longer holds what it
 * acknowledged; another trainer taking over) and the queue's high-water mark from a byte budget. Time is
 * the `now` argument the ledger takes, so nothing here sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cli/defaults.h"
#include "loader/ledger.h"
#include "loader/options.h"
#include "loader/queue.h"

#define N_ITEMS   64
#define MIN_S     3.0        /* the re-send timeout never goes below this */
#define MAX_DUE   (2 * N_ITEMS)

typedef struct {
    uint32_t epoch[MAX_DUE];
    size_t item[MAX_DUE];
    size_t n;
} due_t;

static void take_due(ledger_t *l, double now, due_t *d)
{
    d->n = ledger_due(l, now, d->epoch, d->item, MAX_DUE);
}

/* 1 when (epoch, item) is among the due ones. */
static int is_due(const due_t *d, uint32_t epoch, size_t item)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->epoch[i] == epoch && d->item[i] == item)
            return 1;
    return 0;
}

static void send_range(ledger_t *l, uint32_t epoch, size_t first, size_t n, double now)
{
    for (size_t i = first; i < first + n; i++)
        ledger_sent(l, epoch, i, now);
}

static size_t ack_range(ledger_t *l, uint32_t epoch, uint64_t first, size_t n, double now)
{
    uint64_t idx[N_ITEMS];
    for (size_t i = 0; i < n; i++)
        idx[i] = first + i;
    return ledger_ack(l, epoch, idx, n, now);
}

static ledger_t *new_ledger(void)
{
    ledger_t *l = ledger_new(N_ITEMS, MIN_S);
    assert_non_null(l);
    return l;
}

/* A worker left: what was sent before and is not acknowledged LEDGER_LOST_GRACE_S
 * later goes out again at once, without waiting for the timeout; what was
 * sent after the loss waits for the timeout. */
static void test_ledger_resend_after_disconnect(void **state)
{
    (void)state;
    ledger_t *l = new_ledger();
    due_t d;
    assert_int_equal(ledger_open(l, 0), 0);
    send_range(l, 0, 0, 10, 100.0);
    assert_int_equal(ack_range(l, 0, 0, 5, 100.2), 5);   /* 0..4 trained */
    ledger_peer_lost(l, 100.3);                           /* its worker held 5..9 */
    send_range(l, 0, 10, 2, 100.5);                       /* 10, 11 go to the others */
    take_due(l, 100.3 + LEDGER_LOST_GRACE_S - 0.1, &d);
    assert_int_equal(d.n, 0);                             /* the others get their grace */
    /* 2.3 s after they went out, well within the 3 s timeout: due for the loss */
    take_due(l, 100.3 + LEDGER_LOST_GRACE_S, &d);
    assert_int_equal(d.n, 5);
    for (size_t i = 5; i < 10; i++)
        assert_true(is_due(&d, 0, i));
    take_due(l, 100.3 + LEDGER_LOST_GRACE_S + 0.1, &d);
    assert_int_equal(d.n, 0);                             /* marked sent again: not twice */
    assert_int_equal(ledger_outstanding(l), 7);
    /* the copies arrive, and 10, 11 */
    assert_int_equal(ack_range(l, 0, 5, 7, 104.5), 7);
    assert_int_equal(ack_range(l, 0, 5, 7, 104.6), 0);   /* a repeated Ack changes nothing */
    assert_int_equal(ledger_outstanding(l), 0);
    ledger_destroy(&l);
    assert_null(l);
}

/* Without a loss, a Sample goes out again once it waited longer than the
 * timeout: LEDGER_LATENCY_FACTOR x the largest send-to-ack time seen lately,
 * at least the minimum; the latency is forgotten two windows later. */
static void test_ledger_resend_after_timeout(void **state)
{
    (void)state;
    ledger_t *l = new_ledger();
    due_t d;
    assert_int_equal(ledger_open(l, 3), 0);
    send_range(l, 3, 0, 4, 10.0);
    assert_int_equal(ack_range(l, 3, 0, 1, 10.5), 1);    /* latency 0.5 s: the minimum rules */
    assert_true(ledger_timeout(l) == MIN_S);
    take_due(l, 10.0 + MIN_S - 0.01, &d);
    assert_int_equal(d.n, 0);
    take_due(l, 10.0 + MIN_S, &d);
    assert_int_equal(d.n, 3);
    assert_true(is_due(&d, 3, 1) && is_due(&d, 3, 2) && is_due(&d, 3, 3));
    /* a slow step: 1 was acknowledged 2.5 s after it went out again */
    assert_int_equal(ack_range(l, 3, 1, 1, 10.0 + MIN_S + 2.5), 1);
    double t = ledger_timeout(l);
    assert_true(t > 7.49 && t < 7.51);                   /* 3 x 2.5 s */
    take_due(l, 10.0 + MIN_S + 7.0, &d);
    assert_int_equal(d.n, 0);                            /* 2, 3 have waited 7 s only */
    take_due(l, 10.0 + MIN_S + 7.6, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(ack_range(l, 3, 2, 2, 10.0 + MIN_S + 7.7), 2);   /* prompt again */
    t = ledger_timeout(l);
    assert_true(t > 7.49 && t < 7.51);                   /* the slow step is still remembered ... */
    take_due(l, 20.0 + LEDGER_WINDOW_S, &d);             /* ... until the window after its own */
    assert_int_equal(d.n, 0);
    assert_true(ledger_timeout(l) == MIN_S);
    ledger_destroy(&l);
}

/* Two epochs open at once (the next streams while the last Samples of the
 * previous are acknowledged), a third refused; overdue Samples of both go
 * out again, the oldest epoch first; each epoch closes once sealed and
 * fully acknowledged, whichever finishes first. */
static void test_ledger_two_open_epochs(void **state)
{
    (void)state;
    ledger_t *l = new_ledger();
    due_t d;
    uint32_t epoch;
    uint64_t count;
    assert_int_equal(ledger_open(l, 4), 0);
    assert_int_equal(ledger_open(l, 4), 0);      /* already open */
    send_range(l, 4, 0, N_ITEMS, 0.0);
    ledger_seal(l, 4, N_ITEMS);
    assert_int_equal(ack_range(l, 4, 0, N_ITEMS - 3, 0.5), N_ITEMS - 3);   /* 61..63 lost */
    assert_int_equal(ledger_open(l, 5), 0);
    assert_int_equal(ledger_n_open(l), 2);
    assert_int_equal(ledger_open(l, 6), -1);     /* not before 4 is done */
    send_range(l, 5, 0, 8, 1.0);
    assert_int_equal(ack_range(l, 6, 0, 8, 1.2), 0);   /* an epoch not open: ignored */
    assert_int_equal(ledger_close_next(l, &epoch, &count), 0);
    assert_int_equal(ledger_sealed(l, 4, &count), 1);
    assert_int_equal(count, N_ITEMS);
    assert_int_equal(ledger_sealed(l, 5, &count), 0);
    /* at 5 s: 4's three and 5's eight are overdue, epoch 4 first; at most 6 per look */
    uint32_t ep[6];
    size_t it[6];
    assert_int_equal(ledger_due(l, 5.0, ep, it, 6), 6);
    assert_true(ep[0] == 4 && ep[1] == 4 && ep[2] == 4 && ep[3] == 5 && ep[5] == 5);
    assert_true(it[0] == N_ITEMS - 3 && it[2] == N_ITEMS - 1);
    take_due(l, 5.0, &d);
    assert_int_equal(d.n, 5);                     /* the rest of epoch 5 */
    for (size_t i = 3; i < 8; i++)
        assert_true(is_due(&d, 5, i));
    /* epoch 5 completes first but is not sealed; then 4 */
    assert_int_equal(ack_range(l, 5, 0, 8, 5.5), 8);
    ledger_seal(l, 5, 8);
    assert_int_equal(ledger_close_next(l, &epoch, &count), 1);
    assert_true(epoch == 5 && count == 8);
    assert_int_equal(ledger_open(l, 6), 0);       /* a slot is free again */
    assert_int_equal(ack_range(l, 4, N_ITEMS - 3, 3, 5.6), 3);
    assert_int_equal(ledger_close_next(l, &epoch, &count), 1);
    assert_true(epoch == 4 && count == N_ITEMS);
    assert_int_equal(ledger_close_next(l, &epoch, &count), 0);
    assert_int_equal(ledger_n_open(l), 1);
    ledger_destroy(&l);
}

/* A trainer resumed from a checkpoint: its Have says what it holds. The
 * acknowledged items of open epochs it lacks are due at once (no timeout,
 * no latency learnt from them); epochs not open are named for the caller
 * to check; items not sent because the trainer held them count as
 * acknowledged until a Have says otherwise. */
static void test_ledger_have(void **state)
{
    (void)state;
    ledger_t *l = new_ledger();
    due_t d;
    uint32_t closed[8];
    size_t n_closed;
    uint64_t gen;
    uint32_t epoch;
    uint64_t count;
    assert_int_equal(ledger_open(l, 1), 0);
    send_range(l, 1, 0, 16, 0.0);
    ledger_seal(l, 1, 16);
    assert_int_equal(ack_range(l, 1, 0, 16, 0.1), 16);
    assert_int_equal(ledger_close_next(l, &epoch, &count), 1);   /* epoch 1 done */
    assert_int_equal(ledger_open(l, 2), 0);
    send_range(l, 2, 0, 16, 1.0);
    assert_int_equal(ack_range(l, 2, 0, 12, 1.1), 12);           /* 12..15 in flight */
    ledger_held(l, 2, 20);                                       /* not sent: held */
    assert_int_equal(ledger_outstanding(l), 4);

    /* the Have of a trainer that holds 0..7 of epoch 2 (and all of epoch 1) */
    const uint8_t held2[1] = { 0xff };
    const uint8_t *done[2] = { NULL, held2 };
    size_t bytes[2] = { 0, 1 };
    size_t reverted = ledger_have(l, 2, 1, done + 1, bytes + 1, closed, 8, &n_closed, &gen);
    assert_int_equal(reverted, 4 + 1);           /* 8..11 and the held 20; 12..15 are in flight */
    assert_int_equal(n_closed, 0);
    assert_int_equal(gen, ledger_generation(l));
    assert_int_equal(ledger_outstanding(l), 9);
    /* 8 trained by the resumed trainer before the loader sends it again: no
     * latency is learnt from it (it went out to the trainer that died) */
    assert_int_equal(ack_range(l, 2, 8, 1, 1.15), 1);
    assert_true(ledger_timeout(l) == MIN_S);
    take_due(l, 1.2, &d);                        /* the others at once */
    assert_int_equal(d.n, 4);
    assert_true(is_due(&d, 2, 9) && is_due(&d, 2, 11) && is_due(&d, 2, 20) && !is_due(&d, 2, 12));
    /* a Have from epoch 1 on: epoch 1 is closed, for the caller to check; the
     * trainer still lacks 8 by this Have, so 8 is due again */
    reverted = ledger_have(l, 1, 2, done, bytes, closed, 8, &n_closed, &gen);
    assert_int_equal(reverted, 1);
    assert_int_equal(n_closed, 1);
    assert_int_equal(closed[0], 1);
    /* starting over: nothing open, a new generation, nothing to check */
    ledger_reset(l);
    assert_int_equal(ledger_n_open(l), 0);
    assert_true(ledger_generation(l) == gen + 1);
    ledger_have(l, 1, 2, done, bytes, closed, 8, &n_closed, &gen);
    assert_int_equal(n_closed, 0);
    assert_int_equal(ledger_outstanding(l), 0);
    ledger_destroy(&l);
}

/* Another trainer took over: what was in flight and is not acknowledged
 * LEDGER_LOST_GRACE_S later is due (the dead trainer's queues are lost),
 * and the outage teaches no latency. */
static void test_ledger_trainer_restart(void **state)
{
    (void)state;
    ledger_t *l = new_ledger();
    due_t d;
    assert_int_equal(ledger_open(l, 0), 0);
    send_range(l, 0, 0, 8, 0.0);
    assert_int_equal(ack_range(l, 0, 0, 2, 0.3), 2);
    /* the trainer dies at 1 s (no re-send while it is down: the caller's
     * rule); another one takes over at 20 s, and 8 goes out to it */
    ledger_restart(l, 20.0);
    send_range(l, 0, 8, 1, 20.5);
    assert_int_equal(ack_range(l, 0, 2, 4, 21.0), 4);   /* 2..5 were in an augmenter's queue */
    assert_true(ledger_timeout(l) == MIN_S);            /* no 21 s latency learnt */
    take_due(l, 20.0 + LEDGER_LOST_GRACE_S - 0.1, &d);
    assert_int_equal(d.n, 0);
    take_due(l, 20.0 + LEDGER_LOST_GRACE_S, &d);        /* 6, 7 died with the old trainer */
    assert_int_equal(d.n, 2);
    assert_true(is_due(&d, 0, 6) && is_due(&d, 0, 7));
    assert_int_equal(ack_range(l, 0, 8, 1, 21.5), 1);   /* sent after: its latency counts */
    assert_true(ledger_timeout(l) == MIN_S);
    ledger_destroy(&l);
}

static void test_queue_hwm(void **state)
{
    (void)state;
    const uint64_t mb = 1u << 20;
    assert_int_equal(queue_hwm(256 * mb, 28 * 28 + QUEUE_SAMPLE_HEADER, 1000), 1000);   /* small: --hwm */
    assert_int_equal(queue_hwm(256 * mb, 512 * 1024, 1000), 512);                      /* 0.5 MB photos */
    assert_int_equal(queue_hwm(256 * mb, 300 * mb, 1000), 1);                          /* at least one */
    assert_int_equal(queue_hwm(256 * mb, 0, 77), 77);                                  /* size unknown */
    assert_int_equal(queue_hwm(UINT64_MAX, 1, 1000), 1000);
}

#define N_ARGS(...) (int)(sizeof((char *[]){ "loader", __VA_ARGS__ }) / sizeof(char *))
#define PARSE(o, err, ...) \
    loader_options_parse(o, N_ARGS(__VA_ARGS__), (char *[]){ "loader", __VA_ARGS__, NULL }, err, sizeof err)

/* The command line: defaults, "none" for the control socket, errors that name the flag. */
static void test_options(void **state)
{
    (void)state;
    loader_options_t o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--data", "d"), 0);
    assert_string_equal(o.bind, CLI_ENDPOINT_LOADER);
    assert_string_equal(o.control, CLI_ENDPOINT_CONTROL);
    assert_int_equal(o.shard_count, 1);
    assert_int_equal(PARSE(&o, err, "--data", "d", "--control", "none", "--shard", "1/3", "--hold-out", "0.2"), 0);
    assert_null(o.control);
    assert_int_equal(o.shard_index, 1);
    assert_int_equal(o.shard_count, 3);
    assert_true(o.hold_out == 0.2);
    assert_true(o.resend_after == LOADER_DEFAULT_RESEND_S);
    assert_int_equal(PARSE(&o, err, "--data", "d", "--resend-after", "0.25"), 0);
    assert_true(o.resend_after == 0.25);
    assert_int_equal(PARSE(&o, err, "--help"), 1);
    const struct {
        char **argv;
        const char *needle;
    } bad[] = {
        { (char *[]){ "loader", "--epochs", NULL }, "--epochs needs a value" },
        { (char *[]){ "loader", "--data", "d", "--threads", "0", NULL }, "--threads" },
        { (char *[]){ "loader", "--data", "d", "--shard", "3/3", NULL }, "--shard" },
        { (char *[]){ "loader", "--data", "d", "--channels", "2", NULL }, "--channels" },
        { (char *[]){ "loader", "--data", "d", "--bind", "none", NULL }, "--bind" },
        { (char *[]){ "loader", "--data", "d", "--hold-out", "0.95", NULL }, "--hold-out" },
        { (char *[]){ "loader", "--data", "d", "--exactly-once", "--control", "none", NULL }, "--exactly-once" },
        { (char *[]){ "loader", "--count", NULL }, "--data" },
        { (char *[]){ "loader", "--data", "d", "--resend-after", "0", NULL }, "--resend-after" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int argc = 0;
        while (bad[k].argv[argc])
            argc++;
        err[0] = 0;
        assert_int_equal(loader_options_parse(&o, argc, bad[k].argv, err, sizeof err), -1);
        if (!strstr(err, bad[k].needle))
            fail_msg("error \"%s\" does not say %s", err, bad[k].needle);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ledger_resend_after_disconnect),
        cmocka_unit_test(test_ledger_resend_after_timeout),
        cmocka_unit_test(test_ledger_two_open_epochs),
        cmocka_unit_test(test_ledger_have),
        cmocka_unit_test(test_ledger_trainer_restart),
        cmocka_unit_test(test_queue_hwm),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* loader/control: the loader's end of the trainer's Control channel.
 *
 * control_thread receives the trainer's Control messages ([topic, body]) on
 * an XSUB: a STOP ends the run, the trainer's heartbeats are watched (and,
 * with --exactly-once, recorded with its epoch), its Acks go to the ledger
 * (loader/ledger.h) and its Haves are looked at as they arrive (what an open
 * epoch lacks is due at once; the closed epochs are left to the sending
 * thread to check). Up the same socket goes this loader's beat. The sending
 * thread reads what the control thread recorded under control_t.mu.
 */
#ifndef LOADER_CONTROL_H
#define LOADER_CONTROL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/ledger.h"
#include "proto/proto.h"

#define HAVE_CHECK_MAX  8         /* closed epochs checked against one Have at most */

typedef struct {
    void *sub;                /* an XSUB: it carries this loader's beats up to the trainer */
    const char *identity;     /* "loader@host:pid", the sender of the beats */
    atomic_int quit;
    ledger_t *ledger;         /* --exactly-once, else NULL */
    pthread_mutex_t mu;       /* guards the trainer's heartbeat and Have below */
    double last_heartbeat;    /* console_now() of the last one, 0 = none */
    uint32_t trainer_epoch;   /* the epoch it says training is in */
    char trainer[PROTO_MAX_NAME];     /* the sender of the last heartbeat (control thread only) */
    char speaker[PROTO_MAX_NAME];     /* the sender of the last heartbeat, Ack or Have (control thread only) */
    int unsettled;            /* another trainer spoke and no Have came since: no epoch closes */
    double unsettled_at;      /* console_now() when it spoke */
    proto_have_t have;        /* its last Have, done sets owned (have_copy) */
    uint64_t haves;           /* Haves received */
    uint32_t check[HAVE_CHECK_MAX];   /* epochs not open when it arrived, for the main */
    size_t n_check;                   /* thread to check against `have` (0: none to check) */
    uint64_t check_generation;        /* the ledger's generation then */
} control_t;

void have_free(proto_have_t *h);

/* *dst = src with its done sets copied (a decoded Have borrows them from
 * the message); -1 when out of memory. */
int have_copy(proto_have_t *dst, const proto_have_t *src);

/* The thread's body; arg is the control_t, whose sub and identity are set.
 * Runs until ctl->quit or transport_stop, then says goodbye up the socket. */
void *control_thread(void *arg);

#endif

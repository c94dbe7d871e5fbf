/* trainer/feed: receive thread and ring of assembled batches. */
#include "trainer/feed.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console/console.h"
#include "transport/transport.h"

#define RECV_SLICE_MS 100   /* the thread checks for a stop this often */
#define MAX_DUP_ACKS  (1u << 16)  /* duplicates and skipped samples waiting to be
                                     acknowledged; more are forgotten (the loader
                                     sends them again, and they are dropped then) */

struct feed {
    void *sock;                 /* PULL, used only by the thread once it runs */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t ready_cv;    /* a batch became ready (main waits) */
    pthread_cond_t free_cv;     /* a batch was given back (thread waits) */
    int stop;                   /* under mu */

    batch_shape_t shape;        /* under mu once the thread runs */
    int n_slots;
    batch_t *slots;             /* (n_slots), allocated when the shape is complete */
    int *free_stack, n_free;    /* slot indices */
    int *ready_ring, ready_head, n_ready;
    int filling;                /* slot the thread fills, -1 none (thread only) */

    feed_stats_t st;            /* under mu */
    epochs_t ep;                /* under mu: admitted samples per epoch */
    uint32_t *dup_epoch;        /* (MAX_DUP_ACKS) under mu: untrained samples to acknowledge */
    uint64_t *dup_index;
    size_t n_dups;
    int share;                  /* record events for the other ranks */
    feed_event_t *events;       /* (MAX_DUP_ACKS) under mu: recorded, not yet taken */
    size_t n_events;
};

/* Records an event for the other ranks (mu held). */
static void record_event(feed_t *f, feed_event_kind_t kind, uint32_t epoch, uint64_t value)
{
    if (f->share && f->n_events < MAX_DUP_ACKS)
        f->events[f->n_events++] = (feed_event_t){ .kind = kind, .epoch = epoch, .value = value };
}

static void drop(feed_t *f, const char *fmt, ...)
{
    char buf[sizeof f->st.last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&f->mu);
    f->st.dropped++;
    memcpy(f->st.last_error, buf, sizeof buf);
    pthread_mutex_unlock(&f->mu);
}

/* Deadline `ms` from now on the condition variables' clock. */
static struct timespec deadline_in(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Allocates the ring once the shape is complete (thread, mu not held). */
static int alloc_slots(feed_t *f, const batch_shape_t *shape)
{
    batch_t *slots = calloc((size_t)f->n_slots, sizeof *slots);
    if (!slots)
        return -1;
    for (int i = 0; i < f->n_slots; i++)
        if (batch_alloc(&slots[i], shape)) {
            while (i-- > 0)
                batch_release(&slots[i]);
            free(slots);
            return -1;
        }
    pthread_mutex_lock(&f->mu);
    f->slots = slots;
    for (int i = 0; i < f->n_slots; i++)
        f->free_stack[f->n_free++] = i;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* Under mu: a slot the trainer gave back partly filled (feed_refill), taken
 * off the free stack wherever it lies; -1 when there is none. */
static int take_partial(feed_t *f)
{
    for (int k = f->n_free - 1; k >= 0 && f->slots; k--) {
        int slot = f->free_stack[k];
        if (f->slots[slot].filled == 0)
            continue;
        f->free_stack[k] = f->free_stack[--f->n_free];
        return slot;
    }
    return -1;
}

/* A free slot for the thread to fill, a partly filled one first, waiting
 * for the trainer to give one back; -1 when stopping. */
static int acquire_slot(feed_t *f)
{
    int slot = -1;
    pthread_mutex_lock(&f->mu);
    while (!f->stop && !transport_stop && f->n_free == 0) {
        struct timespec ts = deadline_in(RECV_SLICE_MS);
        pthread_cond_timedwait(&f->free_cv, &f->mu, &ts);
    }
    if (!f->stop && !transport_stop && f->n_free > 0 && (slot = take_partial(f)) < 0)
        slot = f->free_stack[--f->n_free];
    pthread_mutex_unlock(&f->mu);
    return slot;
}

static void publish_slot(feed_t *f, int slot)
{
    pthread_mutex_lock(&f->mu);
    f->ready_ring[(f->ready_head + f->n_ready) % f->n_slots] = slot;
    f->n_ready++;
    f->st.batches++;
    pthread_cond_signal(&f->ready_cv);
    pthread_mutex_unlock(&f->mu);
}

static void free_slot(feed_t *f, int slot)
{
    batch_reset(&f->slots[slot]);
    pthread_mutex_lock(&f->mu);
    f->free_stack[f->n_free++] = slot;
    pthread_cond_signal(&f->free_cv);
    pthread_mutex_unlock(&f->mu);
}

/* A batch the trainer gave back partly filled waits for this thread while
 * it fills another: when few samples are left to come (the end of the
 * data), neither might ever fill up, each holding part of what would fill
 * one. So the one being filled is emptied into the given-back one, which is
 * published when full. */
static void join_partial(feed_t *f)
{
    for (;;) {
        pthread_mutex_lock(&f->mu);
        int into = f->filling >= 0 ? take_partial(f) : -1;
        batch_shape_t shape = f->shape;
        pthread_mutex_unlock(&f->mu);
        if (into < 0)
            return;
        batch_t *dst = &f->slots[into], *src = &f->slots[f->filling];
        batch_move(dst, src, &shape);
        if (dst->filled == shape.images) {
            publish_slot(f, into);
            if (src->filled == 0) {
                free_slot(f, f->filling);
                f->filling = -1;
            }
        } else {
            free_slot(f, f->filling);   /* emptied */
            f->filling = into;
        }
    }
}

/* Queues (epoch, index) to be acknowledged without training (mu held). */
static void queue_ack(feed_t *f, uint32_t epoch, uint64_t index)
{
    if (f->n_dups < MAX_DUP_ACKS) {
        f->dup_epoch[f->n_dups] = epoch;
        f->dup_index[f->n_dups++] = index;
    }
}

static void on_viewbatch(feed_t *f, const void *buf, size_t len)
{
    proto_viewbatch_t vb;
    memset(&vb, 0, sizeof vb);
    char perr[PROTO_ERR_MAX];
    if (proto_viewbatch_decode(&vb, buf, len, perr, sizeof perr)) {
        drop(f, "%s", perr);
        proto_viewbatch_clear(&vb);
        return;
    }
    char why[256];
    pthread_mutex_lock(&f->mu);
    batch_shape_t shape = f->shape;
    pthread_mutex_unlock(&f->mu);
    if (batch_check(&shape, &vb, why, sizeof why)) {
        drop(f, "%s", why);
        proto_viewbatch_clear(&vb);
        return;
    }
    if (!f->slots) {
        batch_shape_learn(&shape, &vb);
        if (alloc_slots(f, &shape)) {
            drop(f, "out of memory for %d batches of %u rows", f->n_slots, batch_rows(&shape));
            proto_viewbatch_clear(&vb);
            return;
        }
        pthread_mutex_lock(&f->mu);
        f->shape = shape;
        pthread_mutex_unlock(&f->mu);
    }
    for (uint32_t i = 0; i < vb.n_samples; i++) {
        /* A sample the loader sent again (no Ack reached it in time) is
         * trained once: the copy is dropped, and acknowledged again. */
        const proto_view_sample_t *smp = &vb.samples[i];
        int usable = batch_sample_usable(&shape, smp);
        pthread_mutex_lock(&f->mu);
        epochs_verdict_t v = epochs_admit(&f->ep, smp->epoch, smp->index);
        if (v == EPOCHS_DUPLICATE || v == EPOCHS_CLOSED)
            queue_ack(f, smp->epoch, smp->index);
        else if (v == EPOCHS_NEW && !usable) {
            /* nothing to learn from it: done with, as far as the loader and
             * the epoch's count go */
            epochs_skipped(&f->ep, smp->epoch, smp->index);
            queue_ack(f, smp->epoch, smp->index);
            record_event(f, FEED_EV_SKIPPED, smp->epoch, smp->index);
            f->st.skipped++;
            f->st.last_skipped_label = smp->label;
            f->st.last_skipped_index = smp->index;
        }
        pthread_mutex_unlock(&f->mu);
        if (v != EPOCHS_NEW || !usable)
            continue;
        if (f->filling < 0 && (f->filling = acquire_slot(f)) < 0)
            break;   /* stopping */
        if (batch_put(&f->slots[f->filling], &shape, &vb, i)) {
            publish_slot(f, f->filling);
            f->filling = -1;
        }
    }
    pthread_mutex_lock(&f->mu);
    f->st.viewbatches++;
    f->st.samples += vb.n_samples;
    f->st.last_data = console_now();
    pthread_mutex_unlock(&f->mu);
    proto_viewbatch_clear(&vb);
}

static void on_control(feed_t *f, const void *buf, size_t len)
{
    proto_control_t c;
    char perr[PROTO_ERR_MAX];
    if (proto_control_decode(&c, buf, len, perr, sizeof perr)) {
        drop(f, "%s", perr);
        return;
    }
    pthread_mutex_lock(&f->mu);
    if (c.kind == PROTO_CONTROL_END_OF_EPOCH) {
        if (f->st.end_of_epochs++ == 0)
            f->st.epoch_count = c.count;
        epochs_end(&f->ep, c.epoch, c.count);
        record_event(f, FEED_EV_END_OF_EPOCH, c.epoch, c.count);
    } else if (c.kind == PROTO_CONTROL_END_OF_STREAM) {
        f->st.end_of_stream = 1;
        record_event(f, FEED_EV_END_OF_STREAM, c.epoch, c.count);
    }
    pthread_mutex_unlock(&f->mu);
}

static void on_message(feed_t *f, const void *buf, size_t len)
{
    pthread_mutex_lock(&f->mu);
    f->st.messages++;
    pthread_mutex_unlock(&f->mu);
    proto_msg_type_t type;
    char perr[PROTO_ERR_MAX];
    if (proto_peek_type(buf, len, &type, perr, sizeof perr)) {
        drop(f, "%s", perr);
        return;
    }
    switch (type) {
    case PROTO_MSG_VIEWBATCH: on_viewbatch(f, buf, len); break;
    case PROTO_MSG_CONTROL: on_control(f, buf, len); break;
    case PROTO_MSG_STATS: break;   /* monitoring, not for us */
    default:
        drop(f, "unexpected %s message on the ViewBatch socket", proto_msg_type_name(type));
        break;
    }
}

static int stopping(feed_t *f)
{
    pthread_mutex_lock(&f->mu);
    int s = f->stop;
    pthread_mutex_unlock(&f->mu);
    return s || transport_stop;
}

static void *feed_main(void *arg)
{
    feed_t *f = arg;
    while (!stopping(f)) {
        join_partial(f);
        zmq_msg_t msg;
        int rc = transport_recv(f->sock, &msg, RECV_SLICE_MS);
        if (rc < 0) {
            if (errno == ETERM)
                break;
            drop(f, "receive failed: %s", zmq_strerror(errno));
            continue;
        }
        if (rc == 0)
            continue;
        on_message(f, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
    }
    return NULL;
}

feed_t *feed_new(const char *endpoint, int hwm, const batch_shape_t *shape, int slots, epochs_t *restored,
                 int share, char *err, size_t errlen)
{
    feed_t *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->shape = *shape;
    f->n_slots = slots < 2 ? 2 : slots;
    f->filling = -1;
    f->free_stack = calloc((size_t)f->n_slots, sizeof *f->free_stack);
    f->ready_ring = calloc((size_t)f->n_slots, sizeof *f->ready_ring);
    f->dup_epoch = malloc(MAX_DUP_ACKS * sizeof *f->dup_epoch);
    f->dup_index = malloc(MAX_DUP_ACKS * sizeof *f->dup_index);
    f->share = share;
    if (share)
        f->events = malloc(MAX_DUP_ACKS * sizeof *f->events);
    epochs_init(&f->ep);
    if (restored) {
        f->ep = *restored;   /* taken over before the thread sees any sample */
        epochs_init(restored);
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->ready_cv, &ca);
    pthread_cond_init(&f->free_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!f->free_stack || !f->ready_ring || !f->dup_epoch || !f->dup_index || (share && !f->events)) {
        snprintf(err, errlen, "out of memory");
        feed_destroy(&f);
        return NULL;
    }
    /* Bound here, in the caller's thread, so that a bad endpoint is reported
     * at once; the thread creation hands the socket over to the thread. */
    f->sock = transport_open_peer(ZMQ_PULL, TRANSPORT_BIND, endpoint, hwm, "augmenters");
    if (!f->sock) {
        snprintf(err, errlen, "cannot bind the ViewBatch socket %s", endpoint);
        feed_destroy(&f);
        return NULL;
    }
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
        snprintf(err, errlen, "cannot start the receive thread");
        feed_destroy(&f);
        return NULL;
    }
    f->started = 1;
    return f;
}

void feed_destroy(feed_t **self_p)
{
    feed_t *f = *self_p;
    if (!f)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->free_cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    transport_close(&f->sock);
    if (f->slots)
        for (int i = 0; i < f->n_slots; i++)
            batch_release(&f->slots[i]);
    free(f->slots);
    free(f->free_stack);
    free(f->ready_ring);
    free(f->dup_epoch);
    free(f->dup_index);
    free(f->events);
    epochs_release(&f->ep);
    pthread_cond_destroy(&f->ready_cv);
    pthread_cond_destroy(&f->free_cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    *self_p = NULL;
}

batch_t *feed_take(feed_t *f, int timeout_ms)
{
    batch_t *b = NULL;
    struct timespec ts = deadline_in(timeout_ms);
    pthread_mutex_lock(&f->mu);
    while (f->n_ready == 0) {
        if (pthread_cond_timedwait(&f->ready_cv, &f->mu, &ts) == ETIMEDOUT)
            break;
    }
    if (f->n_ready > 0) {
        b = &f->slots[f->ready_ring[f->ready_head]];
        f->ready_head = (f->ready_head + 1) % f->n_slots;
        f->n_ready--;
    }
    pthread_mutex_unlock(&f->mu);
    return b;
}

void feed_give_back(feed_t *f, batch_t *b)
{
    batch_reset(b);
    pthread_mutex_lock(&f->mu);
    f->free_stack[f->n_free++] = (int)(b - f->slots);
    pthread_cond_signal(&f->free_cv);
    pthread_mutex_unlock(&f->mu);
}

uint32_t feed_mark_done(feed_t *f, const batch_t *b, uint8_t *drop)
{
    uint32_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (uint32_t i = 0; i < b->filled; i++)
        if (epochs_is_done(&f->ep, b->epoch[i], b->index[i])) {
            drop[i] = 1;
            n++;
        }
    pthread_mutex_unlock(&f->mu);
    return n;
}

void feed_refill(feed_t *f, batch_t *b, const uint8_t *drop)
{
    pthread_mutex_lock(&f->mu);
    for (uint32_t i = 0; i < b->filled; i++)
        if (drop[i])
            epochs_copy_dropped(&f->ep, b->epoch[i], b->index[i], drop[i] == FEED_DROP_READMIT);
    batch_remove(b, &f->shape, drop);
    /* acquire_slot hands it to the thread first, or join_partial fills it
     * with the one being filled */
    f->free_stack[f->n_free++] = (int)(b - f->slots);
    pthread_cond_signal(&f->free_cv);
    pthread_mutex_unlock(&f->mu);
}

void feed_shape(feed_t *f, batch_shape_t *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->shape;
    pthread_mutex_unlock(&f->mu);
}

void feed_stats(feed_t *f, feed_stats_t *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->st;
    out->duplicates = f->ep.duplicates;
    pthread_mutex_unlock(&f->mu);
}

void feed_trained(feed_t *f, const batch_t *b)
{
    pthread_mutex_lock(&f->mu);
    for (uint32_t i = 0; i < b->filled; i++)
        epochs_trained(&f->ep, b->epoch[i], b->index[i]);
    pthread_mutex_unlock(&f->mu);
}

size_t feed_take_duplicates(feed_t *f, uint32_t *epoch, uint64_t *index, size_t max)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->n_dups < max ? f->n_dups : max;
    memcpy(epoch, f->dup_epoch + f->n_dups - n, n * sizeof *epoch);
    memcpy(index, f->dup_index + f->n_dups - n, n * sizeof *index);
    f->n_dups -= n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int feed_epoch_record(feed_t *f, int all, epochs_record_t *out)
{
    pthread_mutex_lock(&f->mu);
    int got = epochs_next_record(&f->ep, all, out);
    pthread_mutex_unlock(&f->mu);
    return got;
}

int feed_end_missing(feed_t *f, uint64_t size)
{
    pthread_mutex_lock(&f->mu);
    int missing = epochs_end_missing(&f->ep, size);
    pthread_mutex_unlock(&f->mu);
    return missing;
}

uint32_t feed_epoch(feed_t *f, int *known)
{
    pthread_mutex_lock(&f->mu);
    uint32_t e = epochs_current(&f->ep, known);
    pthread_mutex_unlock(&f->mu);
    return e;
}

int feed_have(feed_t *f, proto_have_t *h)
{
    epochs_have_t eh;
    int rc = 0;
    memset(h, 0, sizeof *h);
    pthread_mutex_lock(&f->mu);
    if (epochs_have(&f->ep, &eh)) {
        rc = 1;
        h->epoch = eh.epoch;
        h->n_epochs = eh.n;
        for (uint32_t k = 0; k < eh.n && rc > 0; k++) {
            if (!eh.bytes[k])
                continue;
            uint8_t *copy = malloc(eh.bytes[k]);
            if (!copy) {
                rc = -1;
                break;
            }
            memcpy(copy, eh.done[k], eh.bytes[k]);
            h->done[k] = copy;
            h->done_bytes[k] = eh.bytes[k];
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (rc < 0)
        feed_have_release(h);
    return rc;
}

void feed_have_release(proto_have_t *h)
{
    for (uint32_t k = 0; k < PROTO_MAX_HAVE_EPOCHS; k++)
        free((void *)h->done[k]);
    memset(h, 0, sizeof *h);
}

size_t feed_take_events(feed_t *f, feed_event_t *out, size_t max)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->n_events < max ? f->n_events : max;
    memcpy(out, f->events, n * sizeof *out);
    memmove(f->events, f->events + n, (f->n_events - n) * sizeof *out);
    f->n_events -= n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void feed_merge(feed_t *f, const feed_event_t *ev, size_t n)
{
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < n; i++) {
        switch (ev[i].kind) {
        case FEED_EV_TRAINED:
        case FEED_EV_SKIPPED:
            epochs_done_elsewhere(&f->ep, ev[i].epoch, ev[i].value, ev[i].kind == FEED_EV_SKIPPED);
            break;
        case FEED_EV_END_OF_EPOCH:
            if (f->st.end_of_epochs++ == 0)
                f->st.epoch_count = ev[i].value;
            epochs_end(&f->ep, ev[i].epoch, ev[i].value);
            break;
        case FEED_EV_END_OF_STREAM:
            f->st.end_of_stream = 1;
            break;
        default:
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

json_t *feed_epochs_json(feed_t *f)
{
    pthread_mutex_lock(&f->mu);
    json_t *j = epochs_to_json(&f->ep);
    pthread_mutex_unlock(&f->mu);
    return j;
}

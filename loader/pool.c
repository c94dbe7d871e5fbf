#include "loader/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX_HELD_BYTES ((size_t)256 << 20)  /* decoded bytes waiting in slots, at most (about) */
#define SLOT_KEEP_BYTES     ((size_t)4 << 20)    /* larger slot buffers are freed when released */

enum { SLOT_EMPTY = 0, SLOT_BUSY, SLOT_READY };

typedef struct {
    int state;
    pool_result_t result;
    dataset_image_t img;
} slot_t;

struct pool {
    const dataset_t *ds;
    dataset_decode_opts_t opts;
    const cache_t *cache;

    pthread_mutex_t lock;
    pthread_cond_t work_cond;    /* workers wait here for a free position */
    pthread_cond_t ready_cond;   /* the sender waits here for its slot */
    int quit;

    slot_t *slots;               /* (window) position p uses slots[p % window] */
    size_t window;
    const size_t *items;         /* (n) this epoch's order */
    size_t n;
    size_t next;                 /* next position a worker takes */
    size_t read;                 /* next position the sender takes */
    int sender_waiting;
    int workers_waiting;
    size_t held_bytes;           /* pixels of decoded slots not yet released */

    pthread_t *threads;
    int n_threads;
};

static void fill(pool_t *p, slot_t *s, size_t item)
{
    pool_result_t *r = &s->result;
    r->item = item;
    const cache_entry_t *e = cache_get(p->cache, item);
    r->note = NULL;
    if (e) {
        r->ok = 1;
        r->cached = 1;
        r->height = e->height;
        r->width = e->width;
        r->channels = e->channels;
        r->pixels = e->pixels;
        return;
    }
    r->cached = 0;
    r->ok = dataset_read(p->ds, item, &p->opts, &s->img, &r->err) == 0;
    if (r->ok) {
        r->height = s->img.height;
        r->width = s->img.width;
        r->channels = s->img.channels;
        r->pixels = s->img.pixels;
        r->note = s->img.note[0] ? s->img.note : NULL;
    }
}

static void *worker(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        /* Large images: stop running ahead once enough bytes wait (the
         * sender's next position is always allowed, so it never starves). */
        while (!p->quit && (p->next >= p->n || p->next >= p->read + p->window ||
                            (p->held_bytes > POOL_MAX_HELD_BYTES && p->next > p->read))) {
            p->workers_waiting++;
            pthread_cond_wait(&p->work_cond, &p->lock);
            p->workers_waiting--;
        }
        if (p->quit)
            break;
        size_t pos = p->next++;
        slot_t *s = &p->slots[pos % p->window];
        s->state = SLOT_BUSY;
        size_t item = p->items[pos];
        pthread_mutex_unlock(&p->lock);

        fill(p, s, item);

        pthread_mutex_lock(&p->lock);
        s->state = SLOT_READY;
        if (s->result.ok && !s->result.cached)
            p->held_bytes += (size_t)s->result.height * s->result.width * s->result.channels;
        if (p->sender_waiting && pos == p->read)
            pthread_cond_signal(&p->ready_cond);
    }
    pthread_mutex_unlock(&p->lock);
    dataset_thread_done();
    return NULL;
}

pool_t *pool_new(const dataset_t *ds, const dataset_decode_opts_t *opts, const cache_t *cache, int threads,
                 size_t window)
{
    pool_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->ds = ds;
    p->opts = *opts;
    p->cache = cache;
    p->window = window ? window : 1;
    p->slots = calloc(p->window, sizeof *p->slots);
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->slots || !p->threads) {
        free(p->slots);
        free(p->threads);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work_cond, NULL);
    pthread_cond_init(&p->ready_cond, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        pool_destroy(&p);
        return NULL;
    }
    return p;
}

void pool_destroy(pool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pool_t *p = *self_p;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->work_cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    for (size_t i = 0; i < p->window; i++)
        dataset_image_release(&p->slots[i].img);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work_cond);
    pthread_cond_destroy(&p->ready_cond);
    free(p->slots);
    free(p->threads);
    free(p);
    *self_p = NULL;
}

void pool_start_epoch(pool_t *p, const size_t *items, size_t n)
{
    pthread_mutex_lock(&p->lock);
    p->items = items;
    p->n = n;
    p->next = 0;
    p->read = 0;
    p->held_bytes = 0;
    for (size_t i = 0; i < p->window; i++)
        p->slots[i].state = SLOT_EMPTY;
    pthread_cond_broadcast(&p->work_cond);
    pthread_mutex_unlock(&p->lock);
}

const pool_result_t *pool_next(pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->read >= p->n) {
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
    slot_t *s = &p->slots[p->read % p->window];
    while (s->state != SLOT_READY || p->next <= p->read) {
        p->sender_waiting = 1;
        pthread_cond_wait(&p->ready_cond, &p->lock);
        p->sender_waiting = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return &s->result;
}

void pool_release(pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    slot_t *s = &p->slots[p->read % p->window];
    if (s->result.ok && !s->result.cached)
        p->held_bytes -= (size_t)s->result.height * s->result.width * s->result.channels;
    if (s->img.pixels_cap + s->img.file_cap > SLOT_KEEP_BYTES)
        dataset_image_release(&s->img);
    s->state = SLOT_EMPTY;
    p->read++;
    if (p->workers_waiting)
        pthread_cond_signal(&p->work_cond);
    pthread_mutex_unlock(&p->lock);
}

void pool_cancel_epoch(pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->n = p->next;
    pthread_mutex_unlock(&p->lock);
}

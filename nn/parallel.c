/* nn/parallel: persistent worker threads woken by a condition variable. */
#include "nn/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define NN_MAX_THREADS 64
/* Slices per thread in a region: threads take the next slice from a shared
 * counter, so one slowed down by another process on its core (a shared
 * machine) does fewer of them instead of holding everybody up. */
#define NN_SLICES_PER_THREAD 4

static struct {
    pthread_once_t once;
    pthread_mutex_t call;          /* one parallel region at a time */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int nthreads;
    unsigned gen;                  /* incremented for every region */
    int pending;                   /* workers still running in this region */
    nn_range_fn fn;
    void *ctx;
    size_t n;
    int parts;                     /* slices in this region */
    atomic_int next;               /* next slice to take */
} pool = {
    .once = PTHREAD_ONCE_INIT,
    .call = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .go = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static __thread int in_region;
static __thread int thread_id;       /* 0: the caller; workers 1 .. nthreads - 1 */

static void run_parts(void)
{
    int part;
    while ((part = atomic_fetch_add(&pool.next, 1)) < pool.parts) {
        size_t b = pool.n * (size_t)part / (size_t)pool.parts;
        size_t e = pool.n * (size_t)(part + 1) / (size_t)pool.parts;
        if (b < e)
            pool.fn(pool.ctx, b, e);
    }
}

static void *worker(void *arg)
{
    int idx = (int)(size_t)arg;
    unsigned seen = 0;
    in_region = 1;
    thread_id = idx;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (pool.gen == seen)
            pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.gen;
        pthread_mutex_unlock(&pool.mu);
        run_parts();
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.mu);
    }
    return NULL;
}

static void pool_init(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("NN_THREADS");
    int n = env ? atoi(env) : (int)cores;
    if (n < 1)
        n = 1;
    if (n > NN_MAX_THREADS)
        n = NN_MAX_THREADS;
    openblas_set_num_threads(1);
    pool.nthreads = 1;
    for (int i = 1; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(size_t)i) != 0)
            break;
        pthread_detach(t);
        pool.nthreads++;
    }
}

int nn_parallel_threads(void)
{
    pthread_once(&pool.once, pool_init);
    return pool.nthreads;
}

int nn_parallel_thread_id(void)
{
    return thread_id;
}

void nn_parallel_for(size_t n, size_t grain, nn_range_fn fn, void *ctx)
{
    if (n == 0)
        return;
    int threads = nn_parallel_threads();
    if (grain < 1)
        grain = 1;
    size_t parts = n / grain;
    if (parts > (size_t)threads * NN_SLICES_PER_THREAD)
        parts = (size_t)threads * NN_SLICES_PER_THREAD;
    if (parts <= 1 || threads == 1 || in_region) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.call);
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.parts = (int)parts;
    atomic_store(&pool.next, 0);
    pool.pending = pool.nthreads - 1;
    pool.gen++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    in_region = 1;
    run_parts();
    in_region = 0;
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.call);
}

/* Smallest slice of C's columns (or rows) worth a thread of its own. */
#define NN_GEMM_MIN_SLICE 64

typedef struct gemm_job {
    int ta, tb, m, n, k, lda, ldb, ldc, split_n;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_job;

static void gemm_slice(void *ctx, size_t s0, size_t s1)
{
    const gemm_job *j = ctx;
    /* slices are in units of 16 columns/rows */
    int lo = (int)s0 * 16, hi = (int)s1 * 16;
    enum CBLAS_TRANSPOSE ta = j->ta ? CblasTrans : CblasNoTrans, tb = j->tb ? CblasTrans : CblasNoTrans;
    if (j->split_n) {
        if (hi > j->n) hi = j->n;
        const float *b = j->tb ? j->b + (size_t)lo * j->ldb : j->b + lo;
        cblas_sgemm(CblasRowMajor, ta, tb, j->m, hi - lo, j->k, j->alpha, j->a, j->lda,
                    b, j->ldb, j->beta, j->c + lo, j->ldc);
    } else {
        if (hi > j->m) hi = j->m;
        const float *a = j->ta ? j->a + lo : j->a + (size_t)lo * j->lda;
        cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, j->n, j->k, j->alpha, a, j->lda,
                    j->b, j->ldb, j->beta, j->c + (size_t)lo * j->ldc, j->ldc);
    }
}

void nn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc)
{
    gemm_job j = { trans_a, trans_b, m, n, k, lda, ldb, ldc, n >= m, alpha, beta, a, b, c };
    int len = j.split_n ? n : m;
    nn_parallel_threads();            /* the pool (and OpenBLAS at one thread) is set up */
    nn_parallel_for((size_t)(len + 15) / 16, NN_GEMM_MIN_SLICE / 16, gemm_slice, &j);
}

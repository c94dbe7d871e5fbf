/* dist: the processes of one data-parallel training run, over MPI.
 *
 * Launched by mpirun (Open MPI, or any launcher that sets the PMIx or PMI
 * variables), dist_new initialises MPI and the process is one rank of
 * dist_size; started alone, it is a world of one process and MPI is never
 * called, so the program runs as it always did. A build without MPI (make
 * MPI=0, or libopenmpi-dev missing) only knows the world of one and refuses
 * to start under a launcher that asks for more.
 *
 * Collectives are called by every rank, in the same order, from the thread
 * that called dist_new (MPI_THREAD_FUNNELED). They return 0, or -1 with a
 * message in err (errmsg/errmsg.h); MPI errors are returned, not fatal. In a
 * world of one they are copies or nothing.
 */
#ifndef DIST_DIST_H
#define DIST_DIST_H

#include <stddef.h>

#define DIST_MAX_ENDPOINT 256   /* bytes of an endpoint from dist_endpoint */

typedef struct dist dist_t;

/* Joins the run: MPI_Init_thread when launched by mpirun, else a world of
 * one. argc/argv may be NULL. NULL with err set on failure. Only one per
 * process (MPI can be initialised once). */
dist_t *dist_new(int *argc, char ***argv, char *err, size_t errlen);
/* Leaves the run (MPI_Finalize when MPI was initialised) and NULLs *self_p. */
void dist_destroy(dist_t **self_p);

/* Ends every process of the run with `code` (MPI_Abort), so that none waits
 * forever in a collective for one that gave up; exit(code) in a world of
 * one. For main, when a rank cannot go on. */
void dist_abort(dist_t *d, int code) __attribute__((noreturn));

int dist_rank(const dist_t *d);
int dist_size(const dist_t *d);
/* 1 when this program was built with MPI. */
int dist_have_mpi(void);

/* buf (n floats) = the element-wise sum of every rank's buf, on every rank. */
int dist_allreduce_sum(dist_t *d, float *buf, size_t n, char *err, size_t errlen);
/* The same without waiting (MPI_Iallreduce), so that the sum travels while
 * this rank computes: buf must stay untouched until dist_allreduce_wait
 * returns. Every rank starts the same sums in the same order; other
 * collectives may come between. */
int dist_allreduce_start(dist_t *d, float *buf, size_t n, char *err, size_t errlen);
/* Moves the started sums along (MPI_Testall): MPI progresses them only
 * inside its calls, so a long computation calls this now and then. */
int dist_progress(dist_t *d, char *err, size_t errlen);
/* Returns when every started sum is complete on this rank. */
int dist_allreduce_wait(dist_t *d, char *err, size_t errlen);
/* The same for doubles (the batch-norm statistics). */
int dist_allreduce_sum_f64(dist_t *d, double *buf, size_t n, char *err, size_t errlen);
/* The same as a sum callback for synchronised batch norm (nn_bn_sync in
 * nn/layers.h: { dist_sum_f64_cb, d }): ctx is the dist_t; 0, or -1 with
 * the message in dist_error(ctx). */
int dist_sum_f64_cb(void *ctx, double *buf, size_t n);
/* The message of the last failed dist_sum_f64_cb ("" when none). */
const char *dist_error(const dist_t *d);
/* recv (size * n floats) = every rank's send (n floats) in rank order, on every rank. */
int dist_allgather(dist_t *d, const float *send, float *recv, size_t n, char *err, size_t errlen);
/* The same for records of any type: recv (size * bytes) = every rank's send
 * (bytes, at most INT_MAX) in rank order, copied as they are (the ranks
 * share one byte order: a run on one kind of machine). */
int dist_allgather_bytes(dist_t *d, const void *send, void *recv, size_t bytes, char *err, size_t errlen);
/* buf (bytes) on every rank = buf on `root`. */
int dist_broadcast(dist_t *d, void *buf, size_t bytes, int root, char *err, size_t errlen);
/* Returns when every rank has called it. */
int dist_barrier(dist_t *d, char *err, size_t errlen);

/* The endpoint of rank `rank` from a stage's --bind value: the rank-th entry
 * of a comma-separated list ("tcp://host:5556,tcp://other:6000"), else one endpoint
 * whose TCP port is shifted by the rank (tcp://host:5556 -> 5556 + rank).
 * Rank 0 of a single endpoint is that endpoint unchanged. 0, or -1 with err
 * set (list too short, not a TCP port to shift, port past 65535). */
int dist_endpoint(char *out, size_t outlen, const char *spec, int rank, char *err, size_t errlen);

#endif

/* dist: MPI when launched by mpirun, a world of one otherwise. */
#include "dist/dist.h"
#include "errmsg/errmsg.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SSL_HAVE_MPI
#include <mpi.h>
#endif

/* Elements per MPI call: MPI counts are ints, buffers may be larger. */
#define DIST_CHUNK ((size_t)1 << 28)

#define DIST_MAX_PENDING 64   /* sums started and not waited for */

struct dist {
    int rank, size;
    int mpi;            /* 1 when this process initialised MPI */
    char err[256];      /* the last failure of dist_sum_f64_cb */
#ifdef SSL_HAVE_MPI
    MPI_Request pending[DIST_MAX_PENDING];   /* dist_allreduce_start's, in order */
#endif
    int n_pending;
};

static int live = 0;    /* one dist per process */

/* The world size a launcher announced in the environment: 0 when the
 * process was not started by one. */
static int launcher_size(void)
{
    static const char *const size_vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" };
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++) {
        const char *v = getenv(size_vars[i]);
        if (v && *v) {
            long n = strtol(v, NULL, 10);
            return n > 0 && n < INT_MAX ? (int)n : 1;
        }
    }
    if (getenv("PMIX_RANK") || getenv("PMI_RANK"))
        return 1;
    return 0;
}

int dist_have_mpi(void)
{
#ifdef SSL_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef SSL_HAVE_MPI
/* err = "<what>: <MPI's message>"; returns -1 */
static int mpi_fail(int rc, const char *what, char *err, size_t errlen)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", rc);
    errmsg_set(err, errlen, "%s: %s", what, msg);
    return -1;
}
#endif

dist_t *dist_new(int *argc, char ***argv, char *err, size_t errlen)
{
    if (live) {
        errmsg_set(err, errlen, "dist_new: this process has already joined the run");
        return NULL;
    }
    dist_t *d = calloc(1, sizeof *d);
    if (!d) {
        errmsg_set(err, errlen, "dist_new: out of memory");
        return NULL;
    }
    d->rank = 0;
    d->size = 1;
    int launched = launcher_size();
#ifdef SSL_HAVE_MPI
    if (launched) {
        int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            errmsg_set(err, errlen, "MPI_Init_thread failed (code %d): check the mpirun command line "
                       "and that every host has the same build", rc);
            free(d);
            return NULL;
        }
        d->mpi = 1;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        if (provided < MPI_THREAD_FUNNELED) {
            errmsg_set(err, errlen, "MPI gives thread level %d, the trainer needs MPI_THREAD_FUNNELED (%d)",
                       provided, MPI_THREAD_FUNNELED);
            MPI_Finalize();
            free(d);
            return NULL;
        }
        if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &d->rank)) != MPI_SUCCESS ||
            (rc = MPI_Comm_size(MPI_COMM_WORLD, &d->size)) != MPI_SUCCESS) {
            mpi_fail(rc, "MPI_Comm_rank/size", err, errlen);
            MPI_Finalize();
            free(d);
            return NULL;
        }
    }
#else
    (void)argc;
    (void)argv;
    if (launched > 1) {
        errmsg_set(err, errlen, "started by mpirun as one of %d processes, but this build has no MPI: "
                   "install libopenmpi-dev (make deps) and rebuild, or start one process without mpirun",
                   launched);
        free(d);
        return NULL;
    }
#endif
    live = 1;
    return d;
}

void dist_destroy(dist_t **self_p)
{
    if (!self_p || !*self_p)
        return;
#ifdef SSL_HAVE_MPI
    int finalized = 0;
    if ((*self_p)->mpi && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized)
        MPI_Finalize();
#endif
    free(*self_p);
    *self_p = NULL;
    live = 0;
}

void dist_abort(dist_t *d, int code)
{
    fflush(stdout);
    fflush(stderr);
#ifdef SSL_HAVE_MPI
    if (d && d->mpi)
        MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d;
    exit(code);
}

int dist_rank(const dist_t *d)
{
    return d->rank;
}

int dist_size(const dist_t *d)
{
    return d->size;
}

#ifdef SSL_HAVE_MPI
static int allreduce_chunks(void *buf, size_t n, size_t elem, MPI_Datatype type, const char *what,
                            char *err, size_t errlen)
{
    for (size_t off = 0; off < n; off += DIST_CHUNK) {
        size_t c = n - off < DIST_CHUNK ? n - off : DIST_CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)c, type, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, what, err, errlen);
    }
    return 0;
}
#endif

int dist_allreduce_sum(dist_t *d, float *buf, size_t n, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->mpi)
        return allreduce_chunks(buf, n, sizeof *buf, MPI_FLOAT, "MPI_Allreduce of the float buffer",
                                err, errlen);
#endif
    return 0;
}

int dist_allreduce_start(dist_t *d, float *buf, size_t n, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (!d->mpi)
        return 0;
    for (size_t off = 0; off < n; off += DIST_CHUNK) {
        if (d->n_pending == DIST_MAX_PENDING && dist_allreduce_wait(d, err, errlen))
            return -1;
        size_t c = n - off < DIST_CHUNK ? n - off : DIST_CHUNK;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                &d->pending[d->n_pending]);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Iallreduce of the float buffer", err, errlen);
        d->n_pending++;
    }
#else
    (void)d;
    (void)buf;
    (void)n;
    (void)err;
    (void)errlen;
#endif
    return 0;
}

int dist_progress(dist_t *d, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    int done = 0;
    if (d->n_pending) {
        int rc = MPI_Testall(d->n_pending, d->pending, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Testall of the sums in flight", err, errlen);
        if (done)
            d->n_pending = 0;
    }
#else
    (void)d;
    (void)err;
    (void)errlen;
#endif
    return 0;
}

int dist_allreduce_wait(dist_t *d, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->n_pending) {
        int rc = MPI_Waitall(d->n_pending, d->pending, MPI_STATUSES_IGNORE);
        d->n_pending = 0;
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Waitall of the sums in flight", err, errlen);
    }
#else
    (void)d;
    (void)err;
    (void)errlen;
#endif
    return 0;
}

int dist_allreduce_sum_f64(dist_t *d, double *buf, size_t n, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->mpi)
        return allreduce_chunks(buf, n, sizeof *buf, MPI_DOUBLE, "MPI_Allreduce of the double buffer",
                                err, errlen);
#endif
    return 0;
}

int dist_sum_f64_cb(void *ctx, double *buf, size_t n)
{
    dist_t *d = ctx;
    return dist_allreduce_sum_f64(d, buf, n, d->err, sizeof d->err);
}

const char *dist_error(const dist_t *d)
{
    return d->err;
}

int dist_allgather(dist_t *d, const float *send, float *recv, size_t n, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->mpi) {
        if (n > INT_MAX) {
            errmsg_set(err, errlen, "dist_allgather: %zu floats per rank, at most %d in one call", n, INT_MAX);
            return -1;
        }
        int rc = MPI_Allgather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, MPI_COMM_WORLD);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allgather", err, errlen);
    }
#endif
    if (recv != send)
        memmove(recv, send, n * sizeof *send);
    return 0;
}

int dist_allgather_bytes(dist_t *d, const void *send, void *recv, size_t bytes, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->mpi) {
        if (bytes > INT_MAX) {
            errmsg_set(err, errlen, "dist_allgather_bytes: %zu bytes per rank, at most %d in one call", bytes,
                       INT_MAX);
            return -1;
        }
        int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allgather", err, errlen);
    }
#endif
    if (recv != send)
        memmove(recv, send, bytes);
    return 0;
}

int dist_broadcast(dist_t *d, void *buf, size_t bytes, int root, char *err, size_t errlen)
{
    if (root < 0 || root >= d->size) {
        errmsg_set(err, errlen, "dist_broadcast: root %d is not a rank of this run (0..%d)", root, d->size - 1);
        return -1;
    }
#ifdef SSL_HAVE_MPI
    if (d->mpi)
        for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
            size_t c = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
            int rc = MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS)
                return mpi_fail(rc, "MPI_Bcast", err, errlen);
        }
#endif
    return 0;
}

int dist_barrier(dist_t *d, char *err, size_t errlen)
{
#ifdef SSL_HAVE_MPI
    if (d->mpi) {
        int rc = MPI_Barrier(MPI_COMM_WORLD);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Barrier", err, errlen);
    }
#endif
    return 0;
}

/* ------------------------------------------------------------ endpoints */

int dist_endpoint(char *out, size_t outlen, const char *spec, int rank, char *err, size_t errlen)
{
    if (!spec || !*spec || rank < 0) {
        errmsg_set(err, errlen, "dist_endpoint: no endpoint given");
        return -1;
    }
    if (strchr(spec, ',')) {
        /* the rank-th entry of the list */
        const char *p = spec;
        for (int i = 0; i < rank; i++) {
            p = strchr(p, ',');
            if (!p) {
                errmsg_set(err, errlen, "endpoint list '%s' has %d entries, rank %d needs one: "
                           "give one endpoint per process", spec, i + 1, rank);
                return -1;
            }
            p++;
        }
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= outlen) {
            errmsg_set(err, errlen, "endpoint list '%s': entry %d is %s", spec, rank,
                       len == 0 ? "empty" : "too long");
            return -1;
        }
        memcpy(out, p, len);
        out[len] = '\0';
        return 0;
    }
    size_t len = strlen(spec);
    if (len >= outlen) {
        errmsg_set(err, errlen, "endpoint '%.64s...' is too long", spec);
        return -1;
    }
    if (rank == 0) {
        memcpy(out, spec, len + 1);
        return 0;
    }
    const char *colon = strrchr(spec, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (strncmp(spec, "tcp://", 6) != 0 || !colon || colon < spec + 6 || end == colon + 1 ||
        *end != '\0' || port < 1) {
        errmsg_set(err, errlen, "cannot give rank %d its own endpoint from '%s': shifting needs "
                   "tcp://HOST:PORT; give a comma-separated list with one endpoint per process",
                   rank, spec);
        return -1;
    }
    if (port + rank > 65535) {
        errmsg_set(err, errlen, "endpoint '%s' shifted by rank %d passes port 65535: use a lower port",
                   spec, rank);
        return -1;
    }
    int n = snprintf(out, outlen, "%.*s:%ld", (int)(colon - spec), spec, port + rank);
    if (n < 0 || (size_t)n >= outlen) {
        errmsg_set(err, errlen, "endpoint '%.64s...' is too long", spec);
        return -1;
    }
    return 0;
}

/* tests/mpi_report: what the MPI check programs (mpi_dist_check,
 * mpi_trainer_check) share: the world they run in, the failure count, an
 * error buffer for dist's calls, and report(): one "ok"/"FAIL" line per
 * check, printed by rank 0 for a pass and by any rank for a failure. */
#ifndef TESTS_MPI_REPORT_H
#define TESTS_MPI_REPORT_H

#include <stdarg.h>
#include <stdio.h>

#include "dist/dist.h"

static dist_t *world;
static int failures;
static char err[512];

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...)
{
    if (!ok)
        failures++;
    if (dist_rank(world) != 0 && ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%s rank %d: ", ok ? "ok" : "FAIL", dist_rank(world));
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

#endif

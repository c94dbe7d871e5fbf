/* Unit tests of dist/: the world of one (no launcher in the environment) and
 * the per-rank endpoints. The collectives over real ranks are checked by
 * tests/it_mpi_dist.sh under mpirun. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

static void test_world_of_one(void **state)
{
    (void)state;
    char err[256];
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    dist_t *d = dist_new(NULL, NULL, err, sizeof err);
    assert_non_null(d);
    assert_int_equal(dist_rank(d), 0);
    assert_int_equal(dist_size(d), 1);
    assert_null(dist_new(NULL, NULL, err, sizeof err));     /* one per process */

    float buf[3] = { 1.0f, -2.0f, 3.5f }, all[3];
    assert_int_equal(dist_allreduce_sum(d, buf, 3, err, sizeof err), 0);
    assert_true(buf[0] == 1.0f && buf[1] == -2.0f && buf[2] == 3.5f);
    double b64[2] = { 0.25, 8.0 };
    assert_int_equal(dist_allreduce_sum_f64(d, b64, 2, err, sizeof err), 0);
    assert_true(b64[0] == 0.25 && b64[1] == 8.0);
    assert_int_equal(dist_allgather(d, buf, all, 3, err, sizeof err), 0);
    assert_memory_equal(all, buf, sizeof buf);
    char bytes[4] = "abc";
    assert_int_equal(dist_broadcast(d, bytes, 4, 0, err, sizeof err), 0);
    assert_string_equal(bytes, "abc");
    assert_int_equal(dist_broadcast(d, bytes, 4, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "root 1"));
    assert_int_equal(dist_barrier(d, err, sizeof err), 0);
    assert_int_equal(dist_sum_f64_cb(d, b64, 2), 0);           /* the batch-norm callback */
    assert_true(b64[0] == 0.25 && b64[1] == 8.0);
    assert_string_equal(dist_error(d), "");
    dist_destroy(&d);
    assert_null(d);
    dist_destroy(&d);                                        /* NULL is fine */
}

/* A build without MPI refuses a launcher that asks for more than one process
 * (with MPI, the same variables would start MPI: tests/it_mpi_dist.sh). */
static void test_no_mpi_under_launcher(void **state)
{
    (void)state;
    if (dist_have_mpi())
        skip();
    char err[256];
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    assert_null(dist_new(NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "no MPI"));
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    dist_t *d = dist_new(NULL, NULL, err, sizeof err);
    assert_non_null(d);
    assert_int_equal(dist_size(d), 1);
    dist_destroy(&d);
    unsetenv("OMPI_COMM_WORLD_SIZE");
}

static void test_endpoint(void **state)
{
    (void)state;
    char out[DIST_MAX_ENDPOINT], err[256];
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://*:5556", 0, err, sizeof err), 0);
    assert_string_equal(out, "tcp://*:5556");
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://127.0.0.1:5556", 3, err, sizeof err), 0);
    assert_string_equal(out, "tcp://127.0.0.1:5559");
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://[::1]:7000", 1, err, sizeof err), 0);
    assert_string_equal(out, "tcp://[::1]:7001");
    /* lists: the rank-th entry, whatever the transport */
    const char *list = "tcp://a:1000,ipc:///tmp/t1,tcp://b:2000";
    assert_int_equal(dist_endpoint(out, sizeof out, list, 1, err, sizeof err), 0);
    assert_string_equal(out, "ipc:///tmp/t1");
    assert_int_equal(dist_endpoint(out, sizeof out, list, 2, err, sizeof err), 0);
    assert_string_equal(out, "tcp://b:2000");
    assert_int_equal(dist_endpoint(out, sizeof out, list, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "3 entries"));
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://a:1,,tcp://b:2", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    /* no port to shift */
    assert_int_equal(dist_endpoint(out, sizeof out, "ipc:///tmp/x", 0, err, sizeof err), 0);
    assert_string_equal(out, "ipc:///tmp/x");
    assert_int_equal(dist_endpoint(out, sizeof out, "ipc:///tmp/x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "comma-separated"));
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://host", 1, err, sizeof err), -1);
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://host:12x", 1, err, sizeof err), -1);
    assert_int_equal(dist_endpoint(out, sizeof out, "tcp://*:65535", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "65535"));
    char small[8];
    assert_int_equal(dist_endpoint(small, sizeof small, "tcp://*:5556", 0, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_of_one),
        cmocka_unit_test(test_no_mpi_under_launcher),
        cmocka_unit_test(test_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

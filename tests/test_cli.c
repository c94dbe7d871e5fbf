/* Unit tests of cli/: numbers within ranges, bad numbers, values with a unit
 * suffix (refused: no option takes one), endpoints and "none", the flag named
 * in every error, getopt's errors, the usage-error text, the defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/defaults.h"

/* err names flag and holds needle. */
static void expect_error(const char *err, const char *flag, const char *needle)
{
    if (!strstr(err, flag) || (needle && !strstr(err, needle)))
        fail_msg("error \"%s\" should name %s%s%s", err, flag, needle ? " and say " : "", needle ? needle : "");
}

static void test_long_in_range(void **state)
{
    (void)state;
    char err[256];
    long v = 7;
    assert_int_equal(cli_long("--n", "0", 0, 10, &v, err, sizeof err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cli_long("--n", "10", 0, 10, &v, err, sizeof err), 0);
    assert_int_equal(v, 10);
    assert_int_equal(cli_long("--n", "-5", -5, 5, &v, err, sizeof err), 0);
    assert_int_equal(v, -5);
    assert_int_equal(cli_long("--n", "9223372036854775807", 0, LONG_MAX, &v, err, sizeof err), 0);
    assert_true(v == LONG_MAX);
    int i = 0;
    assert_int_equal(cli_int("--i", "42", 1, 100, &i, err, sizeof err), 0);
    assert_int_equal(i, 42);
}

static void test_long_out_of_range_names_flag(void **state)
{
    (void)state;
    char err[256];
    long v = 7;
    assert_int_equal(cli_long("--threads", "0", 1, 64, &v, err, sizeof err), -1);
    expect_error(err, "--threads", "from 1 to 64");
    assert_int_equal(v, 7);   /* untouched */
    assert_int_equal(cli_long("--threads", "65", 1, 64, &v, err, sizeof err), -1);
    expect_error(err, "--threads", "\"65\"");
    assert_int_equal(cli_long("--steps", "99999999999999999999", 1, LONG_MAX, &v, err, sizeof err), -1);
    expect_error(err, "--steps", "at least 1");
    int i;
    assert_int_equal(cli_int("--width", "-1", 1, 1024, &i, err, sizeof err), -1);
    expect_error(err, "--width", "from 1 to 1024");
}

static void test_bad_numbers(void **state)
{
    (void)state;
    const char *bad[] = { "", "abc", "1x", "x1", " 5", "5 ", "1.5", "0x10", "1e3", "--", "-" };
    char err[256];
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        long v;
        uint64_t u;
        size_t z;
        err[0] = 0;
        if (cli_long("--epochs", bad[k], LONG_MIN, LONG_MAX, &v, err, sizeof err) != -1)
            fail_msg("cli_long took \"%s\"", bad[k]);
        expect_error(err, "--epochs", "whole number");
        if (cli_u64("--seed", bad[k], 0, UINT64_MAX, &u, err, sizeof err) != -1)
            fail_msg("cli_u64 took \"%s\"", bad[k]);
        expect_error(err, "--seed", bad[k]);
        if (cli_size("--limit", bad[k], 0, SIZE_MAX, &z, err, sizeof err) != -1)
            fail_msg("cli_size took \"%s\"", bad[k]);
        expect_error(err, "--limit", NULL);
    }
    long v;
    assert_int_equal(cli_long("--epochs", NULL, 0, 1, &v, err, sizeof err), -1);
    expect_error(err, "--epochs", NULL);
}

/* No option takes a unit: "64k", "1M", "2G" are refused, not read as 64. */
static void test_suffixes_refused(void **state)
{
    (void)state;
    const char *suffixed[] = { "64k", "1M", "2G", "10mb", "5s" };
    char err[256];
    for (size_t k = 0; k < sizeof suffixed / sizeof suffixed[0]; k++) {
        size_t z = 3;
        double d = 3;
        assert_int_equal(cli_size("--cache-mb", suffixed[k], 0, SIZE_MAX, &z, err, sizeof err), -1);
        expect_error(err, "--cache-mb", suffixed[k]);
        assert_int_equal(z, 3);
        assert_int_equal(cli_double("--seconds", suffixed[k], 0, 10, &d, err, sizeof err), -1);
        expect_error(err, "--seconds", suffixed[k]);
    }
}

static void test_unsigned(void **state)
{
    (void)state;
    char err[256];
    uint64_t u = 0;
    assert_int_equal(cli_u64("--seed", "18446744073709551615", 0, UINT64_MAX, &u, err, sizeof err), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(cli_u64("--seed", "18446744073709551616", 0, UINT64_MAX, &u, err, sizeof err), -1);
    expect_error(err, "--seed", "whole number");
    /* strtoull would wrap -1 around to the largest value */
    assert_int_equal(cli_u64("--limit", "-1", 0, UINT64_MAX, &u, err, sizeof err), -1);
    expect_error(err, "--limit", "\"-1\"");
    assert_int_equal(cli_u64("--max-pixels", "0", 1, UINT64_MAX, &u, err, sizeof err), -1);
    expect_error(err, "--max-pixels", "at least 1");
    size_t z = 0;
    assert_int_equal(cli_size("--queue-mb", "256", 1, SIZE_MAX >> 20, &z, err, sizeof err), 0);
    assert_int_equal(z, 256);
}

static void test_doubles(void **state)
{
    (void)state;
    char err[256];
    double d = -1;
    assert_int_equal(cli_double("--hold-out", "0", 0, 0.9, &d, err, sizeof err), 0);
    assert_true(d == 0.0);
    assert_int_equal(cli_double("--hold-out", "0.9", 0, 0.9, &d, err, sizeof err), 0);
    assert_true(d == 0.9);
    assert_int_equal(cli_double("--lr", "1e-3", 0, 1e3, &d, err, sizeof err), 0);
    assert_true(d == 1e-3);
    assert_int_equal(cli_double("--hold-out", "0.95", 0, 0.9, &d, err, sizeof err), -1);
    expect_error(err, "--hold-out", "from 0 to 0.9");
    assert_int_equal(cli_double("--tau", "-1", 1e-3, 100, &d, err, sizeof err), -1);
    expect_error(err, "--tau", "\"-1\"");
    const char *bad[] = { "", "abc", "nan", "inf", "-inf", "1,5", "0.5x", " 1" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (cli_double("--tau", bad[k], -HUGE_VAL, HUGE_VAL, &d, err, sizeof err) != -1)
            fail_msg("cli_double took \"%s\"", bad[k]);
        expect_error(err, "--tau", "number");
    }
    /* (above, max]: the lower bound itself is refused */
    assert_int_equal(cli_double_above("--knn-t", "0", 0, 100, &d, err, sizeof err), -1);
    expect_error(err, "--knn-t", "above 0");
    assert_int_equal(cli_double_above("--knn-t", "1e-9", 0, 100, &d, err, sizeof err), 0);
    assert_true(d == 1e-9);
    assert_int_equal(cli_double_above("--knn-t", "100", 0, 100, &d, err, sizeof err), 0);
    assert_int_equal(cli_double_above("--knn-t", "100.5", 0, 100, &d, err, sizeof err), -1);
    expect_error(err, "--knn-t", "at most 100");
    assert_int_equal(cli_double_above("--epochs", "1e300", 0, HUGE_VAL, &d, err, sizeof err), 0);
}

static void test_endpoints(void **state)
{
    (void)state;
    char err[256];
    const char *ep = "unchanged";
    assert_int_equal(cli_endpoint("--control", "tcp://127.0.0.1:7000", CLI_OPTIONAL, &ep, err, sizeof err), 0);
    assert_string_equal(ep, "tcp://127.0.0.1:7000");
    assert_int_equal(cli_endpoint("--control", "none", CLI_OPTIONAL, &ep, err, sizeof err), 0);
    assert_null(ep);
    assert_string_equal(cli_endpoint_name(ep), "none");
    assert_string_equal(cli_endpoint_name("ipc:///tmp/x"), "ipc:///tmp/x");
    ep = "unchanged";
    assert_int_equal(cli_endpoint("--evaluator", "", CLI_OPTIONAL, &ep, err, sizeof err), -1);
    expect_error(err, "--evaluator", "or none");
    assert_string_equal(ep, "unchanged");
    /* a socket the program needs cannot be disabled */
    assert_int_equal(cli_endpoint("--bind", "none", CLI_REQUIRED, &ep, err, sizeof err), -1);
    expect_error(err, "--bind", "\"none\"");
    assert_null(strstr(err, "to disable"));
    assert_string_equal(ep, "unchanged");
    assert_int_equal(cli_endpoint("--bind", "ipc:///tmp/x", CLI_REQUIRED, &ep, err, sizeof err), 0);
    assert_string_equal(ep, "ipc:///tmp/x");
    /* only the exact word disables */
    assert_int_equal(cli_endpoint("--control", "None", CLI_OPTIONAL, &ep, err, sizeof err), 0);
    assert_string_equal(ep, "None");
}

static void test_defaults(void **state)
{
    (void)state;
    assert_string_equal(CLI_ENDPOINT_LOADER, "tcp://127.0.0.1:5555");
    assert_string_equal(CLI_ENDPOINT_TRAINER, "tcp://127.0.0.1:5556");
    assert_string_equal(CLI_ENDPOINT_EVALUATOR, "tcp://127.0.0.1:5557");
    assert_string_equal(CLI_ENDPOINT_CONTROL, "tcp://127.0.0.1:5558");
}

/* Runs getopt_long over argv and returns the message of its first error. */
static void first_option_error(int argc, char **argv, char *err, size_t len)
{
    static const struct option opts[] = {
        { "batch", required_argument, 0, 256 }, { "output", required_argument, 0, 'o' }, { 0, 0, 0, 0 } };
    optind = 1;
    opterr = 0;
    err[0] = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:", opts, NULL)) != -1)
        if (c == '?' || c == ':') {
            cli_option_error(c, argv, err, len);
            return;
        }
}

static void test_option_errors(void **state)
{
    (void)state;
    char err[256];
    char *a1[] = { "prog", "--batch", "4", "--no-such-flag", NULL };
    first_option_error(4, a1, err, sizeof err);
    assert_string_equal(err, "unknown option '--no-such-flag'");
    char *a2[] = { "prog", "--batch", NULL };
    first_option_error(2, a2, err, sizeof err);
    assert_string_equal(err, "--batch needs a value");
    char *a3[] = { "prog", "--output", NULL };
    first_option_error(2, a3, err, sizeof err);
    assert_string_equal(err, "--output needs a value");
    char *a4[] = { "prog", "-o", NULL };
    first_option_error(2, a4, err, sizeof err);
    assert_string_equal(err, "-o needs a value");
    char *a5[] = { "prog", "-x", NULL };
    first_option_error(2, a5, err, sizeof err);
    assert_string_equal(err, "unknown option '-x'");
    char *a6[] = { "prog", "--frob=3", NULL };
    first_option_error(2, a6, err, sizeof err);
    assert_string_equal(err, "unknown option '--frob'");
}

/* cli_parse's option function: --n NUMBER into ((long *)ctx)[0], --flag counts in [1]. */
static int take_option(void *ctx, int c, const char *value, char *err, size_t len)
{
    long *got = ctx;
    if (c == 'f') {
        got[1]++;
        return 0;
    }
    return cli_long("--n", value, 0, 9, &got[0], err, len);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct option opts[] = {
        { "n", required_argument, 0, 'n' }, { "flag", no_argument, 0, 'f' }, { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 } };
    char err[256];
    long got[2] = { 0, 0 };
    char *a1[] = { "prog", "--n", "3", "operand", "--flag", "-f", NULL };
    assert_int_equal(cli_parse(6, a1, "fh", opts, 'h', take_option, got, err, sizeof err), 0);
    assert_int_equal(got[0], 3);
    assert_int_equal(got[1], 2);
    assert_int_equal(optind, 5);   /* the operand, moved after the options */
    assert_string_equal(a1[optind], "operand");
    char *a2[] = { "prog", "--n", "4", "-h", "--n", "x", NULL };
    assert_int_equal(cli_parse(6, a2, "fh", opts, 'h', take_option, got, err, sizeof err), 1);
    char *a3[] = { "prog", "--n", "10", NULL };
    assert_int_equal(cli_parse(3, a3, "fh", opts, 'h', take_option, got, err, sizeof err), -1);
    expect_error(err, "--n", "from 0 to 9");
    char *a4[] = { "prog", "--what", NULL };
    assert_int_equal(cli_parse(2, a4, "fh", opts, 'h', take_option, got, err, sizeof err), -1);
    assert_string_equal(err, "unknown option '--what'");
    char *a5[] = { "prog", "--flag", "--n", NULL };
    assert_int_equal(cli_parse(3, a5, "fh", opts, 'h', take_option, got, err, sizeof err), -1);
    assert_string_equal(err, "--n needs a value");
}

/* What cli_usage_error prints on stderr, and its return value in *rc. */
static char *usage_error_text(int *rc, const char *msg)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), STDERR_FILENO);
    *rc = cli_usage_error("loader", "%s", msg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp);
    char *text = calloc(1, (size_t)n + 1);
    rewind(tmp);
    assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static void test_usage_error(void **state)
{
    (void)state;
    int rc;
    char *text = usage_error_text(&rc, "--epochs wants a whole number, got \"x\"");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    assert_string_equal(text, "loader: --epochs wants a whole number, got \"x\"\n"
                              "HINT: loader --help lists the options\n");
    free(text);
    /* a message with its own hint gets no second one */
    text = usage_error_text(&rc, "--data PATH is required\nHINT: give the dataset folder");
    assert_string_equal(text, "loader: --data PATH is required\nHINT: give the dataset folder\n");
    free(text);
    assert_int_equal(CLI_EXIT_OK, 0);
    assert_int_equal(CLI_EXIT_FAILED, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_in_range),
        cmocka_unit_test(test_long_out_of_range_names_flag),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_suffixes_refused),
        cmocka_unit_test(test_unsigned),
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_usage_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

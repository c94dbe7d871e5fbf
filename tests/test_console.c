/* Unit tests of console/: log prefix, progress line with rate and ETA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "console/console.h"

/* Runs fn with stderr sent to a temporary file and returns what it printed. */
static char *capture_stderr(void (*fn)(void))
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
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

static void log_two_lines(void)
{
    console_init("loader");
    console_log("skipped %s: %s", "a.jpg", "truncated");
    console_log("done");
}

static void test_log_prefixes_stage(void **state)
{
    (void)state;
    char *out = capture_stderr(log_two_lines);
    assert_string_equal(out, "loader: skipped a.jpg: truncated\nloader: done\n");
    free(out);
}

static void progress_with_total(void)
{
    console_init("loader");
    progress_t p;
    progress_start(&p, "images", 1000);
    /* Pretend 2 s passed with 500 images done: 250/s, 2 s left. */
    p.start -= 2.0;
    p.last_time -= 2.0;
    p.last_print -= 10.0;
    progress_update(&p, 500, "epoch 1/3");
    /* Right after a print nothing more is printed. */
    progress_update(&p, 501, "epoch 1/3");
    progress_end(&p);
}

static void test_progress_reports_rate_and_eta(void **state)
{
    (void)state;
    char *out = capture_stderr(progress_with_total);
    assert_non_null(strstr(out, "loader: 500/1000 images (50%)"));
    assert_non_null(strstr(out, "250 images/s"));
    assert_non_null(strstr(out, "ETA 2s"));
    assert_non_null(strstr(out, "epoch 1/3"));
    assert_null(strstr(out, "501/1000"));
    free(out);
}

static void progress_without_total(void)
{
    console_init("trainer");
    progress_t p;
    progress_start(&p, "steps", 0);
    p.last_time -= 4000.0;
    p.start -= 4000.0;
    p.last_print -= 10.0;
    progress_update(&p, 8000, NULL);
}

static void test_progress_without_total_has_no_eta(void **state)
{
    (void)state;
    char *out = capture_stderr(progress_without_total);
    assert_non_null(strstr(out, "trainer: 8000 steps, 2 steps/s, 1h06m elapsed"));
    assert_null(strstr(out, "ETA"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_prefixes_stage),
        cmocka_unit_test(test_progress_reports_rate_and_eta),
        cmocka_unit_test(test_progress_without_total_has_no_eta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

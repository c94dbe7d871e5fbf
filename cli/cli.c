/* cli: the shared command-line conventions (cli.h). */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg/errmsg.h"

#define MAX_MESSAGE 2048

/* 1 when s can start a number for strtol/strtod: not empty, no leading space. */
static int starts_number(const char *s)
{
    return s && *s && !isspace((unsigned char)*s);
}

/* "a whole number from MIN to MAX", or without the bounds that are the type's own. */
static void whole_error(const char *flag, const char *s, const char *lo, const char *hi, char *err, size_t len)
{
    if (lo && hi)
        errmsg_set(err, len, "%s wants a whole number from %s to %s, got \"%s\"", flag, lo, hi, s ? s : "");
    else if (lo)
        errmsg_set(err, len, "%s wants a whole number of at least %s, got \"%s\"", flag, lo, s ? s : "");
    else if (hi)
        errmsg_set(err, len, "%s wants a whole number of at most %s, got \"%s\"", flag, hi, s ? s : "");
    else
        errmsg_set(err, len, "%s wants a whole number, got \"%s\"", flag, s ? s : "");
}

int cli_long(const char *flag, const char *s, long min, long max, long *out, char *err, size_t len)
{
    char *end = NULL;
    long v = 0;
    errno = 0;
    if (starts_number(s))
        v = strtol(s, &end, 10);
    if (!starts_number(s) || errno || end == s || *end || v < min || v > max) {
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%ld", min);
        snprintf(hi, sizeof hi, "%ld", max);
        whole_error(flag, s, min == LONG_MIN ? NULL : lo, max == LONG_MAX ? NULL : hi, err, len);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_int(const char *flag, const char *s, int min, int max, int *out, char *err, size_t len)
{
    long v;
    if (cli_long(flag, s, min, max, &v, err, len))
        return -1;
    *out = (int)v;
    return 0;
}

int cli_u64(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t len)
{
    char *end = NULL;
    unsigned long long v = 0;
    int ok = starts_number(s) && *s != '-';
    errno = 0;
    if (ok)
        v = strtoull(s, &end, 10);
    if (!ok || errno || end == s || *end || v < min || v > max) {
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%" PRIu64, min);
        snprintf(hi, sizeof hi, "%" PRIu64, max);
        whole_error(flag, s, min == 0 && max == UINT64_MAX ? NULL : lo, max == UINT64_MAX ? NULL : hi, err, len);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_size(const char *flag, const char *s, size_t min, size_t max, size_t *out, char *err, size_t len)
{
    uint64_t v;
    if (cli_u64(flag, s, min, max == SIZE_MAX ? UINT64_MAX : max, &v, err, len))
        return -1;
    if (v > SIZE_MAX) {
        whole_error(flag, s, NULL, NULL, err, len);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* strtod over the whole of s, finite: 0, else -1. */
static int read_double(const char *s, double *v)
{
    char *end = NULL;
    if (!starts_number(s))
        return -1;
    errno = 0;
    *v = strtod(s, &end);
    return errno || end == s || *end || !isfinite(*v) ? -1 : 0;
}

int cli_double(const char *flag, const char *s, double min, double max, double *out, char *err, size_t len)
{
    double v;
    if (read_double(s, &v) || v < min || v > max) {
        if (max >= HUGE_VAL)
            errmsg_set(err, len, "%s wants a number of at least %g, got \"%s\"", flag, min, s ? s : "");
        else
            errmsg_set(err, len, "%s wants a number from %g to %g, got \"%s\"", flag, min, max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double_above(const char *flag, const char *s, double above, double max, double *out, char *err,
                     size_t len)
{
    double v;
    if (read_double(s, &v) || !(v > above) || v > max) {
        if (max >= HUGE_VAL)
            errmsg_set(err, len, "%s wants a number above %g, got \"%s\"", flag, above, s ? s : "");
        else
            errmsg_set(err, len, "%s wants a number above %g and at most %g, got \"%s\"", flag, above, max,
                       s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_endpoint(const char *flag, const char *s, int optional, const char **out, char *err, size_t len)
{
    int none = s && strcmp(s, CLI_NONE) == 0;
    if (!s || !*s || (none && !optional)) {
        errmsg_set(err, len, "%s wants an endpoint such as tcp://HOST:PORT or ipc:///PATH%s, got \"%s\"", flag,
                   optional ? ", or " CLI_NONE " to disable it" : "", s ? s : "");
        return -1;
    }
    *out = none ? NULL : s;
    return 0;
}

const char *cli_endpoint_name(const char *ep)
{
    return ep ? ep : CLI_NONE;
}

void cli_option_error(int c, char *const argv[], char *err, size_t len)
{
    /* A long option is argv[optind - 1] (up to any '='); a short one is
     * optopt, the letter getopt_long stopped at. */
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;
    char name[256];
    if (arg && strncmp(arg, "--", 2) == 0)
        snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    else if (optopt > 0 && optopt < 128 && isgraph(optopt))
        snprintf(name, sizeof name, "-%c", optopt);
    else
        snprintf(name, sizeof name, "%s", arg ? arg : "?");
    if (c == ':')
        errmsg_set(err, len, "%s needs a value", name);
    else
        errmsg_set(err, len, "unknown option '%s'", name);
}

int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts, int help_c,
              cli_option_fn *fn, void *ctx, char *err, size_t len)
{
    char optstring[64];
    if (snprintf(optstring, sizeof optstring, ":%s", shortopts ? shortopts : "") >= (int)sizeof optstring) {
        errmsg_set(err, len, "too many short options");
        return -1;
    }
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        if (c == help_c)
            return 1;
        if (c == '?' || c == ':') {
            cli_option_error(c, argv, err, len);
            return -1;
        }
        if (fn(ctx, c, optarg, err, len))
            return -1;
    }
    return 0;
}

int cli_parse_exit(int rc, const char *prog, void (*usage)(FILE *f), const char *err)
{
    if (rc == 0)
        return -1;
    if (rc > 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    return cli_usage_error(prog, "%s", err);
}

int cli_usage_error(const char *prog, const char *fmt, ...)
{
    char msg[MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", prog, msg);
    if (!strstr(msg, "HINT:"))
        fprintf(stderr, "HINT: %s --help lists the options\n", prog);
    return CLI_EXIT_USAGE;
}

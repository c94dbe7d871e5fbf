/* cli: the command-line conventions every executable shares.
 *
 *   - exit codes: CLI_EXIT_OK 0, CLI_EXIT_FAILED 1 (a runtime failure),
 *     CLI_EXIT_USAGE 2 (bad usage);
 *   - option values: cli_long, cli_int, cli_u64, cli_size, cli_double and
 *     cli_double_above read the whole string as a number within a range and
 *     return 0, or -1 with a message naming the flag in err ("--epochs wants
 *     a whole number from 0 to 100, got \"abc\""); nothing is printed and
 *     nothing exits, so that parsers stay testable and main decides;
 *   - endpoints: cli_endpoint takes an endpoint, or "none" for a socket that
 *     is not opened (NULL), the one spelling in every stage;
 *   - cli_parse runs getopt_long and hands each option to the program's
 *     function; cli_option_error words what getopt_long stopped at;
 *     cli_usage_error prints "PROG: MESSAGE" and the hint to --help on
 *     stderr, and cli_parse_exit is main's one line after parsing.
 * The default endpoints are in cli/defaults.h.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_EXIT_OK      0
#define CLI_EXIT_FAILED  1
#define CLI_EXIT_USAGE   2

#define CLI_NONE "none"     /* the value that disables an endpoint option */

/* The value s of option flag ("--epochs") as a whole number in [min, max]
 * into *out: 0, or -1 with err set (and *out untouched) when s is empty, not
 * a decimal whole number, has anything after it, or is out of range. */
int cli_long(const char *flag, const char *s, long min, long max, long *out, char *err, size_t len);
int cli_int(const char *flag, const char *s, int min, int max, int *out, char *err, size_t len);
/* Unsigned: a leading '-' is refused rather than wrapped around. */
int cli_u64(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t len);
int cli_size(const char *flag, const char *s, size_t min, size_t max, size_t *out, char *err, size_t len);

/* A finite number in [min, max] (cli_double), or in (above, max]
 * (cli_double_above: "more than 0"); 0, or -1 with err set. */
int cli_double(const char *flag, const char *s, double min, double max, double *out, char *err, size_t len);
int cli_double_above(const char *flag, const char *s, double above, double max, double *out, char *err,
                     size_t len);

/* An endpoint option: *out = s, or NULL when s is "none" and the socket is
 * optional (CLI_OPTIONAL: it is then not opened); 0, or -1 with err set
 * when s is empty, or "none" for a socket the program cannot do without
 * (CLI_REQUIRED). */
enum { CLI_REQUIRED = 0, CLI_OPTIONAL = 1 };
int cli_endpoint(const char *flag, const char *s, int optional, const char **out, char *err, size_t len);
/* ep, or "none" when it is NULL: for messages and logs. */
const char *cli_endpoint_name(const char *ep);

/* After getopt_long (opterr = 0, optstring starting with ':') returned c,
 * '?' or ':': "unknown option '--x'" or "--batch needs a value" in err. */
void cli_option_error(int c, char *const argv[], char *err, size_t len);

/* One option: c (getopt_long's value for it) with its value (NULL for a
 * flag) into ctx; 0, or -1 with err set. */
typedef int cli_option_fn(void *ctx, int c, const char *value, char *err, size_t len);

/* Runs getopt_long over argv from the start (shortopts without the leading
 * ':', which it adds; it prints nothing) and hands each option to fn.
 * Returns 1 at the option help_c (--help; -1 when there is none), -1 with
 * err set at an unknown option, a missing value or fn's error, else 0 with
 * optind at the first operand. */
int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts, int help_c,
              cli_option_fn *fn, void *ctx, char *err, size_t len);

/* What main does with a parser's result rc (1: --help, -1: err): prints the
 * usage on stdout and returns CLI_EXIT_OK, or prints err with
 * cli_usage_error and returns CLI_EXIT_USAGE. For rc 0 it returns -1: go on. */
int cli_parse_exit(int rc, const char *prog, void (*usage)(FILE *f), const char *err);

/* Prints "PROG: MESSAGE" and "HINT: PROG --help lists the options" (unless
 * MESSAGE carries its own HINT) on stderr; returns CLI_EXIT_USAGE, for
 * main's `return cli_usage_error(...)`. */
int cli_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

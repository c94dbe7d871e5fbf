/* errmsg: the one way library code reports an error to its caller: a message
 * written into the caller's buffer (err, len), next to a -1 or NULL return.
 * The caller decides whether to print it, add a hint, or exit. */
#ifndef ERRMSG_ERRMSG_H
#define ERRMSG_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Formats into err[0..len) (always NUL-terminated); does nothing when err is
 * NULL or len is 0, so callers that do not want the message pass NULL. */
static inline void errmsg_set(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void errmsg_set(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

#endif

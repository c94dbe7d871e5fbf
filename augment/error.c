/* error: one message buffer per thread, like proto_error(). */
#include "augment/error.h"
#include "augment/augment.h"

#include <stdarg.h>
#include <stdio.h>

#define AUG_ERROR_LEN 512

static __thread char last_error[AUG_ERROR_LEN];

void aug_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

const char *aug_error(void)
{
    return last_error[0] ? last_error : "no error";
}

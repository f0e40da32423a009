#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "escape.h"

int error_setv(struct error *err, int code, const char *fmt, va_list ap)
{
        char raw[sizeof(err->msg)];

        if (!err || err->code)
                return code;
        err->code = code;
        vsnprintf(raw, sizeof(raw), fmt, ap);
        /* One line: a user's path or id with a newline in it cannot start another. */
        escape_controls(err->msg, sizeof(err->msg), raw);
        return code;
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        error_setv(err, code, fmt, ap);
        va_end(ap);
        return code;
}

int error_config(struct error *err, const char *fmt, ...)
{
        bool first = err && !err->code;
        va_list ap;

        va_start(ap, fmt);
        error_setv(err, -EINVAL, fmt, ap);
        va_end(ap);
        if (first)
                err->kind = ERROR_CONFIG;
        return -EINVAL;
}

void error_prefix(struct error *err, const char *fmt, ...)
{
        char raw[sizeof(err->msg)];
        char prefix[sizeof(err->msg)];
        char old[sizeof(err->msg)];
        va_list ap;

        if (!err || !err->code)
                return;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        escape_controls(prefix, sizeof(prefix), raw);
        memcpy(old, err->msg, sizeof(old));
        size_t n = strnlen(prefix, sizeof(err->msg) - 3);
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        n += 2;
        size_t rest = strnlen(old, sizeof(err->msg) - n - 1);
        memcpy(err->msg + n, old, rest);
        err->msg[n + rest] = '\0';
}

void error_clear(struct error *err)
{
        if (err) {
                err->code = 0;
                err->kind = ERROR_HOST;
                err->msg[0] = '\0';
        }
}

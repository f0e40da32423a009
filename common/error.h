/*
 * Error reports that carry one precise, human-readable message up to vmm/, which alone
 * decides how the process reacts (exit code, HTTP 400, library return code).
 */
#ifndef COMMON_ERROR_H
#define COMMON_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum error_kind {
        ERROR_HOST = 0, /* the host or the VMM failed (exit code 1) */
        ERROR_CONFIG,   /* the user's configuration or input files are bad (exit code 152) */
};

struct error {
        int code;             /* negative errno, 0 when no error was recorded */
        enum error_kind kind; /* set by the layer that knows where the input came from */
        char msg[512];        /* one line, no trailing newline */
};

/* Records the message (first error wins) and returns code, so callers can
 * `return error_set(err, -EINVAL, "...")`. err may be NULL. */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int error_setv(struct error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Like error_set, but marks the error as the user's configuration (ERROR_CONFIG, -EINVAL). */
int error_config(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an already recorded message with context ("kernel: ..."). */
void error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void error_clear(struct error *err);

#endif

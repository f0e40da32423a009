/*
 * Error reports that carry one precise, human-readable message up to vmm/, which alone
 * decides how the process reacts (exit code, HTTP 400, library return code).
 */
#ifndef COMMON_ERROR_H
#define COMMON_ERROR_H

#include <stddef.h>

struct error {
        int code;      /* negative errno, 0 when no error was recorded */
        char msg[512]; /* one line, no trailing newline */
};

/* Records the message (first error wins) and returns code, so callers can
 * `return error_set(err, -EINVAL, "...")`. err may be NULL. */
int error_set(struct error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Prefixes an already recorded message with context ("kernel: ..."). */
void error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void error_clear(struct error *err);

#endif

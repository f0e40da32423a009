/*
 * Text from users (paths, ids, strings read from a snapshot's state file) on its way into a
 * log line, an error message or a report: written raw, a newline in it would forge a line of
 * its own, and other control characters could rewrite a terminal. Every ASCII control
 * character is replaced by a visible escape; everything else (UTF-8 included) is kept.
 * Escaping is idempotent (escaped text has no control character left), so a message escaped
 * when it was made can pass through a sink that escapes again unchanged.
 */
#ifndef COMMON_ESCAPE_H
#define COMMON_ESCAPE_H

#include <stdbool.h>
#include <stddef.h>

/* Copies src into dst (cap bytes, NUL-terminated when cap > 0), each control character
 * (0x00-0x1f, 0x7f) as \n, \r, \t or \xNN. Only whole escapes are written: truncation never
 * cuts one in half. Returns the length of the whole escaped text (as snprintf does). */
size_t escape_controls(char *dst, size_t cap, const char *src);

/* True when s holds a control character (it would be changed by escape_controls). */
bool escape_needed(const char *s);

#endif

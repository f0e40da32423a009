/*
 * Kernel command line lookups: space-separated words, `key=value` or a bare `key`.
 * No quoting (the VMM tests do not need it). When a key repeats, the last one wins, as with
 * Linux's parameter parsing.
 */
#ifndef PROBE_CMDLINE_H
#define PROBE_CMDLINE_H

#include <stddef.h>

/* Returns the value of `key` (a pointer into cmdline, *len bytes, not NUL-terminated; a bare
 * `key` has an empty value), or NULL when the key is absent. */
const char *cmdline_find(const char *cmdline, const char *key, size_t *len);

#endif

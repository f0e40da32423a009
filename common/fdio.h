/*
 * Writing to file descriptors, once for the whole VMM: everything or an error (files,
 * stderr), and one line at a time without waiting (log and metrics outputs, which may be
 * non-blocking pipes). Errors are negative errno values taken from the failing call, never
 * a stale errno.
 */
#ifndef COMMON_FDIO_H
#define COMMON_FDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes all len bytes, going on after a short write and retrying after EINTR. Returns 0 or
 * a negative errno; a write that makes no progress (returns 0) is -EIO. Async-signal-safe. */
int fd_write_all(int fd, const void *buf, size_t len);
/* The same at offset off (pwrite: the file offset does not move). */
int fd_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* Writes one line with a single write (retried only after EINTR): nothing waits for a slow
 * reader. A line that went out only in part sets *torn, and the next call first ends it with
 * a newline, so the following line is not glued to it. Returns the bytes of this line
 * written (len when it all went out), or a negative errno (-EIO when a write makes no
 * progress). */
ssize_t fd_write_line(int fd, bool *torn, const void *line, size_t len);

#endif

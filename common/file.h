/*
 * Files a user named: paths from the command line, the config file, the API or a snapshot's
 * state file. Such a path may name anything. A FIFO's open() waits for a peer, and the
 * thread that waits is the VMM thread, which also handles signals (SIGTERM would no longer
 * end the process); a device's open can have side effects of its own; a directory or
 * /proc/self/mem is no disk image. Every open of a user's path goes through file_open, which
 * refuses the kinds the caller does not accept without opening them and never blocks.
 *
 * Files the VMM writes whole (snapshots, memory dumps) are replaced, never overwritten in
 * place: file_replace writes a temporary file next to the target and renames it over the
 * target once it is complete and on disk, so a failure (or a kill) at any point leaves the
 * old file intact, and nothing but the temporary file the call created is ever removed.
 */
#ifndef COMMON_FILE_H
#define COMMON_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "util.h"

/* The kinds of file a caller accepts. */
enum file_kinds {
        FILE_REGULAR = 1u << 0,
        FILE_BLOCK = 1u << 1, /* a block device (drives) */
        /* A FIFO, opened read-write so that neither the open nor a write waits for a reader,
         * and kept non-blocking (log and metrics outputs: a write to a full pipe fails). */
        FILE_FIFO = 1u << 2,
        FILE_CHAR = 1u << 3, /* a character device, kept non-blocking (/dev/null, a terminal) */
};

/* "a directory", "a FIFO", "a character device", ... for messages. */
const char *file_kind_name(mode_t mode);

/*
 * Opens path with flags (O_CLOEXEC and O_NOCTTY added) when it is, or as O_CREAT makes it,
 * one of kinds. The type is looked at before the open, which itself is non-blocking (a FIFO
 * swapped in meanwhile cannot make it wait), and again on the descriptor. Regular files and
 * block devices are left blocking afterwards (io_uring would fail a request that has to wait
 * with EAGAIN on a non-blocking file). Returns the descriptor, or -EINVAL with err set
 * (ERROR_CONFIG): "WHAT 'PATH': No such file or directory", "WHAT 'PATH': cannot open
 * for writing: Permission denied", "WHAT 'PATH' is not a regular file: it is a FIFO" ("... a
 * regular file or a block device" when block devices are accepted).
 */
int file_open(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
              struct error *err) MUST_CHECK;
/* file_open that also tells why the open itself failed: *os_errno is its errno, or 0 when
 * the path was refused before (empty, or not one of kinds), for answers that quote the OS
 * error as Firecracker's do ("... (os error 2)"). */
int file_open_os(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
                 int *os_errno, struct error *err) MUST_CHECK;

/* A regular file of at most max bytes read whole (file_open's checks and messages; "WHAT
 * 'PATH' is larger than N bytes"): *text is malloc'd, NUL-terminated, *len bytes long. */
int file_read_all(const char *what, const char *path, size_t max, char **text, size_t *len,
                  struct error *err) MUST_CHECK;

/* The message of file_open for a file of this mode that is not one of kinds. */
int file_refuse_kind(const char *what, const char *path, mode_t mode, unsigned kinds,
                     struct error *err);

/* The file path names, symbolic links followed as open() follows them (the last one may
 * dangle: then the path it names), malloc'd; NULL with *err a negative errno. */
char *file_resolve(const char *path, int *err);

/* A replacement of one file under way. */
struct file_replace {
        char *target; /* where the file goes: the path, or what its symbolic link names */
        char *tmp;    /* the temporary file next to it ("TARGET.tmp-SUFFIX") */
        int fd;       /* open for writing on tmp; -1 once synced */
        bool target_exists;
        dev_t target_dev; /* the existing target's identity (target_exists) */
        ino_t target_ino;
        dev_t dir_dev; /* the target's directory */
        ino_t dir_ino;
        char *base; /* the target's last component (points into target) */
};

/*
 * Starts replacing path: follows a symbolic link to its target, refuses an existing target
 * that is not a regular file (nothing is removed, nothing opened), and creates the temporary
 * file "TARGET.tmp-SUFFIX" (O_EXCL, mode) in the target's directory, so the rename is
 * atomic. fr->fd is where the caller writes. Errors are ERROR_CONFIG naming WHAT and PATH.
 */
int file_replace_begin(struct file_replace *fr, const char *what, const char *path,
                       const char *suffix, mode_t mode, struct error *err) MUST_CHECK;
/* Flushes the temporary file to the disk and closes it. */
int file_replace_sync(struct file_replace *fr, const char *what, struct error *err) MUST_CHECK;
/* Renames the (synced) temporary file over the target and flushes the directory entry. */
int file_replace_commit(struct file_replace *fr, const char *what, struct error *err) MUST_CHECK;
/* Removes the temporary file if it is still there (only it: the call created it) and frees
 * fr. Safe after a failed begin and after a commit. */
void file_replace_end(struct file_replace *fr);
/* True when both replacements write the same file (same directory, same name). */
bool file_replace_same_target(const struct file_replace *a, const struct file_replace *b);

/* Flushes the directory holding path to the disk (a rename or a link in it). */
int file_sync_dir_of(const char *path) MUST_CHECK;

#endif

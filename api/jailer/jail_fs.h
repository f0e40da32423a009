/*
 * Files inside a jail that is not yet entered: every path is resolved beneath a directory
 * descriptor with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), so
 * a symbolic link or ".." planted in the jail (by the tenant of an earlier run of the same
 * id, who owns the jail's root) can never redirect a write out of it. Files are written
 * under a temporary name and renamed into place: nothing already in the jail is written
 * through, a planted hard link included.
 */
#ifndef API_JAILER_JAIL_FS_H
#define API_JAILER_JAIL_FS_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"

/* openat2 beneath dirfd (always O_CLOEXEC): returns the fd or a negative errno (-ELOOP for a
 * symbolic link, -EXDEV for a path that leaves dirfd, -ENOSYS before Linux 5.6). */
int jail_fs_openat(int dirfd, const char *rel, int flags, mode_t mode);

/*
 * Opens the directory rel beneath dirfd (O_RDONLY | O_DIRECTORY), creating each missing
 * component with mode (exactly: the umask is not applied to what the caller asks). rel is
 * relative, its components neither empty, "." nor "..". Returns the fd, or a negative errno
 * with a message naming shown_base/rel.
 */
int jail_fs_mkdirs(int dirfd, const char *rel, mode_t mode, const char *shown_base,
                   struct error *err);

/*
 * Writes the whole of src_fd (a regular file, read from offset 0) as dirfd/name with mode,
 * owned by uid:gid (pass (uid_t)-1 / (gid_t)-1 to keep root's), through a temporary name
 * and a rename. name is one path component.
 */
int jail_fs_copy(int src_fd, int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid,
                 struct error *err);

/*
 * Places the regular file src_fd as dirfd/name: a hard link when the file system allows
 * one, else a copy keeping the mode (root's, never chowned: a link shares the inode with the
 * host's file). Already the same inode: nothing to do. *linked says which it did.
 */
int jail_fs_link_or_copy(int src_fd, int dirfd, const char *name, bool *linked, struct error *err);

/* A unique temporary name ".NAME.jailer-XXXXXXXX" for name, in out (size >= 256). */
void jail_fs_temp_name(const char *name, char *out, size_t size);

#endif

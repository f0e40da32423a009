#include "jail_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int jail_fs_openat(int dirfd, const char *rel, int flags, mode_t mode)
{
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .mode = (flags & O_CREAT) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd;

        do
                fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        while (fd < 0 && errno == EAGAIN); /* a concurrent rename elsewhere: retry */
        return fd < 0 ? -errno : (int)fd;
}

void jail_fs_temp_name(const char *name, char *out, size_t size)
{
        uint32_t rnd = 0;

        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
                rnd = (uint32_t)getpid() ^ (uint32_t)(uintptr_t)out;
        snprintf(out, size, ".%.200s.jailer-%08x", name, rnd);
}

static const char *why(int e)
{
        if (e == ELOOP)
                return "a symbolic link where the jail needs a real file or directory (refused: "
                       "the jailer never follows links in a jail)";
        if (e == ENOSYS)
                return "openat2 is not available (the jailer needs Linux 5.6 or later)";
        return strerror(e);
}

int jail_fs_mkdirs(int dirfd, const char *rel, mode_t mode, const char *shown_base,
                   struct error *err)
{
        char comp[256];
        const char *p = rel;
        int fd = -1;
        int at = dirfd;

        if (!*rel || rel[0] == '/')
                return error_set(err, -EINVAL, "%s/%s: not a relative path", shown_base, rel);
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                int next;

                if (len == 0 || len >= sizeof(comp) || (len == 1 && p[0] == '.') ||
                    (len == 2 && p[0] == '.' && p[1] == '.')) {
                        if (fd >= 0)
                                close(fd);
                        return error_set(err, -EINVAL, "%s/%s: bad path component", shown_base,
                                         rel);
                }
                memcpy(comp, p, len);
                comp[len] = '\0';
                if (mkdirat(at, comp, mode) == 0) {
                        /* Exactly mode, whatever the umask: open it below and fchmod. */
                        next = jail_fs_openat(at, comp, O_RDONLY | O_DIRECTORY, 0);
                        if (next >= 0 && fchmod(next, mode) != 0) {
                                close(next);
                                next = -errno;
                        }
                } else if (errno == EEXIST) {
                        next = jail_fs_openat(at, comp, O_RDONLY | O_DIRECTORY, 0);
                } else {
                        next = -errno;
                }
                if (fd >= 0)
                        close(fd);
                if (next < 0)
                        return error_set(err, next, "%s/%.*s: %s", shown_base, (int)(p + len - rel),
                                         rel, why(-next));
                fd = at = next;
                p += len;
                if (*p == '/')
                        p++;
        }
        return fd;
}

/* Creates dirfd/<temporary> exclusively; returns the fd and the name in tmp. */
static int create_temp(int dirfd, const char *name, mode_t mode, char *tmp, size_t size)
{
        int fd = -EEXIST;

        for (int tries = 0; tries < 16 && fd == -EEXIST; tries++) {
                jail_fs_temp_name(name, tmp, size);
                fd = jail_fs_openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
        }
        return fd;
}

int jail_fs_copy(int src_fd, int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid,
                 struct error *err)
{
        char tmp[256];
        struct stat st;
        off_t off = 0;
        int fd;
        int r = 0;

        if (fstat(src_fd, &st) != 0)
                return error_set(err, -errno, "fstat: %s", strerror(errno));
        fd = create_temp(dirfd, name, mode & 0777, tmp, sizeof(tmp));
        if (fd < 0)
                return error_set(err, fd, "creating a temporary for %s: %s", name, why(-fd));
        while (off < st.st_size) {
                ssize_t n = sendfile(fd, src_fd, &off, (size_t)(st.st_size - off));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = error_set(err, n < 0 ? -errno : -EIO, "copying into %s: %s", name,
                                      n < 0 ? strerror(errno) : "the source file shrank");
                        break;
                }
        }
        if (!r && fchmod(fd, mode) != 0) /* exact mode: the umask applied at creation */
                r = error_set(err, -errno, "chmod %s: %s", name, strerror(errno));
        if (!r && (uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) != 0)
                r = error_set(err, -errno, "chown %s: %s", name, strerror(errno));
        close(fd);
        if (!r && renameat(dirfd, tmp, dirfd, name) != 0)
                r = error_set(err, -errno, "renaming the copy to %s: %s", name, strerror(errno));
        if (r)
                unlinkat(dirfd, tmp, 0); /* our own temporary */
        return r;
}

int jail_fs_link_or_copy(int src_fd, int dirfd, const char *name, bool *linked, struct error *err)
{
        struct stat src, dst;
        char tmp[256], self[64];

        *linked = false;
        if (fstat(src_fd, &src) != 0)
                return error_set(err, -errno, "fstat: %s", strerror(errno));
        if (!S_ISREG(src.st_mode))
                return error_set(err, -EINVAL, "%s: not a regular file", name);
        /* rename() between two links of one inode does nothing and would leave the temporary
         * behind: a link that is already there is the result wanted. */
        if (fstatat(dirfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && dst.st_dev == src.st_dev &&
            dst.st_ino == src.st_ino) {
                *linked = true;
                return 0;
        }
        /* The descriptor's file by its /proc link (AT_EMPTY_PATH would need
         * CAP_DAC_READ_SEARCH); the jailer runs before the pivot, with the host's /proc. */
        snprintf(self, sizeof(self), "/proc/self/fd/%d", src_fd);
        for (int tries = 0; tries < 16; tries++) {
                jail_fs_temp_name(name, tmp, sizeof(tmp));
                if (linkat(AT_FDCWD, self, dirfd, tmp, AT_SYMLINK_FOLLOW) == 0) {
                        if (renameat(dirfd, tmp, dirfd, name) != 0) {
                                int e = errno;
                                unlinkat(dirfd, tmp, 0);
                                return error_set(err, -e, "renaming the link to %s: %s", name,
                                                 strerror(e));
                        }
                        *linked = true;
                        return 0;
                }
                if (errno != EEXIST)
                        break;
        }
        /* Another file system (EXDEV), or links refused: an own copy. */
        return jail_fs_copy(src_fd, dirfd, name, src.st_mode & 0777, (uid_t)-1, (gid_t)-1, err);
}

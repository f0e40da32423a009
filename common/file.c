#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *file_kind_name(mode_t mode)
{
        if (S_ISREG(mode))
                return "a regular file";
        if (S_ISDIR(mode))
                return "a directory";
        if (S_ISFIFO(mode))
                return "a FIFO";
        if (S_ISCHR(mode))
                return "a character device";
        if (S_ISBLK(mode))
                return "a block device";
        if (S_ISSOCK(mode))
                return "a socket";
        if (S_ISLNK(mode))
                return "a symbolic link";
        return "of an unknown kind";
}

static bool kind_allowed(mode_t mode, unsigned kinds)
{
        return (S_ISREG(mode) && (kinds & FILE_REGULAR)) ||
               (S_ISBLK(mode) && (kinds & FILE_BLOCK)) || (S_ISFIFO(mode) && (kinds & FILE_FIFO)) ||
               (S_ISCHR(mode) && (kinds & FILE_CHAR));
}

int file_refuse_kind(const char *what, const char *path, mode_t mode, unsigned kinds,
                     struct error *err)
{
        return error_config(err, "%s '%s' is not a regular file%s: it is %s", what, path,
                            (kinds & FILE_BLOCK) ? " or a block device" : "", file_kind_name(mode));
}

static bool writing(int flags)
{
        return (flags & O_ACCMODE) != O_RDONLY;
}

static int open_failed(const char *what, const char *path, int flags, int e, struct error *err)
{
        bool denied = e == EACCES || e == EPERM || e == EROFS;

        return error_config(err, "%s '%s': %s%s", what, path,
                            denied && writing(flags) ? "cannot open for writing: " : "",
                            strerror(e));
}

int file_open(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
              struct error *err)
{
        int os_errno;

        return file_open_os(what, path, flags, mode, kinds, &os_errno, err);
}

int file_open_os(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
                 int *os_errno, struct error *err)
{
        struct stat st;
        int fd;

        *os_errno = 0;

        if (!path || !*path)
                return error_config(err, "%s: the path is empty", what);
        /* Look before opening: opening a FIFO waits for its peer, opening a device may do
         * something. */
        if (stat(path, &st) == 0) {
                if (!kind_allowed(st.st_mode, kinds))
                        return file_refuse_kind(what, path, st.st_mode, kinds, err);
                /* A FIFO opened for writing alone waits (or, non-blocking, fails) until a
                 * reader comes; read-write it needs none. */
                if (S_ISFIFO(st.st_mode) && writing(flags))
                        flags = (flags & ~O_ACCMODE) | O_RDWR;
        }
        /* Non-blocking: a FIFO swapped in since the look cannot make the open wait. */
        fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
        if (fd < 0) {
                int e = errno;

                /* ENXIO: a write-only open of a FIFO without a reader. */
                if (e == ENXIO && stat(path, &st) == 0 && !kind_allowed(st.st_mode, kinds))
                        return file_refuse_kind(what, path, st.st_mode, kinds, err);
                *os_errno = e;
                return open_failed(what, path, flags, e, err);
        }
        if (fstat(fd, &st)) {
                int e = errno;

                close(fd);
                *os_errno = e;
                return open_failed(what, path, flags, e, err);
        }
        if (!kind_allowed(st.st_mode, kinds)) {
                close(fd);
                return file_refuse_kind(what, path, st.st_mode, kinds, err);
        }
        if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
                int fl = fcntl(fd, F_GETFL);

                if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
                        int e = errno;

                        close(fd);
                        return error_set(err, -e, "%s '%s': %s", what, path, strerror(e));
                }
        }
        return fd;
}

/* The directory part of path ("." when it has none). */
static char *dir_of(const char *path)
{
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t)(slash - path));
}

int file_sync_dir_of(const char *path)
{
        char *dir = dir_of(path);
        int fd, r = 0;

        if (!dir)
                return -ENOMEM;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(dir);
        if (fd < 0)
                return -errno;
        if (fsync(fd) && errno != EINVAL) /* EINVAL: a file system without directory sync */
                r = -errno;
        close(fd);
        return r;
}

char *file_resolve(const char *path, int *err)
{
        char link[PATH_MAX];
        struct stat st;
        char *target = strdup(path);

        *err = -ENOMEM;
        for (unsigned hops = 0; target; hops++) {
                char *dir, *next;
                size_t len;
                ssize_t n;

                if (lstat(target, &st) || !S_ISLNK(st.st_mode))
                        return target;
                n = hops < 40 ? readlink(target, link, sizeof(link) - 1) : -1;
                if (n < 0) {
                        *err = hops < 40 ? -errno : -ELOOP;
                        free(target);
                        return NULL;
                }
                link[n] = '\0';
                if (link[0] == '/' || !strchr(target, '/')) {
                        next = strdup(link);
                } else {
                        dir = dir_of(target);
                        len = (dir ? strlen(dir) : 0) + (size_t)n + 2;
                        next = dir ? malloc(len) : NULL;
                        if (next)
                                snprintf(next, len, "%s/%s", dir, link);
                        free(dir);
                }
                free(target);
                target = next;
        }
        return NULL;
}

int file_replace_begin(struct file_replace *fr, const char *what, const char *path,
                       const char *suffix, mode_t mode, struct error *err)
{
        struct stat st;
        char *dir;
        size_t n;
        int r;

        memset(fr, 0, sizeof(*fr));
        fr->fd = -1;
        if (!path || !*path)
                return error_config(err, "%s: the path is empty", what);
        fr->target = file_resolve(path, &r);
        if (!fr->target) {
                r = r == -ENOMEM ? error_set(err, r, "out of memory")
                                 : error_config(err, "%s '%s': %s", what, path, strerror(-r));
                goto fail;
        }
        if (stat(fr->target, &st) == 0) {
                /* A device node or a FIFO is not ours to replace (nor a directory). */
                if (!S_ISREG(st.st_mode)) {
                        r = file_refuse_kind(what, path, st.st_mode, FILE_REGULAR, err);
                        goto fail;
                }
                fr->target_exists = true;
                fr->target_dev = st.st_dev;
                fr->target_ino = st.st_ino;
        } else if (errno != ENOENT) {
                r = error_config(err, "%s '%s': %s", what, path, strerror(errno));
                goto fail;
        }
        fr->base = strrchr(fr->target, '/') ? strrchr(fr->target, '/') + 1 : fr->target;
        if (!*fr->base) {
                r = error_config(err, "%s '%s' names a directory, not a file", what, path);
                goto fail;
        }
        dir = dir_of(fr->target);
        if (!dir) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        r = stat(dir, &st) ? -errno : 0;
        free(dir);
        if (r) {
                r = error_config(err, "%s '%s': %s", what, path, strerror(-r));
                goto fail;
        }
        fr->dir_dev = st.st_dev;
        fr->dir_ino = st.st_ino;
        n = strlen(fr->target) + strlen(suffix) + 6;
        fr->tmp = malloc(n);
        if (!fr->tmp) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        snprintf(fr->tmp, n, "%s.tmp-%s", fr->target, suffix);
        fr->fd = open(fr->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fr->fd < 0) {
                r = error_config(err, "%s '%s': cannot create '%s': %s", what, path, fr->tmp,
                                 strerror(errno));
                free(fr->tmp); /* not ours: nothing to remove */
                fr->tmp = NULL;
                goto fail;
        }
        return 0;
fail:
        file_replace_end(fr);
        return r;
}

int file_replace_sync(struct file_replace *fr, const char *what, struct error *err)
{
        int r = fsync(fr->fd) ? -errno : 0;

        if (close(fr->fd) && !r)
                r = -errno;
        fr->fd = -1;
        if (r)
                return error_set(err, r, "%s '%s': %s", what, fr->target, strerror(-r));
        return 0;
}

int file_replace_commit(struct file_replace *fr, const char *what, struct error *err)
{
        int r;

        if (rename(fr->tmp, fr->target))
                return error_set(err, -errno, "%s '%s': %s", what, fr->target, strerror(errno));
        free(fr->tmp);
        fr->tmp = NULL;
        r = file_sync_dir_of(fr->target);
        if (r)
                return error_set(err, r, "%s '%s': %s", what, fr->target, strerror(-r));
        return 0;
}

void file_replace_end(struct file_replace *fr)
{
        if (fr->fd >= 0)
                close(fr->fd);
        if (fr->tmp)
                unlink(fr->tmp);
        free(fr->tmp);
        free(fr->target);
        memset(fr, 0, sizeof(*fr));
        fr->fd = -1;
}

bool file_replace_same_target(const struct file_replace *a, const struct file_replace *b)
{
        if (a->target_exists && b->target_exists && a->target_dev == b->target_dev &&
            a->target_ino == b->target_ino)
                return true;
        return a->dir_dev == b->dir_dev && a->dir_ino == b->dir_ino &&
               strcmp(a->base, b->base) == 0;
}

int file_read_all(const char *what, const char *path, size_t max, char **text, size_t *len,
                  struct error *err)
{
        struct stat st;
        size_t got = 0;
        ssize_t n;
        char *buf;
        int fd = file_open(what, path, O_RDONLY, 0, FILE_REGULAR, err);

        if (fd < 0)
                return fd;
        if (fstat(fd, &st) || (uint64_t)st.st_size > max) {
                close(fd);
                return error_config(err, "%s '%s' is larger than %zu bytes", what, path, max);
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                close(fd);
                return error_set(err, -ENOMEM, "out of memory");
        }
        while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
                got += (size_t)n;
        close(fd);
        buf[got] = '\0';
        *text = buf;
        *len = got;
        return 0;
}

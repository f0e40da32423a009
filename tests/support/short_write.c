/*
 * An LD_PRELOAD shim for tests (tests/kvm/test_api.py): write() to a file whose path holds
 * $SHORT_WRITE_SUFFIX (a file written under a temporary name has it before the temporary
 * part) stops at $SHORT_WRITE_LIMIT bytes. The write that reaches the limit is
 * cut short; the ones after it return 0 without an error (errno 0), as a file system that
 * takes no more data and says nothing. Every other write goes to the real write().
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t write(int fd, const void *buf, size_t len);

static bool limited(int fd)
{
        const char *suffix = getenv("SHORT_WRITE_SUFFIX");
        char link[64], path[4096];
        size_t sl = suffix ? strlen(suffix) : 0;
        ssize_t n;

        if (!sl)
                return false;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, path, sizeof(path) - 1);
        if (n <= 0)
                return false;
        path[n] = '\0';
        return strstr(path, suffix) != NULL;
}

ssize_t write(int fd, const void *buf, size_t len)
{
        ssize_t (*real_write)(int, const void *, size_t) =
            (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
        const char *limit_s = getenv("SHORT_WRITE_LIMIT");

        if (limit_s && limited(fd)) {
                off_t limit = (off_t)strtoll(limit_s, NULL, 10), pos = lseek(fd, 0, SEEK_CUR);

                if (pos >= limit) {
                        errno = 0;
                        return 0;
                }
                if ((off_t)len > limit - pos)
                        len = (size_t)(limit - pos);
        }
        return real_write(fd, buf, len);
}

#include "fdio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* One write or pwrite (off < 0: write), retried after EINTR: the bytes written or -errno. */
static ssize_t write_once(int fd, const void *buf, size_t len, off_t off)
{
        ssize_t n;

        do
                n = off < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, off);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

static int write_all_at(int fd, const void *buf, size_t len, off_t off)
{
        const uint8_t *p = buf;

        while (len) {
                ssize_t n = write_once(fd, p, len, off);

                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t)n;
                if (off >= 0)
                        off += n;
        }
        return 0;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
        return write_all_at(fd, buf, len, -1);
}

int fd_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
        return off < 0 ? -EINVAL : write_all_at(fd, buf, len, off);
}

ssize_t fd_write_line(int fd, bool *torn, const void *line, size_t len)
{
        ssize_t n;

        if (*torn) {
                n = write_once(fd, "\n", 1, -1);
                if (n <= 0)
                        return n < 0 ? n : -EIO;
                *torn = false;
        }
        n = write_once(fd, line, len, -1);
        if (n == 0 && len)
                return -EIO;
        if (n > 0 && (size_t)n < len)
                *torn = true;
        return n;
}

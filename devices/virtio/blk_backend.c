/* virtio-blk's file backend: opening a drive and running I/O steps synchronously. */
#include "blk_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"

#define SECTOR 512u

int blk_file_open(const char *name, const char *path, bool read_only, struct error *err, int *fdp,
                  uint64_t *size)
{
        struct stat st;
        uint64_t bytes;
        int fd;

        if (!path || !*path)
                return error_config(err, "%s: no backing file given", name);
        fd =
            file_open(name, path, read_only ? O_RDONLY : O_RDWR, 0, FILE_REGULAR | FILE_BLOCK, err);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st)) {
                int e = errno;
                close(fd);
                return error_config(err, "%s: cannot stat '%s': %s", name, path, strerror(e));
        }
        if (S_ISREG(st.st_mode)) {
                bytes = (uint64_t)st.st_size;
        } else if (ioctl(fd, BLKGETSIZE64, &bytes)) {
                int e = errno;
                close(fd);
                return error_config(err, "%s: cannot get the size of '%s': %s", name, path,
                                    strerror(e));
        }
        *fdp = fd;
        *size = bytes / SECTOR * SECTOR;
        return 0;
}

long blk_file_run(void *opaque, int fd, const struct blk_io *io)
{
        ssize_t r;

        (void)opaque;
        do {
                switch (io->op) {
                case BLK_IO_READ:
                        r = preadv(fd, io->iov, io->iovcnt, (off_t)io->off);
                        break;
                case BLK_IO_WRITE:
                        r = pwritev(fd, io->iov, io->iovcnt, (off_t)io->off);
                        break;
                case BLK_IO_FLUSH:
                        r = fdatasync(fd);
                        break;
                case BLK_IO_FALLOCATE:
                        r = fallocate(fd, io->mode, (off_t)io->off, (off_t)io->len);
                        break;
                default:
                        return -EINVAL;
                }
        } while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : (long)r;
}

const struct blk_backend_ops blk_file_backend = {.run = blk_file_run};

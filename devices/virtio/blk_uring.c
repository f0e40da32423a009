/* The virtio-blk io_uring engine: a thin wrapper over liburing (blk_backend.h). */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "blk_backend.h"

struct blk_uring {
        struct io_uring ring;
        int efd;
        unsigned sq_entries;
        struct __kernel_timespec *delays; /* one per SQE slot, for linked delays */
};

int blk_uring_create(unsigned depth, struct blk_uring **out)
{
        struct blk_uring *u = calloc(1, sizeof(*u));
        int r;

        if (!u)
                return -ENOMEM;
        /* Two entries per request: an optional delay linked to the step itself. */
        r = io_uring_queue_init(2 * depth, &u->ring, 0);
        if (r) {
                free(u);
                return r;
        }
        u->sq_entries = u->ring.sq.ring_entries;
        u->delays = calloc(u->sq_entries, sizeof(*u->delays));
        u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!u->delays || u->efd < 0) {
                r = u->delays ? -errno : -ENOMEM;
                goto fail;
        }
        r = io_uring_register_eventfd(&u->ring, u->efd);
        if (r)
                goto fail;
        *out = u;
        return 0;
fail:
        if (u->efd >= 0)
                close(u->efd);
        free(u->delays);
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
}

void blk_uring_destroy(struct blk_uring *u)
{
        if (!u)
                return;
        io_uring_queue_exit(&u->ring);
        close(u->efd);
        free(u->delays);
        free(u);
}

int blk_uring_fd(const struct blk_uring *u)
{
        return u->efd;
}

void blk_uring_clear_event(struct blk_uring *u)
{
        uint64_t v;

        if (read(u->efd, &v, sizeof(v)) < 0) {
                /* EAGAIN: nothing pending; the completions are read from the ring anyway. */
        }
}

void blk_uring_poke(struct blk_uring *u)
{
        uint64_t one = 1;

        if (write(u->efd, &one, sizeof(one)) < 0) {
                /* EAGAIN: the counter is saturated, so it is readable anyway. */
        }
}

static void prep(struct io_uring_sqe *sqe, int fd, const struct blk_io *io)
{
        switch (io->op) {
        case BLK_IO_READ:
                io_uring_prep_readv(sqe, fd, io->iov, (unsigned)io->iovcnt, io->off);
                break;
        case BLK_IO_WRITE:
                io_uring_prep_writev(sqe, fd, io->iov, (unsigned)io->iovcnt, io->off);
                break;
        case BLK_IO_FLUSH:
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                break;
        case BLK_IO_FALLOCATE:
                io_uring_prep_fallocate(sqe, fd, io->mode, (off_t)io->off, (off_t)io->len);
                break;
        }
}

int blk_uring_queue(struct blk_uring *u, int fd, const struct blk_io *io, uint64_t delay_ns,
                    void *tag)
{
        struct io_uring_sqe *sqe;

        if (io_uring_sq_space_left(&u->ring) < (delay_ns ? 2u : 1u))
                return -EBUSY;
        if (delay_ns) {
                sqe = io_uring_get_sqe(&u->ring);
                struct __kernel_timespec *ts = &u->delays[(sqe - u->ring.sq.sqes) % u->sq_entries];
                ts->tv_sec = (long long)(delay_ns / 1000000000ull);
                ts->tv_nsec = (long long)(delay_ns % 1000000000ull);
                /* Expiry counts as success, so the linked step then runs. */
                io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ETIME_SUCCESS);
                sqe->flags |= IOSQE_IO_LINK;
                io_uring_sqe_set_data(sqe, NULL);
        }
        sqe = io_uring_get_sqe(&u->ring);
        prep(sqe, fd, io);
        io_uring_sqe_set_data(sqe, tag);
        return 0;
}

int blk_uring_submit(struct blk_uring *u)
{
        int r;

        do
                r = io_uring_submit(&u->ring);
        while (r == -EINTR);
        return r;
}

unsigned blk_uring_reap(struct blk_uring *u, bool wait, blk_uring_complete_fn fn, void *opaque)
{
        struct io_uring_cqe *cqe;
        unsigned n = 0;

        if (wait) {
                int r;
                do
                        r = io_uring_wait_cqe(&u->ring, &cqe);
                while (r == -EINTR);
                if (r)
                        return 0;
        }
        /* Each entry is consumed before fn runs: fn may queue and submit new steps. */
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                void *tag = io_uring_cqe_get_data(cqe);
                long res = cqe->res;

                io_uring_cqe_seen(&u->ring, cqe);
                if (tag) { /* NULL: a delay or a cancel request */
                        fn(opaque, tag, res);
                        n++;
                }
        }
        return n;
}

void blk_uring_cancel_all(struct blk_uring *u)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

        if (!sqe) {
                blk_uring_submit(u);
                sqe = io_uring_get_sqe(&u->ring);
                if (!sqe)
                        return;
        }
        io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data(sqe, NULL);
        blk_uring_submit(u);
}

/*
 * virtio-blk internals shared by the device (blk.c), its engines and its unit tests; not
 * part of the public API (devices/virtio/blk.h).
 *
 * The device turns each request into a sequence of host I/O steps (struct blk_io): a
 * vectored read or write into pinned guest buffers, a data sync, or an fallocate. The sync
 * engine runs a step through the backend ops on the calling thread; the io_uring engine
 * submits it and hands the completion's result to the same state machine. The backend ops
 * table is the seam for tests: a test wraps the file implementation to inject short
 * transfers, ENOSPC or EIO, or to hold asynchronous steps back for a while.
 */
#ifndef DEVICES_VIRTIO_BLK_BACKEND_H
#define DEVICES_VIRTIO_BLK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blk.h"
#include "common/error.h"

enum blk_io_op { BLK_IO_READ, BLK_IO_WRITE, BLK_IO_FLUSH, BLK_IO_FALLOCATE };

/* One host I/O step. */
struct blk_io {
        enum blk_io_op op;
        const struct iovec *iov; /* READ/WRITE */
        int iovcnt;
        uint64_t off; /* byte offset in the backing file */
        uint64_t len; /* FALLOCATE: range length */
        int mode;     /* FALLOCATE: FALLOC_FL_* */
};

struct blk_backend_ops {
        /* Runs a step synchronously: bytes transferred (READ/WRITE; may be short), 0, or a
         * negative errno. */
        long (*run)(void *opaque, int fd, const struct blk_io *io);
        /* io_uring engine: the result the device uses for a completed step (bytes or
         * -errno as the kernel reported them in res). NULL: res as is. */
        long (*async_result)(void *opaque, const struct blk_io *io, long res);
        /* io_uring engine: nanoseconds to hold a step back before the kernel starts it
         * (a linked timeout; tests use it to keep requests in flight). NULL: none. */
        uint64_t (*async_delay_ns)(void *opaque, const struct blk_io *io);
};

/* The file implementation of run (EINTR retried). */
long blk_file_run(void *opaque, int fd, const struct blk_io *io);
extern const struct blk_backend_ops blk_file_backend;

/* Opens path (read-only or read-write) as a drive: a regular file or a block device.
 * Stores the descriptor and the capacity in bytes (rounded down to 512). Errors are
 * ERROR_CONFIG with a message naming name and path. */
int blk_file_open(const char *name, const char *path, bool read_only, struct error *err, int *fd,
                  uint64_t *size) MUST_CHECK;

/* Replaces the device's backend ops (tests; before the driver starts). NULL restores the
 * file implementation. */
void virtio_blk_set_backend(struct virtio_blk *blk, const struct blk_backend_ops *ops,
                            void *opaque);

/* The io_uring engine (blk_uring.c): a ring whose completions signal an eventfd. */
struct blk_uring;

/* A completion: the tag given to blk_uring_queue and the kernel's result. */
typedef void (*blk_uring_complete_fn)(void *opaque, void *tag, long res);

int blk_uring_create(unsigned depth, struct blk_uring **out) MUST_CHECK;
void blk_uring_destroy(struct blk_uring *u);
/* The eventfd to poll (EPOLLIN); blk_uring_clear_event drains it. */
int blk_uring_fd(const struct blk_uring *u);
void blk_uring_clear_event(struct blk_uring *u);
/* Makes the eventfd readable, so the event loop runs the device's completion handler. */
void blk_uring_poke(struct blk_uring *u);
/* Queues a step for the next submit, optionally behind a delay; tag must not be NULL.
 * -EBUSY when the submission queue is full (submit, then retry). */
int blk_uring_queue(struct blk_uring *u, int fd, const struct blk_io *io, uint64_t delay_ns,
                    void *tag) MUST_CHECK;
/* Submits what is queued; returns the number submitted or a negative errno. */
int blk_uring_submit(struct blk_uring *u);
/* Hands every available completion to fn; returns how many. wait: block for at least one. */
unsigned blk_uring_reap(struct blk_uring *u, bool wait, blk_uring_complete_fn fn, void *opaque);
/* Asks the kernel to cancel everything in flight (the completions still arrive, most with
 * -ECANCELED). */
void blk_uring_cancel_all(struct blk_uring *u);

#endif

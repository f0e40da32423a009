/*
 * virtio-blk internals shared by the device (blk.c) and its request state machine
 * (blk_req.c); not part of the public API.
 *
 * A request slot holds the popped chain and the state of the host I/O step in progress
 * (blk_backend.h). blk_req_begin decides what needs no host I/O (validation, GET_ID,
 * unsupported types) or prepares the first step; blk_req_advance consumes a step's result
 * and prepares the next one (the rest of a short transfer, the next discard range, a
 * WRITE_ZEROES fallback) until the status is final. Both run with vd.lock held.
 */
#ifndef DEVICES_VIRTIO_BLK_REQ_H
#define DEVICES_VIRTIO_BLK_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blk.h"
#include "blk_backend.h"
#include "common/log.h"

#define SECTOR_SHIFT       9
#define SECTOR             (1u << SECTOR_SHIFT)
#define HDR_LEN            16u
#define DWZ_SEG_LEN        16u /* struct virtio_blk_discard_write_zeroes */
#define MAX_DWZ_SEGS       16u
#define MAX_DWZ_SECT       (1u << 22) /* 2 GiB per segment */
#define DISCARD_ALIGN_SECT 8u         /* 4 KiB: the granularity of holes in host filesystems */
#define MAX_IOV            VIRTIO_BLK_QUEUE_SIZE /* a chain never has more segments than that */
#define ZERO_CHUNK         (64u << 10)
#define ZERO_IOVS          16u /* a write-zeros step writes at most 1 MiB */

struct dwz_range {
        uint64_t off, len;
        bool unmap;
};

enum wz_method { WZ_ZERO_RANGE, WZ_PUNCH_HOLE, WZ_WRITE };

struct blk_req {
        struct virtq_chain chain;
        struct blk_io io; /* the step in progress */
        struct iovec iov[MAX_IOV];
        int iov_first, iov_total;
        uint32_t type;
        uint8_t status;
        bool status_ok;               /* the status byte exists and guest memory accepted it */
        bool data_pinned, data_write; /* the pinned data range: writable part (IN) or not */
        bool pin_single;              /* one span at pin_gpa (hostmem), else a chain range */
        uint32_t pin_off, pin_len;
        gpa_t pin_gpa;
        gpa_t status_gpa;   /* the last writable byte of the chain */
        uint32_t written;   /* bytes written into the chain before the status byte */
        uint64_t off;       /* IN/OUT: byte offset in the file */
        uint32_t len, done; /* IN/OUT: data bytes, bytes transferred so far */
        struct dwz_range ranges[MAX_DWZ_SEGS];
        unsigned nr_ranges, range;
        enum wz_method wz;
        uint64_t wz_done;
        struct blk_req *next_free;
};

struct virtio_blk {
        struct virtio_device vd;
        char name[16];
        uint8_t id[VIRTIO_BLK_ID_BYTES];
        bool read_only;
        enum virtio_blk_cache cache;
        int fd;
        uint64_t capacity; /* bytes, a multiple of 512 */
        struct event_loop *loop;
        struct rate_limiter *limiter; /* always present: PATCH may add a limit */
        bool limiter_registered;
        struct blk_uring *uring; /* NULL: sync engine */
        bool uring_registered;
        const struct blk_backend_ops *bops;
        void *bops_opaque;
        struct blk_req *reqs;
        unsigned nr_reqs;
        struct blk_req *free;
        unsigned in_flight; /* io_uring steps submitted or queued */
        bool queued;        /* steps queued and not yet submitted */
        bool discarding;    /* reset: completions release, never touch guest memory */
        bool used;          /* chains returned since the last interrupt decision */
        struct virtio_blk_stats stats;
        struct ratelimit rl;
};

static inline struct virtq *blk_queue(struct virtio_blk *blk)
{
        return &blk->vd.vqs[0];
}

/* Returns -1 when req->io holds the first step to run, or the status to complete with now
 * (req->written counts what was written into the chain, e.g. the GET_ID bytes). */
int blk_req_begin(struct virtio_blk *blk, struct blk_req *req, uint64_t sector);
/* Consumes a step's result (bytes or -errno): true when the request is finished
 * (req->status is final), false when req->io holds the next step. */
bool blk_req_advance(struct virtio_blk *blk, struct blk_req *req, long res);
/* A guest mistake, on the device's rate-limited channel. */
void blk_guest_error(struct virtio_blk *blk, const struct blk_req *req, const char *why);

#endif

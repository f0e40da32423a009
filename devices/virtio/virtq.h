/*
 * Split virtqueues (virtio 1.2, section 2.7), read and written through the device's hostmem
 * accessor only. The guest is hostile: ring indices are validated, chain walks are bounded
 * by the queue size (indirect tables by their length as well), every descriptor address and
 * length is checked against guest RAM with overflow-safe arithmetic, and readable buffers
 * must precede writable ones.
 *
 * virtq_pop distinguishes a bad request (the chain is malformed: the caller completes it with
 * an error and goes on) from a broken ring (the avail index or a head is impossible, or a
 * ring area became inaccessible: the device must stop and ask for a reset).
 */
#ifndef DEVICES_VIRTIO_VIRTQ_H
#define DEVICES_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/snapbuf.h"
#include "memory/hostmem.h"

#define VIRTQ_MAX_SIZE 1024 /* the largest queue any device offers */

#define VIRTQ_DESC_F_NEXT          1
#define VIRTQ_DESC_F_WRITE         2
#define VIRTQ_DESC_F_INDIRECT      4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq {
        /* Configured by the driver through the transport. */
        uint16_t size;
        bool ready;
        gpa_t desc, avail, used;

        /* Device state. */
        struct hostmem *mem;
        bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
        bool indirect;  /* VIRTIO_F_INDIRECT_DESC negotiated */
        bool broken;    /* the ring is unusable until the device is reset */
        uint16_t last_avail;
        uint16_t avail_seen; /* the avail index as last read: pops up to it need no read */
        uint16_t used_idx;
        uint16_t signalled_used; /* used_idx when the driver was last interrupted */
        bool signalled_valid;

        /* Counters. */
        uint64_t bad_chains;
        uint64_t notify_suppressed;
};

struct virtq_seg {
        gpa_t addr;
        uint32_t len;
        bool write;
};

struct virtq_chain {
        uint16_t head;
        unsigned nr_segs;
        uint32_t readable; /* bytes in the device-readable segments (they come first) */
        uint32_t writable; /* bytes in the device-writable segments */
        struct virtq_seg segs[VIRTQ_MAX_SIZE];
};

enum virtq_pop_result {
        VIRTQ_EMPTY = 0,
        VIRTQ_CHAIN = 1,      /* *chain holds a valid request */
        VIRTQ_BAD_CHAIN = -1, /* chain->head is valid, the rest is not: complete it as failed */
        VIRTQ_BROKEN = -2,    /* the ring is unusable: q->broken is set */
};

/* Forgets everything (driver configuration included): the reset state. */
void virtq_reset(struct virtq *q);

/* Checks what QueueReady = 1 requires: size a power of two in 1..max, areas aligned
 * (16/2/4 bytes) and inside accessible guest RAM. Returns NULL or the reason. */
const char *virtq_check_config(const struct virtq *q, uint16_t max, struct hostmem *mem);

/* Starts operation: features negotiated, indices at zero. */
void virtq_start(struct virtq *q, struct hostmem *mem, bool event_idx, bool indirect);

/* Reads the avail index only when the buffers it showed last time are used up. */
enum virtq_pop_result virtq_pop(struct virtq *q, struct virtq_chain *chain);

/* Buffers the driver had published when the avail index was last read that are not popped
 * yet (no access to guest memory): once this is 0, a device about to call virtq_arm can
 * leave the next look at the ring to it instead of popping once more. */
uint16_t virtq_seen_pending(const struct virtq *q);

/* A queue the device may use: ready, started by DRIVER_OK (virtq_start) and not broken.
 * Between QueueReady and DRIVER_OK, or after a reset, a device's own events (a backend
 * completion, a timer) find the queue not live, and every call below treats it as empty. */
bool virtq_live(const struct virtq *q);

/* Puts the last popped chain back (the device could not start it, e.g. rate limited). Only
 * valid right after that pop, before anything else is popped from or pushed to the queue. */
void virtq_unpop(struct virtq *q);

/* Returns a chain to the driver with `len` bytes written into it. -EFAULT marks the ring
 * broken. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/* Asks the driver for a notification when more buffers arrive (EVENT_IDX: avail_event =
 * last_avail). Returns true when buffers arrived meanwhile, so the caller processes again. */
bool virtq_arm(struct virtq *q);

/* Whether the driver wants an interrupt for what was pushed since the last one. */
bool virtq_should_signal(struct virtq *q);

/* Snapshots: the driver's configuration and the device's ring position (indices,
 * interrupt suppression state; not the counters). restore checks what it reads: a size that
 * is not a power of two up to max, a ready queue whose areas are not accessible through mem
 * (virtq_check_config with mem), a queue started when its device is not running (DRIVER_OK)
 * or not ready, or a ready queue of a running device that is not started. Returns false with the
 * reader's error; q is unchanged then. */
void virtq_save(const struct virtq *q, struct snapbuf_writer *w);
bool virtq_restore(struct virtq *q, struct snapbuf_reader *r, uint16_t max, struct hostmem *mem,
                   bool running);

/* Copies from the chain's readable bytes [off, off+len) / into its writable bytes. Returns
 * the bytes copied (less at the chain's end), or a negative errno (-EFAULT not RAM, -EACCES
 * private) with nothing copied: every segment is checked before the first byte moves. */
long virtq_chain_read(struct virtq *q, const struct virtq_chain *c, uint32_t off, void *buf,
                      uint32_t len);
long virtq_chain_write(struct virtq *q, const struct virtq_chain *c, uint32_t off, const void *buf,
                       uint32_t len);

/* Pins [off, off+len) of the readable (write=false) or writable part as iovecs for
 * zero-copy I/O, all or nothing. Returns the number of iovecs (<= max), or -E2BIG (more
 * than max segments) / the hostmem error (-EFAULT, -EACCES); on success the caller calls
 * virtq_chain_unpin with the same range (clipped to the chain) when the I/O is done. */
int virtq_chain_pin(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                    uint32_t len, struct iovec *iov, int max);
void virtq_chain_unpin(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                       uint32_t len);

#endif

/*
 * virtio-balloon: the host sets a target (num_pages in 4 KiB pages); the guest inflates by
 * handing page frame numbers on the inflate queue, which the device releases to the host
 * (hostmem_discard: madvise MADV_DONTNEED), and deflates through the deflate queue.
 * VIRTIO_BALLOON_F_DEFLATE_ON_OOM when configured; the statistics queue
 * (VIRTIO_BALLOON_F_STATS_VQ) when a polling interval is set: the device re-posts the
 * guest's stats buffer every interval and keeps the latest values. Queues: 0 inflate,
 * 1 deflate, 2 stats (when enabled).
 *
 * VIRTIO_BALLOON_F_MUST_TELL_HOST is not offered (as in Firecracker): deflating needs nothing
 * from the host (a released page faults back in zero-filled on the guest's next touch), so
 * the guest may reuse a page before it tells us.
 *
 * Statistics follow Firecracker: the driver's buffer is parsed when it arrives and held;
 * each timer tick completes it so that the driver refills and re-posts it. Statistics are
 * fixed at creation: they cannot be turned on or off later (interval 0 <-> non-zero).
 *
 * Inflation releases memory only through the device's hostmem accessor, so only ranges the
 * host may touch (guest RAM, shared granules on a protected VM) are ever discarded; PFNs it
 * refuses are counted as invalid and skipped.
 *
 * Locking: the set/get functions take the device lock; call them only once the device is
 * attached to its transport (which initialises that lock).
 */
#ifndef DEVICES_VIRTIO_BALLOON_H
#define DEVICES_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "virtio.h"

#define VIRTIO_BALLOON_QUEUE_SIZE 256

/* Feature bits (virtio 1.2, 5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2

/* Statistics tags (5.5.6.3) the device records; higher tags are ignored. */
#define VIRTIO_BALLOON_S_NR 16

#define VIRTIO_BALLOON_PAGE_SIZE 4096u
/* PFNs accepted in one inflate/deflate request (Linux sends at most 256): a longer
 * request is refused whole, so one notification cannot keep the device busy for long. */
#define VIRTIO_BALLOON_MAX_PFNS_PER_REQUEST 65536u

struct virtio_balloon_config {
        const char *name; /* "balloon0" */
        uint32_t amount_mib;
        bool deflate_on_oom;
        uint32_t stats_polling_interval_s; /* 0: no statistics queue */
        struct event_loop *loop;           /* for the statistics timer */
};

/* The guest's latest statistics (virtio spec 5.5.6.3 tags), valid when the bit is set. */
struct virtio_balloon_guest_stats {
        uint32_t valid; /* bit n set: tag n was reported */
        uint64_t values[VIRTIO_BALLOON_S_NR];
};

struct virtio_balloon_stats {
        uint32_t target_pages, actual_pages; /* num_pages and the driver's `actual` */
        /* Requests (chains) completed on the inflate and deflate queues; statistics buffers
         * received and parsed. */
        uint64_t inflate_count, deflate_count, stats_updates_count;
        uint64_t released_bytes; /* handed back to the host by inflation */
        uint64_t bad_requests;   /* malformed chains, lengths not a multiple of 4, ... */
        uint64_t invalid_pfns;   /* inflated PFNs not released: outside RAM or refused */
        struct virtio_balloon_guest_stats guest;
};

struct virtio_balloon;

int virtio_balloon_create(const struct virtio_balloon_config *cfg, struct error *err,
                          struct virtio_balloon **out) MUST_CHECK;
void virtio_balloon_destroy(struct virtio_balloon *b);
struct virtio_device *virtio_balloon_device(struct virtio_balloon *b);
/* New target (PATCH /balloon): updates num_pages (saturating at 2^32 - 1 pages) and signals
 * a configuration change (an interrupt once the driver is running). */
void virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib);
/* New polling interval (PATCH /balloon/statistics), Firecracker's semantics: the same value
 * is a no-op; turning statistics on (created with 0) or off (seconds = 0) is refused with
 * -EINVAL; otherwise the held statistics buffer is completed at once (an immediate update)
 * and the timer restarts with the new period. */
int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint32_t seconds) MUST_CHECK;
void virtio_balloon_get_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out);

#endif

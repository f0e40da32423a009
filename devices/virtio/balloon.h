/*
 * virtio-balloon: the host sets a target (num_pages in 4 KiB pages); the guest inflates by
 * handing page frame numbers on the inflate queue, which the device releases to the host
 * (hostmem_discard: madvise MADV_DONTNEED), and deflates through the deflate queue.
 * VIRTIO_BALLOON_F_DEFLATE_ON_OOM when configured; the statistics queue
 * (VIRTIO_BALLOON_F_STATS_VQ) when a polling interval is set: the device re-posts the
 * guest's stats buffer every interval and keeps the latest values. Queues: 0 inflate,
 * 1 deflate, 2 stats (when enabled).
 */
#ifndef DEVICES_VIRTIO_BALLOON_H
#define DEVICES_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "virtio.h"

#define VIRTIO_BALLOON_QUEUE_SIZE 256

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
        uint64_t values[16];
};

struct virtio_balloon_stats {
        uint32_t target_pages, actual_pages;
        uint64_t inflate_count, deflate_count, stats_updates_count;
        uint64_t released_bytes; /* handed back to the host by inflation */
        uint64_t bad_requests;
        struct virtio_balloon_guest_stats guest;
};

struct virtio_balloon;

int virtio_balloon_create(const struct virtio_balloon_config *cfg, struct error *err,
                          struct virtio_balloon **out) MUST_CHECK;
void virtio_balloon_destroy(struct virtio_balloon *b);
struct virtio_device *virtio_balloon_device(struct virtio_balloon *b);
/* New target (PATCH /balloon): updates num_pages and signals a configuration change. */
void virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib);
/* New polling interval (PATCH /balloon/statistics); 0 is refused when stats were enabled. */
int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint32_t seconds) MUST_CHECK;
void virtio_balloon_get_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out);

#endif

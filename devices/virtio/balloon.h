/*
 * virtio-balloon: the host sets a target (num_pages in 4 KiB pages); the guest inflates by
 * handing page frame numbers on the inflate queue, which the device releases to the host
 * (hostmem_discard: madvise MADV_DONTNEED), and deflates through the deflate queue.
 * VIRTIO_BALLOON_F_DEFLATE_ON_OOM when configured; the statistics queue
 * (VIRTIO_BALLOON_F_STATS_VQ) when a polling interval is set: the device re-posts the
 * guest's stats buffer every interval and keeps the latest values.
 *
 * Free page reporting (VIRTIO_BALLOON_F_PAGE_REPORTING, with VIRTIO_BALLOON_F_PAGE_POISON):
 * the guest reports ranges of free memory on the reporting queue and the device discards
 * them before it acknowledges the request. When the driver negotiated PAGE_POISON it
 * expects reported pages to keep poison_val: they are discarded only when poison_val is 0
 * and a discarded page reads back as zeros (anonymous memory, not a snapshot's memory
 * file); otherwise the request is acknowledged and the pages kept. Over 2 MiB huge pages
 * only whole huge pages can be discarded (MADV_DONTNEED on hugetlb, Linux 5.18 and later):
 * Linux reports blocks of at least 2 MiB and hints 4 MiB ones, aligned, so its ranges are;
 * any other range counts as a failure.
 *
 * Free page hinting (VIRTIO_BALLOON_F_FREE_PAGE_HINT): the host starts a run by writing a
 * new command id (2, 3, ...; never 0 STOP or 1 DONE) to free_page_hint_cmd_id and
 * signalling a configuration change; the driver answers on the free page queue with an
 * output buffer holding that id, then input buffers covering free pages (discarded as they
 * arrive), then an output buffer holding STOP. Hints that follow another id (a stale run,
 * or none) are ignored. After the guest's STOP the device writes DONE (the guest may reuse
 * the hinted pages) by itself when the run was started with acknowledge_on_stop, or when
 * the host stops the run. The spec lets the driver reuse a hinted page before the device
 * has used its buffer (Linux does under memory pressure); a discard that lands after such
 * a reuse loses what the guest wrote since, which is why Firecracker calls hinting a
 * developer preview. Reporting has no such race: the guest keeps reported pages until the
 * request is used.
 *
 * Queues (virtio 1.2, 5.5.2): 0 inflate, 1 deflate, then the statistics, free page and
 * reporting queues in that order, each present only when its feature was negotiated (the
 * numbering Linux uses: a queue whose feature the driver declined takes no index).
 *
 * VIRTIO_BALLOON_F_MUST_TELL_HOST is not offered (as in Firecracker): deflating needs nothing
 * from the host (a released page faults back in zero-filled on the guest's next touch), so
 * the guest may reuse a page before it tells us.
 *
 * Statistics follow Firecracker: the driver's buffer is parsed when it arrives and held;
 * each timer tick completes it so that the driver refills and re-posts it. Statistics are
 * fixed at creation: they cannot be turned on or off later (interval 0 <-> non-zero).
 *
 * Memory is released only through the device's hostmem accessor, so only ranges the host
 * may touch (guest RAM, shared granules on a protected VM) are ever discarded: an inflated
 * PFN it refuses is counted as invalid and skipped; a reported or hinted range is released
 * granule by granule around the private ones, which are counted as failures (and by the
 * accessor as access violations, CC-7).
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
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON    4
#define VIRTIO_BALLOON_F_PAGE_REPORTING 5 /* Linux: VIRTIO_BALLOON_F_REPORTING */

/* Reserved free page hinting command ids (5.5.6.6). */
#define VIRTIO_BALLOON_CMD_ID_STOP 0
#define VIRTIO_BALLOON_CMD_ID_DONE 1

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
        bool free_page_reporting;
        bool free_page_hinting;
        struct event_loop *loop; /* for the statistics timer */
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
        /* Free page reporting (Firecracker's metric names): ranges reported, bytes
         * discarded, ranges (or private granules of them) not discarded, and ranges
         * acknowledged without a discard because the guest's poison value must survive. */
        uint64_t report_count, report_freed, report_fails, report_kept;
        /* Free page hinting: ranges hinted under the current run, bytes discarded, failures
         * as above, and ranges ignored (another run's command id, or no run). */
        uint64_t hint_count, hint_freed, hint_fails, hint_ignored;
        struct virtio_balloon_guest_stats guest;
};

/* GET /balloon/hinting/status: the host's command id (free_page_hint_cmd_id) and the last
 * one the guest sent (absent until it sent one). */
struct virtio_balloon_hinting {
        uint32_t host_cmd;
        bool has_guest_cmd;
        uint32_t guest_cmd;
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

/* Free page hinting (Firecracker's semantics). start: a new run (the next command id),
 * DONE written by the device itself once the guest sends STOP when acknowledge_on_stop;
 * stop: DONE now (the guest may reuse the pages it hinted). Both signal a configuration
 * change. -EOPNOTSUPP: hinting was not configured; -ENODEV: the driver is not running
 * (DRIVER_OK not set); -EPROTO: the driver declined free page hinting. */
int virtio_balloon_hinting_start(struct virtio_balloon *b, bool acknowledge_on_stop) MUST_CHECK;
int virtio_balloon_hinting_stop(struct virtio_balloon *b) MUST_CHECK;
/* -EOPNOTSUPP when hinting was not configured. */
int virtio_balloon_hinting_status(struct virtio_balloon *b,
                                  struct virtio_balloon_hinting *out) MUST_CHECK;

#endif

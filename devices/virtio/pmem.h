/*
 * virtio-pmem (virtio 1.3, section 5.19): a host file mapped into the guest's physical
 * address space, which the guest reads and writes with ordinary loads and stores (a
 * /dev/pmemN disk, DAX where its filesystem allows), plus one request queue whose only
 * request, FLUSH, makes the guest's writes durable (fsync of the file).
 *
 * The model owns the file and its host mapping: MAP_SHARED, so the guest's pages are the
 * host's page cache of the file (N VMs mapping one read-only image hold it once); a
 * read-only device opens the file O_RDONLY and maps it PROT_READ. The window the guest sees
 * is the file's size rounded up to VIRTIO_PMEM_ALIGN (the Linux driver's requirement); the
 * tail past the file's end is anonymous private memory that reads as zeros and never reaches
 * the file. Where the window sits in guest-physical space (the board decides it) is set with
 * virtio_pmem_set_start before the driver can read the configuration; mapping the window
 * into the guest (a KVM memory slot, read-only for a read-only device) is the VMM's.
 *
 * Requests are validated as the guest is hostile: a 4-byte device-readable request type,
 * then a 4-byte device-writable status; anything else completes with nothing written and is
 * counted. A flush of a read-only device succeeds without touching the file (nothing can be
 * dirty). A rate limiter charges one operation per flush (the bandwidth bucket is not used:
 * what a flush costs is the dirty data, which the device cannot see).
 */
#ifndef DEVICES_VIRTIO_PMEM_H
#define DEVICES_VIRTIO_PMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "devices/rate_limiter.h"
#include "virtio.h"

#define VIRTIO_PMEM_QUEUE_SIZE 256
#define VIRTIO_PMEM_ALIGN      (2ull << 20) /* window start and size */
#define VIRTIO_PMEM_REQ_FLUSH  0
#define VIRTIO_PMEM_RESP_OK    0
#define VIRTIO_PMEM_RESP_EIO   1 /* any non-zero status is an error to the driver */

struct virtio_pmem_config {
        const char *name; /* "pmem0": logs and metrics */
        const char *path;
        bool read_only;
        const struct rate_limiter_config *limit; /* NULL: unlimited */
        struct event_loop *loop;                 /* for the rate limiter's timer */
};

struct virtio_pmem_stats {
        uint64_t requests;     /* chains completed */
        uint64_t flushes;      /* FLUSH requests answered with success */
        uint64_t flush_errors; /* fsync failures (answered with an error status) */
        uint64_t bad_requests; /* malformed chains, unknown types, guest memory refusals */
        uint64_t rate_limited; /* times processing stopped for the limiter */
};

struct virtio_pmem;

/* Opens and maps cfg->path. Refuses an empty file ("Error backing file size is 0", as
 * Firecracker words it) and a file whose window would not fit a 64-bit address space. */
int virtio_pmem_create(const struct virtio_pmem_config *cfg, struct error *err,
                       struct virtio_pmem **out) MUST_CHECK;
void virtio_pmem_destroy(struct virtio_pmem *p);
struct virtio_device *virtio_pmem_device(struct virtio_pmem *p);

/* The window: its size (the file's, rounded up to VIRTIO_PMEM_ALIGN) and where the host
 * maps it. */
uint64_t virtio_pmem_size(const struct virtio_pmem *p);
void *virtio_pmem_host(const struct virtio_pmem *p);
bool virtio_pmem_read_only(const struct virtio_pmem *p);
/* Where the guest finds the window (the configuration's `start`). */
void virtio_pmem_set_start(struct virtio_pmem *p, uint64_t gpa);

void virtio_pmem_get_stats(struct virtio_pmem *p, struct virtio_pmem_stats *out);
/* PATCH /pmem/{id}: the limiter as it must now be (NULL: unlimited). */
void virtio_pmem_set_rate_limiter(struct virtio_pmem *p, const struct rate_limiter_config *limit);

#endif

/*
 * virtio-mem (virtio 1.2, section 5.15): memory the guest plugs and unplugs in blocks, within
 * a region past RAM, to reach the size the host requests.
 *
 * The model owns the region's host memory: one anonymous mapping of region_size bytes
 * (MAP_NORESERVE: nothing is committed until the guest touches a plugged block), which the
 * VMM maps into the guest where the board placed it. A block the guest unplugs is given back
 * to the host at once (MADV_DONTNEED: it reads as zeros if plugged again). The host sets the
 * requested size (virtio_mem_set_requested, PATCH /hotplug/memory) and the device tells the
 * driver with a configuration change; the driver plugs or unplugs blocks with requests on
 * the one queue:
 *
 *   PLUG, UNPLUG   a block-aligned range inside the region: ACK; NACK when it would take
 *                  plugged_size past requested_size (plug) or below it (unplug); ERROR when
 *                  the range is invalid or not all unplugged (plug) / plugged (unplug);
 *   UNPLUG_ALL     ACK, every block unplugged (the driver's reset path);
 *   STATE          PLUGGED, UNPLUGGED or MIXED for a valid range, else ERROR.
 *
 * Requests are validated as the guest is hostile: a 24-byte device-readable request, then a
 * device-writable response of at least 10 bytes; anything else completes with nothing
 * written and is counted. No features are offered: unplugged memory stays mapped (the guest
 * may read it: zeros) and there is no NUMA node.
 */
#ifndef DEVICES_VIRTIO_MEM_H
#define DEVICES_VIRTIO_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "virtio.h"

#define VIRTIO_MEM_QUEUE_SIZE 128

#define VIRTIO_MEM_REQ_PLUG        0
#define VIRTIO_MEM_REQ_UNPLUG      1
#define VIRTIO_MEM_REQ_UNPLUG_ALL  2
#define VIRTIO_MEM_REQ_STATE       3
#define VIRTIO_MEM_RESP_ACK        0
#define VIRTIO_MEM_RESP_NACK       1
#define VIRTIO_MEM_RESP_BUSY       2
#define VIRTIO_MEM_RESP_ERROR      3
#define VIRTIO_MEM_STATE_PLUGGED   0
#define VIRTIO_MEM_STATE_UNPLUGGED 1
#define VIRTIO_MEM_STATE_MIXED     2

#define VIRTIO_MEM_REQ_SIZE  24
#define VIRTIO_MEM_RESP_SIZE 10

struct virtio_mem_config {
        const char *name;
        uint64_t region_size; /* a multiple of block_size */
        uint64_t block_size;  /* a power of two */
};

struct virtio_mem_stats {
        uint64_t requests;
        uint64_t plugs, unplugs, unplug_alls, states; /* requests answered ACK */
        uint64_t nacks, errors;                       /* requests answered NACK, ERROR */
        uint64_t bad_requests;                        /* malformed chains: nothing written */
        uint64_t plugged_size, requested_size;        /* bytes, now */
};

struct virtio_mem;

int virtio_mem_create(const struct virtio_mem_config *cfg, struct error *err,
                      struct virtio_mem **out) MUST_CHECK;
void virtio_mem_destroy(struct virtio_mem *m);
struct virtio_device *virtio_mem_device(struct virtio_mem *m);

/* The region's host memory (region_size bytes). */
void *virtio_mem_host(const struct virtio_mem *m);
/* Where the guest finds the region (the configuration's `addr`). */
void virtio_mem_set_addr(struct virtio_mem *m, uint64_t gpa);
/* The size the guest should plug (a multiple of block_size, at most region_size): a
 * configuration change for the driver. */
void virtio_mem_set_requested(struct virtio_mem *m, uint64_t bytes);
void virtio_mem_get_stats(struct virtio_mem *m, struct virtio_mem_stats *out);

/* The region as a snapshot writes and loads it: its host memory, its blocks and which are
 * plugged (one bit per block). Valid while the device is quiet (the VM paused, or not yet
 * running) and until the next restore of the device's state. */
struct virtio_mem_layout {
        uint8_t *host;
        uint64_t block_size, nr_blocks;
        const uint64_t *plugged;
};
void virtio_mem_layout(const struct virtio_mem *m, struct virtio_mem_layout *out);

#endif

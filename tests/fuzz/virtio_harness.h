/*
 * A hostile virtio driver for the device fuzz targets: a fresh guest memory (4 MiB, split
 * around a hole like the VMM's) and virtio-mmio transport per input, then a sequence of
 * operations decoded from the input -- register writes and reads, well-formed and
 * malformed descriptor chains (direct and indirect), raw memory and ring-index writes,
 * notifications, event-loop turns, resets, and on a protected VM granules turning private
 * and shared. Each device target adds its own operations (host-side peers, backend faults,
 * runtime updates).
 *
 * Invariants checked for every device, besides the sanitizers: nothing the device writes
 * lands in a private granule, a conversion to private never waits for the device for long
 * (pins are released), and teardown releases everything (libFuzzer's leak check).
 *
 * Input layout: a header byte of modes (bit 0 standard bring-up, bit 1 protected VM with
 * ACCESS_PLATFORM, bit 2 no EVENT_IDX, bit 3 no INDIRECT_DESC), the driver's feature mask
 * (u64), one queue-size exponent per queue, the device's own creation bytes, then
 * operations.
 */
#ifndef TESTS_FUZZ_VIRTIO_HARNESS_H
#define TESTS_FUZZ_VIRTIO_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/event_loop.h"
#include "devices/virtio/mmio.h"
#include "fuzz_common.h"
#include "memory/ownership.h"
#include "vdriver.h"

/* Guest memory: RAM [0, 3 MiB) and [4 GiB, 4 GiB + 1 MiB). Rings live in the first MiB,
 * buffers above it. */
#define VH_LOW_END    MiB(3)
#define VH_HIGH_START GiB(4)
#define VH_HIGH_SIZE  MiB(1)
#define VH_MEM_SIZE   (VH_LOW_END + VH_HIGH_SIZE)
#define VH_RING_START KiB(4)
#define VH_RING_END   MiB(1)
#define VH_BUF_START  MiB(1)
#define VH_BUF_END    VH_LOW_END

struct vh;

struct vh_device {
        const char *name;
        unsigned nr_queues;
        /* Builds the device for this input (reading its own bytes); NULL skips the input. */
        struct virtio_device *(*create)(struct vh *h, struct fz *f);
        /* After the transport is gone (the transport's destruction reset the device). */
        void (*destroy)(struct vh *h);
        /* The device's own operation (a host peer, a fault, a runtime update). */
        void (*op)(struct vh *h, struct fz *f);
        /* Transport options (ACCESS_PLATFORM is handled by the harness). */
        uint64_t extra_features;
};

struct vh {
        const struct vh_device *dev;
        struct guest_mem *mem;
        struct hostmem *hm;
        struct ownership *own; /* a protected VM */
        struct event_loop *loop;
        struct virtio_mmio *t;
        struct virtio_device *vd;
        struct vdriver d;
        bool ready[VIRTIO_MAX_QUEUES]; /* queue set up by the harness's driver */
        gpa_t buf_next;
        void *priv; /* the device target's state */
};

/* Runs one input against the device. */
int vh_run(const struct vh_device *dev, const uint8_t *data, size_t size);

/* The event loop shared by every input (created on first use): devices that outlive an
 * input (virtio-net keeps its TAP) register with it. */
struct event_loop *vh_event_loop(void);

/* Helpers for device operations. */
gpa_t vh_alloc(struct vh *h, uint32_t len);
void vh_guest_write(struct vh *h, gpa_t a, const void *p, size_t len);
/* Turns of the device's event loop until nothing is ready (bounded). */
void vh_loop(struct vh *h);

#endif

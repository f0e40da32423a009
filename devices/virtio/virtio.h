/*
 * virtio: constants from the specification and the interface between a device model and
 * its transport. A device model (blk, net, ...) fills a struct virtio_device with its id,
 * queues, offered features and an ops table, and never learns which transport carries it
 * (kvmtool's split); the transport (virtio-mmio) owns registers, queue setup, feature
 * negotiation and interrupts, and calls the ops.
 *
 * Locking: one mutex per device (vd->lock) serialises the transport's register accesses
 * (vCPU threads), queue notifications and backend events (the VMM thread). Every ops
 * callback runs with it held; a device's own backend callbacks take it themselves. The
 * device model owns the lock's lifetime (virtio_device_init / virtio_device_fini), so it
 * exists before any backend descriptor is registered and after the transport is gone.
 */
#ifndef DEVICES_VIRTIO_VIRTIO_H
#define DEVICES_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "memory/hostmem.h"
#include "virtq.h"

/* Feature bits (virtio 1.2, section 6; docs/confidential.md, "virtio facts"). */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED     34
#define VIRTIO_F_ORDER_PLATFORM  36
#define VIRTIO_F_RING_RESET      40
#define VIRTIO_BIT(b)            (1ull << (b))

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Device ids. */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK   19
#define VIRTIO_ID_MEM     24
#define VIRTIO_ID_PMEM    27

#define VIRTIO_MAX_QUEUES 8

struct virtio_device;

struct virtio_device_ops {
        /* Reads/writes the device configuration space (offset relative to its start). Reads
         * outside the space return zeros; writes outside it are ignored. */
        void (*config_read)(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len);
        void (*config_write)(struct virtio_device *vd, uint32_t off, const uint8_t *data,
                             uint32_t len);
        /* The driver set FEATURES_OK with vd->acked_features: may refuse a combination
         * (returning false keeps FEATURES_OK clear). NULL accepts any subset. */
        bool (*features_ok)(struct virtio_device *vd);
        /* DRIVER_OK: start using the queues and backends. A negative errno puts the device
         * in DEVICE_NEEDS_RESET. */
        int (*activate)(struct virtio_device *vd);
        /* The driver reset the device (or the VM is going away): stop backends, forget
         * in-flight requests, release pins. The transport resets the queues afterwards. */
        void (*reset)(struct virtio_device *vd);
        /* The driver notified queue q (ready and DRIVER_OK are guaranteed). */
        void (*notify)(struct virtio_device *vd, unsigned q);
        /* Snapshots (both optional: NULL saves nothing beyond the transport's queues). save
         * runs while the vCPUs are paused, on the thread that runs the device's backends: it
         * first completes or drops the work it has in flight (so that the rings describe
         * everything), then writes what the device needs besides its queues. restore reads
         * exactly that back, after the transport's registers and queues, before the device
         * runs again (activate, then a notification of every ready queue); -EINVAL with
         * the reader's error refuses the snapshot. Both run with vd->lock held. */
        void (*save)(struct virtio_device *vd, struct snapbuf_writer *w);
        int (*restore)(struct virtio_device *vd, struct snapbuf_reader *r);
};

struct virtio_transport_ops {
        void (*signal_used)(void *transport, unsigned q);
        void (*signal_config)(void *transport);
        void (*needs_reset)(void *transport);
};

struct virtio_device {
        /* Filled by the device model. */
        const char *name; /* e.g. "block0": logs and metrics */
        uint32_t device_id;
        unsigned nr_queues;
        uint16_t queue_max; /* largest queue size the device accepts (power of 2) */
        uint64_t features;  /* device-specific bits it offers */
        uint32_t config_len;
        const struct virtio_device_ops *ops;
        void *priv; /* the device model */

        pthread_mutex_t lock; /* virtio_device_init */

        /* Filled by the transport. */
        struct hostmem *mem;
        struct virtq vqs[VIRTIO_MAX_QUEUES];
        uint64_t acked_features; /* what the driver accepted, valid from FEATURES_OK */
        const struct virtio_transport_ops *tops;
        void *transport;
};

/* Called by the device model once its fields are set, before anything can take the lock;
 * virtio_device_fini when the model is freed (after its transport). */
void virtio_device_init(struct virtio_device *vd);
void virtio_device_fini(struct virtio_device *vd);

static inline bool virtio_has_feature(const struct virtio_device *vd, unsigned bit)
{
        return (vd->acked_features & VIRTIO_BIT(bit)) != 0;
}

/* Marks used buffers on queue q for the driver (honours EVENT_IDX / NO_INTERRUPT). Called
 * with vd->lock held. */
void virtio_signal_used(struct virtio_device *vd, unsigned q);
/* The configuration space changed: bumps ConfigGeneration and interrupts. */
void virtio_signal_config(struct virtio_device *vd);
/* An unrecoverable guest error: DEVICE_NEEDS_RESET; the device stops using its queues. */
void virtio_needs_reset(struct virtio_device *vd);

/* Helper for configuration reads: copies the part of [off, off+len) inside cfg. */
void virtio_config_copy(const void *cfg, uint32_t cfg_len, uint32_t off, uint8_t *data,
                        uint32_t len);

#endif

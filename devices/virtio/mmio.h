/*
 * The virtio-mmio transport, version 2 only (legacy registers are never exposed): the
 * register map of virtio 1.2 section 4.2.2, the device status state machine, feature
 * negotiation, queue setup rules and interrupt status.
 *
 * The window is bus-relative (offset 0 .. 0xfff). Queue notifications normally arrive
 * through an ioeventfd the VMM registers for QueueNotify (virtio_mmio_notify); a plain MMIO
 * write to QueueNotify works too. Interrupts are edges on the irq line (irqfd).
 *
 * Every guest mistake (a register written in the wrong state, an impossible queue, features
 * the device did not offer) is refused, counted and logged with a rate limit; none is fatal.
 */
#ifndef DEVICES_VIRTIO_MMIO_H
#define DEVICES_VIRTIO_MMIO_H

#include <stdint.h>

#include "devices/bus.h"
#include "devices/irq.h"
#include "virtio.h"

#define VIRTIO_MMIO_SIZE      0x1000
#define VIRTIO_MMIO_MAGIC     0x74726976
#define VIRTIO_MMIO_VERSION   2
#define VIRTIO_MMIO_VENDOR_ID 0x4d4d5643 /* "CVMM" */

/* Register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION_REG         0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID_REG       0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_QUEUE_RESET         0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

struct virtio_mmio_config {
        struct virtio_device *vdev; /* filled by the device model */
        struct hostmem *mem;        /* the device's untrusted-host accessor */
        struct irq_line irq;
        /* Transport-level features offered on top of the device's (VERSION_1 is always
         * offered; EVENT_IDX and INDIRECT_DESC unless disabled here). */
        uint64_t extra_features;
        bool no_event_idx;
        bool no_indirect;
        /* Features the driver must accept or FEATURES_OK is refused (VERSION_1 always). */
        uint64_t required_features;
};

struct virtio_mmio_stats {
        uint64_t register_errors; /* accesses refused: bad offset/size, wrong state */
        uint64_t features_refused;
        uint64_t queue_ready_refused;
        uint64_t needs_reset;
        uint64_t interrupts;
        uint64_t notifies;
};

struct virtio_mmio;

int virtio_mmio_create(const struct virtio_mmio_config *cfg, struct virtio_mmio **out) MUST_CHECK;
/* Resets the device (stopping its backends) and frees the transport. */
void virtio_mmio_destroy(struct virtio_mmio *t);
const struct bus_ops *virtio_mmio_bus_ops(void);

/* A QueueNotify for queue q (from the ioeventfd). */
void virtio_mmio_notify(struct virtio_mmio *t, unsigned q);

/*
 * Snapshots. save: the device's identity (id, queues, offered features), the transport's
 * registers (status, feature selectors and words, queue and SHM selectors, interrupt
 * status, configuration generation), every queue (virtq_save), then the device model's own
 * section (ops->save, after it has finished its in-flight work).
 *
 * restore, on a freshly created transport of a device created from the same
 * configuration: checks that the identity matches (a device configured differently is
 * refused), that the registers are consistent (acknowledged features offered and
 * containing the required ones, status bits in a legal order, queues valid for this guest
 * memory), then the model reads its section. A running device (DRIVER_OK, no
 * DEVICE_NEEDS_RESET) is activated again, each ready queue is processed once (notifications
 * in flight at snapshot time are not lost) and a pending interrupt status is signalled
 * again. On an error (-EINVAL, with the reader's message) the transport is left reset.
 */
void virtio_mmio_save(struct virtio_mmio *t, struct snapbuf_writer *w);
int virtio_mmio_restore(struct virtio_mmio *t, struct snapbuf_reader *r) MUST_CHECK;

uint8_t virtio_mmio_status(struct virtio_mmio *t);
void virtio_mmio_get_stats(struct virtio_mmio *t, struct virtio_mmio_stats *out);
struct virtio_device *virtio_mmio_device(struct virtio_mmio *t);

#endif

/*
 * A virtio driver for tests and benchmarks, in-process and without KVM: it allocates split
 * rings and buffers in a guest_mem, performs the virtio-mmio initialisation through the
 * transport's register ops (as a guest's MMIO accesses would), builds descriptor chains,
 * publishes them, notifies, and collects used elements. Hostile tests bypass its helpers
 * and write rings and registers directly.
 */
#ifndef TESTS_SUPPORT_VDRIVER_H
#define TESTS_SUPPORT_VDRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/mmio.h"
#include "memory/guest_mem.h"

struct vdrv_queue {
        uint16_t size;
        gpa_t desc, avail, used;
        uint16_t avail_idx; /* next index the driver publishes */
        uint16_t used_seen; /* next used index the driver consumes */
        uint16_t next_desc; /* descriptors are handed out round robin */
};

struct vdriver {
        struct guest_mem *mem;
        struct virtio_mmio *t;
        gpa_t heap, heap_end; /* bump allocator for rings and buffers */
        struct vdrv_queue q[VIRTIO_MAX_QUEUES];
        unsigned irqs; /* interrupts raised through vdrv_irq_line() */
};

struct vdrv_buf {
        gpa_t addr;
        uint32_t len;
        bool write; /* device-writable */
};

/* heap: [start, end) of guest memory the driver may use for rings and buffers. */
void vdrv_init(struct vdriver *d, struct guest_mem *mem, gpa_t heap_start, gpa_t heap_end);
/* An irq_line that counts interrupts into d->irqs (give it to the transport). */
struct irq_line vdrv_irq_line(struct vdriver *d);
void vdrv_attach(struct vdriver *d, struct virtio_mmio *t);

uint32_t vdrv_read32(struct vdriver *d, uint32_t off);
void vdrv_write32(struct vdriver *d, uint32_t off, uint32_t v);
void vdrv_read_config(struct vdriver *d, uint32_t off, void *buf, uint32_t len);
uint64_t vdrv_device_features(struct vdriver *d);

/* ACKNOWLEDGE, DRIVER, DriverFeatures = features, FEATURES_OK; returns the status read back
 * (FEATURES_OK clear when the device refused). */
uint8_t vdrv_negotiate(struct vdriver *d, uint64_t features);
/* Allocates rings of `size` entries for queue q, programs them and sets QueueReady; returns
 * QueueReady as read back. */
bool vdrv_setup_queue(struct vdriver *d, unsigned q, uint16_t size);
/* Sets DRIVER_OK; returns the status read back. */
uint8_t vdrv_driver_ok(struct vdriver *d);
/* negotiate(device features & wanted) + setup every queue + DRIVER_OK; asserts success. */
void vdrv_bring_up(struct vdriver *d, uint64_t wanted_features, unsigned nr_queues, uint16_t size);

gpa_t vdrv_alloc(struct vdriver *d, uint64_t size, uint64_t align);

/* Writes a chain of n buffers, publishes it in the avail ring; returns its head. */
uint16_t vdrv_add(struct vdriver *d, unsigned q, const struct vdrv_buf *bufs, unsigned n);
/* Publishes `count` more avail entries at once (after vdrv_add_nopublish). */
uint16_t vdrv_add_nopublish(struct vdriver *d, unsigned q, const struct vdrv_buf *bufs, unsigned n);
void vdrv_publish(struct vdriver *d, unsigned q);
/* Notifies queue q the way the ioeventfd would. */
void vdrv_kick(struct vdriver *d, unsigned q);
/* Takes the next used element; false when there is none. */
bool vdrv_get_used(struct vdriver *d, unsigned q, uint16_t *id, uint32_t *len);

void vdrv_mem_write(struct vdriver *d, gpa_t a, const void *p, size_t n);
void vdrv_mem_read(struct vdriver *d, gpa_t a, void *p, size_t n);

#endif

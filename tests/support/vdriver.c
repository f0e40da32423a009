#include "vdriver.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static void check(int r)
{
        /* The driver's own memory is always valid: a failure is a bug in the test. */
        if (r)
                abort();
}

void vdrv_mem_write(struct vdriver *d, gpa_t a, const void *p, size_t n)
{
        check(guest_mem_write(d->mem, a, p, n));
}

void vdrv_mem_read(struct vdriver *d, gpa_t a, void *p, size_t n)
{
        check(guest_mem_read(d->mem, a, p, n));
}

static void w16(struct vdriver *d, gpa_t a, uint16_t v)
{
        uint8_t b[2];
        put_le16(b, v);
        vdrv_mem_write(d, a, b, 2);
}

/* The ring indices the device reads and writes while the driver runs on another thread,
 * as a driver does: an atomic store with release, an atomic load with acquire (a fence
 * around a plain copy is the same on x86, but a data race to ThreadSanitizer). Little
 * endian, as the host. */
static uint16_t *idx_ptr(struct vdriver *d, gpa_t a)
{
        uint16_t *p = guest_mem_translate(d->mem, a, 2);

        if (!p || (a & 1))
                abort();
        return p;
}

static void store_idx(struct vdriver *d, gpa_t a, uint16_t v)
{
        __atomic_store_n(idx_ptr(d, a), v, __ATOMIC_RELEASE);
        guest_mem_mark_dirty(d->mem, a, 2); /* as guest_mem_write */
}

static uint16_t load_idx(struct vdriver *d, gpa_t a)
{
        return __atomic_load_n(idx_ptr(d, a), __ATOMIC_ACQUIRE);
}

void vdrv_init(struct vdriver *d, struct guest_mem *mem, gpa_t heap_start, gpa_t heap_end)
{
        memset(d, 0, sizeof(*d));
        d->mem = mem;
        d->heap = heap_start;
        d->heap_end = heap_end;
}

static void count_irq(void *opaque, bool level)
{
        struct vdriver *d = opaque;
        if (level)
                d->irqs++;
}

struct irq_line vdrv_irq_line(struct vdriver *d)
{
        return (struct irq_line){.set = count_irq, .opaque = d};
}

void vdrv_attach(struct vdriver *d, struct virtio_mmio *t)
{
        d->t = t;
}

uint32_t vdrv_read32(struct vdriver *d, uint32_t off)
{
        uint8_t b[4];
        virtio_mmio_bus_ops()->read(d->t, off, b, 4);
        return get_le32(b);
}

void vdrv_write32(struct vdriver *d, uint32_t off, uint32_t v)
{
        uint8_t b[4];
        put_le32(b, v);
        virtio_mmio_bus_ops()->write(d->t, off, b, 4);
}

void vdrv_read_config(struct vdriver *d, uint32_t off, void *buf, uint32_t len)
{
        virtio_mmio_bus_ops()->read(d->t, VIRTIO_MMIO_CONFIG + off, buf, len);
}

uint64_t vdrv_device_features(struct vdriver *d)
{
        uint64_t f;

        vdrv_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        f = vdrv_read32(d, VIRTIO_MMIO_DEVICE_FEATURES);
        vdrv_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        f |= (uint64_t)vdrv_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
        return f;
}

uint8_t vdrv_negotiate(struct vdriver *d, uint64_t features)
{
        vdrv_write32(d, VIRTIO_MMIO_STATUS, 0);
        vdrv_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
        vdrv_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        vdrv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        vdrv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
        vdrv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        vdrv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
        vdrv_write32(d, VIRTIO_MMIO_STATUS,
                     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
        return (uint8_t)vdrv_read32(d, VIRTIO_MMIO_STATUS);
}

gpa_t vdrv_alloc(struct vdriver *d, uint64_t size, uint64_t align)
{
        gpa_t a;

        check(!align_up_checked(d->heap, align, &a));
        if (a + size > d->heap_end)
                abort();
        d->heap = a + size;
        return a;
}

static void set64(struct vdriver *d, uint32_t lo, gpa_t v)
{
        vdrv_write32(d, lo, (uint32_t)v);
        vdrv_write32(d, lo + 4, (uint32_t)(v >> 32));
}

bool vdrv_setup_queue(struct vdriver *d, unsigned qi, uint16_t size)
{
        struct vdrv_queue *q = &d->q[qi];

        memset(q, 0, sizeof(*q));
        q->size = size;
        q->desc = vdrv_alloc(d, 16ull * size, 16);
        q->avail = vdrv_alloc(d, 6 + 2ull * size, 2);
        q->used = vdrv_alloc(d, 6 + 8ull * size, 4);
        /* Rings start empty even when the heap is reused. */
        check(guest_mem_fill(d->mem, q->desc, 0, 16ull * size));
        check(guest_mem_fill(d->mem, q->avail, 0, 6 + 2ull * size));
        check(guest_mem_fill(d->mem, q->used, 0, 6 + 8ull * size));
        vdrv_write32(d, VIRTIO_MMIO_QUEUE_SEL, qi);
        vdrv_write32(d, VIRTIO_MMIO_QUEUE_NUM, size);
        set64(d, VIRTIO_MMIO_QUEUE_DESC_LOW, q->desc);
        set64(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, q->avail);
        set64(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, q->used);
        vdrv_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
        return vdrv_read32(d, VIRTIO_MMIO_QUEUE_READY) == 1;
}

uint8_t vdrv_driver_ok(struct vdriver *d)
{
        uint8_t s = (uint8_t)vdrv_read32(d, VIRTIO_MMIO_STATUS);

        vdrv_write32(d, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_DRIVER_OK);
        return (uint8_t)vdrv_read32(d, VIRTIO_MMIO_STATUS);
}

void vdrv_bring_up(struct vdriver *d, uint64_t wanted, unsigned nr_queues, uint16_t size)
{
        uint64_t f = vdrv_device_features(d) & wanted;

        if (!(vdrv_negotiate(d, f) & VIRTIO_STATUS_FEATURES_OK))
                abort();
        for (unsigned q = 0; q < nr_queues; q++)
                if (!vdrv_setup_queue(d, q, size))
                        abort();
        if (!(vdrv_driver_ok(d) & VIRTIO_STATUS_DRIVER_OK))
                abort();
}

uint16_t vdrv_add_nopublish(struct vdriver *d, unsigned qi, const struct vdrv_buf *bufs, unsigned n)
{
        struct vdrv_queue *q = &d->q[qi];
        uint16_t head = q->next_desc;

        for (unsigned i = 0; i < n; i++) {
                uint16_t idx = (uint16_t)((head + i) % q->size);
                uint16_t next = (uint16_t)((head + i + 1) % q->size);
                uint8_t desc[16];

                put_le64(desc, bufs[i].addr);
                put_le32(desc + 8, bufs[i].len);
                put_le16(desc + 12, (uint16_t)((i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
                                               (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0)));
                put_le16(desc + 14, i + 1 < n ? next : 0);
                vdrv_mem_write(d, q->desc + 16ull * idx, desc, 16);
        }
        q->next_desc = (uint16_t)((head + n) % q->size);
        w16(d, q->avail + 4 + 2ull * (q->avail_idx % q->size), head);
        q->avail_idx++;
        return head;
}

void vdrv_publish(struct vdriver *d, unsigned qi)
{
        struct vdrv_queue *q = &d->q[qi];

        store_idx(d, q->avail + 2, q->avail_idx);
}

uint16_t vdrv_add(struct vdriver *d, unsigned qi, const struct vdrv_buf *bufs, unsigned n)
{
        uint16_t head = vdrv_add_nopublish(d, qi, bufs, n);

        vdrv_publish(d, qi);
        return head;
}

void vdrv_kick(struct vdriver *d, unsigned qi)
{
        virtio_mmio_notify(d->t, qi);
}

bool vdrv_get_used(struct vdriver *d, unsigned qi, uint16_t *id, uint32_t *len)
{
        struct vdrv_queue *q = &d->q[qi];
        uint8_t elem[8];

        if (load_idx(d, q->used + 2) == q->used_seen)
                return false;
        vdrv_mem_read(d, q->used + 4 + 8ull * (q->used_seen % q->size), elem, 8);
        q->used_seen++;
        *id = (uint16_t)get_le32(elem);
        *len = get_le32(elem + 4);
        return true;
}

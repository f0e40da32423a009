/*
 * A virtio-mmio (version 2, "modern") driver for the probe: device discovery the way Linux
 * does it (the command line's virtio_mmio.device= entries and ACPI "LNRO0005" devices),
 * the device initialisation sequence of virtio 1.2 section 3.1.1, split virtqueues in probe
 * memory (lib/alloc), and two completion modes: polling (spin on the used index with a TSC
 * bound) and interrupts (IOAPIC -> local APIC vector, InterruptStatus/InterruptACK, EOI),
 * with a local APIC timer tick bounding every halt.
 *
 * Legacy (version 1) transports are refused. VIRTIO_F_VERSION_1 is required;
 * VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC are used when both sides want them;
 * VIRTIO_F_ACCESS_PLATFORM is accepted whenever a device offers it, as Linux does.
 *
 * Restricted memory access (a protected guest, virtio_dma_restrict): like Linux on
 * SEV/PEF/s390-PV, a device that does not offer both VERSION_1 and ACCESS_PLATFORM is
 * refused, rings come from a pool of memory the guest shared with the host, and every
 * buffer of a request is bounced through that pool (swiotlb): copied in when the request
 * is added, the device-writable ones copied back when it is used.
 *
 * Guest RAM is identity-mapped, so a pointer is its guest physical address.
 */
#ifndef PROBE_VIRTIO_H
#define PROBE_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "bootinfo.h"

/* Registers (virtio 1.2, 4.2.2). */
#define VMMIO_MAGIC         0x000
#define VMMIO_VERSION       0x004
#define VMMIO_DEVICE_ID     0x008
#define VMMIO_VENDOR_ID     0x00c
#define VMMIO_DEV_FEATURES  0x010
#define VMMIO_DEV_FEAT_SEL  0x014
#define VMMIO_DRV_FEATURES  0x020
#define VMMIO_DRV_FEAT_SEL  0x024
#define VMMIO_QUEUE_SEL     0x030
#define VMMIO_QUEUE_NUM_MAX 0x034
#define VMMIO_QUEUE_NUM     0x038
#define VMMIO_QUEUE_READY   0x044
#define VMMIO_QUEUE_NOTIFY  0x050
#define VMMIO_INT_STATUS    0x060
#define VMMIO_INT_ACK       0x064
#define VMMIO_STATUS        0x070
#define VMMIO_DESC_LOW      0x080
#define VMMIO_DESC_HIGH     0x084
#define VMMIO_DRIVER_LOW    0x090
#define VMMIO_DRIVER_HIGH   0x094
#define VMMIO_DEVICE_LOW    0x0a0
#define VMMIO_DEVICE_HIGH   0x0a4
#define VMMIO_CONFIG_GEN    0x0fc
#define VMMIO_CONFIG        0x100
#define VMMIO_MAGIC_VALUE   0x74726976

#define VIRTIO_INT_VRING  1
#define VIRTIO_INT_CONFIG 2

#define VSTAT_ACK         1
#define VSTAT_DRIVER      2
#define VSTAT_DRIVER_OK   4
#define VSTAT_FEATURES_OK 8
#define VSTAT_NEEDS_RESET 64
#define VSTAT_FAILED      128

#define VF_INDIRECT_DESC   28
#define VF_EVENT_IDX       29
#define VF_VERSION_1       32
#define VF_ACCESS_PLATFORM 33
#define VBIT(b)            (1ull << (b))

#define VDESC_F_NEXT      1
#define VDESC_F_WRITE     2
#define VDESC_F_INDIRECT  4
#define VAVAIL_F_NO_INT   1
#define VUSED_F_NO_NOTIFY 1

#define VID_NET     1
#define VID_BLOCK   2
#define VID_RNG     4
#define VID_BALLOON 5
#define VID_VSOCK   19

#define VIRTIO_MAX_DEVS    24            /* this VMM: 19 (GSIs 5..23) */
#define VIRTQ_INDIRECT_MAX 8             /* descriptors per indirect table */
#define VIRTIO_WAIT_TSC    4000000000ull /* "the device did not answer": ~1-4 s */

#define VIRTIO_VIA_ACPI    1u
#define VIRTIO_VIA_CMDLINE 2u

struct virtio_dev {
        uint64_t base;
        uint32_t size;
        uint32_t gsi;
        bool level, active_low; /* from ACPI; edge/active-high otherwise */
        uint32_t id;
        unsigned via; /* VIRTIO_VIA_* */
        uint64_t offered, features;
        /* Interrupt mode (virtio_irq_enable). */
        bool irq_mode;
        uint8_t vector;
        uint64_t ioapic;
        unsigned pin;
        volatile uint32_t irqs;        /* interrupts taken */
        volatile uint32_t isr_seen;    /* InterruptStatus bits seen by the handler (OR) */
        volatile uint32_t config_irqs; /* interrupts with the configuration bit */
        /* A level-triggered line that keeps interrupting with InterruptStatus 0 (QEMU cannot
         * lower it while the device is broken) is masked until the next reset, as Linux's
         * spurious-interrupt detector would. */
        volatile uint32_t idle_irqs, stuck_masks;
        volatile bool masked;
};

struct vring_desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
};

struct vring_used_elem {
        uint32_t id;
        uint32_t len;
};

/* One bounced buffer of a request in flight (restricted memory access). */
struct vbounce {
        void *orig, *bounce;
        uint32_t len;
        bool write;
};

struct virtq {
        struct virtio_dev *dev;
        unsigned index;
        uint16_t size;
        volatile struct vring_desc *desc;
        volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
        volatile uint16_t *used;  /* flags, idx, then ring[size] of vring_used_elem, avail_event */
        struct vring_desc *indirect; /* size tables of VIRTQ_INDIRECT_MAX, when negotiated */
        uint16_t *chain;             /* descriptors held by each head (0: free) */
        struct vbounce *bounce;      /* restricted: VIRTQ_INDIRECT_MAX per head */
        uint8_t *nbounce;            /* restricted: bounced buffers per head */
        uint16_t free_head, num_free;
        uint16_t avail_idx, kicked_idx, last_used;
        bool event_idx, use_indirect;
        uint32_t notifies, notifies_suppressed;
};

/* A buffer of a request: device-readable (out) or device-writable (in). */
struct vbuf {
        const void *addr;
        uint32_t len;
        bool write;
};

/* Options from the command line: probe.event_idx=0|1, probe.indirect=0|1 (default 1: use
 * them when offered) and probe.irq=0|1 (default: the scenario's choice). */
struct virtio_opts {
        bool event_idx, indirect;
        int irq; /* -1: scenario default */
};
void virtio_opts(const struct boot_info *bi, struct virtio_opts *o);

/* Discovery: every device, printing `probe: virtio 0xADDR irq N id D (via acpi|cmdline)` per
 * source. Fails the scenario on a source that contradicts another. */
unsigned virtio_discover(const struct boot_info *bi, struct virtio_dev *devs, unsigned max);
/* The n-th (from 0) device with this id, or NULL. */
struct virtio_dev *virtio_find(struct virtio_dev *devs, unsigned count, uint32_t id, unsigned n);

uint32_t virtio_read(const struct virtio_dev *d, uint32_t off);
void virtio_write(const struct virtio_dev *d, uint32_t off, uint32_t v);
uint8_t virtio_status(const struct virtio_dev *d);
uint8_t virtio_cfg8(const struct virtio_dev *d, uint32_t off);
uint16_t virtio_cfg16(const struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg32(const struct virtio_dev *d, uint32_t off);
uint64_t virtio_cfg64(const struct virtio_dev *d, uint32_t off); /* generation-checked */
void virtio_cfg_write32(const struct virtio_dev *d, uint32_t off, uint32_t v);

/* Reset (status 0, waits until it reads back 0), ACKNOWLEDGE, DRIVER; reads the offered
 * features into d->offered. */
const char *virtio_begin(struct virtio_dev *d);
/* DriverFeatures = offered & (wanted | VERSION_1) (VERSION_1 must be offered), FEATURES_OK,
 * re-read: NULL, or why the device refused. */
const char *virtio_negotiate(struct virtio_dev *d, uint64_t wanted);
/* Low-level: write these exact driver features and FEATURES_OK; returns Status read back. */
uint8_t virtio_write_features(struct virtio_dev *d, uint64_t features);
/* Queue setup (QueueSel, QueueNumMax, QueueNum, Desc/Driver/Device, QueueReady=1 read back):
 * size = min(QueueNumMax, max_size). NULL or the reason. The rings (and indirect tables)
 * come from probe memory, or the shared pool under restricted memory access. */
const char *virtq_setup(struct virtq *q, struct virtio_dev *d, unsigned index, uint16_t max_size);
/* The same with the rings at mem, which must hold virtq_ring_bytes(max_size, indirect) bytes
 * (16-byte aligned); it is cleared here. */
const char *virtq_setup_at(struct virtq *q, struct virtio_dev *d, unsigned index, uint16_t max_size,
                           uint8_t *mem);
uint64_t virtq_ring_bytes(uint16_t size, bool indirect);
void virtio_driver_ok(struct virtio_dev *d);
void virtio_reset(struct virtio_dev *d);
/* begin + negotiate + queues 0..nq-1 + DRIVER_OK, failing the scenario on any refusal. */
void virtio_bring_up(struct virtio_dev *d, uint64_t wanted, struct virtq *qs, unsigned nq,
                     uint16_t qsize);

/* Interrupts. virtio_irq_setup once (local APIC from the MADT, PICs and LINT0 masked, a
 * periodic local APIC timer that bounds every halt); then per device. */
void virtio_irq_setup(const struct boot_info *bi);
void virtio_irq_enable(struct virtio_dev *d);
void virtio_irq_disable(struct virtio_dev *d);
/* Halts (interrupts on) until an interrupt or the next timer tick; polling mode pauses. */
void virtio_idle(const struct virtio_dev *d);
uint32_t virtio_ticks(void);

/* Adds a request (n buffers, readable ones first). indirect: as one indirect descriptor when
 * negotiated and n > 1. Publishes it in the avail ring; returns its head, or -1 when the
 * ring is full. */
int virtq_add(struct virtq *q, const struct vbuf *b, unsigned n, bool indirect);
/* Notifies the device unless it asked not to be (EVENT_IDX avail_event / NO_NOTIFY). */
void virtq_kick(struct virtq *q);
/* Takes one used element if there is one (frees its descriptors). */
bool virtq_get(struct virtq *q, uint16_t *head, uint32_t *len);
/* Waits (polling or interrupt mode, per q->dev->irq_mode) for one used element; false after
 * tsc cycles. */
bool virtq_wait(struct virtq *q, uint16_t *head, uint32_t *len, uint64_t tsc);
/* add + kick + wait for that request; fails the scenario on a timeout or another head. */
uint32_t virtq_call(struct virtq *q, const struct vbuf *b, unsigned n, bool indirect);
/* Tells the device whether interrupts are wanted (avail flags / used_event). */
void virtq_want_irq(struct virtq *q, bool on);

/* For hostile requests built by hand: publishes head (held by the caller's own descriptors,
 * counted as one in q->chain), writes a raw avail index, and rebuilds the free list when
 * nothing is in flight (after hand-made chains, possibly loops, came back). */
void virtq_publish(struct virtq *q, uint16_t head);
void virtq_set_avail_idx(struct virtq *q, uint16_t idx);
void virtq_reset_free(struct virtq *q);

/* Restricted memory access: pool is [pool, pool + size) of memory already shared with the
 * host (2 KiB-aligned, at most VIRTIO_DMA_MAX_SLOTS slots of 2 KiB). From then on devices
 * must offer ACCESS_PLATFORM, rings come from the pool and buffers are bounced. */
#define VIRTIO_DMA_SLOT      2048u
#define VIRTIO_DMA_MAX_SLOTS 1024u
void virtio_dma_restrict(void *pool, uint64_t size);
bool virtio_dma_restricted(void);
/* Whole slots from the pool (failing the scenario when it is exhausted); not cleared. */
void *virtio_dma_alloc(uint64_t size);
void virtio_dma_free(void *p, uint64_t size);
/* Buffers bounced so far, and bounce slots still held by requests in flight. */
uint32_t virtio_dma_bounced(void);
uint32_t virtio_dma_bounce_slots(void);

/* x86 barriers: stores are ordered and loads are ordered, so only the compiler must be kept
 * from reordering; store->load ordering (publishing an index, then reading the other
 * side's) needs mfence. */
static inline void vbarrier(void)
{
        __asm__ __volatile__("" : : : "memory");
}

static inline void vmb(void)
{
        __asm__ __volatile__("mfence" : : : "memory");
}

#endif

#include "virtio.h"

#include "acpi.h"
#include "alloc.h"
#include "aml.h"
#include "apic.h"
#include "cmdline.h"
#include "cpu.h"
#include "idt.h"
#include "io.h"
#include "probe.h"
#include "str.h"

#define CMDLINE_KEY    "virtio_mmio.device="
#define VEC_BASE       0x30 /* device vectors 0x30..0x47 */
#define VEC_TIMER      0x50
#define RESET_SPINS    100000u
#define IOAPIC_VER_REG 0x01
#define STUCK_IRQS     16 /* interrupts in a row with nothing to acknowledge */

#define LAPIC_LVT_TIMER   0x320
#define LAPIC_TIMER_INIT  0x380
#define LAPIC_TIMER_DIV   0x3e0
#define LAPIC_PERIODIC    (1u << 17)
#define LAPIC_DIV_16      0x3
#define LAPIC_TICK_COUNTS 1000000u /* 16 ms with KVM's 1 GHz APIC bus */

/* ---- options ---- */

static bool opt_bool(const struct boot_info *bi, const char *key, bool dflt)
{
        size_t len;
        const char *v = cmdline_find(bi->cmdline, key, &len);

        if (!v)
                return dflt;
        return !(len == 1 && v[0] == '0');
}

void virtio_opts(const struct boot_info *bi, struct virtio_opts *o)
{
        size_t len;
        const char *v = cmdline_find(bi->cmdline, "probe.irq", &len);

        o->event_idx = opt_bool(bi, "probe.event_idx", true);
        o->indirect = opt_bool(bi, "probe.indirect", true);
        o->irq = v ? !(len == 1 && v[0] == '0') : -1;
}

/* ---- registers ---- */

uint32_t virtio_read(const struct virtio_dev *d, uint32_t off)
{
        return mmio_read32(d->base + off);
}

void virtio_write(const struct virtio_dev *d, uint32_t off, uint32_t v)
{
        mmio_write32(d->base + off, v);
}

uint8_t virtio_status(const struct virtio_dev *d)
{
        return (uint8_t)virtio_read(d, VMMIO_STATUS);
}

uint8_t virtio_cfg8(const struct virtio_dev *d, uint32_t off)
{
        return mmio_read8(d->base + VMMIO_CONFIG + off);
}

uint16_t virtio_cfg16(const struct virtio_dev *d, uint32_t off)
{
        return mmio_read16(d->base + VMMIO_CONFIG + off);
}

uint32_t virtio_cfg32(const struct virtio_dev *d, uint32_t off)
{
        return mmio_read32(d->base + VMMIO_CONFIG + off);
}

uint64_t virtio_cfg64(const struct virtio_dev *d, uint32_t off)
{
        uint32_t gen, lo, hi;
        unsigned tries = 0;

        do {
                gen = virtio_read(d, VMMIO_CONFIG_GEN);
                lo = virtio_cfg32(d, off);
                hi = virtio_cfg32(d, off + 4);
        } while (gen != virtio_read(d, VMMIO_CONFIG_GEN) && ++tries < 100);
        return ((uint64_t)hi << 32) | lo;
}

void virtio_cfg_write32(const struct virtio_dev *d, uint32_t off, uint32_t v)
{
        mmio_write32(d->base + VMMIO_CONFIG + off, v);
}

/* ---- discovery ---- */

static const char *via_name(unsigned via)
{
        return via == VIRTIO_VIA_ACPI ? "acpi" : "cmdline";
}

static unsigned skipped_empty;

static void found(struct virtio_dev *devs, unsigned *count, unsigned max,
                  const struct virtio_dev *c)
{
        uint32_t magic = mmio_read32(c->base + VMMIO_MAGIC);
        uint32_t version, id;

        for (unsigned i = 0; i < *count; i++) {
                if (devs[i].base != c->base)
                        continue;
                if (devs[i].gsi != c->gsi)
                        probe_fail("virtio 0x%llx: irq %u via %s but %u via %s", U64(c->base),
                                   c->gsi, via_name(c->via), devs[i].gsi, via_name(devs[i].via));
                print("probe: virtio 0x%llx irq %u id %u (via %s)\n", U64(c->base), c->gsi,
                      devs[i].id, via_name(c->via));
                devs[i].via |= c->via;
                if (c->via == VIRTIO_VIA_ACPI) {
                        devs[i].level = c->level;
                        devs[i].active_low = c->active_low;
                }
                return;
        }
        if (magic != VMMIO_MAGIC_VALUE) {
                print("probe: virtio 0x%llx bad magic 0x%x (via %s)\n", U64(c->base), magic,
                      via_name(c->via));
                return;
        }
        version = mmio_read32(c->base + VMMIO_VERSION);
        id = mmio_read32(c->base + VMMIO_DEVICE_ID);
        if (id == 0) {
                skipped_empty++; /* a transport with no device behind it */
                return;
        }
        if (version != 2) {
                print("probe: virtio 0x%llx version %u refused (legacy) (via %s)\n", U64(c->base),
                      version, via_name(c->via));
                return;
        }
        print("probe: virtio 0x%llx irq %u id %u (via %s)\n", U64(c->base), c->gsi, id,
              via_name(c->via));
        if (*count >= max)
                probe_fail("more than %u virtio devices", max);
        devs[*count] = *c;
        devs[*count].id = id;
        (*count)++;
}

static void discover_acpi(const struct boot_info *bi, struct virtio_dev *devs, unsigned *count,
                          unsigned max)
{
        struct acpi_root root;
        const struct acpi_sdt *fadt;
        uint64_t tables[8];
        unsigned nt = 0;
        static struct aml_result r;

        if (acpi_open(bi->rsdp_addr, &root))
                return;
        fadt = acpi_find(&root, "FACP");
        if (fadt && !acpi_check_table(acpi_fadt_dsdt(fadt), "DSDT"))
                tables[nt++] = acpi_fadt_dsdt(fadt);
        for (unsigned i = 0; i < root.count && nt < 8; i++)
                if (!acpi_check_table(acpi_root_entry(&root, i), "SSDT"))
                        tables[nt++] = acpi_root_entry(&root, i);
        for (unsigned t = 0; t < nt; t++) {
                aml_find_virtio(tables[t], &r);
                if (r.stopped)
                        print("probe: aml walk stopped at opcode 0x%x offset 0x%x\n", r.stopped_op,
                              r.stopped);
                if (r.bad_crs)
                        print("probe: aml %u LNRO0005 devices without a usable _CRS\n", r.bad_crs);
                for (unsigned i = 0; i < r.count && i < AML_MAX_DEVICES; i++) {
                        struct virtio_dev c = {
                            .base = r.dev[i].base,
                            .size = r.dev[i].size,
                            .gsi = r.dev[i].gsi,
                            .level = r.dev[i].level,
                            .active_low = r.dev[i].active_low,
                            .via = VIRTIO_VIA_ACPI,
                        };

                        if (!r.dev[i].has_irq) {
                                print("probe: aml %s has no interrupt\n", r.dev[i].name);
                                continue;
                        }
                        found(devs, count, max, &c);
                }
        }
}

/* Linux's memparse subset: decimal or 0x-hex, optional K/M/G suffix. */
static const char *parse_num(const char *p, const char *end, uint64_t *v, bool suffix)
{
        unsigned base = 10;
        const char *s;

        if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
                base = 16;
                p += 2;
        }
        s = p;
        while (p < end && ((*p >= '0' && *p <= '9') ||
                           (base == 16 && ((*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))))
                p++;
        if (!str_parse_u64(s, (size_t)(p - s), base, v))
                return NULL;
        if (suffix && p < end) {
                unsigned shift = 0;

                switch (*p) {
                case 'k':
                case 'K':
                        shift = 10;
                        break;
                case 'm':
                case 'M':
                        shift = 20;
                        break;
                case 'g':
                case 'G':
                        shift = 30;
                        break;
                }
                if (shift) {
                        *v <<= shift;
                        p++;
                }
        }
        return p;
}

static void discover_cmdline(const struct boot_info *bi, struct virtio_dev *devs, unsigned *count,
                             unsigned max)
{
        const char *p = bi->cmdline;
        size_t klen = str_len(CMDLINE_KEY);

        while (*p) {
                const char *w, *end;
                uint64_t size, base, irq;

                while (*p == ' ' || *p == '\t')
                        p++;
                w = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                end = p;
                if ((size_t)(end - w) <= klen || memcmp(w, CMDLINE_KEY, klen) != 0)
                        continue;
                w += klen;
                /* <size>@<base>:<irq>[:<id>] */
                if (!(w = parse_num(w, end, &size, true)) || w >= end || *w++ != '@' ||
                    !(w = parse_num(w, end, &base, false)) || w >= end || *w++ != ':' ||
                    !(w = parse_num(w, end, &irq, false)) || (w < end && *w != ':') || size == 0 ||
                    base >= 0x100000000ull || irq > 0xffffffffull) {
                        print("probe: virtio bad command line entry\n");
                        continue;
                }
                struct virtio_dev c = {.base = base,
                                       .size = (uint32_t)size,
                                       .gsi = (uint32_t)irq,
                                       .via = VIRTIO_VIA_CMDLINE};
                found(devs, count, max, &c);
        }
}

unsigned virtio_discover(const struct boot_info *bi, struct virtio_dev *devs, unsigned max)
{
        unsigned count = 0;

        skipped_empty = 0;
        discover_acpi(bi, devs, &count, max);
        discover_cmdline(bi, devs, &count, max);
        if (skipped_empty)
                print("probe: virtio %u empty transports skipped\n", skipped_empty);
        return count;
}

struct virtio_dev *virtio_find(struct virtio_dev *devs, unsigned count, uint32_t id, unsigned n)
{
        for (unsigned i = 0; i < count; i++)
                if (devs[i].id == id && n-- == 0)
                        return &devs[i];
        return NULL;
}

/* ---- initialisation ---- */

void virtio_reset(struct virtio_dev *d)
{
        virtio_write(d, VMMIO_STATUS, 0);
        for (unsigned i = 0; i < RESET_SPINS && virtio_status(d) != 0; i++)
                cpu_pause();
        d->features = 0;
        if (d->masked && d->irq_mode) {
                /* The reset lowered the line: listen again. */
                d->masked = false;
                d->idle_irqs = 0;
                ioapic_route(d->ioapic, d->pin, d->vector, lapic_id(), d->level, d->active_low);
        }
}

const char *virtio_begin(struct virtio_dev *d)
{
        virtio_reset(d);
        if (virtio_status(d) != 0)
                return "status does not read back 0 after a reset";
        virtio_write(d, VMMIO_STATUS, VSTAT_ACK);
        virtio_write(d, VMMIO_STATUS, VSTAT_ACK | VSTAT_DRIVER);
        virtio_write(d, VMMIO_DEV_FEAT_SEL, 0);
        d->offered = virtio_read(d, VMMIO_DEV_FEATURES);
        virtio_write(d, VMMIO_DEV_FEAT_SEL, 1);
        d->offered |= (uint64_t)virtio_read(d, VMMIO_DEV_FEATURES) << 32;
        return NULL;
}

uint8_t virtio_write_features(struct virtio_dev *d, uint64_t f)
{
        virtio_write(d, VMMIO_DRV_FEAT_SEL, 0);
        virtio_write(d, VMMIO_DRV_FEATURES, (uint32_t)f);
        virtio_write(d, VMMIO_DRV_FEAT_SEL, 1);
        virtio_write(d, VMMIO_DRV_FEATURES, (uint32_t)(f >> 32));
        virtio_write(d, VMMIO_STATUS, virtio_status(d) | VSTAT_FEATURES_OK);
        return virtio_status(d);
}

const char *virtio_negotiate(struct virtio_dev *d, uint64_t wanted)
{
        uint64_t f = d->offered & (wanted | VBIT(VF_VERSION_1) | VBIT(VF_ACCESS_PLATFORM));

        if (!(d->offered & VBIT(VF_VERSION_1)))
                return "VIRTIO_F_VERSION_1 not offered";
        /* Linux's virtio_features_ok() under restricted memory access. */
        if (virtio_dma_restricted() && !(d->offered & VBIT(VF_ACCESS_PLATFORM)))
                return "VIRTIO_F_ACCESS_PLATFORM not offered (restricted memory access)";
        if (!(virtio_write_features(d, f) & VSTAT_FEATURES_OK))
                return "FEATURES_OK did not latch";
        d->features = f;
        return NULL;
}

static uint16_t pow2_floor(uint32_t v)
{
        uint16_t p = 1;

        while ((uint32_t)p * 2 <= v && p < 0x8000)
                p *= 2;
        return p;
}

/* Ring layout: descriptors, avail ring, used ring (4-byte aligned), then the indirect
 * tables (16-byte aligned). */
static uint64_t used_offset(uint16_t size)
{
        return (16ull * size + 6 + 2ull * size + 3) & ~3ull;
}

static uint64_t indirect_offset(uint16_t size)
{
        return (used_offset(size) + 6 + 8ull * size + 15) & ~15ull;
}

uint64_t virtq_ring_bytes(uint16_t size, bool indirect)
{
        return indirect_offset(size) + (indirect ? 16ull * VIRTQ_INDIRECT_MAX * size : 0);
}

static const char *setup(struct virtq *q, struct virtio_dev *d, unsigned index, uint16_t max_size,
                         uint8_t *mem)
{
        uint32_t max;
        uint16_t size;

        virtio_write(d, VMMIO_QUEUE_SEL, index);
        if (virtio_read(d, VMMIO_QUEUE_READY))
                return "queue already ready";
        max = virtio_read(d, VMMIO_QUEUE_NUM_MAX);
        if (max == 0)
                return "queue does not exist (QueueNumMax 0)";
        size = pow2_floor(max < max_size ? max : max_size);
        memset(q, 0, sizeof(*q));
        q->dev = d;
        q->index = index;
        q->size = size;
        q->event_idx = d->features & VBIT(VF_EVENT_IDX);
        q->use_indirect = d->features & VBIT(VF_INDIRECT_DESC);
        if (!mem) {
                uint64_t bytes = virtq_ring_bytes(size, q->use_indirect);
                mem = virtio_dma_restricted() ? virtio_dma_alloc(bytes) : alloc_mem(bytes, 4096);
        }
        memset(mem, 0, indirect_offset(size));
        q->desc = (volatile struct vring_desc *)mem;
        q->avail = (volatile uint16_t *)(mem + 16ull * size);
        q->used = (volatile uint16_t *)(mem + used_offset(size));
        if (q->use_indirect)
                q->indirect = (struct vring_desc *)(mem + indirect_offset(size));
        q->chain = alloc_zeroed(2ull * size, 2);
        if (virtio_dma_restricted()) {
                q->bounce = alloc_mem(sizeof(*q->bounce) * VIRTQ_INDIRECT_MAX * size, 8);
                q->nbounce = alloc_zeroed(size, 1);
        }
        for (uint16_t i = 0; i < size; i++)
                q->desc[i].next = (uint16_t)(i + 1);
        q->num_free = size;
        virtio_write(d, VMMIO_QUEUE_NUM, size);
        virtio_write(d, VMMIO_DESC_LOW, (uint32_t)(uintptr_t)q->desc);
        virtio_write(d, VMMIO_DESC_HIGH, (uint32_t)((uint64_t)(uintptr_t)q->desc >> 32));
        virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)q->avail);
        virtio_write(d, VMMIO_DRIVER_HIGH, (uint32_t)((uint64_t)(uintptr_t)q->avail >> 32));
        virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)q->used);
        virtio_write(d, VMMIO_DEVICE_HIGH, (uint32_t)((uint64_t)(uintptr_t)q->used >> 32));
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        if (virtio_read(d, VMMIO_QUEUE_READY) != 1)
                return "QueueReady reads back 0";
        return NULL;
}

const char *virtq_setup(struct virtq *q, struct virtio_dev *d, unsigned index, uint16_t max_size)
{
        return setup(q, d, index, max_size, NULL);
}

const char *virtq_setup_at(struct virtq *q, struct virtio_dev *d, unsigned index, uint16_t max_size,
                           uint8_t *mem)
{
        return setup(q, d, index, max_size, mem);
}

void virtio_driver_ok(struct virtio_dev *d)
{
        virtio_write(d, VMMIO_STATUS, virtio_status(d) | VSTAT_DRIVER_OK);
}

void virtio_bring_up(struct virtio_dev *d, uint64_t wanted, struct virtq *qs, unsigned nq,
                     uint16_t qsize)
{
        const char *err = virtio_begin(d);

        if (!err)
                err = virtio_negotiate(d, wanted);
        if (err)
                probe_fail("virtio 0x%llx: %s", U64(d->base), err);
        for (unsigned i = 0; i < nq; i++) {
                err = virtq_setup(&qs[i], d, i, qsize);
                if (err)
                        probe_fail("virtio 0x%llx queue %u: %s", U64(d->base), i, err);
        }
        virtio_driver_ok(d);
        if ((virtio_status(d) & (VSTAT_DRIVER_OK | VSTAT_NEEDS_RESET | VSTAT_FAILED)) !=
            VSTAT_DRIVER_OK)
                probe_fail("virtio 0x%llx: status 0x%x after DRIVER_OK", U64(d->base),
                           virtio_status(d));
}

/* ---- interrupts ---- */

static struct acpi_madt madt;
static bool irq_ready;
static uint64_t lapic_base;
static struct virtio_dev *vec_dev[VIRTIO_MAX_DEVS];
static unsigned vec_next;
static volatile uint32_t ticks;

static void tick(struct isr_frame *f)
{
        (void)f;
        ticks++;
}

uint32_t virtio_ticks(void)
{
        return ticks;
}

static void virtio_isr(struct isr_frame *f)
{
        struct virtio_dev *d = vec_dev[(f->vector - VEC_BASE) % VIRTIO_MAX_DEVS];
        uint32_t s;

        if (!d)
                return;
        s = virtio_read(d, VMMIO_INT_STATUS);
        if (s)
                virtio_write(d, VMMIO_INT_ACK, s);
        if (s || !d->level) {
                d->idle_irqs = 0;
        } else if (++d->idle_irqs >= STUCK_IRQS) {
                ioapic_mask(d->ioapic, d->pin);
                d->masked = true;
                d->stuck_masks++;
        }
        d->irqs++;
        d->isr_seen |= s;
        if (s & VIRTIO_INT_CONFIG)
                d->config_irqs++;
}

void virtio_irq_setup(const struct boot_info *bi)
{
        struct acpi_root root;
        const struct acpi_sdt *t;
        const char *err;

        if (irq_ready)
                return;
        err = acpi_open(bi->rsdp_addr, &root);
        if (err)
                probe_fail("%s", err);
        t = acpi_find(&root, "APIC");
        if (!t)
                probe_fail("no valid MADT");
        err = acpi_parse_madt(t, &madt);
        if (err)
                probe_fail("%s", err);
        lapic_base = madt.lapic_addr;
        apic_init(lapic_base);
        idt_set_handler(VEC_TIMER, tick);
        mmio_write32(lapic_base + LAPIC_TIMER_DIV, LAPIC_DIV_16);
        mmio_write32(lapic_base + LAPIC_LVT_TIMER, VEC_TIMER | LAPIC_PERIODIC);
        mmio_write32(lapic_base + LAPIC_TIMER_INIT, LAPIC_TICK_COUNTS);
        irq_ready = true;
}

void virtio_irq_enable(struct virtio_dev *d)
{
        if (!irq_ready)
                probe_fail("virtio_irq_enable before virtio_irq_setup");
        for (unsigned i = 0; i < madt.ioapics; i++) {
                uint64_t base = madt.ioapic[i].addr;
                uint32_t first = madt.ioapic[i].gsi_base;
                uint32_t pins = ((ioapic_read(base, IOAPIC_VER_REG) >> 16) & 0xff) + 1;

                if (d->gsi < first || d->gsi - first >= pins)
                        continue;
                if (!d->vector) {
                        if (vec_next >= VIRTIO_MAX_DEVS)
                                probe_fail("out of interrupt vectors");
                        d->vector = (uint8_t)(VEC_BASE + vec_next++);
                }
                vec_dev[d->vector - VEC_BASE] = d;
                idt_set_handler(d->vector, virtio_isr);
                d->ioapic = base;
                d->pin = d->gsi - first;
                ioapic_route(base, d->pin, d->vector, lapic_id(), d->level, d->active_low);
                d->irq_mode = true;
                return;
        }
        probe_fail("no IOAPIC serves GSI %u", d->gsi);
}

void virtio_irq_disable(struct virtio_dev *d)
{
        if (!d->irq_mode)
                return;
        ioapic_mask(d->ioapic, d->pin);
        d->irq_mode = false;
}

void virtio_idle(const struct virtio_dev *d)
{
        if (d && d->irq_mode) {
                cpu_sti_hlt();
                cpu_cli();
        } else {
                cpu_pause();
        }
}

/* ---- restricted memory access: the shared pool and bounce buffers ---- */

static struct {
        bool restricted;
        uint8_t *base;
        uint32_t slots;
        uint8_t used[VIRTIO_DMA_MAX_SLOTS];
        uint32_t bounced, bounce_slots;
} dma;

void virtio_dma_restrict(void *pool, uint64_t size)
{
        uint64_t a = (uint64_t)(uintptr_t)pool;

        if ((a | size) & (VIRTIO_DMA_SLOT - 1) || size / VIRTIO_DMA_SLOT > VIRTIO_DMA_MAX_SLOTS ||
            size == 0)
                probe_fail("virtio: bad shared pool 0x%llx+0x%llx", U64(a), U64(size));
        dma.base = pool;
        dma.slots = (uint32_t)(size / VIRTIO_DMA_SLOT);
        memset(dma.used, 0, sizeof(dma.used));
        dma.restricted = true;
}

bool virtio_dma_restricted(void)
{
        return dma.restricted;
}

static uint32_t slots_for(uint64_t size)
{
        return (uint32_t)((size + VIRTIO_DMA_SLOT - 1) / VIRTIO_DMA_SLOT);
}

void *virtio_dma_alloc(uint64_t size)
{
        uint32_t n = slots_for(size ? size : 1), run = 0;

        if (!dma.restricted)
                probe_fail("virtio_dma_alloc without a shared pool");
        for (uint32_t i = 0; i < dma.slots; i++) {
                run = dma.used[i] ? 0 : run + 1;
                if (run == n) {
                        memset(&dma.used[i + 1 - n], 1, n);
                        return dma.base + (uint64_t)(i + 1 - n) * VIRTIO_DMA_SLOT;
                }
        }
        probe_fail("virtio: shared pool exhausted (%llu bytes wanted)", U64(size));
}

void virtio_dma_free(void *p, uint64_t size)
{
        uint64_t off = (uint64_t)((uint8_t *)p - dma.base);

        memset(&dma.used[off / VIRTIO_DMA_SLOT], 0, slots_for(size ? size : 1));
}

uint32_t virtio_dma_bounced(void)
{
        return dma.bounced;
}

uint32_t virtio_dma_bounce_slots(void)
{
        return dma.bounce_slots;
}

/* Bounces the n buffers of a request (copies them into the pool); b becomes the copy. */
static void bounce_map(struct virtq *q, uint16_t head, struct vbuf *b, unsigned n)
{
        struct vbounce *m = &q->bounce[(uint64_t)head * VIRTQ_INDIRECT_MAX];

        if (n > VIRTQ_INDIRECT_MAX)
                probe_fail("virtio: %u buffers in one bounced request", n);
        for (unsigned k = 0; k < n; k++) {
                void *copy = virtio_dma_alloc(b[k].len);

                /* Device-writable buffers too (Linux's swiotlb does the same): what the
                 * device does not write must come back unchanged. */
                memcpy(copy, b[k].addr, b[k].len);
                m[k] = (struct vbounce){(void *)(uintptr_t)b[k].addr, copy, b[k].len, b[k].write};
                b[k].addr = copy;
                dma.bounced++;
                dma.bounce_slots += slots_for(b[k].len ? b[k].len : 1);
        }
        q->nbounce[head] = (uint8_t)n;
}

/* The request at head came back: device-writable buffers are copied back, the copies
 * freed. copy=false when the request never reached the device. */
static void bounce_unmap(struct virtq *q, uint16_t head, bool copy)
{
        struct vbounce *m = &q->bounce[(uint64_t)head * VIRTQ_INDIRECT_MAX];

        for (unsigned k = 0; k < q->nbounce[head]; k++) {
                if (copy && m[k].write)
                        memcpy(m[k].orig, m[k].bounce, m[k].len);
                virtio_dma_free(m[k].bounce, m[k].len);
                dma.bounce_slots -= slots_for(m[k].len ? m[k].len : 1);
        }
        q->nbounce[head] = 0;
}

/* ---- virtqueues ---- */

#define AVAIL_FLAGS(q)      ((q)->avail[0])
#define AVAIL_IDX(q)        ((q)->avail[1])
#define AVAIL_RING(q, i)    ((q)->avail[2 + (i)])
#define AVAIL_USED_EVENT(q) ((q)->avail[2 + (q)->size])
#define USED_FLAGS(q)       ((q)->used[0])
#define USED_IDX(q)         ((q)->used[1])
#define USED_AVAIL_EVENT(q) ((q)->used[2 + 4 * (q)->size])

static volatile struct vring_used_elem *used_elem(struct virtq *q, uint16_t i)
{
        return (volatile struct vring_used_elem *)(q->used + 2) + (i % q->size);
}

int virtq_add(struct virtq *q, const struct vbuf *b, unsigned n, bool indirect)
{
        uint16_t head = q->free_head, i = head, last = head;
        struct vbuf copies[VIRTQ_INDIRECT_MAX];

        if (n == 0)
                return -1;
        if (q->bounce) {
                if (q->num_free < ((indirect && q->use_indirect && n > 1) ? 1 : n))
                        return -1;
                if (n > VIRTQ_INDIRECT_MAX)
                        probe_fail("virtio: %u buffers in one bounced request", n);
                memcpy(copies, b, n * sizeof(*b));
                bounce_map(q, head, copies, n);
                b = copies;
        }
        if (indirect && q->use_indirect && n > 1 && n <= VIRTQ_INDIRECT_MAX) {
                struct vring_desc *t;

                if (q->num_free < 1)
                        return -1;
                t = q->indirect + (uint64_t)head * VIRTQ_INDIRECT_MAX;
                for (unsigned k = 0; k < n; k++) {
                        t[k].addr = (uint64_t)(uintptr_t)b[k].addr;
                        t[k].len = b[k].len;
                        t[k].flags = (uint16_t)((b[k].write ? VDESC_F_WRITE : 0) |
                                                (k + 1 < n ? VDESC_F_NEXT : 0));
                        t[k].next = (uint16_t)(k + 1);
                }
                q->desc[head].addr = (uint64_t)(uintptr_t)t;
                q->desc[head].len = 16 * n;
                q->desc[head].flags = VDESC_F_INDIRECT;
                q->free_head = q->desc[head].next;
                q->num_free--;
                q->chain[head] = 1;
        } else {
                if (q->num_free < n)
                        return -1;
                for (unsigned k = 0; k < n; k++) {
                        q->desc[i].addr = (uint64_t)(uintptr_t)b[k].addr;
                        q->desc[i].len = b[k].len;
                        q->desc[i].flags = (uint16_t)((b[k].write ? VDESC_F_WRITE : 0) |
                                                      (k + 1 < n ? VDESC_F_NEXT : 0));
                        last = i;
                        i = q->desc[i].next;
                }
                q->free_head = q->desc[last].next;
                q->num_free = (uint16_t)(q->num_free - n);
                q->chain[head] = (uint16_t)n;
        }
        AVAIL_RING(q, q->avail_idx % q->size) = head;
        vbarrier(); /* the ring entry before the index that publishes it */
        AVAIL_IDX(q) = ++q->avail_idx;
        return head;
}

void virtq_publish(struct virtq *q, uint16_t head)
{
        q->chain[head % q->size] = 1;
        AVAIL_RING(q, q->avail_idx % q->size) = head;
        vbarrier();
        AVAIL_IDX(q) = ++q->avail_idx;
}

void virtq_set_avail_idx(struct virtq *q, uint16_t idx)
{
        vbarrier();
        AVAIL_IDX(q) = idx;
}

void virtq_reset_free(struct virtq *q)
{
        for (uint16_t i = 0; i < q->size; i++) {
                if (q->bounce && q->nbounce[i])
                        bounce_unmap(q, i, false);
                q->desc[i].next = (uint16_t)(i + 1);
                q->chain[i] = 0;
        }
        q->free_head = 0;
        q->num_free = q->size;
}

void virtq_kick(struct virtq *q)
{
        uint16_t old = q->kicked_idx, now = q->avail_idx;
        bool need;

        vmb(); /* the published avail index before reading the device's wishes */
        q->kicked_idx = now;
        if (q->event_idx)
                need = (uint16_t)(now - USED_AVAIL_EVENT(q) - 1) < (uint16_t)(now - old);
        else
                need = !(USED_FLAGS(q) & VUSED_F_NO_NOTIFY);
        if (need) {
                virtio_write(q->dev, VMMIO_QUEUE_NOTIFY, q->index);
                q->notifies++;
        } else {
                q->notifies_suppressed++;
        }
}

bool virtq_get(struct virtq *q, uint16_t *head, uint32_t *len)
{
        volatile struct vring_used_elem *e;
        uint16_t id, n, last;

        if (USED_IDX(q) == q->last_used)
                return false;
        vbarrier(); /* the element after the index that published it */
        e = used_elem(q, q->last_used);
        id = (uint16_t)e->id;
        if (e->id >= q->size || !q->chain[id])
                probe_fail("virtio queue %u: used id %u is not in flight", q->index, e->id);
        *head = id;
        *len = e->len;
        if (q->bounce && q->nbounce[id])
                bounce_unmap(q, id, true);
        n = q->chain[id];
        last = id;
        for (uint16_t k = 1; k < n; k++)
                last = q->desc[last].next;
        q->desc[last].next = q->free_head;
        q->free_head = id;
        q->num_free = (uint16_t)(q->num_free + n);
        q->chain[id] = 0;
        q->last_used++;
        return true;
}

void virtq_want_irq(struct virtq *q, bool on)
{
        if (q->event_idx)
                AVAIL_USED_EVENT(q) = on ? q->last_used : (uint16_t)(q->last_used + 0x7fff);
        else
                AVAIL_FLAGS(q) = on ? 0 : VAVAIL_F_NO_INT;
}

bool virtq_wait(struct virtq *q, uint16_t *head, uint32_t *len, uint64_t tsc)
{
        uint64_t t0 = cpu_rdtsc();

        for (;;) {
                /* Interrupt mode: let an interrupt that is already pending in (the device
                 * may have answered during the notification exit itself). */
                if (q->dev->irq_mode)
                        __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (virtq_get(q, head, len))
                        return true;
                if (cpu_rdtsc() - t0 > tsc)
                        return false;
                if (q->dev->irq_mode) {
                        virtq_want_irq(q, true);
                        vmb(); /* used_event before the last look at the used index */
                        cpu_cli();
                        if (USED_IDX(q) != q->last_used)
                                continue;
                        cpu_sti_hlt();
                        cpu_cli();
                } else {
                        cpu_pause();
                }
        }
}

uint32_t virtq_call(struct virtq *q, const struct vbuf *b, unsigned n, bool indirect)
{
        int head = virtq_add(q, b, n, indirect);
        uint16_t got;
        uint32_t len;

        if (head < 0)
                probe_fail("virtio queue %u full", q->index);
        virtq_kick(q);
        if (!virtq_wait(q, &got, &len, VIRTIO_WAIT_TSC))
                probe_fail("virtio 0x%llx queue %u: no answer (status 0x%x)", U64(q->dev->base),
                           q->index, virtio_status(q->dev));
        if (got != head)
                probe_fail("virtio queue %u: head %u completed, %d expected", q->index, got, head);
        return len;
}

/*
 * `hostile`: a driver that breaks the rules, against virtio-rng (default) or virtio-blk
 * (probe.dev=blk). Each case (probe.case=all, or a comma-separated list) prints
 *   probe: hostile CASE: refused (WHAT WAS OBSERVED); device still works | works after reset
 * or `ACCEPTED (...)` when the device took what it should have refused. The scenario fails
 * at the end when any case was accepted or the device did not work afterwards.
 *
 * Request cases hand the device one chain whose data buffer is bad (a loop, a chain longer
 * than the queue, memory outside RAM / straddling its end / inside the MMIO hole, addr+len
 * past 2^64); ring cases publish an impossible avail index or head (the device must set
 * DEVICE_NEEDS_RESET and raise a configuration interrupt); register cases write in the wrong
 * state (queue registers before FEATURES_OK, DRIVER_OK before FEATURES_OK, features that were
 * not offered, no VERSION_1, a queue size that is not a power of two or too large, a ring in
 * the MMIO hole or misaligned); a notification storm; and a reset with a full ring in flight
 * (nothing may be written once Status reads 0). Runs in interrupt mode, so configuration
 * interrupts are seen.
 */
#include "alloc.h"
#include "cmdline.h"
#include "cpu.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define SECTOR        512u
#define BLK_T_IN      0
#define BLK_S_OK      0
#define BLK_S_UNSET   0xff
#define OBSERVE_TICKS 30 /* ~0.5 s of local APIC timer ticks */
#define STORM         2000
#define STORM_BAD_Q   200
#define FAR_AWAY      0x4000000000ull /* 256 GiB: no test VM has RAM there */

struct blk_hdr {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
};

struct hctx {
        struct vctx *c;
        struct virtio_dev *d;
        bool blk;
        struct virtq q;
        uint64_t wanted;
        uint8_t *buf;
        struct blk_hdr *hdr;
        uint8_t *status;
        uint64_t ram_top;
        unsigned cases, bad;
        char bad_names[256];
};

enum outcome { OBS_NONE, OBS_USED, OBS_RESET };

static void fresh(struct hctx *h)
{
        virtio_bring_up(h->d, h->wanted, &h->q, 1, 16);
}

static void set_desc(struct virtq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
        q->desc[i].addr = addr;
        q->desc[i].len = len;
        q->desc[i].flags = flags;
        q->desc[i].next = next;
}

/* Waits for a used element or DEVICE_NEEDS_RESET, a bounded number of timer ticks. */
static enum outcome observe(struct hctx *h, uint32_t *len)
{
        uint32_t t0 = virtio_ticks();
        uint16_t head;

        for (;;) {
                __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (virtq_get(&h->q, &head, len)) {
                        virtq_reset_free(&h->q);
                        return OBS_USED;
                }
                if (virtio_status(h->d) & VSTAT_NEEDS_RESET)
                        return OBS_RESET;
                if (virtio_ticks() - t0 >= OBSERVE_TICKS)
                        return OBS_NONE;
                virtq_want_irq(&h->q, true);
                virtio_idle(h->d);
        }
}

/* A good request: rng 16 bytes, blk a read of sector 0. */
static bool works(struct hctx *h)
{
        struct vbuf v[3];
        unsigned n = 0;
        uint16_t head;
        uint32_t len;

        memset(h->buf, 0, SECTOR);
        if (h->blk) {
                *h->hdr = (struct blk_hdr){BLK_T_IN, 0, 0};
                *h->status = BLK_S_UNSET;
                v[n++] = (struct vbuf){h->hdr, sizeof(*h->hdr), false};
                v[n++] = (struct vbuf){h->buf, SECTOR, true};
                v[n++] = (struct vbuf){h->status, 1, true};
        } else {
                v[n++] = (struct vbuf){h->buf, 16, true};
        }
        if (virtq_add(&h->q, v, n, false) < 0)
                return false;
        virtq_kick(&h->q);
        if (!virtq_wait(&h->q, &head, &len, VIRTIO_WAIT_TSC))
                return false;
        if (h->blk)
                return *h->status == BLK_S_OK;
        return len == 16 && !all_zero(h->buf, 16);
}

static void record(struct hctx *h, const char *name, bool refused, const char *what)
{
        const char *after;

        h->cases++;
        if (!(virtio_status(h->d) & (VSTAT_NEEDS_RESET | VSTAT_FAILED)) &&
            (virtio_status(h->d) & VSTAT_DRIVER_OK) && works(h)) {
                after = "device still works";
        } else {
                fresh(h);
                after = works(h) ? "works after reset" : "DOES NOT WORK after reset";
        }
        print("probe: hostile %s: %s (%s); %s\n", name, refused ? "refused" : "ACCEPTED", what,
              after);
        if (!refused || after[0] == 'D') {
                size_t l = str_len(h->bad_names);

                h->bad++;
                if (l + str_len(name) + 2 < sizeof(h->bad_names)) {
                        if (l)
                                h->bad_names[l++] = ' ';
                        memcpy(h->bad_names + l, name, str_len(name) + 1);
                }
        }
}

/* Reports how the device answered a bad request. */
static void judge_request(struct hctx *h, const char *name, bool need_reset)
{
        uint32_t len = 0, cfg0 = h->d->config_irqs;
        enum outcome o = observe(h, &len);
        char what[96];
        bool refused = false;

        if (o == OBS_RESET) {
                uint32_t t0 = virtio_ticks();

                while (h->d->config_irqs == cfg0 && virtio_ticks() - t0 < OBSERVE_TICKS)
                        virtio_idle(h->d);
                refused = h->d->config_irqs != cfg0;
                vctx_fmt(what, sizeof(what), "needs reset, %s",
                         refused ? "config interrupt" : "NO config interrupt");
        } else if (need_reset) {
                vctx_fmt(what, sizeof(what), "%s, no DEVICE_NEEDS_RESET",
                         o == OBS_USED ? "completed" : "ignored");
        } else if (o == OBS_NONE) {
                refused = true;
                vctx_fmt(what, sizeof(what), "ignored");
        } else if (h->blk) {
                refused = *h->status != BLK_S_OK;
                if (*h->status == BLK_S_UNSET)
                        vctx_fmt(what, sizeof(what), "used len %u, status not written", len);
                else
                        vctx_fmt(what, sizeof(what), "used len %u, status %u", len, *h->status);
        } else {
                refused = len == 0;
                vctx_fmt(what, sizeof(what), "used len %u", len);
        }
        record(h, name, refused, what);
}

/* One chain around a bad data buffer (blk: header, data, status). */
static void bad_buffer(struct hctx *h, const char *name, uint64_t addr, uint32_t len)
{
        struct virtq *q = &h->q;

        if (h->blk) {
                *h->hdr = (struct blk_hdr){BLK_T_IN, 0, 0};
                *h->status = BLK_S_UNSET;
                set_desc(q, 0, (uintptr_t)h->hdr, sizeof(*h->hdr), VDESC_F_NEXT, 1);
                set_desc(q, 1, addr, len, VDESC_F_WRITE | VDESC_F_NEXT, 2);
                set_desc(q, 2, (uintptr_t)h->status, 1, VDESC_F_WRITE, 0);
        } else {
                set_desc(q, 0, addr, len, VDESC_F_WRITE, 0);
        }
        virtq_publish(q, 0);
        virtq_kick(q);
        judge_request(h, name, false);
}

static void case_loop(struct hctx *h)
{
        struct virtq *q = &h->q;

        /* 0 -> 1 -> 0 -> ... */
        if (h->blk) {
                *h->status = BLK_S_UNSET;
                set_desc(q, 0, (uintptr_t)h->hdr, sizeof(*h->hdr), VDESC_F_NEXT, 1);
        } else {
                set_desc(q, 0, (uintptr_t)h->buf, 8, VDESC_F_WRITE | VDESC_F_NEXT, 1);
        }
        set_desc(q, 1, (uintptr_t)h->buf + 64, 8, VDESC_F_WRITE | VDESC_F_NEXT, 0);
        virtq_publish(q, 0);
        virtq_kick(q);
        judge_request(h, "loop", false);
}

/* An indirect table twice as long as the queue, every entry otherwise valid. */
static void case_long_chain(struct hctx *h)
{
        struct virtq *q = &h->q;
        uint16_t n = (uint16_t)(2 * q->size);
        struct vring_desc *t = alloc_zeroed(16ull * n, 16);
        uint8_t *data = alloc_mem((uint64_t)n * SECTOR, 4096);

        if (!q->use_indirect) {
                print("probe: hostile long-chain: skipped (no INDIRECT_DESC)\n");
                return;
        }
        for (uint16_t i = 0; i < n; i++) {
                t[i].addr = (uintptr_t)(data + (uint64_t)i * SECTOR);
                t[i].len = h->blk ? SECTOR : 4;
                t[i].flags = VDESC_F_WRITE | (i + 1 < n ? VDESC_F_NEXT : 0);
                t[i].next = (uint16_t)(i + 1);
        }
        if (h->blk) {
                *h->hdr = (struct blk_hdr){BLK_T_IN, 0, 0};
                *h->status = BLK_S_UNSET;
                t[0] = (struct vring_desc){(uintptr_t)h->hdr, sizeof(*h->hdr), VDESC_F_NEXT, 1};
                t[n - 1] = (struct vring_desc){(uintptr_t)h->status, 1, VDESC_F_WRITE, 0};
        }
        set_desc(q, 0, (uintptr_t)t, 16u * n, VDESC_F_INDIRECT, 0);
        virtq_publish(q, 0);
        virtq_kick(q);
        judge_request(h, "long-chain", false);
}

static void case_ring(struct hctx *h, const char *name, bool bad_idx)
{
        struct virtq *q = &h->q;

        if (bad_idx) {
                /* Claims size + 1 new entries: more than the ring can hold. */
                virtq_set_avail_idx(q, (uint16_t)(q->avail_idx + q->size + 1));
        } else {
                set_desc(q, 0, (uintptr_t)h->buf, 16, VDESC_F_WRITE, 0);
                virtq_publish(q, 0);
                /* ... then overwrite the ring entry with a head past the table. */
                q->avail[2 + (uint16_t)(q->avail_idx - 1) % q->size] = (uint16_t)(q->size + 3);
        }
        /* Unconditionally: the driver's own index did not move, so EVENT_IDX would say no. */
        vmb();
        virtio_write(h->d, VMMIO_QUEUE_NOTIFY, q->index);
        judge_request(h, name, true);
}

static void case_queue_size(struct hctx *h)
{
        struct virtio_dev *d = h->d;
        uint8_t *ring = alloc_zeroed(8192, 4096);
        uint32_t max, r3, rbig;
        char what[96];
        const char *err = virtio_begin(d);

        if (!err)
                err = virtio_negotiate(d, h->wanted);
        if (err)
                probe_fail("hostile queue-size: %s", err);
        virtio_write(d, VMMIO_QUEUE_SEL, 0);
        max = virtio_read(d, VMMIO_QUEUE_NUM_MAX);
        virtio_write(d, VMMIO_DESC_LOW, (uint32_t)(uintptr_t)ring);
        virtio_write(d, VMMIO_DESC_HIGH, 0);
        virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)ring + 4096);
        virtio_write(d, VMMIO_DRIVER_HIGH, 0);
        virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)ring + 6144);
        virtio_write(d, VMMIO_DEVICE_HIGH, 0);
        virtio_write(d, VMMIO_QUEUE_NUM, 3);
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        r3 = virtio_read(d, VMMIO_QUEUE_READY);
        virtio_write(d, VMMIO_QUEUE_READY, 0);
        virtio_write(d, VMMIO_QUEUE_NUM, 2 * max);
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        rbig = virtio_read(d, VMMIO_QUEUE_READY);
        vctx_fmt(what, sizeof(what), "QueueReady %u for size 3, %u for size %u", r3, rbig, 2 * max);
        record(h, "queue-size", r3 == 0 && rbig == 0, what);
}

/* A queue whose descriptor table is in the MMIO hole, or not 16-byte aligned. */
static void case_ring_address(struct hctx *h, const char *name, bool misaligned)
{
        struct virtio_dev *d = h->d;
        uint8_t *ring = alloc_zeroed(8192, 4096);
        uint64_t desc = misaligned ? (uintptr_t)ring + 8 : d->base;
        uint32_t ready;
        char what[96];
        const char *err = virtio_begin(d);

        if (!err)
                err = virtio_negotiate(d, h->wanted);
        if (err)
                probe_fail("hostile %s: %s", name, err);
        virtio_write(d, VMMIO_QUEUE_SEL, 0);
        virtio_write(d, VMMIO_QUEUE_NUM, 16);
        virtio_write(d, VMMIO_DESC_LOW, (uint32_t)desc);
        virtio_write(d, VMMIO_DESC_HIGH, (uint32_t)(desc >> 32));
        virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)ring + 4096);
        virtio_write(d, VMMIO_DRIVER_HIGH, 0);
        virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)ring + 6144);
        virtio_write(d, VMMIO_DEVICE_HIGH, 0);
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        ready = virtio_read(d, VMMIO_QUEUE_READY);
        vctx_fmt(what, sizeof(what), "QueueReady %u with the descriptor table %s", ready,
                 misaligned ? "8 bytes off its alignment" : "on the device's registers");
        record(h, name, ready == 0, what);
}

static uint64_t fingerprint(const void *p, uint64_t bytes)
{
        const volatile uint64_t *w = p;
        uint64_t h = 0;

        for (uint64_t i = 0; i < bytes / 8; i++)
                h = (h ^ w[i]) * 0x100000001b3ull;
        return h;
}

/* A full ring of requests, then a reset at once: once Status reads 0 the device must not
 * write the used ring or any buffer any more. */
static void case_reset_in_flight(struct hctx *h)
{
        struct virtq *q = &h->q;
        uint32_t per = h->blk ? 16 * SECTOR : 4096, n = q->size;
        uint8_t *data = alloc_mem((uint64_t)n * per, 4096);
        struct blk_hdr *hdrs = alloc_zeroed(sizeof(*hdrs) * n, 16);
        uint8_t *status = alloc_zeroed(n, 16);
        uint64_t before, after;
        uint16_t used_idx;
        uint32_t t0;
        char what[96];

        memset(status, BLK_S_UNSET, n);
        for (uint32_t i = 0; i < n; i++) {
                struct vbuf v[3];
                unsigned k = 0;

                if (h->blk) {
                        hdrs[i] = (struct blk_hdr){BLK_T_IN, 0, (uint64_t)i * 16};
                        v[k++] = (struct vbuf){&hdrs[i], sizeof(hdrs[i]), false};
                }
                v[k++] = (struct vbuf){data + (uint64_t)i * per, per, true};
                if (h->blk)
                        v[k++] = (struct vbuf){&status[i], 1, true};
                if (virtq_add(q, v, k, true) < 0)
                        break;
        }
        virtio_write(h->d, VMMIO_QUEUE_NOTIFY, q->index);
        virtio_reset(h->d);
        used_idx = q->used[1];
        before = fingerprint(data, (uint64_t)n * per) ^ fingerprint(status, n);
        t0 = virtio_ticks();
        while (virtio_ticks() - t0 < 3)
                virtio_idle(h->d);
        after = fingerprint(data, (uint64_t)n * per) ^ fingerprint(status, n);
        vctx_fmt(what, sizeof(what), "%s after the reset",
                 used_idx == q->used[1] && before == after ? "nothing written"
                                                           : "WRITES AFTER THE RESET");
        record(h, "reset-in-flight", used_idx == q->used[1] && before == after, what);
}

static void case_storm(struct hctx *h)
{
        uint16_t used0 = h->q.used[1];
        char what[96];
        bool quiet;

        for (unsigned i = 0; i < STORM; i++)
                virtio_write(h->d, VMMIO_QUEUE_NOTIFY, 0);
        for (unsigned i = 0; i < STORM_BAD_Q; i++)
                virtio_write(h->d, VMMIO_QUEUE_NOTIFY, 5);
        quiet =
            h->q.used[1] == used0 && !(virtio_status(h->d) & (VSTAT_NEEDS_RESET | VSTAT_FAILED));
        vctx_fmt(what, sizeof(what), "%u + %u notifications, %s", STORM, STORM_BAD_Q,
                 quiet ? "nothing completed" : "SOMETHING HAPPENED");
        record(h, "notify-storm", quiet, what);
}

static void case_early_queue(struct hctx *h)
{
        struct virtio_dev *d = h->d;
        uint8_t *ring = alloc_zeroed(8192, 4096);
        uint32_t ready;
        char what[96];

        if (virtio_begin(d))
                probe_fail("hostile early-queue: reset failed");
        /* ACKNOWLEDGE | DRIVER only: queue registers are not writable yet. */
        virtio_write(d, VMMIO_QUEUE_SEL, 0);
        virtio_write(d, VMMIO_QUEUE_NUM, 8);
        virtio_write(d, VMMIO_DESC_LOW, (uint32_t)(uintptr_t)ring);
        virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)ring + 4096);
        virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)ring + 6144);
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        ready = virtio_read(d, VMMIO_QUEUE_READY);
        vctx_fmt(what, sizeof(what), "QueueReady %u before FEATURES_OK", ready);
        record(h, "early-queue", ready == 0, what);
}

static void case_early_driver_ok(struct hctx *h)
{
        struct virtio_dev *d = h->d;
        uint8_t s;
        char what[96];

        if (virtio_begin(d))
                probe_fail("hostile early-driver-ok: reset failed");
        virtio_write(d, VMMIO_STATUS, VSTAT_ACK | VSTAT_DRIVER | VSTAT_DRIVER_OK);
        s = virtio_status(d);
        vctx_fmt(what, sizeof(what), "status 0x%x", s);
        record(h, "early-driver-ok", !(s & VSTAT_DRIVER_OK), what);
}

static void case_features(struct hctx *h, bool no_version_1)
{
        struct virtio_dev *d = h->d;
        uint64_t f;
        unsigned bit = 0;
        uint8_t s;
        char what[96];

        if (virtio_begin(d))
                probe_fail("hostile features: reset failed");
        f = d->offered & (h->wanted | VBIT(VF_VERSION_1));
        if (no_version_1) {
                f &= ~VBIT(VF_VERSION_1);
        } else {
                while (bit < 64 && (d->offered & VBIT(bit)))
                        bit++;
                f |= VBIT(bit);
        }
        s = virtio_write_features(d, f);
        if (no_version_1)
                vctx_fmt(what, sizeof(what), "status 0x%x", s);
        else
                vctx_fmt(what, sizeof(what), "bit %u, status 0x%x", bit, s);
        record(h, no_version_1 ? "no-version-1" : "unoffered-feature", !(s & VSTAT_FEATURES_OK),
               what);
}

static bool selected(const struct boot_info *bi, const char *name)
{
        size_t len, n = str_len(name);
        const char *v = cmdline_find(bi->cmdline, "probe.case", &len);
        const char *end;

        if (!v || (len == 3 && memcmp(v, "all", 3) == 0))
                return true;
        for (end = v + len; v < end;) {
                const char *comma = v;

                while (comma < end && *comma != ',')
                        comma++;
                if ((size_t)(comma - v) == n && memcmp(v, name, n) == 0)
                        return true;
                v = comma + 1;
        }
        return false;
}

static uint64_t ram_top(const struct boot_info *bi)
{
        uint64_t top = 0;

        for (unsigned i = 0; i < bi->memmap_count && i < BOOT_MEMMAP_MAX; i++) {
                const struct boot_mem_range *r = &bi->memmap[i];

                if (r->type == X86_E820_RAM && r->addr + r->size > top && r->addr < 0x100000000ull)
                        top = r->addr + r->size;
        }
        return top;
}

void scenario_hostile(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct hctx *h = alloc_zeroed(sizeof(*h), 64);
        size_t len;
        const char *dev = cmdline_find(bi->cmdline, "probe.dev", &len);
        uint32_t dlen = 0;

        h->c = c;
        h->blk = dev && len == 3 && memcmp(dev, "blk", 3) == 0;
        h->d = vctx_need(c, h->blk ? VID_BLOCK : VID_RNG, 0, h->blk ? "virtio-blk" : "virtio-rng");
        h->wanted = vctx_ring_features(c);
        h->buf = alloc_zeroed(4096, 4096);
        h->hdr = alloc_zeroed(sizeof(*h->hdr), 16);
        h->status = alloc_zeroed(1, 1);
        h->ram_top = ram_top(bi);
        vctx_mode(c, h->d, true);
        fresh(h);
        vctx_print_mode("hostile", h->d);
        dlen = h->blk ? SECTOR : 16;

        if (selected(bi, "loop"))
                case_loop(h);
        if (selected(bi, "long-chain"))
                case_long_chain(h);
        if (selected(bi, "outside-ram"))
                bad_buffer(h, "outside-ram", FAR_AWAY, dlen);
        if (selected(bi, "ram-end"))
                bad_buffer(h, "ram-end", h->ram_top - 8, dlen);
        if (selected(bi, "mmio-hole"))
                bad_buffer(h, "mmio-hole", h->d->base, dlen);
        if (selected(bi, "len-overflow"))
                bad_buffer(h, "len-overflow", 0xfffffffffffff000ull, 0x2000);
        if (selected(bi, "bad-head"))
                case_ring(h, "bad-head", false);
        if (selected(bi, "bad-avail-idx"))
                case_ring(h, "bad-avail-idx", true);
        if (selected(bi, "notify-storm"))
                case_storm(h);
        if (selected(bi, "reset-in-flight"))
                case_reset_in_flight(h);
        if (selected(bi, "queue-size"))
                case_queue_size(h);
        if (selected(bi, "ring-in-mmio-hole"))
                case_ring_address(h, "ring-in-mmio-hole", false);
        if (selected(bi, "ring-misaligned"))
                case_ring_address(h, "ring-misaligned", true);
        if (selected(bi, "early-queue"))
                case_early_queue(h);
        if (selected(bi, "early-driver-ok"))
                case_early_driver_ok(h);
        if (selected(bi, "unoffered-feature"))
                case_features(h, false);
        if (selected(bi, "no-version-1"))
                case_features(h, true);
        vctx_check_irqs(h->d);
        virtio_reset(h->d);
        virtio_irq_disable(h->d);
        if (h->cases == 0)
                probe_fail("no hostile case selected");
        if (h->bad)
                probe_fail("%u of %u cases: %s", h->bad, h->cases, h->bad_names);
        print("probe: hostile %u cases refused\n", h->cases);
}

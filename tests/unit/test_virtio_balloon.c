/* virtio-balloon through the in-process driver: inflation releases guest pages to the host,
 * invalid PFNs are counted and skipped, the target is a configuration change, and the
 * statistics buffer is held until the polling timer fires.
 *
 * Guest RAM is 16 MiB around a small hole: [0, 12 MiB) and [16 MiB, 20 MiB), so PFNs
 * 0xc00..0xfff are in the hole and 0x1400 is past the end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/balloon.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM        MiB(16)
#define HOLE_START MiB(12)
#define HOLE_END   MiB(16)
#define HEAP_END   MiB(4)      /* the driver's rings and buffers */
#define PAGES      0x800000ull /* test pages from here */
#define PAGE       4096u

#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ   2

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK

static const uint64_t STATS_F = VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ);
static const uint64_t OOM_F = VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_balloon *b;
        struct virtio_mmio *t;
        struct fake_irq irq;
        struct vdriver d;
        struct ownership *own; /* a protected VM's map, or NULL */
};

static int setup_with(void **state, uint32_t amount_mib, bool oom, uint32_t interval)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};

        f->mem = test_mem_new(MEM, HOLE_START, HOLE_END);
        assert_int_equal(hostmem_create(f->mem, "balloon", &f->hm), 0);
        assert_int_equal(event_loop_create(&f->loop), 0);
        struct virtio_balloon_config c = {.name = "balloon0",
                                          .amount_mib = amount_mib,
                                          .deflate_on_oom = oom,
                                          .stats_polling_interval_s = interval,
                                          .loop = f->loop};
        assert_int_equal(virtio_balloon_create(&c, &err, &f->b), 0);
        fake_irq_init(&f->irq);
        vdrv_init(&f->d, f->mem, 0x10000, HEAP_END);
        struct virtio_mmio_config mc = {
            .vdev = virtio_balloon_device(f->b), .mem = f->hm, .irq = fake_irq_line(&f->irq)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        *state = f;
        return 0;
}

static int setup(void **state)
{
        return setup_with(state, 4, false, 0);
}

static int setup_stats(void **state)
{
        return setup_with(state, 4, true, 1);
}

static int setup_slow_stats(void **state)
{
        return setup_with(state, 4, false, 5);
}

static int teardown(void **state)
{
        struct fx *f = *state;

        virtio_mmio_destroy(f->t);
        virtio_balloon_destroy(f->b);
        event_loop_destroy(f->loop);
        hostmem_destroy(f->hm);
        if (f->own)
                ownership_destroy(f->own);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static struct virtio_balloon_stats bstats(struct fx *f)
{
        struct virtio_balloon_stats s;

        virtio_balloon_get_stats(f->b, &s);
        return s;
}

static uint32_t cfg32(struct fx *f, uint32_t off)
{
        uint8_t b[4];

        vdrv_read_config(&f->d, off, b, 4);
        return get_le32(b);
}

static void cfg_write(struct fx *f, uint32_t off, const void *data, uint32_t len)
{
        virtio_mmio_bus_ops()->write(f->t, VIRTIO_MMIO_CONFIG + off, data, len);
}

/* Every queue the device has, all offered features. */
static void bring_up(struct fx *f)
{
        unsigned nq = (vdrv_device_features(&f->d) & STATS_F) ? 3 : 2;

        vdrv_bring_up(&f->d, ~0ull, nq, 64);
}

/* A readable buffer holding the PFNs. */
static gpa_t pfn_buf(struct fx *f, const uint32_t *pfns, unsigned n)
{
        gpa_t a = vdrv_alloc(&f->d, 4ull * n + 1, 8);

        for (unsigned i = 0; i < n; i++) {
                uint8_t b[4];

                put_le32(b, pfns[i]);
                vdrv_mem_write(&f->d, a + 4ull * i, b, 4);
        }
        return a;
}

/* Sends the PFNs on queue q in one buffer and checks that it comes back. */
static void send_pfns(struct fx *f, unsigned q, const uint32_t *pfns, unsigned n)
{
        struct vdrv_buf b = {.addr = pfn_buf(f, pfns, n), .len = 4 * n};
        uint16_t head = vdrv_add(&f->d, q, &b, 1), id;
        uint32_t len;

        vdrv_kick(&f->d, q);
        assert_true(vdrv_get_used(&f->d, q, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 0);
}

/* EVENT_IDX is negotiated: like a driver re-enabling callbacks, ask for an interrupt at the
 * next used element of queue q. */
static void want_interrupt(struct fx *f, unsigned q)
{
        struct vdrv_queue *vq = &f->d.q[q];
        uint8_t ev[2];

        put_le16(ev, vq->used_seen);
        vdrv_mem_write(&f->d, vq->avail + 4 + 2ull * vq->size, ev, 2);
}

static void fill_page(struct fx *f, gpa_t gpa, int byte)
{
        assert_int_equal(guest_mem_fill(f->mem, gpa, byte, PAGE), 0);
}

static bool page_is(struct fx *f, gpa_t gpa, uint8_t byte)
{
        uint8_t buf[PAGE];

        assert_int_equal(guest_mem_read(f->mem, gpa, buf, PAGE), 0);
        for (unsigned i = 0; i < PAGE; i++)
                if (buf[i] != byte)
                        return false;
        return true;
}

/* ---- identity and configuration ---- */

static void test_identity_without_stats(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);
        uint8_t b[8];

        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
        assert_true(feat & VIRTIO_BIT(VIRTIO_F_VERSION_1));
        assert_false(feat & VIRTIO_BIT(VIRTIO_BALLOON_F_MUST_TELL_HOST));
        assert_false(feat & STATS_F);
        assert_false(feat & OOM_F);
        for (uint32_t q = 0; q < 4; q++) {
                vdrv_write32(&f->d, VIRTIO_MMIO_QUEUE_SEL, q);
                assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX),
                                 q < 2 ? VIRTIO_BALLOON_QUEUE_SIZE : 0);
        }
        /* num_pages = 4 MiB in 4 KiB pages; actual = 0; at every width. */
        assert_int_equal(cfg32(f, 0), 1024);
        assert_int_equal(cfg32(f, 4), 0);
        vdrv_read_config(&f->d, 0, b, 8);
        assert_int_equal(get_le64(b), 1024);
        vdrv_read_config(&f->d, 1, b, 2);
        assert_int_equal(get_le16(b), 4);
        vdrv_read_config(&f->d, 1, b, 1);
        assert_int_equal(b[0], 4);
        vdrv_read_config(&f->d, 8, b, 4);
        assert_int_equal(get_le32(b), 0);
}

static void test_identity_with_stats_and_oom(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);

        assert_true(feat & STATS_F);
        assert_true(feat & OOM_F);
        assert_false(feat & VIRTIO_BIT(VIRTIO_BALLOON_F_MUST_TELL_HOST));
        for (uint32_t q = 0; q < 4; q++) {
                vdrv_write32(&f->d, VIRTIO_MMIO_QUEUE_SEL, q);
                assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX),
                                 q < 3 ? VIRTIO_BALLOON_QUEUE_SIZE : 0);
        }
        /* MUST_TELL_HOST is refused if a driver asks for it anyway. */
        assert_int_equal(vdrv_negotiate(&f->d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                                                   VIRTIO_BIT(VIRTIO_BALLOON_F_MUST_TELL_HOST)),
                         S_ACK | S_DRV);
}

static void test_config_writes_only_actual(void **state)
{
        struct fx *f = *state;
        uint8_t v[8];

        bring_up(f);
        put_le32(v, 300);
        cfg_write(f, 4, v, 4);
        assert_int_equal(cfg32(f, 4), 300);
        assert_int_equal(bstats(f).actual_pages, 300);
        /* A 16-bit write into the upper half of actual. */
        put_le16(v, 1);
        cfg_write(f, 6, v, 2);
        assert_int_equal(cfg32(f, 4), 0x1012c);
        /* num_pages is the device's: writes to it (or spanning it) are ignored. */
        put_le32(v, 7);
        cfg_write(f, 0, v, 4);
        put_le64(v, 0x0000000500000005ull);
        cfg_write(f, 0, v, 8);
        cfg_write(f, 2, v, 4);
        cfg_write(f, 8, v, 4); /* past the space */
        assert_int_equal(cfg32(f, 0), 1024);
        assert_int_equal(cfg32(f, 4), 0x1012c);
        assert_int_equal(bstats(f).bad_requests, 4);
        assert_int_equal(bstats(f).target_pages, 1024);
}

static void test_target_signals_config(void **state)
{
        struct fx *f = *state;
        uint32_t gen = vdrv_read32(&f->d, VIRTIO_MMIO_CONFIG_GENERATION);

        /* Before the driver runs: the value and the generation change, no interrupt. */
        virtio_balloon_set_target(f->b, 8);
        assert_int_equal(cfg32(f, 0), 2048);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
        assert_int_equal(f->irq.raises, 0);

        bring_up(f);
        virtio_balloon_set_target(f->b, 1);
        assert_int_equal(cfg32(f, 0), 256);
        assert_int_equal(bstats(f).target_pages, 256);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_CONFIG_GENERATION), gen + 2);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        /* Deflating to 0 is a change too; a huge target saturates. */
        virtio_balloon_set_target(f->b, 0);
        assert_int_equal(cfg32(f, 0), 0);
        assert_int_equal(f->irq.raises, 2);
        virtio_balloon_set_target(f->b, UINT32_MAX);
        assert_int_equal(cfg32(f, 0), UINT32_MAX);
}

/* ---- inflate and deflate ---- */

static void test_inflate_releases_pages(void **state)
{
        struct fx *f = *state;
        uint32_t pfns[72];
        unsigned n = 0;
        uint64_t before, after;

        bring_up(f);
        /* 64 consecutive pages (one discard) and 8 scattered ones, including high RAM. */
        for (unsigned i = 0; i < 64; i++)
                pfns[n++] = (uint32_t)(PAGES / PAGE) + i;
        for (unsigned i = 0; i < 7; i++)
                pfns[n++] = (uint32_t)(PAGES / PAGE) + 100 + 3 * i;
        pfns[n++] = (uint32_t)(HOLE_END / PAGE) + 5;
        for (unsigned i = 0; i < n; i++)
                fill_page(f, (gpa_t)pfns[i] * PAGE, 0x5a);
        fill_page(f, PAGES + 64 * PAGE, 0x5a); /* a neighbour that must survive */
        struct vdrv_buf b = {.addr = pfn_buf(f, pfns, n), .len = 4 * n};
        uint16_t id;
        uint32_t len;
        before = guest_mem_resident_bytes(f->mem);

        vdrv_add(&f->d, INFLATEQ, &b, 1);
        vdrv_kick(&f->d, INFLATEQ);
        assert_true(vdrv_get_used(&f->d, INFLATEQ, &id, &len));
        after = guest_mem_resident_bytes(f->mem);
        for (unsigned i = 0; i < n; i++)
                assert_true(page_is(f, (gpa_t)pfns[i] * PAGE, 0));
        assert_true(page_is(f, PAGES + 64 * PAGE, 0x5a));
        assert_true(before - after >= 72ull * PAGE);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.released_bytes, 72ull * PAGE);
        assert_int_equal(s.inflate_count, 1);
        assert_int_equal(s.invalid_pfns, 0);
        assert_int_equal(s.bad_requests, 0);
        assert_int_equal(f->irq.raises, 1);
        /* The guest may use a released page again: it comes back zero-filled. */
        fill_page(f, PAGES, 0x77);
        assert_true(page_is(f, PAGES, 0x77));
}

static void test_inflate_invalid_pfns_skipped(void **state)
{
        struct fx *f = *state;
        const uint32_t pfns[] = {
            0x900,      /* valid */
            0xc00,      /* the first page of the hole */
            0xfff,      /* the last page of the hole */
            0x1400,     /* just past RAM */
            0xffffffff, /* far past RAM */
            0x901,      /* valid */
            0xbfe,      /* valid, then a run running into the hole: */
            0xbff,      /* valid */
            0xc00,      /* hole */
        };

        bring_up(f);
        fill_page(f, 0x900000, 1);
        fill_page(f, 0x901000, 1);
        fill_page(f, 0xbfe000, 1);
        fill_page(f, 0xbff000, 1);
        send_pfns(f, INFLATEQ, pfns, ARRAY_SIZE(pfns));
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.invalid_pfns, 5);
        assert_int_equal(s.released_bytes, 4ull * PAGE);
        assert_int_equal(s.bad_requests, 0);
        assert_true(page_is(f, 0x900000, 0));
        assert_true(page_is(f, 0x901000, 0));
        assert_true(page_is(f, 0xbfe000, 0));
        assert_true(page_is(f, 0xbff000, 0));
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
}

/* Two RAM regions that touch (no hole between them): a run of consecutive PFNs across the
 * boundary cannot be released in one call, yet every page of it is released. */
static int setup_adjacent_regions(void **state)
{
        struct fx *f;

        setup_with(state, 4, false, 0);
        f = *state;
        virtio_mmio_destroy(f->t);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        f->mem = test_mem_new(MEM, MiB(8), MiB(8));
        assert_int_equal(hostmem_create(f->mem, "balloon", &f->hm), 0);
        vdrv_init(&f->d, f->mem, 0x10000, HEAP_END);
        struct virtio_mmio_config mc = {
            .vdev = virtio_balloon_device(f->b), .mem = f->hm, .irq = fake_irq_line(&f->irq)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        return 0;
}

static void test_inflate_run_across_regions(void **state)
{
        struct fx *f = *state;
        const uint32_t pfns[] = {0x7fe, 0x7ff, 0x800, 0x801};

        assert_int_equal(guest_mem_region_count(f->mem), 2);
        bring_up(f);
        for (unsigned i = 0; i < 4; i++)
                fill_page(f, (gpa_t)pfns[i] * PAGE, 2);
        send_pfns(f, INFLATEQ, pfns, 4);
        for (unsigned i = 0; i < 4; i++)
                assert_true(page_is(f, (gpa_t)pfns[i] * PAGE, 0));
        assert_int_equal(bstats(f).released_bytes, 4ull * PAGE);
        assert_int_equal(bstats(f).invalid_pfns, 0);
}

static void test_inflate_malformed_requests(void **state)
{
        struct fx *f = *state;
        const uint32_t pfn = 0x900;
        gpa_t a;
        uint16_t id;
        uint32_t len;

        bring_up(f);
        fill_page(f, 0x900000, 1);
        a = pfn_buf(f, &pfn, 1);
        /* A length that is not a multiple of 4. */
        struct vdrv_buf odd = {.addr = a, .len = 6};
        vdrv_add(&f->d, INFLATEQ, &odd, 1);
        /* The PFNs in a device-writable buffer. */
        struct vdrv_buf wr = {.addr = a, .len = 4, .write = true};
        vdrv_add(&f->d, INFLATEQ, &wr, 1);
        /* More PFNs than any driver sends at once (the buffer is RAM, but far too long). */
        struct vdrv_buf big = {.addr = 0, .len = 4 * (VIRTIO_BALLOON_MAX_PFNS_PER_REQUEST + 1)};
        vdrv_add(&f->d, INFLATEQ, &big, 1);
        /* A buffer outside RAM: a malformed chain. */
        struct vdrv_buf out = {.addr = HOLE_START, .len = 4};
        vdrv_add(&f->d, INFLATEQ, &out, 1);
        vdrv_kick(&f->d, INFLATEQ);
        for (int i = 0; i < 4; i++) {
                assert_true(vdrv_get_used(&f->d, INFLATEQ, &id, &len));
                assert_int_equal(len, 0);
        }
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.bad_requests, 4);
        assert_int_equal(s.inflate_count, 4);
        assert_int_equal(s.released_bytes, 0);
        assert_true(page_is(f, 0x900000, 1));
        /* Still working. */
        send_pfns(f, INFLATEQ, &pfn, 1);
        assert_true(page_is(f, 0x900000, 0));
}

/* The PFN array split over descriptors, one PFN straddling the boundary. */
static void test_inflate_pfns_across_segments(void **state)
{
        struct fx *f = *state;
        const uint32_t pfns[] = {0x910, 0x911, 0x920};
        uint8_t raw[12];
        uint16_t id;
        uint32_t len;

        bring_up(f);
        for (unsigned i = 0; i < 3; i++) {
                put_le32(raw + 4 * i, pfns[i]);
                fill_page(f, (gpa_t)pfns[i] * PAGE, 9);
        }
        gpa_t a = vdrv_alloc(&f->d, 6, 8), b = vdrv_alloc(&f->d, 6, 8);
        vdrv_mem_write(&f->d, a, raw, 6);
        vdrv_mem_write(&f->d, b, raw + 6, 6);
        struct vdrv_buf bufs[2] = {{.addr = a, .len = 6}, {.addr = b, .len = 6}};
        vdrv_add(&f->d, INFLATEQ, bufs, 2);
        vdrv_kick(&f->d, INFLATEQ);
        assert_true(vdrv_get_used(&f->d, INFLATEQ, &id, &len));
        for (unsigned i = 0; i < 3; i++)
                assert_true(page_is(f, (gpa_t)pfns[i] * PAGE, 0));
        assert_int_equal(bstats(f).released_bytes, 3ull * PAGE);
}

static void test_deflate(void **state)
{
        struct fx *f = *state;
        const uint32_t pfns[] = {0x930, 0x931};
        uint16_t id;
        uint32_t len;

        bring_up(f);
        fill_page(f, 0x930000, 3);
        send_pfns(f, INFLATEQ, pfns, 2);
        unsigned irqs = f->irq.raises;
        send_pfns(f, DEFLATEQ, pfns, 2);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.deflate_count, 1);
        assert_int_equal(s.released_bytes, 2ull * PAGE); /* deflating gives nothing back */
        assert_int_equal(f->irq.raises, irqs + 1);
        /* The guest uses its pages again. */
        fill_page(f, 0x930000, 4);
        assert_true(page_is(f, 0x930000, 4));
        /* A malformed deflate request is counted, not fatal. */
        struct vdrv_buf odd = {.addr = pfn_buf(f, pfns, 1), .len = 3};
        vdrv_add(&f->d, DEFLATEQ, &odd, 1);
        vdrv_kick(&f->d, DEFLATEQ);
        assert_true(vdrv_get_used(&f->d, DEFLATEQ, &id, &len));
        assert_int_equal(bstats(f).bad_requests, 1);
        assert_int_equal(bstats(f).deflate_count, 2);
}

/* CC-13 (with CC-3): on a protected VM inflation releases shared granules only; a private
 * page is refused like a PFN outside RAM, and a private PFN array releases nothing. */
static void test_cc13_inflate_releases_shared_granules_only(void **state)
{
        struct fx *f = *state;
        const uint32_t pfns[] = {0x950, 0x951, 0x952, 0x953};

        assert_int_equal(ownership_create(f->mem, false, &f->own), 0);
        hostmem_set_ownership(f->hm, f->own);
        bring_up(f);
        for (unsigned i = 0; i < 4; i++)
                fill_page(f, (gpa_t)pfns[i] * PAGE, 0x33);
        assert_int_equal(ownership_make_private(f->own, 0x951000, PAGE), 0);
        send_pfns(f, INFLATEQ, pfns, 4);
        assert_true(page_is(f, 0x950000, 0));
        assert_true(page_is(f, 0x951000, 0x33)); /* the private page is untouched */
        assert_true(page_is(f, 0x952000, 0));
        assert_true(page_is(f, 0x953000, 0));
        assert_int_equal(bstats(f).invalid_pfns, 1);
        assert_int_equal(bstats(f).released_bytes, 3ull * PAGE);

        /* The PFN array itself in a private page: a bad request, nothing released. */
        fill_page(f, 0x950000, 0x44);
        gpa_t a = vdrv_alloc(&f->d, PAGE, PAGE);
        uint8_t raw[4];
        put_le32(raw, 0x950);
        vdrv_mem_write(&f->d, a, raw, 4);
        assert_int_equal(ownership_make_private(f->own, a, PAGE), 0);
        struct vdrv_buf b = {.addr = a, .len = 4};
        uint16_t id;
        uint32_t len;
        vdrv_add(&f->d, INFLATEQ, &b, 1);
        vdrv_kick(&f->d, INFLATEQ);
        assert_true(vdrv_get_used(&f->d, INFLATEQ, &id, &len));
        assert_true(page_is(f, 0x950000, 0x44));
        assert_int_equal(bstats(f).bad_requests, 1);
        assert_int_equal(bstats(f).released_bytes, 3ull * PAGE);
}

static void test_broken_ring_needs_reset(void **state)
{
        struct fx *f = *state;
        uint8_t idx[2];

        bring_up(f);
        put_le16(idx, 1000); /* far more than the ring holds */
        vdrv_mem_write(&f->d, f->d.q[INFLATEQ].avail + 2, idx, 2);
        vdrv_kick(&f->d, INFLATEQ);
        assert_true(vdrv_read32(&f->d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(f->irq.raises, 1);
}

/* ---- statistics ---- */

struct stat_entry {
        uint16_t tag;
        uint64_t val;
};

static void write_stats(struct fx *f, gpa_t a, const struct stat_entry *e, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                uint8_t raw[10];

                put_le16(raw, e[i].tag);
                put_le64(raw + 2, e[i].val);
                vdrv_mem_write(&f->d, a + 10ull * i, raw, 10);
        }
}

/* Posts a statistics buffer (readable) and kicks; returns its head. */
static uint16_t post_stats(struct fx *f, gpa_t a, const struct stat_entry *e, unsigned n)
{
        write_stats(f, a, e, n);
        struct vdrv_buf b = {.addr = a, .len = 10 * n};
        uint16_t head = vdrv_add(&f->d, STATSQ, &b, 1);

        vdrv_kick(&f->d, STATSQ);
        return head;
}

static const struct stat_entry first[] = {
    {0, 11},              /* SWAP_IN */
    {1, 22},              /* SWAP_OUT */
    {4, 0x1234567890ull}, /* MEMFREE */
    {5, 0x4000000000ull}, /* MEMTOT */
    {15, 7},              /* DIRECT_RECLAIM */
    {16, 5},              /* unknown: ignored */
    {0xffff, 5},          /* unknown: ignored */
};

static void test_stats_held_until_timer(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        bring_up(f);
        gpa_t a = vdrv_alloc(&f->d, 200, 8);
        uint16_t head = post_stats(f, a, first, ARRAY_SIZE(first));
        /* Parsed at once, but held. */
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.stats_updates_count, 1);
        assert_int_equal(s.guest.valid, (1u << 0) | (1u << 1) | (1u << 4) | (1u << 5) | (1u << 15));
        assert_int_equal(s.guest.values[0], 11);
        assert_int_equal(s.guest.values[1], 22);
        assert_int_equal(s.guest.values[4], 0x1234567890ull);
        assert_int_equal(s.guest.values[5], 0x4000000000ull);
        assert_int_equal(s.guest.values[15], 7);
        assert_int_equal(f->irq.raises, 0);

        /* The one-second timer fires: the buffer comes back (empty) with an interrupt. */
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 0);
        assert_int_equal(f->irq.raises, 1);

        /* The driver refills it: a fresh snapshot replaces the old one. */
        want_interrupt(f, STATSQ);
        const struct stat_entry second[] = {{4, 99}, {6, 1000}};
        post_stats(f, a, second, 2);
        s = bstats(f);
        assert_int_equal(s.stats_updates_count, 2);
        assert_int_equal(s.guest.valid, (1u << 4) | (1u << 6));
        assert_int_equal(s.guest.values[4], 99);
        assert_int_equal(s.guest.values[6], 1000);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        /* A tick with no buffer held does nothing. */
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(f->irq.raises, 2);
}

/* Linux primes the statistics queue and kicks it before DRIVER_OK (a notification the
 * transport drops): the device finds the buffer when it is activated. The same holds for
 * any queue. */
static void test_buffers_posted_before_driver_ok(void **state)
{
        struct fx *f = *state;
        const uint32_t pfn = 0x940;
        uint16_t id;
        uint32_t len;

        assert_true(vdrv_negotiate(&f->d, vdrv_device_features(&f->d)) & S_FOK);
        for (unsigned q = 0; q < 3; q++)
                assert_true(vdrv_setup_queue(&f->d, q, 64));
        gpa_t a = vdrv_alloc(&f->d, 100, 8);
        post_stats(f, a, first, 2);
        fill_page(f, (gpa_t)pfn * PAGE, 1);
        struct vdrv_buf b = {.addr = pfn_buf(f, &pfn, 1), .len = 4};
        vdrv_add(&f->d, INFLATEQ, &b, 1);
        vdrv_kick(&f->d, INFLATEQ);
        assert_int_equal(bstats(f).stats_updates_count, 0);
        assert_true(page_is(f, (gpa_t)pfn * PAGE, 1));

        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        assert_int_equal(bstats(f).stats_updates_count, 1);
        assert_int_equal(bstats(f).guest.values[1], 22);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_true(vdrv_get_used(&f->d, INFLATEQ, &id, &len));
        assert_true(page_is(f, (gpa_t)pfn * PAGE, 0));
}

static void test_second_stats_buffer_returns_first(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        bring_up(f);
        uint16_t h1 = post_stats(f, vdrv_alloc(&f->d, 100, 8), first, 1);
        uint16_t h2 = post_stats(f, vdrv_alloc(&f->d, 100, 8), first + 1, 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, h1);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(bstats(f).guest.valid, 1u << 1);
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, h2);
}

static void test_stats_interval_change(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        /* Created with 5 s: nothing fires within 1.5 s. */
        bring_up(f);
        gpa_t a = vdrv_alloc(&f->d, 100, 8);
        uint16_t head = post_stats(f, a, first, 3);
        assert_int_equal(event_loop_run_once(f->loop, 1500), 0);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        /* The same value changes nothing. */
        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 5), 0);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        /* A new interval: an immediate update, then the new period. */
        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 1), 0);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(f->irq.raises, 1);
        head = post_stats(f, a, first, 3);
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, head);
        /* Statistics cannot be turned off. */
        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 0), -EINVAL);
}

static void test_stats_cannot_be_enabled_later(void **state)
{
        struct fx *f = *state;

        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 1), -EINVAL);
        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 0), 0);
        bring_up(f);
        assert_int_equal(virtio_balloon_set_stats_interval(f->b, 10), -EINVAL);
        assert_int_equal(event_loop_run_once(f->loop, 100), 0);
}

static void test_reset_forgets_stats_buffer(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;
        uint8_t v[4];

        bring_up(f);
        post_stats(f, vdrv_alloc(&f->d, 100, 8), first, 2);
        put_le32(v, 123);
        cfg_write(f, 4, v, 4);
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        /* The timer is stopped: nothing fires, nothing is written to the old ring. */
        assert_int_equal(event_loop_run_once(f->loop, 1500), 0);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(cfg32(f, 4), 0);                /* a reset guest holds no pages */
        assert_int_equal(bstats(f).guest.values[0], 11); /* the last values stay */

        /* A new driver: only its own buffer ever comes back. */
        bring_up(f);
        uint16_t head = post_stats(f, vdrv_alloc(&f->d, 100, 8), first + 2, 1);
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
        assert_int_equal(id, head);
        assert_false(vdrv_get_used(&f->d, STATSQ, &id, &len));
}

/* A driver that did not accept STATS_VQ gets no timer and no statistics. */
static void test_stats_not_negotiated(void **state)
{
        struct fx *f = *state;

        vdrv_bring_up(&f->d, ~STATS_F, 3, 64);
        post_stats(f, vdrv_alloc(&f->d, 100, 8), first, 1);
        assert_int_equal(bstats(f).stats_updates_count, 0);
        assert_int_equal(event_loop_run_once(f->loop, 1500), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_identity_without_stats, setup, teardown),
            cmocka_unit_test_setup_teardown(test_identity_with_stats_and_oom, setup_stats,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_config_writes_only_actual, setup, teardown),
            cmocka_unit_test_setup_teardown(test_target_signals_config, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inflate_releases_pages, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inflate_invalid_pfns_skipped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inflate_run_across_regions, setup_adjacent_regions,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_inflate_malformed_requests, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inflate_pfns_across_segments, setup, teardown),
            cmocka_unit_test_setup_teardown(test_deflate, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cc13_inflate_releases_shared_granules_only, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_broken_ring_needs_reset, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stats_held_until_timer, setup_stats, teardown),
            cmocka_unit_test_setup_teardown(test_buffers_posted_before_driver_ok, setup_stats,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_second_stats_buffer_returns_first, setup_stats,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_stats_interval_change, setup_slow_stats, teardown),
            cmocka_unit_test_setup_teardown(test_stats_cannot_be_enabled_later, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reset_forgets_stats_buffer, setup_stats, teardown),
            cmocka_unit_test_setup_teardown(test_stats_not_negotiated, setup_stats, teardown),
        };
        log_set_level(LOG_LEVEL_ERROR); /* the guest-error lines are expected here */
        return cmocka_run_group_tests(tests, NULL, NULL);
}

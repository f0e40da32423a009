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
#include <unistd.h>

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

/* The device on mem (anonymous RAM when NULL), configured by c (its loop is the
 * fixture's). */
static int setup_cfg(void **state, struct guest_mem *mem, struct virtio_balloon_config c)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};

        f->mem = mem ? mem : test_mem_new(MEM, HOLE_START, HOLE_END);
        assert_int_equal(hostmem_create(f->mem, "balloon", &f->hm), 0);
        assert_int_equal(event_loop_create(&f->loop), 0);
        c.name = "balloon0";
        c.loop = f->loop;
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

static int setup_with(void **state, uint32_t amount_mib, bool oom, uint32_t interval)
{
        return setup_cfg(state, NULL,
                         (struct virtio_balloon_config){.amount_mib = amount_mib,
                                                        .deflate_on_oom = oom,
                                                        .stats_polling_interval_s = interval});
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

/* One request on queue q made of n buffers; checks that it comes back, used with 0 bytes. */
static void send_bufs(struct fx *f, unsigned q, const struct vdrv_buf *bufs, unsigned n)
{
        uint16_t head = vdrv_add(&f->d, q, bufs, n), id;
        uint32_t len;

        vdrv_kick(&f->d, q);
        assert_true(vdrv_get_used(&f->d, q, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 0);
}

/* Sends the PFNs on queue q in one buffer and checks that it comes back. */
static void send_pfns(struct fx *f, unsigned q, const uint32_t *pfns, unsigned n)
{
        struct vdrv_buf b = {.addr = pfn_buf(f, pfns, n), .len = 4 * n};

        send_bufs(f, q, &b, 1);
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

/* ---- Linux's order, end to end ---- */

#define LX_PAGES 768u /* test pages at PAGES: [8 MiB, 11 MiB) */
#define LX_BATCH 256u /* VIRTIO_BALLOON_ARRAY_PFNS_MAX */

/* The byte page i of the test area holds while the guest owns it (never 0). */
static uint8_t lx_byte(unsigned i, unsigned round)
{
        return (uint8_t)(1 + (i * 7 + round * 31) % 254);
}

/* Linux's tell_host: the one PFN array (vb->pfns, shared by both queues) rewritten, one
 * buffer, a kick, and the buffer back before the next request. */
static void lx_tell(struct fx *f, gpa_t arr, unsigned q, const uint32_t *pfns, unsigned n)
{
        uint8_t b[4 * LX_BATCH];

        for (unsigned i = 0; i < n; i++)
                put_le32(b + 4 * i, pfns[i]);
        vdrv_mem_write(&f->d, arr, b, 4 * n);
        struct vdrv_buf buf = {.addr = arr, .len = 4 * n};
        send_bufs(f, q, &buf, 1);
}

/* Every test page in the balloon reads zero; every other one holds what the guest wrote. */
static void lx_check(struct fx *f, const bool *in_balloon, const unsigned *round)
{
        for (unsigned i = 0; i < LX_PAGES; i++)
                assert_true(
                    page_is(f, PAGES + (gpa_t)i * PAGE, in_balloon[i] ? 0 : lx_byte(i, round[i])));
}

/*
 * The guest memory corruption hunted in the real-Linux balloon scenario, from the outside:
 * a driver in Linux's order (statistics buffer posted and kicked before DRIVER_OK, the
 * statistics timer returning it meanwhile, inflation in 256-page batches of scattered
 * PFNs, a deflate whose pages the guest writes again at once, a second inflation that
 * takes some of those pages again) must see exactly the inflated pages discarded, and
 * nothing else: not a neighbour, not a deflated page reused, not the PFN array.
 */
static void test_linux_order_discards_only_ballooned_pages(void **state)
{
        struct fx *f = *state;
        static bool in_balloon[LX_PAGES];
        static unsigned round[LX_PAGES];
        uint32_t pfns[LX_BATCH];
        uint16_t id;
        uint32_t len;

        memset(in_balloon, 0, sizeof(in_balloon));
        memset(round, 0, sizeof(round));
        for (unsigned i = 0; i < LX_PAGES; i++)
                fill_page(f, PAGES + (gpa_t)i * PAGE, lx_byte(i, 0));
        gpa_t arr = vdrv_alloc(&f->d, 4 * LX_BATCH, 8);
        gpa_t st = vdrv_alloc(&f->d, 200, 8);

        /* Probe: the statistics buffer goes in before DRIVER_OK. */
        assert_true(vdrv_negotiate(&f->d, vdrv_device_features(&f->d)) & S_FOK);
        for (unsigned q = 0; q < 3; q++)
                assert_true(vdrv_setup_queue(&f->d, q, 64));
        post_stats(f, st, first, ARRAY_SIZE(first));
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        assert_int_equal(bstats(f).stats_updates_count, 1);

        /* Inflate 2 batches: pages 2k+1 from the top down, then pages 2k. */
        for (unsigned batch = 0; batch < 2; batch++) {
                for (unsigned j = 0; j < LX_BATCH; j++) {
                        unsigned i = batch == 0 ? LX_PAGES - 1 - 2 * j : 2 * j;

                        pfns[j] = (uint32_t)(PAGES / PAGE) + i;
                        in_balloon[i] = true;
                }
                lx_tell(f, arr, INFLATEQ, pfns, LX_BATCH);
                lx_check(f, in_balloon, round);
                /* The statistics timer returns the buffer; the driver refills it. */
                assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
                assert_true(vdrv_get_used(&f->d, STATSQ, &id, &len));
                post_stats(f, st, first, 2);
        }

        /* Deflate the first batch; the guest writes those pages again at once. */
        for (unsigned j = 0; j < LX_BATCH; j++) {
                unsigned i = LX_PAGES - 1 - 2 * j;

                pfns[j] = (uint32_t)(PAGES / PAGE) + i;
                in_balloon[i] = false;
        }
        lx_tell(f, arr, DEFLATEQ, pfns, LX_BATCH);
        for (unsigned j = 0; j < LX_BATCH; j++) {
                unsigned i = pfns[j] - (uint32_t)(PAGES / PAGE);

                round[i] = 1;
                fill_page(f, PAGES + (gpa_t)i * PAGE, lx_byte(i, 1));
        }
        lx_check(f, in_balloon, round);

        /* Inflate again: half of the reused pages and the untouched upper third. */
        unsigned n = 0;
        for (unsigned i = 0; i < LX_PAGES && n < LX_BATCH; i++)
                if (!in_balloon[i] && (i >= 2 * LX_BATCH || i % 4 == 1)) {
                        pfns[n++] = (uint32_t)(PAGES / PAGE) + i;
                        in_balloon[i] = true;
                }
        lx_tell(f, arr, INFLATEQ, pfns, n);
        lx_check(f, in_balloon, round);

        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.inflate_count, 3);
        assert_int_equal(s.deflate_count, 1);
        assert_int_equal(s.released_bytes, (2ull * LX_BATCH + n) * PAGE);
        assert_int_equal(s.invalid_pfns, 0);
        assert_int_equal(s.bad_requests, 0);
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

/* ---- free page reporting ---- */

static const uint64_t HINT_F = VIRTIO_BIT(VIRTIO_BALLOON_F_FREE_PAGE_HINT);
static const uint64_t REPORT_F = VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_REPORTING);
static const uint64_t POISON_F = VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_POISON);

/* Queues with every feature negotiated and no statistics: 2 free page hints, 3 reports. */
#define HINTQ   2
#define REPORTQ 3

#define CFG_CMD_ID 8
#define CFG_POISON 12

static int setup_free(void **state)
{
        return setup_cfg(
            state, NULL,
            (struct virtio_balloon_config){.free_page_reporting = true, .free_page_hinting = true});
}

static int setup_free_stats(void **state)
{
        return setup_cfg(state, NULL,
                         (struct virtio_balloon_config){.stats_polling_interval_s = 1,
                                                        .free_page_reporting = true,
                                                        .free_page_hinting = true});
}

/* RAM mapped privately from a memory file of 0x3c bytes (a restored snapshot's). */
static int setup_free_file(void **state)
{
        char path[] = "/tmp/test_balloon_memXXXXXX";
        int fd = mkstemp(path);
        struct guest_mem *mem;
        struct error err = {0};
        uint8_t *buf = malloc(MiB(1));

        assert_true(fd >= 0);
        unlink(path);
        memset(buf, 0x3c, MiB(1));
        for (unsigned i = 0; i < 16; i++)
                assert_int_equal(pwrite(fd, buf, MiB(1), (off_t)(i * MiB(1))), (ssize_t)MiB(1));
        free(buf);
        struct guest_mem_spec spec = {.size = MEM,
                                      .hole_start = HOLE_START,
                                      .hole_end = HOLE_END,
                                      .flags = GUEST_MEM_FILE,
                                      .file = fd};
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        close(fd);
        return setup_cfg(state, mem, (struct virtio_balloon_config){.free_page_reporting = true});
}

/* Brings the device up with the features offered & wanted, every queue the device has set
 * up. */
static void bring_up_with(struct fx *f, uint64_t wanted)
{
        vdrv_bring_up(&f->d, wanted, virtio_balloon_device(f->b)->nr_queues, 64);
}

static void fill(struct fx *f, gpa_t gpa, uint64_t len, int byte)
{
        for (uint64_t off = 0; off < len; off += PAGE)
                fill_page(f, gpa + off, byte);
}

static bool pages_are(struct fx *f, gpa_t gpa, uint64_t len, uint8_t byte)
{
        for (uint64_t off = 0; off < len; off += PAGE)
                if (!page_is(f, gpa + off, byte))
                        return false;
        return true;
}

static void test_identity_free_pages(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);

        assert_true(feat & HINT_F);
        assert_true(feat & REPORT_F);
        assert_true(feat & POISON_F); /* with reporting */
        assert_false(feat & STATS_F);
        for (uint32_t q = 0; q < 5; q++) {
                vdrv_write32(&f->d, VIRTIO_MMIO_QUEUE_SEL, q);
                assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX),
                                 q < 4 ? VIRTIO_BALLOON_QUEUE_SIZE : 0);
        }
        /* free_page_hint_cmd_id starts at STOP; poison_val at 0; nothing past 16 bytes. */
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_STOP);
        assert_int_equal(cfg32(f, CFG_POISON), 0);
        assert_int_equal(cfg32(f, 16), 0);
}

/* Reporting alone: no hint queue, and PAGE_POISON still offered. */
static void test_identity_reporting_only(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);

        assert_false(feat & HINT_F);
        assert_true(feat & REPORT_F);
        assert_true(feat & POISON_F);
        vdrv_write32(&f->d, VIRTIO_MMIO_QUEUE_SEL, 2);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_BALLOON_QUEUE_SIZE);
        vdrv_write32(&f->d, VIRTIO_MMIO_QUEUE_SEL, 3);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

static void test_report_discards_exactly_the_reported_ranges(void **state)
{
        struct fx *f = *state;
        const gpa_t a = PAGES, b2 = PAGES + MiB(1), c = HOLE_END + MiB(1);
        uint64_t before, after;

        bring_up_with(f, ~0ull);
        /* Three ranges (one in high RAM), each between two neighbours that must survive. */
        fill(f, a - PAGE, MiB(1) + 2 * PAGE, 0x5a);
        fill(f, b2 + 16 * PAGE, 4 * PAGE, 0x5a);
        fill(f, c - PAGE, 3 * PAGE, 0x5a);
        before = guest_mem_resident_bytes(f->mem);
        const struct vdrv_buf r[] = {{.addr = a, .len = MiB(1), .write = true},
                                     {.addr = b2 + 17 * PAGE, .len = 2 * PAGE, .write = true},
                                     {.addr = c, .len = PAGE, .write = true}};
        send_bufs(f, REPORTQ, r, 3);
        after = guest_mem_resident_bytes(f->mem);
        assert_true(pages_are(f, a, MiB(1), 0));
        assert_true(pages_are(f, b2 + 17 * PAGE, 2 * PAGE, 0));
        assert_true(page_is(f, c, 0));
        assert_true(page_is(f, a - PAGE, 0x5a));
        assert_true(page_is(f, a + MiB(1), 0x5a));
        assert_true(page_is(f, b2 + 16 * PAGE, 0x5a));
        assert_true(page_is(f, b2 + 19 * PAGE, 0x5a));
        assert_true(page_is(f, c - PAGE, 0x5a));
        assert_true(page_is(f, c + PAGE, 0x5a));
        assert_true(before - after >= MiB(1) + 3 * PAGE);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.report_count, 3);
        assert_int_equal(s.report_freed, MiB(1) + 3 * PAGE);
        assert_int_equal(s.report_fails, 0);
        assert_int_equal(s.report_kept, 0);
        assert_int_equal(s.bad_requests, 0);
        /* Not inflation: the balloon's own counters stay. */
        assert_int_equal(s.released_bytes, 0);
        assert_int_equal(s.inflate_count, 0);
        assert_int_equal(f->irq.raises, 1);
        /* The guest reuses a reported page: it is zero-filled, then holds what it writes. */
        fill_page(f, a, 0x77);
        assert_true(page_is(f, a, 0x77));
}

/* Ranges a hostile driver reports: refused (counted), never rounded into a neighbour, and
 * the device keeps working. */
static void test_report_hostile_ranges(void **state)
{
        struct fx *f = *state;
        const gpa_t a = PAGES;
        uint16_t id;
        uint32_t len;

        bring_up_with(f, ~0ull);
        fill(f, a, 8 * PAGE, 0x11);
        /* Unaligned start, unaligned length: failures inside a valid request. */
        const struct vdrv_buf r[] = {/* device-readable: still a range */
                                     {.addr = a + 4 * PAGE, .len = PAGE, .write = false},
                                     {.addr = a + 1, .len = PAGE, .write = true},
                                     {.addr = a + PAGE, .len = PAGE + 512, .write = true},
                                     {.addr = a + 3 * PAGE, .len = 0, .write = true}};
        send_bufs(f, REPORTQ, r, 4);
        assert_true(pages_are(f, a, 4 * PAGE, 0x11));
        assert_true(page_is(f, a + 4 * PAGE, 0));
        assert_true(pages_are(f, a + 5 * PAGE, 3 * PAGE, 0x11));
        /* An empty buffer is no range at all (the ring drops it). */
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.report_count, 3);
        assert_int_equal(s.report_fails, 2);
        assert_int_equal(s.report_freed, PAGE);

        /* Outside RAM (the hole), past the end, across the hole, longer than RAM: the
         * chain is malformed as a whole, nothing is discarded. */
        const struct vdrv_buf bad[][2] = {
            {{.addr = a + 6 * PAGE, .len = PAGE, .write = true},
             {.addr = HOLE_START, .len = PAGE, .write = true}},
            {{.addr = a + 6 * PAGE, .len = PAGE, .write = true},
             {.addr = HOLE_END + MiB(4), .len = PAGE, .write = true}},
            {{.addr = a + 6 * PAGE, .len = PAGE, .write = true},
             {.addr = HOLE_START - PAGE, .len = 2 * PAGE, .write = true}},
            {{.addr = a + 6 * PAGE, .len = PAGE, .write = true},
             {.addr = 0, .len = 0xfffff000u, .write = true}},
        };
        for (unsigned i = 0; i < ARRAY_SIZE(bad); i++)
                vdrv_add(&f->d, REPORTQ, bad[i], 2);
        vdrv_kick(&f->d, REPORTQ);
        for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
                assert_true(vdrv_get_used(&f->d, REPORTQ, &id, &len));
                assert_int_equal(len, 0);
        }
        assert_true(page_is(f, a + 6 * PAGE, 0x11));
        s = bstats(f);
        assert_int_equal(s.bad_requests, ARRAY_SIZE(bad));
        assert_int_equal(s.report_freed, PAGE);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
        /* Still working. */
        const struct vdrv_buf ok = {.addr = a + 6 * PAGE, .len = 2 * PAGE, .write = true};
        send_bufs(f, REPORTQ, &ok, 1);
        assert_true(pages_are(f, a + 6 * PAGE, 2 * PAGE, 0));
}

/* The queues are numbered by what the driver negotiated (5.5.2): without statistics the
 * free page queue is 2 and reporting 3; without hinting too, reporting is 2. A queue that
 * no negotiated feature owns is not one the device uses. */
static void test_queue_numbering_follows_negotiation(void **state)
{
        struct fx *f = *state;
        const struct vdrv_buf r = {.addr = PAGES, .len = 4 * PAGE, .write = true};
        uint16_t id;
        uint32_t len;

        /* Everything: 2 statistics, 3 hints, 4 reports. */
        bring_up_with(f, ~0ull);
        fill(f, PAGES, 4 * PAGE, 1);
        send_bufs(f, 4, &r, 1);
        assert_true(pages_are(f, PAGES, 4 * PAGE, 0));
        assert_int_equal(bstats(f).report_count, 1);

        /* No statistics: reports on 3. */
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        bring_up_with(f, ~STATS_F);
        fill(f, PAGES, 4 * PAGE, 1);
        send_bufs(f, 3, &r, 1);
        assert_true(pages_are(f, PAGES, 4 * PAGE, 0));
        assert_int_equal(bstats(f).report_count, 2);
        /* Queue 4 has no role now: nothing is used there, the notification is counted. */
        fill(f, PAGES, 4 * PAGE, 1);
        vdrv_add(&f->d, 4, &r, 1);
        vdrv_kick(&f->d, 4);
        assert_false(vdrv_get_used(&f->d, 4, &id, &len));
        assert_true(pages_are(f, PAGES, 4 * PAGE, 1));
        assert_int_equal(bstats(f).bad_requests, 1);

        /* Neither statistics nor hints: reports on 2. */
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        bring_up_with(f, ~(STATS_F | HINT_F));
        send_bufs(f, 2, &r, 1);
        assert_true(pages_are(f, PAGES, 4 * PAGE, 0));
        assert_int_equal(bstats(f).report_count, 3);
        /* Statistics need queue 2 no longer: no timer fires for it. */
        assert_int_equal(event_loop_run_once(f->loop, 1500), 0);
}

/* PAGE_POISON: a guest that poisons its free pages with a non-zero value gets its reports
 * acknowledged and the pages kept; with 0 (init_on_free) they are discarded. poison_val is
 * the driver's to write before DRIVER_OK only. */
static void test_report_poison(void **state)
{
        struct fx *f = *state;
        const struct vdrv_buf r = {.addr = PAGES, .len = 2 * PAGE, .write = true};
        uint8_t v[4];

        assert_true(vdrv_negotiate(&f->d, vdrv_device_features(&f->d)) & S_FOK);
        for (unsigned q = 0; q < 4; q++)
                assert_true(vdrv_setup_queue(&f->d, q, 64));
        put_le32(v, 0xaaaaaaaa);
        cfg_write(f, CFG_POISON, v, 4);
        assert_int_equal(cfg32(f, CFG_POISON), 0xaaaaaaaa);
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        fill(f, PAGES, 2 * PAGE, 0xaa);
        send_bufs(f, REPORTQ, &r, 1);
        assert_true(pages_are(f, PAGES, 2 * PAGE, 0xaa));
        assert_int_equal(bstats(f).report_kept, 1);
        assert_int_equal(bstats(f).report_freed, 0);
        /* Not while the device runs. */
        put_le32(v, 0);
        cfg_write(f, CFG_POISON, v, 4);
        assert_int_equal(cfg32(f, CFG_POISON), 0xaaaaaaaa);
        assert_int_equal(bstats(f).bad_requests, 1);
        /* free_page_hint_cmd_id is never the driver's. */
        cfg_write(f, CFG_CMD_ID, v + 0, 4);
        assert_int_equal(bstats(f).bad_requests, 2);

        /* A new driver that zeroes free pages (poison 0): discarded, they read zero. */
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(cfg32(f, CFG_POISON), 0);
        bring_up_with(f, ~0ull);
        send_bufs(f, REPORTQ, &r, 1);
        assert_true(pages_are(f, PAGES, 2 * PAGE, 0));
        assert_int_equal(bstats(f).report_freed, 2 * PAGE);
}

/* Over a memory file a discarded page shows the file again: fine for a driver that treats
 * reported pages as uninitialised, not for one that asked them to read poison_val 0. */
static void test_report_over_a_memory_file(void **state)
{
        struct fx *f = *state;
        const struct vdrv_buf r = {.addr = PAGES, .len = 2 * PAGE, .write = true};

        bring_up_with(f, ~POISON_F);
        fill(f, PAGES, 2 * PAGE, 0x99);
        send_bufs(f, 2, &r, 1);
        assert_true(pages_are(f, PAGES, 2 * PAGE, 0x3c)); /* the file's bytes */
        assert_int_equal(bstats(f).report_freed, 2 * PAGE);

        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        bring_up_with(f, ~0ull); /* PAGE_POISON, poison_val 0 */
        fill(f, PAGES, 2 * PAGE, 0);
        send_bufs(f, 2, &r, 1);
        assert_true(pages_are(f, PAGES, 2 * PAGE, 0));
        assert_int_equal(bstats(f).report_kept, 1);
        assert_int_equal(bstats(f).report_freed, 2 * PAGE);
}

/* CC-14: on a protected VM a reported range is discarded granule by granule around its
 * private granules, which are refused (kept, counted as failures and as access
 * violations); a request whose ring or buffers are private fails as usual. */
static void test_cc14_report_discards_shared_granules_only(void **state)
{
        struct fx *f = *state;
        struct hostmem_stats hs;

        assert_int_equal(ownership_create(f->mem, false, &f->own), 0);
        hostmem_set_ownership(f->hm, f->own);
        bring_up_with(f, ~0ull);
        fill(f, PAGES, 16 * PAGE, 0x33);
        assert_int_equal(ownership_make_private(f->own, PAGES + 3 * PAGE, PAGE), 0);
        assert_int_equal(ownership_make_private(f->own, PAGES + 10 * PAGE, 2 * PAGE), 0);
        const struct vdrv_buf r = {.addr = PAGES, .len = 16 * PAGE, .write = true};
        send_bufs(f, REPORTQ, &r, 1);
        for (unsigned i = 0; i < 16; i++)
                assert_true(
                    page_is(f, PAGES + i * PAGE, (i == 3 || i == 10 || i == 11) ? 0x33 : 0));
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.report_count, 1);
        assert_int_equal(s.report_fails, 3);
        assert_int_equal(s.report_freed, 13ull * PAGE);
        hostmem_get_stats(f->hm, &hs);
        assert_true(hs.violations >= 3);

        /* All private: nothing released. */
        fill(f, PAGES + MiB(1), 4 * PAGE, 0x44);
        assert_int_equal(ownership_make_private(f->own, PAGES + MiB(1), 4 * PAGE), 0);
        const struct vdrv_buf p = {.addr = PAGES + MiB(1), .len = 4 * PAGE, .write = true};
        send_bufs(f, REPORTQ, &p, 1);
        assert_true(pages_are(f, PAGES + MiB(1), 4 * PAGE, 0x44));
        assert_int_equal(bstats(f).report_fails, 7);
        assert_int_equal(bstats(f).report_freed, 13ull * PAGE);

        /* Hints the same way. */
        fill(f, PAGES + MiB(2), 4 * PAGE, 0x55);
        assert_int_equal(ownership_make_private(f->own, PAGES + MiB(2) + PAGE, PAGE), 0);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        gpa_t a = vdrv_alloc(&f->d, 4, 4);
        uint8_t v[4];
        put_le32(v, 2);
        vdrv_mem_write(&f->d, a, v, 4);
        const struct vdrv_buf h[] = {{.addr = a, .len = 4},
                                     {.addr = PAGES + MiB(2), .len = 4 * PAGE, .write = true}};
        send_bufs(f, HINTQ, h, 2);
        for (unsigned i = 0; i < 4; i++)
                assert_true(page_is(f, PAGES + MiB(2) + i * PAGE, i == 1 ? 0x55 : 0));
        assert_int_equal(bstats(f).hint_fails, 1);
        assert_int_equal(bstats(f).hint_freed, 3ull * PAGE);
}

/* CC-14: the retries around private granules are bounded per request (65536 granules):
 * past the bound a refused range fails whole; no private byte is ever touched. */
static void test_cc14_private_retries_bounded(void **state)
{
        struct fx *f = *state;
        const gpa_t a = HEAP_END;
        const uint32_t len = (uint32_t)(HOLE_START - HEAP_END); /* 8 MiB: 2048 granules */
        struct vdrv_buf r[40];

        assert_int_equal(ownership_create(f->mem, false, &f->own), 0);
        hostmem_set_ownership(f->hm, f->own);
        bring_up_with(f, ~0ull);
        fill_page(f, a + 5 * PAGE, 0x66);
        assert_int_equal(ownership_make_private(f->own, a + 5 * PAGE, PAGE), 0);
        /* The same range 40 times in one request: 32 x 2048 granules are retried one by
         * one, the last 8 ranges fail whole. */
        for (unsigned i = 0; i < 40; i++)
                r[i] = (struct vdrv_buf){.addr = a, .len = len, .write = true};
        send_bufs(f, REPORTQ, r, 40);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.report_count, 40);
        assert_int_equal(s.report_freed, 32ull * (len - PAGE));
        assert_int_equal(s.report_fails, 40);
        assert_true(page_is(f, a + 5 * PAGE, 0x66));
        /* The next request has its own bound. */
        send_bufs(f, REPORTQ, r, 1);
        assert_int_equal(bstats(f).report_freed, 33ull * (len - PAGE));
}

/* ---- free page hinting ---- */

static void hint_cmd(struct fx *f, unsigned q, uint32_t cmd)
{
        gpa_t a = vdrv_alloc(&f->d, 4, 4);
        uint8_t v[4];

        put_le32(v, cmd);
        vdrv_mem_write(&f->d, a, v, 4);
        const struct vdrv_buf b = {.addr = a, .len = 4};
        send_bufs(f, q, &b, 1);
}

static void hint_range(struct fx *f, unsigned q, gpa_t gpa, uint32_t len)
{
        const struct vdrv_buf b = {.addr = gpa, .len = len, .write = true};

        send_bufs(f, q, &b, 1);
}

static struct virtio_balloon_hinting hstatus(struct fx *f)
{
        struct virtio_balloon_hinting h;

        assert_int_equal(virtio_balloon_hinting_status(f->b, &h), 0);
        return h;
}

/* A round the way Linux runs it: the host's id, the guest's id, hints, the guest's STOP,
 * and (acknowledge_on_stop) the device's DONE. */
static void test_hint_round_acknowledged_on_stop(void **state)
{
        struct fx *f = *state;
        unsigned raises;

        bring_up_with(f, ~0ull);
        struct virtio_balloon_hinting h = hstatus(f);
        assert_int_equal(h.host_cmd, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_false(h.has_guest_cmd);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 2);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        vdrv_write32(&f->d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
        assert_int_equal(hstatus(f).host_cmd, 2);

        fill(f, PAGES, MiB(1) + PAGE, 0x21);
        hint_cmd(f, HINTQ, 2);
        h = hstatus(f);
        assert_true(h.has_guest_cmd);
        assert_int_equal(h.guest_cmd, 2);
        hint_range(f, HINTQ, PAGES, MiB(1) / 2);
        hint_range(f, HINTQ, PAGES + MiB(1) / 2, MiB(1) / 2);
        assert_true(pages_are(f, PAGES, MiB(1), 0));
        assert_true(page_is(f, PAGES + MiB(1), 0x21));
        assert_int_equal(cfg32(f, CFG_CMD_ID), 2);
        raises = f->irq.raises;
        hint_cmd(f, HINTQ, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_DONE);
        assert_true(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
        assert_true(f->irq.raises > raises);
        h = hstatus(f);
        assert_int_equal(h.host_cmd, VIRTIO_BALLOON_CMD_ID_DONE);
        assert_int_equal(h.guest_cmd, VIRTIO_BALLOON_CMD_ID_STOP);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.hint_count, 2);
        assert_int_equal(s.hint_freed, MiB(1));
        assert_int_equal(s.hint_fails, 0);
        assert_int_equal(s.hint_ignored, 0);
        assert_int_equal(s.bad_requests, 0);

        /* The guest reuses its pages now: hints that still come are ignored. */
        fill(f, PAGES, PAGE, 0x22);
        hint_range(f, HINTQ, PAGES, PAGE);
        assert_true(page_is(f, PAGES, 0x22));
        assert_int_equal(bstats(f).hint_ignored, 1);

        /* The next round has the next id; the guest's id and hints may share a request. */
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 3);
        gpa_t a = vdrv_alloc(&f->d, 4, 4);
        uint8_t v[4];
        put_le32(v, 3);
        vdrv_mem_write(&f->d, a, v, 4);
        const struct vdrv_buf both[] = {{.addr = a, .len = 4},
                                        {.addr = PAGES, .len = PAGE, .write = true}};
        send_bufs(f, HINTQ, both, 2);
        assert_true(page_is(f, PAGES, 0));
        assert_int_equal(bstats(f).hint_freed, MiB(1) + PAGE);
}

/* Hints that belong to no current round are ignored: before any id, under an id the host
 * never gave, under an earlier round's id; and a STOP that closes an earlier round does not
 * end the current one. */
static void test_hint_stale_command_ids(void **state)
{
        struct fx *f = *state;

        bring_up_with(f, ~0ull);
        fill(f, PAGES, 8 * PAGE, 0x31);
        /* No round yet. */
        hint_cmd(f, HINTQ, 2);
        hint_range(f, HINTQ, PAGES, PAGE);
        assert_true(page_is(f, PAGES, 0x31));

        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0); /* 2 */
        /* A bogus id, then hints: ignored. */
        hint_cmd(f, HINTQ, 77);
        hint_range(f, HINTQ, PAGES + PAGE, PAGE);
        assert_true(page_is(f, PAGES + PAGE, 0x31));
        assert_int_equal(hstatus(f).guest_cmd, 77);
        /* The guest catches up with round 2, hints one page, then the host starts round
         * 3 before the guest's STOP. */
        hint_cmd(f, HINTQ, 2);
        hint_range(f, HINTQ, PAGES + 2 * PAGE, PAGE);
        assert_true(page_is(f, PAGES + 2 * PAGE, 0));
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0); /* 3 */
        /* Round 2's late hints and its STOP: ignored, and round 3 goes on. */
        hint_range(f, HINTQ, PAGES + 3 * PAGE, PAGE);
        assert_true(page_is(f, PAGES + 3 * PAGE, 0x31));
        hint_cmd(f, HINTQ, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 3);
        /* Round 3 itself. */
        hint_cmd(f, HINTQ, 3);
        hint_range(f, HINTQ, PAGES + 4 * PAGE, 2 * PAGE);
        hint_cmd(f, HINTQ, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_true(pages_are(f, PAGES + 4 * PAGE, 2 * PAGE, 0));
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_DONE);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.hint_count, 5);
        assert_int_equal(s.hint_ignored, 3);
        assert_int_equal(s.hint_freed, 3ull * PAGE);
        assert_true(page_is(f, PAGES + 6 * PAGE, 0x31));
}

/* Without acknowledge_on_stop the round stays open after the guest's STOP (the guest keeps
 * its hinted pages) until the host stops it; a stopped round's hints are ignored. */
static void test_hint_stop_by_the_host(void **state)
{
        struct fx *f = *state;
        unsigned raises;

        bring_up_with(f, ~0ull);
        fill(f, PAGES, 4 * PAGE, 0x41);
        assert_int_equal(virtio_balloon_hinting_start(f->b, false), 0);
        hint_cmd(f, HINTQ, 2);
        hint_range(f, HINTQ, PAGES, PAGE);
        hint_cmd(f, HINTQ, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 2);
        assert_int_equal(hstatus(f).host_cmd, 2);
        assert_int_equal(hstatus(f).guest_cmd, VIRTIO_BALLOON_CMD_ID_STOP);
        raises = f->irq.raises;
        assert_int_equal(virtio_balloon_hinting_stop(f->b), 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_DONE);
        assert_int_equal(f->irq.raises, raises + 1);
        /* After DONE the device must not touch hinted pages (5.5.6.6). */
        hint_cmd(f, HINTQ, 2);
        hint_range(f, HINTQ, PAGES + PAGE, PAGE);
        assert_true(page_is(f, PAGES, 0));
        assert_true(pages_are(f, PAGES + PAGE, 3 * PAGE, 0x41));
        /* Stopping a stopped device again is harmless. */
        assert_int_equal(virtio_balloon_hinting_stop(f->b), 0);
        assert_int_equal(bstats(f).hint_ignored, 1);
}

/* What a driver may not send, and the host's calls that cannot work. */
static void test_hint_refusals(void **state)
{
        struct fx *f = *state;
        const uint32_t three = 3;

        /* The driver is not running yet. */
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), -ENODEV);
        assert_int_equal(virtio_balloon_hinting_stop(f->b), -ENODEV);
        assert_int_equal(hstatus(f).host_cmd, VIRTIO_BALLOON_CMD_ID_STOP);
        /* A driver that declined free page hinting: no round can run. */
        bring_up_with(f, ~HINT_F);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), -EPROTO);
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);

        bring_up_with(f, ~0ull);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        fill(f, PAGES, PAGE, 0x51);
        /* DONE is the device's; an id that is not 4 bytes; an id in a writable buffer is a
         * hint (of 4 bytes: not whole pages). */
        hint_cmd(f, HINTQ, VIRTIO_BALLOON_CMD_ID_DONE);
        const struct vdrv_buf odd = {.addr = pfn_buf(f, &three, 1), .len = 3};
        send_bufs(f, HINTQ, &odd, 1);
        const struct vdrv_buf wr = {.addr = pfn_buf(f, &three, 1), .len = 4, .write = true};
        send_bufs(f, HINTQ, &wr, 1);
        struct virtio_balloon_stats s = bstats(f);
        assert_int_equal(s.bad_requests, 2);
        assert_int_equal(s.hint_count, 1);
        assert_false(hstatus(f).has_guest_cmd);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 2);
        /* The round goes on. */
        hint_cmd(f, HINTQ, 2);
        hint_range(f, HINTQ, PAGES, PAGE);
        assert_true(page_is(f, PAGES, 0));
}

/* Hinting not configured: every call says so. */
static void test_hint_not_configured(void **state)
{
        struct fx *f = *state;
        struct virtio_balloon_hinting h;

        bring_up(f);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), -EOPNOTSUPP);
        assert_int_equal(virtio_balloon_hinting_stop(f->b), -EOPNOTSUPP);
        assert_int_equal(virtio_balloon_hinting_status(f->b, &h), -EOPNOTSUPP);
}

/* A reset forgets the round: the id reads STOP, the guest's id is gone; the next round
 * still gets a new id. */
static void test_hint_reset(void **state)
{
        struct fx *f = *state;

        bring_up_with(f, ~0ull);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        hint_cmd(f, HINTQ, 2);
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_STOP);
        assert_false(hstatus(f).has_guest_cmd);
        bring_up_with(f, ~0ull);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 3);
}

/* With statistics too the free page queue is 3 and reporting 4 (the full layout). */
static void test_hint_with_statistics(void **state)
{
        struct fx *f = *state;

        bring_up_with(f, ~0ull);
        fill(f, PAGES, 2 * PAGE, 0x61);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        hint_cmd(f, 3, 2);
        hint_range(f, 3, PAGES, PAGE);
        hint_cmd(f, 3, VIRTIO_BALLOON_CMD_ID_STOP);
        assert_true(page_is(f, PAGES, 0));
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_DONE);
        hint_range(f, 4, PAGES + PAGE, PAGE); /* a report */
        assert_true(page_is(f, PAGES + PAGE, 0));
        assert_int_equal(bstats(f).report_count, 1);
}

/* ---- snapshots ---- */

/* Saves the device and restores it into a fresh one (same configuration). */
static void save_and_restore(struct fx *f, struct virtio_balloon_config c)
{
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct error err = {0};

        snapbuf_writer_init(&w);
        virtio_mmio_save(f->t, &w);
        virtio_mmio_destroy(f->t);
        virtio_balloon_destroy(f->b);
        c.name = "balloon0";
        c.loop = f->loop;
        assert_int_equal(virtio_balloon_create(&c, &err, &f->b), 0);
        struct virtio_mmio_config mc = {
            .vdev = virtio_balloon_device(f->b), .mem = f->hm, .irq = fake_irq_line(&f->irq)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(f->t, &r), 0);
        snapbuf_writer_free(&w);
}

/* A run in progress is ended by the restore: the id reads DONE with a configuration
 * interrupt; the guest's last id, poison_val and the id sequence survive. */
static void test_snapshot_ends_a_hinting_run(void **state)
{
        struct fx *f = *state;
        const struct virtio_balloon_config c = {.free_page_reporting = true,
                                                .free_page_hinting = true};
        uint8_t v[4];
        unsigned raises;

        assert_true(vdrv_negotiate(&f->d, vdrv_device_features(&f->d)) & S_FOK);
        for (unsigned q = 0; q < 4; q++)
                assert_true(vdrv_setup_queue(&f->d, q, 64));
        put_le32(v, 0);
        cfg_write(f, CFG_POISON, v, 4);
        put_le32(v, 0x5555);
        cfg_write(f, CFG_POISON + 2, v, 2);
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        hint_cmd(f, HINTQ, 2);
        raises = f->irq.raises;
        save_and_restore(f, c);
        assert_int_equal(cfg32(f, CFG_CMD_ID), VIRTIO_BALLOON_CMD_ID_DONE);
        assert_int_equal(cfg32(f, CFG_POISON), 0x55550000);
        assert_true(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
        assert_true(f->irq.raises > raises);
        struct virtio_balloon_hinting h = hstatus(f);
        assert_int_equal(h.host_cmd, VIRTIO_BALLOON_CMD_ID_DONE);
        assert_true(h.has_guest_cmd);
        assert_int_equal(h.guest_cmd, 2);
        /* Hints of the old run are ignored; the next run is 3 and works. */
        fill(f, PAGES, 2 * PAGE, 0x71);
        hint_range(f, HINTQ, PAGES, PAGE);
        assert_true(page_is(f, PAGES, 0x71));
        assert_int_equal(virtio_balloon_hinting_start(f->b, true), 0);
        assert_int_equal(cfg32(f, CFG_CMD_ID), 3);
        hint_cmd(f, HINTQ, 3);
        hint_range(f, HINTQ, PAGES + PAGE, PAGE);
        assert_true(page_is(f, PAGES + PAGE, 0));

        /* A device configured without hinting refuses the state. */
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct error err = {0};
        struct virtio_balloon *other;
        struct virtio_mmio *t;
        snapbuf_writer_init(&w);
        virtio_mmio_save(f->t, &w);
        const struct virtio_balloon_config plain = {
            .name = "balloon0", .free_page_reporting = true, .loop = f->loop};
        assert_int_equal(virtio_balloon_create(&plain, &err, &other), 0);
        struct virtio_mmio_config mc = {
            .vdev = virtio_balloon_device(other), .mem = f->hm, .irq = fake_irq_line(&f->irq)};
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(t, &r), -EINVAL);
        virtio_mmio_destroy(t);
        virtio_balloon_destroy(other);
        snapbuf_writer_free(&w);
}

/* The device section starts with its version: another version is refused by name. */
static void test_snapshot_device_state_version(void **state)
{
        struct fx *f = *state;
        struct snapbuf_writer w;
        struct snapbuf_reader r, dev;

        bring_up_with(f, ~0ull);
        snapbuf_writer_init(&w);
        virtio_mmio_save(f->t, &w);
        /* The transport's record opens with the model's section; its body starts with the
         * version (le32 2) right after the 16-byte section header. */
        snapbuf_reader_init(&r, w.data, w.len);
        assert_true(snapbuf_get_section(&r, SNAPBUF_TAG('V', 'D', 'E', 'V'), &dev, "model"));
        assert_int_equal(get_le32(dev.p), 2);
        w.data[16] = 1;
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(f->t, &r), -EINVAL);
        assert_non_null(strstr(r.err, "unknown device state version"));
        snapbuf_writer_free(&w);
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
            cmocka_unit_test_setup_teardown(test_linux_order_discards_only_ballooned_pages,
                                            setup_stats, teardown),
            cmocka_unit_test_setup_teardown(test_second_stats_buffer_returns_first, setup_stats,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_stats_interval_change, setup_slow_stats, teardown),
            cmocka_unit_test_setup_teardown(test_stats_cannot_be_enabled_later, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reset_forgets_stats_buffer, setup_stats, teardown),
            cmocka_unit_test_setup_teardown(test_stats_not_negotiated, setup_stats, teardown),
            cmocka_unit_test_setup_teardown(test_identity_free_pages, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_identity_reporting_only, setup_free_file,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_report_discards_exactly_the_reported_ranges,
                                            setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_report_hostile_ranges, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_queue_numbering_follows_negotiation,
                                            setup_free_stats, teardown),
            cmocka_unit_test_setup_teardown(test_report_poison, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_report_over_a_memory_file, setup_free_file,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_cc14_report_discards_shared_granules_only,
                                            setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_cc14_private_retries_bounded, setup_free,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_hint_round_acknowledged_on_stop, setup_free,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_hint_stale_command_ids, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_hint_stop_by_the_host, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_hint_refusals, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_hint_not_configured, setup, teardown),
            cmocka_unit_test_setup_teardown(test_hint_reset, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_hint_with_statistics, setup_free_stats, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_ends_a_hinting_run, setup_free, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_device_state_version, setup_free,
                                            teardown),
        };
        log_set_level(LOG_LEVEL_ERROR); /* the guest-error lines are expected here */
        return cmocka_run_group_tests(tests, NULL, NULL);
}

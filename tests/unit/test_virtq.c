/* Split virtqueues against a hostile driver: rings and descriptor tables are laid out by hand
 * in guest memory and virtq.c is driven directly (no transport). Guest RAM is 3 GiB below
 * the MMIO hole [0xc0000000, 0x100000000) and 1 MiB above it, mapped but untouched. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/virtq.h"
#include "fakes.h"

#define HOLE_START 0xc0000000ull
#define HOLE_END   0x100000000ull
#define MEM        (GiB(3) + MiB(1))
#define RAM_END    (HOLE_END + MiB(1)) /* end of the high region */

/* Ring areas and buffers (low RAM). */
#define DESC   0x10000ull
#define AVAIL  0x20000ull
#define USED   0x30000ull
#define ITABLE 0x40000ull /* indirect tables */
#define BUF    0x100000ull

#define R  0 /* device-readable */
#define W  VIRTQ_DESC_F_WRITE
#define NX VIRTQ_DESC_F_NEXT
#define IN VIRTQ_DESC_F_INDIRECT

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct virtq q;
        struct virtq_chain c;
        uint16_t avail_idx; /* the driver's next avail index */
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        f->mem = test_mem_new(MEM, HOLE_START, HOLE_END);
        assert_int_equal(hostmem_create(f->mem, "virtq", &f->hm), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static void w16(struct fx *f, gpa_t a, uint16_t v)
{
        uint8_t b[2];

        put_le16(b, v);
        assert_int_equal(guest_mem_write(f->mem, a, b, 2), 0);
}

static uint16_t r16(struct fx *f, gpa_t a)
{
        uint8_t b[2];

        assert_int_equal(guest_mem_read(f->mem, a, b, 2), 0);
        return get_le16(b);
}

static uint32_t r32(struct fx *f, gpa_t a)
{
        uint8_t b[4];

        assert_int_equal(guest_mem_read(f->mem, a, b, 4), 0);
        return get_le32(b);
}

/* Descriptor i of the table at `table`. */
static void desc_at(struct fx *f, gpa_t table, uint16_t i, uint64_t addr, uint32_t len,
                    uint16_t flags, uint16_t next)
{
        uint8_t d[16];

        put_le64(d, addr);
        put_le32(d + 8, len);
        put_le16(d + 12, flags);
        put_le16(d + 14, next);
        assert_int_equal(guest_mem_write(f->mem, table + 16ull * i, d, 16), 0);
}

static void desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                 uint16_t next)
{
        desc_at(f, DESC, i, addr, len, flags, next);
}

/* Publishes head in the avail ring. */
static void post(struct fx *f, uint16_t head)
{
        w16(f, AVAIL + 4 + 2ull * (f->avail_idx % f->q.size), head);
        f->avail_idx++;
        w16(f, AVAIL + 2, f->avail_idx);
}

static void start(struct fx *f, uint16_t size, bool event_idx, bool indirect)
{
        virtq_reset(&f->q);
        f->q.size = size;
        f->q.desc = DESC;
        f->q.avail = AVAIL;
        f->q.used = USED;
        assert_null(virtq_check_config(&f->q, 1024, f->hm));
        f->q.ready = true;
        virtq_start(&f->q, f->hm, event_idx, indirect);
        f->avail_idx = 0;
        w16(f, AVAIL, 0);
        w16(f, AVAIL + 2, 0);
        w16(f, USED, 0);
        w16(f, USED + 2, 0);
}

/* Posts a one-descriptor chain [addr, len) and pops it. */
static enum virtq_pop_result pop_one(struct fx *f, uint64_t addr, uint32_t len, uint16_t flags)
{
        desc(f, 0, addr, len, flags, 0);
        post(f, 0);
        return virtq_pop(&f->q, &f->c);
}

/* ---- queue configuration ---- */

static void config_with(struct fx *f, uint16_t size, gpa_t d, gpa_t a, gpa_t u)
{
        virtq_reset(&f->q);
        f->q.size = size;
        f->q.desc = d;
        f->q.avail = a;
        f->q.used = u;
}

static void test_check_config(void **state)
{
        struct fx *f = *state;

        config_with(f, 256, DESC, AVAIL, USED);
        assert_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 1, DESC, AVAIL, USED);
        assert_null(virtq_check_config(&f->q, 256, f->hm));

        config_with(f, 0, DESC, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 512, DESC, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 96, DESC, AVAIL, USED); /* not a power of two */
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 3, DESC, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));

        /* Alignment: descriptors 16, avail 2, used 4. */
        config_with(f, 16, DESC + 8, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, AVAIL + 1, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, AVAIL, USED + 2);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC + 16, AVAIL + 2, USED + 4);
        assert_null(virtq_check_config(&f->q, 256, f->hm));

        /* Areas outside RAM, in the hole, straddling the end of a region. */
        config_with(f, 16, HOLE_START, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, HOLE_START + 0x1000, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, AVAIL, RAM_END);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        /* The used ring (6 + 8 * 16 = 134 bytes) would end 6 bytes into the hole. */
        config_with(f, 16, DESC, AVAIL, HOLE_START - 128);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, AVAIL, HOLE_START - 136);
        assert_null(virtq_check_config(&f->q, 256, f->hm));
        /* The avail ring (6 + 2 * 16 = 38 bytes) straddling the end of high RAM. */
        config_with(f, 16, DESC, RAM_END - 36, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, DESC, RAM_END - 38, USED);
        assert_null(virtq_check_config(&f->q, 256, f->hm));
        /* The descriptor table (16 * 16 bytes) ending 16 bytes into the hole. */
        config_with(f, 16, HOLE_START - 240, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, HOLE_START - 256, AVAIL, USED);
        assert_null(virtq_check_config(&f->q, 256, f->hm));
        /* High RAM itself is fine. */
        config_with(f, 16, HOLE_END, HOLE_END + 0x1000, HOLE_END + 0x2000);
        assert_null(virtq_check_config(&f->q, 256, f->hm));
        config_with(f, 16, 0xfffffffffffffff0ull, AVAIL, USED);
        assert_non_null(virtq_check_config(&f->q, 256, f->hm));
}

/* ---- popping chains ---- */

static void test_pop_empty_and_not_ready(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        desc(f, 0, BUF, 16, R, 0);
        post(f, 0);
        f->q.ready = false;
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        f->q.ready = true;
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
}

/* Ready (QueueReady = 1) but not started (no DRIVER_OK yet, or reset since): a device's own
 * event -- an io_uring completion, a timer -- reaching the queue now must find it inert,
 * not use a guest-memory handle it does not have yet (found by fuzz_virtio_blk). */
static void test_ready_but_not_started_is_inert(void **state)
{
        struct fx *f = *state;

        start(f, 8, true, false);
        desc(f, 0, BUF, 16, R, 0);
        post(f, 0);
        virtq_reset(&f->q);
        f->q.size = 8;
        f->q.desc = DESC;
        f->q.avail = AVAIL;
        f->q.used = USED;
        f->q.ready = true;
        assert_false(virtq_live(&f->q));
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        assert_false(virtq_arm(&f->q));
        assert_int_equal(virtq_push(&f->q, 0, 0), -EFAULT);
        assert_false(virtq_should_signal(&f->q));
        assert_int_equal(r16(f, USED + 2), 0);
        virtq_start(&f->q, f->hm, true, false);
        assert_true(virtq_live(&f->q));
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
}

static void test_pop_chain(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 5, BUF, 10, R | NX, 2);
        desc(f, 2, BUF + 0x100, 20, R | NX, 7);
        desc(f, 7, BUF + 0x200, 30, W, 0);
        post(f, 5);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 5);
        assert_int_equal(f->c.nr_segs, 3);
        assert_int_equal(f->c.readable, 30);
        assert_int_equal(f->c.writable, 30);
        assert_int_equal(f->c.segs[0].addr, BUF);
        assert_int_equal(f->c.segs[1].addr, BUF + 0x100);
        assert_int_equal(f->c.segs[2].addr, BUF + 0x200);
        assert_false(f->c.segs[1].write);
        assert_true(f->c.segs[2].write);
        assert_int_equal(f->q.bad_chains, 0);
}

static void test_zero_length_descriptor_skipped(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, BUF, 0, R | NX, 1);
        desc(f, 1, BUF, 8, W, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 1);
        assert_int_equal(f->c.writable, 8);
}

/* After a bad chain the ring still works: the next chain pops normally. */
static void assert_bad_then_recovers(struct fx *f, uint16_t head)
{
        uint64_t bad = f->q.bad_chains;

        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
        assert_int_equal(f->c.head, head);
        assert_int_equal(f->q.bad_chains, bad + 1);
        assert_false(f->q.broken);
        /* The device completes the bad chain and goes on. */
        assert_int_equal(virtq_push(&f->q, f->c.head, 0), 0);
        desc(f, 3, BUF, 4, R, 0);
        post(f, 3);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 3);
}

static void test_descriptor_loop(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, BUF, 8, R | NX, 1);
        desc(f, 1, BUF, 8, R | NX, 0); /* back to the head */
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

static void test_descriptor_self_loop(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 6, BUF, 8, W | NX, 6);
        post(f, 6);
        assert_bad_then_recovers(f, 6);
}

/* A chain may use every descriptor of the queue, not one more. */
static void test_chain_of_queue_size(void **state)
{
        struct fx *f = *state;

        start(f, 16, false, false);
        for (uint16_t i = 0; i < 16; i++)
                desc(f, i, BUF + 0x10ull * i, 16, (uint16_t)(R | (i < 15 ? NX : 0)), i + 1);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 16);
        assert_int_equal(f->c.readable, 256);

        /* The same chain looping to its second descriptor is longer than the queue. */
        desc(f, 15, BUF, 16, R | NX, 1);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
}

static void test_next_out_of_range(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, BUF, 8, R | NX, 8);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
        desc(f, 0, BUF, 8, R | NX, 0xffff);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

static void test_readable_after_writable(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, BUF, 8, W | NX, 1);
        desc(f, 1, BUF + 8, 8, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

static void test_buffer_outside_ram(void **state)
{
        struct fx *f = *state;
        const struct {
                uint64_t addr;
                uint32_t len;
        } bad[] = {
            {HOLE_START, 16},              /* inside the MMIO hole */
            {0xfec00000, 4},               /* the IOAPIC */
            {HOLE_START - 8, 16},          /* straddles the end of low RAM */
            {HOLE_END - 8, 16},            /* starts in the hole, ends in RAM */
            {RAM_END - 8, 16},             /* straddles the end of RAM */
            {RAM_END, 1},                  /* just past RAM */
            {0x4000000000ull, 16},         /* far away */
            {0xfffffffffffffff0ull, 0x20}, /* address + length wraps past 2^64 */
            {0xffffffffffffffffull, 1},    /* last byte of the address space */
            {0, 0xffffffffu},              /* longer than low RAM */
        };

        for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
                start(f, 8, false, false);
                assert_int_equal(pop_one(f, bad[i].addr, bad[i].len, W), VIRTQ_BAD_CHAIN);
                assert_int_equal(f->q.bad_chains, 1);
                assert_false(f->q.broken);
        }
        /* The edges themselves are fine. */
        start(f, 8, false, false);
        assert_int_equal(pop_one(f, HOLE_START - 16, 16, R), VIRTQ_CHAIN);
        assert_int_equal(pop_one(f, HOLE_END, 16, R), VIRTQ_CHAIN);
        assert_int_equal(pop_one(f, RAM_END - 16, 16, W), VIRTQ_CHAIN);
}

/* Two 2 GiB buffers: each is RAM, together they do not fit the 32-bit total. */
static void test_total_length_overflow(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, 0, 0x80000000u, W | NX, 1);
        desc(f, 1, 0, 0x80000000u, W, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);

        desc(f, 0, 0, 0x80000000u, R | NX, 1);
        desc(f, 1, 0, 0x7fffffffu, R | NX, 2);
        desc(f, 2, 0, 1, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);

        /* Right at the limit: 2^32 - 1 bytes. */
        desc(f, 0, 0, 0x80000000u, W | NX, 1);
        desc(f, 1, 0, 0x7fffffffu, W, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.writable, 0xffffffffu);
}

/* ---- indirect descriptors ---- */

static void test_indirect_valid(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        desc_at(f, ITABLE, 0, BUF, 4, R | NX, 2);
        desc_at(f, ITABLE, 2, BUF + 0x10, 8, R | NX, 1);
        desc_at(f, ITABLE, 1, BUF + 0x20, 12, W, 0);
        /* The device ignores WRITE on the descriptor that points to a table (2.7.5.3.2). */
        desc(f, 4, ITABLE, 3 * 16, IN | W, 0);
        post(f, 4);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 4);
        assert_int_equal(f->c.nr_segs, 3);
        assert_int_equal(f->c.readable, 12);
        assert_int_equal(f->c.writable, 12);
        assert_int_equal(f->c.segs[1].addr, BUF + 0x10);
        assert_int_equal(f->c.segs[2].addr, BUF + 0x20);
}

/* Direct descriptors followed by one indirect one (2.7.5.3.2 allows it). */
static void test_indirect_after_direct(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        desc(f, 0, BUF, 4, R | NX, 1);
        desc(f, 1, ITABLE, 32, IN, 0);
        desc_at(f, ITABLE, 0, BUF + 4, 4, R | NX, 1);
        desc_at(f, ITABLE, 1, BUF + 8, 4, W, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 3);
        assert_int_equal(f->c.readable, 8);
        assert_int_equal(f->c.writable, 4);
}

/* A table of exactly queue-size entries is within the limit the table length check
 * admits; one entry more is not. */
static void test_indirect_table_of_queue_size(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        for (uint16_t i = 0; i < 8; i++)
                desc_at(f, ITABLE, i, BUF + 0x10ull * i, 16, (uint16_t)(W | (i < 7 ? NX : 0)),
                        i + 1);
        desc(f, 0, ITABLE, 8 * 16, IN, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 8);
        assert_int_equal(f->c.writable, 128);

        desc_at(f, ITABLE, 7, BUF, 16, W | NX, 8);
        desc_at(f, ITABLE, 8, BUF, 16, W, 0);
        desc(f, 0, ITABLE, 9 * 16, IN, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
}

/* Direct descriptors plus a table never exceed the queue size together. */
static void test_indirect_and_direct_bounded_by_queue_size(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        for (uint16_t i = 0; i < 4; i++)
                desc(f, i, BUF, 16, R | NX, i + 1);
        desc(f, 4, ITABLE, 8 * 16, IN, 0);
        for (uint16_t i = 0; i < 8; i++)
                desc_at(f, ITABLE, i, BUF, 16, (uint16_t)(R | (i < 7 ? NX : 0)), i + 1);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
        assert_true(f->c.nr_segs <= 8);
}

static void test_indirect_not_negotiated(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc_at(f, ITABLE, 0, BUF, 4, R, 0);
        desc(f, 0, ITABLE, 16, IN, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

static void test_indirect_malformed(void **state)
{
        struct fx *f = *state;
        const struct {
                uint64_t addr;
                uint32_t len;
                uint16_t flags;
        } bad[] = {
            {ITABLE, 16, IN | NX},          /* INDIRECT and NEXT together */
            {ITABLE, 0, IN},                /* empty table */
            {ITABLE, 24, IN},               /* not a multiple of 16 */
            {ITABLE, 15, IN},               /* shorter than one descriptor */
            {ITABLE, 9 * 16, IN},           /* longer than the queue */
            {ITABLE, 0xfffffff0u, IN},      /* much longer than the queue */
            {HOLE_START, 16, IN},           /* in the MMIO hole */
            {HOLE_START - 16, 32, IN},      /* straddling the end of low RAM */
            {RAM_END - 16, 32, IN},         /* straddling the end of RAM */
            {0xfffffffffffffff0ull, 32, IN} /* wrapping past 2^64 */
        };

        desc_at(f, ITABLE, 0, BUF, 4, R, 0);
        for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
                start(f, 8, false, true);
                desc(f, 0, bad[i].addr, bad[i].len, bad[i].flags, 1);
                desc(f, 1, BUF, 4, R, 0);
                post(f, 0);
                assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
                assert_false(f->q.broken);
        }
}

static void test_indirect_nested(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        desc(f, 0, ITABLE, 32, IN, 0);
        desc_at(f, ITABLE, 0, BUF, 4, R | NX, 1);
        desc_at(f, ITABLE, 1, ITABLE + 0x100, 16, IN, 0);
        desc_at(f, ITABLE + 0x100, 0, BUF, 4, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

static void test_indirect_table_walk_errors(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        /* next beyond the table (which is 2 entries, though the queue has 8). */
        desc(f, 0, ITABLE, 32, IN, 0);
        desc_at(f, ITABLE, 0, BUF, 4, R | NX, 2);
        desc_at(f, ITABLE, 2, BUF, 4, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
        /* A loop inside the table. */
        desc_at(f, ITABLE, 0, BUF, 4, R | NX, 1);
        desc_at(f, ITABLE, 1, BUF, 4, R | NX, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
        /* A buffer in the hole inside the table. */
        desc_at(f, ITABLE, 1, HOLE_START, 4, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
        /* Readable after writable inside the table. */
        desc_at(f, ITABLE, 0, BUF, 4, W | NX, 1);
        desc_at(f, ITABLE, 1, BUF, 4, R, 0);
        post(f, 0);
        assert_bad_then_recovers(f, 0);
}

/* ---- broken rings ---- */

static void test_avail_idx_too_far_ahead(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 0, BUF, 4, R, 0);
        /* Exactly a full ring is legal. */
        for (int i = 0; i < 8; i++)
                w16(f, AVAIL + 4 + 2ull * i, 0);
        w16(f, AVAIL + 2, 8);
        for (int i = 0; i < 8; i++)
                assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);

        /* Nine more than consumed: impossible. */
        w16(f, AVAIL + 2, 8 + 9);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        assert_true(f->q.broken);
        /* Broken stays broken: nothing pops, nothing is pushed. */
        w16(f, AVAIL + 2, 9);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        assert_int_equal(virtq_push(&f->q, 0, 0), -EFAULT);
        assert_false(virtq_arm(&f->q));
        assert_false(virtq_should_signal(&f->q));
        /* Until the device is reset. */
        start(f, 8, false, false);
        assert_int_equal(pop_one(f, BUF, 4, R), VIRTQ_CHAIN);
}

static void test_avail_idx_behind(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        assert_int_equal(pop_one(f, BUF, 4, R), VIRTQ_CHAIN);
        /* The driver moves its index backwards: 0xffff ahead of last_avail. */
        w16(f, AVAIL + 2, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        assert_true(f->q.broken);
}

static void test_head_out_of_range(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        post(f, 8);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        assert_true(f->q.broken);
        start(f, 8, false, false);
        post(f, 0xffff);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
}

/* A ring area that stops being accessible after QueueReady (checked at every access, not
 * only at setup): the ring is broken, not just the chain. */
static void test_ring_area_inaccessible(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, true);
        desc(f, 0, BUF, 4, R, 0);
        post(f, 0);
        f->q.desc = HOLE_START; /* the descriptor table */
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        assert_true(f->q.broken);
        assert_int_equal(f->q.bad_chains, 0);

        start(f, 8, false, true);
        post(f, 0);
        f->q.avail = RAM_END; /* the avail ring */
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        assert_true(f->q.broken);

        start(f, 8, false, true);
        f->q.used = HOLE_START; /* the used ring */
        assert_int_equal(virtq_push(&f->q, 0, 0), -EFAULT);
        assert_true(f->q.broken);

        /* An indirect table is a request's buffer: only that chain fails. */
        start(f, 8, false, true);
        desc(f, 0, ITABLE, 16, IN, 0);
        desc_at(f, ITABLE, 0, BUF, 4, R, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
}

/* Descriptors are copied a few at a time, never past the granule of the one the chain
 * needs: with the granule after it private, chains ending in a granule's last entries are
 * served without a refusal (a copy running on into the private granule would be refused:
 * a broken ring, a failed request and counted violations). The private granule itself is
 * refused. */
static void test_descriptor_copies_stay_in_their_granule(void **state)
{
        struct fx *f = *state;
        const uint64_t G = OWNERSHIP_GRANULE;
        struct hostmem_stats st;
        struct ownership *own;

        assert_int_equal(ownership_create(f->mem, false, &own), 0);
        hostmem_set_ownership(f->hm, own);
        start(f, 512, false, true); /* an 8 KiB table: entries 256 on in its second granule */
        assert_int_equal(ownership_make_private(own, DESC + G, G), 0);
        assert_int_equal(ownership_make_private(own, ITABLE + G, G), 0);
        desc(f, 253, BUF, 4, R | NX, 254);
        desc(f, 254, BUF + 0x10, 4, R | NX, 255);
        desc(f, 255, BUF + 0x20, 4, W, 0);
        post(f, 253);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 3);
        assert_int_equal(f->c.segs[2].addr, BUF + 0x20);
        /* An indirect table whose entries end a granule, and one that is its last entry. */
        desc_at(f, ITABLE, 254, BUF + 0x30, 4, R | NX, 1);
        desc_at(f, ITABLE, 255, BUF + 0x40, 4, W, 0);
        desc(f, 7, ITABLE + 254 * 16, 2 * 16, IN, 0);
        post(f, 7);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.nr_segs, 2);
        assert_int_equal(f->c.segs[1].addr, BUF + 0x40);
        desc(f, 8, ITABLE + 255 * 16, 16, IN, 0);
        post(f, 8);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.segs[0].addr, BUF + 0x40);
        assert_int_equal(f->q.bad_chains, 0);
        hostmem_get_stats(f->hm, &st);
        assert_int_equal(st.violations, 0);
        /* A chain that does go on into the private granule. */
        desc(f, 255, BUF + 0x20, 4, W | NX, 256);
        desc(f, 256, BUF + 0x50, 4, W, 0);
        post(f, 255);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
        hostmem_get_stats(f->hm, &st);
        assert_int_equal(st.violations, 1);
        hostmem_set_ownership(f->hm, NULL);
        ownership_destroy(own);
}

/* Thousands of bad chains: each fails alone and the ring keeps going. */
static void test_many_bad_chains_bounded(void **state)
{
        struct fx *f = *state;

        start(f, 256, false, true);
        for (uint16_t i = 0; i < 256; i++)
                desc(f, i, BUF, 8, R | NX, (uint16_t)((i + 1) % 256)); /* one big loop */
        for (int round = 0; round < 20; round++) {
                for (uint16_t i = 0; i < 256; i++)
                        post(f, i);
                for (int i = 0; i < 256; i++) {
                        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BAD_CHAIN);
                        assert_int_equal(virtq_push(&f->q, f->c.head, 0), 0);
                }
                assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        }
        assert_int_equal(f->q.bad_chains, 20 * 256);
        assert_int_equal(r16(f, USED + 2), (uint16_t)(20 * 256));
}

/* ---- used ring, indices, unpop ---- */

static void test_push_writes_used_elements(void **state)
{
        struct fx *f = *state;

        start(f, 4, false, false);
        for (uint32_t i = 0; i < 6; i++) {
                assert_int_equal(virtq_push(&f->q, (uint16_t)(i % 4), 100 + i), 0);
                assert_int_equal(r16(f, USED + 2), i + 1);
                assert_int_equal(r32(f, USED + 4 + 8 * (i % 4)), i % 4);
                assert_int_equal(r32(f, USED + 4 + 8 * (i % 4) + 4), 100 + i);
        }
}

static void test_index_wraparound(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        /* Both sides just before the 16-bit wrap. */
        f->q.last_avail = 0xfffe;
        f->q.used_idx = 0xfffe;
        f->avail_idx = 0xfffe;
        desc(f, 1, BUF, 4, R, 0);
        for (int i = 0; i < 4; i++)
                post(f, 1);
        assert_int_equal(r16(f, AVAIL + 2), 2);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
                assert_int_equal(virtq_push(&f->q, f->c.head, 0), 0);
        }
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        assert_int_equal(f->q.last_avail, 2);
        assert_int_equal(r16(f, USED + 2), 2);
        /* Element 0xffff went to slot 7, element 0 to slot 0. */
        assert_int_equal(r32(f, USED + 4 + 8 * 7), 1);
        assert_int_equal(r32(f, USED + 4), 1);
}

/* The avail index is read again only when what it showed is used up (or by virtq_arm):
 * buffers published since are found then, and an impossible index still breaks the ring. */
static void test_avail_index_read_when_used_up(void **state)
{
        struct fx *f = *state;

        start(f, 8, true, false);
        desc(f, 0, BUF, 4, R, 0);
        assert_int_equal(virtq_seen_pending(&f->q), 0);
        post(f, 0);
        post(f, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_seen_pending(&f->q), 2);
        post(f, 0); /* not seen until the three are popped */
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_seen_pending(&f->q), 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
        /* virtq_arm's look counts as a read. */
        post(f, 0);
        assert_true(virtq_arm(&f->q));
        assert_int_equal(virtq_seen_pending(&f->q), 1);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        /* An index more than a ring ahead: not taken by virtq_arm, broken at the pop. */
        w16(f, AVAIL + 2, (uint16_t)(f->avail_idx + 9));
        assert_true(virtq_arm(&f->q));
        assert_int_equal(virtq_seen_pending(&f->q), 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_BROKEN);
}

static void test_unpop(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        desc(f, 2, BUF, 4, R, 0);
        desc(f, 3, BUF, 4, W, 0);
        post(f, 2);
        post(f, 3);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 2);
        virtq_unpop(&f->q);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 2);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.head, 3);
        assert_true(f->c.segs[0].write);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_EMPTY);
}

/* ---- notifications ---- */

#define USED_EVENT  (AVAIL + 4 + 2ull * f->q.size)
#define AVAIL_EVENT (USED + 4 + 8ull * f->q.size)

static void test_event_idx_suppression(void **state)
{
        struct fx *f = *state;

        start(f, 8, true, false);
        /* The first interrupt after start is always sent, whatever used_event says: the
         * device cannot know what the driver saw before (a lost interrupt hangs it). */
        w16(f, USED_EVENT, 5);
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q));
        start(f, 8, true, false);
        w16(f, USED_EVENT, 0);
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q));
        /* used 1 -> 2 with used_event 0: the driver asked to hear about index 1 only. */
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_false(virtq_should_signal(&f->q));
        assert_int_equal(f->q.notify_suppressed, 1);
        /* used_event 2: crossing 2 -> 3 interrupts. */
        w16(f, USED_EVENT, 2);
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q));
        /* Several pushes at once: interrupt when used_event lies inside the batch. */
        w16(f, USED_EVENT, 4);
        for (int i = 0; i < 3; i++)
                assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q)); /* 3 -> 6 uses entry 4 */
        w16(f, USED_EVENT, 9);
        for (int i = 0; i < 3; i++)
                assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_false(virtq_should_signal(&f->q)); /* 6 -> 9 has not used entry 9 yet */
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q)); /* 9 -> 10 has */
        /* Nothing new since the last interrupt: no interrupt. */
        assert_false(virtq_should_signal(&f->q));
        /* With EVENT_IDX the NO_INTERRUPT flag is not what counts. */
        w16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
        w16(f, USED_EVENT, 10);
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q));
}

static void test_event_idx_arm_publishes_avail_event(void **state)
{
        struct fx *f = *state;

        start(f, 8, true, false);
        w16(f, AVAIL_EVENT, 0xabcd);
        desc(f, 0, BUF, 4, R, 0);
        post(f, 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        /* One buffer still waits: arm says so, and asks to hear about index 1. */
        assert_true(virtq_arm(&f->q));
        assert_int_equal(r16(f, AVAIL_EVENT), 1);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_false(virtq_arm(&f->q));
        assert_int_equal(r16(f, AVAIL_EVENT), 2);
        /* A buffer published after the device looked: arm reports the race. */
        post(f, 0);
        assert_true(virtq_arm(&f->q));
        assert_int_equal(r16(f, AVAIL_EVENT), 2);
}

static void test_no_event_idx_arm_and_no_interrupt(void **state)
{
        struct fx *f = *state;

        start(f, 8, false, false);
        w16(f, AVAIL_EVENT, 0xabcd);
        desc(f, 0, BUF, 4, R, 0);
        post(f, 0);
        assert_true(virtq_arm(&f->q));
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_false(virtq_arm(&f->q));
        assert_int_equal(r16(f, AVAIL_EVENT), 0xabcd); /* untouched without EVENT_IDX */

        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_true(virtq_should_signal(&f->q));
        assert_true(virtq_should_signal(&f->q)); /* no event index: every call says yes */
        w16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
        assert_int_equal(virtq_push(&f->q, 0, 0), 0);
        assert_false(virtq_should_signal(&f->q));
        assert_int_equal(f->q.notify_suppressed, 1);
        w16(f, AVAIL, 0);
        assert_true(virtq_should_signal(&f->q));
}

/* ---- copying and pinning ---- */

/* A chain of readable segments of 3, 5 and 7 bytes and writable ones of 4 and 6, scattered in
 * memory; the readable bytes are 0..14 in order. */
static void make_scattered_chain(struct fx *f)
{
        static const uint64_t raddr[] = {BUF + 0x1000, BUF + 0x20, BUF + 0x3005};
        static const uint32_t rlen[] = {3, 5, 7};
        uint8_t v = 0;

        start(f, 8, false, false);
        for (unsigned i = 0; i < 3; i++) {
                uint8_t b[8];

                for (uint32_t j = 0; j < rlen[i]; j++)
                        b[j] = v++;
                assert_int_equal(guest_mem_write(f->mem, raddr[i], b, rlen[i]), 0);
                desc(f, (uint16_t)i, raddr[i], rlen[i], R | NX, (uint16_t)(i + 1));
        }
        desc(f, 3, BUF + 0x5001, 4, W | NX, 4);
        desc(f, 4, BUF + 0x4000, 6, W, 0);
        assert_int_equal(guest_mem_fill(f->mem, BUF + 0x4000, 0xee, 0x2000), 0);
        post(f, 0);
        assert_int_equal(virtq_pop(&f->q, &f->c), VIRTQ_CHAIN);
        assert_int_equal(f->c.readable, 15);
        assert_int_equal(f->c.writable, 10);
}

static void test_chain_read_across_segments(void **state)
{
        struct fx *f = *state;
        uint8_t buf[32];

        make_scattered_chain(f);
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 0, buf, 15), 15);
        for (int i = 0; i < 15; i++)
                assert_int_equal(buf[i], i);
        /* From inside the first segment across two boundaries. */
        memset(buf, 0xaa, sizeof(buf));
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 2, buf, 8), 8);
        for (int i = 0; i < 8; i++)
                assert_int_equal(buf[i], 2 + i);
        assert_int_equal(buf[8], 0xaa);
        /* Starting exactly on a boundary. */
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 8, buf, 3), 3);
        assert_int_equal(buf[0], 8);
        /* Short at the end of the readable part: writable bytes are never read. */
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 10, buf, 20), 5);
        assert_int_equal(buf[4], 14);
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 15, buf, 4), 0);
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 0xfffffff0u, buf, 4), 0);
}

static void test_chain_write_across_segments(void **state)
{
        struct fx *f = *state;
        uint8_t src[10], a[8], b[8], rd[15];

        make_scattered_chain(f);
        for (int i = 0; i < 10; i++)
                src[i] = (uint8_t)(0x40 + i);
        /* Offset 2: two bytes into the first writable segment, then four into the second. */
        assert_int_equal(virtq_chain_write(&f->q, &f->c, 2, src, 6), 6);
        assert_int_equal(guest_mem_read(f->mem, BUF + 0x5000, a, 6), 0);
        assert_int_equal(guest_mem_read(f->mem, BUF + 0x4000, b, 8), 0);
        static const uint8_t want_a[] = {0xee, 0xee, 0xee, 0x40, 0x41, 0xee};
        static const uint8_t want_b[] = {0x42, 0x43, 0x44, 0x45, 0xee, 0xee, 0xee, 0xee};
        assert_memory_equal(a, want_a, 6);
        assert_memory_equal(b, want_b, 8);
        /* Longer than the writable part: stops at its end, never writes past a segment. */
        assert_int_equal(virtq_chain_write(&f->q, &f->c, 0, src, 10), 10);
        assert_int_equal(virtq_chain_write(&f->q, &f->c, 8, src, 10), 2);
        assert_int_equal(guest_mem_read(f->mem, BUF + 0x4006, b, 1), 0);
        assert_int_equal(b[0], 0xee);
        /* The readable part is untouched. */
        assert_int_equal(virtq_chain_read(&f->q, &f->c, 0, rd, 15), 15);
        for (int i = 0; i < 15; i++)
                assert_int_equal(rd[i], i);
}

static void test_chain_pin(void **state)
{
        struct fx *f = *state;
        struct iovec iov[4];

        make_scattered_chain(f);
        /* Readable bytes 2..9: the end of segment 0, all of 1, the start of 2. */
        assert_int_equal(virtq_chain_pin(&f->q, &f->c, false, 2, 8, iov, 4), 3);
        assert_int_equal(iov[0].iov_len, 1);
        assert_int_equal(iov[1].iov_len, 5);
        assert_int_equal(iov[2].iov_len, 2);
        assert_int_equal(((uint8_t *)iov[0].iov_base)[0], 2);
        assert_int_equal(((uint8_t *)iov[1].iov_base)[0], 3);
        assert_int_equal(((uint8_t *)iov[2].iov_base)[1], 9);
        assert_ptr_equal(iov[0].iov_base, guest_mem_translate(f->mem, BUF + 0x1002, 1));
        virtq_chain_unpin(&f->q, &f->c, false, 2, 8);
        /* Writable part, from offset 3. */
        assert_int_equal(virtq_chain_pin(&f->q, &f->c, true, 3, 7, iov, 4), 2);
        assert_ptr_equal(iov[0].iov_base, guest_mem_translate(f->mem, BUF + 0x5004, 1));
        assert_int_equal(iov[0].iov_len, 1);
        assert_int_equal(iov[1].iov_len, 6);
        virtq_chain_unpin(&f->q, &f->c, true, 3, 7);
        /* Too few iovecs. */
        assert_int_equal(virtq_chain_pin(&f->q, &f->c, false, 0, 15, iov, 2), -E2BIG);
        /* Past the end: fewer bytes, as many iovecs as needed. */
        assert_int_equal(virtq_chain_pin(&f->q, &f->c, false, 12, 100, iov, 4), 1);
        assert_int_equal(iov[0].iov_len, 3);
        virtq_chain_unpin(&f->q, &f->c, false, 12, 100);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_check_config),
            cmocka_unit_test(test_pop_empty_and_not_ready),
            cmocka_unit_test(test_ready_but_not_started_is_inert),
            cmocka_unit_test(test_pop_chain),
            cmocka_unit_test(test_zero_length_descriptor_skipped),
            cmocka_unit_test(test_descriptor_loop),
            cmocka_unit_test(test_descriptor_self_loop),
            cmocka_unit_test(test_chain_of_queue_size),
            cmocka_unit_test(test_next_out_of_range),
            cmocka_unit_test(test_readable_after_writable),
            cmocka_unit_test(test_buffer_outside_ram),
            cmocka_unit_test(test_total_length_overflow),
            cmocka_unit_test(test_indirect_valid),
            cmocka_unit_test(test_indirect_after_direct),
            cmocka_unit_test(test_indirect_table_of_queue_size),
            cmocka_unit_test(test_indirect_and_direct_bounded_by_queue_size),
            cmocka_unit_test(test_indirect_not_negotiated),
            cmocka_unit_test(test_indirect_malformed),
            cmocka_unit_test(test_indirect_nested),
            cmocka_unit_test(test_indirect_table_walk_errors),
            cmocka_unit_test(test_avail_idx_too_far_ahead),
            cmocka_unit_test(test_avail_idx_behind),
            cmocka_unit_test(test_head_out_of_range),
            cmocka_unit_test(test_ring_area_inaccessible),
            cmocka_unit_test(test_descriptor_copies_stay_in_their_granule),
            cmocka_unit_test(test_many_bad_chains_bounded),
            cmocka_unit_test(test_push_writes_used_elements),
            cmocka_unit_test(test_index_wraparound),
            cmocka_unit_test(test_avail_index_read_when_used_up),
            cmocka_unit_test(test_unpop),
            cmocka_unit_test(test_event_idx_suppression),
            cmocka_unit_test(test_event_idx_arm_publishes_avail_event),
            cmocka_unit_test(test_no_event_idx_arm_and_no_interrupt),
            cmocka_unit_test(test_chain_read_across_segments),
            cmocka_unit_test(test_chain_write_across_segments),
            cmocka_unit_test(test_chain_pin),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

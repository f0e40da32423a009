/*
 * Device bus: registration (overlaps refused with both windows named, adjacency allowed),
 * dispatch with window-relative offsets, accesses that straddle a window's end, unhandled
 * accesses (counted, reads return all ones) and window enumeration.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "devices/bus.h"

/* A device that records its last access and answers reads with offset-derived bytes. */
struct probe {
        unsigned reads, writes;
        uint64_t last_off;
        uint32_t last_len;
        uint8_t last_data[8];
};

static void probe_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct probe *p = opaque;

        p->reads++;
        p->last_off = off;
        p->last_len = len;
        for (uint32_t i = 0; i < len; i++)
                data[i] = (uint8_t)(0x40 + off + i);
}

static void probe_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct probe *p = opaque;

        p->writes++;
        p->last_off = off;
        p->last_len = len;
        memcpy(p->last_data, data, len);
}

static const struct bus_ops probe_ops = {.read = probe_read, .write = probe_write};
static const struct bus_ops write_only_ops = {.write = probe_write};

static struct bus *new_bus(void)
{
        struct bus *bus = NULL;

        assert_int_equal(bus_create("pio", &bus), 0);
        assert_non_null(bus);
        return bus;
}

static void add(struct bus *bus, const char *name, uint64_t base, uint64_t len,
                const struct bus_ops *ops, void *opaque)
{
        struct bus_window w = {
            .name = name, .base = base, .len = len, .ops = ops, .opaque = opaque};
        struct error err = {0};

        if (bus_register(bus, &w, &err))
                fail_msg("bus_register %s: %s", name, err.msg);
}

static void test_overlap_rejected_naming_both(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe a = {0};
        static const struct {
                uint64_t base, len;
        } overlapping[] = {
            {0x3f8, 8},     /* identical */
            {0x3f0, 9},     /* covers the first byte */
            {0x3ff, 1},     /* the last byte */
            {0x3fa, 2},     /* inside */
            {0x300, 0x200}, /* around */
        };

        add(bus, "com1", 0x3f8, 8, &probe_ops, &a);
        for (size_t i = 0; i < sizeof(overlapping) / sizeof(overlapping[0]); i++) {
                struct bus_window w = {.name = "intruder",
                                       .base = overlapping[i].base,
                                       .len = overlapping[i].len,
                                       .ops = &probe_ops};
                struct error err = {0};

                assert_int_equal(bus_register(bus, &w, &err), -EEXIST);
                assert_int_equal(err.code, -EEXIST);
                assert_non_null(strstr(err.msg, "intruder"));
                assert_non_null(strstr(err.msg, "com1"));
                assert_non_null(strstr(err.msg, "0x3f8"));
        }
        assert_int_equal(bus_window_count(bus), 1);
        bus_destroy(bus);
}

static void test_invalid_windows_rejected(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct bus_window empty = {.name = "empty", .base = 0x100, .len = 0, .ops = &probe_ops};
        struct bus_window wrap = {
            .name = "wrap", .base = UINT64_MAX - 1, .len = 4, .ops = &probe_ops};
        struct error err = {0};

        assert_int_equal(bus_register(bus, &empty, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "empty"));
        error_clear(&err);
        assert_int_equal(bus_register(bus, &wrap, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "wrap"));
        assert_int_equal(bus_window_count(bus), 0);
        bus_destroy(bus);
}

static void test_adjacent_windows_allowed_and_sorted(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe a = {0}, b = {0}, c = {0};
        uint8_t v;

        /* Registered out of order; enumeration is by address. */
        add(bus, "mid", 0x100, 0x10, &probe_ops, &b);
        add(bus, "high", 0x110, 0x10, &probe_ops, &c);
        add(bus, "low", 0xf0, 0x10, &probe_ops, &a);
        assert_int_equal(bus_window_count(bus), 3);
        assert_string_equal(bus_window_at(bus, 0)->name, "low");
        assert_string_equal(bus_window_at(bus, 1)->name, "mid");
        assert_string_equal(bus_window_at(bus, 2)->name, "high");
        assert_int_equal(bus_window_at(bus, 1)->base, 0x100);
        assert_int_equal(bus_window_at(bus, 1)->len, 0x10);
        assert_ptr_equal(bus_window_at(bus, 1)->opaque, &b);
        assert_null(bus_window_at(bus, 3));

        /* The boundary bytes go to the right device. */
        assert_true(bus_read(bus, 0xff, &v, 1));
        assert_int_equal(a.reads, 1);
        assert_int_equal(a.last_off, 0xf);
        assert_true(bus_read(bus, 0x100, &v, 1));
        assert_int_equal(b.reads, 1);
        assert_int_equal(b.last_off, 0);
        assert_true(bus_read(bus, 0x110, &v, 1));
        assert_int_equal(c.reads, 1);
        assert_int_equal(c.last_off, 0);
        assert_int_equal(bus_unhandled_count(bus), 0);
        bus_destroy(bus);
}

static void test_many_windows_lookup(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe p[40] = {{0}};
        char names[40][8];
        uint8_t v;

        /* More windows than the initial capacity, registered in reverse order. */
        for (int i = 39; i >= 0; i--) {
                snprintf(names[i], sizeof(names[i]), "w%d", i);
                add(bus, names[i], 0x1000 + (uint64_t)i * 0x100, 0x80, &probe_ops, &p[i]);
        }
        assert_int_equal(bus_window_count(bus), 40);
        for (unsigned i = 0; i < 40; i++) {
                assert_int_equal(bus_window_at(bus, i)->base, 0x1000 + (uint64_t)i * 0x100);
                assert_true(bus_read(bus, 0x1000 + i * 0x100 + 0x7f, &v, 1));
                assert_int_equal(p[i].reads, 1);
                assert_int_equal(p[i].last_off, 0x7f);
                /* The gap after each window is unmapped. */
                assert_false(bus_read(bus, 0x1000 + i * 0x100 + 0x80, &v, 1));
        }
        assert_int_equal(bus_unhandled_count(bus), 40);
        bus_destroy(bus);
}

static void test_dispatch_relative_offsets(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe p = {0};
        uint8_t data[4] = {0};
        const uint8_t out[4] = {1, 2, 3, 4};

        add(bus, "mmio", 0xd0000000, 0x1000, &probe_ops, &p);
        assert_true(bus_read(bus, 0xd0000010, data, 4));
        assert_int_equal(p.last_off, 0x10);
        assert_int_equal(p.last_len, 4);
        assert_int_equal(data[0], 0x50);
        assert_int_equal(data[3], 0x53);

        assert_true(bus_write(bus, 0xd0000ffc, out, 4));
        assert_int_equal(p.writes, 1);
        assert_int_equal(p.last_off, 0xffc);
        assert_int_equal(p.last_len, 4);
        assert_memory_equal(p.last_data, out, 4);
        assert_int_equal(bus_unhandled_count(bus), 0);
        bus_destroy(bus);
}

static void test_straddling_access_unhandled(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe p = {0}, q = {0};
        uint8_t data[8];
        const uint8_t out[8] = {0};

        add(bus, "a", 0x1000, 0x10, &probe_ops, &p);
        add(bus, "b", 0x1010, 0x10, &probe_ops, &q);
        /* Fits exactly at the end: handled. */
        assert_true(bus_read(bus, 0x1008, data, 8));
        assert_int_equal(p.reads, 1);
        /* One byte too far: neither window sees it, even though "b" follows. */
        memset(data, 0, sizeof(data));
        assert_false(bus_read(bus, 0x1009, data, 8));
        assert_false(bus_write(bus, 0x100c, out, 8));
        assert_false(bus_read(bus, 0x101f, data, 2));
        assert_int_equal(p.reads, 1);
        assert_int_equal(p.writes, 0);
        assert_int_equal(q.reads, 0);
        assert_int_equal(q.writes, 0);
        assert_int_equal(bus_unhandled_count(bus), 3);
        bus_destroy(bus);
}

static void test_unhandled_reads_all_ones_and_counted(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe p = {0};
        uint8_t data[8];
        const uint8_t out[2] = {0x12, 0x34};

        assert_int_equal(bus_unhandled_count(bus), 0);
        memset(data, 0, sizeof(data));
        assert_false(bus_read(bus, 0x80, data, 8));
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(data[i], 0xff);
        assert_int_equal(bus_unhandled_count(bus), 1);
        assert_false(bus_write(bus, 0x80, out, 2));
        assert_int_equal(bus_unhandled_count(bus), 2);

        /* A window without a read handler: reads are unhandled, writes reach it. */
        add(bus, "wo", 0x200, 4, &write_only_ops, &p);
        memset(data, 0, sizeof(data));
        assert_false(bus_read(bus, 0x200, data, 1));
        assert_int_equal(data[0], 0xff);
        assert_int_equal(bus_unhandled_count(bus), 3);
        assert_true(bus_write(bus, 0x202, out, 2));
        assert_int_equal(p.writes, 1);
        assert_int_equal(p.last_off, 2);
        assert_int_equal(bus_unhandled_count(bus), 3);
        bus_destroy(bus);
}

static void test_window_near_top_of_address_space(void **state)
{
        (void)state;
        struct bus *bus = new_bus();
        struct probe p = {0};
        uint8_t v[2];

        /* [2^64 - 0x11, 2^64 - 1): lookups near the top must not wrap. */
        add(bus, "top", UINT64_MAX - 0x10, 0x10, &probe_ops, &p);
        assert_true(bus_read(bus, UINT64_MAX - 1, v, 1));
        assert_int_equal(p.last_off, 0xf);
        assert_false(bus_read(bus, UINT64_MAX - 1, v, 2));
        assert_false(bus_read(bus, UINT64_MAX, v, 1));
        assert_int_equal(p.reads, 1);
        assert_int_equal(bus_unhandled_count(bus), 2);
        bus_destroy(bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_overlap_rejected_naming_both),
            cmocka_unit_test(test_invalid_windows_rejected),
            cmocka_unit_test(test_adjacent_windows_allowed_and_sorted),
            cmocka_unit_test(test_many_windows_lookup),
            cmocka_unit_test(test_dispatch_relative_offsets),
            cmocka_unit_test(test_straddling_access_unhandled),
            cmocka_unit_test(test_unhandled_reads_all_ones_and_counted),
            cmocka_unit_test(test_window_near_top_of_address_space),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

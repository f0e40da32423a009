/*
 * Guest memory: region split around the MMIO hole, checked translation at every edge
 * (last byte, one past, zero length, wrap-around, ranges straddling the hole), copies that
 * fail with -EFAULT without touching anything, argument validation and residency.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory/guest_mem.h"

#include "fakes.h"

#define HOLE_START 0xc0000000ull
#define HOLE_END   0x100000000ull

/* 4 MiB of RAM with a 1 MiB hole at [1 MiB, 2 MiB): low [0,1M), high [2M,5M). */
static struct guest_mem *split_mem(void)
{
        return test_mem_new(MiB(4), MiB(1), MiB(2));
}

static void test_below_hole_single_region(void **state)
{
        (void)state;
        struct guest_mem *mem = test_mem_new(MiB(64), HOLE_START, HOLE_END);
        struct guest_mem_region r = guest_mem_region_get(mem, 0);

        assert_int_equal(guest_mem_size(mem), MiB(64));
        assert_int_equal(guest_mem_region_count(mem), 1);
        assert_int_equal(r.gpa, 0);
        assert_int_equal(r.size, MiB(64));
        assert_non_null(r.host);
        assert_int_equal(guest_mem_low_end(mem), MiB(64));
        /* Out-of-range region index: an empty region, not garbage. */
        r = guest_mem_region_get(mem, 1);
        assert_int_equal(r.size, 0);
        assert_null(r.host);
        guest_mem_destroy(mem);
}

static void test_ram_equal_to_hole_start_single_region(void **state)
{
        (void)state;
        struct guest_mem *mem = test_mem_new(MiB(1), MiB(1), MiB(2));

        assert_int_equal(guest_mem_region_count(mem), 1);
        assert_int_equal(guest_mem_low_end(mem), MiB(1));
        assert_false(guest_mem_contains(mem, MiB(2), 1));
        guest_mem_destroy(mem);
}

static void test_above_hole_splits_regions(void **state)
{
        (void)state;
        struct guest_mem *mem = split_mem();
        struct guest_mem_region lo = guest_mem_region_get(mem, 0);
        struct guest_mem_region hi = guest_mem_region_get(mem, 1);

        assert_int_equal(guest_mem_size(mem), MiB(4));
        assert_int_equal(guest_mem_region_count(mem), 2);
        assert_int_equal(lo.gpa, 0);
        assert_int_equal(lo.size, MiB(1));
        assert_int_equal(hi.gpa, MiB(2));
        assert_int_equal(hi.size, MiB(3));
        assert_int_equal(guest_mem_low_end(mem), MiB(1));
        /* The host views do not alias: the high region follows the low one. */
        assert_ptr_equal(hi.host, lo.host + lo.size);
        assert_ptr_equal(guest_mem_translate(mem, 0, 1), lo.host);
        assert_ptr_equal(guest_mem_translate(mem, MiB(2), 1), hi.host);
        assert_ptr_equal(guest_mem_translate(mem, MiB(2) + 0x1234, 16), hi.host + 0x1234);
        guest_mem_destroy(mem);
}

static void test_real_hole_above_4g(void **state)
{
        (void)state;
        /* 3 GiB + 8 MiB, never touched: the mapping is reserved lazily. */
        struct guest_mem *mem = test_mem_new(HOLE_START + MiB(8), HOLE_START, HOLE_END);
        struct guest_mem_region hi;

        assert_int_equal(guest_mem_region_count(mem), 2);
        hi = guest_mem_region_get(mem, 1);
        assert_int_equal(hi.gpa, HOLE_END);
        assert_int_equal(hi.size, MiB(8));
        assert_true(guest_mem_contains(mem, HOLE_START - 1, 1));
        assert_false(guest_mem_contains(mem, HOLE_START, 1));
        assert_false(guest_mem_contains(mem, HOLE_END - 1, 1));
        assert_true(guest_mem_contains(mem, HOLE_END, 1));
        assert_true(guest_mem_contains(mem, HOLE_END + MiB(8) - 1, 1));
        assert_false(guest_mem_contains(mem, HOLE_END + MiB(8), 1));
        guest_mem_destroy(mem);
}

static void test_edges_single_region(void **state)
{
        (void)state;
        const uint64_t size = MiB(2);
        struct guest_mem *mem = test_mem_new(size, HOLE_START, HOLE_END);
        uint8_t *base = guest_mem_region_get(mem, 0).host;

        assert_true(guest_mem_contains(mem, 0, size));
        assert_false(guest_mem_contains(mem, 0, size + 1));
        assert_true(guest_mem_contains(mem, size - 1, 1));
        assert_ptr_equal(guest_mem_translate(mem, size - 1, 1), base + size - 1);
        assert_false(guest_mem_contains(mem, size, 1));
        assert_null(guest_mem_translate(mem, size, 1));
        assert_false(guest_mem_contains(mem, size - 1, 2));
        assert_null(guest_mem_translate(mem, size - 1, 2));
        /* Zero length is valid inside RAM, not far outside it. */
        assert_true(guest_mem_contains(mem, 0, 0));
        assert_true(guest_mem_contains(mem, size - 1, 0));
        assert_ptr_equal(guest_mem_translate(mem, 0x100, 0), base + 0x100);
        assert_false(guest_mem_contains(mem, size + KiB(4), 0));
        assert_false(guest_mem_contains(mem, HOLE_START + 0x10, 0));
        assert_false(guest_mem_contains(mem, UINT64_MAX, 0));
        guest_mem_destroy(mem);
}

static void test_wrap_around_rejected(void **state)
{
        (void)state;
        struct guest_mem *mem = split_mem();

        assert_false(guest_mem_contains(mem, UINT64_MAX, 1));
        assert_false(guest_mem_contains(mem, UINT64_MAX, 2));
        assert_false(guest_mem_contains(mem, UINT64_MAX - 1, 4));
        assert_null(guest_mem_translate(mem, UINT64_MAX - 0xfff, 0x2000));
        /* A length that wraps the end past 2^64 back into RAM. */
        assert_false(guest_mem_contains(mem, 0x1000, UINT64_MAX));
        assert_false(guest_mem_contains(mem, 0x1000, UINT64_MAX - 0xfff));
        assert_null(guest_mem_translate(mem, MiB(2), UINT64_MAX - MiB(2) + 2));
        assert_false(guest_mem_contains(mem, 0, UINT64_MAX));
        guest_mem_destroy(mem);
}

static void test_ranges_straddling_hole(void **state)
{
        (void)state;
        struct guest_mem *mem = split_mem();

        /* Last byte below the hole, first byte above it. */
        assert_true(guest_mem_contains(mem, MiB(1) - 1, 1));
        assert_true(guest_mem_contains(mem, MiB(2), 1));
        /* Anything touching the hole. */
        assert_false(guest_mem_contains(mem, MiB(1) - 1, 2));
        assert_false(guest_mem_contains(mem, MiB(1), 1));
        assert_false(guest_mem_contains(mem, MiB(1) + KiB(512), 1));
        assert_false(guest_mem_contains(mem, MiB(2) - 1, 2));
        /* Both sides are RAM, but not one region: still refused. */
        assert_false(guest_mem_contains(mem, MiB(1) - 4, MiB(1) + 8));
        assert_null(guest_mem_translate(mem, MiB(1) - 4, MiB(1) + 8));
        /* End of the high region. */
        assert_true(guest_mem_contains(mem, MiB(5) - 1, 1));
        assert_true(guest_mem_contains(mem, MiB(2), MiB(3)));
        assert_false(guest_mem_contains(mem, MiB(5), 1));
        assert_false(guest_mem_contains(mem, MiB(5) - 1, 2));
        guest_mem_destroy(mem);
}

static void test_read_write_fill_roundtrip(void **state)
{
        (void)state;
        struct guest_mem *mem = split_mem();
        const char msg[] = "hello guest";
        char back[sizeof(msg)];
        uint8_t bytes[8];

        assert_int_equal(guest_mem_write(mem, MiB(2) + 8, msg, sizeof(msg)), 0);
        assert_int_equal(guest_mem_read(mem, MiB(2) + 8, back, sizeof(back)), 0);
        assert_memory_equal(back, msg, sizeof(msg));
        assert_memory_equal(guest_mem_translate(mem, MiB(2) + 8, sizeof(msg)), msg, sizeof(msg));

        assert_int_equal(guest_mem_fill(mem, MiB(1) - 8, 0x5c, 8), 0);
        assert_int_equal(guest_mem_read(mem, MiB(1) - 8, bytes, 8), 0);
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(bytes[i], 0x5c);
        /* Zero-length copies inside RAM succeed. */
        assert_int_equal(guest_mem_write(mem, 0, msg, 0), 0);
        assert_int_equal(guest_mem_read(mem, 0, back, 0), 0);
        guest_mem_destroy(mem);
}

static void test_failed_copies_touch_nothing(void **state)
{
        (void)state;
        struct guest_mem *mem = split_mem();
        uint8_t *lo = guest_mem_region_get(mem, 0).host;
        uint8_t *hi = guest_mem_region_get(mem, 1).host;
        uint8_t src[64], dst[64];

        memset(src, 0x11, sizeof(src));
        memset(lo + MiB(1) - 32, 0xaa, 32);
        memset(hi + MiB(3) - 32, 0xbb, 32);

        /* Straddling the hole, the end of RAM, and wrapping. */
        assert_int_equal(guest_mem_write(mem, MiB(1) - 32, src, 64), -EFAULT);
        assert_int_equal(guest_mem_write(mem, MiB(5) - 32, src, 64), -EFAULT);
        assert_int_equal(guest_mem_write(mem, UINT64_MAX - 31, src, 64), -EFAULT);
        assert_int_equal(guest_mem_fill(mem, MiB(1) - 32, 0x22, 64), -EFAULT);
        assert_int_equal(guest_mem_fill(mem, MiB(5) - 32, 0x22, 64), -EFAULT);
        assert_int_equal(guest_mem_fill(mem, MiB(1) + 16, 0x22, 1), -EFAULT);
        for (unsigned i = 0; i < 32; i++) {
                assert_int_equal(lo[MiB(1) - 32 + i], 0xaa);
                assert_int_equal(hi[MiB(3) - 32 + i], 0xbb);
        }

        memset(dst, 0x77, sizeof(dst));
        assert_int_equal(guest_mem_read(mem, MiB(1) - 32, dst, 64), -EFAULT);
        assert_int_equal(guest_mem_read(mem, MiB(5) - 32, dst, 64), -EFAULT);
        assert_int_equal(guest_mem_read(mem, MiB(1), dst, 1), -EFAULT);
        for (unsigned i = 0; i < sizeof(dst); i++)
                assert_int_equal(dst[i], 0x77);
        guest_mem_destroy(mem);
}

static void expect_create_fails(const struct guest_mem_spec *spec, const char *needle)
{
        struct error err = {0};
        struct guest_mem *mem = NULL;

        assert_int_equal(guest_mem_create(spec, &err, &mem), -EINVAL);
        assert_null(mem);
        assert_int_equal(err.code, -EINVAL);
        assert_true(err.msg[0] != '\0');
        if (!strstr(err.msg, needle))
                fail_msg("message '%s' does not mention '%s'", err.msg, needle);
}

static void test_bad_sizes_rejected(void **state)
{
        (void)state;
        struct guest_mem_spec spec = {.hole_start = HOLE_START, .hole_end = HOLE_END};

        spec.size = 0;
        expect_create_fails(&spec, "greater than 0");
        spec.size = MiB(1) + 1;
        expect_create_fails(&spec, "multiple");
        spec.size = KiB(6);
        expect_create_fails(&spec, "6144");
        /* With huge pages the size must be a multiple of 2 MiB; checked before mapping. */
        spec.size = MiB(3);
        spec.flags = GUEST_MEM_HUGEPAGES;
        expect_create_fails(&spec, "2048 KiB");
        spec.flags = 0;
        /* A hole that ends before it starts. */
        spec.size = MiB(4);
        spec.hole_start = MiB(2);
        spec.hole_end = MiB(1);
        expect_create_fails(&spec, "hole");
}

static void on_sigbus(int sig)
{
        (void)sig;
        guest_mem_sigbus_recover();
        abort(); /* a SIGBUS no checked copy expected */
}

/* A memory file truncated under the mapping: copies out of and into the gone pages return
 * -EIO (with a handler calling guest_mem_sigbus_recover), the pages still there copy, and
 * the thread can take the next SIGBUS too (SA_NODEFER: not left blocked). */
static void test_truncated_memory_file(void **state)
{
        struct sigaction sa = {.sa_handler = on_sigbus, .sa_flags = SA_NODEFER}, old;
        char path[] = "/tmp/test_guest_mem.XXXXXX";
        struct guest_mem_spec spec = {.size = MiB(2), .hole_start = GiB(3), .hole_end = GiB(4)};
        struct guest_mem *mem;
        struct error err = {0};
        uint8_t buf[64] = {0}, one = 0x5a;
        int fd = mkstemp(path);

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, MiB(2)), 0);
        assert_int_equal(pwrite(fd, &one, 1, 0x1000), 1);
        spec.flags = GUEST_MEM_FILE;
        spec.file = fd;
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        assert_int_equal(ftruncate(fd, MiB(1)), 0);
        close(fd);
        unlink(path);
        sigemptyset(&sa.sa_mask);
        assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(guest_mem_read(mem, MiB(1) + 0x3000, buf, sizeof(buf)), -EIO);
                assert_int_equal(guest_mem_write(mem, MiB(1) + 0x5000, buf, sizeof(buf)), -EIO);
                assert_int_equal(guest_mem_fill(mem, MiB(2) - 8, 0, 8), -EIO);
        }
        assert_int_equal(guest_mem_read(mem, 0x1000, buf, 1), 0);
        assert_int_equal(buf[0], 0x5a);
        sigaction(SIGBUS, &old, NULL);
        guest_mem_destroy(mem);
}

static void test_resident_bytes_grow_when_touched(void **state)
{
        (void)state;
        struct guest_mem *mem = test_mem_new(MiB(16), HOLE_START, HOLE_END);
        uint64_t before = guest_mem_resident_bytes(mem);
        uint8_t one = 1;

        /* Nothing is allocated until the guest (or the VMM) touches it. */
        assert_true(before < MiB(1));
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(guest_mem_write(mem, MiB(1) + i * MiB(1), &one, 1), 0);
        assert_true(guest_mem_resident_bytes(mem) >= before + 8 * KiB(4));
        assert_true(guest_mem_resident_bytes(mem) <= MiB(16));
        guest_mem_destroy(mem);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_below_hole_single_region),
            cmocka_unit_test(test_ram_equal_to_hole_start_single_region),
            cmocka_unit_test(test_above_hole_splits_regions),
            cmocka_unit_test(test_real_hole_above_4g),
            cmocka_unit_test(test_edges_single_region),
            cmocka_unit_test(test_wrap_around_rejected),
            cmocka_unit_test(test_ranges_straddling_hole),
            cmocka_unit_test(test_read_write_fill_roundtrip),
            cmocka_unit_test(test_failed_copies_touch_nothing),
            cmocka_unit_test(test_bad_sizes_rejected),
            cmocka_unit_test(test_resident_bytes_grow_when_touched),
            cmocka_unit_test(test_truncated_memory_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

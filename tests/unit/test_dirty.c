/*
 * Dirty tracking of the VMM's own writes into guest memory (diff snapshots): every write
 * path marks exactly the pages it touched -- guest_mem_write/fill (loaders) and, through
 * hostmem, copies, 16-bit stores, pins (when they start and when they end) and discards --
 * in the memory file's layout (the high region's pages follow the low region's); nothing is
 * recorded while tracking is off; taking the record clears it; a record given back is
 * merged.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fakes.h"
#include "memory/guest_mem.h"
#include "memory/hostmem.h"

/* 4 MiB: low [0, 1 MiB), hole [1 MiB, 2 MiB), high [2 MiB, 5 MiB) = file [1 MiB, 4 MiB). */
#define HIGH MiB(2)

static uint64_t *take(struct guest_mem *mem)
{
        uint64_t *bm = calloc(guest_mem_bitmap_words(mem), sizeof(uint64_t));

        guest_mem_take_dirty(mem, bm);
        return bm;
}

static bool bit(const uint64_t *bm, uint64_t page)
{
        return (bm[page / 64] >> (page % 64)) & 1;
}

static unsigned count(const struct guest_mem *mem, const uint64_t *bm)
{
        unsigned n = 0;

        for (size_t i = 0; i < guest_mem_bitmap_words(mem); i++)
                n += (unsigned)__builtin_popcountll(bm[i]);
        return n;
}

static void test_every_write_path_marks_its_pages(void **state)
{
        struct guest_mem *mem = test_mem_new(MiB(4), MiB(1), MiB(2));
        struct hostmem *hm;
        struct iovec iov;
        uint8_t buf[8192] = {1};
        uint64_t *bm;

        (void)state;
        assert_int_equal(hostmem_create(mem, "dev", &hm), 0);
        assert_int_equal(guest_mem_bitmap_words(mem), (MiB(4) / 4096 + 63) / 64);
        /* Not tracking: nothing recorded. */
        assert_false(guest_mem_tracking_dirty(mem));
        assert_int_equal(hostmem_write(hm, 0x1000, buf, 16), 0);
        assert_int_equal(guest_mem_track_dirty(mem), 0);
        assert_true(guest_mem_tracking_dirty(mem));
        bm = take(mem);
        assert_int_equal(count(mem, bm), 0);
        free(bm);

        assert_int_equal(guest_mem_write(mem, 0x2ff0, buf, 0x20), 0);    /* pages 2 and 3 */
        assert_int_equal(guest_mem_fill(mem, 0x5000, 0, 1), 0);          /* page 5 */
        assert_int_equal(hostmem_write(hm, 0x7000, buf, 4096), 0);       /* page 7 */
        assert_int_equal(hostmem_store16(hm, 0x9ffe, 7), 0);             /* page 9 */
        assert_int_equal(hostmem_pin(hm, HIGH + 0x1000, 8192, &iov), 0); /* file pages 257-258 */
        bm = take(mem);
        assert_int_equal(count(mem, bm), 7);
        assert_true(bit(bm, 2) && bit(bm, 3) && bit(bm, 5) && bit(bm, 7) && bit(bm, 9));
        assert_true(bit(bm, 256 + 1) && bit(bm, 256 + 2));
        free(bm);
        /* The I/O lands while pinned; the unpin marks again, after a snapshot took it. */
        memset(iov.iov_base, 0x42, 10);
        hostmem_unpin(hm, HIGH + 0x1000, 8192);
        assert_int_equal(hostmem_discard(hm, HIGH + MiB(1), 4096), 0);
        bm = take(mem);
        assert_int_equal(count(mem, bm), 3);
        assert_true(bit(bm, 257) && bit(bm, 258) && bit(bm, 256 + 256));
        /* Given back (a snapshot that failed): merged with what came meanwhile. */
        assert_int_equal(hostmem_write(hm, 0, buf, 1), 0);
        guest_mem_restore_dirty(mem, bm);
        free(bm);
        bm = take(mem);
        assert_int_equal(count(mem, bm), 4);
        assert_true(bit(bm, 0));
        free(bm);
        /* Refused accesses mark nothing. */
        assert_int_equal(hostmem_write(hm, MiB(1), buf, 1), -EFAULT);
        bm = take(mem);
        assert_int_equal(count(mem, bm), 0);
        free(bm);
        hostmem_destroy(hm);
        guest_mem_destroy(mem);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_write_path_marks_its_pages),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

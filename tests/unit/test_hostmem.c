/* The untrusted-host accessor: RAM bounds always, ownership on protected VMs (CC-3, CC-6,
 * CC-7). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fakes.h"
#include "memory/hostmem.h"

#define G   OWNERSHIP_GRANULE
#define MEM (4u << 20)

struct fx {
        struct guest_mem *mem;
        struct ownership *own;
        struct hostmem *hm;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(ownership_create(f->mem, false, &f->own), 0);
        assert_int_equal(hostmem_create(f->mem, "dev0", &f->hm), 0);
        hostmem_set_ownership(f->hm, f->own);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        hostmem_destroy(f->hm);
        ownership_destroy(f->own);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static void test_bounds_without_ownership(void **state)
{
        struct fx *f = *state;
        struct hostmem *plain;
        struct hostmem_stats st;
        uint8_t b[16];

        assert_int_equal(hostmem_create(f->mem, "plain", &plain), 0);
        assert_int_equal(hostmem_read(plain, MEM - 8, b, 16), -EFAULT);
        assert_int_equal(hostmem_write(plain, 0xc0000000ull, b, 1), -EFAULT);
        assert_int_equal(hostmem_read(plain, 0x1000, b, 16), 0);
        hostmem_get_stats(plain, &st);
        assert_int_equal(st.faults, 2);
        assert_int_equal(st.violations, 0);
        hostmem_destroy(plain);
}

static void test_cc3_private_bytes_are_never_read_or_written(void **state)
{
        struct fx *f = *state;
        uint8_t secret[G], out[64], zero[64] = {0};
        struct iovec iov;
        uint16_t v;

        memset(secret, 0x5a, sizeof(secret));
        assert_int_equal(guest_mem_write(f->mem, 3 * G, secret, G), 0);
        assert_int_equal(ownership_make_private(f->own, 3 * G, G), 0);

        memset(out, 0, sizeof(out));
        /* One private byte anywhere in the range refuses the whole access. */
        assert_int_equal(hostmem_read(f->hm, 3 * G - 32, out, 64), -EACCES);
        assert_memory_equal(out, zero, sizeof(out));
        assert_int_equal(hostmem_write(f->hm, 4 * G - 1, out, 2), -EACCES);
        assert_int_equal(hostmem_load16(f->hm, 3 * G + 2, &v), -EACCES);
        assert_int_equal(hostmem_store16(f->hm, 3 * G + 2, 1), -EACCES);
        assert_int_equal(hostmem_pin(f->hm, 2 * G, 2 * G, &iov), -EACCES);
        assert_int_equal(hostmem_discard(f->hm, 3 * G, G), -EACCES);
        assert_false(hostmem_check(f->hm, 3 * G, 1));
        /* The guest's data is untouched. */
        assert_int_equal(guest_mem_read(f->mem, 3 * G, secret, G), 0);
        for (unsigned i = 0; i < G; i++)
                assert_int_equal(secret[i], 0x5a);
}

static void test_cc6_no_earlier_check_survives_a_transition(void **state)
{
        struct fx *f = *state;
        uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};

        assert_int_equal(hostmem_write(f->hm, 5 * G, b, 8), 0);
        assert_true(hostmem_check(f->hm, 5 * G, 8));
        assert_int_equal(ownership_make_private(f->own, 5 * G, G), 0);
        assert_int_equal(hostmem_read(f->hm, 5 * G, b, 8), -EACCES);
        assert_int_equal(ownership_make_shared(f->own, 5 * G, G), 0);
        assert_int_equal(hostmem_read(f->hm, 5 * G, b, 8), 0);
}

static void test_cc7_violations_are_counted_per_accessor(void **state)
{
        struct fx *f = *state;
        struct hostmem *other;
        struct hostmem_stats st;
        uint8_t b[4];

        assert_int_equal(hostmem_create(f->mem, "dev1", &other), 0);
        hostmem_set_ownership(other, f->own);
        assert_int_equal(ownership_make_private(f->own, 0, G), 0);
        assert_int_equal(hostmem_read(f->hm, 0, b, 4), -EACCES);
        assert_int_equal(hostmem_read(f->hm, 8, b, 4), -EACCES);
        assert_int_equal(hostmem_read(other, 8, b, 4), -EACCES);
        hostmem_get_stats(f->hm, &st);
        assert_int_equal(st.violations, 2);
        hostmem_get_stats(other, &st);
        assert_int_equal(st.violations, 1);
        hostmem_destroy(other);
}

/* The inline common case (one granule of the first region, on a thread that has its slot)
 * checks the granule it touches like the general path: at the region's ends and on both
 * sides of a word of the map, a private granule refuses every access to it whole, nothing
 * moves, and the shared granules next to it are served. */
static void test_single_granule_accesses_check_their_own_granule(void **state)
{
        static const uint64_t granules[] = {0, 1, 62, 63, 64, 65, 127, 128, MEM / G - 1};
        struct fx *f = *state;
        uint8_t pattern[G], b[16], zero[16] = {0};
        struct iovec iov;
        uint16_t v;

        memset(pattern, 0xa5, sizeof(pattern));
        /* The thread's first short access takes its slot: the ones below are inline. */
        assert_int_equal(hostmem_read(f->hm, 0, b, sizeof(b)), 0);
        for (unsigned i = 0; i < ARRAY_SIZE(granules); i++) {
                gpa_t g = granules[i] * G;

                assert_int_equal(guest_mem_write(f->mem, g, pattern, G), 0);
                assert_int_equal(ownership_make_private(f->own, g, G), 0);
                memset(b, 0, sizeof(b));
                assert_int_equal(hostmem_read(f->hm, g, b, 16), -EACCES);
                assert_int_equal(hostmem_read(f->hm, g + G - 16, b, 16), -EACCES);
                assert_int_equal(hostmem_load16(f->hm, g + G - 2, &v), -EACCES);
                assert_memory_equal(b, zero, sizeof(b));
                assert_int_equal(hostmem_write(f->hm, g + 8, zero, 8), -EACCES);
                assert_int_equal(hostmem_store16(f->hm, g + G - 2, 0), -EACCES);
                assert_int_equal(hostmem_pin(f->hm, g, G, &iov), -EACCES);
                assert_int_equal(hostmem_pin(f->hm, g + 100, 1, &iov), -EACCES);
                assert_false(hostmem_check(f->hm, g + G - 1, 1));
                assert_int_equal(guest_mem_read(f->mem, g, b, 16), 0);
                assert_memory_equal(b, pattern, 16);
                assert_int_equal(guest_mem_read(f->mem, g + G - 16, b, 16), 0);
                assert_memory_equal(b, pattern, 16);
                /* Its neighbours are shared. */
                if (g) {
                        assert_int_equal(hostmem_read(f->hm, g - 16, b, 16), 0);
                        assert_int_equal(hostmem_store16(f->hm, g - 2, 7), 0);
                        assert_true(hostmem_check(f->hm, g - 1, 1));
                }
                if (g + G < MEM) {
                        assert_int_equal(hostmem_load16(f->hm, g + G, &v), 0);
                        assert_int_equal(hostmem_write(f->hm, g + G, zero, 8), 0);
                        assert_int_equal(hostmem_pin(f->hm, g + G, G, &iov), 0);
                        hostmem_unpin(f->hm, g + G, G);
                }
                assert_int_equal(ownership_make_shared(f->own, g, G), 0);
                assert_int_equal(hostmem_read(f->hm, g + G - 16, b, 16), 0);
                assert_memory_equal(b, pattern, 16);
        }
}

static void test_pin_holds_off_a_transition_until_unpinned(void **state)
{
        struct fx *f = *state;
        struct iovec iov;

        assert_int_equal(hostmem_pin(f->hm, 6 * G, 100, &iov), 0);
        assert_non_null(iov.iov_base);
        hostmem_unpin(f->hm, 6 * G, 100);
        /* Balanced: the transition does not wait. */
        assert_int_equal(ownership_make_private(f->own, 6 * G, G), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_bounds_without_ownership, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cc3_private_bytes_are_never_read_or_written, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_cc6_no_earlier_check_survives_a_transition, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_cc7_violations_are_counted_per_accessor, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_single_granule_accesses_check_their_own_granule,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_pin_holds_off_a_transition_until_unpinned, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

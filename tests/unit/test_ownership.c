/* The ownership map: queries, transitions, pins, and the transition/pin protocol. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fakes.h"
#include "memory/ownership.h"

#define G   OWNERSHIP_GRANULE
#define MEM (8u << 20)

struct fx {
        struct guest_mem *mem;
        struct ownership *o;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(ownership_create(f->mem, false, &f->o), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        ownership_destroy(f->o);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static void test_starts_shared_or_private(void **state)
{
        struct fx *f = *state;
        struct ownership *p;

        assert_int_equal(ownership_granules(f->o), MEM / G);
        assert_int_equal(ownership_private_granules(f->o), 0);
        assert_true(ownership_is_shared(f->o, 0, MEM));
        assert_int_equal(ownership_create(f->mem, true, &p), 0);
        assert_int_equal(ownership_private_granules(p), MEM / G);
        assert_false(ownership_is_shared(p, 0x1000, 1));
        assert_true(ownership_any_private(p, MEM - 1, 1));
        ownership_destroy(p);
}

static void test_queries_cover_every_granule_touched(void **state)
{
        struct fx *f = *state;

        assert_int_equal(ownership_make_private(f->o, 5 * G, G), 0);
        assert_true(ownership_is_shared(f->o, 4 * G, G));
        assert_false(ownership_is_shared(f->o, 4 * G, G + 1)); /* one byte into granule 5 */
        assert_false(ownership_is_shared(f->o, 6 * G - 1, 1));
        assert_true(ownership_is_shared(f->o, 6 * G, 100));
        assert_true(ownership_any_private(f->o, 0, MEM));
        assert_false(ownership_any_private(f->o, 6 * G, MEM - 6 * G));
        /* Not RAM: never "shared". */
        assert_false(ownership_is_shared(f->o, MEM - 8, 16));
        assert_false(ownership_is_shared(f->o, UINT64_MAX - 4, 8));
}

static void test_transition_arguments(void **state)
{
        struct fx *f = *state;
        uint64_t gen = ownership_generation(f->o);

        assert_int_equal(ownership_make_private(f->o, 0x800, G), -EINVAL);
        assert_int_equal(ownership_make_private(f->o, 0, 0x800), -EINVAL);
        assert_int_equal(ownership_make_private(f->o, 0, 0), -EINVAL);
        assert_int_equal(ownership_make_private(f->o, MEM - G, 2 * G), -EFAULT);
        assert_int_equal(ownership_make_shared(f->o, 0xc0000000ull, G), -EFAULT);
        assert_int_equal(ownership_make_private(f->o, UINT64_MAX - G + 1, G), -EFAULT);
        /* Refused calls change nothing. */
        assert_int_equal(ownership_generation(f->o), gen);
        assert_int_equal(ownership_private_granules(f->o), 0);
}

static void test_counts_and_generation(void **state)
{
        struct fx *f = *state;
        uint64_t gen = ownership_generation(f->o);

        assert_int_equal(ownership_make_private(f->o, 0, 10 * G), 0);
        assert_int_equal(ownership_private_granules(f->o), 10);
        assert_int_equal(ownership_make_private(f->o, 5 * G, 10 * G), 0); /* 5 already were */
        assert_int_equal(ownership_private_granules(f->o), 15);
        assert_int_equal(ownership_make_shared(f->o, 0, 3 * G), 0);
        assert_int_equal(ownership_private_granules(f->o), 12);
        assert_true(ownership_generation(f->o) >= gen + 3);
}

static int collect(void *opaque, gpa_t gpa, uint64_t len)
{
        uint64_t *runs = opaque;
        runs[runs[0] * 2 + 1] = gpa;
        runs[runs[0] * 2 + 2] = len;
        runs[0]++;
        return 0;
}

static void test_for_each_private_runs(void **state)
{
        struct fx *f = *state;
        uint64_t runs[16] = {0};

        assert_int_equal(ownership_make_private(f->o, 2 * G, 3 * G), 0);
        assert_int_equal(ownership_make_private(f->o, 63 * G, 3 * G), 0); /* crosses a word */
        assert_int_equal(ownership_for_each_private(f->o, collect, runs), 0);
        assert_int_equal(runs[0], 2);
        assert_int_equal(runs[1], 2 * G);
        assert_int_equal(runs[2], 3 * G);
        assert_int_equal(runs[3], 63 * G);
        assert_int_equal(runs[4], 3 * G);
}

static void test_pin_checks_ownership(void **state)
{
        struct fx *f = *state;

        assert_int_equal(ownership_make_private(f->o, 8 * G, G), 0);
        assert_int_equal(ownership_pin(f->o, 7 * G, G), 0);
        ownership_unpin(f->o, 7 * G, G);
        assert_int_equal(ownership_pin(f->o, 7 * G, 2 * G), -EACCES);
        assert_int_equal(ownership_pin(f->o, MEM - 4, 8), -EFAULT);
        /* The refused pin left nothing behind: this transition must not wait. */
        assert_int_equal(ownership_make_private(f->o, 7 * G, G), 0);
}

struct waiter {
        struct ownership *o;
        gpa_t gpa;
        uint64_t len;
        volatile int done;
};

static void *make_private_thread(void *arg)
{
        struct waiter *w = arg;
        int r = ownership_make_private(w->o, w->gpa, w->len);
        w->done = r == 0 ? 1 : -1;
        return NULL;
}

static void test_transition_waits_for_access_under_way(void **state)
{
        struct fx *f = *state;
        struct waiter w = {.o = f->o, .gpa = 16 * G, .len = 4 * G};
        pthread_t t;

        assert_int_equal(ownership_pin(f->o, 17 * G, 100), 0); /* a device's DMA */
        assert_int_equal(pthread_create(&t, NULL, make_private_thread, &w), 0);
        usleep(50000);
        assert_int_equal(w.done, 0); /* still waiting for the access */
        /* The bits flipped first: a new access is already refused. */
        assert_int_equal(ownership_pin(f->o, 18 * G, 1), -EACCES);
        assert_false(ownership_is_shared(f->o, 16 * G, G));
        ownership_unpin(f->o, 17 * G, 100);
        pthread_join(t, NULL);
        assert_int_equal(w.done, 1);
}

static void test_transition_ignores_pins_elsewhere(void **state)
{
        struct fx *f = *state;
        struct waiter w = {.o = f->o, .gpa = 32 * G, .len = G};
        pthread_t t;

        assert_int_equal(ownership_pin(f->o, 40 * G, G), 0);
        assert_int_equal(pthread_create(&t, NULL, make_private_thread, &w), 0);
        pthread_join(t, NULL);
        assert_int_equal(w.done, 1);
        ownership_unpin(f->o, 40 * G, G);
}

/* Random transitions and pins against a plain array: the map must agree at every step. */
static void test_random_against_reference_model(void **state)
{
        struct fx *f = *state;
        const unsigned n = 256; /* granules exercised */
        bool model[256] = {false};
        unsigned seed = 12345;

        for (int step = 0; step < 20000; step++) {
                unsigned a = rand_r(&seed) % n, len = 1 + rand_r(&seed) % 8;
                unsigned op = rand_r(&seed) % 3;

                if (a + len > n)
                        len = n - a;
                if (op == 0 || op == 1) {
                        int r = op == 0 ? ownership_make_private(f->o, a * G, len * G)
                                        : ownership_make_shared(f->o, a * G, len * G);
                        assert_int_equal(r, 0);
                        for (unsigned i = a; i < a + len; i++)
                                model[i] = op == 0;
                } else {
                        bool any = false;
                        for (unsigned i = a; i < a + len; i++)
                                any |= model[i];
                        int r = ownership_pin(f->o, a * G + 7, len * G - 14);
                        assert_int_equal(r, any ? -EACCES : 0);
                        if (!r)
                                ownership_unpin(f->o, a * G + 7, len * G - 14);
                }
                unsigned count = 0;
                for (unsigned i = 0; i < n; i++)
                        count += model[i];
                assert_int_equal(ownership_private_granules(f->o), count);
                unsigned probe = rand_r(&seed) % n;
                assert_int_equal(ownership_is_shared(f->o, probe * G, G), !model[probe]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_starts_shared_or_private, setup, teardown),
            cmocka_unit_test_setup_teardown(test_queries_cover_every_granule_touched, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_transition_arguments, setup, teardown),
            cmocka_unit_test_setup_teardown(test_counts_and_generation, setup, teardown),
            cmocka_unit_test_setup_teardown(test_for_each_private_runs, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pin_checks_ownership, setup, teardown),
            cmocka_unit_test_setup_teardown(test_transition_waits_for_access_under_way, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_transition_ignores_pins_elsewhere, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_random_against_reference_model, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

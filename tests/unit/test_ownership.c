/* The ownership map: queries, transitions, pins, and the transition/pin protocol. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
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
        _Atomic int done;
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

/* The progress hook: the I/O holding the pin completes from the waiting thread itself (here
 * the very thread that holds it, which would otherwise wait forever). */
struct progress {
        struct ownership *o;
        gpa_t gpa;
        unsigned calls;
};

static void release_pin(void *opaque)
{
        struct progress *p = opaque;

        if (++p->calls == 3)
                ownership_unpin(p->o, p->gpa, G);
}

static void test_transition_makes_progress_while_it_waits(void **state)
{
        struct fx *f = *state;
        struct progress p = {.o = f->o, .gpa = 32 * G};

        ownership_set_progress(f->o, release_pin, &p);
        assert_int_equal(ownership_pin(f->o, 32 * G, G), 0);
        assert_int_equal(ownership_make_private(f->o, 32 * G, G), 0);
        assert_int_equal(p.calls, 3);
        assert_false(ownership_is_shared(f->o, 32 * G, G));
        ownership_set_progress(f->o, NULL, NULL);
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

/* Short accesses: the same answers as pins, for single granules (the fast path), ranges
 * over several granules and non-RAM. */
static void test_short_access_checks_ownership(void **state)
{
        struct fx *f = *state;
        struct ownership_access a;

        assert_int_equal(ownership_make_private(f->o, 8 * G, G), 0);
        assert_int_equal(ownership_access_begin(f->o, 7 * G, G, &a), 0);
        ownership_access_end(f->o, &a);
        assert_int_equal(ownership_access_begin(f->o, 8 * G + 100, 2, &a), -EACCES);
        assert_int_equal(ownership_access_begin(f->o, 7 * G + 8, G, &a), -EACCES); /* straddles */
        assert_int_equal(ownership_access_begin(f->o, 2 * G, 6 * G, &a), 0);
        ownership_access_end(f->o, &a);
        assert_int_equal(ownership_access_begin(f->o, 2 * G, 7 * G, &a), -EACCES);
        assert_int_equal(ownership_access_begin(f->o, MEM - 4, 8, &a), -EFAULT);
        assert_int_equal(ownership_access_begin(f->o, 0xd0000000ull, 4, &a), -EFAULT);
        assert_int_equal(ownership_access_begin(f->o, 9 * G, 0, &a), 0); /* nothing to touch */
        ownership_access_end(f->o, &a);
}

/* A transition to private waits for a short access under way (announced before the flip). */
struct short_holder {
        struct ownership *o;
        _Atomic int state; /* 1: inside the access, 2: told to leave, 3: left */
};

static void *hold_short_access(void *arg)
{
        struct short_holder *h = arg;
        struct ownership_access a;

        if (ownership_access_begin(h->o, 20 * G, 8, &a)) {
                h->state = -1;
                return NULL;
        }
        h->state = 1;
        while (h->state != 2)
                usleep(1000);
        ownership_access_end(h->o, &a);
        h->state = 3;
        return NULL;
}

static void test_transition_waits_for_short_access(void **state)
{
        struct fx *f = *state;
        struct short_holder h = {.o = f->o};
        struct waiter w = {.o = f->o, .gpa = 30 * G, .len = G}; /* elsewhere: still waits */
        pthread_t th, tw;

        assert_int_equal(pthread_create(&th, NULL, hold_short_access, &h), 0);
        while (h.state == 0)
                usleep(1000);
        assert_int_equal(h.state, 1);
        assert_int_equal(pthread_create(&tw, NULL, make_private_thread, &w), 0);
        usleep(50000);
        assert_int_equal(w.done, 0);
        h.state = 2;
        pthread_join(tw, NULL);
        assert_int_equal(w.done, 1);
        assert_int_equal(h.state, 3);
        pthread_join(th, NULL);
}

/* Writers through short accesses against transitions: once ownership_make_private returned,
 * no write lands in the range until it is shared again (the guarantee devices rely on). */
struct writer {
        struct ownership *o;
        /* Stands in for the guest page, one word per granule: relaxed atomics (plain moves
         * on x86), so that two writers on one word are no data race of the test's own. */
        _Atomic uint64_t *mem;
        _Atomic int stop;
        _Atomic unsigned long writes;
        unsigned long refused;
};

static void *write_loop(void *arg)
{
        struct writer *w = arg;
        uint64_t n = 0;

        while (!w->stop) {
                struct ownership_access a;
                unsigned g = (unsigned)(n % 4);

                if (ownership_access_begin(w->o, (40 + g) * G + 8 * (n % 7), 8, &a) == 0) {
                        /* Two writes, some time apart: a transition that did not
                         * wait for this access would see the second land after it. */
                        atomic_store_explicit(&w->mem[g], ++n, memory_order_relaxed);
                        for (int spin = 0; spin < 200; spin++)
                                __asm__ __volatile__("" ::: "memory");
                        atomic_store_explicit(&w->mem[g], ++n, memory_order_relaxed);
                        ownership_access_end(w->o, &a);
                        w->writes++;
                } else {
                        n++;
                        w->refused++;
                }
        }
        return NULL;
}

static void test_short_accesses_never_land_after_a_transition(void **state)
{
        struct fx *f = *state;
        static _Atomic uint64_t page[4];
        struct writer w[2] = {{.o = f->o, .mem = page}, {.o = f->o, .mem = page}};
        pthread_t t[2];

        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
        for (int round = 0; round < 300; round++) {
                uint64_t before[4], after[4];

                assert_int_equal(ownership_make_private(f->o, 40 * G, 4 * G), 0);
                for (int g = 0; g < 4; g++)
                        before[g] = atomic_load_explicit(&page[g], memory_order_relaxed);
                for (int spin = 0; spin < 2000; spin++)
                        __asm__ __volatile__("" ::: "memory");
                for (int g = 0; g < 4; g++)
                        after[g] = atomic_load_explicit(&page[g], memory_order_relaxed);
                assert_memory_equal(before, after, sizeof(before));
                assert_int_equal(ownership_make_shared(f->o, 40 * G, 4 * G), 0);
                if (round % 32 == 0)
                        usleep(100);
        }
        /* The range is shared now: each writer gets through at least once (on a loaded
         * machine a writer may not have run at all while it was shared above). */
        for (int i = 0; i < 2; i++)
                for (int wait = 0; wait < 10000 && !w[i].writes; wait++)
                        usleep(1000);
        for (int i = 0; i < 2; i++) {
                w[i].stop = 1;
                pthread_join(t[i], NULL);
                assert_true(w[i].writes > 0);
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
            cmocka_unit_test_setup_teardown(test_transition_makes_progress_while_it_waits, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_random_against_reference_model, setup, teardown),
            cmocka_unit_test_setup_teardown(test_short_access_checks_ownership, setup, teardown),
            cmocka_unit_test_setup_teardown(test_transition_waits_for_short_access, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_short_accesses_never_land_after_a_transition,
                                            setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

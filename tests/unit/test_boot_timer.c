/*
 * Boot timer: a byte write of 123 at offset 0 logs Firecracker's "Guest-boot-time" line and
 * records the wall time; any other value, offset or width does nothing.
 */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/clock.h"
#include "devices/boot_timer.h"
#include "fakes.h"

static struct log_capture cap;

static int setup(void **state)
{
        struct boot_timer *t = NULL;

        /* Started 5 ms ago, so the reported time is clearly positive. */
        if (boot_timer_create(clock_ns(CLOCK_MONOTONIC) - 5000000ull,
                              clock_ns(CLOCK_PROCESS_CPUTIME_ID), &t))
                return -1;
        log_set_level(LOG_LEVEL_INFO);
        log_capture_start(&cap);
        *state = t;
        return 0;
}

static int teardown(void **state)
{
        log_capture_stop();
        boot_timer_destroy(*state);
        return 0;
}

static void wr(struct boot_timer *t, uint64_t off, const uint8_t *data, uint32_t len)
{
        boot_timer_bus_ops()->write(t, off, data, len);
}

static void test_magic_write_logs_boot_time(void **state)
{
        struct boot_timer *t = *state;
        const uint8_t magic = BOOT_TIMER_MAGIC;
        regmatch_t m[5];
        regex_t re;
        unsigned long long us, ms, cpu_us, cpu_ms;
        int64_t last;

        assert_int_equal(boot_timer_last_us(t), -1);
        wr(t, 0, &magic, 1);
        assert_int_equal(cap.nr, 1);
        assert_int_equal(cap.levels[0], LOG_LEVEL_INFO);
        assert_int_equal(regcomp(&re,
                                 "Guest-boot-time = +([0-9]+) us ([0-9]+) ms, +([0-9]+) CPU us "
                                 "([0-9]+) CPU ms\n$",
                                 REG_EXTENDED),
                         0);
        if (regexec(&re, cap.lines[0], 5, m, 0) != 0)
                fail_msg("log line does not match: %s", cap.lines[0]);
        regfree(&re);
        us = strtoull(cap.lines[0] + m[1].rm_so, NULL, 10);
        ms = strtoull(cap.lines[0] + m[2].rm_so, NULL, 10);
        cpu_us = strtoull(cap.lines[0] + m[3].rm_so, NULL, 10);
        cpu_ms = strtoull(cap.lines[0] + m[4].rm_so, NULL, 10);
        assert_int_equal(ms, us / 1000);
        assert_int_equal(cpu_ms, cpu_us / 1000);
        assert_true(us >= 5000);

        last = boot_timer_last_us(t);
        assert_true(last >= 0);
        assert_int_equal((unsigned long long)last, us);
}

static void test_other_writes_do_nothing(void **state)
{
        struct boot_timer *t = *state;
        const uint8_t wrong[] = {0, 122, 124, 0xff};
        const uint8_t magic[8] = {BOOT_TIMER_MAGIC, 0, 0, 0, 0, 0, 0, 0};

        for (size_t i = 0; i < sizeof(wrong); i++)
                wr(t, 0, &wrong[i], 1);
        /* The magic at another offset or with another width. */
        wr(t, 1, magic, 1);
        wr(t, 0x10, magic, 1);
        wr(t, 0, magic, 2);
        wr(t, 0, magic, 4);
        wr(t, 0, magic, 8);
        assert_int_equal(cap.nr, 0);
        assert_int_equal(boot_timer_last_us(t), -1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_magic_write_logs_boot_time),
            T(test_other_writes_do_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

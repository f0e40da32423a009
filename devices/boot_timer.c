#include "boot_timer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

struct boot_timer {
        uint64_t start_ns, start_cpu_ns;
        _Atomic int64_t last_us;
};

int boot_timer_create(uint64_t start_ns, uint64_t start_cpu_ns, struct boot_timer **out)
{
        struct boot_timer *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->start_ns = start_ns;
        t->start_cpu_ns = start_cpu_ns;
        atomic_store(&t->last_us, -1);
        *out = t;
        return 0;
}

void boot_timer_destroy(struct boot_timer *t)
{
        free(t);
}

static void timer_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct boot_timer *t = opaque;
        uint64_t wall_us, cpu_us;

        if (off != 0 || len != 1 || data[0] != BOOT_TIMER_MAGIC)
                return;
        wall_us = (clock_ns(CLOCK_MONOTONIC) - t->start_ns) / 1000;
        cpu_us = (clock_ns(CLOCK_PROCESS_CPUTIME_ID) - t->start_cpu_ns) / 1000;
        atomic_store(&t->last_us, (int64_t)wall_us);
        LOG_INFO("Guest-boot-time = %6llu us %llu ms, %6llu CPU us %llu CPU ms",
                 (unsigned long long)wall_us, (unsigned long long)(wall_us / 1000),
                 (unsigned long long)cpu_us, (unsigned long long)(cpu_us / 1000));
}

static void timer_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        (void)opaque;
        (void)off;
        memset(data, 0, len);
}

const struct bus_ops *boot_timer_bus_ops(void)
{
        static const struct bus_ops ops = {.read = timer_read, .write = timer_write};
        return &ops;
}

int64_t boot_timer_last_us(struct boot_timer *t)
{
        return atomic_load(&t->last_us);
}

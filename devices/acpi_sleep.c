#include "acpi_sleep.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct acpi_sleep {
        struct acpi_sleep_config cfg;
        /* WAK_STS: set when a refused sleep request "woke up" at once; write 1 to clear. vCPU
         * threads access the registers concurrently: the bits are atomic. */
        atomic_uint status;
        atomic_uint_least64_t power_offs, refused;
        struct ratelimit rl;
};

int acpi_sleep_create(const struct acpi_sleep_config *cfg, struct acpi_sleep **out)
{
        struct acpi_sleep *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->cfg = *cfg;
        ratelimit_init(&s->rl, 1000000000ull, 10);
        *out = s;
        return 0;
}

void acpi_sleep_destroy(struct acpi_sleep *s)
{
        free(s);
}

static void sleep_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct acpi_sleep *s = opaque;

        memset(data, 0, len);
        if (off == ACPI_SLEEP_STATUS_OFF)
                data[0] = (uint8_t)atomic_load(&s->status);
}

static void sleep_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct acpi_sleep *s = opaque;
        unsigned type;

        (void)len;
        if (off == ACPI_SLEEP_STATUS_OFF) {
                atomic_fetch_and(&s->status, ~(unsigned)(data[0] & ACPI_SLEEP_WAK_STS));
                return;
        }
        if (off != ACPI_SLEEP_CONTROL_OFF || !(data[0] & ACPI_SLEEP_EN))
                return;
        type = (data[0] & ACPI_SLEEP_TYP_MASK) >> ACPI_SLEEP_TYP_SHIFT;
        if (type == s->cfg.s5_type) {
                atomic_fetch_add(&s->power_offs, 1);
                s->cfg.power_off(s->cfg.opaque);
                return;
        }
        atomic_fetch_add(&s->refused, 1);
        LOG_GUEST(&s->rl, "ACPI sleep type %u requested: only S5 (power off) is offered", type);
        atomic_fetch_or(&s->status, ACPI_SLEEP_WAK_STS);
}

const struct bus_ops *acpi_sleep_ops(void)
{
        static const struct bus_ops ops = {.read = sleep_read, .write = sleep_write};
        return &ops;
}

uint64_t acpi_sleep_power_off_count(struct acpi_sleep *s)
{
        return atomic_load(&s->power_offs);
}

uint64_t acpi_sleep_refused_count(struct acpi_sleep *s)
{
        return atomic_load(&s->refused);
}

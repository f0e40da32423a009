#include "scenarios.h"

#include <stddef.h>

#include "str.h"

static const struct scenario scenarios[] = {
    {"hello", scenario_hello},     {"boot", scenario_boot}, {"smp", scenario_smp},
    {"timer", scenario_timer},     {"echo", scenario_echo}, {"serial-irq", scenario_serial_irq},
    {"rng", scenario_rng},         {"blk", scenario_blk},   {"idle", scenario_idle},
    {"hostile", scenario_hostile}, {"net", scenario_net},   {"balloon", scenario_balloon},
    {"vsock", scenario_vsock},
};

const struct scenario *scenario_find(const char *name)
{
        for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
                if (str_eq(scenarios[i].name, name))
                        return &scenarios[i];
        return NULL;
}

#include "scenarios.h"

#include <stddef.h>

#include "str.h"

static const struct scenario scenarios[] = {
    {"hello", scenario_hello},
    {"boot", scenario_boot},
    {"smp", scenario_smp},
    {"timer", scenario_timer},
    {"cpuid", scenario_cpuid},
    {"echo", scenario_echo},
    {"serial-irq", scenario_serial_irq},
    {"serial-flood", scenario_serial_flood},
    {"rng", scenario_rng},
    {"blk", scenario_blk},
    {"idle", scenario_idle},
    {"hostile", scenario_hostile},
    {"net", scenario_net},
    {"mmds", scenario_mmds},
    {"balloon", scenario_balloon},
    {"freepage", scenario_freepage},
    {"freepage-idle", scenario_freepage_idle},
    {"pmem", scenario_pmem},
    {"pmem-idle", scenario_pmem_idle},
    {"blk-cache", scenario_blk_cache},
    {"virtio-mem", scenario_virtio_mem},
    {"vsock", scenario_vsock},
    {"vsock-stream", scenario_vsock_stream},
    {"blk-stream", scenario_blk_stream},
    {"net-stream", scenario_net_stream},
    {"cc-sev-io", scenario_cc_sev_io},
    {"cc-pef-io", scenario_cc_pef_io},
    {"cc-s390-pv-io", scenario_cc_s390_io},
    {"cc-sev-attack", scenario_cc_sev_attack},
    {"cc-pef-attack", scenario_cc_pef_attack},
    {"cc-s390-pv-attack", scenario_cc_s390_attack},
    {"cc-secret", scenario_cc_secret},
    {"cc-peek", scenario_cc_peek},
    {"cc-hammer", scenario_cc_hammer},
    {"cc-stress", scenario_cc_stress},
    {"snapshot", scenario_snapshot},
    {"heartbeat", scenario_heartbeat},
    {"clone", scenario_clone},
    {"topology", scenario_topology},
};

const struct scenario *scenario_find(const char *name)
{
        for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
                if (str_eq(scenarios[i].name, name))
                        return &scenarios[i];
        return NULL;
}

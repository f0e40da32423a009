/*
 * The scenario table. A scenario runs on the BSP after boot; returning means success,
 * failing means calling probe_fail() (which does not return). One file per group of
 * scenarios; scenarios/table.c lists them all.
 */
#ifndef PROBE_SCENARIOS_H
#define PROBE_SCENARIOS_H

#include "acpi.h"
#include "bootinfo.h"

struct scenario {
        const char *name;
        void (*run)(const struct boot_info *bi);
};

const struct scenario *scenario_find(const char *name);

/* basic.c */
void scenario_hello(const struct boot_info *bi);
void scenario_timer(const struct boot_info *bi);
void scenario_topology(const struct boot_info *bi);
void scenario_cpuid(const struct boot_info *bi);
/* boot.c */
void scenario_boot(const struct boot_info *bi);
/* smp.c */
void scenario_smp(const struct boot_info *bi);
/* serial.c */
void scenario_echo(const struct boot_info *bi);
void scenario_serial_irq(const struct boot_info *bi);
void scenario_serial_flood(const struct boot_info *bi);
void scenario_idle(const struct boot_info *bi); /* idle.c */
/* virtio.c, blk.c, net.c, vsock.c, balloon.c, hostile.c */
void scenario_rng(const struct boot_info *bi);
void scenario_blk(const struct boot_info *bi);
void scenario_hostile(const struct boot_info *bi);
void scenario_net(const struct boot_info *bi);
void scenario_mmds(const struct boot_info *bi); /* mmds.c */
void scenario_balloon(const struct boot_info *bi);
void scenario_freepage(const struct boot_info *bi);      /* freepage.c */
void scenario_freepage_idle(const struct boot_info *bi); /* freepage.c */
void scenario_pmem(const struct boot_info *bi);          /* pmem.c */
void scenario_pmem_idle(const struct boot_info *bi);     /* pmem.c */
void scenario_blk_cache(const struct boot_info *bi);     /* pmem.c */
void scenario_virtio_mem(const struct boot_info *bi);    /* pmem.c */
void scenario_vsock(const struct boot_info *bi);
void scenario_vsock_stream(const struct boot_info *bi);
/* faults.c: guests for the fault-injection tests */
void scenario_blk_stream(const struct boot_info *bi);
void scenario_net_stream(const struct boot_info *bi);
void scenario_snapshot(const struct boot_info *bi); /* snapshot.c */
void scenario_heartbeat(const struct boot_info *bi);
void scenario_clone(const struct boot_info *bi);
/* cc.c: confidential platforms end to end */
void scenario_cc_sev_io(const struct boot_info *bi);
void scenario_cc_pef_io(const struct boot_info *bi);
void scenario_cc_s390_io(const struct boot_info *bi);
void scenario_cc_sev_attack(const struct boot_info *bi);
void scenario_cc_pef_attack(const struct boot_info *bi);
void scenario_cc_s390_attack(const struct boot_info *bi);
void scenario_cc_secret(const struct boot_info *bi);
void scenario_cc_peek(const struct boot_info *bi);
void scenario_cc_hammer(const struct boot_info *bi);
void scenario_cc_stress(const struct boot_info *bi);

/* Helpers shared by scenarios (common.c): ACPI access that fails the scenario with a reason
 * instead of returning an error. */
void scenario_acpi(const struct boot_info *bi, struct acpi_root *root);
void scenario_madt(const struct boot_info *bi, struct acpi_madt *madt);
struct ioapic_pin {
        uint64_t ioapic;
        unsigned pin;
};
/* Routes ISA IRQ `irq` (honouring MADT interrupt source overrides) to vector on this CPU and
 * returns the IOAPIC pin it used, for masking it again. */
struct ioapic_pin scenario_route_isa_irq(const struct acpi_madt *madt, unsigned irq,
                                         uint8_t vector);
/* Routes GSI gsi (a DSDT device's Interrupt) to vector on this CPU. */
struct ioapic_pin scenario_route_gsi(const struct acpi_madt *madt, uint32_t gsi, uint8_t vector,
                                     bool level, bool active_low);

#endif

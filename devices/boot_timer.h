/*
 * Boot timer (Firecracker's convention): a guest byte write of 123 at offset 0 of its MMIO
 * window logs "Guest-boot-time = N us N ms, N CPU us N CPU ms", measured from the moment the
 * VMM declared the VM started.
 */
#ifndef DEVICES_BOOT_TIMER_H
#define DEVICES_BOOT_TIMER_H

#include <stdint.h>

#include "bus.h"

#define BOOT_TIMER_MAGIC 123

struct boot_timer;

/* start_ns: CLOCK_MONOTONIC at start; start_cpu_ns: CLOCK_PROCESS_CPUTIME_ID at start. */
int boot_timer_create(uint64_t start_ns, uint64_t start_cpu_ns, struct boot_timer **out) MUST_CHECK;
void boot_timer_destroy(struct boot_timer *t);
const struct bus_ops *boot_timer_bus_ops(void);
/* Wall time in us of the last report, or -1 if the guest has not written the magic yet. */
int64_t boot_timer_last_us(struct boot_timer *t);

#endif

/*
 * A bump allocator over guest RAM the probe does not otherwise use: from the end of the
 * probe image (4 KiB aligned) to the end of the memory map's RAM range that holds it,
 * capped at 4 GiB (the probe's mapping) and below anything the loader placed there (initrd,
 * command line, handover structure, RSDP). Nothing is ever freed: a scenario allocates what
 * it needs once. Memory is not cleared (fresh guest RAM is zero, and clearing costs
 * instructions on an emulating KVM); alloc_zeroed clears.
 */
#ifndef PROBE_ALLOC_H
#define PROBE_ALLOC_H

#include <stdint.h>

#include "bootinfo.h"

/* Finds the free range; fails the scenario when there is none. Idempotent. */
void alloc_init(const struct boot_info *bi);
/* size bytes aligned to align (a power of two); fails the scenario when out of memory. */
void *alloc_mem(uint64_t size, uint64_t align);
void *alloc_zeroed(uint64_t size, uint64_t align);
/* Bytes left, and the range's bounds (for reports and hostile addresses). */
uint64_t alloc_left(void);
uint64_t alloc_ram_end(void);

#endif

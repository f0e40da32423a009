/*
 * The legacy Intel MultiProcessor table, found where Linux looks for it (the first KiB of
 * memory, the last KiB of 640 KiB base memory, the BIOS area 0xF0000-0xFFFFF) and checked:
 * floating pointer and base-table checksums, entry lengths, entry counts.
 */
#ifndef PROBE_MPTABLE_H
#define PROBE_MPTABLE_H

#include <stdint.h>

struct mptable {
        uint64_t fp_addr;  /* "_MP_" floating pointer */
        uint64_t cfg_addr; /* "PCMP" configuration table */
        char oem[9];
        unsigned cpus;        /* enabled processor entries */
        unsigned bsp_apic_id; /* the processor entry flagged as bootstrap */
        unsigned ioapics;
        uint32_t ioapic_addr;  /* of the first IOAPIC entry */
        unsigned irqs;         /* I/O interrupt assignment entries */
        unsigned lints;        /* local interrupt assignment entries */
        unsigned entries;      /* entries found by walking the table's length */
        unsigned header_count; /* what the header says */
};

/* Returns NULL and fills out when a valid table is found; "none" when there is no
 * floating pointer; another reason when a table is malformed. */
const char *mptable_find(struct mptable *out);

#endif

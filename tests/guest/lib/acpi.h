/*
 * ACPI table walking: RSDP -> XSDT (or RSDT) -> tables, every checksum verified, plus MADT
 * and FADT decoding. Functions that can fail return NULL on success or a short reason
 * (one phrase, fit for a `probe: fail` line).
 */
#ifndef PROBE_ACPI_H
#define PROBE_ACPI_H

#include <stdbool.h>
#include <stdint.h>

struct acpi_sdt {
        char signature[4];
        uint32_t length;
        uint8_t revision;
        uint8_t checksum;
        char oem_id[6];
        char oem_table_id[8];
        uint32_t oem_revision;
        uint32_t creator_id;
        uint32_t creator_revision;
} __attribute__((packed));

struct acpi_root {
        uint64_t rsdp_addr;
        bool rsdp_scanned;           /* found by scanning 0xE0000-0xFFFFF, not handed over */
        const struct acpi_sdt *root; /* the XSDT, or the RSDT when there is no XSDT */
        unsigned entry_size;         /* 8 for the XSDT, 4 for the RSDT */
        unsigned count;
};

#define ACPI_MAX_CPUS      64
#define ACPI_MAX_IOAPICS   8
#define ACPI_MAX_OVERRIDES 16

struct acpi_madt {
        uint64_t lapic_addr;
        unsigned cpus;                   /* enabled Local APIC entries */
        uint8_t apic_ids[ACPI_MAX_CPUS]; /* the first ACPI_MAX_CPUS of them */
        unsigned ioapics;
        struct {
                uint8_t id;
                uint32_t addr;
                uint32_t gsi_base;
        } ioapic[ACPI_MAX_IOAPICS];
        unsigned overrides;
        struct {
                uint8_t irq; /* ISA IRQ */
                uint32_t gsi;
                uint16_t flags; /* MPS INTI flags: polarity bits 0-1, trigger bits 2-3 */
        } override[ACPI_MAX_OVERRIDES];
};

/* Finds the RSDP (at hint, or by scanning when hint is 0), checks it and the root table. */
const char *acpi_open(uint64_t hint, struct acpi_root *out);

/* Physical address of root table entry i (i < count). */
uint64_t acpi_root_entry(const struct acpi_root *r, unsigned i);

/* Checks that a table exists at addr, lies in the probe's mapping, has a sane length and a
 * zero checksum, and (when sig is not NULL) carries that signature. */
const char *acpi_check_table(uint64_t addr, const char *sig);

/* The first root entry with this signature whose checksum is valid; NULL if none. */
const struct acpi_sdt *acpi_find(const struct acpi_root *r, const char *sig);

/* The DSDT address named by the FADT: X_DSDT when present and non-zero, else DSDT. */
uint64_t acpi_fadt_dsdt(const struct acpi_sdt *fadt);

const char *acpi_parse_madt(const struct acpi_sdt *madt, struct acpi_madt *out);

/* Writes the FADT reset value to the FADT reset register when RESET_REG_SUP is set. Returns
 * only if there was nothing to write or the machine kept running. */
void acpi_fadt_reset(const struct acpi_sdt *fadt);

#endif

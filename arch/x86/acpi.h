/*
 * ACPI table generators (private to arch/x86; platform.c lays the tables out and links them).
 *
 * Each fixed-layout table is written into a caller-provided, zeroed buffer of the documented
 * size, complete with its checksum; the DSDT, whose size depends on the devices, is
 * allocated. Tables follow ACPI 6.3 (the level of the iasl used to validate them).
 */
#ifndef ARCH_X86_ACPI_H
#define ARCH_X86_ACPI_H

#include <stdint.h>

#include "arch/x86/platform.h"

#define ACPI_HEADER_LEN    36u
#define ACPI_RSDP_LEN      36u
#define ACPI_FADT_LEN      276u
#define ACPI_XSDT_LEN(n)   (ACPI_HEADER_LEN + 8u * (n))
#define ACPI_RSDP_REVISION 2 /* ACPI 2.0+: has the XSDT address */

/* Byte that makes the sum of p[0..len) zero when stored in a zeroed checksum field. */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

/* DSDT for the platform devices; *out is malloc'd. The devices must have been validated
 * (platform_add_dev's rules). */
int acpi_dsdt_build(const struct platform_desc *desc, uint8_t **out, uint32_t *len,
                    struct error *err) MUST_CHECK;

/* Hardware-reduced FADT pointing at the DSDT, with the board's i8042 (when it has one) as
 * the 8042 and the reset register; p holds ACPI_FADT_LEN bytes. */
void acpi_fadt_build(uint8_t *p, const struct platform_desc *desc, gpa_t dsdt);

uint32_t acpi_madt_len(unsigned nr_vcpus);
/* MADT: one local APIC per vCPU and the IOAPIC; p holds acpi_madt_len() bytes. */
void acpi_madt_build(uint8_t *p, unsigned nr_vcpus, uint8_t ioapic_id);

/* XSDT listing n tables; p holds ACPI_XSDT_LEN(n) bytes. */
void acpi_xsdt_build(uint8_t *p, const gpa_t *tables, unsigned n);

/* Revision 2 RSDP pointing at the XSDT (no RSDT); p holds ACPI_RSDP_LEN bytes. */
void acpi_rsdp_build(uint8_t *p, gpa_t xsdt);

#endif

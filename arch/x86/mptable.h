/*
 * The legacy Intel MultiProcessor Specification 1.4 table (private to arch/x86): the MP
 * floating pointer structure immediately followed by the configuration table. Kernels that
 * find no usable ACPI (acpi=off, or built without it) enumerate CPUs and IRQ routing from it.
 */
#ifndef ARCH_X86_MPTABLE_H
#define ARCH_X86_MPTABLE_H

#include <stdint.h>

#include "arch/x86/platform.h"

/* Bytes needed for desc: floating pointer plus configuration table. */
uint32_t mptable_len(const struct platform_desc *desc);

/* Writes the table for guest address gpa (16-byte aligned) into p, which holds
 * mptable_len(desc) zeroed bytes. The devices must have been validated. */
void mptable_build(uint8_t *p, const struct platform_desc *desc, gpa_t gpa, uint8_t ioapic_id);

#endif

/*
 * Local APIC (xAPIC, MMIO) and IOAPIC helpers.
 */
#ifndef PROBE_APIC_H
#define PROBE_APIC_H

#include <stdbool.h>
#include <stdint.h>

#define APIC_SPURIOUS_VECTOR 0xff

#define LAPIC_ICR_INIT         0x00000500u
#define LAPIC_ICR_STARTUP      0x00000600u
#define LAPIC_ICR_LEVEL_ASSERT 0x00004000u

/* Enables this CPU's local APIC at base (software enable, spurious vector 0xff, TPR 0) and
 * masks LINT0 and both 8259 PICs: KVM resets the BSP's LINT0 to ExtINT with an unprogrammed
 * PIC behind it, whose IRQs would arrive as vectors 0-15. */
void apic_init(uint64_t lapic_base);
uint32_t lapic_id(void);
void lapic_eoi(void);
/* Sends an IPI and waits (bounded) for the ICR's delivery-status bit to clear. */
bool lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);

uint32_t ioapic_read(uint64_t base, uint32_t reg);
void ioapic_write(uint64_t base, uint32_t reg, uint32_t v);
/* Routes IOAPIC pin to vector on the CPU with apic_id, fixed delivery, physical mode,
 * unmasked. */
void ioapic_route(uint64_t base, unsigned pin, uint8_t vector, uint32_t apic_id, bool level,
                  bool active_low);
void ioapic_mask(uint64_t base, unsigned pin);

#endif

#include "apic.h"

#include "arch/x86/layout.h"
#include "cpu.h"
#include "io.h"

#define LAPIC_ID             0x020
#define LAPIC_TPR            0x080
#define LAPIC_EOI            0x0b0
#define LAPIC_SVR            0x0f0
#define LAPIC_ICR_LO         0x300
#define LAPIC_ICR_HI         0x310
#define LAPIC_LVT0           0x350
#define LAPIC_SVR_ENABLE     0x100u
#define LAPIC_LVT_MASKED     0x10000u
#define LAPIC_ICR_PENDING    0x1000u
#define LAPIC_IPI_SPIN_LIMIT 100000u

#define IOAPIC_REGSEL      0x00
#define IOAPIC_WIN         0x10
#define IOAPIC_REDTBL(pin) (0x10u + 2u * (pin))
#define IOAPIC_LEVEL       (1u << 15)
#define IOAPIC_ACTIVE_LOW  (1u << 13)
#define IOAPIC_MASKED      (1u << 16)

#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

static uint64_t lapic_base = X86_LAPIC_ADDR;

static uint32_t lapic_read(uint32_t reg)
{
        return mmio_read32(lapic_base + reg);
}

static void lapic_write(uint32_t reg, uint32_t v)
{
        mmio_write32(lapic_base + reg, v);
}

void apic_init(uint64_t base)
{
        lapic_base = base;
        outb(PIC1_DATA, 0xff);
        outb(PIC2_DATA, 0xff);
        lapic_write(LAPIC_LVT0, lapic_read(LAPIC_LVT0) | LAPIC_LVT_MASKED);
        lapic_write(LAPIC_TPR, 0);
        lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | APIC_SPURIOUS_VECTOR);
}

uint32_t lapic_id(void)
{
        return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
        lapic_write(LAPIC_EOI, 0);
}

bool lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
        lapic_write(LAPIC_ICR_HI, apic_id << 24);
        lapic_write(LAPIC_ICR_LO, icr_low); /* the low write sends */
        for (unsigned i = 0; i < LAPIC_IPI_SPIN_LIMIT; i++) {
                if (!(lapic_read(LAPIC_ICR_LO) & LAPIC_ICR_PENDING))
                        return true;
                cpu_pause();
        }
        return false;
}

uint32_t ioapic_read(uint64_t base, uint32_t reg)
{
        mmio_write32(base + IOAPIC_REGSEL, reg);
        return mmio_read32(base + IOAPIC_WIN);
}

void ioapic_write(uint64_t base, uint32_t reg, uint32_t v)
{
        mmio_write32(base + IOAPIC_REGSEL, reg);
        mmio_write32(base + IOAPIC_WIN, v);
}

void ioapic_route(uint64_t base, unsigned pin, uint8_t vector, uint32_t apic_id, bool level,
                  bool active_low)
{
        uint32_t lo = vector | (level ? IOAPIC_LEVEL : 0) | (active_low ? IOAPIC_ACTIVE_LOW : 0);

        /* Destination first, so the entry is never live with a stale destination. */
        ioapic_write(base, IOAPIC_REDTBL(pin) + 1, apic_id << 24);
        ioapic_write(base, IOAPIC_REDTBL(pin), lo);
}

void ioapic_mask(uint64_t base, unsigned pin)
{
        ioapic_write(base, IOAPIC_REDTBL(pin), IOAPIC_MASKED);
}

#include "scenarios.h"

#include "apic.h"
#include "probe.h"

#define ISA_IRQ_FLAGS_POLARITY(f) ((f)&3u)
#define ISA_IRQ_FLAGS_TRIGGER(f)  (((f) >> 2) & 3u)
#define MPS_ACTIVE_LOW            3u
#define MPS_LEVEL                 3u
#define IOAPIC_VERSION_REG        0x01

void scenario_acpi(const struct boot_info *bi, struct acpi_root *root)
{
        const char *err = acpi_open(bi->rsdp_addr, root);

        if (err)
                probe_fail("%s", err);
}

void scenario_madt(const struct boot_info *bi, struct acpi_madt *madt)
{
        struct acpi_root root;
        const struct acpi_sdt *t;
        const char *err;

        scenario_acpi(bi, &root);
        t = acpi_find(&root, "APIC");
        if (!t)
                probe_fail("no valid MADT");
        err = acpi_parse_madt(t, madt);
        if (err)
                probe_fail("%s", err);
}

struct ioapic_pin scenario_route_isa_irq(const struct acpi_madt *madt, unsigned irq, uint8_t vector)
{
        uint32_t gsi = irq;
        uint16_t flags = 0; /* "conforms to the bus": ISA is edge-triggered, active high */

        for (unsigned i = 0; i < madt->overrides; i++) {
                if (madt->override[i].irq == irq) {
                        gsi = madt->override[i].gsi;
                        flags = madt->override[i].flags;
                }
        }
        return scenario_route_gsi(madt, gsi, vector, ISA_IRQ_FLAGS_TRIGGER(flags) == MPS_LEVEL,
                                  ISA_IRQ_FLAGS_POLARITY(flags) == MPS_ACTIVE_LOW);
}

struct ioapic_pin scenario_route_gsi(const struct acpi_madt *madt, uint32_t gsi, uint8_t vector,
                                     bool level, bool active_low)
{
        for (unsigned i = 0; i < madt->ioapics; i++) {
                uint64_t base = madt->ioapic[i].addr;
                uint32_t first = madt->ioapic[i].gsi_base;
                uint32_t pins = ((ioapic_read(base, IOAPIC_VERSION_REG) >> 16) & 0xff) + 1;

                if (gsi < first || gsi - first >= pins)
                        continue;
                ioapic_route(base, gsi - first, vector, lapic_id(), level, active_low);
                return (struct ioapic_pin){.ioapic = base, .pin = gsi - first};
        }
        probe_fail("no IOAPIC serves GSI %u", (unsigned)gsi);
}

#include "mptable.h"

#include <string.h>

#include "arch/x86/layout.h"

#define MPF_LEN        16 /* floating pointer structure */
#define MPC_HEADER_LEN 44 /* configuration table header */
#define MP_SPEC_REV    4  /* MP spec 1.4 */
#define MPC_OEM_ID     "CVMM    "
#define MPC_PRODUCT_ID "CVMM MICROVM"

enum mpc_entry {
        MPC_PROCESSOR = 0, /* 20 bytes; the other entries are 8 */
        MPC_BUS = 1,
        MPC_IOAPIC = 2,
        MPC_IOINT = 3,
        MPC_LINT = 4,
};
#define MPC_PROCESSOR_LEN 20
#define MPC_ENTRY_LEN     8

#define MPC_CPU_ENABLED    (1u << 0)
#define MPC_CPU_BSP        (1u << 1)
#define MPC_LAPIC_VERSION  0x14                    /* integrated APIC, as KVM's LAPIC reports */
#define MPC_CPU_SIGNATURE  0x600                   /* family 6 */
#define MPC_CPU_FEATURES   ((1u << 0) | (1u << 9)) /* CPUID.1:EDX FPU and APIC */
#define MPC_IOAPIC_VERSION 0x11                    /* as KVM's IOAPIC reports */
#define MPC_IOAPIC_ENABLED (1u << 0)

#define MP_INT_INT    0
#define MP_INT_NMI    1
#define MP_INT_EXTINT 3
/* Interrupt flags: polarity in bits 0-1, trigger in bits 2-3; 0 conforms to the bus. */
#define MP_IRQ_CONFORMING       0x0
#define MP_IRQ_ACTIVE_HIGH_EDGE ((1u << 0) | (1u << 2))
#define MP_ALL_LAPICS           0xff

#define ISA_BUS_ID 0
#define ISA_IRQS   16

/* GSIs above the ISA range used by devices: they need I/O interrupt entries of their own. */
static uint32_t mptable_high_gsis(const struct platform_desc *desc)
{
        uint32_t mask = 0;

        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *dev = &desc->devs[i];
                if (platform_dev_has_gsi(dev) && dev->gsi >= ISA_IRQS && dev->gsi < X86_IOAPIC_PINS)
                        mask |= 1u << dev->gsi;
        }
        return mask;
}

static unsigned mptable_nr_ioints(const struct platform_desc *desc)
{
        return ISA_IRQS + (unsigned)__builtin_popcount(mptable_high_gsis(desc));
}

uint32_t mptable_len(const struct platform_desc *desc)
{
        /* bus, IOAPIC, I/O interrupts, and the two local interrupts */
        unsigned entries = 1 + 1 + mptable_nr_ioints(desc) + 2;

        return MPF_LEN + MPC_HEADER_LEN + desc->nr_vcpus * MPC_PROCESSOR_LEN +
               entries * MPC_ENTRY_LEN;
}

static uint8_t mptable_checksum(const uint8_t *p, size_t len)
{
        uint8_t sum = 0;

        for (size_t i = 0; i < len; i++)
                sum = (uint8_t)(sum + p[i]);
        return (uint8_t)-sum;
}

static uint8_t *mptable_ioint(uint8_t *e, unsigned irq, uint8_t ioapic_id)
{
        e[0] = MPC_IOINT;
        e[1] = MP_INT_INT;
        /* The bus is ISA, which is edge/active-high anyway; spelling it out keeps GSIs
         * above 15 (not ISA IRQs by nature) unambiguous. */
        put_le16(e + 2, MP_IRQ_ACTIVE_HIGH_EDGE);
        e[4] = ISA_BUS_ID;
        e[5] = (uint8_t)irq;
        e[6] = ioapic_id;
        e[7] = (uint8_t)irq; /* KVM routes GSI n to IOAPIC pin n */
        return e + MPC_ENTRY_LEN;
}

static uint8_t *mptable_lint(uint8_t *e, unsigned type, unsigned lint)
{
        e[0] = MPC_LINT;
        e[1] = (uint8_t)type;
        put_le16(e + 2, MP_IRQ_CONFORMING);
        e[4] = ISA_BUS_ID;
        e[5] = 0;
        e[6] = MP_ALL_LAPICS;
        e[7] = (uint8_t)lint;
        return e + MPC_ENTRY_LEN;
}

void mptable_build(uint8_t *p, const struct platform_desc *desc, gpa_t gpa, uint8_t ioapic_id)
{
        uint32_t len = mptable_len(desc);
        uint32_t high = mptable_high_gsis(desc);
        uint8_t *mpc = p + MPF_LEN;
        uint8_t *e = mpc + MPC_HEADER_LEN;
        unsigned entries = 0;

        for (unsigned i = 0; i < desc->nr_vcpus; i++, entries++, e += MPC_PROCESSOR_LEN) {
                e[0] = MPC_PROCESSOR;
                e[1] = (uint8_t)i; /* local APIC id */
                e[2] = MPC_LAPIC_VERSION;
                e[3] = (uint8_t)(MPC_CPU_ENABLED | (i == 0 ? MPC_CPU_BSP : 0));
                put_le32(e + 4, MPC_CPU_SIGNATURE);
                put_le32(e + 8, MPC_CPU_FEATURES);
        }

        e[0] = MPC_BUS;
        e[1] = ISA_BUS_ID;
        memcpy(e + 2, "ISA   ", 6);
        e += MPC_ENTRY_LEN;
        entries++;

        e[0] = MPC_IOAPIC;
        e[1] = ioapic_id;
        e[2] = MPC_IOAPIC_VERSION;
        e[3] = MPC_IOAPIC_ENABLED;
        put_le32(e + 4, (uint32_t)X86_IOAPIC_ADDR);
        e += MPC_ENTRY_LEN;
        entries++;

        /* Identity: ISA IRQ n on pin n (the PIT on 0), like the MADT without overrides. */
        for (unsigned irq = 0; irq < X86_IOAPIC_PINS; irq++) {
                if (irq < ISA_IRQS || (high & (1u << irq))) {
                        e = mptable_ioint(e, irq, ioapic_id);
                        entries++;
                }
        }

        /* Virtual wire mode: the 8259 through LINT0, NMI on LINT1. */
        e = mptable_lint(e, MP_INT_EXTINT, 0);
        e = mptable_lint(e, MP_INT_NMI, 1);
        entries += 2;

        memcpy(mpc, "PCMP", 4);
        put_le16(mpc + 4, (uint16_t)(len - MPF_LEN));
        mpc[6] = MP_SPEC_REV;
        memcpy(mpc + 8, MPC_OEM_ID, 8);
        memcpy(mpc + 16, MPC_PRODUCT_ID, 12);
        put_le16(mpc + 34, (uint16_t)entries);
        put_le32(mpc + 36, (uint32_t)X86_LAPIC_ADDR);
        /* No OEM table, no extended entries: their pointers, lengths and checksum stay 0. */
        mpc[7] = mptable_checksum(mpc, len - MPF_LEN);

        memcpy(p, "_MP_", 4);
        put_le32(p + 4, (uint32_t)(gpa + MPF_LEN));
        p[8] = 1; /* length in 16-byte units */
        p[9] = MP_SPEC_REV;
        /* Feature bytes 0: a configuration table is present (no default configuration),
         * and IMCR absent, so virtual wire mode rather than PIC mode. */
        p[10] = mptable_checksum(p, MPF_LEN);
}

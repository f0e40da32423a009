#include "acpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

#define ACPI_CREATOR_REVISION 1

/* Table revisions of ACPI 6.3. */
#define ACPI_DSDT_REVISION 2 /* >= 2: AML integers are 64-bit */
#define ACPI_FADT_REVISION 6
#define ACPI_FADT_MINOR    3
#define ACPI_MADT_REVISION 5
#define ACPI_XSDT_REVISION 1

/* FADT offsets (ACPI 6.3, table 5-34). */
#define FADT_DSDT           40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS          112
#define FADT_RESET_REG      116
#define FADT_RESET_VALUE    128
#define FADT_MINOR_VERSION  131
#define FADT_X_DSDT         140
#define FADT_SLEEP_CONTROL  244
#define FADT_SLEEP_STATUS   256
#define FADT_HYPERVISOR_ID  268

#define FADT_BOOT_8042                 (1u << 1)
#define FADT_BOOT_VGA_NOT_PRESENT      (1u << 2)
#define FADT_BOOT_MSI_NOT_SUPPORTED    (1u << 3)
#define FADT_BOOT_CMOS_RTC_NOT_PRESENT (1u << 5)

#define FADT_FLAG_WBINVD        (1u << 0)
#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define FADT_FLAG_HW_REDUCED    (1u << 20)

#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1
#define I8042_RESET_CMD      0xfe
#define ACPI_HYPERVISOR_ID   "CVMM" /* FADT Hypervisor Vendor Identity, zero padded */

/* MADT (ACPI 6.3, 5.2.12). */
#define MADT_PCAT_COMPAT    (1u << 0)
#define MADT_LAPIC          0
#define MADT_LAPIC_LEN      8
#define MADT_LAPIC_ENABLED  (1u << 0)
#define MADT_IOAPIC         1
#define MADT_IOAPIC_LEN     12
#define MADT_LAPIC_NMI      4
#define MADT_LAPIC_NMI_LEN  6
#define MADT_ALL_PROCESSORS 0xff

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
        uint8_t sum = 0;

        for (size_t i = 0; i < len; i++)
                sum = (uint8_t)(sum + p[i]);
        return (uint8_t)-sum;
}

static void acpi_header_init(uint8_t *p, const char sig[4], uint32_t len, uint8_t rev)
{
        memcpy(p, sig, 4);
        put_le32(p + 4, len);
        p[8] = rev;
        p[9] = 0;
        memcpy(p + 10, PLATFORM_OEM_ID, 6);
        memcpy(p + 16, PLATFORM_OEM_TABLE_ID, 4);
        memcpy(p + 20, sig, 4);
        put_le32(p + 24, PLATFORM_OEM_REVISION);
        memcpy(p + 28, PLATFORM_CREATOR_ID, 4);
        put_le32(p + 32, ACPI_CREATOR_REVISION);
}

static void acpi_header_finish(uint8_t *p)
{
        p[9] = 0;
        p[9] = acpi_checksum(p, get_le32(p + 4));
}

/* The VM generation ID as Linux's vmgenid driver finds it (and QEMU and Firecracker describe
 * it): a device with _CID "VM_Gen_Counter" (ACPICA upper-cases it to the driver's
 * "VM_GEN_COUNTER") whose ADDR is a package of the id's address, low then high 32 bits; no
 * _CRS (the driver maps ADDR itself). Its _HID is ours: the driver's other id, "VMGENCTR",
 * is not a valid ACPI id (iasl refuses it), which is why QEMU and Firecracker also match
 * through the _CID. A
 * hardware-reduced machine has no GPE block, so its notification comes from a Generic Event
 * Device (ACPI0013, Linux's evged): the VMM raises its interrupt and its _EVT notifies the
 * id's device with 0x80, the value the driver's notify handler receives. */
#define ACPI_VMGENID_GED  "VGED"
#define ACPI_NOTIFY_VALUE 0x80

static void acpi_dsdt_vmgenid(struct aml *a, const struct platform_dev *dev)
{
        char path[sizeof(dev->name) + 6];
        size_t d, m, rt, pk;

        snprintf(path, sizeof(path), "\\_SB.%s", dev->name);
        d = aml_device_begin(a, dev->name);
        aml_name(a, "_HID");
        aml_string(a, PLATFORM_VMGENID_HID);
        aml_name(a, "_CID");
        aml_string(a, "VM_Gen_Counter");
        aml_name(a, "_DDN");
        aml_string(a, "VM_Gen_Counter");
        aml_name(a, "ADDR");
        pk = aml_package_begin(a, 2);
        aml_integer(a, dev->base & 0xffffffffu);
        aml_integer(a, dev->base >> 32);
        aml_package_end(a, pk);
        aml_device_end(a, d);

        d = aml_device_begin(a, ACPI_VMGENID_GED);
        aml_name(a, "_HID");
        aml_string(a, "ACPI0013");
        aml_name(a, "_UID");
        aml_integer(a, 0);
        aml_name(a, "_CRS");
        rt = aml_restemplate_begin(a);
        aml_res_interrupt(a, AML_IRQ_CONSUMER | AML_IRQ_EDGE, dev->gsi);
        aml_restemplate_end(a, rt);
        /* _EVT(gsi): the device has one interrupt, so every call is the id's. */
        m = aml_method_begin(a, "_EVT", 1);
        aml_notify(a, path, ACPI_NOTIFY_VALUE);
        aml_method_end(a, m);
        aml_device_end(a, d);
}

/* A device per platform device, with the resources the guest driver probes for: the
 * same ones the kernel command line and the MPTable describe. */
static void acpi_dsdt_dev(struct aml *a, const struct platform_dev *dev, unsigned uid)
{
        size_t d, rt;

        switch (dev->kind) {
        case PLATFORM_DEV_SERIAL:
                d = aml_device_begin(a, dev->name);
                aml_name(a, "_HID");
                aml_eisaid(a, "PNP0501");
                aml_name(a, "_UID");
                aml_integer(a, uid);
                aml_name(a, "_CRS");
                rt = aml_restemplate_begin(a);
                aml_res_io16(a, (uint16_t)dev->base, (uint16_t)dev->base, 1, (uint8_t)dev->len);
                aml_res_irq_noflags(a, dev->gsi);
                aml_restemplate_end(a, rt);
                aml_device_end(a, d);
                break;
        case PLATFORM_DEV_I8042:
                d = aml_device_begin(a, dev->name);
                aml_name(a, "_HID");
                aml_eisaid(a, "PNP0303");
                aml_name(a, "_UID");
                aml_integer(a, uid);
                aml_name(a, "_CRS");
                rt = aml_restemplate_begin(a);
                /* Linux's i8042 PNP probe takes the first port as data, the second as
                 * command/status. */
                aml_res_io16(a, (uint16_t)dev->base, (uint16_t)dev->base, 1, 1);
                aml_res_io16(a, (uint16_t)(dev->base + 4), (uint16_t)(dev->base + 4), 1, 1);
                aml_res_irq_noflags(a, dev->gsi);
                aml_restemplate_end(a, rt);
                aml_device_end(a, d);
                break;
        case PLATFORM_DEV_VIRTIO_MMIO:
                d = aml_device_begin(a, dev->name);
                aml_name(a, "_HID");
                aml_string(a, "LNRO0005");
                aml_name(a, "_UID");
                aml_integer(a, uid);
                aml_name(a, "_CRS");
                rt = aml_restemplate_begin(a);
                aml_res_memory32_fixed(a, true, (uint32_t)dev->base, (uint32_t)dev->len);
                aml_res_interrupt(a, AML_IRQ_CONSUMER | AML_IRQ_EDGE, dev->gsi);
                aml_restemplate_end(a, rt);
                aml_device_end(a, d);
                break;
        case PLATFORM_DEV_ACPI_MMIO:
                d = aml_device_begin(a, dev->name);
                aml_name(a, "_HID");
                aml_string(a, dev->hid);
                aml_name(a, "_UID");
                aml_integer(a, uid);
                aml_name(a, "_CRS");
                rt = aml_restemplate_begin(a);
                aml_res_memory32_fixed(a, true, (uint32_t)dev->base, (uint32_t)dev->len);
                aml_restemplate_end(a, rt);
                aml_device_end(a, d);
                break;
        case PLATFORM_DEV_VMGENID:
                acpi_dsdt_vmgenid(a, dev);
                break;
        case PLATFORM_DEV_MMIO_OTHER:
        case PLATFORM_DEV_MEMORY:
        case PLATFORM_DEV_ACPI_SLEEP: /* FADT fields and \_S5, not a device */
        case PLATFORM_DEV_KINDS:
                break;
        }
}

/* The board's first device of kind, or NULL. */
static const struct platform_dev *acpi_find_kind(const struct platform_desc *desc,
                                                 enum platform_dev_kind kind)
{
        for (unsigned i = 0; i < desc->nr_devs; i++)
                if (desc->devs[i].kind == kind)
                        return &desc->devs[i];
        return NULL;
}

int acpi_dsdt_build(const struct platform_desc *desc, uint8_t **out, uint32_t *len,
                    struct error *err)
{
        static const uint8_t header[ACPI_HEADER_LEN];
        unsigned uids[PLATFORM_DEV_KINDS] = {0};
        struct aml a;
        size_t sb, pkg;

        aml_init(&a);
        aml_bytes(&a, header, sizeof(header));
        /* \_S5: the sleep type of soft off, for the sleep control register (FADT): without
         * it Linux has no ACPI power-off and poweroff only halts. The values for the PM1a/b
         * blocks a hardware-reduced platform does not have are zero. Only with the board's
         * sleep registers. */
        if (acpi_find_kind(desc, PLATFORM_DEV_ACPI_SLEEP)) {
                aml_name(&a, "\\_S5");
                pkg = aml_package_begin(&a, 4);
                aml_integer(&a, X86_ACPI_S5_TYPE);
                aml_integer(&a, 0);
                aml_integer(&a, 0);
                aml_integer(&a, 0);
                aml_package_end(&a, pkg);
        }
        sb = aml_scope_begin(&a, "\\_SB");
        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *dev = &desc->devs[i];
                /* _UID tells apart devices with the same _HID: number them per kind. */
                acpi_dsdt_dev(&a, dev, uids[dev->kind]++);
        }
        aml_scope_end(&a, sb);

        if (a.err == -ENOMEM) {
                aml_free(&a);
                return error_set(err, -ENOMEM, "out of memory building the DSDT");
        }
        if (a.err || a.len > UINT32_MAX) {
                int code = a.err ? a.err : -E2BIG;
                aml_free(&a);
                return error_set(err, code, "cannot encode the DSDT: %s",
                                 code == -EINVAL ? "invalid device name" : "table too large");
        }
        acpi_header_init(a.buf, "DSDT", (uint32_t)a.len, ACPI_DSDT_REVISION);
        acpi_header_finish(a.buf);
        *out = a.buf;
        *len = (uint32_t)a.len;
        return 0;
}

/* A byte-wide System I/O register (Generic Address Structure, ACPI 6.3, 5.2.3.2). */
static void gas_io_byte(uint8_t *gas, uint16_t port)
{
        gas[0] = ACPI_GAS_SYSTEM_IO;
        gas[1] = 8; /* register bit width */
        gas[2] = 0; /* bit offset */
        gas[3] = ACPI_GAS_ACCESS_BYTE;
        put_le64(gas + 4, port);
}

void acpi_fadt_build(uint8_t *p, const struct platform_desc *desc, gpa_t dsdt)
{
        const struct platform_dev *kbd = acpi_find_kind(desc, PLATFORM_DEV_I8042);
        const struct platform_dev *sleep = acpi_find_kind(desc, PLATFORM_DEV_ACPI_SLEEP);
        uint16_t boot = FADT_BOOT_VGA_NOT_PRESENT | FADT_BOOT_MSI_NOT_SUPPORTED |
                        FADT_BOOT_CMOS_RTC_NOT_PRESENT;
        uint32_t flags = FADT_FLAG_WBINVD | FADT_FLAG_HW_REDUCED;

        acpi_header_init(p, "FACP", ACPI_FADT_LEN, ACPI_FADT_REVISION);
        /* Both DSDT pointers: OSes of the ACPI 1.0 era read only the 32-bit one. */
        put_le32(p + FADT_DSDT, (uint32_t)dsdt);
        put_le64(p + FADT_X_DSDT, dsdt);
        /* Linux skips probing the i8042 when a FADT exists without the 8042 flag, and
         * registers a CMOS RTC unless told there is none (this machine has none). Reset
         * through the i8042 (0xfe to its command port), which the VMM turns into a VM stop:
         * lets "reboot=acpi" work. */
        if (kbd) {
                struct platform_window w[PLATFORM_MAX_WINDOWS];

                platform_dev_windows(kbd, w);
                boot |= FADT_BOOT_8042;
                flags |= FADT_FLAG_RESET_REG_SUP;
                gas_io_byte(p + FADT_RESET_REG, (uint16_t)w[1].base);
                p[FADT_RESET_VALUE] = I8042_RESET_CMD;
        }
        put_le16(p + FADT_IAPC_BOOT_ARCH, boot);
        /* Hardware-reduced: no PM1/GPE blocks, SCI or FACS to emulate. WBINVD is required
         * of every new system by the spec. */
        put_le32(p + FADT_FLAGS, flags);
        /* Power off: the sleep registers of a hardware-reduced platform (with \_S5 in the
         * DSDT); both must be present for Linux to use them. */
        if (sleep) {
                gas_io_byte(p + FADT_SLEEP_CONTROL, (uint16_t)sleep->base);
                gas_io_byte(p + FADT_SLEEP_STATUS, (uint16_t)(sleep->base + 1));
        }
        p[FADT_MINOR_VERSION] = ACPI_FADT_MINOR;
        memcpy(p + FADT_HYPERVISOR_ID, ACPI_HYPERVISOR_ID, strlen(ACPI_HYPERVISOR_ID));
        acpi_header_finish(p);
}

uint32_t acpi_madt_len(unsigned nr_vcpus)
{
        return ACPI_HEADER_LEN + 8 + nr_vcpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN +
               MADT_LAPIC_NMI_LEN;
}

void acpi_madt_build(uint8_t *p, unsigned nr_vcpus, uint8_t ioapic_id)
{
        uint32_t len = acpi_madt_len(nr_vcpus);
        uint8_t *e = p + ACPI_HEADER_LEN + 8;

        acpi_header_init(p, "APIC", len, ACPI_MADT_REVISION);
        put_le32(p + ACPI_HEADER_LEN, (uint32_t)X86_LAPIC_ADDR);
        /* The in-kernel irqchip includes the dual 8259 PIC. */
        put_le32(p + ACPI_HEADER_LEN + 4, MADT_PCAT_COMPAT);
        for (unsigned i = 0; i < nr_vcpus; i++, e += MADT_LAPIC_LEN) {
                e[0] = MADT_LAPIC;
                e[1] = MADT_LAPIC_LEN;
                e[2] = (uint8_t)i; /* ACPI processor UID */
                e[3] = (uint8_t)i; /* APIC id */
                put_le32(e + 4, MADT_LAPIC_ENABLED);
        }
        e[0] = MADT_IOAPIC;
        e[1] = MADT_IOAPIC_LEN;
        e[2] = ioapic_id;
        put_le32(e + 4, (uint32_t)X86_IOAPIC_ADDR);
        put_le32(e + 8, 0); /* GSI base */
        e += MADT_IOAPIC_LEN;
        /* No interrupt source overrides: KVM routes ISA IRQ n to IOAPIC pin n. NMI on
         * LINT1 of every CPU, as the MPTable says too. */
        e[0] = MADT_LAPIC_NMI;
        e[1] = MADT_LAPIC_NMI_LEN;
        e[2] = MADT_ALL_PROCESSORS;
        put_le16(e + 3, 0); /* polarity and trigger conform to the bus */
        e[5] = 1;           /* LINT1 */
        acpi_header_finish(p);
}

void acpi_xsdt_build(uint8_t *p, const gpa_t *tables, unsigned n)
{
        acpi_header_init(p, "XSDT", ACPI_XSDT_LEN(n), ACPI_XSDT_REVISION);
        for (unsigned i = 0; i < n; i++)
                put_le64(p + ACPI_HEADER_LEN + 8 * i, tables[i]);
        acpi_header_finish(p);
}

void acpi_rsdp_build(uint8_t *p, gpa_t xsdt)
{
        memcpy(p, "RSD PTR ", 8);
        memcpy(p + 9, PLATFORM_OEM_ID, 6);
        p[15] = ACPI_RSDP_REVISION;
        put_le32(p + 16, 0); /* no RSDT: every table is reachable through the XSDT */
        put_le32(p + 20, ACPI_RSDP_LEN);
        put_le64(p + 24, xsdt);
        /* The first checksum covers the ACPI 1.0 part (20 bytes), the second all of it. */
        p[8] = acpi_checksum(p, 20);
        p[32] = acpi_checksum(p, ACPI_RSDP_LEN);
}

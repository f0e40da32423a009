#include "platform.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"

/* ACPI tables need only byte alignment; a cache line keeps every table start tidy in dumps
 * and costs a few hundred bytes of a 256 KiB window. */
#define ACPI_TABLE_ALIGN 64
#define IO_PORT_SPACE    0x10000ull
#define ISA_IRQS         16

/* The IOAPIC id must not collide with an APIC id (0..nr_vcpus-1); MADT and MPTable use this
 * one value. With at most 254 vCPUs it stays below the 0xff broadcast id. */
static uint8_t platform_ioapic_id(const struct platform_desc *desc)
{
        return (uint8_t)desc->nr_vcpus;
}

static const char *platform_kind_name(enum platform_dev_kind kind)
{
        switch (kind) {
        case PLATFORM_DEV_SERIAL:
                return "serial port";
        case PLATFORM_DEV_I8042:
                return "i8042";
        case PLATFORM_DEV_VIRTIO_MMIO:
                return "virtio-mmio slot";
        case PLATFORM_DEV_MMIO_OTHER:
                return "MMIO device";
        case PLATFORM_DEV_ACPI_MMIO:
                return "ACPI MMIO device";
        case PLATFORM_DEV_MEMORY:
                return "memory window";
        case PLATFORM_DEV_ACPI_SLEEP:
                return "ACPI sleep registers";
        case PLATFORM_DEV_VMGENID:
                return "VMGenID";
        case PLATFORM_DEV_KINDS:
                break;
        }
        return "device";
}

/* Whether dev is a named device of the DSDT (the sleep registers are FADT fields). */
static bool platform_dev_in_acpi(const struct platform_dev *dev)
{
        return dev->kind != PLATFORM_DEV_MMIO_OTHER && dev->kind != PLATFORM_DEV_MEMORY &&
               dev->kind != PLATFORM_DEV_ACPI_SLEEP;
}

bool platform_dev_has_gsi(const struct platform_dev *dev)
{
        return dev->kind == PLATFORM_DEV_SERIAL || dev->kind == PLATFORM_DEV_I8042 ||
               dev->kind == PLATFORM_DEV_VIRTIO_MMIO || dev->kind == PLATFORM_DEV_VMGENID;
}

static bool platform_dev_is_pio(const struct platform_dev *dev)
{
        return dev->kind == PLATFORM_DEV_SERIAL || dev->kind == PLATFORM_DEV_I8042 ||
               dev->kind == PLATFORM_DEV_ACPI_SLEEP;
}

unsigned platform_dev_windows(const struct platform_dev *dev,
                              struct platform_window w[PLATFORM_MAX_WINDOWS])
{
        enum platform_space space = platform_dev_is_pio(dev) ? PLATFORM_PIO : PLATFORM_MMIO;

        /* The i8042 decodes two single ports, its data port (base) and its command/status
         * port (base + 4), and not the ones between. */
        if (dev->kind == PLATFORM_DEV_I8042) {
                w[0] = (struct platform_window){space, dev->base, 1};
                w[1] = (struct platform_window){space, dev->base + 4, 1};
                return 2;
        }
        w[0] = (struct platform_window){space, dev->base, dev->len};
        return 1;
}

/* Whether a device decodes any of [base, base + len) in `space`. */
static bool platform_dev_decodes(const struct platform_dev *dev, enum platform_space space,
                                 uint64_t base, uint64_t len)
{
        struct platform_window w[PLATFORM_MAX_WINDOWS];
        unsigned n = platform_dev_windows(dev, w);

        for (unsigned i = 0; i < n; i++)
                if (w[i].space == space && ranges_overlap(w[i].base, w[i].len, base, len))
                        return true;
        return false;
}

static bool platform_devs_overlap(const struct platform_dev *a, const struct platform_dev *b)
{
        struct platform_window w[PLATFORM_MAX_WINDOWS];
        unsigned n = platform_dev_windows(a, w);

        for (unsigned i = 0; i < n; i++)
                if (platform_dev_decodes(b, w[i].space, w[i].base, w[i].len))
                        return true;
        return false;
}

static int platform_dev_check_name(const struct platform_dev *dev, struct error *err)
{
        size_t n = strnlen(dev->name, sizeof(dev->name));
        char seg[4];

        if (n == 0)
                return error_set(err, -EINVAL, "platform device name is empty");
        if (n == sizeof(dev->name))
                return error_set(err, -EINVAL, "platform device name \"%.*s\" is too long", (int)n,
                                 dev->name);
        /* Its ACPI name: reserved names start with '_', so a device's must not. */
        if (platform_dev_in_acpi(dev) && (!aml_name_seg(dev->name, n, seg) || seg[0] == '_'))
                return error_set(err, -EINVAL,
                                 "%s name \"%s\" is not an ACPI name: 1-4 characters A-Z, 0-9 "
                                 "or '_', starting with a letter",
                                 platform_kind_name(dev->kind), dev->name);
        return 0;
}

static int platform_dev_check_resources(const struct platform_dev *dev, struct error *err)
{
        const char *kind = platform_kind_name(dev->kind);
        uint64_t end;

        switch (dev->kind) {
        case PLATFORM_DEV_SERIAL:
                /* The ACPI IO descriptor holds the port count in a byte. */
                if (dev->len == 0 || dev->len > UINT8_MAX ||
                    !range_end(dev->base, dev->len, &end) || end > IO_PORT_SPACE)
                        return error_set(err, -EINVAL,
                                         "%s %s: I/O ports 0x%" PRIx64 "+0x%" PRIx64
                                         " are not 1-255 ports below 0x10000",
                                         kind, dev->name, dev->base, dev->len);
                break;
        case PLATFORM_DEV_I8042:
                if (dev->base >= IO_PORT_SPACE - 4)
                        return error_set(err, -EINVAL,
                                         "%s %s: data port 0x%" PRIx64
                                         " leaves no room for the command port at +4",
                                         kind, dev->name, dev->base);
                break;
        case PLATFORM_DEV_VIRTIO_MMIO:
                /* The command line says "4K" and the DSDT uses a 32-bit descriptor. */
                if (dev->len != X86_VIRTIO_MMIO_SIZE)
                        return error_set(err, -EINVAL, "%s %s: length 0x%" PRIx64 " is not 0x%llx",
                                         kind, dev->name, dev->len, X86_VIRTIO_MMIO_SIZE);
                if (!range_end(dev->base, dev->len, &end) || end > X86_MMIO_HOLE_END)
                        return error_set(err, -EINVAL,
                                         "%s %s: base 0x%" PRIx64 " is not below 4 GiB", kind,
                                         dev->name, dev->base);
                break;
        case PLATFORM_DEV_ACPI_MMIO:
                if (strlen(dev->hid) != 8)
                        return error_set(err, -EINVAL, "%s %s: _HID '%s' is not 8 characters", kind,
                                         dev->name, dev->hid);
                if (dev->len == 0 || dev->len > UINT32_MAX ||
                    !range_end(dev->base, dev->len, &end) || end > X86_MMIO_HOLE_END)
                        return error_set(err, -EINVAL,
                                         "%s %s: range 0x%" PRIx64 "+0x%" PRIx64
                                         " is not a 32-bit memory range",
                                         kind, dev->name, dev->base, dev->len);
                break;
        case PLATFORM_DEV_MEMORY:
                if (dev->len == 0 || !range_end(dev->base, dev->len, &end) || end > X86_PHYS_END ||
                    dev->base < X86_MMIO_HOLE_END)
                        return error_set(err, -EINVAL,
                                         "%s %s: range 0x%" PRIx64 "+0x%" PRIx64
                                         " is not between 4 GiB and 0x%llx",
                                         kind, dev->name, dev->base, dev->len, X86_PHYS_END);
                break;
        case PLATFORM_DEV_ACPI_SLEEP:
                /* Two byte-wide registers, the FADT's Generic Address Structures. */
                if (dev->len != 2 || dev->base >= IO_PORT_SPACE - 1)
                        return error_set(err, -EINVAL,
                                         "%s %s: I/O ports 0x%" PRIx64 "+0x%" PRIx64
                                         " are not 2 ports below 0x10000",
                                         kind, dev->name, dev->base, dev->len);
                break;
        case PLATFORM_DEV_VMGENID:
                /* ADDR names the id's first byte; Linux maps 16 bytes there. */
                if (dev->len < PLATFORM_VMGENID_LEN || dev->len > UINT32_MAX ||
                    !range_end(dev->base, dev->len, &end) || end > X86_MMIO_HOLE_END)
                        return error_set(err, -EINVAL,
                                         "%s %s: range 0x%" PRIx64 "+0x%" PRIx64
                                         " is not a 32-bit memory range of at least %d bytes",
                                         kind, dev->name, dev->base, dev->len,
                                         PLATFORM_VMGENID_LEN);
                break;
        case PLATFORM_DEV_MMIO_OTHER:
                if (dev->len == 0 || !range_end(dev->base, dev->len, &end))
                        return error_set(err, -EINVAL,
                                         "%s %s: range 0x%" PRIx64 "+0x%" PRIx64
                                         " is empty or wraps",
                                         kind, dev->name, dev->base, dev->len);
                break;
        default:
                return error_set(err, -EINVAL, "platform device %s: unknown kind %d", dev->name,
                                 (int)dev->kind);
        }

        /* ISA devices are described with IRQ descriptors, which reach IRQ 15. */
        if (platform_dev_is_pio(dev) && dev->gsi >= ISA_IRQS)
                return error_set(err, -EINVAL, "%s %s: ISA IRQ %u is out of range (0-15)", kind,
                                 dev->name, dev->gsi);
        if ((dev->kind == PLATFORM_DEV_VIRTIO_MMIO || dev->kind == PLATFORM_DEV_VMGENID) &&
            dev->gsi >= X86_IOAPIC_PINS)
                return error_set(err, -EINVAL,
                                 "%s %s: GSI %u is out of range (the IOAPIC has pins 0-%u)", kind,
                                 dev->name, dev->gsi, X86_IOAPIC_PINS - 1);
        return 0;
}

/* Checks dev on its own and against the devices already in the table. */
static int platform_dev_check(const struct platform_dev *devs, unsigned nr,
                              const struct platform_dev *dev, struct error *err)
{
        char seg[4], other_seg[4];
        int ret;

        ret = platform_dev_check_name(dev, err);
        if (ret)
                return ret;
        ret = platform_dev_check_resources(dev, err);
        if (ret)
                return ret;
        for (unsigned i = 0; i < nr; i++) {
                const struct platform_dev *o = &devs[i];
                /* "COM" and "COM_" are the same ACPI name. */
                bool same_acpi_name =
                    platform_dev_in_acpi(dev) && platform_dev_in_acpi(o) &&
                    aml_name_seg(dev->name, strlen(dev->name), seg) &&
                    aml_name_seg(o->name, strnlen(o->name, sizeof(o->name)), other_seg) &&
                    memcmp(seg, other_seg, sizeof(seg)) == 0;

                if (strncmp(dev->name, o->name, sizeof(dev->name)) == 0 || same_acpi_name)
                        return error_set(err, -EINVAL, "platform device name %s is already used",
                                         dev->name);
                if (platform_devs_overlap(dev, o))
                        return error_set(err, -EINVAL,
                                         "%s %s at %s 0x%" PRIx64 " overlaps %s %s at 0x%" PRIx64,
                                         platform_kind_name(dev->kind), dev->name,
                                         platform_dev_is_pio(dev) ? "I/O port" : "address",
                                         dev->base, platform_kind_name(o->kind), o->name, o->base);
        }
        return 0;
}

int platform_add_dev(struct platform_desc *desc, const struct platform_dev *dev, struct error *err)
{
        int ret;

        if (desc->nr_devs >= PLATFORM_MAX_DEVS)
                return error_set(err, -EINVAL,
                                 "cannot add %.*s: the platform already has %d devices",
                                 (int)sizeof(dev->name), dev->name, PLATFORM_MAX_DEVS);
        ret = platform_dev_check(desc->devs, desc->nr_devs, dev, err);
        if (ret)
                return ret;
        desc->devs[desc->nr_devs++] = *dev;
        return 0;
}

/* Where platform_alloc_dev places a kind's devices (Firecracker's resource allocator): their
 * windows come from [start, end), aligned to `align`; kinds without a range are placed by
 * convention only (the ISA devices). A kind with an interrupt gets the lowest free GSI from
 * X86_VIRTIO_FIRST_GSI. A new kind of device adds its line here. */
static const struct {
        uint64_t start, end, align;
} platform_alloc_ranges[PLATFORM_DEV_KINDS] = {
    [PLATFORM_DEV_VIRTIO_MMIO] = {X86_VIRTIO_MMIO_BASE, X86_VIRTIO_MMIO_END, X86_VIRTIO_MMIO_SIZE},
    [PLATFORM_DEV_MMIO_OTHER] = {X86_MMIO_DEVICES_START, X86_MMIO_DEVICES_END, X86_PAGE_SIZE},
    [PLATFORM_DEV_ACPI_MMIO] = {X86_MMIO_DEVICES_START, X86_MMIO_DEVICES_END, X86_PAGE_SIZE},
    /* From the end of RAM (desc->ram_end, when higher), as Firecracker's past-MMIO64 area. */
    [PLATFORM_DEV_MEMORY] = {X86_MMIO_HOLE_END, X86_PHYS_END, X86_MEMORY_WINDOW_ALIGN},
    [PLATFORM_DEV_VMGENID] = {X86_MMIO_DEVICES_START, X86_MMIO_DEVICES_END, X86_PAGE_SIZE},
};

/* The lowest aligned window of len bytes in the kind's range that no device decodes. */
static int platform_alloc_window(const struct platform_desc *desc, struct platform_dev *dev,
                                 struct error *err)
{
        uint64_t start = platform_alloc_ranges[dev->kind].start;
        uint64_t end = platform_alloc_ranges[dev->kind].end;
        uint64_t align = platform_alloc_ranges[dev->kind].align;
        enum platform_space space = platform_dev_is_pio(dev) ? PLATFORM_PIO : PLATFORM_MMIO;
        uint64_t at = start;
        bool moved = true;

        if (dev->kind == PLATFORM_DEV_MEMORY && desc->ram_end > at)
                at = desc->ram_end;
        /* A device's own alignment (a power of two) only ever raises the kind's. */
        if (align && dev->align > align && !(dev->align & (dev->align - 1)))
                align = dev->align;

        if (!align)
                return error_set(err, -EINVAL, "%s %s is placed by convention, not allocated",
                                 platform_kind_name(dev->kind), dev->name);
        if (dev->len == 0 || dev->len > end - start)
                return error_set(err, -EINVAL, "%s %s: no window of 0x%" PRIx64 " bytes",
                                 platform_kind_name(dev->kind), dev->name, dev->len);
        /* Past every window in the way, until one pass finds none. */
        while (moved) {
                moved = false;
                if (!align_up_checked(at, align, &at) || at > end - dev->len)
                        return error_set(err, -ENOSPC,
                                         "%s %s: no free window of 0x%" PRIx64
                                         " bytes is left in 0x%" PRIx64 "-0x%" PRIx64,
                                         platform_kind_name(dev->kind), dev->name, dev->len, start,
                                         end - 1);
                for (unsigned i = 0; i < desc->nr_devs; i++) {
                        struct platform_window w[PLATFORM_MAX_WINDOWS];
                        unsigned n = platform_dev_windows(&desc->devs[i], w);

                        for (unsigned j = 0; j < n; j++) {
                                if (w[j].space != space ||
                                    !ranges_overlap(w[j].base, w[j].len, at, dev->len))
                                        continue;
                                at = w[j].base + w[j].len;
                                moved = true;
                        }
                }
        }
        dev->base = at;
        return 0;
}

/* The lowest GSI from X86_VIRTIO_FIRST_GSI that no device uses, or X86_IOAPIC_PINS. */
static uint32_t platform_free_gsi(const struct platform_desc *desc)
{
        uint32_t gsi;

        for (gsi = X86_VIRTIO_FIRST_GSI; gsi < X86_IOAPIC_PINS; gsi++) {
                bool used = false;

                for (unsigned i = 0; !used && i < desc->nr_devs; i++)
                        used = platform_dev_has_gsi(&desc->devs[i]) && desc->devs[i].gsi == gsi;
                if (!used)
                        break;
        }
        return gsi;
}

bool platform_has_free_gsi(const struct platform_desc *desc)
{
        return platform_free_gsi(desc) < X86_IOAPIC_PINS;
}

static int platform_alloc_gsi(const struct platform_desc *desc, struct platform_dev *dev,
                              struct error *err)
{
        uint32_t gsi = platform_free_gsi(desc);

        if (gsi < X86_IOAPIC_PINS) {
                dev->gsi = gsi;
                return 0;
        }
        return error_set(err, -ENOSPC, "%s %s: every GSI from %d to %d is taken",
                         platform_kind_name(dev->kind), dev->name, X86_VIRTIO_FIRST_GSI,
                         X86_IOAPIC_PINS - 1);
}

int platform_alloc_dev(struct platform_desc *desc, struct platform_dev *dev, struct error *err)
{
        int ret;

        if ((unsigned)dev->kind >= PLATFORM_DEV_KINDS)
                return error_set(err, -EINVAL, "platform device %.*s: unknown kind %d",
                                 (int)sizeof(dev->name), dev->name, (int)dev->kind);
        ret = platform_alloc_window(desc, dev, err);
        if (!ret && platform_dev_has_gsi(dev))
                ret = platform_alloc_gsi(desc, dev, err);
        if (!ret)
                ret = platform_add_dev(desc, dev, err);
        return ret;
}

/* The table may have been filled without platform_add_dev: check it as a whole. */
static int platform_desc_check(const struct platform_desc *desc, struct error *err)
{
        if (desc->nr_vcpus == 0 || desc->nr_vcpus > PLATFORM_MAX_VCPUS)
                return error_set(err, -EINVAL, "%u vCPUs: the platform supports 1 to %d",
                                 desc->nr_vcpus, PLATFORM_MAX_VCPUS);
        if (desc->nr_devs > PLATFORM_MAX_DEVS)
                return error_set(err, -EINVAL, "%u platform devices: at most %d are supported",
                                 desc->nr_devs, PLATFORM_MAX_DEVS);
        for (unsigned i = 0; i < desc->nr_devs; i++) {
                int ret = platform_dev_check(desc->devs, i, &desc->devs[i], err);
                if (ret)
                        return ret;
        }
        return 0;
}

static gpa_t platform_blob_next(const struct platform_blob *b)
{
        return align_down(b->gpa + b->len + ACPI_TABLE_ALIGN - 1, ACPI_TABLE_ALIGN);
}

static struct platform_blob *platform_blob_alloc(struct platform_tables *t, const char *name,
                                                 gpa_t gpa, uint32_t len, struct error *err)
{
        struct platform_blob *b = &t->blobs[t->nr];
        uint8_t *data = calloc(1, len);

        if (!data) {
                error_set(err, -ENOMEM, "out of memory for the %s table (%u bytes)", name, len);
                return NULL;
        }
        snprintf(b->name, sizeof(b->name), "%s", name);
        b->gpa = gpa;
        b->len = len;
        b->data = data;
        t->nr++;
        return b;
}

/*
 * Layout: the MP floating pointer at X86_MPTABLE_ADDR (in the last KiB of base memory, where
 * kernels scan for it) with its configuration table right behind; the ACPI tables from
 * X86_ACPI_TABLES_ADDR, or after the MPTable when many vCPUs push it past that; the RSDP at
 * X86_RSDP_ADDR (in the BIOS area kernels scan). Each table is built knowing the addresses of
 * the ones it points to, so the order is DSDT, FACP, APIC, XSDT, then RSDP.
 */
static int platform_tables_layout(const struct platform_desc *desc, struct platform_tables *t,
                                  struct error *err)
{
        const struct platform_blob *dsdt, *facp, *apic, *xsdt;
        struct platform_blob *b;
        uint32_t mp_len, dsdt_len;
        uint8_t *dsdt_data;
        gpa_t next, tables[2];
        int ret;

        mp_len = mptable_len(desc);
        b = platform_blob_alloc(t, "MPTABLE", X86_MPTABLE_ADDR, mp_len, err);
        if (!b)
                return -ENOMEM;
        mptable_build(b->data, desc, b->gpa, platform_ioapic_id(desc));

        next = X86_MPTABLE_ADDR + mp_len;
        if (next < X86_ACPI_TABLES_ADDR)
                next = X86_ACPI_TABLES_ADDR;
        next = align_down(next + ACPI_TABLE_ALIGN - 1, ACPI_TABLE_ALIGN);

        ret = acpi_dsdt_build(desc, &dsdt_data, &dsdt_len, err);
        if (ret)
                return ret;
        b = &t->blobs[t->nr++];
        snprintf(b->name, sizeof(b->name), "DSDT");
        b->gpa = next;
        b->len = dsdt_len;
        b->data = dsdt_data;
        dsdt = b;
        next = platform_blob_next(dsdt);

        facp = b = platform_blob_alloc(t, "FACP", next, ACPI_FADT_LEN, err);
        if (!b)
                return -ENOMEM;
        acpi_fadt_build(b->data, desc, dsdt->gpa);
        next = platform_blob_next(b);

        apic = b = platform_blob_alloc(t, "APIC", next, acpi_madt_len(desc->nr_vcpus), err);
        if (!b)
                return -ENOMEM;
        acpi_madt_build(b->data, desc->nr_vcpus, platform_ioapic_id(desc));
        next = platform_blob_next(b);

        tables[0] = facp->gpa;
        tables[1] = apic->gpa;
        xsdt = b = platform_blob_alloc(t, "XSDT", next, ACPI_XSDT_LEN(ARRAY_SIZE(tables)), err);
        if (!b)
                return -ENOMEM;
        acpi_xsdt_build(b->data, tables, ARRAY_SIZE(tables));

        if (xsdt->gpa + xsdt->len > X86_RSDP_ADDR)
                return error_set(err, -E2BIG,
                                 "firmware tables for %u vCPUs and %u devices need 0x%" PRIx64
                                 " bytes from 0x%llx but only 0x%llx fit below the RSDP",
                                 desc->nr_vcpus, desc->nr_devs,
                                 (uint64_t)(xsdt->gpa + xsdt->len - X86_MPTABLE_ADDR),
                                 X86_MPTABLE_ADDR, X86_RSDP_ADDR - X86_MPTABLE_ADDR);

        b = platform_blob_alloc(t, "RSDP", X86_RSDP_ADDR, ACPI_RSDP_LEN, err);
        if (!b)
                return -ENOMEM;
        acpi_rsdp_build(b->data, xsdt->gpa);
        t->rsdp = b->gpa;
        return 0;
}

int platform_tables_build(const struct platform_desc *desc, struct platform_tables *out,
                          struct error *err)
{
        int ret;

        memset(out, 0, sizeof(*out));
        ret = platform_desc_check(desc, err);
        if (!ret)
                ret = platform_tables_layout(desc, out, err);
        if (ret) {
                error_prefix(err, "firmware tables");
                platform_tables_free(out);
        }
        return ret;
}

int platform_tables_write(const struct platform_tables *t, const struct guest_mem *mem,
                          struct error *err)
{
        /* Check every table first so a failure leaves guest memory untouched. */
        for (unsigned i = 0; i < t->nr; i++) {
                const struct platform_blob *b = &t->blobs[i];
                if (!guest_mem_contains(mem, b->gpa, b->len))
                        return error_set(err, -EFAULT,
                                         "the %s table at 0x%" PRIx64 "-0x%" PRIx64
                                         " is not in guest RAM (low RAM ends at 0x%" PRIx64 ")",
                                         b->name, b->gpa, b->gpa + b->len - 1,
                                         guest_mem_low_end(mem));
        }
        for (unsigned i = 0; i < t->nr; i++) {
                const struct platform_blob *b = &t->blobs[i];
                int ret = guest_mem_write(mem, b->gpa, b->data, b->len);
                if (ret)
                        return error_set(err, ret, "cannot write the %s table at 0x%" PRIx64,
                                         b->name, b->gpa);
        }
        return 0;
}

const struct platform_blob *platform_tables_find(const struct platform_tables *t, const char *name)
{
        for (unsigned i = 0; i < t->nr; i++)
                if (strcmp(t->blobs[i].name, name) == 0)
                        return &t->blobs[i];
        return NULL;
}

void platform_tables_free(struct platform_tables *t)
{
        for (unsigned i = 0; i < t->nr; i++)
                free(t->blobs[i].data);
        memset(t, 0, sizeof(*t));
}

#define VIRTIO_MMIO_CMDLINE_FMT " virtio_mmio.device=4K@0x%" PRIx64 ":%u"

int platform_cmdline_append(const struct platform_desc *desc, char *cmdline, size_t cap,
                            struct error *err)
{
        size_t cur = strnlen(cmdline, cap);
        size_t need = 0;
        unsigned n = 0;

        if (cur == cap)
                return error_set(err, -EINVAL,
                                 "kernel command line is not terminated within %zu bytes", cap);
        /* Measure first so a command line that does not fit is left as it was. */
        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *dev = &desc->devs[i];
                if (dev->kind != PLATFORM_DEV_VIRTIO_MMIO)
                        continue;
                need += (size_t)snprintf(NULL, 0, VIRTIO_MMIO_CMDLINE_FMT, dev->base, dev->gsi);
                n++;
        }
        if (need > cap - cur - 1)
                return error_set(err, -ENOSPC,
                                 "kernel command line too long: %zu bytes plus %zu for %u "
                                 "virtio_mmio.device= entries exceed the %zu-byte limit",
                                 cur, need, n, cap - 1);
        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *dev = &desc->devs[i];
                if (dev->kind != PLATFORM_DEV_VIRTIO_MMIO)
                        continue;
                cur += (size_t)snprintf(cmdline + cur, cap - cur, VIRTIO_MMIO_CMDLINE_FMT,
                                        dev->base, dev->gsi);
        }
        return 0;
}

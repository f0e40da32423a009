/*
 * The machine's platform description and the firmware tables generated from it.
 *
 * One table of devices {name, kind, base, len, gsi} describes the board (QEMU microvm's
 * idea): the ACPI tables (RSDP/XSDT/FADT/MADT/DSDT), the legacy MPTable and the kernel
 * command line's virtio_mmio.device= entries are all generated from it, so they cannot
 * disagree; the VMM registers its bus windows from it too (platform_dev_windows). Devices
 * are placed by convention (platform_add_dev: the ISA ports and IRQs, the boot timer) or
 * allocated (platform_alloc_dev, as Firecracker's resource allocator: each window and GSI is
 * handed out once, from the table itself, so the same additions in the same order always
 * get the same resources). The builder needs no KVM and no guest memory: it returns blobs
 * with their guest addresses, which the VMM copies into RAM or `--dump-platform` writes to
 * files.
 *
 * A new kind of device: its enum entry, its resource rules (platform_dev_check_resources),
 * where it is allocated (platform_alloc_ranges), whether it has an interrupt
 * (platform_dev_has_gsi) and its DSDT entry (acpi.c).
 */
#ifndef ARCH_X86_PLATFORM_H
#define ARCH_X86_PLATFORM_H

#include <stdint.h>

#include "common/error.h"
#include "common/util.h"
#include "memory/guest_mem.h"

#define PLATFORM_MAX_DEVS    80
#define PLATFORM_MAX_VCPUS   254        /* 8-bit xAPIC ids, 0xff is broadcast */
#define PLATFORM_VMGENID_LEN 16         /* bytes of the VM generation ID */
#define PLATFORM_VMGENID_HID "CVMM0002" /* its device's _HID (beside _CID "VM_Gen_Counter") */

/* OEM identity written in every generated table (ACPI and MPTable). */
#define PLATFORM_OEM_ID       "CVMM  " /* 6 bytes */
#define PLATFORM_OEM_TABLE_ID "CVMM"   /* + 4-byte table signature, e.g. "CVMMDSDT" */
#define PLATFORM_CREATOR_ID   "CVMM"
#define PLATFORM_OEM_REVISION 1

enum platform_dev_kind {
        PLATFORM_DEV_SERIAL,      /* 8250 UART: base = I/O port, len 8, gsi = ISA IRQ */
        PLATFORM_DEV_I8042,       /* PS/2 controller: ports 0x60 and 0x64, gsi = ISA IRQ 1 */
        PLATFORM_DEV_VIRTIO_MMIO, /* virtio-mmio v2 slot: base = MMIO address, len 0x1000 */
        PLATFORM_DEV_MMIO_OTHER,  /* described nowhere (e.g. the boot timer); occupies space */
        PLATFORM_DEV_ACPI_MMIO,   /* a DSDT device: _HID `hid` and Memory32Fixed, no interrupt
                                   * (the confidential platform-call window) */
        PLATFORM_DEV_MEMORY,      /* guest-physical memory past RAM that is no RAM (a virtio-pmem
                                   * window): described by its device, not by the firmware */
        PLATFORM_DEV_ACPI_SLEEP,  /* the hardware-reduced sleep registers: base = I/O port of
                                   * SLEEP_CONTROL, base + 1 SLEEP_STATUS, len 2; the FADT
                                   * points at them and the DSDT gains \_S5 (power-off) */
        PLATFORM_DEV_VMGENID,     /* the VM generation ID: base = the window whose first 16
                                   * bytes hold the id, gsi = the interrupt of the Generic
                                   * Event Device (\_SB.VGED) that notifies it */
        PLATFORM_DEV_KINDS,
};

struct platform_dev {
        char name[16]; /* ACPI-safe short name, unique per kind, e.g. "COM1", "VR00" */
        enum platform_dev_kind kind;
        uint64_t base;
        uint64_t len;
        uint32_t gsi;
        char hid[9];    /* PLATFORM_DEV_ACPI_MMIO: ACPI _HID, e.g. "CVMM0001" */
        uint64_t align; /* platform_alloc_dev: a larger alignment than the kind's (0: none) */
};

struct platform_desc {
        unsigned nr_vcpus; /* APIC ids are 0..nr_vcpus-1 */
        uint64_t ram_end;  /* the first address past guest RAM: memory windows start here */
        unsigned nr_devs;
        struct platform_dev devs[PLATFORM_MAX_DEVS];
};

struct platform_blob {
        char name[12]; /* "RSDP", "XSDT", "FACP", "APIC", "DSDT", "MPTABLE" */
        gpa_t gpa;
        uint32_t len;
        uint8_t *data;
};

#define PLATFORM_MAX_BLOBS 8

struct platform_tables {
        unsigned nr;
        struct platform_blob blobs[PLATFORM_MAX_BLOBS];
        gpa_t rsdp; /* address of the RSDP, for boot_params.acpi_rsdp_addr and PVH */
};

/* Adds a device where dev says; -EINVAL on overlap with a device of the same address space or
 * when full. */
int platform_add_dev(struct platform_desc *desc, const struct platform_dev *dev,
                     struct error *err) MUST_CHECK;
/* Allocates dev's resources, then adds it: its window (dev->len bytes) at the lowest aligned
 * address of its kind's range that no device in desc decodes and, when its kind has an
 * interrupt, the lowest GSI from X86_VIRTIO_FIRST_GSI no device uses; dev->base and dev->gsi
 * are set. -ENOSPC when the range or the GSIs are used up, -EINVAL for a kind that is placed
 * by convention only (serial, i8042). */
int platform_alloc_dev(struct platform_desc *desc, struct platform_dev *dev,
                       struct error *err) MUST_CHECK;

/* Whether platform_alloc_dev can still hand out a GSI. */
bool platform_has_free_gsi(const struct platform_desc *desc);

/* A range of addresses a device decodes. */
enum platform_space { PLATFORM_PIO, PLATFORM_MMIO };
struct platform_window {
        enum platform_space space;
        uint64_t base, len;
};
#define PLATFORM_MAX_WINDOWS 2

/* dev's windows, in a fixed order per kind (the i8042: its data port, then its
 * command/status port at +4); returns how many. */
unsigned platform_dev_windows(const struct platform_dev *dev,
                              struct platform_window w[PLATFORM_MAX_WINDOWS]);
/* Whether dev's kind raises an interrupt (its gsi is meaningful). */
bool platform_dev_has_gsi(const struct platform_dev *dev);

/* Builds the MPTable at X86_MPTABLE_ADDR, then the ACPI tables after it (below
 * X86_RSDP_ADDR), and the RSDP at X86_RSDP_ADDR. */
int platform_tables_build(const struct platform_desc *desc, struct platform_tables *out,
                          struct error *err) MUST_CHECK;
int platform_tables_write(const struct platform_tables *t, const struct guest_mem *mem,
                          struct error *err) MUST_CHECK;
const struct platform_blob *platform_tables_find(const struct platform_tables *t, const char *name);
void platform_tables_free(struct platform_tables *t);

/* Appends " virtio_mmio.device=4K@0xADDR:GSI" for every virtio-mmio slot; -ENOSPC if the
 * result (with NUL) would exceed cap bytes. */
int platform_cmdline_append(const struct platform_desc *desc, char *cmdline, size_t cap,
                            struct error *err) MUST_CHECK;

#endif

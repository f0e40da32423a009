/*
 * The board: every device of the machine with its resources (its I/O-port or MMIO windows
 * and its interrupt), decided once, from the configuration alone (no KVM, no files).
 * Whatever says where a device is reads it from here: the bus registrations and interrupt
 * lines (vm.c, vm_devices.c), the kernel command line (virtio_mmio.device=, cc.callwin=),
 * the ACPI tables and the MPTable (arch/x86/platform.h), the POWER device tree of
 * --dump-platform.
 *
 * The ISA devices sit at their conventional ports and IRQs, the boot timer and the
 * confidential platform-call window at the addresses guests are told about; the virtio-mmio
 * slots are allocated (platform_alloc_dev: the lowest free window and GSI) in the order
 * vm_devices.h gives, then the virtio-pmem windows past the end of RAM (2 MiB aligned, sized
 * by the configuration: struct vmm_pmem's window_size), then the virtio-mem region (aligned
 * to its slot size). The layout is therefore a function of the
 * configuration, which a snapshot saves, so a restored VM gets back the layout it was saved with; a
 * change that moves an existing device moves it under restored guests and needs a new snapshot
 * format version (tests/unit/test_vm_board.c pins the layout).
 *
 * Adding a device: one vm_board_add in vm_board_build (its entry: name, kind, length, and
 * its place or "allocate"), with a role naming the VMM device that serves it, and that
 * role's bus wiring in vm.c (attach_board).
 */
#ifndef VMM_VM_BOARD_H
#define VMM_VM_BOARD_H

#include <stdbool.h>

#include "arch/x86/platform.h"
#include "common/error.h"
#include "config.h"

enum vm_board_role {
        VM_BOARD_SERIAL,     /* COM1, the 8250 UART */
        VM_BOARD_I8042,      /* the PS/2 controller: its data port, then its command port */
        VM_BOARD_ACPI_SLEEP, /* the ACPI sleep control/status registers (power-off) */
        VM_BOARD_BOOT_TIMER, /* described nowhere: guests know its address */
        VM_BOARD_CALLWIN,    /* the confidential platform-call window (pef, s390-pv) */
        VM_BOARD_VIRTIO,     /* a virtio-mmio slot: vm_devices' device number `index` */
        VM_BOARD_PMEM,       /* a virtio-pmem window past RAM: pmem device `index` (cfg order) */
        VM_BOARD_HOTPLUG,    /* the virtio-mem region past RAM (after the pmem windows) */
        VM_BOARD_VMGENID,    /* the VM generation ID and its event device (devices/vmgenid.h) */
};

struct vm_board_dev {
        enum vm_board_role role;
        unsigned index; /* VM_BOARD_VIRTIO: the slot; VM_BOARD_PMEM: the pmem; 0 for the others */
};

struct vm_board {
        struct platform_desc desc;                    /* what the firmware describes */
        struct vm_board_dev roles[PLATFORM_MAX_DEVS]; /* who serves desc.devs[i] */
};

/* The board of cfg: COM1, the i8042, the ACPI sleep registers, the boot timer (when
 * configured), the platform-call window (when the confidential platform has one), the
 * virtio-mmio slots, then the VM generation ID (when a GSI is left for its event device: 19
 * virtio devices take them all). */
int vm_board_build(const struct vmm_config *cfg, struct vm_board *b, struct error *err) MUST_CHECK;

/* Adds dev as the device that role (and index) serves: where dev says, or with alloc at the
 * resources platform_alloc_dev hands out (dev->base and dev->gsi are set). */
int vm_board_add(struct vm_board *b, enum vm_board_role role, unsigned index,
                 struct platform_dev *dev, bool alloc, struct error *err) MUST_CHECK;

/* The entry of role (and index), or NULL when the board has none. */
const struct platform_dev *vm_board_find(const struct vm_board *b, enum vm_board_role role,
                                         unsigned index);

#endif

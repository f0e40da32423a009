/*
 * The x86_64 guest physical layout (docs/running.md, "Guest platform"). One place
 * for every fixed address, so loaders, table builders, the probe guest and tests agree.
 * This header is also included by the probe guest (freestanding), so it holds only macros.
 */
#ifndef ARCH_X86_LAYOUT_H
#define ARCH_X86_LAYOUT_H

#define X86_PAGE_SIZE        0x1000ull
#define X86_BOOT_GDT_ADDR    0x500ull
#define X86_BOOT_IDT_ADDR    0x520ull
#define X86_PVH_INFO_ADDR    0x6000ull /* hvm_start_info, then memmap and modlist */
#define X86_ZERO_PAGE_ADDR   0x7000ull /* struct boot_params */
#define X86_BOOT_STACK_ADDR  0x8ff0ull
#define X86_PML4_ADDR        0x9000ull
#define X86_PDPTE_ADDR       0xa000ull
#define X86_PDE_ADDR         0xb000ull
#define X86_CMDLINE_ADDR     0x20000ull
#define X86_CMDLINE_MAX      2048ull /* bytes, including the terminating NUL */
#define X86_MPTABLE_ADDR     0x9fc00ull
#define X86_EBDA_ADDR        0x9fc00ull /* RAM below this is usable; up to 1 MiB is reserved */
#define X86_ACPI_TABLES_ADDR 0xa0000ull
#define X86_RSDP_ADDR        0xe0000ull
#define X86_BIOS_END         0x100000ull
#define X86_HIMEM_START      0x100000ull /* kernels load at or above 1 MiB */

#define X86_MMIO_HOLE_START   0xc0000000ull
#define X86_MMIO_HOLE_END     0x100000000ull
#define X86_BOOT_TIMER_ADDR   0xc0000000ull /* byte write of 123 logs the boot time */
#define X86_BOOT_TIMER_LEN    0x1000ull
#define X86_VIRTIO_MMIO_BASE  0xc0001000ull /* virtio-mmio slots, 4 KiB each */
#define X86_VIRTIO_MMIO_SIZE  0x1000ull
#define X86_VIRTIO_MMIO_SLOTS 64
#define X86_VIRTIO_MMIO_END   (X86_VIRTIO_MMIO_BASE + X86_VIRTIO_MMIO_SLOTS * X86_VIRTIO_MMIO_SIZE)
#define X86_CC_CALLWIN_ADDR   0xc0080000ull /* confidential platform-call window (pef, s390-pv) */
#define X86_CC_CALLWIN_SIZE   0x1000ull
/* Other devices' windows, where the board allocates them (arch/x86/platform.h). */
/* Memory windows past RAM (virtio-pmem): 2 MiB aligned (the Linux driver's requirement),
 * below the 46-bit bound guest RAM keeps to as well. */
#define X86_MEMORY_WINDOW_ALIGN (2ull << 20)
#define X86_PHYS_END            (1ull << 46)

#define X86_MMIO_DEVICES_START 0xc0100000ull
#define X86_MMIO_DEVICES_END   X86_IOAPIC_ADDR
#define X86_IOAPIC_ADDR        0xfec00000ull
#define X86_LAPIC_ADDR         0xfee00000ull

#define X86_COM1_PORT        0x3f8
#define X86_COM1_IRQ         4
#define X86_I8042_DATA_PORT  0x60
#define X86_I8042_CMD_PORT   0x64
#define X86_I8042_IRQ        1
#define X86_VIRTIO_FIRST_GSI 5 /* the first GSI the board hands out (virtio-mmio slots on) */
#define X86_IOAPIC_PINS      24
/* The ACPI sleep control and status registers (FADT) and the sleep type \_S5 names: the
 * power-off path of the hardware-reduced platform (the board's PLATFORM_DEV_ACPI_SLEEP,
 * devices/acpi_sleep.h). */
#define X86_ACPI_SLEEP_PORT 0x600
#define X86_ACPI_S5_TYPE    5

#define X86_E820_RAM      1
#define X86_E820_RESERVED 2

#endif

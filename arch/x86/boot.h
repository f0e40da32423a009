/*
 * Boot-time guest structures for x86_64: the e820 memory map, the Linux zero page
 * (boot_params), the PVH hvm_start_info, the boot GDT/IDT, identity page tables and the
 * command line, all at the addresses in layout.h.
 */
#ifndef ARCH_X86_BOOT_H
#define ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "loader.h"
#include "memory/guest_mem.h"

#define X86_E820_MAX 32

struct x86_e820_entry {
        uint64_t addr;
        uint64_t size;
        uint32_t type;
};

struct x86_boot_args {
        const struct x86_kernel *kernel;
        const char *cmdline; /* final command line, NUL-terminated */
        gpa_t initrd_addr;
        uint64_t initrd_size; /* 0: no initrd */
        gpa_t rsdp;           /* 0: no ACPI */
};

/* Fills `out` with the guest's memory map; returns the number of entries. */
size_t x86_e820_build(const struct guest_mem *mem, struct x86_e820_entry *out, size_t cap);

/* Checks the command line against the kernel's and the layout's limits. */
int x86_cmdline_check(const struct x86_kernel *k, const char *cmdline,
                      struct error *err) MUST_CHECK;

/* Writes the GDT, IDT, page tables, command line and the protocol's boot information. */
int x86_boot_write(const struct guest_mem *mem, const struct x86_boot_args *args,
                   struct error *err) MUST_CHECK;

/* GDT selectors and descriptors the boot vCPU state refers to. */
#define X86_GDT_CODE_SEL 0x08
#define X86_GDT_DATA_SEL 0x10
#define X86_GDT_TSS_SEL  0x18
#define X86_GDT_ENTRIES  4

/* The descriptor table written at X86_BOOT_GDT_ADDR for the given protocol. */
void x86_boot_gdt(enum x86_boot_protocol proto, uint64_t gdt[X86_GDT_ENTRIES]);

#endif

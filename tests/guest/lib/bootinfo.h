/*
 * What the loader handed over, in one shape whichever entry path was taken: PVH
 * (struct hvm_start_info) or the Linux boot protocol (struct boot_params, the zero page).
 * Only documented fields are read; nothing else (BIOS data area, EBDA) is assumed.
 */
#ifndef PROBE_BOOTINFO_H
#define PROBE_BOOTINFO_H

/* Entry paths, as recorded by boot/entry.S (which includes this header). */
#define BOOT_PATH_PVH     1 /* 32-bit, ebx = hvm_start_info */
#define BOOT_PATH_LINUX64 2 /* 64-bit Linux boot protocol, rsi = boot_params */
#define BOOT_PATH_LINUX32 3 /* 32-bit Linux boot protocol, esi = boot_params */

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/layout.h"

#define BOOT_MEMMAP_MAX 128 /* E820_MAX_ENTRIES_ZEROPAGE */

struct boot_mem_range {
        uint64_t addr;
        uint64_t size;
        uint32_t type;
};

struct boot_info {
        unsigned path;                 /* BOOT_PATH_* */
        uint64_t info_addr;            /* the hvm_start_info or boot_params address */
        const char *error;             /* set when the boot structure itself is unusable */
        uint64_t cmdline_addr;         /* 0: no command line */
        bool cmdline_terminated;       /* a NUL within X86_CMDLINE_MAX bytes */
        char cmdline[X86_CMDLINE_MAX]; /* private copy, always NUL-terminated */
        unsigned memmap_count;         /* as reported; only BOOT_MEMMAP_MAX are kept */
        struct boot_mem_range memmap[BOOT_MEMMAP_MAX];
        bool has_initrd;
        uint64_t initrd_addr;
        uint64_t initrd_size;
        uint64_t rsdp_addr; /* 0: the loader did not say */
};

/* Parses the structure at addr for the given entry path into a static boot_info. Problems
 * with the structure itself set ->error; the scenarios judge the contents. */
const struct boot_info *bootinfo_parse(unsigned path, uint64_t addr);
const struct boot_info *bootinfo_get(void);
const char *bootinfo_path_name(unsigned path);

/* True when [addr, addr + size) lies in memory map entries of `type` with no gaps. */
bool bootinfo_mem_is(const struct boot_info *bi, uint64_t addr, uint64_t size, uint32_t type);

#endif
#endif

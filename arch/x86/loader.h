/*
 * Kernel and initrd loaders for x86_64: ELF vmlinux (PVH entry when the ELF carries the
 * XEN_ELFNOTE_PHYS32_ENTRY note, else the 64-bit Linux boot protocol) and bzImage (boot
 * protocol >= 2.12 with a 64-bit entry).
 *
 * Images are hostile input: every header field, count, offset and size is bounded against
 * the file and against guest RAM with overflow-safe arithmetic, and each refusal is one
 * precise message in `err`. Nothing is written to guest memory before the whole image has
 * been validated.
 */
#ifndef ARCH_X86_LOADER_H
#define ARCH_X86_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"
#include "memory/guest_mem.h"

enum x86_boot_protocol {
        X86_BOOT_LINUX64, /* long mode, rsi = zero page */
        X86_BOOT_PVH,     /* 32-bit protected mode, paging off, rbx = hvm_start_info */
};

enum x86_kernel_format { X86_KERNEL_ELF, X86_KERNEL_BZIMAGE };

#define X86_SETUP_HEADER_OFFSET 0x1f1
#define X86_SETUP_HEADER_MAX    (0x280 - X86_SETUP_HEADER_OFFSET)
#define X86_ELF_MAX_PHDRS       128

struct x86_kernel {
        enum x86_kernel_format format;
        enum x86_boot_protocol protocol;
        gpa_t entry;      /* where the BSP starts, in the protocol's mode */
        gpa_t load_start; /* guest range the kernel owns (file contents, bss, init_size) */
        gpa_t load_end;
        uint64_t initrd_addr_max; /* highest byte address an initrd may occupy */
        uint32_t cmdline_max;     /* bytes including the NUL the kernel accepts */
        /* bzImage only: the setup header to copy into boot_params at 0x1f1. */
        uint8_t setup_header[X86_SETUP_HEADER_MAX];
        uint32_t setup_header_len;
        uint16_t protocol_version;
};

/* Detects the format, validates it and copies it into guest memory. */
int x86_kernel_load(const struct guest_mem *mem, const uint8_t *img, size_t len,
                    struct x86_kernel *out, struct error *err) MUST_CHECK;

/* Places the initrd page-aligned at the top of low RAM (below initrd_addr_max) and above the
 * kernel; -ENOSPC with a message if it does not fit. */
int x86_initrd_load(const struct guest_mem *mem, const struct x86_kernel *k, const uint8_t *img,
                    size_t len, gpa_t *addr_out, struct error *err) MUST_CHECK;

#endif

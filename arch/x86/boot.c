#include "boot.h"

#include <errno.h>
#include <string.h>

#include "layout.h"

/* struct boot_params offsets (arch/x86/include/uapi/asm/bootparam.h). */
#define BP_ACPI_RSDP_ADDR   0x070
#define BP_EXT_RAMDISK_IMG  0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES     0x1e8
#define BP_BOOT_FLAG        0x1fe
#define BP_HEADER           0x202
#define BP_VERSION          0x206
#define BP_TYPE_OF_LOADER   0x210
#define BP_LOADFLAGS        0x211
#define BP_RAMDISK_IMAGE    0x218
#define BP_RAMDISK_SIZE     0x21c
#define BP_CMD_LINE_PTR     0x228
#define BP_KERNEL_ALIGN     0x230
#define BP_CMDLINE_SIZE     0x238
#define BP_E820_TABLE       0x2d0
#define BP_E820_MAX         128
#define BP_SIZE             4096

/* struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h), version 1. */
#define PVH_MAGIC        0x336ec578
#define PVH_INFO_SIZE    56
#define PVH_MEMMAP_ADDR  (X86_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ENTRY 24
#define PVH_MODLIST_ADDR (X86_PVH_INFO_ADDR + 0x400)

#define PTE_PRESENT 0x1ull
#define PTE_WRITE   0x2ull
#define PTE_HUGE    0x80ull

size_t x86_e820_build(const struct guest_mem *mem, struct x86_e820_entry *out, size_t cap)
{
        size_t n = 0;

#define ADD(a, s, t)                                                                               \
        do {                                                                                       \
                if (n < cap)                                                                       \
                        out[n] = (struct x86_e820_entry){(a), (s), (t)};                           \
                n++;                                                                               \
        } while (0)

        /* The 640 KiB - 1 MiB area holds the MPTable and ACPI tables: reserved, as a PC BIOS
         * reports it, so no kernel reuses it. */
        ADD(0, X86_EBDA_ADDR, X86_E820_RAM);
        ADD(X86_EBDA_ADDR, X86_BIOS_END - X86_EBDA_ADDR, X86_E820_RESERVED);
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region r = guest_mem_region_get(mem, i);
                if (r.gpa == 0) {
                        if (r.size > X86_HIMEM_START)
                                ADD(X86_HIMEM_START, r.size - X86_HIMEM_START, X86_E820_RAM);
                } else {
                        ADD(r.gpa, r.size, X86_E820_RAM);
                }
        }
#undef ADD
        return n < cap ? n : cap;
}

int x86_cmdline_check(const struct x86_kernel *k, const char *cmdline, struct error *err)
{
        size_t len = strlen(cmdline);
        uint32_t max = k ? k->cmdline_max : X86_CMDLINE_MAX;

        if (len + 1 > max)
                return error_set(err, -E2BIG,
                                 "kernel command line is %zu bytes; the limit is %u bytes", len,
                                 max - 1);
        return 0;
}

void x86_boot_gdt(enum x86_boot_protocol proto, uint64_t gdt[X86_GDT_ENTRIES])
{
        gdt[0] = 0;
        /* 64-bit code (L=1) for the Linux protocol; flat 32-bit code (D=1) for PVH. */
        gdt[1] = proto == X86_BOOT_PVH ? 0x00cf9b000000ffffull : 0x00af9b000000ffffull;
        gdt[2] = 0x00cf93000000ffffull;
        gdt[3] = 0x008f8b000000ffffull; /* busy 32-bit TSS: KVM needs a valid TR */
}

static int write_tables(const struct guest_mem *mem, enum x86_boot_protocol proto)
{
        uint64_t gdt[X86_GDT_ENTRIES];
        uint8_t buf[4096];
        int r;

        x86_boot_gdt(proto, gdt);
        for (unsigned i = 0; i < X86_GDT_ENTRIES; i++)
                put_le64(buf + i * 8, gdt[i]);
        r = guest_mem_write(mem, X86_BOOT_GDT_ADDR, buf, sizeof(gdt));
        if (!r)
                r = guest_mem_fill(mem, X86_BOOT_IDT_ADDR, 0, 8);
        if (r)
                return r;

        /* Identity map of the first GiB with 2 MiB pages. */
        memset(buf, 0, sizeof(buf));
        put_le64(buf, X86_PDPTE_ADDR | PTE_PRESENT | PTE_WRITE);
        r = guest_mem_write(mem, X86_PML4_ADDR, buf, sizeof(buf));
        memset(buf, 0, sizeof(buf));
        put_le64(buf, X86_PDE_ADDR | PTE_PRESENT | PTE_WRITE);
        if (!r)
                r = guest_mem_write(mem, X86_PDPTE_ADDR, buf, sizeof(buf));
        for (unsigned i = 0; i < 512; i++)
                put_le64(buf + i * 8, ((uint64_t)i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE);
        if (!r)
                r = guest_mem_write(mem, X86_PDE_ADDR, buf, sizeof(buf));
        return r;
}

static int write_zero_page(const struct guest_mem *mem, const struct x86_boot_args *a,
                           const struct x86_e820_entry *e820, size_t n)
{
        const struct x86_kernel *k = a->kernel;
        uint8_t bp[BP_SIZE];

        memset(bp, 0, sizeof(bp));
        if (k->format == X86_KERNEL_BZIMAGE) {
                memcpy(bp + 0x1f1, k->setup_header, k->setup_header_len);
        } else {
                put_le16(bp + BP_BOOT_FLAG, 0xaa55);
                memcpy(bp + BP_HEADER, "HdrS", 4);
                put_le16(bp + BP_VERSION, 0x020f);
                put_le32(bp + BP_KERNEL_ALIGN, 0x01000000);
        }
        bp[BP_TYPE_OF_LOADER] = 0xff; /* undefined loader */
        put_le32(bp + BP_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
        put_le32(bp + BP_CMDLINE_SIZE, (uint32_t)strlen(a->cmdline));
        /* Always written: a bzImage header may carry stale ramdisk fields. */
        put_le32(bp + BP_RAMDISK_IMAGE, a->initrd_size ? (uint32_t)a->initrd_addr : 0);
        put_le32(bp + BP_RAMDISK_SIZE, (uint32_t)a->initrd_size);
        put_le32(bp + BP_EXT_RAMDISK_IMG, a->initrd_size ? (uint32_t)(a->initrd_addr >> 32) : 0);
        put_le32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(a->initrd_size >> 32));
        put_le64(bp + BP_ACPI_RSDP_ADDR, a->rsdp);
        if (n > BP_E820_MAX)
                n = BP_E820_MAX;
        bp[BP_E820_ENTRIES] = (uint8_t)n;
        for (size_t i = 0; i < n; i++) {
                uint8_t *e = bp + BP_E820_TABLE + i * 20;
                put_le64(e, e820[i].addr);
                put_le64(e + 8, e820[i].size);
                put_le32(e + 16, e820[i].type);
        }
        return guest_mem_write(mem, X86_ZERO_PAGE_ADDR, bp, sizeof(bp));
}

static int write_pvh_info(const struct guest_mem *mem, const struct x86_boot_args *a,
                          const struct x86_e820_entry *e820, size_t n)
{
        uint8_t info[PVH_INFO_SIZE], ent[PVH_MEMMAP_ENTRY], mod[32];
        int r = 0;

        memset(info, 0, sizeof(info));
        put_le32(info + 0, PVH_MAGIC);
        put_le32(info + 4, 1); /* version: has memmap */
        put_le32(info + 12, a->initrd_size ? 1 : 0);
        put_le64(info + 16, a->initrd_size ? PVH_MODLIST_ADDR : 0);
        put_le64(info + 24, X86_CMDLINE_ADDR);
        put_le64(info + 32, a->rsdp);
        put_le64(info + 40, PVH_MEMMAP_ADDR);
        put_le32(info + 48, (uint32_t)n);
        r = guest_mem_write(mem, X86_PVH_INFO_ADDR, info, sizeof(info));
        for (size_t i = 0; !r && i < n; i++) {
                memset(ent, 0, sizeof(ent));
                put_le64(ent, e820[i].addr);
                put_le64(ent + 8, e820[i].size);
                put_le32(ent + 16, e820[i].type);
                r = guest_mem_write(mem, PVH_MEMMAP_ADDR + i * PVH_MEMMAP_ENTRY, ent, sizeof(ent));
        }
        if (!r && a->initrd_size) {
                memset(mod, 0, sizeof(mod));
                put_le64(mod, a->initrd_addr);
                put_le64(mod + 8, a->initrd_size);
                r = guest_mem_write(mem, PVH_MODLIST_ADDR, mod, sizeof(mod));
        }
        return r;
}

int x86_boot_write(const struct guest_mem *mem, const struct x86_boot_args *a, struct error *err)
{
        struct x86_e820_entry e820[X86_E820_MAX];
        size_t n = x86_e820_build(mem, e820, X86_E820_MAX);
        int r;

        if (guest_mem_low_end(mem) < X86_HIMEM_START)
                return error_set(err, -EINVAL, "guest RAM must extend past 1 MiB");
        r = x86_cmdline_check(a->kernel, a->cmdline, err);
        if (r)
                return r;
        r = write_tables(mem, a->kernel->protocol);
        if (!r)
                r = guest_mem_write(mem, X86_CMDLINE_ADDR, a->cmdline, strlen(a->cmdline) + 1);
        if (!r)
                r = a->kernel->protocol == X86_BOOT_PVH ? write_pvh_info(mem, a, e820, n)
                                                        : write_zero_page(mem, a, e820, n);
        return r ? error_set(err, r, "cannot write boot structures into guest memory") : 0;
}

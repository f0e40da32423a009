#include "bootinfo.h"

#include "str.h"

/* struct hvm_start_info (Xen's arch-x86/hvm/start_info.h) */
#define HVM_START_MAGIC       0x336ec578u
#define HVM_MAGIC             0x00
#define HVM_VERSION           0x04
#define HVM_NR_MODULES        0x0c
#define HVM_MODLIST_PADDR     0x10
#define HVM_CMDLINE_PADDR     0x18
#define HVM_RSDP_PADDR        0x20
#define HVM_MEMMAP_PADDR      0x28
#define HVM_MEMMAP_ENTRIES    0x30
#define HVM_MEMMAP_ENTRY_SIZE 24 /* u64 addr, u64 size, u32 type, u32 reserved */
#define HVM_MODLIST_PADDR_OFF 0  /* struct hvm_modlist_entry: u64 paddr, u64 size, ... */
#define HVM_MODLIST_SIZE_OFF  8

/* struct boot_params (Documentation/arch/x86/zero-page.rst, boot.rst) */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES      0x1e8
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE      0x21c
#define BP_CMD_LINE_PTR      0x228
#define BP_E820_TABLE        0x2d0
#define BP_E820_ENTRY_SIZE   20 /* packed: u64 addr, u64 size, u32 type */

/* The probe maps only the low 4 GiB: structures above it cannot be read. */
#define MAPPED_END 0x100000000ull

static struct boot_info info;

static const uint8_t *phys(uint64_t addr)
{
        return (const uint8_t *)(uintptr_t)addr;
}

static bool mapped(uint64_t addr, uint64_t size)
{
        return addr <= MAPPED_END && size <= MAPPED_END - addr;
}

static void copy_cmdline(uint64_t addr)
{
        size_t len;

        info.cmdline_addr = addr;
        if (!addr) {
                info.cmdline_terminated = true;
                return;
        }
        if (!mapped(addr, X86_CMDLINE_MAX)) {
                info.error = "command line above 4 GiB";
                return;
        }
        len = str_nlen((const char *)phys(addr), X86_CMDLINE_MAX);
        info.cmdline_terminated = len < X86_CMDLINE_MAX;
        /* An unterminated line is kept truncated so the scenario name can still be read;
         * the boot scenario reports it. */
        if (len == X86_CMDLINE_MAX)
                len--;
        memcpy(info.cmdline, phys(addr), len);
        info.cmdline[len] = '\0';
}

/* Keeps the first BOOT_MEMMAP_MAX entries of a table of n (u64 addr, u64 size, u32 type). */
static void copy_memmap(const uint8_t *table, uint32_t n, unsigned stride)
{
        info.memmap_count = n;
        for (uint32_t i = 0; i < n && i < BOOT_MEMMAP_MAX; i++) {
                const uint8_t *e = table + (uint64_t)i * stride;

                info.memmap[i] = (struct boot_mem_range){
                    .addr = load_le64(e), .size = load_le64(e + 8), .type = load_le32(e + 16)};
        }
}

static void parse_pvh(uint64_t addr)
{
        const uint8_t *si = phys(addr);
        uint32_t version, n;

        if (!mapped(addr, 0x38)) {
                info.error = "hvm_start_info above 4 GiB";
                return;
        }
        if (load_le32(si + HVM_MAGIC) != HVM_START_MAGIC) {
                info.error = "bad hvm_start_info magic";
                return;
        }
        version = load_le32(si + HVM_VERSION);
        copy_cmdline(load_le64(si + HVM_CMDLINE_PADDR));
        info.rsdp_addr = load_le64(si + HVM_RSDP_PADDR);

        n = load_le32(si + HVM_NR_MODULES);
        if (n) {
                uint64_t ml = load_le64(si + HVM_MODLIST_PADDR);

                if (!mapped(ml, 32)) {
                        info.error = "hvm_start_info modlist above 4 GiB";
                        return;
                }
                info.has_initrd = true;
                info.initrd_addr = load_le64(phys(ml) + HVM_MODLIST_PADDR_OFF);
                info.initrd_size = load_le64(phys(ml) + HVM_MODLIST_SIZE_OFF);
        }

        /* memmap_paddr and memmap_entries exist from version 1 on. */
        if (version >= 1) {
                uint64_t mm = load_le64(si + HVM_MEMMAP_PADDR);

                n = load_le32(si + HVM_MEMMAP_ENTRIES);
                if (!mapped(mm, (uint64_t)n * HVM_MEMMAP_ENTRY_SIZE)) {
                        info.error = "hvm_start_info memmap above 4 GiB";
                        return;
                }
                copy_memmap(phys(mm), n, HVM_MEMMAP_ENTRY_SIZE);
        }
}

static void parse_boot_params(uint64_t addr)
{
        const uint8_t *bp = phys(addr);
        uint64_t cmdline, image, size;

        if (!mapped(addr, 4096)) {
                info.error = "boot_params above 4 GiB";
                return;
        }
        cmdline = load_le32(bp + BP_CMD_LINE_PTR) | (uint64_t)load_le32(bp + BP_EXT_CMD_LINE_PTR)
                                                        << 32;
        copy_cmdline(cmdline);
        info.rsdp_addr = load_le64(bp + BP_ACPI_RSDP_ADDR);

        image = load_le32(bp + BP_RAMDISK_IMAGE) | (uint64_t)load_le32(bp + BP_EXT_RAMDISK_IMAGE)
                                                       << 32;
        size = load_le32(bp + BP_RAMDISK_SIZE) | (uint64_t)load_le32(bp + BP_EXT_RAMDISK_SIZE)
                                                     << 32;
        /* As in Linux, a zero size means no initrd. */
        if (size) {
                info.has_initrd = true;
                info.initrd_addr = image;
                info.initrd_size = size;
        }

        /* The zero page has 128 slots; a larger count is reported, never read past. */
        copy_memmap(bp + BP_E820_TABLE, bp[BP_E820_ENTRIES], BP_E820_ENTRY_SIZE);
}

const struct boot_info *bootinfo_parse(unsigned path, uint64_t addr)
{
        memset(&info, 0, sizeof(info));
        info.path = path;
        info.info_addr = addr;
        info.cmdline_terminated = true;
        if (path == BOOT_PATH_PVH)
                parse_pvh(addr);
        else
                parse_boot_params(addr);
        return &info;
}

const struct boot_info *bootinfo_get(void)
{
        return &info;
}

const char *bootinfo_path_name(unsigned path)
{
        switch (path) {
        case BOOT_PATH_PVH:
                return "pvh";
        case BOOT_PATH_LINUX64:
                return "linux64";
        case BOOT_PATH_LINUX32:
                return "linux32";
        default:
                return "unknown";
        }
}

bool bootinfo_mem_is(const struct boot_info *bi, uint64_t addr, uint64_t size, uint32_t type)
{
        unsigned n = bi->memmap_count < BOOT_MEMMAP_MAX ? bi->memmap_count : BOOT_MEMMAP_MAX;
        bool progress = true;

        /* Entries need not be sorted here: keep extending the covered prefix until no entry
         * extends it. At most n passes. */
        while (size && progress) {
                progress = false;
                for (unsigned i = 0; i < n && size; i++) {
                        const struct boot_mem_range *r = &bi->memmap[i];
                        uint64_t covered;

                        if (r->type != type || addr < r->addr || addr - r->addr >= r->size)
                                continue;
                        covered = r->size - (addr - r->addr);
                        if (covered >= size)
                                return true;
                        addr += covered;
                        size -= covered;
                        progress = true;
                }
        }
        return size == 0;
}

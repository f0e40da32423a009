/*
 * x86 boot structures: the e820 map, the Linux zero page (boot_params), the PVH
 * hvm_start_info with its memmap and modlist, the boot GDT/IDT, identity page tables and the
 * command line, read back from guest memory at the offsets of the Linux and Xen ABIs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#include "fakes.h"

#define POISON  0xaa
#define CMDLINE "console=ttyS0 reboot=k panic=1"
#define RSDP    0xe0000ull
#define RD_ADDR 0x7000000ull
#define RD_SIZE 0x123456ull

/* 128 MiB with the low MiB poisoned, so zeroes written by the code are visible. */
static int setup(void **state)
{
        struct guest_mem *mem = test_mem_new(MiB(128), X86_MMIO_HOLE_START, X86_MMIO_HOLE_END);

        assert_int_equal(guest_mem_fill(mem, 0, POISON, MiB(1)), 0);
        *state = mem;
        return 0;
}

static int teardown(void **state)
{
        guest_mem_destroy(*state);
        return 0;
}

static const uint8_t *at(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const uint8_t *p = guest_mem_translate(mem, gpa, len);

        assert_non_null(p);
        return p;
}

static uint64_t rd64(const struct guest_mem *mem, gpa_t gpa)
{
        return get_le64(at(mem, gpa, 8));
}

static uint32_t rd32(const struct guest_mem *mem, gpa_t gpa)
{
        return get_le32(at(mem, gpa, 4));
}

static uint16_t rd16(const struct guest_mem *mem, gpa_t gpa)
{
        return get_le16(at(mem, gpa, 2));
}

static uint8_t rd8(const struct guest_mem *mem, gpa_t gpa)
{
        return *at(mem, gpa, 1);
}

static bool poisoned(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const uint8_t *p = at(mem, gpa, len);

        for (uint64_t i = 0; i < len; i++)
                if (p[i] != POISON)
                        return false;
        return true;
}

static struct x86_kernel elf_kernel(enum x86_boot_protocol proto)
{
        struct x86_kernel k;

        memset(&k, 0, sizeof(k));
        k.format = X86_KERNEL_ELF;
        k.protocol = proto;
        k.entry = 0x1000000;
        k.load_start = 0x1000000;
        k.load_end = 0x2000000;
        k.initrd_addr_max = UINT64_MAX;
        k.cmdline_max = X86_CMDLINE_MAX;
        return k;
}

/* ---- e820 ---- */

static void expect_e820(const struct x86_e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
        if (e->addr != addr || e->size != size || e->type != type)
                fail_msg("e820 entry {0x%llx, 0x%llx, %u}, expected {0x%llx, 0x%llx, %u}",
                         (unsigned long long)e->addr, (unsigned long long)e->size, e->type,
                         (unsigned long long)addr, (unsigned long long)size, type);
}

static void test_e820_128m(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_e820_entry e[X86_E820_MAX];

        assert_int_equal(x86_e820_build(mem, e, X86_E820_MAX), 3);
        expect_e820(&e[0], 0, 0x9fc00, X86_E820_RAM);
        expect_e820(&e[1], 0x9fc00, 0x100000 - 0x9fc00, X86_E820_RESERVED);
        expect_e820(&e[2], 0x100000, MiB(128) - 0x100000, X86_E820_RAM);
}

static void test_e820_ram_above_hole(void **state)
{
        (void)state;
        /* 96 MiB with a hole at [64 MiB, 128 MiB): the last 32 MiB move above it. */
        struct guest_mem *mem = test_mem_new(MiB(96), MiB(64), MiB(128));
        struct x86_e820_entry e[X86_E820_MAX];

        assert_int_equal(x86_e820_build(mem, e, X86_E820_MAX), 4);
        expect_e820(&e[0], 0, 0x9fc00, X86_E820_RAM);
        expect_e820(&e[1], 0x9fc00, 0x100000 - 0x9fc00, X86_E820_RESERVED);
        expect_e820(&e[2], 0x100000, MiB(64) - 0x100000, X86_E820_RAM);
        expect_e820(&e[3], MiB(128), MiB(32), X86_E820_RAM);
        guest_mem_destroy(mem);
}

static void test_e820_real_hole(void **state)
{
        (void)state;
        /* 3 GiB + 16 MiB, never touched: RAM up to the hole and 16 MiB above 4 GiB. */
        struct guest_mem *mem =
            test_mem_new(X86_MMIO_HOLE_START + MiB(16), X86_MMIO_HOLE_START, X86_MMIO_HOLE_END);
        struct x86_e820_entry e[X86_E820_MAX];

        assert_int_equal(x86_e820_build(mem, e, X86_E820_MAX), 4);
        expect_e820(&e[2], 0x100000, X86_MMIO_HOLE_START - 0x100000, X86_E820_RAM);
        expect_e820(&e[3], X86_MMIO_HOLE_END, MiB(16), X86_E820_RAM);
        guest_mem_destroy(mem);
}

static void test_e820_capacity(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_e820_entry e[3];

        memset(e, 0xee, sizeof(e));
        assert_int_equal(x86_e820_build(mem, e, 2), 2);
        expect_e820(&e[0], 0, 0x9fc00, X86_E820_RAM);
        expect_e820(&e[1], 0x9fc00, 0x100000 - 0x9fc00, X86_E820_RESERVED);
        assert_int_equal(e[2].type, 0xeeeeeeee); /* not written past the capacity */
}

/* ---- shared structures ---- */

static void check_page_tables(const struct guest_mem *mem)
{
        /* PML4[0] -> PDPT at 0xa000, PDPT[0] -> PD at 0xb000, present and writable. */
        assert_int_equal(rd64(mem, X86_PML4_ADDR), X86_PDPTE_ADDR | 0x3);
        assert_int_equal(rd64(mem, X86_PDPTE_ADDR), X86_PDE_ADDR | 0x3);
        for (unsigned i = 1; i < 512; i++) {
                assert_int_equal(rd64(mem, X86_PML4_ADDR + i * 8), 0);
                assert_int_equal(rd64(mem, X86_PDPTE_ADDR + i * 8), 0);
        }
        /* 512 2 MiB pages: identity map of the first GiB (present, writable, PS). */
        for (uint64_t i = 0; i < 512; i++)
                assert_int_equal(rd64(mem, X86_PDE_ADDR + i * 8), (i << 21) | 0x83);
}

static void check_gdt(const struct guest_mem *mem, uint64_t code)
{
        uint64_t gdt[X86_GDT_ENTRIES];

        assert_int_equal(rd64(mem, X86_BOOT_GDT_ADDR), 0);
        assert_int_equal(rd64(mem, X86_BOOT_GDT_ADDR + X86_GDT_CODE_SEL), code);
        assert_int_equal(rd64(mem, X86_BOOT_GDT_ADDR + X86_GDT_DATA_SEL), 0x00cf93000000ffffull);
        /* The table in memory is the one the vCPU setup code uses. */
        x86_boot_gdt(code == 0x00cf9b000000ffffull ? X86_BOOT_PVH : X86_BOOT_LINUX64, gdt);
        for (unsigned i = 0; i < X86_GDT_ENTRIES; i++)
                assert_int_equal(rd64(mem, X86_BOOT_GDT_ADDR + i * 8), gdt[i]);
        /* An empty IDT: any exception before the kernel sets its own is a triple fault. */
        assert_int_equal(rd64(mem, X86_BOOT_IDT_ADDR), 0);
}

static void check_cmdline(const struct guest_mem *mem, const char *cmdline)
{
        size_t n = strlen(cmdline) + 1;

        assert_memory_equal(at(mem, X86_CMDLINE_ADDR, n), cmdline, n);
}

static void write_ok(struct guest_mem *mem, const struct x86_boot_args *args)
{
        struct error err = {0};
        int r = x86_boot_write(mem, args, &err);

        if (r)
                fail_msg("x86_boot_write: %d %s", r, err.msg);
}

/* ---- Linux 64-bit boot protocol ---- */

static void test_linux64_zero_page(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        struct x86_boot_args args = {.kernel = &k,
                                     .cmdline = CMDLINE,
                                     .initrd_addr = RD_ADDR,
                                     .initrd_size = RD_SIZE,
                                     .rsdp = RSDP};
        struct x86_e820_entry e[X86_E820_MAX];
        const gpa_t zp = X86_ZERO_PAGE_ADDR;
        size_t n;

        write_ok(mem, &args);
        assert_int_equal(rd64(mem, zp + 0x070), RSDP);   /* acpi_rsdp_addr */
        assert_int_equal(rd16(mem, zp + 0x1fe), 0xaa55); /* boot_flag */
        assert_memory_equal(at(mem, zp + 0x202, 4), "HdrS", 4);
        assert_int_equal(rd8(mem, zp + 0x210), 0xff);              /* type_of_loader */
        assert_int_equal(rd32(mem, zp + 0x218), RD_ADDR);          /* ramdisk_image */
        assert_int_equal(rd32(mem, zp + 0x21c), RD_SIZE);          /* ramdisk_size */
        assert_int_equal(rd32(mem, zp + 0x0c0), 0);                /* ext_ramdisk_image */
        assert_int_equal(rd32(mem, zp + 0x228), X86_CMDLINE_ADDR); /* cmd_line_ptr */
        assert_int_equal(rd32(mem, zp + 0x0c8), 0);                /* ext_cmd_line_ptr */
        assert_int_equal(rd32(mem, zp + 0x238), strlen(CMDLINE));  /* cmdline_size */

        /* e820: count at 0x1e8, 20-byte entries at 0x2d0, equal to x86_e820_build's. */
        n = x86_e820_build(mem, e, X86_E820_MAX);
        assert_int_equal(rd8(mem, zp + 0x1e8), n);
        for (size_t i = 0; i < n; i++) {
                gpa_t ent = zp + 0x2d0 + i * 20;
                assert_int_equal(rd64(mem, ent), e[i].addr);
                assert_int_equal(rd64(mem, ent + 8), e[i].size);
                assert_int_equal(rd32(mem, ent + 16), e[i].type);
        }
        /* The rest of the page is cleared (no stale bytes for the kernel to misread). */
        assert_int_equal(rd64(mem, zp + 0x2d0 + n * 20), 0);
        assert_int_equal(rd64(mem, zp + 0x0), 0);
        assert_int_equal(rd64(mem, zp + 0xff8), 0);

        check_cmdline(mem, CMDLINE);
        check_gdt(mem, 0x00af9b000000ffffull);
        check_page_tables(mem);
        /* No PVH start info for a Linux-protocol kernel. */
        assert_true(poisoned(mem, X86_PVH_INFO_ADDR, 0x100));
}

static void test_linux64_without_initrd_or_acpi(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        struct x86_boot_args args = {.kernel = &k, .cmdline = ""};
        const gpa_t zp = X86_ZERO_PAGE_ADDR;

        write_ok(mem, &args);
        assert_int_equal(rd32(mem, zp + 0x218), 0);
        assert_int_equal(rd32(mem, zp + 0x21c), 0);
        assert_int_equal(rd64(mem, zp + 0x070), 0);
        assert_int_equal(rd32(mem, zp + 0x238), 0);
        assert_int_equal(rd8(mem, X86_CMDLINE_ADDR), 0);
}

static void test_bzimage_zero_page_has_setup_header(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        struct x86_boot_args args = {.kernel = &k, .cmdline = CMDLINE, .rsdp = RSDP};
        const gpa_t zp = X86_ZERO_PAGE_ADDR;

        k.format = X86_KERNEL_BZIMAGE;
        k.cmdline_max = 256;
        k.protocol_version = 0x020f;
        k.setup_header_len = 0x268 - 0x1f1;
        for (unsigned i = 0; i < k.setup_header_len; i++)
                k.setup_header[i] = (uint8_t)(0x30 + i);
        put_le16(k.setup_header + (0x1fe - 0x1f1), 0xaa55);
        /* Stale ramdisk fields in the image must not reach a kernel booted without initrd. */
        put_le32(k.setup_header + (0x218 - 0x1f1), 0x12345678);
        put_le32(k.setup_header + (0x21c - 0x1f1), 0x1000);
        memcpy(k.setup_header + (0x202 - 0x1f1), "HdrS", 4);

        write_ok(mem, &args);
        /* The header as the loader left it, except the fields the boot loader fills. */
        assert_memory_equal(at(mem, zp + 0x1f1, 0x210 - 0x1f1), k.setup_header, 0x210 - 0x1f1);
        assert_int_equal(rd8(mem, zp + 0x210), 0xff);
        assert_int_equal(rd8(mem, zp + 0x211), k.setup_header[0x211 - 0x1f1]);
        assert_memory_equal(at(mem, zp + 0x22c, 0x238 - 0x22c), k.setup_header + (0x22c - 0x1f1),
                            0x238 - 0x22c);
        assert_int_equal(rd32(mem, zp + 0x218), 0);
        assert_int_equal(rd32(mem, zp + 0x21c), 0);
        assert_int_equal(rd32(mem, zp + 0x228), X86_CMDLINE_ADDR);
        assert_int_equal(rd32(mem, zp + 0x238), strlen(CMDLINE));
        assert_memory_equal(at(mem, zp + 0x23c, 0x268 - 0x23c), k.setup_header + (0x23c - 0x1f1),
                            0x268 - 0x23c);
        assert_int_equal(rd64(mem, zp + 0x070), RSDP);
        assert_int_equal(rd8(mem, zp + 0x1e8), 3);
        check_gdt(mem, 0x00af9b000000ffffull);
}

/* ---- PVH ---- */

static void test_pvh_start_info(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_PVH);
        struct x86_boot_args args = {.kernel = &k,
                                     .cmdline = CMDLINE,
                                     .initrd_addr = RD_ADDR,
                                     .initrd_size = RD_SIZE,
                                     .rsdp = RSDP};
        struct x86_e820_entry e[X86_E820_MAX];
        const gpa_t si = X86_PVH_INFO_ADDR;
        uint64_t memmap, modlist;
        uint32_t entries;
        size_t n;

        write_ok(mem, &args);
        assert_int_equal(rd32(mem, si + 0), 0x336ec578); /* magic */
        assert_int_equal(rd32(mem, si + 4), 1);          /* version */
        assert_int_equal(rd32(mem, si + 8), 0);          /* flags */
        assert_int_equal(rd32(mem, si + 12), 1);         /* nr_modules */
        modlist = rd64(mem, si + 16);
        assert_int_equal(rd64(mem, si + 24), X86_CMDLINE_ADDR); /* cmdline_paddr */
        assert_int_equal(rd64(mem, si + 32), RSDP);             /* rsdp_paddr */
        memmap = rd64(mem, si + 40);
        entries = rd32(mem, si + 48);

        n = x86_e820_build(mem, e, X86_E820_MAX);
        assert_int_equal(entries, n);
        for (size_t i = 0; i < n; i++) {
                gpa_t ent = memmap + i * 24;
                assert_int_equal(rd64(mem, ent), e[i].addr);
                assert_int_equal(rd64(mem, ent + 8), e[i].size);
                assert_int_equal(rd32(mem, ent + 16), e[i].type);
                assert_int_equal(rd32(mem, ent + 20), 0); /* reserved */
        }
        /* hvm_modlist_entry {paddr, size, cmdline_paddr, reserved}. */
        assert_int_equal(rd64(mem, modlist), RD_ADDR);
        assert_int_equal(rd64(mem, modlist + 8), RD_SIZE);
        assert_int_equal(rd64(mem, modlist + 16), 0);
        assert_int_equal(rd64(mem, modlist + 24), 0);

        /* Start info, memmap and modlist are disjoint and below the zero page / stack. */
        assert_true(memmap >= si + 56);
        assert_true(modlist >= si + 56);
        assert_true(memmap + n * 24 <= modlist || modlist + 32 <= memmap);
        assert_true(memmap + n * 24 <= X86_ZERO_PAGE_ADDR);
        assert_true(modlist + 32 <= X86_ZERO_PAGE_ADDR);

        check_cmdline(mem, CMDLINE);
        check_gdt(mem, 0x00cf9b000000ffffull);
        /* No zero page for a PVH kernel. */
        assert_true(poisoned(mem, X86_ZERO_PAGE_ADDR, 0x1000));
}

static void test_pvh_without_initrd(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_PVH);
        struct x86_boot_args args = {.kernel = &k, .cmdline = CMDLINE};
        const gpa_t si = X86_PVH_INFO_ADDR;

        write_ok(mem, &args);
        assert_int_equal(rd32(mem, si + 0), 0x336ec578);
        assert_int_equal(rd32(mem, si + 12), 0);
        assert_int_equal(rd64(mem, si + 16), 0);
        assert_int_equal(rd64(mem, si + 32), 0);
        assert_int_equal(rd32(mem, si + 48), 3);
}

/* ---- command line ---- */

static char *make_cmdline(size_t len)
{
        char *s = malloc(len + 1);

        assert_non_null(s);
        memset(s, 'x', len);
        s[len] = '\0';
        return s;
}

static void test_cmdline_check_limits(void **state)
{
        (void)state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        char *ok = make_cmdline(2047), *bad = make_cmdline(2048);
        struct error err = {0};

        assert_int_equal(x86_cmdline_check(&k, ok, &err), 0);
        assert_int_equal(x86_cmdline_check(NULL, ok, &err), 0);
        assert_int_equal(err.code, 0);
        assert_true(x86_cmdline_check(&k, bad, &err) < 0);
        assert_non_null(strstr(err.msg, "command line"));
        assert_non_null(strstr(err.msg, "2048"));
        assert_non_null(strstr(err.msg, "2047"));
        error_clear(&err);
        assert_true(x86_cmdline_check(NULL, bad, &err) < 0);
        assert_true(err.msg[0] != '\0');
        free(ok);
        free(bad);
}

static void test_cmdline_check_bzimage_limit(void **state)
{
        (void)state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        char *ok = make_cmdline(255), *bad = make_cmdline(256);
        struct error err = {0};

        k.format = X86_KERNEL_BZIMAGE;
        k.cmdline_max = 256; /* cmdline_size 255 in the setup header */
        assert_int_equal(x86_cmdline_check(&k, ok, &err), 0);
        assert_true(x86_cmdline_check(&k, bad, &err) < 0);
        assert_non_null(strstr(err.msg, "256"));
        assert_non_null(strstr(err.msg, "255"));
        free(ok);
        free(bad);
}

static void test_boot_write_refuses_long_cmdline(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        char *bad = make_cmdline(2048);
        struct x86_boot_args args = {.kernel = &k, .cmdline = bad};
        struct error err = {0};

        assert_true(x86_boot_write(mem, &args, &err) < 0);
        assert_non_null(strstr(err.msg, "command line"));
        /* Nothing written. */
        assert_true(poisoned(mem, 0, MiB(1)));
        free(bad);
}

static void test_boot_write_needs_1m_of_ram(void **state)
{
        (void)state;
        struct guest_mem *mem = test_mem_new(KiB(512), X86_MMIO_HOLE_START, X86_MMIO_HOLE_END);
        struct x86_kernel k = elf_kernel(X86_BOOT_LINUX64);
        struct x86_boot_args args = {.kernel = &k, .cmdline = CMDLINE};
        struct error err = {0};

        assert_true(x86_boot_write(mem, &args, &err) < 0);
        assert_non_null(strstr(err.msg, "1 MiB"));
        guest_mem_destroy(mem);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_e820_128m),
            T(test_e820_ram_above_hole),
            T(test_e820_real_hole),
            T(test_e820_capacity),
            T(test_linux64_zero_page),
            T(test_linux64_without_initrd_or_acpi),
            T(test_bzimage_zero_page_has_setup_header),
            T(test_pvh_start_info),
            T(test_pvh_without_initrd),
            T(test_cmdline_check_limits),
            T(test_cmdline_check_bzimage_limit),
            T(test_boot_write_refuses_long_cmdline),
            T(test_boot_write_needs_1m_of_ram),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

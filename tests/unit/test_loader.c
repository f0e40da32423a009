/*
 * Kernel and initrd loaders on images synthesised in memory: ELF vmlinux with and without the
 * Xen PVH note, bzImage setup headers with chosen fields, and a table of malformed images.
 * Every refusal must be a negative errno with a message naming the problem, and must leave
 * guest memory exactly as it was (nothing is written before validation completes).
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "arch/x86/loader.h"

#define RAM_SIZE  MiB(8)
#define POISON    0xaa
#define KBASE     0x100000ull /* 1 MiB */
#define SEG_OFF   0x1000ull   /* file offset of the first segment */
#define SEG_FILE  0x800ull
#define SEG_MEM   0x1000ull
#define IMG_LEN   0x2000ull
#define NOTE_OFF  0x1c00ull
#define PVH_ENTRY 0x100400ull

/* ---- guest memory ---- */

static struct guest_mem *mem_new(void)
{
        struct guest_mem_spec spec = {
            .size = RAM_SIZE, .hole_start = X86_MMIO_HOLE_START, .hole_end = X86_MMIO_HOLE_END};
        struct error err = {0};
        struct guest_mem *mem = NULL;

        if (guest_mem_create(&spec, &err, &mem))
                fail_msg("guest_mem_create: %s", err.msg);
        assert_int_equal(guest_mem_fill(mem, 0, POISON, RAM_SIZE), 0);
        return mem;
}

static int setup(void **state)
{
        *state = mem_new();
        return 0;
}

static int teardown(void **state)
{
        guest_mem_destroy(*state);
        return 0;
}

/* True when [gpa, gpa+len) still holds the poison pattern. */
static bool poisoned(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const uint8_t *p = guest_mem_translate(mem, gpa, len);

        assert_non_null(p);
        for (uint64_t i = 0; i < len; i++)
                if (p[i] != POISON)
                        return false;
        return true;
}

static void assert_untouched(const struct guest_mem *mem)
{
        if (!poisoned(mem, 0, RAM_SIZE))
                fail_msg("guest memory was modified by a refused load");
}

static bool all_zero(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const uint8_t *p = guest_mem_translate(mem, gpa, len);

        assert_non_null(p);
        for (uint64_t i = 0; i < len; i++)
                if (p[i])
                        return false;
        return true;
}

/* ---- image synthesis ---- */

struct image {
        uint8_t *buf;
        size_t len;
};

static void image_alloc(struct image *im, size_t len)
{
        im->buf = calloc(1, len ? len : 1);
        assert_non_null(im->buf);
        im->len = len;
}

static void image_free(struct image *im)
{
        free(im->buf);
        im->buf = NULL;
}

static Elf64_Ehdr *ehdr(struct image *im)
{
        return (Elf64_Ehdr *)im->buf;
}

static void elf_init(struct image *im, size_t len, uint64_t entry)
{
        Elf64_Ehdr *eh;

        image_alloc(im, len);
        eh = ehdr(im);
        memcpy(eh->e_ident, ELFMAG, SELFMAG);
        eh->e_ident[EI_CLASS] = ELFCLASS64;
        eh->e_ident[EI_DATA] = ELFDATA2LSB;
        eh->e_ident[EI_VERSION] = EV_CURRENT;
        eh->e_type = ET_EXEC;
        eh->e_machine = EM_X86_64;
        eh->e_version = EV_CURRENT;
        eh->e_entry = entry;
        eh->e_phoff = sizeof(Elf64_Ehdr);
        eh->e_ehsize = sizeof(Elf64_Ehdr);
        eh->e_phentsize = sizeof(Elf64_Phdr);
        eh->e_phnum = 0;
}

static Elf64_Phdr *phdr(struct image *im, unsigned i)
{
        return (Elf64_Phdr *)(im->buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static Elf64_Phdr *elf_add_phdr(struct image *im, uint32_t type, uint64_t offset, uint64_t paddr,
                                uint64_t filesz, uint64_t memsz)
{
        Elf64_Phdr *ph = phdr(im, ehdr(im)->e_phnum++);

        ph->p_type = type;
        ph->p_flags = PF_R | PF_X;
        ph->p_offset = offset;
        ph->p_vaddr = 0xffffffff80000000ull + paddr;
        ph->p_paddr = paddr;
        ph->p_filesz = filesz;
        ph->p_memsz = memsz;
        ph->p_align = 0x1000;
        return ph;
}

static uint8_t pattern(uint64_t i)
{
        return (uint8_t)(i * 7 + 3) | 1; /* never 0, never the poison */
}

static void fill_pattern(struct image *im, uint64_t off, uint64_t len)
{
        for (uint64_t i = 0; i < len; i++)
                im->buf[off + i] = pattern(i);
}

/* Writes one ELF note at `off`; returns its size. */
static size_t put_note(struct image *im, size_t off, const char *name, uint32_t type,
                       const void *desc, uint32_t descsz)
{
        uint32_t namesz = (uint32_t)strlen(name) + 1;
        size_t name_pad = (namesz + 3) & ~3u, desc_pad = (descsz + 3) & ~3u;

        memcpy(im->buf + off, &namesz, 4);
        memcpy(im->buf + off + 4, &descsz, 4);
        memcpy(im->buf + off + 8, &type, 4);
        memcpy(im->buf + off + 12, name, namesz);
        memcpy(im->buf + off + 12 + name_pad, desc, descsz);
        return 12 + name_pad + desc_pad;
}

/* Adds the XEN_ELFNOTE_PHYS32_ENTRY note (name "Xen", type 18) in a PT_NOTE segment. */
static Elf64_Phdr *elf_add_pvh_note(struct image *im, uint64_t entry, uint32_t descsz)
{
        uint8_t desc[8];
        size_t n;

        memcpy(desc, &entry, 8);
        n = put_note(im, NOTE_OFF, "Xen", 18, desc, descsz);
        return elf_add_phdr(im, PT_NOTE, NOTE_OFF, 0, n, 0);
}

/* A minimal vmlinux: one PT_LOAD at 1 MiB with 0x800 bytes of data and 0x800 of bss. */
static void valid_elf(struct image *im)
{
        elf_init(im, IMG_LEN, KBASE);
        elf_add_phdr(im, PT_LOAD, SEG_OFF, KBASE, SEG_FILE, SEG_MEM);
        fill_pattern(im, SEG_OFF, SEG_FILE);
}

static void valid_pvh_elf(struct image *im)
{
        valid_elf(im);
        elf_add_pvh_note(im, PVH_ENTRY, 4);
}

/* bzImage: 4 setup sectors, header through 0x268, protocol 2.15, 64-bit, loaded high. */
#define BZ_SETUP_SECTS  4
#define BZ_SETUP_LEN    ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD      0x2000
#define BZ_INIT_SIZE    0x8000
#define BZ_HDR_END      0x268
#define BZ_INITRD_MAX   0x37ffffff
#define BZ_CMDLINE_SIZE 1023

static void put16(struct image *im, size_t off, uint16_t v)
{
        memcpy(im->buf + off, &v, 2);
}

static void put32(struct image *im, size_t off, uint32_t v)
{
        memcpy(im->buf + off, &v, 4);
}

static void bz_build(struct image *im, uint8_t setup_sects, size_t setup_len, size_t payload)
{
        image_alloc(im, setup_len + payload);
        memset(im->buf, 0x90, setup_len); /* setup code that must not be loaded */
        im->buf[0x1f1] = setup_sects;
        put16(im, 0x1fe, 0xaa55);
        im->buf[0x200] = 0xeb; /* jmp short over the header */
        im->buf[0x201] = BZ_HDR_END - 0x202;
        memcpy(im->buf + 0x202, "HdrS", 4);
        put16(im, 0x206, 0x020f);
        im->buf[0x210] = 0;                /* type_of_loader */
        im->buf[0x211] = 0x01;             /* LOADED_HIGH */
        put32(im, 0x214, 0x12345678);      /* code32_start, to be rewritten */
        put32(im, 0x22c, BZ_INITRD_MAX);   /* initrd_addr_max */
        put32(im, 0x230, 0x200000);        /* kernel_alignment */
        im->buf[0x234] = 1;                /* relocatable */
        put16(im, 0x236, 0x0001);          /* XLF_KERNEL_64 */
        put32(im, 0x238, BZ_CMDLINE_SIZE); /* cmdline_size */
        put32(im, 0x260, BZ_INIT_SIZE);    /* init_size */
        put32(im, 0x264, 0x190);           /* handover_offset */
        fill_pattern(im, setup_len, payload);
}

static void valid_bz(struct image *im)
{
        bz_build(im, BZ_SETUP_SECTS, BZ_SETUP_LEN, BZ_PAYLOAD);
}

/* ---- successful loads ---- */

static void load_ok(struct guest_mem *mem, struct image *im, struct x86_kernel *k)
{
        struct error err = {0};
        int r = x86_kernel_load(mem, im->buf, im->len, k, &err);

        if (r)
                fail_msg("x86_kernel_load: %d %s", r, err.msg);
        assert_int_equal(err.code, 0);
}

static void assert_segment_loaded(struct guest_mem *mem)
{
        const uint8_t *p = guest_mem_translate(mem, KBASE, SEG_MEM);

        assert_non_null(p);
        for (uint64_t i = 0; i < SEG_FILE; i++)
                if (p[i] != pattern(i))
                        fail_msg("segment byte 0x%llx wrong", (unsigned long long)i);
        assert_true(all_zero(mem, KBASE + SEG_FILE, SEG_MEM - SEG_FILE)); /* bss */
        /* Nothing outside the segment. */
        assert_true(poisoned(mem, 0, KBASE));
        assert_true(poisoned(mem, KBASE + SEG_MEM, RAM_SIZE - KBASE - SEG_MEM));
}

static void test_elf_linux64(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;

        valid_elf(&im);
        load_ok(mem, &im, &k);
        assert_int_equal(k.format, X86_KERNEL_ELF);
        assert_int_equal(k.protocol, X86_BOOT_LINUX64);
        assert_int_equal(k.entry, KBASE);
        assert_int_equal(k.load_start, KBASE);
        assert_int_equal(k.load_end, KBASE + SEG_MEM);
        assert_int_equal(k.cmdline_max, X86_CMDLINE_MAX);
        assert_segment_loaded(mem);
        image_free(&im);
}

static void test_elf_pvh_note_4_bytes(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;

        valid_pvh_elf(&im);
        load_ok(mem, &im, &k);
        assert_int_equal(k.format, X86_KERNEL_ELF);
        assert_int_equal(k.protocol, X86_BOOT_PVH);
        assert_int_equal(k.entry, PVH_ENTRY); /* the note's entry, not e_entry */
        assert_segment_loaded(mem);
        image_free(&im);
}

static void test_elf_pvh_note_8_bytes_after_other_notes(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;
        const uint64_t entry = KBASE + 0x10;
        const uint32_t gnu_desc[4] = {0, 5, 10, 0};
        const uint32_t other_xen = 0xdeadbeef;
        size_t off = NOTE_OFF;

        valid_elf(&im);
        /* A GNU ABI note and another Xen note precede the PVH entry note. */
        off += put_note(&im, off, "GNU", 1, gnu_desc, sizeof(gnu_desc));
        off += put_note(&im, off, "Xen", 6, &other_xen, 4);
        off += put_note(&im, off, "Xen", 18, &entry, 8);
        elf_add_phdr(&im, PT_NOTE, NOTE_OFF, 0, off - NOTE_OFF, 0);
        load_ok(mem, &im, &k);
        assert_int_equal(k.protocol, X86_BOOT_PVH);
        assert_int_equal(k.entry, entry);
        image_free(&im);
}

static void test_elf_two_segments(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;

        valid_elf(&im);
        /* A second segment at 2 MiB reusing the same file bytes, no bss; and an empty one. */
        elf_add_phdr(&im, PT_LOAD, SEG_OFF, MiB(2), 0x100, 0x100);
        elf_add_phdr(&im, PT_LOAD, 0, MiB(6), 0, 0);
        load_ok(mem, &im, &k);
        assert_int_equal(k.load_start, KBASE);
        assert_int_equal(k.load_end, MiB(2) + 0x100);
        assert_memory_equal(guest_mem_translate(mem, MiB(2), 0x100), im.buf + SEG_OFF, 0x100);
        assert_true(poisoned(mem, MiB(2) + 0x100, 0x100));
        assert_true(poisoned(mem, MiB(6), 0x1000));
        image_free(&im);
}

static void test_bzimage(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;
        uint32_t code32;

        valid_bz(&im);
        load_ok(mem, &im, &k);
        assert_int_equal(k.format, X86_KERNEL_BZIMAGE);
        assert_int_equal(k.protocol, X86_BOOT_LINUX64);
        assert_int_equal(k.entry, 0x100200);
        assert_int_equal(k.protocol_version, 0x020f);
        assert_int_equal(k.load_start, KBASE);
        assert_int_equal(k.load_end, KBASE + BZ_INIT_SIZE);
        assert_int_equal(k.initrd_addr_max, BZ_INITRD_MAX);
        assert_int_equal(k.cmdline_max, BZ_CMDLINE_SIZE + 1);

        /* The payload (not the setup code) at 1 MiB; init_size beyond it zeroed. */
        assert_memory_equal(guest_mem_translate(mem, KBASE, BZ_PAYLOAD), im.buf + BZ_SETUP_LEN,
                            BZ_PAYLOAD);
        assert_true(all_zero(mem, KBASE + BZ_PAYLOAD, BZ_INIT_SIZE - BZ_PAYLOAD));
        assert_true(poisoned(mem, KBASE + BZ_INIT_SIZE, 0x1000));
        assert_true(poisoned(mem, 0, KBASE));

        /* The setup header through its end (0x202 + byte at 0x201), code32_start rewritten. */
        assert_int_equal(k.setup_header_len, BZ_HDR_END - 0x1f1);
        assert_memory_equal(k.setup_header, im.buf + 0x1f1, 0x214 - 0x1f1);
        memcpy(&code32, k.setup_header + (0x214 - 0x1f1), 4);
        assert_int_equal(code32, 0x100000);
        assert_memory_equal(k.setup_header + (0x218 - 0x1f1), im.buf + 0x218, BZ_HDR_END - 0x218);
        image_free(&im);
}

static void test_bzimage_setup_sects_zero_means_four(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;

        bz_build(&im, 0, 5 * 512, BZ_PAYLOAD);
        load_ok(mem, &im, &k);
        assert_memory_equal(guest_mem_translate(mem, KBASE, BZ_PAYLOAD), im.buf + 5 * 512,
                            BZ_PAYLOAD);
        image_free(&im);
}

static void test_bzimage_payload_larger_than_init_size(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;

        bz_build(&im, BZ_SETUP_SECTS, BZ_SETUP_LEN, 0x10000);
        put32(&im, 0x260, 0x1000);
        load_ok(mem, &im, &k);
        assert_int_equal(k.load_end, KBASE + 0x10000);
        assert_memory_equal(guest_mem_translate(mem, KBASE, 0x10000), im.buf + BZ_SETUP_LEN,
                            0x10000);
        image_free(&im);
}

/* ---- refused images ---- */

struct bad_case {
        const char *name;
        void (*build)(struct image *im);
        const char *needle1, *needle2;
};

static void bad_empty(struct image *im)
{
        image_alloc(im, 0);
}

static void bad_random(struct image *im)
{
        uint32_t x = 0x12345678;

        image_alloc(im, 4096);
        for (size_t i = 0; i < im->len; i++) {
                x = x * 1103515245u + 12345u;
                im->buf[i] = (uint8_t)(x >> 16);
        }
        im->buf[0] = 0x4d; /* neither 0x7f 'E' nor a boot sector with "HdrS" */
}

static void bad_truncated_ehdr(struct image *im)
{
        valid_elf(im);
        im->len = sizeof(Elf64_Ehdr) - 1;
}

static void bad_elf32(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_ident[EI_CLASS] = ELFCLASS32;
}

static void bad_big_endian(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_ident[EI_DATA] = ELFDATA2MSB;
}

static void bad_machine(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_machine = EM_AARCH64;
}

static void bad_et_dyn(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_type = ET_DYN;
}

static void bad_phentsize(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_phentsize = sizeof(Elf32_Phdr);
}

static void bad_phnum_zero(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_phnum = 0;
}

static void bad_phnum_absurd(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_phnum = 65535;
}

static void bad_phoff_past_eof(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_phoff = IMG_LEN - sizeof(Elf64_Phdr) + 1;
}

static void bad_phoff_overflow(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_phoff = UINT64_MAX - 8;
}

static void bad_seg_past_eof(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_filesz = IMG_LEN - SEG_OFF + 1;
        phdr(im, 0)->p_memsz = IMG_LEN;
}

static void bad_seg_offset_overflow(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_offset = UINT64_MAX - 0x10;
}

static void bad_filesz_gt_memsz(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_memsz = SEG_FILE - 1;
}

static void bad_below_1m(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_paddr = 0x80000;
        ehdr(im)->e_entry = 0x80000;
}

static void bad_in_mmio_hole(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_paddr = X86_MMIO_HOLE_START - 0x800;
        ehdr(im)->e_entry = X86_MMIO_HOLE_START - 0x800;
}

static void bad_beyond_ram(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_paddr = RAM_SIZE - 0x800; /* bss runs past the end of RAM */
        ehdr(im)->e_entry = RAM_SIZE - 0x800;
}

static void bad_paddr_wraps(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_paddr = UINT64_MAX - 0x7ff;
        ehdr(im)->e_entry = UINT64_MAX - 0x7ff;
}

static void bad_overlapping_segments(struct image *im)
{
        valid_elf(im);
        /* Starts inside the first segment's bss. */
        elf_add_phdr(im, PT_LOAD, SEG_OFF, KBASE + SEG_MEM - 0x10, 0x100, 0x100);
}

static void bad_no_pt_load(struct image *im)
{
        valid_elf(im);
        phdr(im, 0)->p_type = PT_GNU_STACK;
}

static void bad_entry_outside(struct image *im)
{
        valid_elf(im);
        ehdr(im)->e_entry = MiB(4);
}

static void bad_pvh_note_truncated(struct image *im)
{
        valid_pvh_elf(im);
        phdr(im, 1)->p_filesz = 12 + 4 + 2; /* header, name, half of the value */
}

static void bad_pvh_note_descsz_2(struct image *im)
{
        valid_elf(im);
        elf_add_pvh_note(im, PVH_ENTRY, 2);
}

static void bad_pvh_entry_outside(struct image *im)
{
        valid_elf(im);
        elf_add_pvh_note(im, MiB(4), 4);
}

static void bad_note_segment_past_eof(struct image *im)
{
        valid_pvh_elf(im);
        phdr(im, 1)->p_offset = IMG_LEN - 8;
}

static void bad_bz_protocol_2_11(struct image *im)
{
        valid_bz(im);
        put16(im, 0x206, 0x020b);
}

static void bad_bz_no_kernel_64(struct image *im)
{
        valid_bz(im);
        put16(im, 0x236, 0x0002);
}

static void bad_bz_not_loaded_high(struct image *im)
{
        valid_bz(im);
        im->buf[0x211] = 0x80;
}

static void bad_bz_no_payload(struct image *im)
{
        valid_bz(im);
        im->buf[0x1f1] = 200; /* 201 * 512 bytes of setup: more than the file */
}

static void bad_bz_setup_is_whole_file(struct image *im)
{
        bz_build(im, BZ_SETUP_SECTS, BZ_SETUP_LEN, 0);
}

/* A payload that ends at or before the 64-bit entry point (offset 0x200 into it). */
static void bad_bz_payload_before_entry(struct image *im)
{
        bz_build(im, BZ_SETUP_SECTS, BZ_SETUP_LEN, 0x200);
}

static void bad_bz_init_size_too_large(struct image *im)
{
        valid_bz(im);
        put32(im, 0x260, (uint32_t)RAM_SIZE); /* 1 MiB + RAM_SIZE > RAM */
}

static void bad_bz_truncated_header(struct image *im)
{
        valid_bz(im);
        im->len = 0x240; /* has "HdrS", but not through init_size */
}

static void bad_bz_header_length(struct image *im)
{
        valid_bz(im);
        im->buf[0x201] = 0x30; /* header ends at 0x232, before init_size */
}

static const struct bad_case bad_cases[] = {
    {"empty image", bad_empty, "empty", NULL},
    {"random bytes", bad_random, "not an ELF", "bzImage"},
    {"truncated ELF header", bad_truncated_ehdr, "truncated", NULL},
    {"32-bit ELF", bad_elf32, "64-bit", NULL},
    {"big-endian ELF", bad_big_endian, "little-endian", NULL},
    {"wrong machine", bad_machine, "machine", "x86_64"},
    {"ET_DYN", bad_et_dyn, "ET_EXEC", NULL},
    {"wrong phentsize", bad_phentsize, "program header size", NULL},
    {"phnum 0", bad_phnum_zero, "program headers", NULL},
    {"phnum 65535", bad_phnum_absurd, "65535 program headers", NULL},
    {"phoff past EOF", bad_phoff_past_eof, "program headers", "end of the file"},
    {"phoff overflow", bad_phoff_overflow, "program headers", "end of the file"},
    {"segment past EOF", bad_seg_past_eof, "segment 0", "end"},
    {"segment offset overflow", bad_seg_offset_overflow, "segment 0", "end"},
    {"filesz > memsz", bad_filesz_gt_memsz, "segment 0", "memory size"},
    {"segment below 1 MiB", bad_below_1m, "segment 0", "below 1 MiB"},
    {"segment in MMIO hole", bad_in_mmio_hole, "segment 0", "MMIO hole"},
    {"segment beyond RAM", bad_beyond_ram, "segment 0", "guest RAM"},
    {"paddr + memsz wraps", bad_paddr_wraps, "segment 0", "wraps"},
    {"overlapping segments", bad_overlapping_segments, "segment 1", "overlaps"},
    {"no PT_LOAD", bad_no_pt_load, "no loadable segment", NULL},
    {"entry outside segments", bad_entry_outside, "entry point", "outside"},
    {"PVH note truncated", bad_pvh_note_truncated, "note", "truncated"},
    {"PVH note descsz 2", bad_pvh_note_descsz_2, "PVH", "2-byte"},
    {"PVH entry outside segments", bad_pvh_entry_outside, "PVH entry point", "outside"},
    {"note segment past EOF", bad_note_segment_past_eof, "note segment", "end of the file"},
    {"bzImage protocol 2.11", bad_bz_protocol_2_11, "2.11", "2.12"},
    {"bzImage without XLF_KERNEL_64", bad_bz_no_kernel_64, "XLF_KERNEL_64", NULL},
    {"bzImage without LOADED_HIGH", bad_bz_not_loaded_high, "LOADED_HIGH", NULL},
    {"bzImage setup_sects past EOF", bad_bz_no_payload, "200 setup sectors", NULL},
    {"bzImage without payload", bad_bz_setup_is_whole_file, "setup sectors", NULL},
    {"bzImage payload before the entry", bad_bz_payload_before_entry, "64-bit entry point",
     "0x200"},
    {"bzImage init_size > RAM", bad_bz_init_size_too_large, "bzImage kernel", "guest RAM"},
    {"bzImage truncated header", bad_bz_truncated_header, "truncated", NULL},
    {"bzImage header length", bad_bz_header_length, "setup header length", NULL},
};

static void test_refused_images(void **state)
{
        struct guest_mem *mem = *state;

        for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
                const struct bad_case *c = &bad_cases[i];
                struct error err = {0};
                struct x86_kernel k;
                struct image im;
                int r;

                c->build(&im);
                r = x86_kernel_load(mem, im.buf, im.len, &k, &err);
                image_free(&im);
                if (r >= 0)
                        fail_msg("%s: accepted (r=%d)", c->name, r);
                if (r != -EINVAL)
                        fail_msg("%s: returned %d, expected -EINVAL", c->name, r);
                if (err.code != r || !err.msg[0])
                        fail_msg("%s: no error recorded", c->name);
                if (!strstr(err.msg, c->needle1) || (c->needle2 && !strstr(err.msg, c->needle2)))
                        fail_msg("%s: message '%s' does not name the problem ('%s'%s%s)", c->name,
                                 err.msg, c->needle1, c->needle2 ? ", " : "",
                                 c->needle2 ? c->needle2 : "");
                if (!poisoned(mem, 0, RAM_SIZE))
                        fail_msg("%s: guest memory was modified", c->name);
        }
        assert_untouched(mem);
}

/* ---- initrd ---- */

static struct x86_kernel kernel_ending_at(gpa_t load_end, uint64_t initrd_addr_max)
{
        struct x86_kernel k;

        memset(&k, 0, sizeof(k));
        k.format = X86_KERNEL_ELF;
        k.protocol = X86_BOOT_LINUX64;
        k.entry = KBASE;
        k.load_start = KBASE;
        k.load_end = load_end;
        k.initrd_addr_max = initrd_addr_max;
        k.cmdline_max = X86_CMDLINE_MAX;
        return k;
}

static void fill_initrd(uint8_t *buf, size_t len)
{
        for (size_t i = 0; i < len; i++)
                buf[i] = pattern(i + 11);
}

static void test_initrd_top_of_low_ram(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = kernel_ending_at(KBASE + SEG_MEM, UINT64_MAX);
        const size_t len = 10000;
        uint8_t *rd = malloc(len);
        struct error err = {0};
        gpa_t addr = 0;

        assert_non_null(rd);
        fill_initrd(rd, len);
        assert_int_equal(x86_initrd_load(mem, &k, rd, len, &addr, &err), 0);
        assert_int_equal(addr % 4096, 0);
        /* As high as it goes: the next page boundary down from the end of RAM. */
        assert_int_equal(addr, (RAM_SIZE - len) & ~0xfffull);
        assert_true(addr + len <= RAM_SIZE);
        assert_memory_equal(guest_mem_translate(mem, addr, len), rd, len);
        assert_true(poisoned(mem, 0, addr));
        assert_true(poisoned(mem, addr + len, RAM_SIZE - addr - len));
        free(rd);
}

static void test_initrd_low_region_of_split_memory(void **state)
{
        (void)state;
        /* RAM split by a hole at 4 MiB: the initrd goes below it, not above. */
        struct guest_mem_spec spec = {.size = MiB(8), .hole_start = MiB(4), .hole_end = MiB(6)};
        struct x86_kernel k = kernel_ending_at(KBASE + SEG_MEM, UINT64_MAX);
        struct guest_mem *mem = NULL;
        struct error err = {0};
        uint8_t rd[5000];
        gpa_t addr = 0;

        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        fill_initrd(rd, sizeof(rd));
        assert_int_equal(x86_initrd_load(mem, &k, rd, sizeof(rd), &addr, &err), 0);
        assert_int_equal(addr, (MiB(4) - sizeof(rd)) & ~0xfffull);
        assert_memory_equal(guest_mem_translate(mem, addr, sizeof(rd)), rd, sizeof(rd));
        guest_mem_destroy(mem);
}

static void test_initrd_respects_addr_max(void **state)
{
        struct guest_mem *mem = *state;
        /* The kernel reads initrds only up to 4 MiB - 1 (not page aligned on purpose). */
        struct x86_kernel k = kernel_ending_at(KBASE + SEG_MEM, MiB(4) - 0x801);
        uint8_t rd[3000];
        struct error err = {0};
        gpa_t addr = 0;

        fill_initrd(rd, sizeof(rd));
        assert_int_equal(x86_initrd_load(mem, &k, rd, sizeof(rd), &addr, &err), 0);
        assert_int_equal(addr % 4096, 0);
        assert_true(addr + sizeof(rd) - 1 <= k.initrd_addr_max);
        assert_int_equal(addr, (MiB(4) - 0x800 - sizeof(rd)) & ~0xfffull);
        assert_true(poisoned(mem, MiB(4), RAM_SIZE - MiB(4)));
}

static void test_initrd_addr_max_from_bzimage(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k;
        struct image im;
        struct error err = {0};
        uint8_t rd[100];
        gpa_t addr = 0;

        valid_bz(&im);
        put32(&im, 0x22c, 0x2fffff); /* 3 MiB - 1 */
        load_ok(mem, &im, &k);
        fill_initrd(rd, sizeof(rd));
        assert_int_equal(x86_initrd_load(mem, &k, rd, sizeof(rd), &addr, &err), 0);
        assert_int_equal(addr, MiB(3) - 0x1000);
        image_free(&im);
}

static void test_initrd_too_large(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = kernel_ending_at(KBASE + SEG_MEM, UINT64_MAX);
        const size_t len = RAM_SIZE; /* more than fits above the kernel */
        uint8_t *rd = malloc(len);
        struct error err = {0};
        gpa_t addr = 0x1234;

        assert_non_null(rd);
        memset(rd, 0x11, len);
        assert_int_equal(x86_initrd_load(mem, &k, rd, len, &addr, &err), -ENOSPC);
        assert_int_equal(err.code, -ENOSPC);
        assert_non_null(strstr(err.msg, "initrd"));
        assert_non_null(strstr(err.msg, "does not fit"));
        assert_int_equal(addr, 0x1234);
        assert_untouched(mem);

        /* Larger than the whole address range below the limit. */
        error_clear(&err);
        k = kernel_ending_at(KBASE + SEG_MEM, 0xfff);
        assert_int_equal(x86_initrd_load(mem, &k, rd, 0x2000, &addr, &err), -ENOSPC);
        assert_true(err.msg[0] != '\0');
        assert_untouched(mem);
        free(rd);
}

static void test_initrd_empty(void **state)
{
        struct guest_mem *mem = *state;
        struct x86_kernel k = kernel_ending_at(KBASE + SEG_MEM, UINT64_MAX);
        struct error err = {0};
        uint8_t rd[1] = {0};
        gpa_t addr = 0;

        assert_true(x86_initrd_load(mem, &k, rd, 0, &addr, &err) < 0);
        assert_non_null(strstr(err.msg, "empty"));
        assert_untouched(mem);
}

static void test_initrd_never_overlaps_kernel(void **state)
{
        struct guest_mem *mem = *state;
        uint8_t *rd = malloc(MiB(1));
        struct error err = {0};
        struct x86_kernel k;
        gpa_t addr = 0;

        assert_non_null(rd);
        fill_initrd(rd, MiB(1));
        /* The kernel ends one byte into the last free MiB: no room. */
        k = kernel_ending_at(MiB(7) + 1, UINT64_MAX);
        assert_int_equal(x86_initrd_load(mem, &k, rd, MiB(1), &addr, &err), -ENOSPC);
        assert_untouched(mem);
        /* ... but a page-aligned kernel end leaves exactly enough. */
        error_clear(&err);
        k = kernel_ending_at(MiB(7), UINT64_MAX);
        assert_int_equal(x86_initrd_load(mem, &k, rd, MiB(1), &addr, &err), 0);
        assert_int_equal(addr, MiB(7));
        /* Under a limit that leaves the space above the kernel too small. */
        error_clear(&err);
        k = kernel_ending_at(MiB(3), MiB(3) + 0x7fff);
        assert_int_equal(x86_initrd_load(mem, &k, rd, 0x10000, &addr, &err), -ENOSPC);
        free(rd);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_elf_linux64),
            T(test_elf_pvh_note_4_bytes),
            T(test_elf_pvh_note_8_bytes_after_other_notes),
            T(test_elf_two_segments),
            T(test_bzimage),
            T(test_bzimage_setup_sects_zero_means_four),
            T(test_bzimage_payload_larger_than_init_size),
            T(test_refused_images),
            T(test_initrd_top_of_low_ram),
            T(test_initrd_low_region_of_split_memory),
            T(test_initrd_respects_addr_max),
            T(test_initrd_addr_max_from_bzimage),
            T(test_initrd_too_large),
            T(test_initrd_empty),
            T(test_initrd_never_overlaps_kernel),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "loader.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Setup header offsets (Documentation/arch/x86/boot.rst). */
#define HDR_SETUP_SECTS  0x1f1
#define HDR_BOOT_FLAG    0x1fe
#define HDR_JUMP         0x200
#define HDR_MAGIC        0x202
#define HDR_VERSION      0x206
#define HDR_LOADFLAGS    0x211
#define HDR_CODE32_START 0x214
#define HDR_INITRD_MAX   0x22c
#define HDR_KERNEL_ALIGN 0x230
#define HDR_RELOCATABLE  0x234
#define HDR_XLOADFLAGS   0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_INIT_SIZE    0x260
#define HDR_MIN_LEN      0x264 /* through init_size */
#define LOADED_HIGH      0x01
#define XLF_KERNEL_64    0x01
#define BZ_MIN_PROTOCOL  0x020c
#define BZ_64BIT_ENTRY   0x200

/* A segment the loader will copy: validated first, written only when all are valid. */
struct load_seg {
        gpa_t gpa;
        const uint8_t *src;
        uint64_t filesz;
        uint64_t memsz;
};

static int check_guest_range(const struct guest_mem *mem, const char *what, gpa_t gpa,
                             uint64_t size, struct error *err)
{
        uint64_t end;

        if (!range_end(gpa, size, &end))
                return error_set(err, -EINVAL, "%s at 0x%llx with size 0x%llx wraps around", what,
                                 (unsigned long long)gpa, (unsigned long long)size);
        if (gpa < X86_HIMEM_START)
                return error_set(err, -EINVAL,
                                 "%s at 0x%llx is below 1 MiB, where the VMM keeps boot "
                                 "structures",
                                 what, (unsigned long long)gpa);
        if (ranges_overlap(gpa, size, X86_MMIO_HOLE_START, X86_MMIO_HOLE_END - X86_MMIO_HOLE_START))
                return error_set(err, -EINVAL,
                                 "%s [0x%llx, 0x%llx) overlaps the MMIO hole "
                                 "[0xc0000000, 0x100000000)",
                                 what, (unsigned long long)gpa, (unsigned long long)end);
        if (!guest_mem_contains(mem, gpa, size))
                return error_set(err, -EINVAL,
                                 "%s [0x%llx, 0x%llx) does not fit in guest RAM of %llu MiB", what,
                                 (unsigned long long)gpa, (unsigned long long)end,
                                 (unsigned long long)(guest_mem_size(mem) >> 20));
        return 0;
}

static int write_segs(const struct guest_mem *mem, const struct load_seg *segs, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                int r = guest_mem_write(mem, segs[i].gpa, segs[i].src, segs[i].filesz);
                if (!r)
                        r = guest_mem_fill(mem, segs[i].gpa + segs[i].filesz, 0,
                                           segs[i].memsz - segs[i].filesz);
                if (r)
                        return r;
        }
        return 0;
}

/* Looks for the PVH entry note in one PT_NOTE segment; returns 1 when found. */
static int find_pvh_note(const uint8_t *p, uint64_t size, uint64_t *entry, struct error *err)
{
        uint64_t off = 0;

        while (size - off >= 12) {
                uint32_t namesz = get_le32(p + off);
                uint32_t descsz = get_le32(p + off + 4);
                uint32_t type = get_le32(p + off + 8);
                uint64_t name_off = off + 12;
                uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
                uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);

                if (desc_off > size || next > size)
                        return error_set(err, -EINVAL, "ELF note at offset 0x%llx is truncated",
                                         (unsigned long long)off);
                if (namesz == 4 && memcmp(p + name_off, "Xen", 4) == 0 &&
                    type == XEN_ELFNOTE_PHYS32_ENTRY) {
                        if (descsz == 4)
                                *entry = get_le32(p + desc_off);
                        else if (descsz == 8)
                                *entry = get_le64(p + desc_off);
                        else
                                return error_set(err, -EINVAL,
                                                 "PVH entry note has a %u-byte value (expected 4 "
                                                 "or 8)",
                                                 descsz);
                        return 1;
                }
                off = next;
        }
        return 0;
}

static bool in_segments(const struct load_seg *segs, unsigned n, gpa_t addr)
{
        for (unsigned i = 0; i < n; i++)
                if (addr >= segs[i].gpa && addr - segs[i].gpa < segs[i].filesz)
                        return true;
        return false;
}

static int load_elf(const struct guest_mem *mem, const uint8_t *img, size_t len,
                    struct x86_kernel *k, struct error *err)
{
        struct load_seg segs[X86_ELF_MAX_PHDRS];
        Elf64_Ehdr hdr; /* a copy: img has no alignment (the program headers are copied too) */
        const Elf64_Ehdr *eh = &hdr;
        uint64_t pvh_entry = 0, ph_end;
        unsigned nsegs = 0;
        bool has_pvh = false;
        int r;

        if (len < sizeof(Elf64_Ehdr))
                return error_set(err, -EINVAL, "ELF image is truncated (%zu bytes)", len);
        memcpy(&hdr, img, sizeof(hdr));
        if (eh->e_ident[EI_CLASS] != ELFCLASS64)
                return error_set(err, -EINVAL, "ELF image is not 64-bit (class %u)",
                                 eh->e_ident[EI_CLASS]);
        if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
                return error_set(err, -EINVAL, "ELF image is not little-endian");
        if (eh->e_machine != EM_X86_64)
                return error_set(err, -EINVAL, "ELF image is for machine %u, not x86_64 (62)",
                                 eh->e_machine);
        if (eh->e_type != ET_EXEC)
                return error_set(err, -EINVAL,
                                 "ELF image has type %u; only executables (ET_EXEC) can boot",
                                 eh->e_type);
        if (eh->e_phentsize != sizeof(Elf64_Phdr))
                return error_set(err, -EINVAL, "ELF program header size is %u, expected %zu",
                                 eh->e_phentsize, sizeof(Elf64_Phdr));
        if (eh->e_phnum == 0 || eh->e_phnum > X86_ELF_MAX_PHDRS)
                return error_set(err, -EINVAL, "ELF image has %u program headers (allowed 1..%d)",
                                 eh->e_phnum, X86_ELF_MAX_PHDRS);
        if (!range_end(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), &ph_end) ||
            ph_end > len)
                return error_set(err, -EINVAL,
                                 "ELF program headers at offset 0x%llx extend past the end of "
                                 "the file",
                                 (unsigned long long)eh->e_phoff);

        k->load_start = UINT64_MAX;
        k->load_end = 0;
        for (unsigned i = 0; i < eh->e_phnum; i++) {
                Elf64_Phdr ph;
                uint64_t fend;
                char what[48];

                memcpy(&ph, img + eh->e_phoff + i * sizeof(ph), sizeof(ph));
                if (ph.p_type == PT_NOTE && !has_pvh) {
                        if (!range_end(ph.p_offset, ph.p_filesz, &fend) || fend > len)
                                return error_set(err, -EINVAL,
                                                 "ELF note segment %u extends past the end of "
                                                 "the file",
                                                 i);
                        r = find_pvh_note(img + ph.p_offset, ph.p_filesz, &pvh_entry, err);
                        if (r < 0)
                                return r;
                        has_pvh = r == 1;
                }
                if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
                        continue;
                snprintf(what, sizeof(what), "ELF segment %u", i);
                if (ph.p_filesz > ph.p_memsz)
                        return error_set(err, -EINVAL,
                                         "%s has file size 0x%llx larger than its memory size "
                                         "0x%llx",
                                         what, (unsigned long long)ph.p_filesz,
                                         (unsigned long long)ph.p_memsz);
                if (!range_end(ph.p_offset, ph.p_filesz, &fend) || fend > len)
                        return error_set(err, -EINVAL,
                                         "%s (offset 0x%llx, size 0x%llx) extends past the end "
                                         "of the %zu-byte file",
                                         what, (unsigned long long)ph.p_offset,
                                         (unsigned long long)ph.p_filesz, len);
                r = check_guest_range(mem, what, ph.p_paddr, ph.p_memsz, err);
                if (r)
                        return r;
                for (unsigned j = 0; j < nsegs; j++)
                        if (ranges_overlap(ph.p_paddr, ph.p_memsz, segs[j].gpa, segs[j].memsz))
                                return error_set(err, -EINVAL, "%s overlaps another segment", what);
                segs[nsegs++] = (struct load_seg){.gpa = ph.p_paddr,
                                                  .src = img + ph.p_offset,
                                                  .filesz = ph.p_filesz,
                                                  .memsz = ph.p_memsz};
                if (ph.p_paddr < k->load_start)
                        k->load_start = ph.p_paddr;
                if (ph.p_paddr + ph.p_memsz > k->load_end)
                        k->load_end = ph.p_paddr + ph.p_memsz;
        }
        if (nsegs == 0)
                return error_set(err, -EINVAL, "ELF image has no loadable segment");

        k->format = X86_KERNEL_ELF;
        if (has_pvh) {
                if (pvh_entry >= X86_MMIO_HOLE_START || !in_segments(segs, nsegs, pvh_entry))
                        return error_set(err, -EINVAL,
                                         "PVH entry point 0x%llx is outside the loaded segments",
                                         (unsigned long long)pvh_entry);
                k->protocol = X86_BOOT_PVH;
                k->entry = pvh_entry;
        } else {
                if (!in_segments(segs, nsegs, eh->e_entry))
                        return error_set(err, -EINVAL,
                                         "ELF entry point 0x%llx is outside the loaded "
                                         "segments",
                                         (unsigned long long)eh->e_entry);
                k->protocol = X86_BOOT_LINUX64;
                k->entry = eh->e_entry;
        }
        k->initrd_addr_max = UINT64_MAX;
        k->cmdline_max = X86_CMDLINE_MAX;
        return write_segs(mem, segs, nsegs) ? error_set(err, -EFAULT, "cannot write kernel") : 0;
}

static int load_bzimage(const struct guest_mem *mem, const uint8_t *img, size_t len,
                        struct x86_kernel *k, struct error *err)
{
        uint16_t version;
        unsigned setup_sects;
        uint64_t setup_len, payload_len, init_size, mem_size;
        uint32_t hdr_end;
        struct load_seg seg;
        int r;

        if (len < HDR_MIN_LEN)
                return error_set(err, -EINVAL, "bzImage header is truncated (%zu bytes)", len);
        version = get_le16(img + HDR_VERSION);
        setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
        setup_len = ((uint64_t)setup_sects + 1) * 512;
        hdr_end = HDR_MAGIC + img[HDR_JUMP + 1];
        if (version < BZ_MIN_PROTOCOL)
                return error_set(err, -EINVAL,
                                 "bzImage uses boot protocol %u.%02u; version 2.12 or newer is "
                                 "required",
                                 version >> 8, version & 0xff);
        if (!(img[HDR_LOADFLAGS] & LOADED_HIGH))
                return error_set(err, -EINVAL,
                                 "bzImage is not a big kernel (LOADED_HIGH is clear); zImage is "
                                 "not supported");
        if (!(get_le16(img + HDR_XLOADFLAGS) & XLF_KERNEL_64))
                return error_set(err, -EINVAL,
                                 "bzImage has no 64-bit entry point (XLF_KERNEL_64 is clear)");
        if (setup_len >= len)
                return error_set(err, -EINVAL,
                                 "bzImage has %u setup sectors but the file holds only %zu bytes",
                                 setup_sects, len);
        if (hdr_end < HDR_MIN_LEN || hdr_end > 0x280 || hdr_end > setup_len)
                return error_set(err, -EINVAL, "bzImage setup header length %u is invalid",
                                 hdr_end - X86_SETUP_HEADER_OFFSET);

        payload_len = len - setup_len;
        if (payload_len <= BZ_64BIT_ENTRY)
                return error_set(err, -EINVAL,
                                 "bzImage payload of %llu bytes ends before its 64-bit entry point "
                                 "(offset 0x%x)",
                                 (unsigned long long)payload_len, BZ_64BIT_ENTRY);
        init_size = get_le32(img + HDR_INIT_SIZE);
        mem_size = init_size > payload_len ? init_size : payload_len;
        r = check_guest_range(mem, "bzImage kernel", X86_HIMEM_START, mem_size, err);
        if (r)
                return r;

        k->format = X86_KERNEL_BZIMAGE;
        k->protocol = X86_BOOT_LINUX64;
        k->protocol_version = version;
        k->load_start = X86_HIMEM_START;
        k->load_end = X86_HIMEM_START + mem_size;
        k->entry = X86_HIMEM_START + BZ_64BIT_ENTRY;
        k->initrd_addr_max = get_le32(img + HDR_INITRD_MAX);
        k->cmdline_max = version >= 0x0206 ? get_le32(img + HDR_CMDLINE_SIZE) + 1 : 256;
        if (k->cmdline_max > X86_CMDLINE_MAX || k->cmdline_max < 2)
                k->cmdline_max = X86_CMDLINE_MAX;
        k->setup_header_len = hdr_end - X86_SETUP_HEADER_OFFSET;
        memcpy(k->setup_header, img + X86_SETUP_HEADER_OFFSET, k->setup_header_len);
        /* The loader, not the image, decides where the 32-bit code lives. */
        put_le32(k->setup_header + (HDR_CODE32_START - X86_SETUP_HEADER_OFFSET),
                 (uint32_t)X86_HIMEM_START);

        seg = (struct load_seg){.gpa = X86_HIMEM_START,
                                .src = img + setup_len,
                                .filesz = payload_len,
                                .memsz = mem_size};
        return write_segs(mem, &seg, 1) ? error_set(err, -EFAULT, "cannot write kernel") : 0;
}

int x86_kernel_load(const struct guest_mem *mem, const uint8_t *img, size_t len,
                    struct x86_kernel *out, struct error *err)
{
        memset(out, 0, sizeof(*out));
        if (len == 0)
                return error_set(err, -EINVAL, "kernel image is empty");
        if (len >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0)
                return load_elf(mem, img, len, out, err);
        if (len >= HDR_MAGIC + 4 && get_le16(img + HDR_BOOT_FLAG) == 0xaa55 &&
            memcmp(img + HDR_MAGIC, "HdrS", 4) == 0)
                return load_bzimage(mem, img, len, out, err);
        return error_set(err, -EINVAL,
                         "not an ELF vmlinux or a bzImage (no ELF magic, no \"HdrS\" boot "
                         "header)");
}

int x86_initrd_load(const struct guest_mem *mem, const struct x86_kernel *k, const uint8_t *img,
                    size_t len, gpa_t *addr_out, struct error *err)
{
        uint64_t top = guest_mem_low_end(mem);
        uint64_t kernel_end;
        gpa_t addr;

        if (len == 0)
                return error_set(err, -EINVAL, "initrd is empty");
        if (k->initrd_addr_max != UINT64_MAX && k->initrd_addr_max + 1 < top)
                top = k->initrd_addr_max + 1;
        if (!align_up_checked(k->load_end, KiB(4), &kernel_end))
                kernel_end = UINT64_MAX;
        if (len > top || align_down(top - len, KiB(4)) < kernel_end)
                return error_set(err, -ENOSPC,
                                 "initrd of %zu bytes does not fit between the kernel end 0x%llx "
                                 "and 0x%llx",
                                 len, (unsigned long long)kernel_end, (unsigned long long)top);
        addr = align_down(top - len, KiB(4));
        if (guest_mem_write(mem, addr, img, len))
                return error_set(err, -EFAULT, "cannot write initrd");
        *addr_out = addr;
        return 0;
}

/*
 * The kernel and initrd loaders (arch/x86/loader.c): ELF vmlinux (PVH note or the 64-bit
 * boot protocol) and bzImage, then an initrd above the kernel. Checked:
 *
 *  - a refused image comes with a message and has written nothing to guest memory (no
 *    page of the fresh guest RAM became resident: validation precedes every write);
 *  - an accepted kernel lies in RAM above 1 MiB, its entry inside what was loaded;
 *  - an accepted initrd is page-aligned above the kernel's end, below the top of low RAM and
 *    the kernel's initrd_addr_max, and holds exactly the initrd's bytes.
 *
 * Input: a flags byte (bits 0-1 guest RAM 2/16/64/16 MiB, bit 2 an initrd follows), a u32
 * kernel length, the kernel, then the initrd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "arch/x86/loader.h"
#include "fuzz_common.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_loader: %s:%d: %s (%s)\n", __FILE__, __LINE__,       \
                                #cond, err.msg);                                                   \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint64_t sizes[] = {MiB(2), MiB(16), MiB(64), MiB(16)};
        struct error err = {0};
        struct guest_mem *mem;
        struct x86_kernel k;
        struct fz f;
        uint8_t flags;
        size_t klen;
        const uint8_t *kimg;
        struct guest_mem_spec spec = {.hole_start = X86_MMIO_HOLE_START,
                                      .hole_end = X86_MMIO_HOLE_END};

        fz_init(&f, data, size);
        flags = fz_u8(&f);
        klen = fz_u32(&f);
        if (klen > f.n)
                klen = f.n;
        kimg = f.p;
        f.p += klen;
        f.n -= klen;
        spec.size = sizes[flags & 3];
        if (guest_mem_create(&spec, &err, &mem))
                abort();
        if (x86_kernel_load(mem, kimg, klen, &k, &err)) {
                CHECK(err.msg[0]);
                CHECK(guest_mem_resident_bytes(mem) == 0);
                goto out;
        }
        CHECK(k.load_start >= X86_HIMEM_START && k.load_start <= k.load_end);
        CHECK(guest_mem_contains(mem, k.load_start, k.load_end - k.load_start));
        CHECK(k.entry >= k.load_start && k.entry < k.load_end);
        CHECK(k.setup_header_len <= sizeof(k.setup_header));
        if ((flags & 4) && f.n) {
                static uint8_t back[MiB(64)];
                gpa_t addr;

                if (x86_initrd_load(mem, &k, f.p, f.n, &addr, &err)) {
                        CHECK(err.msg[0]);
                        goto out;
                }
                CHECK(addr % KiB(4) == 0);
                CHECK(addr >= k.load_end);
                CHECK(addr + f.n <= guest_mem_low_end(mem));
                CHECK(k.initrd_addr_max == UINT64_MAX || addr + f.n - 1 <= k.initrd_addr_max);
                CHECK(guest_mem_read(mem, addr, back, f.n) == 0);
                CHECK(memcmp(back, f.p, f.n) == 0);
        }
out:
        guest_mem_destroy(mem);
        return 0;
}

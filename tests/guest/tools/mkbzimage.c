/*
 * mkbzimage: wraps the probe's flat binary (objcopy -O binary of probe-nopvh.elf) in a bzImage
 * for the Linux boot protocol (Documentation/arch/x86/boot.rst): a boot sector and one setup
 * sector carrying the setup header, then the protected-mode payload unchanged, loaded at
 * 1 MiB with its 64-bit entry at +0x200.
 *
 * No BIOS ever runs the real-mode parts here (VMMs load bzImages directly), so they are stubs
 * that halt. The sizes come from the image header boot/entry.S puts at offset 0x10, which the
 * linker fills in.
 *
 * usage: mkbzimage FLAT.bin OUT.bzImage
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR           512u
#define SETUP_SECTS      1u
#define SETUP_LEN        ((SETUP_SECTS + 1u) * SECTOR)
#define PROTOCOL_VERSION 0x020fu

/* Setup header offsets in the bzImage (and in boot_params). */
#define HDR_SETUP_SECTS    0x1f1
#define HDR_SYSSIZE        0x1f4
#define HDR_BOOT_FLAG      0x1fe
#define HDR_JUMP           0x200
#define HDR_MAGIC          0x202
#define HDR_VERSION        0x206
#define HDR_START_SYS_SEG  0x20c
#define HDR_KERNEL_VERSION 0x20e
#define HDR_LOADFLAGS      0x211
#define HDR_CODE32_START   0x214
#define HDR_INITRD_MAX     0x22c
#define HDR_KERNEL_ALIGN   0x230
#define HDR_RELOCATABLE    0x234
#define HDR_MIN_ALIGNMENT  0x235
#define HDR_XLOADFLAGS     0x236
#define HDR_CMDLINE_SIZE   0x238
#define HDR_PREF_ADDRESS   0x258
#define HDR_INIT_SIZE      0x260
#define HDR_END            0x26c /* end of the 2.15 header (kernel_info_offset) */
#define SETUP_CODE         0x270 /* where the jump at 0x200 lands */
#define VERSION_STRING     0x280

#define LOADED_HIGH                0x01
#define XLF_KERNEL_64              0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02
#define CMDLINE_SIZE               2047u
#define INITRD_ADDR_MAX            0x7fffffffu

/* The probe's own header (boot/entry.S). */
#define IMG_HEADER     0x10
#define IMG_MAGIC      "PROBEIMG"
#define IMG_LOAD_ADDR  (IMG_HEADER + 8)
#define IMG_LOAD_SIZE  (IMG_HEADER + 12)
#define IMG_MEM_SIZE   (IMG_HEADER + 16)
#define IMG_ENTRY64    (IMG_HEADER + 20)
#define IMG_HEADER_END (IMG_HEADER + 28)
#define ENTRY64_OFFSET 0x200u

static const uint8_t halt_stub[] = {0xfa, 0xf4, 0xeb, 0xfd}; /* cli; 1: hlt; jmp 1b */

static void put16(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
        put16(p, v);
        put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
        put32(p, (uint32_t)v);
        put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads a whole file; returns NULL with errno set on failure. */
static uint8_t *read_file(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t cap = 0, n = 0;

        if (!f)
                return NULL;
        for (;;) {
                size_t got;

                if (n == cap) {
                        uint8_t *bigger = realloc(buf, cap ? cap * 2 : 65536);

                        if (!bigger) {
                                free(buf);
                                fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        buf = bigger;
                        cap = cap ? cap * 2 : 65536;
                }
                got = fread(buf + n, 1, cap - n, f);
                n += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                fclose(f);
                errno = EIO;
                return NULL;
        }
        fclose(f);
        *len = n;
        return buf;
}

static int fail(const char *what)
{
        fprintf(stderr, "mkbzimage: %s\n", what);
        return 1;
}

static void build_setup(uint8_t *setup, uint32_t load_addr, uint32_t load_size, uint32_t mem_size)
{
        static const char version[] = "probe guest (tests/guest)";

        memset(setup, 0, SETUP_LEN);
        memcpy(setup, halt_stub, sizeof(halt_stub));
        setup[HDR_SETUP_SECTS] = SETUP_SECTS;
        put32(setup + HDR_SYSSIZE, (load_size + 15) / 16);
        put16(setup + HDR_BOOT_FLAG, 0xaa55);
        setup[HDR_JUMP] = 0xeb; /* jmp rel8: its target also marks the header's end */
        setup[HDR_JUMP + 1] = (uint8_t)(SETUP_CODE - (HDR_JUMP + 2));
        memcpy(setup + HDR_MAGIC, "HdrS", 4);
        put16(setup + HDR_VERSION, PROTOCOL_VERSION);
        put16(setup + HDR_START_SYS_SEG, 0x1000);
        put16(setup + HDR_KERNEL_VERSION, VERSION_STRING - 0x200);
        setup[HDR_LOADFLAGS] = LOADED_HIGH;
        put32(setup + HDR_CODE32_START, load_addr);
        put32(setup + HDR_INITRD_MAX, INITRD_ADDR_MAX);
        put32(setup + HDR_KERNEL_ALIGN,
              load_addr & -load_addr); /* the load address is aligned so */
        setup[HDR_RELOCATABLE] = 0;
        setup[HDR_MIN_ALIGNMENT] = 12; /* 4 KiB: all the probe itself needs */
        put16(setup + HDR_XLOADFLAGS, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        put32(setup + HDR_CMDLINE_SIZE, CMDLINE_SIZE);
        put64(setup + HDR_PREF_ADDRESS, load_addr);
        put32(setup + HDR_INIT_SIZE, (mem_size + 4095) & ~4095u);
        memcpy(setup + SETUP_CODE, halt_stub, sizeof(halt_stub));
        memcpy(setup + VERSION_STRING, version, sizeof(version));
}

int main(int argc, char **argv)
{
        uint8_t setup[SETUP_LEN];
        uint8_t *img;
        size_t len;
        uint32_t load_addr, load_size, mem_size;
        FILE *out;
        int bad;

        if (argc != 3) {
                fprintf(stderr, "usage: mkbzimage FLAT.bin OUT.bzImage\n");
                return 2;
        }
        img = read_file(argv[1], &len);
        if (!img) {
                fprintf(stderr, "mkbzimage: %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        if (len < IMG_HEADER_END || memcmp(img + IMG_HEADER, IMG_MAGIC, 8) != 0) {
                free(img);
                return fail("input is not the probe's flat binary (no PROBEIMG header)");
        }
        load_addr = get32(img + IMG_LOAD_ADDR);
        load_size = get32(img + IMG_LOAD_SIZE);
        mem_size = get32(img + IMG_MEM_SIZE);
        bad = load_size != len || mem_size < load_size || mem_size > 0x10000000u ||
              get32(img + IMG_ENTRY64) != ENTRY64_OFFSET || load_addr == 0;
        if (bad) {
                free(img);
                return fail("image header disagrees with the file (size, entry or address)");
        }
        build_setup(setup, load_addr, load_size, mem_size);

        out = fopen(argv[2], "wb");
        if (!out) {
                fprintf(stderr, "mkbzimage: %s: %s\n", argv[2], strerror(errno));
                free(img);
                return 1;
        }
        bad = fwrite(setup, 1, sizeof(setup), out) != sizeof(setup) ||
              fwrite(img, 1, len, out) != len;
        bad |= fclose(out) != 0;
        free(img);
        if (bad) {
                remove(argv[2]);
                return fail("write error");
        }
        return 0;
}

/*
 * Writes the firmware tables of a standard board as <OUTDIR>/<NAME>.dat, one file per blob,
 * for the iasl validation test (tests/kvm/test_acpi_iasl.py). Stands in for
 * `vmm --dump-platform` until that can attach virtio slots. The board is the one the
 * conventions describe: COM1, the i8042, the boot timer and K virtio-mmio slots from GSI 5.
 *
 *   dump_tables [--vcpus N] [--virtio K] OUTDIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "arch/x86/platform.h"

static int parse_uint(const char *s, unsigned *out)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 0);
        if (errno || end == s || *end || v > 0xffffffffu)
                return -1;
        *out = (unsigned)v;
        return 0;
}

static int add_board(struct platform_desc *desc, unsigned nr_virtio, struct error *err)
{
        struct platform_dev devs[] = {
            {.name = "COM1",
             .kind = PLATFORM_DEV_SERIAL,
             .base = X86_COM1_PORT,
             .len = 8,
             .gsi = X86_COM1_IRQ},
            {.name = "PS2K",
             .kind = PLATFORM_DEV_I8042,
             .base = X86_I8042_DATA_PORT,
             .len = 1,
             .gsi = X86_I8042_IRQ},
            {.name = "boot-timer",
             .kind = PLATFORM_DEV_MMIO_OTHER,
             .base = X86_BOOT_TIMER_ADDR,
             .len = X86_BOOT_TIMER_LEN},
        };
        int ret;

        for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
                ret = platform_add_dev(desc, &devs[i], err);
                if (ret)
                        return ret;
        }
        for (unsigned i = 0; i < nr_virtio; i++) {
                struct platform_dev dev = {
                    .kind = PLATFORM_DEV_VIRTIO_MMIO,
                    .base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_SIZE,
                    .len = X86_VIRTIO_MMIO_SIZE,
                    .gsi = X86_VIRTIO_FIRST_GSI + i,
                };
                snprintf(dev.name, sizeof(dev.name), "VR%02u", i);
                ret = platform_add_dev(desc, &dev, err);
                if (ret)
                        return ret;
        }
        return 0;
}

static int write_blob(const char *dir, const struct platform_blob *b)
{
        char path[4096];
        FILE *f;
        int ok;

        snprintf(path, sizeof(path), "%s/%s.dat", dir, b->name);
        f = fopen(path, "wb");
        if (!f) {
                fprintf(stderr, "dump_tables: cannot create %s: %s\n", path, strerror(errno));
                return -1;
        }
        ok = fwrite(b->data, 1, b->len, f) == b->len;
        ok = (fclose(f) == 0) && ok;
        if (!ok) {
                fprintf(stderr, "dump_tables: cannot write %s\n", path);
                return -1;
        }
        printf("%-8s 0x%06llx %5u bytes\n", b->name, (unsigned long long)b->gpa, b->len);
        return 0;
}

int main(int argc, char **argv)
{
        static struct platform_desc desc;
        struct platform_tables tables;
        struct error err = {0};
        unsigned nr_virtio = 0;
        const char *dir = NULL;
        int rc = 0;

        desc.nr_vcpus = 1;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--vcpus") == 0 && i + 1 < argc) {
                        if (parse_uint(argv[++i], &desc.nr_vcpus))
                                goto usage;
                } else if (strcmp(argv[i], "--virtio") == 0 && i + 1 < argc) {
                        if (parse_uint(argv[++i], &nr_virtio))
                                goto usage;
                } else if (argv[i][0] != '-' && !dir) {
                        dir = argv[i];
                } else {
                        goto usage;
                }
        }
        if (!dir)
                goto usage;

        if (add_board(&desc, nr_virtio, &err) || platform_tables_build(&desc, &tables, &err)) {
                fprintf(stderr, "dump_tables: %s\n", err.msg);
                return 1;
        }
        for (unsigned i = 0; i < tables.nr && rc == 0; i++)
                rc = write_blob(dir, &tables.blobs[i]);
        platform_tables_free(&tables);
        return rc ? 1 : 0;

usage:
        fprintf(stderr, "usage: %s [--vcpus N] [--virtio K] OUTDIR\n", argv[0]);
        return 2;
}

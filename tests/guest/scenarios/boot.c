/*
 * The `boot` scenario: everything the loader handed over, printed and checked — command
 * line, memory map, initrd, ACPI tables.
 */
#include "scenarios.h"

#include "cmdline.h"
#include "mptable.h"
#include "probe.h"
#include "str.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull
#define MAPPED_END 0x100000000ull

extern const char __image_start[], __image_end[];

static void check_cmdline(const struct boot_info *bi)
{
        print("probe: cmdline \"%s\"\n", bi->cmdline);
        if (!bi->cmdline_terminated)
                probe_fail("command line not NUL-terminated within %u bytes",
                           (unsigned)X86_CMDLINE_MAX);
}

/* Entries sorted by address, for the overlap check in lenient mode (insertion sort: the
 * map is short). Empty entries are left out. */
static unsigned sorted_copy(const struct boot_info *bi, struct boot_mem_range *out)
{
        unsigned n = 0;

        for (unsigned i = 0; i < bi->memmap_count; i++) {
                unsigned j = n++;

                if (!bi->memmap[i].size) {
                        n--;
                        continue;
                }
                for (; j && out[j - 1].addr > bi->memmap[i].addr; j--)
                        out[j] = out[j - 1];
                out[j] = bi->memmap[i];
        }
        return n;
}

/*
 * Strict by default: entries sorted, non-empty, non-overlapping, as a VMM should hand them
 * over. `probe.e820=lenient` accepts any order and empty entries (Linux sanitizes both) but
 * still no overlaps: QEMU's microvm firmware (qboot) passes such a PVH memmap.
 */
static void check_memmap(const struct boot_info *bi)
{
        static struct boot_mem_range sorted[BOOT_MEMMAP_MAX];
        uint64_t image = (uint64_t)(uintptr_t)__image_start;
        uint64_t image_size = (uint64_t)(__image_end - __image_start);
        size_t len;
        const char *mode = cmdline_find(bi->cmdline, "probe.e820", &len);
        bool lenient = mode && len == 7 && memcmp(mode, "lenient", 7) == 0;
        const struct boot_mem_range *map = bi->memmap;
        unsigned n = bi->memmap_count;

        if (n > BOOT_MEMMAP_MAX)
                probe_fail("%u memory map entries, more than %u", n, BOOT_MEMMAP_MAX);
        /* Print the whole map before judging it, so a failure comes with the evidence. */
        for (unsigned i = 0; i < n; i++)
                print("probe: e820 0x%016llx-0x%016llx type %u\n", U64(map[i].addr),
                      U64(map[i].addr + map[i].size), map[i].type);
        for (unsigned i = 0; i < n; i++) {
                if (map[i].addr + map[i].size < map[i].addr)
                        probe_fail("memory map entry %u wraps around", i);
                if (!map[i].size && !lenient)
                        probe_fail("memory map entry %u is empty", i);
                if (i && map[i].addr < map[i - 1].addr && !lenient)
                        probe_fail("memory map entry %u is out of order", i);
        }
        if (lenient) {
                n = sorted_copy(bi, sorted);
                map = sorted;
        }
        if (n == 0)
                probe_fail("empty memory map");
        for (unsigned i = 1; i < n; i++)
                if (map[i].addr < map[i - 1].addr + map[i - 1].size)
                        probe_fail("memory map entries at 0x%llx and 0x%llx overlap",
                                   U64(map[i - 1].addr), U64(map[i].addr));
        if (!bootinfo_mem_is(bi, 0, 1, X86_E820_RAM))
                probe_fail("no RAM at address 0");
        if (!bootinfo_mem_is(bi, X86_HIMEM_START, 1, X86_E820_RAM))
                probe_fail("no RAM at 1 MiB");
        if (!bootinfo_mem_is(bi, image, image_size, X86_E820_RAM))
                probe_fail("probe image 0x%llx-0x%llx is not in RAM", U64(image),
                           U64(image + image_size));
}

/* FNV-1a over little-endian 64-bit words, then the tail bytes (README.md): 64-bit loads keep
 * it near 5 instructions per 8 bytes. */
static uint64_t initrd_hash(const uint8_t *p, uint64_t size)
{
        uint64_t h = FNV_OFFSET;
        uint64_t words = size / 8;

        for (uint64_t i = 0; i < words; i++)
                h = (h ^ load_le64(p + i * 8)) * FNV_PRIME;
        for (uint64_t i = words * 8; i < size; i++)
                h = (h ^ p[i]) * FNV_PRIME;
        return h;
}

/* probe.initrd_sum=SIZE:HASH, SIZE decimal, HASH hexadecimal. */
static void parse_initrd_sum(const char *v, size_t len, uint64_t *size, uint64_t *hash)
{
        size_t colon = 0;

        while (colon < len && v[colon] != ':')
                colon++;
        if (colon == len || len - colon - 1 > 16 || !str_parse_u64(v, colon, 10, size) ||
            !str_parse_u64(v + colon + 1, len - colon - 1, 16, hash))
                probe_fail("bad probe.initrd_sum (want SIZE:HASH)");
}

static void check_initrd(const struct boot_info *bi)
{
        size_t len;
        const char *sum = cmdline_find(bi->cmdline, "probe.initrd_sum", &len);
        uint64_t want_size, want_hash, hash;

        if (!bi->has_initrd) {
                print("probe: initrd none\n");
                if (sum)
                        probe_fail("probe.initrd_sum given but no initrd passed");
                return;
        }
        if (bi->initrd_addr >= MAPPED_END || bi->initrd_size > MAPPED_END - bi->initrd_addr)
                probe_fail("initrd 0x%llx size %llu is outside the low 4 GiB", U64(bi->initrd_addr),
                           U64(bi->initrd_size));
        if (!bootinfo_mem_is(bi, bi->initrd_addr, bi->initrd_size, X86_E820_RAM))
                probe_fail("initrd 0x%llx size %llu is not in RAM", U64(bi->initrd_addr),
                           U64(bi->initrd_size));
        /* Hashing costs ~0.6 M instructions per MiB: only when asked to verify. */
        if (!sum) {
                print("probe: initrd 0x%llx size %llu\n", U64(bi->initrd_addr),
                      U64(bi->initrd_size));
                return;
        }
        parse_initrd_sum(sum, len, &want_size, &want_hash);
        hash = initrd_hash((const uint8_t *)(uintptr_t)bi->initrd_addr, bi->initrd_size);
        print("probe: initrd 0x%llx size %llu hash %016llx\n", U64(bi->initrd_addr),
              U64(bi->initrd_size), U64(hash));
        if (bi->initrd_size != want_size)
                probe_fail("initrd size %llu, expected %llu", U64(bi->initrd_size), U64(want_size));
        if (hash != want_hash)
                probe_fail("initrd hash %016llx, expected %016llx", U64(hash), U64(want_hash));
}

/* Copies n bytes, making anything unprintable a '?', so odd OEM IDs cannot break a line. */
static void printable(char *out, const char *in, size_t n)
{
        for (size_t i = 0; i < n; i++)
                out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
        out[n] = '\0';
}

static void print_table(const struct acpi_sdt *t)
{
        char sig[5], oem[7];

        printable(sig, t->signature, 4);
        printable(oem, t->oem_id, 6);
        print("probe: acpi %s oem \"%s\" len %u\n", sig, oem, (unsigned)t->length);
}

static const struct acpi_sdt *checked_table(uint64_t addr, const char *what)
{
        const char *err = acpi_check_table(addr, NULL);

        if (err)
                probe_fail("%s at 0x%llx: %s", what, U64(addr), err);
        return (const struct acpi_sdt *)(uintptr_t)addr;
}

static void check_acpi(const struct boot_info *bi)
{
        struct acpi_root root;
        struct acpi_madt madt;
        const struct acpi_sdt *fadt, *dsdt, *t;
        const char *err;

        scenario_acpi(bi, &root);
        print("probe: rsdp 0x%llx\n", U64(root.rsdp_addr));
        if (root.rsdp_scanned)
                print("probe: rsdp not passed by the loader, found by scanning\n");
        print_table(root.root);
        for (unsigned i = 0; i < root.count; i++)
                print_table(checked_table(acpi_root_entry(&root, i), "ACPI table"));

        fadt = acpi_find(&root, "FACP");
        if (!fadt)
                probe_fail("no FADT");
        dsdt = checked_table(acpi_fadt_dsdt(fadt), "DSDT");
        if (memcmp(dsdt->signature, "DSDT", 4) != 0)
                probe_fail("FADT's DSDT pointer does not point to a DSDT");
        print_table(dsdt);

        t = acpi_find(&root, "APIC");
        if (!t)
                probe_fail("no MADT");
        err = acpi_parse_madt(t, &madt);
        if (err)
                probe_fail("%s", err);
        print("probe: cpus %u\n", madt.cpus);
        if (!madt.ioapics)
                probe_fail("no IOAPIC in the MADT");
        for (unsigned i = 0; i < madt.ioapics; i++)
                print("probe: ioapic 0x%x\n", (unsigned)madt.ioapic[i].addr);
}

/* A microVM may have no MPTable (QEMU's microvm has none); when there is one it must be
 * valid, and the VMM's tests check what it says. */
static void check_mptable(void)
{
        struct mptable mp;
        char oem[9];
        const char *err = mptable_find(&mp);

        if (err && str_eq(err, "none")) {
                print("probe: mptable none\n");
                return;
        }
        if (err)
                probe_fail("%s", err);
        printable(oem, mp.oem, 8);
        print("probe: mptable 0x%llx oem \"%s\" entries %u count %u cpus %u bsp %u ioapic 0x%x "
              "irqs %u lints %u\n",
              U64(mp.cfg_addr), oem, mp.entries, mp.header_count, mp.cpus, mp.bsp_apic_id,
              (unsigned)mp.ioapic_addr, mp.irqs, mp.lints);
}

void scenario_boot(const struct boot_info *bi)
{
        print("probe: boot info 0x%llx cmdline 0x%llx\n", U64(bi->info_addr),
              U64(bi->cmdline_addr));
        check_cmdline(bi);
        check_memmap(bi);
        check_initrd(bi);
        check_acpi(bi);
        check_mptable();
}

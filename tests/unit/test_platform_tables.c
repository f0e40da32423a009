/*
 * Platform tables: builds the firmware tables for a few boards and re-parses the blobs the
 * way a guest would (RSDP -> XSDT -> FADT -> DSDT, MADT, MP floating pointer -> PCMP),
 * checking checksums, links, entry counts, the layout and the rejection rules.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "arch/x86/platform.h"

#define TABLES_END (X86_RSDP_ADDR + 36)

struct board {
        struct platform_desc desc;
        struct platform_tables t;
};

static void add(struct platform_desc *desc, const char *name, enum platform_dev_kind kind,
                uint64_t base, uint64_t len, uint32_t gsi)
{
        struct platform_dev dev = {.kind = kind, .base = base, .len = len, .gsi = gsi};
        struct error err = {0};

        snprintf(dev.name, sizeof(dev.name), "%s", name);
        if (platform_add_dev(desc, &dev, &err))
                fail_msg("adding %s: %s", name, err.msg);
}

static uint32_t virtio_gsi(unsigned i)
{
        return X86_VIRTIO_FIRST_GSI + i % (X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI);
}

static void virtio_name(char name[8], unsigned i)
{
        snprintf(name, 8, "V%03u", i % 1000);
}

/* The board of the conventions: COM1, the i8042, the ACPI sleep registers, the boot timer,
 * virtio slots from GSI 5
 * (wrapping within 5..23 beyond 19 slots, so large tables can be built). */
static void board_init(struct platform_desc *desc, unsigned nr_vcpus, unsigned nr_virtio)
{
        memset(desc, 0, sizeof(*desc));
        desc->nr_vcpus = nr_vcpus;
        add(desc, "COM1", PLATFORM_DEV_SERIAL, X86_COM1_PORT, 8, X86_COM1_IRQ);
        add(desc, "PS2K", PLATFORM_DEV_I8042, X86_I8042_DATA_PORT, 1, X86_I8042_IRQ);
        add(desc, "SLPR", PLATFORM_DEV_ACPI_SLEEP, X86_ACPI_SLEEP_PORT, 2, 0);
        add(desc, "boot-timer", PLATFORM_DEV_MMIO_OTHER, X86_BOOT_TIMER_ADDR, X86_BOOT_TIMER_LEN,
            0);
        for (unsigned i = 0; i < nr_virtio; i++) {
                char name[8];
                virtio_name(name, i);
                add(desc, name, PLATFORM_DEV_VIRTIO_MMIO,
                    X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_SIZE, X86_VIRTIO_MMIO_SIZE,
                    virtio_gsi(i));
        }
}

static uint8_t sum8(const uint8_t *p, size_t len)
{
        uint8_t s = 0;
        for (size_t i = 0; i < len; i++)
                s = (uint8_t)(s + p[i]);
        return s;
}

static const struct platform_blob *blob(const struct platform_tables *t, const char *name)
{
        const struct platform_blob *b = platform_tables_find(t, name);
        if (!b)
                fail_msg("no %s blob", name);
        return b;
}

static const struct platform_blob *blob_at(const struct platform_tables *t, uint64_t gpa)
{
        for (unsigned i = 0; i < t->nr; i++)
                if (t->blobs[i].gpa == gpa)
                        return &t->blobs[i];
        fail_msg("no blob at 0x%llx", (unsigned long long)gpa);
        return NULL;
}

/* Common ACPI header: signature, length, checksum, OEM identity. */
static void check_acpi_header(const struct platform_blob *b, const char *sig, uint8_t rev)
{
        char table_id[9];

        assert_true(b->len >= 36);
        assert_memory_equal(b->data, sig, 4);
        assert_int_equal(get_le32(b->data + 4), b->len);
        assert_int_equal(b->data[8], rev);
        assert_int_equal(sum8(b->data, b->len), 0);
        assert_memory_equal(b->data + 10, PLATFORM_OEM_ID, 6);
        snprintf(table_id, sizeof(table_id), "%s%s", PLATFORM_OEM_TABLE_ID, sig);
        assert_memory_equal(b->data + 16, table_id, 8);
        assert_int_equal(get_le32(b->data + 24), PLATFORM_OEM_REVISION);
        assert_memory_equal(b->data + 28, PLATFORM_CREATOR_ID, 4);
        assert_int_equal(get_le32(b->data + 32), 1);
}

static void check_layout(const struct platform_tables *t)
{
        static const char *names[] = {"RSDP", "XSDT", "FACP", "APIC", "DSDT", "MPTABLE"};

        assert_int_equal(t->nr, ARRAY_SIZE(names));
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                blob(t, names[i]);
        assert_int_equal(blob(t, "MPTABLE")->gpa, X86_MPTABLE_ADDR);
        assert_int_equal(blob(t, "RSDP")->gpa, X86_RSDP_ADDR);
        assert_int_equal(t->rsdp, X86_RSDP_ADDR);
        for (unsigned i = 0; i < t->nr; i++) {
                const struct platform_blob *a = &t->blobs[i];
                assert_non_null(a->data);
                assert_true(a->len > 0);
                assert_true(a->gpa >= X86_MPTABLE_ADDR);
                assert_true(a->gpa + a->len <= TABLES_END);
                assert_true(is_aligned(a->gpa, 16));
                for (unsigned j = i + 1; j < t->nr; j++) {
                        const struct platform_blob *b = &t->blobs[j];
                        if (ranges_overlap(a->gpa, a->len, b->gpa, b->len))
                                fail_msg("%s and %s overlap", a->name, b->name);
                }
        }
}

/* RSDP -> XSDT -> {FACP, APIC}, FACP -> DSDT. */
static void check_acpi_links(const struct platform_tables *t)
{
        const struct platform_blob *rsdp = blob(t, "RSDP"), *xsdt, *facp, *dsdt, *e;
        const uint8_t *r = rsdp->data;
        bool seen_facp = false, seen_apic = false;

        assert_int_equal(rsdp->len, 36);
        assert_memory_equal(r, "RSD PTR ", 8);
        assert_int_equal(sum8(r, 20), 0);
        assert_int_equal(sum8(r, 36), 0);
        assert_memory_equal(r + 9, PLATFORM_OEM_ID, 6);
        assert_int_equal(r[15], 2);
        assert_int_equal(get_le32(r + 20), 36);

        xsdt = blob_at(t, get_le64(r + 24));
        assert_string_equal(xsdt->name, "XSDT");
        check_acpi_header(xsdt, "XSDT", 1);
        assert_int_equal((xsdt->len - 36) % 8, 0);
        for (uint32_t off = 36; off < xsdt->len; off += 8) {
                e = blob_at(t, get_le64(xsdt->data + off));
                if (memcmp(e->data, "FACP", 4) == 0)
                        seen_facp = true;
                else if (memcmp(e->data, "APIC", 4) == 0)
                        seen_apic = true;
                else
                        fail_msg("unexpected %.4s in the XSDT", (const char *)e->data);
        }
        assert_true(seen_facp && seen_apic);

        facp = blob(t, "FACP");
        dsdt = blob_at(t, get_le64(facp->data + 140));
        assert_string_equal(dsdt->name, "DSDT");
        assert_int_equal(get_le32(facp->data + 40), dsdt->gpa);
        check_acpi_header(dsdt, "DSDT", 2);
}

static void check_fadt(const struct platform_tables *t)
{
        const struct platform_blob *b = blob(t, "FACP");
        const uint8_t *f = b->data;
        uint32_t flags;
        uint16_t boot;

        check_acpi_header(b, "FACP", 6);
        assert_int_equal(b->len, 276);
        flags = get_le32(f + 112);
        assert_true(flags & (1u << 20)); /* HW_REDUCED_ACPI */
        assert_true(flags & (1u << 10)); /* RESET_REG_SUP */
        boot = get_le16(f + 109);
        assert_true(boot & (1u << 1)); /* 8042 */
        assert_true(boot & (1u << 2)); /* VGA not present */
        assert_true(boot & (1u << 3)); /* MSI not supported */
        assert_true(boot & (1u << 5)); /* CMOS RTC not present */
        /* reset register: SystemIO, 8 bits at offset 0, byte access, port 0x64; value 0xfe */
        assert_int_equal(f[116], 1);
        assert_int_equal(f[117], 8);
        assert_int_equal(f[118], 0);
        assert_int_equal(f[119], 1);
        assert_int_equal(get_le64(f + 120), 0x64);
        assert_int_equal(f[128], 0xfe);
        /* Power off: sleep control and status registers, SystemIO bytes at 0x600/0x601 (the
         * board's sleep registers); Linux needs both besides \_S5 in the DSDT. */
        assert_memory_equal(f + 244, "\x01\x08\x00\x01", 4);
        assert_int_equal(get_le64(f + 248), X86_ACPI_SLEEP_PORT);
        assert_memory_equal(f + 256, "\x01\x08\x00\x01", 4);
        assert_int_equal(get_le64(f + 260), X86_ACPI_SLEEP_PORT + 1);
        assert_int_equal(f[131], 3); /* ACPI 6.3 */
        assert_memory_equal(f + 268, "CVMM\0\0\0\0", 8);
        /* no FACS, PM blocks or SCI in hardware-reduced mode */
        assert_int_equal(get_le32(f + 36), 0);
        assert_int_equal(get_le16(f + 46), 0);
        assert_int_equal(get_le64(f + 132), 0);
}

static void check_madt(const struct platform_tables *t, unsigned nr_vcpus)
{
        const struct platform_blob *b = blob(t, "APIC");
        const uint8_t *m = b->data;
        unsigned lapics = 0, ioapics = 0, nmis = 0;

        check_acpi_header(b, "APIC", 5);
        assert_int_equal(get_le32(m + 36), X86_LAPIC_ADDR);
        assert_int_equal(get_le32(m + 40), 1); /* PCAT_COMPAT */
        for (uint32_t off = 44; off < b->len; off += m[off + 1]) {
                const uint8_t *e = m + off;
                assert_true(e[1] >= 2 && off + e[1] <= b->len);
                switch (e[0]) {
                case 0:
                        assert_int_equal(e[1], 8);
                        assert_int_equal(e[2], lapics); /* UID */
                        assert_int_equal(e[3], lapics); /* APIC id */
                        assert_int_equal(get_le32(e + 4), 1);
                        lapics++;
                        break;
                case 1:
                        assert_int_equal(e[1], 12);
                        assert_int_equal(e[2], nr_vcpus); /* IOAPIC id after the APIC ids */
                        assert_int_equal(get_le32(e + 4), X86_IOAPIC_ADDR);
                        assert_int_equal(get_le32(e + 8), 0);
                        ioapics++;
                        break;
                case 4:
                        assert_int_equal(e[1], 6);
                        assert_int_equal(e[2], 0xff);
                        assert_int_equal(e[5], 1);
                        nmis++;
                        break;
                default:
                        fail_msg("unexpected MADT entry type %u (no interrupt overrides)", e[0]);
                }
        }
        assert_int_equal(lapics, nr_vcpus);
        assert_int_equal(ioapics, 1);
        assert_int_equal(nmis, 1);
}

static unsigned count_gsis_above_15(const struct platform_desc *desc)
{
        uint32_t mask = 0;
        for (unsigned i = 0; i < desc->nr_devs; i++)
                if (desc->devs[i].kind == PLATFORM_DEV_VIRTIO_MMIO && desc->devs[i].gsi >= 16)
                        mask |= 1u << desc->devs[i].gsi;
        return (unsigned)__builtin_popcount(mask);
}

static void check_mptable(const struct platform_tables *t, const struct platform_desc *desc)
{
        const struct platform_blob *b = blob(t, "MPTABLE");
        const uint8_t *mpf = b->data, *mpc, *e;
        unsigned cpus = 0, buses = 0, ioapics = 0, ioints = 0, lints = 0, count;
        uint16_t base_len;
        bool isa_irq_seen[16] = {false};

        assert_memory_equal(mpf, "_MP_", 4);
        assert_int_equal(get_le32(mpf + 4), b->gpa + 16);
        assert_int_equal(mpf[8], 1);
        assert_int_equal(mpf[9], 4);
        assert_int_equal(sum8(mpf, 16), 0);
        assert_int_equal(mpf[11], 0); /* a configuration table, not a default configuration */
        assert_int_equal(mpf[12], 0); /* virtual wire mode */

        mpc = mpf + 16;
        assert_memory_equal(mpc, "PCMP", 4);
        base_len = get_le16(mpc + 4);
        assert_int_equal(base_len + 16, b->len);
        assert_int_equal(mpc[6], 4);
        assert_int_equal(sum8(mpc, base_len), 0);
        assert_memory_equal(mpc + 8, "CVMM    ", 8);
        assert_int_equal(get_le32(mpc + 28), 0);
        assert_int_equal(get_le16(mpc + 32), 0);
        assert_int_equal(get_le32(mpc + 36), X86_LAPIC_ADDR);
        assert_int_equal(get_le16(mpc + 40), 0); /* extended table length */
        assert_int_equal(mpc[42], 0);
        count = get_le16(mpc + 34);

        e = mpc + 44;
        for (unsigned i = 0; i < count; i++) {
                assert_true(e < mpc + base_len);
                switch (e[0]) {
                case 0:
                        assert_int_equal(e[1], cpus);
                        assert_int_equal(e[3], cpus == 0 ? 3 : 1); /* enabled, BSP on 0 */
                        cpus++;
                        e += 20;
                        continue;
                case 1:
                        assert_memory_equal(e + 2, "ISA   ", 6);
                        buses++;
                        break;
                case 2:
                        assert_int_equal(e[1], desc->nr_vcpus);
                        assert_int_equal(e[3] & 1, 1);
                        assert_int_equal(get_le32(e + 4), X86_IOAPIC_ADDR);
                        ioapics++;
                        break;
                case 3:
                        assert_int_equal(e[1], 0); /* INT */
                        assert_int_equal(e[4], 0); /* ISA bus */
                        assert_int_equal(e[6], desc->nr_vcpus);
                        assert_int_equal(e[5], e[7]); /* identity */
                        if (e[5] < 16)
                                isa_irq_seen[e[5]] = true;
                        ioints++;
                        break;
                case 4:
                        assert_int_equal(e[1], lints == 0 ? 3 : 1); /* ExtINT, NMI */
                        assert_int_equal(e[6], 0xff);
                        assert_int_equal(e[7], lints);
                        lints++;
                        break;
                default:
                        fail_msg("unexpected MP entry type %u", e[0]);
                }
                e += 8;
        }
        assert_ptr_equal(e, mpc + base_len);
        assert_int_equal(cpus, desc->nr_vcpus);
        assert_int_equal(buses, 1);
        assert_int_equal(ioapics, 1);
        assert_int_equal(ioints, 16 + count_gsis_above_15(desc));
        for (unsigned i = 0; i < 16; i++)
                assert_true(isa_irq_seen[i]);
        assert_int_equal(lints, 2);
}

static const uint8_t *find_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
        for (size_t i = 0; i + m <= n; i++)
                if (memcmp(hay + i, needle, m) == 0)
                        return hay + i;
        return NULL;
}

static unsigned count_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
        unsigned c = 0;
        for (const uint8_t *p = hay; (p = find_bytes(p, n - (size_t)(p - hay), needle, m)); p++)
                c++;
        return c;
}

static void check_dsdt(const struct platform_tables *t, const struct platform_desc *desc)
{
        const struct platform_blob *b = blob(t, "DSDT");
        static const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
        static const uint8_t pnp0303[] = {0x0c, 0x41, 0xd0, 0x03, 0x03};
        static const uint8_t com1_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03,
                                          0x01, 0x08, 0x22, 0x10, 0x00};
        /* Name (\_S5, Package (4) {5, Zero, Zero, Zero}) at the root */
        static const uint8_t s5[] = {
            0x08, 0x5c, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, X86_ACPI_S5_TYPE,
            0x00, 0x00, 0x00};
        static const uint8_t kbd_io[] = {0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x47, 0x01,
                                         0x64, 0x00, 0x64, 0x00, 0x01, 0x01, 0x22, 0x02, 0x00};
        unsigned nr_virtio = 0;

        assert_non_null(find_bytes(b->data, b->len, "\x10", 1));
        assert_int_equal(count_bytes(b->data, b->len, s5, sizeof(s5)), 1);
        assert_non_null(find_bytes(b->data, b->len, "\\_SB_", 5));
        assert_int_equal(count_bytes(b->data, b->len, pnp0501, sizeof(pnp0501)), 1);
        assert_int_equal(count_bytes(b->data, b->len, pnp0303, sizeof(pnp0303)), 1);
        assert_non_null(find_bytes(b->data, b->len, com1_io, sizeof(com1_io)));
        assert_non_null(find_bytes(b->data, b->len, kbd_io, sizeof(kbd_io)));
        assert_non_null(find_bytes(b->data, b->len, "\x5b\x82", 2)); /* DeviceOp */

        for (unsigned i = 0; i < desc->nr_devs; i++) {
                const struct platform_dev *d = &desc->devs[i];
                uint8_t crs[12 + 9 + 2], dev_name[4];
                if (d->kind != PLATFORM_DEV_VIRTIO_MMIO) {
                        if (d->kind == PLATFORM_DEV_MMIO_OTHER)
                                assert_null(find_bytes(b->data, b->len, d->name, 4));
                        continue;
                }
                /* Memory32Fixed(ReadWrite, base, 0x1000), Interrupt(consumer, edge, high,
                 * exclusive) { gsi }, end tag */
                crs[0] = 0x86;
                put_le16(crs + 1, 9);
                crs[3] = 1;
                put_le32(crs + 4, (uint32_t)d->base);
                put_le32(crs + 8, 0x1000);
                crs[12] = 0x89;
                put_le16(crs + 13, 6);
                crs[15] = 0x03;
                crs[16] = 1;
                put_le32(crs + 17, d->gsi);
                crs[21] = 0x79;
                crs[22] = 0;
                assert_int_equal(count_bytes(b->data, b->len, crs, sizeof(crs)), 1);
                memcpy(dev_name, d->name, 4);
                assert_int_equal(count_bytes(b->data, b->len, dev_name, 4), 1);
                nr_virtio++;
        }
        assert_int_equal(count_bytes(b->data, b->len, "\x0dLNRO0005", 10), nr_virtio);
}

static void build_and_check(unsigned nr_vcpus, unsigned nr_virtio)
{
        struct board *bd = calloc(1, sizeof(*bd));
        struct error err = {0};

        assert_non_null(bd);
        board_init(&bd->desc, nr_vcpus, nr_virtio);
        if (platform_tables_build(&bd->desc, &bd->t, &err))
                fail_msg("build(%u vCPUs, %u virtio): %s", nr_vcpus, nr_virtio, err.msg);
        check_layout(&bd->t);
        check_acpi_links(&bd->t);
        check_fadt(&bd->t);
        check_madt(&bd->t, nr_vcpus);
        check_dsdt(&bd->t, &bd->desc);
        check_mptable(&bd->t, &bd->desc);
        platform_tables_free(&bd->t);
        assert_int_equal(bd->t.nr, 0);
        free(bd);
}

static void test_build_1_vcpu_no_virtio(void **state)
{
        (void)state;
        build_and_check(1, 0);
}

static void test_build_2_vcpus_1_virtio(void **state)
{
        (void)state;
        build_and_check(2, 1);
}

static void test_build_2_vcpus_many_virtio(void **state)
{
        (void)state;
        build_and_check(2, 19); /* GSIs 5..23: four need MP entries above the ISA range */
}

static void test_build_max_vcpus(void **state)
{
        (void)state;
        build_and_check(PLATFORM_MAX_VCPUS, 3);
}

static void test_build_max_everything(void **state)
{
        (void)state;
        build_and_check(PLATFORM_MAX_VCPUS, PLATFORM_MAX_DEVS - 4);
}

/* A small board keeps the ACPI tables at their fixed address; a large one moves them past
 * the MPTable. */
static void test_layout_moves_acpi_after_large_mptable(void **state)
{
        struct board *bd = calloc(1, sizeof(*bd));
        struct error err = {0};
        const struct platform_blob *mp, *dsdt;

        (void)state;
        board_init(&bd->desc, 1, 1);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        assert_int_equal(blob(&bd->t, "DSDT")->gpa, X86_ACPI_TABLES_ADDR);
        platform_tables_free(&bd->t);

        bd->desc.nr_vcpus = PLATFORM_MAX_VCPUS;
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        mp = blob(&bd->t, "MPTABLE");
        dsdt = blob(&bd->t, "DSDT");
        assert_true(mp->gpa + mp->len > X86_ACPI_TABLES_ADDR);
        assert_true(dsdt->gpa >= mp->gpa + mp->len);
        assert_true(is_aligned(dsdt->gpa, 64));
        platform_tables_free(&bd->t);
        free(bd);
}

static void test_build_rejects_bad_desc(void **state)
{
        struct board *bd = calloc(1, sizeof(*bd));
        struct error err = {0};

        (void)state;
        board_init(&bd->desc, 0, 1);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "vCPUs"));
        assert_int_equal(bd->t.nr, 0);

        error_clear(&err);
        bd->desc.nr_vcpus = PLATFORM_MAX_VCPUS + 1;
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), -EINVAL);

        /* a table filled by hand is checked like platform_add_dev would */
        error_clear(&err);
        bd->desc.nr_vcpus = 1;
        bd->desc.devs[bd->desc.nr_devs] = bd->desc.devs[0];
        bd->desc.nr_devs++;
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "COM1"));
        assert_int_equal(bd->t.nr, 0);
        free(bd);
}

static int try_add(struct platform_desc *desc, const char *name, enum platform_dev_kind kind,
                   uint64_t base, uint64_t len, uint32_t gsi, struct error *err)
{
        struct platform_dev dev = {.kind = kind, .base = base, .len = len, .gsi = gsi};

        error_clear(err);
        snprintf(dev.name, sizeof(dev.name), "%s", name);
        return platform_add_dev(desc, &dev, err);
}

static void test_add_dev_rejects(void **state)
{
        struct platform_desc *desc = calloc(1, sizeof(*desc));
        struct error err;
        unsigned before;

        (void)state;
        board_init(desc, 1, 2);
        before = desc->nr_devs;

        /* overlaps, in the right address space */
        assert_int_equal(try_add(desc, "COM2", PLATFORM_DEV_SERIAL, 0x3fc, 8, 3, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "overlaps"));
        assert_non_null(strstr(err.msg, "COM1"));
        assert_int_equal(try_add(desc, "COM2", PLATFORM_DEV_SERIAL, 0x64, 1, 3, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "PS2K"));
        assert_int_equal(
            try_add(desc, "VRXX", PLATFORM_DEV_VIRTIO_MMIO, 0xc0002000, 0x1000, 9, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "V001"));
        assert_int_equal(
            try_add(desc, "other", PLATFORM_DEV_MMIO_OTHER, 0xc0000800, 0x1000, 0, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "boot-timer"));
        /* duplicates, including names that are equal once padded to an ACPI NameSeg */
        assert_int_equal(try_add(desc, "COM1", PLATFORM_DEV_SERIAL, 0x2f8, 8, 3, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "already used"));
        assert_int_equal(
            try_add(desc, "boot-timer", PLATFORM_DEV_MMIO_OTHER, 0xd0000000, 0x10, 0, &err),
            -EINVAL);
        /* bad GSIs and IRQs */
        assert_int_equal(
            try_add(desc, "VRXX", PLATFORM_DEV_VIRTIO_MMIO, 0xc0100000, 0x1000, 24, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "GSI 24"));
        assert_int_equal(try_add(desc, "COM2", PLATFORM_DEV_SERIAL, 0x2f8, 8, 16, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "IRQ 16"));
        /* names that cannot be ACPI names */
        assert_int_equal(try_add(desc, "com2", PLATFORM_DEV_SERIAL, 0x2f8, 8, 3, &err), -EINVAL);
        assert_int_equal(try_add(desc, "COM22", PLATFORM_DEV_SERIAL, 0x2f8, 8, 3, &err), -EINVAL);
        assert_int_equal(try_add(desc, "_COM", PLATFORM_DEV_SERIAL, 0x2f8, 8, 3, &err), -EINVAL);
        assert_int_equal(try_add(desc, "", PLATFORM_DEV_MMIO_OTHER, 0xd0000000, 0x10, 0, &err),
                         -EINVAL);
        /* virtio-mmio slots are 4 KiB below 4 GiB */
        assert_int_equal(
            try_add(desc, "VRXX", PLATFORM_DEV_VIRTIO_MMIO, 0xc0100000, 0x2000, 9, &err), -EINVAL);
        assert_int_equal(
            try_add(desc, "VRXX", PLATFORM_DEV_VIRTIO_MMIO, 0x100000000ull, 0x1000, 9, &err),
            -EINVAL);
        /* wrapping ranges */
        assert_int_equal(try_add(desc, "wrap", PLATFORM_DEV_MMIO_OTHER, UINT64_MAX, 2, 0, &err),
                         -EINVAL);
        assert_int_equal(try_add(desc, "PS2X", PLATFORM_DEV_I8042, UINT64_MAX - 2, 1, 1, &err),
                         -EINVAL);
        assert_int_equal(desc->nr_devs, before);

        /* what does fit: a port between the i8042's two, a second UART, "COM" padded */
        assert_int_equal(try_add(desc, "SPKR", PLATFORM_DEV_SERIAL, 0x61, 1, 3, &err), 0);
        assert_int_equal(try_add(desc, "COM", PLATFORM_DEV_SERIAL, 0x2f8, 8, 3, &err), 0);
        assert_int_equal(try_add(desc, "COM_", PLATFORM_DEV_SERIAL, 0x3e8, 8, 5, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "already used"));
        free(desc);
}

static void test_add_dev_full(void **state)
{
        struct platform_desc *desc = calloc(1, sizeof(*desc));
        struct error err;

        (void)state;
        board_init(desc, 1, PLATFORM_MAX_DEVS - 4);
        assert_int_equal(desc->nr_devs, PLATFORM_MAX_DEVS);
        assert_int_equal(
            try_add(desc, "LAST", PLATFORM_DEV_VIRTIO_MMIO, 0xd0000000, 0x1000, 5, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "80 devices"));
        assert_int_equal(desc->nr_devs, PLATFORM_MAX_DEVS);
        free(desc);
}

/* The FADT's 8042 flag and reset register are the board's i8042: its command port where the
 * board put it, and neither without one; its sleep registers (and the DSDT's \_S5) likewise
 * follow the board's ACPI sleep device. */
static void test_fadt_follows_the_i8042(void **state)
{
        struct board *bd = calloc(1, sizeof(*bd));
        struct error err = {0};
        const uint8_t *f;

        (void)state;
        bd->desc.nr_vcpus = 1;
        add(&bd->desc, "PS2K", PLATFORM_DEV_I8042, 0x160, 1, X86_I8042_IRQ);
        add(&bd->desc, "SLPR", PLATFORM_DEV_ACPI_SLEEP, 0x700, 2, 0);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        f = blob(&bd->t, "FACP")->data;
        assert_true(get_le16(f + 109) & (1u << 1));
        assert_true(get_le32(f + 112) & (1u << 10));
        assert_int_equal(get_le64(f + 120), 0x164);
        assert_int_equal(get_le64(f + 248), 0x700);
        assert_int_equal(get_le64(f + 260), 0x701);
        assert_non_null(
            find_bytes(blob(&bd->t, "DSDT")->data, blob(&bd->t, "DSDT")->len, "\\_S5_", 5));
        platform_tables_free(&bd->t);

        memset(&bd->desc, 0, sizeof(bd->desc));
        bd->desc.nr_vcpus = 1;
        add(&bd->desc, "COM1", PLATFORM_DEV_SERIAL, X86_COM1_PORT, 8, X86_COM1_IRQ);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        f = blob(&bd->t, "FACP")->data;
        assert_false(get_le16(f + 109) & (1u << 1));
        assert_false(get_le32(f + 112) & (1u << 10));
        assert_int_equal(get_le64(f + 120), 0);
        assert_int_equal(f[128], 0);
        /* No sleep registers: no power-off path offered (neither the FADT's nor \_S5). */
        assert_memory_equal(f + 244, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24);
        assert_null(find_bytes(blob(&bd->t, "DSDT")->data, blob(&bd->t, "DSDT")->len, "\\_S5_", 5));
        platform_tables_free(&bd->t);
        free(bd);
}

static int alloc(struct platform_desc *desc, const char *name, enum platform_dev_kind kind,
                 uint64_t len, struct platform_dev *out, struct error *err)
{
        *out = (struct platform_dev){.kind = kind, .len = len};
        snprintf(out->name, sizeof(out->name), "%s", name);
        if (kind == PLATFORM_DEV_ACPI_MMIO)
                snprintf(out->hid, sizeof(out->hid), "CVMM0009");
        return platform_alloc_dev(desc, out, err);
}

/* Allocation takes the lowest window and GSI nothing in the table uses: around a slot
 * placed by hand, and from each kind's own range. */
static void test_alloc_dev(void **state)
{
        struct platform_desc *desc = calloc(1, sizeof(*desc));
        struct platform_dev d;
        struct error err = {0};

        (void)state;
        desc->nr_vcpus = 1;
        add(desc, "COM1", PLATFORM_DEV_SERIAL, X86_COM1_PORT, 8, X86_COM1_IRQ);
        add(desc, "VRX1", PLATFORM_DEV_VIRTIO_MMIO, X86_VIRTIO_MMIO_BASE + 0x1000, 0x1000, 6);
        assert_int_equal(alloc(desc, "VRA", PLATFORM_DEV_VIRTIO_MMIO, 0x1000, &d, &err), 0);
        assert_int_equal(d.base, X86_VIRTIO_MMIO_BASE);
        assert_int_equal(d.gsi, 5);
        assert_int_equal(alloc(desc, "VRB", PLATFORM_DEV_VIRTIO_MMIO, 0x1000, &d, &err), 0);
        assert_int_equal(d.base, X86_VIRTIO_MMIO_BASE + 0x2000);
        assert_int_equal(d.gsi, 7);
        assert_int_equal(desc->nr_devs, 4);
        assert_int_equal(desc->devs[3].base, d.base);
        /* Other MMIO devices come from their own range, page-aligned, without a GSI. */
        assert_int_equal(alloc(desc, "ACPA", PLATFORM_DEV_ACPI_MMIO, 0x1800, &d, &err), 0);
        assert_int_equal(d.base, X86_MMIO_DEVICES_START);
        assert_int_equal(alloc(desc, "ACPB", PLATFORM_DEV_ACPI_MMIO, 0x1000, &d, &err), 0);
        assert_int_equal(d.base, X86_MMIO_DEVICES_START + 0x2000);
        /* ISA devices have their conventional places only. */
        assert_int_equal(alloc(desc, "COM2", PLATFORM_DEV_SERIAL, 8, &d, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "placed by convention"));
        /* A range used up: what is left of it, then nothing. */
        assert_int_equal(alloc(desc, "BIG", PLATFORM_DEV_MMIO_OTHER,
                               X86_MMIO_DEVICES_END - X86_MMIO_DEVICES_START + 1, &d, &err),
                         -EINVAL);
        assert_int_equal(alloc(desc, "REST", PLATFORM_DEV_MMIO_OTHER,
                               X86_MMIO_DEVICES_END - X86_MMIO_DEVICES_START - 0x3000, &d, &err),
                         0);
        assert_int_equal(d.base + d.len, X86_MMIO_DEVICES_END);
        err = (struct error){0};
        assert_int_equal(alloc(desc, "MORE", PLATFORM_DEV_MMIO_OTHER, 0x1000, &d, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "no free window"));
        assert_int_equal(desc->nr_devs, 7);
        free(desc);
}

/* The 19 GSIs from 5 run out before the 64 virtio-mmio slots. */
static void test_alloc_gsis_run_out(void **state)
{
        struct platform_desc *desc = calloc(1, sizeof(*desc));
        struct platform_dev d;
        struct error err = {0};
        char name[8];

        (void)state;
        desc->nr_vcpus = 1;
        for (unsigned i = 0; i < X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI; i++) {
                snprintf(name, sizeof(name), "V%u", i);
                assert_int_equal(alloc(desc, name, PLATFORM_DEV_VIRTIO_MMIO, 0x1000, &d, &err), 0);
                assert_int_equal(d.gsi, X86_VIRTIO_FIRST_GSI + i);
        }
        assert_int_equal(alloc(desc, "VX", PLATFORM_DEV_VIRTIO_MMIO, 0x1000, &d, &err), -ENOSPC);
        assert_int_equal(desc->nr_devs, X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI);
        free(desc);
}

static void test_cmdline_append(void **state)
{
        struct platform_desc *desc = calloc(1, sizeof(*desc));
        const char *want = "console=ttyS0 virtio_mmio.device=4K@0xc0001000:5"
                           " virtio_mmio.device=4K@0xc0002000:6";
        char buf[256] = "console=ttyS0";
        struct error err = {0};
        size_t exact;

        (void)state;
        board_init(desc, 1, 2);
        assert_int_equal(platform_cmdline_append(desc, buf, sizeof(buf), &err), 0);
        assert_string_equal(buf, want);

        /* exactly enough room, then one byte short: unchanged and -ENOSPC */
        exact = strlen(want) + 1;
        strcpy(buf, "console=ttyS0");
        assert_int_equal(platform_cmdline_append(desc, buf, exact, &err), 0);
        assert_string_equal(buf, want);
        strcpy(buf, "console=ttyS0");
        assert_int_equal(platform_cmdline_append(desc, buf, exact - 1, &err), -ENOSPC);
        assert_string_equal(buf, "console=ttyS0");
        assert_non_null(strstr(err.msg, "too long"));

        /* nothing to add */
        error_clear(&err);
        board_init(desc, 1, 0);
        assert_int_equal(platform_cmdline_append(desc, buf, 14, &err), 0);
        assert_string_equal(buf, "console=ttyS0");
        free(desc);
}

static struct guest_mem *mem_create(uint64_t size)
{
        struct guest_mem_spec spec = {
            .size = size, .hole_start = X86_MMIO_HOLE_START, .hole_end = X86_MMIO_HOLE_END};
        struct guest_mem *mem = NULL;
        struct error err = {0};

        if (guest_mem_create(&spec, &err, &mem))
                fail_msg("guest_mem_create: %s", err.msg);
        return mem;
}

static void test_write_and_read_back(void **state)
{
        struct board *bd = calloc(1, sizeof(*bd));
        struct guest_mem *mem = mem_create(MiB(2));
        struct error err = {0};
        uint8_t *copy;

        (void)state;
        board_init(&bd->desc, 2, 3);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        assert_int_equal(platform_tables_write(&bd->t, mem, &err), 0);
        for (unsigned i = 0; i < bd->t.nr; i++) {
                const struct platform_blob *b = &bd->t.blobs[i];
                copy = malloc(b->len);
                assert_non_null(copy);
                assert_int_equal(guest_mem_read(mem, b->gpa, copy, b->len), 0);
                assert_memory_equal(copy, b->data, b->len);
                free(copy);
        }
        /* what a guest scanning the BIOS area finds */
        copy = guest_mem_translate(mem, bd->t.rsdp, 36);
        assert_non_null(copy);
        assert_memory_equal(copy, "RSD PTR ", 8);
        platform_tables_free(&bd->t);
        guest_mem_destroy(mem);
        free(bd);
}

static void test_write_to_small_memory_fails(void **state)
{
        struct board *bd = calloc(1, sizeof(*bd));
        /* holds the MPTable but not the ACPI tables at 0xa0000 */
        struct guest_mem *mem = mem_create(X86_ACPI_TABLES_ADDR);
        struct error err = {0};
        const struct platform_blob *mp;
        uint8_t *p;

        (void)state;
        board_init(&bd->desc, 1, 1);
        assert_int_equal(platform_tables_build(&bd->desc, &bd->t, &err), 0);
        assert_int_equal(platform_tables_write(&bd->t, mem, &err), -EFAULT);
        assert_non_null(strstr(err.msg, "not in guest RAM"));
        /* nothing written, not even the table that would have fit */
        mp = blob(&bd->t, "MPTABLE");
        p = guest_mem_translate(mem, mp->gpa, mp->len);
        assert_non_null(p);
        for (uint32_t i = 0; i < mp->len; i++)
                assert_int_equal(p[i], 0);
        platform_tables_free(&bd->t);
        guest_mem_destroy(mem);
        free(bd);
}

static void test_find_unknown(void **state)
{
        struct platform_tables t = {0};

        (void)state;
        assert_null(platform_tables_find(&t, "DSDT"));
        platform_tables_free(&t); /* freeing an empty set is fine */
}

/* AML encodings against the byte sequences the ACPI spec defines. */
static void test_aml_encodings(void **state)
{
        static const uint8_t ints[] = {0x00, 0x01, 0x0a, 0x02, 0x0a, 0xff, 0x0b, 0x00,
                                       0x01, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x0e, 0x00,
                                       0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
        static const uint8_t names[] = {'_',  'H', 'I', 'D',  0x5c, '_', 'S', 'B', '_', 0x5c,
                                        0x2e, '_', 'S', 'B',  '_',  'C', 'O', 'M', '_', 0x2f,
                                        0x03, 'A', '_', '_',  '_',  'B', '_', '_', '_', 'C',
                                        '_',  '_', '_', 0x5e, 'X',  '_', '_', '_'};
        static const uint8_t eisaid[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
        struct aml a;

        (void)state;
        aml_init(&a);
        aml_integer(&a, 0);
        aml_integer(&a, 1);
        aml_integer(&a, 2);
        aml_integer(&a, 0xff);
        aml_integer(&a, 0x100);
        aml_integer(&a, 0x10000);
        aml_integer(&a, 0x100000000ull);
        assert_int_equal(a.err, 0);
        assert_int_equal(a.len, sizeof(ints));
        assert_memory_equal(a.buf, ints, sizeof(ints));
        aml_free(&a);

        aml_name_string(&a, "_HID");
        aml_name_string(&a, "\\_SB");
        aml_name_string(&a, "\\_SB.COM");
        aml_name_string(&a, "A.B.C");
        aml_name_string(&a, "^X");
        assert_int_equal(a.err, 0);
        assert_int_equal(a.len, sizeof(names));
        assert_memory_equal(a.buf, names, sizeof(names));
        aml_free(&a);

        aml_eisaid(&a, "PNP0501");
        assert_int_equal(a.len, sizeof(eisaid));
        assert_memory_equal(a.buf, eisaid, sizeof(eisaid));
        aml_free(&a);

        aml_name_string(&a, "1ABC");
        assert_int_equal(a.err, -EINVAL);
        aml_free(&a);
        aml_name_string(&a, "\\_SB.");
        assert_int_equal(a.err, -EINVAL);
        aml_free(&a);
        aml_eisaid(&a, "pnp0501");
        assert_int_equal(a.err, -EINVAL);
        aml_free(&a);
}

/* PkgLength: 1 byte up to 63 (its own byte included), then 2, 3 bytes. */
static void check_pkglen(size_t content, const uint8_t *want, size_t want_len)
{
        uint8_t *filler = calloc(1, content);
        struct aml a;
        size_t mark;

        assert_non_null(filler);
        aml_init(&a);
        mark = aml_scope_begin(&a, "ABCD");
        aml_bytes(&a, filler, content - 4); /* the name is part of the contents */
        aml_scope_end(&a, mark);
        assert_int_equal(a.err, 0);
        assert_int_equal(a.len, 1 + want_len + content);
        assert_int_equal(a.buf[0], 0x10);
        assert_memory_equal(a.buf + 1, want, want_len);
        assert_memory_equal(a.buf + 1 + want_len, "ABCD", 4);
        aml_free(&a);
        free(filler);
}

static void test_aml_pkglen(void **state)
{
        (void)state;
        check_pkglen(62, (const uint8_t[]){0x3f}, 1);
        check_pkglen(63, (const uint8_t[]){0x41, 0x04}, 2);                  /* 65 = 0x041 */
        check_pkglen(0xffd, (const uint8_t[]){0x4f, 0xff}, 2);               /* 0xfff */
        check_pkglen(0xffe, (const uint8_t[]){0x81, 0x00, 0x01}, 3);         /* 0x1001 */
        check_pkglen(0xffffc, (const uint8_t[]){0x8f, 0xff, 0xff}, 3);       /* 0xfffff */
        check_pkglen(0xffffd, (const uint8_t[]){0xc1, 0x00, 0x00, 0x01}, 4); /* 0x100001 */
}

static void test_aml_restemplate(void **state)
{
        /* Buffer(size) { IRQNoFlags {4}, End } */
        static const uint8_t want[] = {0x11, 0x08, 0x0a, 0x05, 0x22, 0x10, 0x00, 0x79, 0x00};
        struct aml a;
        size_t rt;

        (void)state;
        aml_init(&a);
        rt = aml_restemplate_begin(&a);
        aml_res_irq_noflags(&a, 4);
        aml_restemplate_end(&a, rt);
        assert_int_equal(a.err, 0);
        assert_int_equal(a.len, sizeof(want));
        assert_memory_equal(a.buf, want, sizeof(want));
        aml_res_irq_noflags(&a, 16);
        assert_int_equal(a.err, -EINVAL);
        aml_free(&a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_build_1_vcpu_no_virtio),
            cmocka_unit_test(test_build_2_vcpus_1_virtio),
            cmocka_unit_test(test_build_2_vcpus_many_virtio),
            cmocka_unit_test(test_build_max_vcpus),
            cmocka_unit_test(test_build_max_everything),
            cmocka_unit_test(test_layout_moves_acpi_after_large_mptable),
            cmocka_unit_test(test_build_rejects_bad_desc),
            cmocka_unit_test(test_add_dev_rejects),
            cmocka_unit_test(test_add_dev_full),
            cmocka_unit_test(test_fadt_follows_the_i8042),
            cmocka_unit_test(test_alloc_dev),
            cmocka_unit_test(test_alloc_gsis_run_out),
            cmocka_unit_test(test_cmdline_append),
            cmocka_unit_test(test_write_and_read_back),
            cmocka_unit_test(test_write_to_small_memory_fails),
            cmocka_unit_test(test_find_unknown),
            cmocka_unit_test(test_aml_encodings),
            cmocka_unit_test(test_aml_pkglen),
            cmocka_unit_test(test_aml_restemplate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

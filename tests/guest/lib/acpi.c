#include "acpi.h"

#include "io.h"
#include "str.h"

#define RSDP_SCAN_START 0xe0000ull
#define RSDP_SCAN_END   0x100000ull
#define RSDP_V1_LEN     20
#define RSDP_V2_LEN     36
#define RSDP_OEM_REV    15
#define RSDP_RSDT       16
#define RSDP_LENGTH     20
#define RSDP_XSDT       24

#define SDT_HEADER_LEN 36
/* Far larger than anything a microVM builds; bounds the checksum loop on garbage. */
#define SDT_MAX_LEN (16u << 20)
#define MAPPED_END  0x100000000ull

#define FADT_DSDT          40
#define FADT_FLAGS         112
#define FADT_RESET_REG     116
#define FADT_RESET_VALUE   128
#define FADT_X_DSDT        140
#define FADT_RESET_REG_SUP (1u << 10)
#define GAS_SYSTEM_MEMORY  0
#define GAS_SYSTEM_IO      1

#define MADT_LAPIC_ADDR   36
#define MADT_ENTRIES      44
#define MADT_LAPIC        0
#define MADT_IOAPIC       1
#define MADT_OVERRIDE     2
#define MADT_LAPIC_ADDR64 5

static const uint8_t *phys(uint64_t addr)
{
        return (const uint8_t *)(uintptr_t)addr;
}

static uint8_t sum_bytes(const uint8_t *p, uint32_t len)
{
        uint8_t s = 0;

        while (len--)
                s = (uint8_t)(s + *p++);
        return s;
}

static bool rsdp_valid(const uint8_t *p)
{
        return memcmp(p, "RSD PTR ", 8) == 0 && sum_bytes(p, RSDP_V1_LEN) == 0;
}

static uint64_t rsdp_scan(void)
{
        for (uint64_t a = RSDP_SCAN_START; a < RSDP_SCAN_END; a += 16)
                if (rsdp_valid(phys(a)))
                        return a;
        return 0;
}

const char *acpi_check_table(uint64_t addr, const char *sig)
{
        const struct acpi_sdt *t = (const struct acpi_sdt *)phys(addr);
        uint32_t len;

        if (!addr || addr >= MAPPED_END - SDT_HEADER_LEN)
                return "table address outside the low 4 GiB";
        len = t->length;
        if (len < SDT_HEADER_LEN || len > SDT_MAX_LEN || len > MAPPED_END - addr)
                return "table length implausible";
        if (sig && memcmp(t->signature, sig, 4) != 0)
                return "table signature mismatch";
        if (sum_bytes(phys(addr), len) != 0)
                return "table checksum error";
        return NULL;
}

const char *acpi_open(uint64_t hint, struct acpi_root *out)
{
        const uint8_t *rsdp;
        uint64_t root;
        const char *err;

        memset(out, 0, sizeof(*out));
        if (hint) {
                if (hint >= MAPPED_END - RSDP_V2_LEN)
                        return "RSDP outside the low 4 GiB";
                if (!rsdp_valid(phys(hint)))
                        return "RSDP signature or checksum error";
                out->rsdp_addr = hint;
        } else {
                out->rsdp_addr = rsdp_scan();
                out->rsdp_scanned = true;
                if (!out->rsdp_addr)
                        return "no RSDP";
        }
        rsdp = phys(out->rsdp_addr);

        root = 0;
        out->entry_size = 4;
        if (rsdp[RSDP_OEM_REV] >= 2) {
                uint32_t len = load_le32(rsdp + RSDP_LENGTH);

                if (len < RSDP_V2_LEN || len > 4096 || sum_bytes(rsdp, len) != 0)
                        return "RSDP extended checksum error";
                root = load_le64(rsdp + RSDP_XSDT);
                out->entry_size = 8;
        }
        if (!root) {
                root = load_le32(rsdp + RSDP_RSDT);
                out->entry_size = 4;
        }
        err = acpi_check_table(root, out->entry_size == 8 ? "XSDT" : "RSDT");
        if (err)
                return err;
        out->root = (const struct acpi_sdt *)phys(root);
        out->count = (out->root->length - SDT_HEADER_LEN) / out->entry_size;
        return NULL;
}

uint64_t acpi_root_entry(const struct acpi_root *r, unsigned i)
{
        const uint8_t *e = (const uint8_t *)r->root + SDT_HEADER_LEN + i * r->entry_size;

        return r->entry_size == 8 ? load_le64(e) : load_le32(e);
}

const struct acpi_sdt *acpi_find(const struct acpi_root *r, const char *sig)
{
        for (unsigned i = 0; i < r->count; i++) {
                uint64_t a = acpi_root_entry(r, i);

                if (!acpi_check_table(a, sig))
                        return (const struct acpi_sdt *)phys(a);
        }
        return NULL;
}

uint64_t acpi_fadt_dsdt(const struct acpi_sdt *fadt)
{
        const uint8_t *f = (const uint8_t *)fadt;
        uint64_t x = 0;

        if (fadt->length >= FADT_X_DSDT + 8)
                x = load_le64(f + FADT_X_DSDT);
        return x ? x : load_le32(f + FADT_DSDT);
}

const char *acpi_parse_madt(const struct acpi_sdt *madt, struct acpi_madt *out)
{
        const uint8_t *m = (const uint8_t *)madt;
        uint32_t off = MADT_ENTRIES;

        memset(out, 0, sizeof(*out));
        if (madt->length < MADT_ENTRIES)
                return "MADT too short";
        out->lapic_addr = load_le32(m + MADT_LAPIC_ADDR);
        while (off + 2 <= madt->length) {
                const uint8_t *e = m + off;
                uint8_t type = e[0], len = e[1];

                if (len < 2 || off + len > madt->length)
                        return "MADT entry length error";
                if (type == MADT_LAPIC && len >= 8 && (load_le32(e + 4) & 1)) {
                        if (out->cpus < ACPI_MAX_CPUS)
                                out->apic_ids[out->cpus] = e[3];
                        out->cpus++;
                } else if (type == MADT_IOAPIC && len >= 12 && out->ioapics < ACPI_MAX_IOAPICS) {
                        out->ioapic[out->ioapics].id = e[2];
                        out->ioapic[out->ioapics].addr = load_le32(e + 4);
                        out->ioapic[out->ioapics].gsi_base = load_le32(e + 8);
                        out->ioapics++;
                } else if (type == MADT_OVERRIDE && len >= 10 &&
                           out->overrides < ACPI_MAX_OVERRIDES) {
                        out->override[out->overrides].irq = e[3];
                        out->override[out->overrides].gsi = load_le32(e + 4);
                        out->override[out->overrides].flags = load_le16(e + 8);
                        out->overrides++;
                } else if (type == MADT_LAPIC_ADDR64 && len >= 12) {
                        out->lapic_addr = load_le64(e + 4);
                }
                off += len;
        }
        return NULL;
}

void acpi_fadt_reset(const struct acpi_sdt *fadt)
{
        const uint8_t *f = (const uint8_t *)fadt;
        const uint8_t *gas = f + FADT_RESET_REG;
        uint64_t addr;
        uint8_t value;

        if (fadt->length <= FADT_RESET_VALUE || !(load_le32(f + FADT_FLAGS) & FADT_RESET_REG_SUP))
                return;
        addr = load_le64(gas + 4);
        value = f[FADT_RESET_VALUE];
        /* The spec makes the reset register 8 bits wide, so one byte write is the access. */
        if (gas[0] == GAS_SYSTEM_IO && addr <= 0xffff)
                outb((uint16_t)addr, value);
        else if (gas[0] == GAS_SYSTEM_MEMORY && addr && addr < MAPPED_END)
                mmio_write8(addr, value);
}

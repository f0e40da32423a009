#include "mptable.h"

#include "str.h"

#define FP_LEN          16
#define CFG_HEADER_LEN  44
#define CFG_MAX_LEN     0x10000u
#define ENTRY_PROCESSOR 0
#define ENTRY_BUS       1
#define ENTRY_IOAPIC    2
#define ENTRY_IOINT     3
#define ENTRY_LINT      4
#define CPU_ENABLED     0x01
#define CPU_BSP         0x02

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

static uint64_t scan(uint64_t start, uint64_t len)
{
        for (uint64_t a = start; a + FP_LEN <= start + len; a += 16) {
                const uint8_t *p = phys(a);
                if (memcmp(p, "_MP_", 4) == 0 && p[8] == 1 && sum_bytes(p, FP_LEN) == 0)
                        return a;
        }
        return 0;
}

/* Walks by length, as Linux does; the header's entry count is reported, not trusted
 * (QEMU's qboot leaves it 0). */
static const char *parse_entries(const uint8_t *cfg, uint32_t len, struct mptable *out)
{
        uint32_t off = CFG_HEADER_LEN;

        out->header_count = load_le16(cfg + 34);
        while (off < len) {
                uint32_t size = cfg[off] == ENTRY_PROCESSOR ? 20 : 8;

                if (off + size > len)
                        return "MP table entries overrun the table";
                switch (cfg[off]) {
                case ENTRY_PROCESSOR:
                        if (cfg[off + 3] & CPU_ENABLED)
                                out->cpus++;
                        if (cfg[off + 3] & CPU_BSP)
                                out->bsp_apic_id = cfg[off + 1];
                        break;
                case ENTRY_IOAPIC:
                        if (!out->ioapics++)
                                out->ioapic_addr = load_le32(cfg + off + 4);
                        break;
                case ENTRY_IOINT:
                        out->irqs++;
                        break;
                case ENTRY_LINT:
                        out->lints++;
                        break;
                case ENTRY_BUS:
                        break;
                default:
                        return "unknown MP table entry type";
                }
                out->entries++;
                off += size;
        }
        return NULL;
}

const char *mptable_find(struct mptable *out)
{
        const uint8_t *fp, *cfg;
        uint32_t len;

        memset(out, 0, sizeof(*out));
        out->fp_addr = scan(0, 0x400);
        if (!out->fp_addr)
                out->fp_addr = scan(639 * 0x400, 0x400);
        if (!out->fp_addr)
                out->fp_addr = scan(0xf0000, 0x10000);
        if (!out->fp_addr)
                return "none";
        fp = phys(out->fp_addr);
        out->cfg_addr = load_le32(fp + 4);
        if (!out->cfg_addr || out->cfg_addr >= 0x100000)
                return "MP floating pointer has no configuration table below 1 MiB";
        cfg = phys(out->cfg_addr);
        len = load_le16(cfg + 4);
        if (memcmp(cfg, "PCMP", 4) != 0)
                return "MP configuration table has a bad signature";
        if (len < CFG_HEADER_LEN || len > CFG_MAX_LEN || sum_bytes(cfg, len) != 0)
                return "MP configuration table has a bad length or checksum";
        memcpy(out->oem, cfg + 8, 8);
        out->oem[8] = '\0';
        return parse_entries(cfg, len, out);
}

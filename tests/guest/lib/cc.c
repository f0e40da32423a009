#include "cc.h"

#include "cpu.h"

#include "acpi.h"
#include "aml.h"
#include "cmdline.h"
#include "io.h"
#include "probe.h"
#include "str.h"

#define WIN_MAGIC    0x00
#define WIN_PLATFORM 0x08
#define WIN_ARG0     0x10
#define WIN_RET0     0x30
#define WIN_RET1     0x38
#define WIN_CALL     0x40
#define WIN_MAGIC_V  0x4c4c41434d4d5643ull /* "CVMMCALL" */
#define WIN_HID      "CVMM0001"
#define PAGE         4096ull

static void fmt(char *buf, size_t size, const char *f, ...) PRINTF_LIKE(3, 4);
static void fmt(char *buf, size_t size, const char *f, ...)
{
        va_list ap;

        va_start(ap, f);
        print_vbuf(buf, size, f, ap);
        va_end(ap);
}

static const char *kind_name(enum cc_kind k)
{
        switch (k) {
        case CCK_SEV:
                return "sev";
        case CCK_PEF:
                return "pef";
        case CCK_S390:
                return "s390-pv";
        default:
                return "none";
        }
}

static enum cc_kind parse_kind(const char *v, size_t len)
{
        for (int k = CCK_SEV; k <= CCK_S390; k++) {
                const char *n = kind_name((enum cc_kind)k);
                if (str_len(n) == len && memcmp(v, n, len) == 0)
                        return (enum cc_kind)k;
        }
        probe_fail("cc.platform: unknown platform");
}

/* The CVMM0001 window in the DSDT (through the FADT), or 0. */
static uint64_t window_from_acpi(const struct boot_info *bi)
{
        static struct aml_result r;
        struct acpi_root root;
        const struct acpi_sdt *fadt;
        uint64_t dsdt;

        if (acpi_open(bi->rsdp_addr, &root))
                return 0;
        fadt = acpi_find(&root, "FACP");
        if (!fadt)
                return 0;
        dsdt = acpi_fadt_dsdt(fadt);
        if (acpi_check_table(dsdt, "DSDT"))
                return 0;
        aml_find_hid(dsdt, WIN_HID, &r);
        if (r.count > 1)
                probe_fail("%u CVMM0001 devices in the DSDT", r.count);
        if (r.count == 1 && r.dev[0].size < 0x48)
                probe_fail("the CVMM0001 window is %u bytes", r.dev[0].size);
        return r.count ? r.dev[0].base : 0;
}

void cc_discover(const struct boot_info *bi, struct cc_info *out)
{
        size_t len;
        const char *v = cmdline_find(bi->cmdline, "cc.platform", &len);
        uint64_t acpi_win = window_from_acpi(bi), cmd_win = 0;

        memset(out, 0, sizeof(*out));
        out->kind = v ? parse_kind(v, len) : CCK_NONE;
        out->name = kind_name(out->kind);
        out->granule = out->kind == CCK_PEF ? PEF_PAGE : PAGE;
        if (v)
                out->via |= CC_VIA_CMDLINE;
        v = cmdline_find(bi->cmdline, "cc.callwin", &len);
        if (v) {
                if (len < 3 || v[0] != '0' || v[1] != 'x' ||
                    !str_parse_u64(v + 2, len - 2, 16, &cmd_win))
                        probe_fail("cc.callwin: not a hex address");
        }
        if (acpi_win && cmd_win && acpi_win != cmd_win)
                probe_fail("call window 0x%llx in the DSDT but 0x%llx on the command line",
                           U64(acpi_win), U64(cmd_win));
        out->callwin = acpi_win ? acpi_win : cmd_win;
        if (acpi_win)
                out->via |= CC_VIA_ACPI;
        if (out->kind == CCK_SEV || out->kind == CCK_NONE) {
                if (out->callwin)
                        probe_fail("a call window on a %s VM", out->name);
                return;
        }
        if (!out->callwin)
                probe_fail("%s without a call window", out->name);
        if (mmio_read64(out->callwin + WIN_MAGIC) != WIN_MAGIC_V)
                probe_fail("call window 0x%llx: bad magic 0x%llx", U64(out->callwin),
                           U64(mmio_read64(out->callwin + WIN_MAGIC)));
        if (mmio_read64(out->callwin + WIN_PLATFORM) != (uint64_t)out->kind)
                probe_fail("call window 0x%llx: platform %llu, the command line says %s",
                           U64(out->callwin), U64(mmio_read64(out->callwin + WIN_PLATFORM)),
                           out->name);
}

/* ---- sev ---- */

uint64_t cc_ghcb_call(uint64_t request)
{
        cpu_wrmsr(GHCB_MSR, request);
        return cpu_rdmsr(GHCB_MSR);
}

uint64_t cc_sev_psc(uint64_t gpa, unsigned op)
{
        return cc_ghcb_call(GHCB_PSC_REQ | (gpa & 0x000ffffffffff000ull) | ((uint64_t)op << 52));
}

/* ---- the platform-call window ---- */

uint64_t cc_window_call(const struct cc_info *cc, uint64_t kind, uint64_t a0, uint64_t a1,
                        uint64_t a2, uint64_t a3, uint64_t *ret1)
{
        uint64_t w = cc->callwin;

        mmio_write64(w + WIN_ARG0, a0);
        mmio_write64(w + WIN_ARG0 + 8, a1);
        mmio_write64(w + WIN_ARG0 + 16, a2);
        mmio_write64(w + WIN_ARG0 + 24, a3);
        mmio_write64(w + WIN_CALL, kind);
        if (ret1)
                *ret1 = mmio_read64(w + WIN_RET1);
        return mmio_read64(w + WIN_RET0);
}

int64_t cc_ucall(const struct cc_info *cc, uint64_t r3, uint64_t r4, uint64_t r5, uint64_t r6)
{
        return (int64_t)cc_window_call(cc, CCW_POWER_UCALL, r3, r4, r5, r6, NULL);
}

uint64_t cc_uvc(const struct cc_info *cc, void *cb)
{
        return cc_window_call(cc, CCW_S390_UVC, (uint64_t)(uintptr_t)cb, 0, 0, 0, NULL);
}

uint64_t cc_uvc_share(const struct cc_info *cc, uint16_t cmd, uint64_t paddr, uint16_t *rc)
{
        /* The control block lives in the probe's own (private) memory. */
        static struct uv_cb_share cb __attribute__((aligned(8)));
        uint64_t cond;

        memset(&cb, 0, sizeof(cb));
        cb.len = UV_CB_SHARE_LEN;
        cb.cmd = cmd;
        cb.paddr = paddr;
        cond = cc_uvc(cc, &cb);
        *rc = *(volatile uint16_t *)&cb.rc;
        return cond;
}

uint64_t cc_diag308(const struct cc_info *cc, uint64_t subcode, uint64_t hdr)
{
        return cc_window_call(cc, CCW_S390_DIAG, subcode, hdr, 0, 0, NULL);
}

/* ---- transitions ---- */

/* What the guest hands the ultravisor / the s390 firmware, in RAM. */
static uint8_t esm_blob[16]
    __attribute__((aligned(16))) = {'C', 'V', 'M', 'M', 'E', 'S', 'M', 0, 1, 0, 0, 0};
static uint8_t se_header[64]
    __attribute__((aligned(16))) = {'I', 'B', 'M', 'S', 'e', 'c', 'E', 'x'};

const char *cc_go_secure(const struct cc_info *cc)
{
        static char why[64];

        if (cc->kind == CCK_PEF) {
                int64_t r = cc_ucall(cc, UV_ESM, (uintptr_t)esm_blob, 0, 0);
                if (r != U_SUCCESS) {
                        fmt(why, sizeof(why), "UV_ESM returned %lld", (long long)r);
                        return why;
                }
        } else if (cc->kind == CCK_S390) {
                uint64_t rc = cc_diag308(cc, DIAG308_PV_IPL, (uintptr_t)se_header);
                if (rc != DIAG308_RC_OK) {
                        fmt(why, sizeof(why), "DIAG 0x308 returned 0x%llx", U64(rc));
                        return why;
                }
        }
        return NULL;
}

const void *cc_transition_blob(const struct cc_info *cc)
{
        return cc->kind == CCK_PEF ? (const void *)esm_blob : (const void *)se_header;
}

static const char *convert(const struct cc_info *cc, void *p, uint64_t len, bool to_shared)
{
        static char why[96];
        uint64_t a = (uint64_t)(uintptr_t)p;

        if (!len || (a | len) & (cc->granule - 1))
                return "range is not granule-aligned";
        if (cc->kind == CCK_PEF) {
                int64_t r = cc_ucall(cc, to_shared ? UV_SHARE_PAGE : UV_UNSHARE_PAGE, a / PEF_PAGE,
                                     len / PEF_PAGE, 0);
                if (r != U_SUCCESS) {
                        fmt(why, sizeof(why), "%s returned %lld",
                            to_shared ? "UV_SHARE_PAGE" : "UV_UNSHARE_PAGE", (long long)r);
                        return why;
                }
                return NULL;
        }
        for (uint64_t g = a; g < a + len; g += PAGE) {
                if (cc->kind == CCK_SEV) {
                        uint64_t resp =
                            cc_sev_psc(g, to_shared ? GHCB_PSC_SHARED : GHCB_PSC_PRIVATE);
                        if ((resp & 0xfff) != GHCB_PSC_RESP || resp >> 32) {
                                fmt(why, sizeof(why),
                                    "page-state change of 0x%llx: response 0x%llx", U64(g),
                                    U64(resp));
                                return why;
                        }
                } else if (cc->kind == CCK_S390) {
                        uint16_t rc = 0;
                        uint64_t cond = cc_uvc_share(
                            cc, to_shared ? UVC_SET_SHARED : UVC_REMOVE_SHARED, g, &rc);
                        if (cond != 0 || rc != UVC_RC_EXECUTED) {
                                fmt(why, sizeof(why), "UVC 0x%x on 0x%llx: cc %llu rc 0x%x",
                                    to_shared ? UVC_SET_SHARED : UVC_REMOVE_SHARED, U64(g),
                                    U64(cond), rc);
                                return why;
                        }
                } else {
                        return "no confidential platform";
                }
        }
        return NULL;
}

const char *cc_share(const struct cc_info *cc, void *p, uint64_t len)
{
        return convert(cc, p, len, true);
}

const char *cc_unshare(const struct cc_info *cc, void *p, uint64_t len)
{
        return convert(cc, p, len, false);
}

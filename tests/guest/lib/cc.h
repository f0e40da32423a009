/*
 * The guest side of the VMM's confidential platforms (docs/confidential.md; the
 * VMM documents the interfaces in arch/cc/cc.h). Only x86 KVM runs here, so the probe
 * drives all three models from x86:
 *
 *  - sev: the SNP GHCB MSR protocol on MSR 0xC0010130: a page-state change request (code
 *    0x014, GFN in bits 51:12, operation in 55:52: 1 private, 2 shared) is a WRMSR; the
 *    response (code 0x015, error in bits 63:32) is read back with RDMSR. On hardware a
 *    VMGEXIT follows the WRMSR; the VMM's model acts on the write.
 *  - pef and s390-pv: the platform-call window, an MMIO page found in the DSDT (_HID
 *    "CVMM0001", a Memory32Fixed window) and on the command line ("cc.platform=pef
 *    cc.callwin=0xc0080000"). 64-bit little-endian registers: MAGIC 0x00 ("CVMMCALL"),
 *    PLATFORM 0x08 (2 pef, 3 s390-pv), ARG0-3 0x10-0x28, RET0-1 0x30/0x38, CALL 0x40
 *    (1 POWER ultravisor call, 3 s390 UVC, 4 s390 DIAG 0x308).
 *      pef: ARG0..3 = r3..r6 (r3 the ucall number), RET0 = r3 after the call (U_SUCCESS 0
 *      or an H_* code). UV_ESM (r4 = the ESM blob, "CVMMESM\0" + le32 1, in RAM) makes
 *      the VM secure; UV_SHARE_PAGE / UV_UNSHARE_PAGE (r4 = 64 KiB page frame, r5 = count)
 *      both zero the pages; UV_UNSHARE_ALL_PAGES.
 *      s390-pv: UVC with ARG0 = the control block (in the guest's own memory, which the
 *      ultravisor may read even when private), RET0 = the condition code; DIAG 0x308 with
 *      ARG0 = subcode (10: PV IPL) and ARG1 = the Secure Execution header ("IBMSecEx"),
 *      RET0 = the response code.
 *
 * Guest RAM is identity-mapped: a pointer is its guest physical address.
 */
#ifndef PROBE_CC_H
#define PROBE_CC_H

#include <stdbool.h>
#include <stdint.h>

#include "bootinfo.h"

enum cc_kind { CCK_NONE = 0, CCK_SEV = 1, CCK_PEF = 2, CCK_S390 = 3 };

#define CC_VIA_ACPI    1u
#define CC_VIA_CMDLINE 2u

/* SEV: the GHCB MSR protocol. */
#define GHCB_MSR         0xc0010130u
#define GHCB_PSC_REQ     0x014ull
#define GHCB_PSC_RESP    0x015ull
#define GHCB_PSC_PRIVATE 1u
#define GHCB_PSC_SHARED  2u

/* pef: ucall numbers and return codes. */
#define UV_ESM               0xf110
#define UV_SHARE_PAGE        0xf130
#define UV_UNSHARE_PAGE      0xf134
#define UV_UNSHARE_ALL_PAGES 0xf140
#define U_SUCCESS            0
#define H_FUNCTION           (-2)
#define H_PARAMETER          (-4)
#define H_P2                 (-55)
#define H_UNSUPPORTED        (-67)
#define H_STATE              (-75)
#define PEF_PAGE             0x10000ull

/* s390-pv: UVC commands, return codes, DIAG 0x308. */
#define UVC_QUI               0x0001
#define UVC_SET_SHARED        0x1000
#define UVC_REMOVE_SHARED     0x1001
#define UVC_RC_EXECUTED       0x0001
#define UVC_RC_INV_CMD        0x0002
#define UVC_RC_INV_STATE      0x0003
#define UVC_RC_INV_LEN        0x0005
#define UVC_RC_INV_ADDR       0x0101
#define UV_CB_SHARE_LEN       0x30
#define UV_CB_QUI_LEN         0x88
#define DIAG308_PV_IPL        10
#define DIAG308_RC_OK         0x0001
#define DIAG308_RC_NOCONFIG   0x0102
#define DIAG308_RC_INV_SUBCDE 0x0402

/* Call kinds of the window's CALL register. */
#define CCW_POWER_UCALL 1
#define CCW_S390_UVC    3
#define CCW_S390_DIAG   4

struct cc_info {
        enum cc_kind kind;
        const char *name; /* "sev", "pef", "s390-pv", "none" */
        uint64_t callwin; /* 0 for sev */
        unsigned via;     /* CC_VIA_*: where the platform / window was found */
        uint64_t granule; /* what one share call covers: 4 KiB, pef 64 KiB */
};

/* struct uv_cb_share (Linux arch/s390/include/asm/uv.h), little-endian in this model. */
struct uv_cb_share {
        uint16_t len, cmd, rc, rrc;
        uint64_t reserved08[3];
        uint64_t paddr; /* 0x20 */
        uint64_t reserved28;
} __attribute__((packed));

/* struct uv_cb_qui as far as the model fills it: the installed-calls list at 0x10. */
struct uv_cb_qui {
        uint16_t len, cmd, rc, rrc;
        uint64_t reserved08;
        uint8_t calls[32]; /* 0x10: bit n from the left = call n installed */
        uint8_t rest[UV_CB_QUI_LEN - 0x30];
} __attribute__((packed));

/* cc.platform= and cc.callwin= on the command line, the CVMM0001 device in the DSDT; fails
 * the scenario when they contradict each other or the window does not answer with its
 * magic and platform. kind CCK_NONE when the VM has no platform. */
void cc_discover(const struct boot_info *bi, struct cc_info *out);

/* sev: one GHCB MSR round trip (WRMSR request, RDMSR response). */
uint64_t cc_ghcb_call(uint64_t request);
/* sev: page-state change of the 4 KiB page at gpa; returns the raw response. */
uint64_t cc_sev_psc(uint64_t gpa, unsigned op);

/* The window: one call of `kind` with ARG0-3; returns RET0 (RET1 in *ret1 when asked). */
uint64_t cc_window_call(const struct cc_info *cc, uint64_t kind, uint64_t a0, uint64_t a1,
                        uint64_t a2, uint64_t a3, uint64_t *ret1);
/* pef: an ultravisor call; returns r3. */
int64_t cc_ucall(const struct cc_info *cc, uint64_t r3, uint64_t r4, uint64_t r5, uint64_t r6);
/* s390-pv: UVC on a control block; returns the condition code. */
uint64_t cc_uvc(const struct cc_info *cc, void *cb);
/* s390-pv: a share/unshare control block for paddr, and the UVC; returns the cc (the rc is
 * left in *rc). */
uint64_t cc_uvc_share(const struct cc_info *cc, uint16_t cmd, uint64_t paddr, uint16_t *rc);
/* s390-pv: DIAG 0x308; returns the response code. */
uint64_t cc_diag308(const struct cc_info *cc, uint64_t subcode, uint64_t hdr);

/* The guest-originated transition (pef: UV_ESM with the model's ESM blob; s390-pv: the PV
 * IPL with a Secure Execution header, both placed in RAM here). NULL, or why it failed.
 * sev: nothing to do (private from launch). */
const char *cc_go_secure(const struct cc_info *cc);
/* What cc_go_secure hands over: the ESM blob (pef) or the Secure Execution header (s390-pv). */
const void *cc_transition_blob(const struct cc_info *cc);
/* Shares / unshares [p, p + len) through the platform's protocol: granule-aligned (pef:
 * 64 KiB) ranges. NULL, or why the platform refused. pef zeroes the pages both ways. */
const char *cc_share(const struct cc_info *cc, void *p, uint64_t len);
const char *cc_unshare(const struct cc_info *cc, void *p, uint64_t len);

#endif

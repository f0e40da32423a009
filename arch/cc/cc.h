/*
 * Confidential-guest platforms: software models of who owns guest memory under AMD SEV/SNP
 * ("sev"), IBM POWER PEF ("pef") and IBM Z Protected Virtualization ("s390-pv"), driven by
 * an x86 guest (docs/confidential.md). One backend per platform behind this
 * interface: initialise, describe the platform to the guest, handle its exits and calls,
 * transition to secure mode, share/unshare, and show the host what it may see.
 *
 * The platform owns the VM's ownership map (memory/ownership.h); every device accessor is
 * bound to it. The platform itself is the trusted side: it reads control blocks in private
 * memory and zeroes pages through guest_mem directly. Its statistics are read without a
 * lock (a metrics flush never waits for a guest's call).
 *
 * Guest interfaces:
 *  - sev: the SNP GHCB MSR protocol on MSR 0xC0010130 (page-state change request 0x014:
 *    GFN in bits 51:12, operation in 55:52 (1 private, 2 shared); response 0x015 with the
 *    error code in bits 63:32), served from user-space MSR exits; KVM_HC_MAP_GPA_RANGE
 *    hypercall exits (the path real SEV guests use).
 *  - pef and s390-pv: the platform-call window, an MMIO page at X86_CC_CALLWIN_ADDR
 *    described in the DSDT (_HID "CVMM0001") and on the command line
 *    ("cc.platform=pef cc.callwin=0xc0080000"). Little-endian 64-bit registers (8-byte
 *    accesses, or 4-byte halves):
 *      0x00 MAGIC    RO  0x4c4c41434d4d5643 ("CVMMCALL")
 *      0x08 PLATFORM RO  2 = pef, 3 = s390-pv
 *      0x10 ARG0     RW  pef: r3 (the ucall number); s390: UVC r1 (control block address)
 *                        or the DIAG 0x308 subcode
 *      0x18 ARG1     RW  pef: r4; s390 DIAG 0x308: address of the Secure Execution header
 *      0x20 ARG2     RW  pef: r5
 *      0x28 ARG3     RW  pef: r6
 *      0x30 RET0     RO  pef: r3 after the call (U_SUCCESS 0 or an H_* code);
 *                        s390: the condition code (UVC) or the DIAG 0x308 response code
 *      0x38 RET1     RO  pef: r4 after the call
 *      0x40 CALL     WO  1 = POWER ultravisor call (sc 2), 3 = s390 UVC, 4 = s390 DIAG 0x308
 *    One window per VM: a guest with several vCPUs serialises its calls.
 */
#ifndef ARCH_CC_CC_H
#define ARCH_CC_CC_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/platform.h"
#include "common/error.h"
#include "common/util.h"
#include "memory/guest_mem.h"
#include "memory/ownership.h"

enum cc_platform {
        CC_PLATFORM_NONE = 0,
        CC_PLATFORM_SEV = 1,
        CC_PLATFORM_PEF = 2,
        CC_PLATFORM_S390_PV = 3,
};

#define CC_CALLWIN_MAGIC 0x4c4c41434d4d5643ull
#define CC_CALLWIN_HID   "CVMM0001"
enum {
        CC_CALLWIN_REG_MAGIC = 0x00,
        CC_CALLWIN_REG_PLATFORM = 0x08,
        CC_CALLWIN_REG_ARG0 = 0x10,
        CC_CALLWIN_REG_ARG1 = 0x18,
        CC_CALLWIN_REG_ARG2 = 0x20,
        CC_CALLWIN_REG_ARG3 = 0x28,
        CC_CALLWIN_REG_RET0 = 0x30,
        CC_CALLWIN_REG_RET1 = 0x38,
        CC_CALLWIN_REG_CALL = 0x40,
};
enum { CC_CALL_POWER_UCALL = 1, CC_CALL_S390_UVC = 3, CC_CALL_S390_DIAG308 = 4 };

/* POWER ultravisor calls and hcall return codes (docs/confidential.md, "pef"). */
#define UV_ESM               0xf110
#define UV_SHARE_PAGE        0xf130
#define UV_UNSHARE_PAGE      0xf134
#define UV_UNSHARE_ALL_PAGES 0xf140
#define UV_PAGE_OUT          0xf12c
#define H_SVM_PAGE_IN        0xef00
#define H_SVM_INIT_START     0xef08
#define H_SVM_INIT_DONE      0xef0c
#define H_SVM_INIT_ABORT     0xef14
#define U_SUCCESS            0
#define H_FUNCTION           (-2)
#define H_PARAMETER          (-4)
#define H_P2                 (-55)
#define H_P3                 (-56)
#define H_UNSUPPORTED        (-67)
#define H_STATE              (-75)
#define PEF_GRANULE          0x10000ull
/* The model's ESM blob (what UV_ESM's r4 points to): "CVMMESM\0" then le32 version 1. */
#define PEF_ESM_MAGIC "CVMMESM"

/* s390 ultravisor calls (Linux arch/s390/include/asm/uv.h). */
#define UVC_CMD_QUI                  0x0001
#define UVC_CMD_CONV_TO_SEC_STOR     0x0200 /* import */
#define UVC_CMD_CONV_FROM_SEC_STOR   0x0201 /* export */
#define UVC_CMD_SET_SHARED_ACCESS    0x1000
#define UVC_CMD_REMOVE_SHARED_ACCESS 0x1001
#define UVC_RC_EXECUTED              0x0001
#define UVC_RC_INV_CMD               0x0002
#define UVC_RC_INV_STATE             0x0003
#define UVC_RC_INV_LEN               0x0005
#define UVC_RC_INV_ADDR              0x0101 /* share/unshare: not guest memory, or misaligned */
#define UV_CB_SHARE_LEN              0x30
#define UV_CB_QUI_LEN                0x88
#define DIAG308_PV_IPL               10
#define DIAG308_RC_OK                0x0001
#define DIAG308_RC_NOCONFIG          0x0102 /* no valid Secure Execution image / bad state */
#define DIAG308_RC_INV_SUBCODE       0x0402
/* The model's Secure Execution header: the real image's magic. */
#define S390_SE_MAGIC "IBMSecEx"

/* SEV: the GHCB MSR protocol and KVM_HC_MAP_GPA_RANGE. */
#define SEV_GHCB_MSR            0xc0010130
#define GHCB_MSR_INFO_MASK      0xfffull
#define GHCB_MSR_SEV_INFO_RESP  0x001
#define GHCB_MSR_SEV_INFO_REQ   0x002
#define GHCB_MSR_PSC_REQ        0x014
#define GHCB_MSR_PSC_RESP       0x015
#define GHCB_PSC_OP_PRIVATE     1
#define GHCB_PSC_OP_SHARED      2
#define GHCB_PSC_ERR_OP         1 /* operation is neither private nor shared */
#define GHCB_PSC_ERR_GFN        2 /* not guest RAM */
#define MAP_GPA_RANGE_ENCRYPTED (1ull << 4)
#define MAP_GPA_RANGE_PAGE_MASK 0xfull
#define MAP_GPA_RANGE_ATTR_MASK 0x1full

struct cc_config {
        enum cc_platform platform;
};

struct cc_stats {
        bool secure;
        uint64_t calls;              /* platform calls (window, MSR protocol, hypercalls) */
        uint64_t failed_calls;       /* answered with an error code */
        uint64_t shared, unshared;   /* granules converted by the guest */
        uint64_t secure_transitions; /* UV_ESM / PV IPL / SEV launch */
        uint64_t page_outs;          /* pef UV_PAGE_OUT, s390 export */
        uint64_t page_ins;           /* pef H_SVM_PAGE_IN, s390 import */
        uint64_t host_private_reads; /* private 4 KiB pages a host reader saw as ciphertext */
};

struct cc;

const char *cc_platform_name(enum cc_platform p);
int cc_platform_parse(const char *s, enum cc_platform *out);

/* NULL-safe: a VM without a platform has cc == NULL everywhere. */
int cc_create(const struct cc_config *cfg, struct guest_mem *mem, struct error *err,
              struct cc **out) MUST_CHECK;
void cc_destroy(struct cc *cc);

enum cc_platform cc_platform_of(const struct cc *cc);
/* Ownership is enforced (sev from launch; pef and s390-pv after the guest's transition). */
bool cc_secure(struct cc *cc);
struct ownership *cc_ownership(struct cc *cc);

/* What the platform adds to the machine, from the configuration alone (the VM and
 * --dump-platform agree): the call window's board entry (pef, s390-pv: true, *out filled;
 * the board places it), and "cc.platform=NAME [cc.callwin=ADDR]" on the kernel command
 * line, with the window's address as the board placed it (callwin NULL: none). */
bool cc_describe_callwin(enum cc_platform p, struct platform_dev *out);
int cc_cmdline_append(enum cc_platform p, const struct platform_dev *callwin, char *cmdline,
                      size_t cap, struct error *err) MUST_CHECK;
bool cc_platform_has_callwin(enum cc_platform p);
bool cc_has_callwin(const struct cc *cc);
void cc_callwin_read(struct cc *cc, uint64_t off, uint8_t *data, uint32_t len);
void cc_callwin_write(struct cc *cc, uint64_t off, const uint8_t *data, uint32_t len);

/* The platform's share of vCPU exits: SEV's MSR protocol and MAP_GPA_RANGE, and guest
 * accesses to granules the host paged out (an MMIO exit on RAM, an emulation failure or
 * EFAULT on hardware). Returns true when the exit was the platform's and is complete. */
bool cc_handle_exit(struct cc *cc, unsigned vcpu, int vcpu_fd, struct kvm_run *run);
/* KVM_RUN failed with EFAULT or an emulation failure: pages back in what the guest may
 * have touched. True when something was paged in (retry the vCPU). */
bool cc_handle_fault(struct cc *cc, int vcpu_fd);
/* The MSRs user space must see (KVM_X86_SET_MSR_FILTER), or 0 entries. */
unsigned cc_intercepted_msrs(const struct cc *cc, uint32_t *msrs, unsigned max);
/* Whether KVM_HC_MAP_GPA_RANGE must exit to user space (KVM_CAP_EXIT_HYPERCALL). */
bool cc_wants_map_gpa_range(const struct cc *cc);

/* The untrusted host reading guest memory, as a dump or a debugger would (CC-8): shared
 * granules in the clear, private ones as the platform shows them to the host -- sev: the
 * XTS-AES ciphertext under the VM's key, the address as tweak; pef: UV_PAGE_OUT (encrypted,
 * and unmapped from the guest until it touches the granule again); s390-pv: export (the
 * same; imported back on the guest's next access). Never the plaintext of a private granule,
 * nothing two reads combine into one, no change to what the guest reads. Called from the VMM
 * thread: it never waits for a guest's platform call. */
int cc_host_read(struct cc *cc, gpa_t gpa, void *buf, size_t len) MUST_CHECK;

void cc_get_stats(struct cc *cc, struct cc_stats *out);

/* pef: the flattened device tree a POWER guest of this machine would receive (memory,
 * cpus, virtio-mmio nodes, the ultravisor and secure memory). Caller frees *fdt. */
int cc_pef_fdt(const struct platform_desc *desc, uint64_t mem_size, const char *cmdline, void **fdt,
               size_t *len, struct error *err) MUST_CHECK;

#endif

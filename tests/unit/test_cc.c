/* The confidential platform models: SEV's GHCB MSR protocol and MAP_GPA_RANGE (synthesized
 * exits: hypercalls do not complete on this project's KVM), PEF ultravisor calls, s390 UVC
 * and the PV IPL, the call window, CC-8 host reads and CC-12 refusals. */
#include <errno.h>
#include <libfdt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#include <linux/kvm_para.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/cc/cc.h"
#include "arch/x86/layout.h"
#include "fakes.h"
#include "memory/hostmem.h"

#define MEM (8u << 20)
#define G   4096ull

struct fx {
        struct guest_mem *mem;
        struct cc *cc;
};

static struct fx *fx_new(enum cc_platform p)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct cc_config c = {.platform = p};
        struct error err = {0};

        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(cc_create(&c, f->mem, &err, &f->cc), 0);
        return f;
}

static void fx_free(struct fx *f)
{
        cc_destroy(f->cc);
        guest_mem_destroy(f->mem);
        free(f);
}

static uint64_t win_read(struct cc *cc, uint64_t off)
{
        uint8_t b[8];
        cc_callwin_read(cc, off, b, 8);
        return get_le64(b);
}

static void win_write(struct cc *cc, uint64_t off, uint64_t v)
{
        uint8_t b[8];
        put_le64(b, v);
        cc_callwin_write(cc, off, b, 8);
}

/* A POWER ucall through the window: r3..r5 in, r3 out. */
static int64_t ucall(struct cc *cc, uint64_t nr, uint64_t r4, uint64_t r5)
{
        win_write(cc, CC_CALLWIN_REG_ARG0, nr);
        win_write(cc, CC_CALLWIN_REG_ARG1, r4);
        win_write(cc, CC_CALLWIN_REG_ARG2, r5);
        win_write(cc, CC_CALLWIN_REG_CALL, CC_CALL_POWER_UCALL);
        return (int64_t)win_read(cc, CC_CALLWIN_REG_RET0);
}

static void test_platform_names(void **state)
{
        enum cc_platform p;

        (void)state;
        assert_int_equal(cc_platform_parse("sev", &p), 0);
        assert_int_equal(p, CC_PLATFORM_SEV);
        assert_int_equal(cc_platform_parse("s390-pv", &p), 0);
        assert_int_equal(p, CC_PLATFORM_S390_PV);
        assert_int_equal(cc_platform_parse("tdx", &p), -EINVAL);
        assert_string_equal(cc_platform_name(CC_PLATFORM_PEF), "pef");
}

/* ---- SEV ---- */

static struct kvm_run msr_exit(uint32_t reason, uint64_t data)
{
        struct kvm_run run;

        memset(&run, 0, sizeof(run));
        run.exit_reason = reason;
        run.msr.index = SEV_GHCB_MSR;
        run.msr.data = data;
        return run;
}

static uint64_t psc(struct cc *cc, uint64_t gfn, unsigned op)
{
        struct kvm_run w =
            msr_exit(KVM_EXIT_X86_WRMSR, GHCB_MSR_PSC_REQ | (gfn << 12) | ((uint64_t)op << 52));
        struct kvm_run r = msr_exit(KVM_EXIT_X86_RDMSR, 0);

        assert_true(cc_handle_exit(cc, 0, -1, &w));
        assert_int_equal(w.msr.error, 0);
        assert_true(cc_handle_exit(cc, 0, -1, &r));
        return r.msr.data;
}

static void test_sev_starts_secure_and_private(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        uint32_t msrs[4];

        (void)state;
        assert_true(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(cc_ownership(f->cc)), MEM / G);
        assert_false(cc_has_callwin(f->cc));
        assert_int_equal(cc_intercepted_msrs(f->cc, msrs, 4), 1);
        assert_int_equal(msrs[0], SEV_GHCB_MSR);
        assert_true(cc_wants_map_gpa_range(f->cc));
        fx_free(f);
}

static void test_sev_ghcb_page_state_change(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        struct ownership *o = cc_ownership(f->cc);

        (void)state;
        assert_int_equal(psc(f->cc, 5, GHCB_PSC_OP_SHARED), GHCB_MSR_PSC_RESP);
        assert_true(ownership_is_shared(o, 5 * G, G));
        assert_false(ownership_is_shared(o, 6 * G, G));
        assert_int_equal(psc(f->cc, 5, GHCB_PSC_OP_PRIVATE), GHCB_MSR_PSC_RESP);
        assert_false(ownership_is_shared(o, 5 * G, G));
        fx_free(f);
}

static void test_cc12_sev_bad_page_state_changes_change_nothing(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        struct ownership *o = cc_ownership(f->cc);
        uint64_t gen = ownership_generation(o);
        struct cc_stats st;

        (void)state;
        assert_int_equal(psc(f->cc, 5, 3), GHCB_MSR_PSC_RESP | (1ull << 32)); /* bad op */
        assert_int_equal(psc(f->cc, MEM / G, GHCB_PSC_OP_SHARED),
                         GHCB_MSR_PSC_RESP | (2ull << 32)); /* not RAM */
        assert_int_equal(psc(f->cc, 0xc0000, GHCB_PSC_OP_SHARED),
                         GHCB_MSR_PSC_RESP | (2ull << 32)); /* the MMIO hole */
        assert_int_equal(ownership_generation(o), gen);
        assert_int_equal(ownership_private_granules(o), MEM / G);
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.failed_calls, 3);
        fx_free(f);
}

static void test_sev_info_and_unknown_requests(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        struct kvm_run w = msr_exit(KVM_EXIT_X86_WRMSR, GHCB_MSR_SEV_INFO_REQ);
        struct kvm_run r = msr_exit(KVM_EXIT_X86_RDMSR, 0);
        struct kvm_run other = msr_exit(KVM_EXIT_X86_WRMSR, 0);

        (void)state;
        assert_true(cc_handle_exit(f->cc, 1, -1, &w));
        assert_true(cc_handle_exit(f->cc, 1, -1, &r));
        assert_int_equal(r.msr.data & GHCB_MSR_INFO_MASK, GHCB_MSR_SEV_INFO_RESP);
        w.msr.data = 0x7ff; /* unknown request code */
        assert_true(cc_handle_exit(f->cc, 1, -1, &w));
        assert_true(cc_handle_exit(f->cc, 1, -1, &r));
        assert_int_equal(r.msr.data, 0);
        other.msr.index = 0x10; /* not the GHCB MSR: not the platform's */
        assert_false(cc_handle_exit(f->cc, 1, -1, &other));
        fx_free(f);
}

static int64_t map_gpa(struct cc *cc, uint64_t gpa, uint64_t n, uint64_t attrs)
{
        struct kvm_run run;

        memset(&run, 0, sizeof(run));
        run.exit_reason = KVM_EXIT_HYPERCALL;
        run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
        run.hypercall.args[0] = gpa;
        run.hypercall.args[1] = n;
        run.hypercall.args[2] = attrs;
        assert_true(cc_handle_exit(cc, 0, -1, &run));
        return (int64_t)run.hypercall.ret;
}

static void test_sev_map_gpa_range(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        struct ownership *o = cc_ownership(f->cc);

        (void)state;
        assert_int_equal(map_gpa(f->cc, 0x10000, 4, 0), 0);
        assert_true(ownership_is_shared(o, 0x10000, 4 * G));
        assert_false(ownership_is_shared(o, 0x14000, G));
        assert_int_equal(map_gpa(f->cc, 0x10000, 2, MAP_GPA_RANGE_ENCRYPTED), 0);
        assert_false(ownership_is_shared(o, 0x10000, G));
        assert_true(ownership_is_shared(o, 0x12000, 2 * G));
        assert_int_equal(map_gpa(f->cc, 0x200000, 512, 1), 0); /* one 2 MiB page */
        assert_true(ownership_is_shared(o, 0x200000, 0x200000));
        fx_free(f);
}

static void test_cc12_sev_bad_hypercalls_return_kvm_einval(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        struct ownership *o = cc_ownership(f->cc);
        uint64_t gen = ownership_generation(o);
        struct kvm_run other;

        (void)state;
        assert_int_equal(map_gpa(f->cc, 0x10800, 1, 0), -KVM_EINVAL);    /* misaligned */
        assert_int_equal(map_gpa(f->cc, 0x10000, 0, 0), -KVM_EINVAL);    /* no pages */
        assert_int_equal(map_gpa(f->cc, 0x10000, 1, 0x20), -KVM_EINVAL); /* reserved bit */
        assert_int_equal(map_gpa(f->cc, 0x10000, 1, 3), -KVM_EINVAL);    /* page size 3 */
        assert_int_equal(map_gpa(f->cc, 0x201000, 512, 1), -KVM_EINVAL); /* 2M misaligned */
        assert_int_equal(map_gpa(f->cc, 0x200000, 511, 1), -KVM_EINVAL); /* 2M partial */
        assert_int_equal(map_gpa(f->cc, MEM - G, 2, 0), -KVM_EINVAL);    /* past RAM */
        assert_int_equal(map_gpa(f->cc, 0xfffffffffffff000ull, 2, 0), -KVM_EINVAL); /* wraps */
        assert_int_equal(map_gpa(f->cc, 0, UINT64_MAX, 0), -KVM_EINVAL);
        assert_int_equal(ownership_generation(o), gen);
        memset(&other, 0, sizeof(other));
        other.exit_reason = KVM_EXIT_HYPERCALL;
        other.hypercall.nr = KVM_HC_KICK_CPU;
        assert_false(cc_handle_exit(f->cc, 0, -1, &other));
        fx_free(f);
}

/* ---- PEF ---- */

static void put_esm_blob(struct fx *f, gpa_t a, bool valid)
{
        uint8_t blob[12] = "CVMMESM";
        put_le32(blob + 8, valid ? 1 : 7);
        assert_int_equal(guest_mem_write(f->mem, a, blob, sizeof(blob)), 0);
}

static void test_pef_window_identity(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_PEF);
        uint8_t b[4];

        (void)state;
        assert_true(cc_has_callwin(f->cc));
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_MAGIC), CC_CALLWIN_MAGIC);
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_PLATFORM), CC_PLATFORM_PEF);
        win_write(f->cc, CC_CALLWIN_REG_ARG1, 0x1122334455667788ull);
        cc_callwin_read(f->cc, CC_CALLWIN_REG_ARG1 + 4, b, 4);
        assert_int_equal(get_le32(b), 0x11223344);
        put_le32(b, 0xaabbccdd);
        cc_callwin_write(f->cc, CC_CALLWIN_REG_ARG1, b, 4);
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_ARG1), 0x11223344aabbccddull);
        win_write(f->cc, CC_CALLWIN_REG_MAGIC, 0); /* read-only */
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_MAGIC), CC_CALLWIN_MAGIC);
        fx_free(f);
}

static void test_pef_esm_and_sharing(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_PEF);
        struct ownership *o = cc_ownership(f->cc);
        uint8_t pat[16], got[16], zero[16] = {0};

        (void)state;
        assert_false(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(o), 0);
        put_esm_blob(f, 0x100000, true);
        assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), U_SUCCESS);
        assert_true(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(o), MEM / G);

        /* Share 2 x 64 KiB at 0x40000: zeroed and host-accessible. */
        memset(pat, 0x77, sizeof(pat));
        assert_int_equal(guest_mem_write(f->mem, 0x40000, pat, 16), 0);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0x4, 2), U_SUCCESS);
        assert_true(ownership_is_shared(o, 0x40000, 0x20000));
        assert_int_equal(guest_mem_read(f->mem, 0x40000, got, 16), 0);
        assert_memory_equal(got, zero, 16);
        /* Unsharing zeroes too: data never crosses the boundary. */
        assert_int_equal(guest_mem_write(f->mem, 0x50000, pat, 16), 0);
        assert_int_equal(ucall(f->cc, UV_UNSHARE_PAGE, 0x5, 1), U_SUCCESS);
        assert_false(ownership_is_shared(o, 0x50000, G));
        assert_int_equal(guest_mem_read(f->mem, 0x50000, got, 16), 0);
        assert_memory_equal(got, zero, 16);
        assert_true(ownership_is_shared(o, 0x40000, 0x10000));
        assert_int_equal(ucall(f->cc, UV_UNSHARE_ALL_PAGES, 0, 0), U_SUCCESS);
        assert_int_equal(ownership_private_granules(o), MEM / G);
        fx_free(f);
}

static void test_cc12_pef_bad_calls_change_nothing(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_PEF);
        struct ownership *o = cc_ownership(f->cc);
        uint64_t before;

        (void)state;
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 1, 1), H_STATE); /* not secure yet */
        /* A bad ESM blob: H_SVM_INIT_ABORT, everything back out, H_PARAMETER. */
        put_esm_blob(f, 0x100000, false);
        assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), H_PARAMETER);
        assert_false(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(o), 0);
        put_esm_blob(f, 0x100000, true);
        assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), U_SUCCESS);
        assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), H_STATE); /* twice */
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0x10, 1), U_SUCCESS);
        before = ownership_private_granules(o);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, MEM / PEF_GRANULE, 1), H_PARAMETER);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0xc000, 1), H_PARAMETER); /* MMIO hole */
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0x11, 0), H_P2);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0x11, MEM / PEF_GRANULE), H_P2);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, 0x11, UINT64_MAX), H_P2);
        assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, UINT64_MAX, 1), H_PARAMETER);
        assert_int_equal(ucall(f->cc, 0xf1f0, 0, 0), H_FUNCTION);
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_UVC);
        assert_int_equal((int64_t)win_read(f->cc, CC_CALLWIN_REG_RET0), H_UNSUPPORTED);
        assert_int_equal(ownership_private_granules(o), before);
        fx_free(f);
}

/* ---- s390-pv ---- */

static uint16_t uvc(struct fx *f, gpa_t cb, uint16_t len, uint16_t cmd, uint64_t paddr,
                    uint64_t *ccode)
{
        uint8_t b[0x30] = {0};

        put_le16(b, len);
        put_le16(b + 2, cmd);
        put_le64(b + 0x20, paddr);
        assert_int_equal(guest_mem_write(f->mem, cb, b, sizeof(b)), 0);
        win_write(f->cc, CC_CALLWIN_REG_ARG0, cb);
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_UVC);
        *ccode = win_read(f->cc, CC_CALLWIN_REG_RET0);
        assert_int_equal(guest_mem_read(f->mem, cb, b, 8), 0);
        return get_le16(b + 4);
}

static uint64_t diag308(struct fx *f, uint64_t subcode, gpa_t hdr)
{
        win_write(f->cc, CC_CALLWIN_REG_ARG0, subcode);
        win_write(f->cc, CC_CALLWIN_REG_ARG1, hdr);
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_DIAG308);
        return win_read(f->cc, CC_CALLWIN_REG_RET0);
}

static void test_s390_pv_ipl_and_sharing(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_S390_PV);
        struct ownership *o = cc_ownership(f->cc);
        uint64_t ccode;
        uint8_t qui[32];

        (void)state;
        assert_false(cc_secure(f->cc));
        assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
        assert_true(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(o), MEM / G);
        /* The control block lives in private memory: the ultravisor reads it anyway. */
        assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_SET_SHARED_ACCESS, 0x9000, &ccode),
                         UVC_RC_EXECUTED);
        assert_int_equal(ccode, 0);
        assert_true(ownership_is_shared(o, 0x9000, G));
        assert_false(ownership_is_shared(o, 0xa000, G));
        assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_REMOVE_SHARED_ACCESS, 0x9000, &ccode),
                         UVC_RC_EXECUTED);
        assert_false(ownership_is_shared(o, 0x9000, G));
        assert_int_equal(uvc(f, 0x300000, 0x88, UVC_CMD_QUI, 0, &ccode), UVC_RC_EXECUTED);
        assert_int_equal(guest_mem_read(f->mem, 0x300010, qui, sizeof(qui)), 0);
        assert_int_equal(qui[0], 0x80); /* QUI */
        assert_int_equal(qui[1], 0xc0); /* SET_SHARED_ACCESS, REMOVE_SHARED_ACCESS */
        fx_free(f);
}

static void test_cc12_s390_bad_calls_change_nothing(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_S390_PV);
        struct ownership *o = cc_ownership(f->cc);
        uint64_t ccode, gen;

        (void)state;
        assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_SET_SHARED_ACCESS, 0x9000, &ccode),
                         UVC_RC_INV_STATE);
        assert_int_equal(ccode, 1);
        assert_int_equal(diag308(f, 9, 0x200000), DIAG308_RC_INV_SUBCODE);
        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_NOCONFIG); /* no SE hdr */
        assert_false(cc_secure(f->cc));
        assert_int_equal(ownership_private_granules(o), 0);
        assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_NOCONFIG); /* twice */
        gen = ownership_generation(o);
        assert_int_equal(uvc(f, 0x300000, 0x28, UVC_CMD_SET_SHARED_ACCESS, 0x9000, &ccode),
                         UVC_RC_INV_LEN);
        assert_int_equal(uvc(f, 0x300000, 0x30, 0x1234, 0x9000, &ccode), UVC_RC_INV_CMD);
        assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_SET_SHARED_ACCESS, 0x9008, &ccode),
                         UVC_RC_INV_ADDR);
        assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_SET_SHARED_ACCESS, MEM + G, &ccode),
                         UVC_RC_INV_ADDR);
        assert_int_equal(ccode, 1);
        /* A control block the ultravisor cannot read: condition code 3. */
        win_write(f->cc, CC_CALLWIN_REG_ARG0, MEM + 0x1000);
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_UVC);
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_RET0), 3);
        win_write(f->cc, CC_CALLWIN_REG_ARG0, 0x300004); /* misaligned */
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_UVC);
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_RET0), 3);
        win_write(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_POWER_UCALL);
        assert_int_equal(win_read(f->cc, CC_CALLWIN_REG_RET0), 3);
        assert_int_equal(ownership_generation(o), gen);
        assert_int_equal(ownership_private_granules(o), MEM / G);
        fx_free(f);
}

/* ---- CC-8: the host never reads the plaintext of a private granule ---- */

static const char secret[] = "TOP-SECRET-PATTERN-0123456789";

static void plant_secret(struct fx *f, gpa_t a)
{
        assert_int_equal(guest_mem_write(f->mem, a, secret, sizeof(secret)), 0);
}

static bool has_secret(const uint8_t *buf, size_t len)
{
        return memmem(buf, len, secret, sizeof(secret) - 1) != NULL;
}

static void test_cc8_sev_host_reads_ciphertext(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_SEV);
        static uint8_t dump[1 << 20], again[64];

        (void)state;
        plant_secret(f, 0x12345);
        assert_int_equal(cc_host_read(f->cc, 0, dump, sizeof(dump)), 0);
        assert_false(has_secret(dump, sizeof(dump)));
        /* A deterministic stand-in per VM and address, and the guest keeps its plaintext. */
        assert_int_equal(cc_host_read(f->cc, 0x12345, again, sizeof(again)), 0);
        assert_memory_equal(again, dump + 0x12345, sizeof(again));
        assert_int_equal(guest_mem_read(f->mem, 0x12345, again, sizeof(secret)), 0);
        assert_memory_equal(again, secret, sizeof(secret));
        /* Shared granules read in the clear. */
        assert_int_equal(psc(f->cc, 0x20, GHCB_PSC_OP_SHARED), GHCB_MSR_PSC_RESP);
        plant_secret(f, 0x20000);
        assert_int_equal(cc_host_read(f->cc, 0x20000, again, sizeof(secret)), 0);
        assert_memory_equal(again, secret, sizeof(secret));
        fx_free(f);
}

/* Bytes where a "recovery" equals the plaintext: 16 of 4096 by chance. */
static unsigned matches(const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *want)
{
        unsigned n = 0;

        for (unsigned i = 0; i < G; i++)
                n += (uint8_t)(a[i] ^ b[i] ^ c[i]) == want[i];
        return n;
}

/* CC-8: two host reads of one private page, the first while it holds known bytes (zeros),
 * the second after the guest wrote its secret, XOR-ed with what was known, recover nothing
 * (a keystream per address gave the secret whole). sev: a page converted to shared shows the
 * ciphertext of its old contents, not the plaintext. */
static void test_cc8_known_plaintext_recovers_nothing(void **state)
{
        static const enum cc_platform ps[] = {CC_PLATFORM_SEV, CC_PLATFORM_PEF,
                                              CC_PLATFORM_S390_PV};
        static uint8_t zeros[G], c1[G], c2[G], plain[G];

        (void)state;
        for (unsigned i = 0; i < G; i++)
                plain[i] = (uint8_t)secret[i % (sizeof(secret) - 1)];
        for (unsigned k = 0; k < ARRAY_SIZE(ps); k++) {
                struct fx *f = fx_new(ps[k]);

                if (ps[k] == CC_PLATFORM_PEF) {
                        put_esm_blob(f, 0x100000, true);
                        assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), U_SUCCESS);
                } else if (ps[k] == CC_PLATFORM_S390_PV) {
                        assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
                        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
                }
                assert_int_equal(cc_host_read(f->cc, 0x40000, c1, G), 0);
                assert_true(matches(c1, zeros, zeros, zeros) < G / 64); /* not in the clear */
                /* The guest writes its secret (pef/s390: its touch pages the granule in). */
                assert_true(cc_handle_fault(f->cc, -1) || ps[k] == CC_PLATFORM_SEV);
                assert_int_equal(guest_mem_write(f->mem, 0x40000, plain, G), 0);
                assert_int_equal(cc_host_read(f->cc, 0x40000, c2, G), 0);
                assert_true(matches(c1, c2, zeros, plain) < G / 64);
                assert_true(matches(c2, zeros, zeros, plain) < G / 64);
                if (ps[k] == CC_PLATFORM_SEV) {
                        assert_int_equal(psc(f->cc, 0x40, GHCB_PSC_OP_SHARED), GHCB_MSR_PSC_RESP);
                        assert_int_equal(cc_host_read(f->cc, 0x40000, c1, G), 0);
                        assert_memory_equal(c1, c2, G); /* what the host saw while private */
                        assert_true(matches(c1, zeros, zeros, plain) < G / 64);
                }
                fx_free(f);
        }
}

/* pef and s390-pv: the read pages the granule out (ciphertext for the host, the guest loses
 * the page) and the guest's next touch brings the plaintext back. */
static void page_out_and_back(enum cc_platform p)
{
        struct fx *f = fx_new(p);
        uint8_t buf[4096];
        struct cc_stats st;
        struct kvm_run run;

        if (p == CC_PLATFORM_PEF) {
                put_esm_blob(f, 0x100000, true);
                assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), U_SUCCESS);
        } else {
                assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
                assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
        }
        plant_secret(f, 0x3000);
        assert_int_equal(cc_host_read(f->cc, 0x3000, buf, sizeof(buf)), 0);
        assert_false(has_secret(buf, sizeof(buf)));
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.page_outs, 1);
        /* Reading again does not page out twice and still shows ciphertext. */
        assert_int_equal(cc_host_read(f->cc, 0x3000, buf, sizeof(buf)), 0);
        assert_false(has_secret(buf, sizeof(buf)));
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.page_outs, 1);

        /* The guest reads its secret: on this KVM that arrives as an MMIO exit. */
        memset(&run, 0, sizeof(run));
        run.exit_reason = KVM_EXIT_MMIO;
        run.mmio.phys_addr = 0x3000;
        run.mmio.len = 8;
        assert_true(cc_handle_exit(f->cc, 0, -1, &run));
        assert_memory_equal(run.mmio.data, secret, 8);
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.page_ins, 1);
        assert_int_equal(guest_mem_read(f->mem, 0x3000, buf, sizeof(secret)), 0);
        assert_memory_equal(buf, secret, sizeof(secret));
        /* An MMIO exit elsewhere is not the platform's. */
        run.mmio.phys_addr = 0xd0000000ull;
        assert_false(cc_handle_exit(f->cc, 0, -1, &run));

        /* A fault the platform cannot place pages everything back in. */
        assert_int_equal(cc_host_read(f->cc, 0x3000, buf, 16), 0);
        assert_true(cc_handle_fault(f->cc, -1));
        assert_false(cc_handle_fault(f->cc, -1));
        assert_int_equal(guest_mem_read(f->mem, 0x3000, buf, sizeof(secret)), 0);
        assert_memory_equal(buf, secret, sizeof(secret));
        fx_free(f);
}

/* Two vCPUs touch one paged-out granule: the first pages it back in, the second's exit
 * (an MMIO exit on RAM, taken while the page was out) must still complete its access, not
 * fall through to the MMIO bus as an unhandled one (its write lost). */
static void test_stale_exit_on_a_granule_paged_back_in(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_S390_PV);
        uint8_t buf[16];
        struct kvm_run run;

        (void)state;
        assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
        assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
        assert_int_equal(cc_host_read(f->cc, 0x3000, buf, sizeof(buf)), 0); /* paged out */
        assert_true(cc_handle_fault(f->cc, -1));                            /* vCPU 0 */
        memset(&run, 0, sizeof(run));                                       /* vCPU 1 */
        run.exit_reason = KVM_EXIT_MMIO;
        run.mmio.phys_addr = 0x3008;
        run.mmio.len = 8;
        run.mmio.is_write = 1;
        memcpy(run.mmio.data, "WRITTEN!", 8);
        assert_true(cc_handle_exit(f->cc, 1, -1, &run));
        assert_int_equal(guest_mem_read(f->mem, 0x3008, buf, 8), 0);
        assert_memory_equal(buf, "WRITTEN!", 8);
        fx_free(f);
}

static void test_cc8_pef_pages_out_encrypted_and_back_in(void **state)
{
        (void)state;
        page_out_and_back(CC_PLATFORM_PEF);
}

static void test_cc8_s390_exports_and_imports(void **state)
{
        (void)state;
        page_out_and_back(CC_PLATFORM_S390_PV);
}

/* ---- the host side: a transition waiting for in-flight I/O blocks no host reader ---- */

struct unshare_call {
        struct fx *f;
        gpa_t g;
        bool all;
        int64_t ret;
        atomic_bool done;
};

/* The guest's unshare of u->g, on a "vCPU" thread (no cmocka asserts here). */
static void *unshare_thread(void *p)
{
        struct unshare_call *u = p;
        struct cc *cc = u->f->cc;
        struct kvm_run run;

        switch (cc_platform_of(cc)) {
        case CC_PLATFORM_SEV:
                memset(&run, 0, sizeof(run));
                run.exit_reason = KVM_EXIT_X86_WRMSR;
                run.msr.index = SEV_GHCB_MSR;
                run.msr.data = GHCB_MSR_PSC_REQ | u->g | ((uint64_t)GHCB_PSC_OP_PRIVATE << 52);
                u->ret = cc_handle_exit(cc, 0, -1, &run) ? 0 : -1;
                break;
        case CC_PLATFORM_PEF:
                u->ret = u->all ? ucall(cc, UV_UNSHARE_ALL_PAGES, 0, 0)
                                : ucall(cc, UV_UNSHARE_PAGE, u->g / PEF_GRANULE, 1);
                break;
        default: /* s390-pv: the control block was written beforehand */
                win_write(cc, CC_CALLWIN_REG_ARG0, 0x300000);
                win_write(cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_UVC);
                u->ret = (int64_t)win_read(cc, CC_CALLWIN_REG_RET0);
                break;
        }
        atomic_store(&u->done, true);
        return NULL;
}

/*
 * A guest unshares a granule while a device's zero-copy read into it is in flight (the pin
 * an io_uring request holds until the VMM thread reaps its completion). Meanwhile the VMM
 * thread reads guest memory (GET /vm/memory) and collects the platform's metrics: both must
 * return at once, not wait behind the transition (which waited for the pin holding the
 * platform lock: neither ever returned, and the completion was never reaped). When the read
 * lands and the pin goes, the transition completes; pef zeroes the granule only then, so the
 * host's data is not left in memory the guest now owns. alarm(): a hang ends the test.
 */
static void transition_under_io(enum cc_platform p, bool all)
{
        struct fx *f = fx_new(p);
        struct ownership *o = cc_ownership(f->cc);
        gpa_t g = 0x400000;
        uint64_t ccode;
        struct unshare_call u = {.f = f, .g = g, .all = all};
        static uint8_t buf[G];
        struct hostmem *hm;
        struct iovec iov;
        struct cc_stats st;
        pthread_t t;

        alarm(30);
        if (p == CC_PLATFORM_PEF) {
                put_esm_blob(f, 0x100000, true);
                assert_int_equal(ucall(f->cc, UV_ESM, 0x100000, 0), U_SUCCESS);
                assert_int_equal(ucall(f->cc, UV_SHARE_PAGE, g / PEF_GRANULE, 1), U_SUCCESS);
        } else if (p == CC_PLATFORM_S390_PV) {
                assert_int_equal(guest_mem_write(f->mem, 0x200000, "IBMSecEx", 8), 0);
                assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x200000), DIAG308_RC_OK);
                assert_int_equal(uvc(f, 0x300000, 0x30, UVC_CMD_SET_SHARED_ACCESS, g, &ccode),
                                 UVC_RC_EXECUTED);
                /* The unshare's control block, for the thread. */
                put_le16(buf, 0x30);
                put_le16(buf + 2, UVC_CMD_REMOVE_SHARED_ACCESS);
                assert_int_equal(guest_mem_write(f->mem, 0x300000, buf, 4), 0);
        } else {
                assert_int_equal(psc(f->cc, g / G, GHCB_PSC_OP_SHARED), GHCB_MSR_PSC_RESP);
        }
        assert_int_equal(hostmem_create(f->mem, "disk", &hm), 0);
        hostmem_set_ownership(hm, o);
        assert_int_equal(hostmem_pin(hm, g, G, &iov), 0); /* the read in flight */

        assert_int_equal(pthread_create(&t, NULL, unshare_thread, &u), 0);
        while (ownership_is_shared(o, g, G)) /* new accesses refused from here on */
                sched_yield();
        assert_int_equal(cc_host_read(f->cc, g, buf, sizeof(buf)), 0);
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.page_outs, 0); /* not taken from under the device */
        assert_int_equal(cc_host_read(f->cc, 0x500000, buf, sizeof(buf)), 0);
        cc_get_stats(f->cc, &st);
        assert_int_equal(st.page_outs, p == CC_PLATFORM_SEV ? 0 : 1); /* an idle one is */
        assert_false(atomic_load(&u.done));
        /* The completion lands in the pinned buffer, then the pin goes. */
        memset(iov.iov_base, 0xd5, G);
        hostmem_unpin(hm, g, G);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(u.ret, p == CC_PLATFORM_S390_PV ? 0 : U_SUCCESS);
        assert_true(ownership_any_private(o, g, G));
        assert_int_equal(guest_mem_read(f->mem, g, buf, sizeof(buf)), 0);
        /* pef zeroes what it unshares, after the quiesce; the others keep the bytes. */
        assert_int_equal(buf[0], p == CC_PLATFORM_PEF ? 0 : 0xd5);
        assert_int_equal(buf[G - 1], p == CC_PLATFORM_PEF ? 0 : 0xd5);
        hostmem_destroy(hm);
        fx_free(f);
        alarm(0);
}

static void test_host_reads_never_wait_for_a_transition_sev(void **state)
{
        (void)state;
        transition_under_io(CC_PLATFORM_SEV, false);
}

static void test_host_reads_never_wait_for_a_transition_pef(void **state)
{
        (void)state;
        transition_under_io(CC_PLATFORM_PEF, false);
        transition_under_io(CC_PLATFORM_PEF, true);
}

static void test_host_reads_never_wait_for_a_transition_s390(void **state)
{
        (void)state;
        transition_under_io(CC_PLATFORM_S390_PV, false);
}

/* ---- random call sequences against a reference model of the map ---- */

static void random_against_model(enum cc_platform p, unsigned seed)
{
        struct fx *f = fx_new(p);
        struct ownership *o = cc_ownership(f->cc);
        const unsigned n = 64; /* 64 KiB pages exercised */
        bool model[64 * 16];   /* per 4 KiB granule */
        bool secure = p == CC_PLATFORM_SEV;

        for (unsigned i = 0; i < n * 16; i++)
                model[i] = p == CC_PLATFORM_SEV;
        put_esm_blob(f, 0x700000, true);
        assert_int_equal(guest_mem_write(f->mem, 0x710000, "IBMSecEx", 8), 0);
        for (int step = 0; step < 3000; step++) {
                unsigned op = (unsigned)rand_r(&seed) % 4, page = (unsigned)rand_r(&seed) % n;
                unsigned cnt = 1 + (unsigned)rand_r(&seed) % 3;
                if (page + cnt > n)
                        cnt = n - page;
                bool to_shared = op & 1;

                if (p == CC_PLATFORM_SEV) {
                        uint64_t gfn = page * 16 + (unsigned)rand_r(&seed) % 16;
                        bool bad = op == 3;
                        uint64_t resp = psc(f->cc, bad ? MEM / G + gfn : gfn,
                                            to_shared ? GHCB_PSC_OP_SHARED : GHCB_PSC_OP_PRIVATE);
                        assert_int_equal(resp >> 32, bad ? 2 : 0);
                        if (!bad)
                                model[gfn] = !to_shared;
                } else if (p == CC_PLATFORM_PEF) {
                        int64_t r;
                        if (op == 3 && !secure) {
                                assert_int_equal(ucall(f->cc, UV_ESM, 0x700000, 0), U_SUCCESS);
                                secure = true;
                                for (unsigned i = 0; i < n * 16; i++)
                                        model[i] = true;
                                continue;
                        }
                        r = ucall(f->cc, to_shared ? UV_SHARE_PAGE : UV_UNSHARE_PAGE, page, cnt);
                        assert_int_equal(r, secure ? U_SUCCESS : H_STATE);
                        if (secure)
                                for (unsigned i = page * 16; i < (page + cnt) * 16; i++)
                                        model[i] = !to_shared;
                } else {
                        uint64_t ccode;
                        uint64_t gfn = page * 16 + (unsigned)rand_r(&seed) % 16;
                        if (op == 3 && !secure) {
                                assert_int_equal(diag308(f, DIAG308_PV_IPL, 0x710000),
                                                 DIAG308_RC_OK);
                                secure = true;
                                for (unsigned i = 0; i < n * 16; i++)
                                        model[i] = true;
                                continue;
                        }
                        uint16_t rc = uvc(f, 0x720000, 0x30,
                                          to_shared ? UVC_CMD_SET_SHARED_ACCESS
                                                    : UVC_CMD_REMOVE_SHARED_ACCESS,
                                          gfn * G, &ccode);
                        assert_int_equal(rc, secure ? UVC_RC_EXECUTED : UVC_RC_INV_STATE);
                        if (secure)
                                model[gfn] = !to_shared;
                }
                assert_int_equal(cc_secure(f->cc), secure);
                for (unsigned i = 0; i < n * 16; i++)
                        if (ownership_is_shared(o, i * G, G) != !model[i])
                                fail_msg("step %d granule %u: map %d model %d", step, i,
                                         !ownership_is_shared(o, i * G, G), model[i]);
        }
        fx_free(f);
}

static void test_random_sev_calls_against_model(void **state)
{
        (void)state;
        random_against_model(CC_PLATFORM_SEV, 1);
}

static void test_random_pef_calls_against_model(void **state)
{
        (void)state;
        random_against_model(CC_PLATFORM_PEF, 2);
}

static void test_random_s390_calls_against_model(void **state)
{
        (void)state;
        random_against_model(CC_PLATFORM_S390_PV, 3);
}

/* ---- descriptions ---- */

static void test_describe_callwin_and_cmdline(void **state)
{
        struct fx *f = fx_new(CC_PLATFORM_S390_PV);
        struct platform_dev win;
        struct error err = {0};
        char cmdline[256] = "console=ttyS0";

        (void)state;
        assert_true(cc_has_callwin(f->cc));
        assert_true(cc_describe_callwin(CC_PLATFORM_S390_PV, &win));
        assert_int_equal(win.kind, PLATFORM_DEV_ACPI_MMIO);
        assert_string_equal(win.hid, "CVMM0001");
        assert_int_equal(win.base, X86_CC_CALLWIN_ADDR);
        /* The command line names the window where the board placed it. */
        win.base = 0xc0123000;
        assert_int_equal(
            cc_cmdline_append(CC_PLATFORM_S390_PV, &win, cmdline, sizeof(cmdline), &err), 0);
        assert_string_equal(cmdline, "console=ttyS0 cc.platform=s390-pv cc.callwin=0xc0123000");
        /* sev has no window; its command line names the platform only. */
        strcpy(cmdline, "x");
        assert_false(cc_describe_callwin(CC_PLATFORM_SEV, &win));
        assert_int_equal(cc_cmdline_append(CC_PLATFORM_SEV, NULL, cmdline, sizeof(cmdline), &err),
                         0);
        assert_string_equal(cmdline, "x cc.platform=sev");
        char tiny[12] = "0123456789";
        assert_int_equal(cc_cmdline_append(CC_PLATFORM_SEV, NULL, tiny, sizeof(tiny), &err),
                         -EINVAL);
        assert_string_equal(tiny, "0123456789");
        fx_free(f);
}

static void test_pef_fdt(void **state)
{
        struct platform_desc desc = {.nr_vcpus = 2};
        struct platform_dev v = {.name = "VR00",
                                 .kind = PLATFORM_DEV_VIRTIO_MMIO,
                                 .base = 0xc0001000,
                                 .len = 0x1000,
                                 .gsi = 5};
        struct error err = {0};
        void *fdt;
        size_t len;
        int node, plen;
        const char *compat;

        (void)state;
        assert_int_equal(platform_add_dev(&desc, &v, &err), 0);
        assert_int_equal(cc_pef_fdt(&desc, 128 << 20, "console=hvc0", &fdt, &len, &err), 0);
        assert_int_equal(fdt_check_header(fdt), 0);
        assert_int_equal(fdt_totalsize(fdt), len);
        assert_true(fdt_path_offset(fdt, "/cpus/cpu@1") >= 0);
        assert_true(fdt_path_offset(fdt, "/ibm,ultravisor") >= 0);
        assert_true(fdt_path_offset(fdt, "/ibm,ultravisor/secure-memory@0") >= 0);
        node = fdt_path_offset(fdt, "/virtio_mmio@c0001000");
        assert_true(node >= 0);
        compat = fdt_getprop(fdt, node, "compatible", &plen);
        assert_non_null(compat);
        assert_string_equal(compat, "virtio,mmio");
        free(fdt);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_platform_names),
            cmocka_unit_test(test_sev_starts_secure_and_private),
            cmocka_unit_test(test_sev_ghcb_page_state_change),
            cmocka_unit_test(test_cc12_sev_bad_page_state_changes_change_nothing),
            cmocka_unit_test(test_sev_info_and_unknown_requests),
            cmocka_unit_test(test_sev_map_gpa_range),
            cmocka_unit_test(test_cc12_sev_bad_hypercalls_return_kvm_einval),
            cmocka_unit_test(test_pef_window_identity),
            cmocka_unit_test(test_pef_esm_and_sharing),
            cmocka_unit_test(test_cc12_pef_bad_calls_change_nothing),
            cmocka_unit_test(test_s390_pv_ipl_and_sharing),
            cmocka_unit_test(test_cc12_s390_bad_calls_change_nothing),
            cmocka_unit_test(test_cc8_sev_host_reads_ciphertext),
            cmocka_unit_test(test_cc8_known_plaintext_recovers_nothing),
            cmocka_unit_test(test_stale_exit_on_a_granule_paged_back_in),
            cmocka_unit_test(test_cc8_pef_pages_out_encrypted_and_back_in),
            cmocka_unit_test(test_cc8_s390_exports_and_imports),
            cmocka_unit_test(test_host_reads_never_wait_for_a_transition_sev),
            cmocka_unit_test(test_host_reads_never_wait_for_a_transition_pef),
            cmocka_unit_test(test_host_reads_never_wait_for_a_transition_s390),
            cmocka_unit_test(test_random_sev_calls_against_model),
            cmocka_unit_test(test_random_pef_calls_against_model),
            cmocka_unit_test(test_random_s390_calls_against_model),
            cmocka_unit_test(test_describe_callwin_and_cmdline),
            cmocka_unit_test(test_pef_fdt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

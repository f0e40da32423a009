/*
 * The confidential platform models (arch/cc) and the ownership transitions they drive, from
 * a guest that issues any call: the pef / s390-pv call window (register writes, POWER
 * ultravisor calls, s390 UVC control blocks and DIAG 0x308), SEV's GHCB MSR protocol and
 * MAP_GPA_RANGE hypercalls, MMIO exits on paged-out granules, vCPU faults, and between them
 * the untrusted host reading guest memory (cc_host_read) and devices touching it through
 * their accessor (hostmem bound to the ownership map). Checked:
 *
 *  - a device accessor succeeds exactly on shared guest RAM: -EFAULT outside RAM, -EACCES
 *    when any granule is private, and a refused write changes nothing;
 *  - the host's read of private SEV granules never returns their plaintext.
 *
 * Input: the platform (u8 % 3: sev, pef, s390-pv), then operations.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/cc/cc.h"
#include "fuzz_common.h"
#include "memory/hostmem.h"

#define LOW_END    MiB(2)
#define HIGH_START GiB(4)
#define HIGH_SIZE  KiB(256)
#define MEM_SIZE   (LOW_END + HIGH_SIZE)
#define MAX_OPS    256

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_cc: %s:%d: %s\n", __FILE__, __LINE__, #cond);        \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static uint8_t a_buf[KiB(64)], b_buf[KiB(64)];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

static gpa_t addr(struct fz *f)
{
        uint8_t sel = fz_u8(f);
        uint32_t v = fz_u32(f);

        if (sel < 160)
                return v % LOW_END;
        if (sel < 200)
                return align_down(v % LOW_END, KiB(4)); /* a granule */
        if (sel < 230)
                return HIGH_START + v % HIGH_SIZE;
        if (sel < 240)
                return LOW_END - (v & 0xfff);
        return fz_u64(f);
}

/* The guest touching [a, a+len): a granule the host paged out (pef UV_PAGE_OUT, s390
 * export) faults and comes back first, as on hardware (KVM reports the access, the
 * platform pages the granule in). Without this the harness's own guest_mem accesses
 * would hit the PROT_NONE mapping of a paged-out granule. */
static void guest_touch(struct cc *cc, struct guest_mem *mem, gpa_t a, uint64_t len)
{
        uint64_t end;

        if (!len || !range_end(a, len - 1, &end) || !guest_mem_contains(mem, a, len))
                return;
        for (gpa_t g = align_down(a, KiB(4)); g <= end; g += KiB(4)) {
                struct kvm_run run;

                memset(&run, 0, sizeof(run));
                run.exit_reason = KVM_EXIT_MMIO;
                run.mmio.phys_addr = g < a ? a : g;
                run.mmio.len = 1;
                (void)cc_handle_exit(cc, 0, -1, &run);
        }
}

/* What a device accessor must answer for [a, a+len). */
static int expected(struct guest_mem *mem, struct ownership *own, gpa_t a, uint64_t len)
{
        uint64_t end;

        if (!range_end(a, len, &end) || !guest_mem_contains(mem, a, len))
                return -EFAULT;
        return len && ownership_any_private(own, a, len) ? -EACCES : 0;
}

static void op_device(struct fz *f, struct cc *cc, struct guest_mem *mem, struct hostmem *hm,
                      struct ownership *own)
{
        gpa_t a = addr(f);
        uint32_t len = fz_u16(f) % sizeof(a_buf);
        int want = expected(mem, own, a, len), r;
        struct iovec iov;

        switch (fz_u8(f) % 4) {
        case 0:
                r = hostmem_read(hm, a, a_buf, len);
                CHECK(r == want);
                if (!r) {
                        CHECK(guest_mem_read(mem, a, b_buf, len) == 0);
                        CHECK(memcmp(a_buf, b_buf, len) == 0);
                }
                break;
        case 1:
                if (want == -EACCES) {
                        guest_touch(cc, mem, a, len);
                        CHECK(guest_mem_read(mem, a, b_buf, len) == 0);
                }
                memset(a_buf, 0x3c, len);
                r = hostmem_write(hm, a, a_buf, len);
                CHECK(r == want);
                if (r == -EACCES) {
                        /* Nothing moved. */
                        CHECK(guest_mem_read(mem, a, a_buf, len) == 0);
                        CHECK(memcmp(a_buf, b_buf, len) == 0);
                }
                break;
        case 2:
                r = hostmem_pin(hm, a, len, &iov);
                CHECK(r == want);
                if (!r) {
                        CHECK(iov.iov_len == len);
                        hostmem_unpin(hm, a, len);
                }
                break;
        case 3:
                (void)!hostmem_discard(hm, align_down(a, KiB(4)), align_down(len, KiB(4)));
                break;
        }
}

static void op_call(struct fz *f, struct cc *cc, enum cc_platform p)
{
        static const uint64_t pef_calls[] = {
            UV_ESM,        UV_SHARE_PAGE,    UV_UNSHARE_PAGE, UV_UNSHARE_ALL_PAGES, UV_PAGE_OUT,
            H_SVM_PAGE_IN, H_SVM_INIT_START, H_SVM_INIT_DONE, H_SVM_INIT_ABORT};
        uint8_t b[8];
        uint64_t kind;

        /* Arguments: a call number or an address, then addresses and counts. */
        for (unsigned i = 0; i < 4; i++) {
                uint8_t sel = fz_u8(f);
                uint64_t v;

                if (i == 0 && p == CC_PLATFORM_PEF && sel < 200)
                        v = pef_calls[sel % ARRAY_SIZE(pef_calls)];
                else if (i == 0 && p == CC_PLATFORM_S390_PV && sel < 40)
                        v = DIAG308_PV_IPL;
                else if (sel < 128)
                        v = addr(f);
                else if (sel < 200)
                        v = fz_u8(f);
                else if (sel < 230)
                        v = addr(f) >> 12;
                else
                        v = fz_u64(f);
                put_le64(b, v);
                cc_callwin_write(cc, CC_CALLWIN_REG_ARG0 + 8 * i, b, 8);
        }
        kind = p == CC_PLATFORM_PEF ? CC_CALL_POWER_UCALL
                                    : (fz_bool(f) ? CC_CALL_S390_UVC : CC_CALL_S390_DIAG308);
        if (fz_u8(f) > 240)
                kind = fz_u8(f);
        put_le64(b, kind);
        cc_callwin_write(cc, CC_CALLWIN_REG_CALL, b, 8);
        cc_callwin_read(cc, CC_CALLWIN_REG_RET0, b, 8);
        cc_callwin_read(cc, CC_CALLWIN_REG_RET1, b, 8);
}

static void op_msr(struct fz *f, struct cc *cc)
{
        struct kvm_run run;
        uint8_t sel = fz_u8(f);

        memset(&run, 0, sizeof(run));
        run.exit_reason = (sel & 1) ? KVM_EXIT_X86_RDMSR : KVM_EXIT_X86_WRMSR;
        run.msr.index = sel < 240 ? SEV_GHCB_MSR : fz_u32(f);
        if (sel & 2) /* a page-state change */
                run.msr.data =
                    GHCB_MSR_PSC_REQ | (addr(f) >> 12) << 12 | (uint64_t)(fz_u8(f) % 4) << 52;
        else
                run.msr.data = fz_u64(f);
        (void)cc_handle_exit(cc, fz_below(f, PLATFORM_MAX_VCPUS), -1, &run);
}

static void op_hypercall(struct fz *f, struct cc *cc)
{
        struct kvm_run run;

        memset(&run, 0, sizeof(run));
        run.exit_reason = KVM_EXIT_HYPERCALL;
        run.hypercall.nr = fz_u8(f) < 240 ? KVM_HC_MAP_GPA_RANGE : fz_u64(f);
        run.hypercall.args[0] = addr(f);
        run.hypercall.args[1] = fz_u8(f) < 240 ? fz_u8(f) % 64 : fz_u64(f);
        run.hypercall.args[2] = fz_u8(f) < 240 ? (fz_u8(f) & MAP_GPA_RANGE_ATTR_MASK) : fz_u64(f);
        (void)cc_handle_exit(cc, 0, -1, &run);
}

static void op_mmio(struct fz *f, struct cc *cc)
{
        struct kvm_run run;

        memset(&run, 0, sizeof(run));
        run.exit_reason = KVM_EXIT_MMIO;
        run.mmio.phys_addr = addr(f);
        run.mmio.len = fz_u8(f) % 10;
        run.mmio.is_write = fz_bool(f);
        fz_copy(f, run.mmio.data, sizeof(run.mmio.data));
        (void)cc_handle_exit(cc, 0, -1, &run);
}

static void op_host_read(struct fz *f, struct cc *cc, struct guest_mem *mem, enum cc_platform p)
{
        gpa_t a = addr(f);
        uint32_t len = fz_u16(f) % sizeof(a_buf);
        bool secret = p == CC_PLATFORM_SEV && len >= 16 && guest_mem_contains(mem, a, len);

        /* Private throughout? Then the plaintext must not come out. */
        for (gpa_t g = align_down(a, KiB(4)); secret && g < a + len; g += KiB(4))
                if (!ownership_any_private(cc_ownership(cc), g, KiB(4)))
                        secret = false;
        if (secret)
                CHECK(guest_mem_read(mem, a, b_buf, len) == 0);
        if (cc_host_read(cc, a, a_buf, len) == 0 && secret)
                CHECK(memcmp(a_buf, b_buf, len) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const enum cc_platform platforms[] = {CC_PLATFORM_SEV, CC_PLATFORM_PEF,
                                                     CC_PLATFORM_S390_PV};
        struct guest_mem_spec spec = {
            .size = MEM_SIZE, .hole_start = LOW_END, .hole_end = HIGH_START};
        struct error err = {0};
        struct guest_mem *mem;
        struct hostmem *hm;
        struct cc *cc;
        struct cc_stats st;
        enum cc_platform p;
        unsigned ops = 0;
        struct fz f;

        fz_init(&f, data, size);
        p = platforms[fz_u8(&f) % 3];
        CHECK(guest_mem_create(&spec, &err, &mem) == 0);
        CHECK(cc_create(&(struct cc_config){.platform = p}, mem, &err, &cc) == 0);
        CHECK(hostmem_create(mem, "fuzz", &hm) == 0);
        hostmem_set_ownership(hm, cc_ownership(cc));
        while (!fz_empty(&f) && ops++ < MAX_OPS) {
                uint8_t b[8];
                uint32_t off, len;

                switch (fz_u8(&f) % 11) {
                case 0: /* any window register, any width */
                        off = fz_u8(&f) % 0x50;
                        len = fz_bool(&f) ? 8 : 4;
                        put_le64(b, fz_u64(&f));
                        cc_callwin_write(cc, off, b, len);
                        break;
                case 1:
                        off = fz_u8(&f) % 0x50;
                        cc_callwin_read(cc, off, b, fz_bool(&f) ? 8 : 4);
                        break;
                case 2:
                case 3:
                        op_call(&f, cc, p);
                        break;
                case 4:
                        op_msr(&f, cc);
                        break;
                case 5:
                        op_hypercall(&f, cc);
                        break;
                case 6:
                        op_mmio(&f, cc);
                        break;
                case 7:
                        op_host_read(&f, cc, mem, p);
                        break;
                case 8:
                        (void)cc_handle_fault(cc, -1);
                        break;
                case 9: { /* the guest writes its memory: control blocks, headers, blobs */
                        size_t n;
                        gpa_t a = addr(&f);
                        const uint8_t *src = fz_bytes(&f, 512, &n);

                        guest_touch(cc, mem, a, n);
                        (void)!guest_mem_write(mem, a, src, n);
                        break;
                }
                case 10:
                        op_device(&f, cc, mem, hm, cc_ownership(cc));
                        break;
                }
        }
        cc_get_stats(cc, &st);
        hostmem_destroy(hm);
        cc_destroy(cc);
        guest_mem_destroy(mem);
        return 0;
}

/*
 * The SEV/SNP model: every granule is private from launch; the guest converts pages with
 * the SNP GHCB MSR page-state-change protocol (served from user-space MSR exits on
 * 0xC0010130) or with the KVM_HC_MAP_GPA_RANGE hypercall that KVM forwards to user space.
 * On hardware the guest follows its MSR write with VMGEXIT; this model acts on the write.
 *
 * Memory holds what the guest wrote; the host's view of a private page is its encryption
 * under the VM's key (cc.c). A page made shared holds the ciphertext of its old contents until
 * the guest writes it, as SNP's C-bit-clear view of the same memory does; a page made private
 * keeps its bytes (on hardware, their decryption: guests initialise such pages anyway).
 */
#include "cc_priv.h"

#include <errno.h>
#include <linux/kvm_para.h>

#define GFN_MASK ((1ull << 40) - 1)

static uint64_t psc(struct cc *cc, uint64_t req)
{
        uint64_t gfn = (req >> 12) & GFN_MASK;
        unsigned op = (unsigned)((req >> 52) & 0xf);
        uint64_t err = 0;
        int r;

        if (op != GHCB_PSC_OP_PRIVATE && op != GHCB_PSC_OP_SHARED) {
                err = GHCB_PSC_ERR_OP;
        } else {
                r = op == GHCB_PSC_OP_PRIVATE
                        ? cc_make_private(cc, gfn << 12, OWNERSHIP_GRANULE, CC_KEEP)
                        : cc_make_shared(cc, gfn << 12, OWNERSHIP_GRANULE, CC_CRYPT);
                if (r)
                        err = GHCB_PSC_ERR_GFN;
                else if (op == GHCB_PSC_OP_PRIVATE)
                        CC_COUNT(cc, unshared, 1);
                else
                        CC_COUNT(cc, shared, 1);
        }
        if (err) {
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "sev: page-state change of gfn 0x%llx (op %u) refused",
                          (unsigned long long)gfn, op);
        }
        return GHCB_MSR_PSC_RESP | (err << 32);
}

bool sev_handle_msr(struct cc *cc, unsigned vcpu, struct kvm_run *run)
{
        uint64_t *msr;

        if (run->msr.index != SEV_GHCB_MSR || vcpu >= PLATFORM_MAX_VCPUS)
                return false;
        msr = &cc->ghcb_msr[vcpu];
        run->msr.error = 0;
        if (run->exit_reason == KVM_EXIT_X86_RDMSR) {
                run->msr.data = *msr;
                return true;
        }
        CC_COUNT(cc, calls, 1);
        switch (run->msr.data & GHCB_MSR_INFO_MASK) {
        case GHCB_MSR_PSC_REQ:
                *msr = psc(cc, run->msr.data);
                break;
        case GHCB_MSR_SEV_INFO_REQ:
                /* GHCB protocol versions 1..2, C-bit at position 51. */
                *msr = GHCB_MSR_SEV_INFO_RESP | (2ull << 48) | (1ull << 32) | (51ull << 24);
                break;
        default:
                /* Unknown requests are answered with an empty response the guest rejects. */
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "sev: unknown GHCB MSR request 0x%llx",
                          (unsigned long long)(run->msr.data & GHCB_MSR_INFO_MASK));
                *msr = 0;
                break;
        }
        return true;
}

/* KVM's rules for MAP_GPA_RANGE: a0 = GPA, a1 = number of 4 KiB pages, a2 = attributes
 * (bit 4 encrypted; bits 3:0 page size 4K/2M/1G; bits 63:5 reserved). */
static int64_t map_gpa_range(struct cc *cc, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
        static const uint64_t sizes[] = {4096, 2ull << 20, 1ull << 30};
        uint64_t psize, bytes, end;
        unsigned sz = (unsigned)(attrs & MAP_GPA_RANGE_PAGE_MASK);
        int r;

        if ((attrs & ~MAP_GPA_RANGE_ATTR_MASK) || sz >= ARRAY_SIZE(sizes))
                return -KVM_EINVAL;
        psize = sizes[sz];
        if (!npages || npages > UINT64_MAX / 4096 || !is_aligned(gpa, psize))
                return -KVM_EINVAL;
        bytes = npages * 4096;
        if (!is_aligned(bytes, psize) || !range_end(gpa, bytes, &end))
                return -KVM_EINVAL;
        if (!guest_mem_contains(cc->mem, gpa, bytes))
                return -KVM_EINVAL;
        r = (attrs & MAP_GPA_RANGE_ENCRYPTED) ? cc_make_private(cc, gpa, bytes, CC_KEEP)
                                              : cc_make_shared(cc, gpa, bytes, CC_CRYPT);
        if (r)
                return -KVM_EINVAL;
        if (attrs & MAP_GPA_RANGE_ENCRYPTED)
                CC_COUNT(cc, unshared, npages);
        else
                CC_COUNT(cc, shared, npages);
        return 0;
}

bool sev_handle_hypercall(struct cc *cc, struct kvm_run *run)
{
        int64_t ret;

        if (run->hypercall.nr != KVM_HC_MAP_GPA_RANGE)
                return false;
        CC_COUNT(cc, calls, 1);
        ret = map_gpa_range(cc, run->hypercall.args[0], run->hypercall.args[1],
                            run->hypercall.args[2]);
        if (ret) {
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "sev: MAP_GPA_RANGE 0x%llx x%llu attrs 0x%llx refused",
                          (unsigned long long)run->hypercall.args[0],
                          (unsigned long long)run->hypercall.args[1],
                          (unsigned long long)run->hypercall.args[2]);
        }
        run->hypercall.ret = (uint64_t)ret;
        return true;
}

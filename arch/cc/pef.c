/*
 * The POWER PEF model: the VM starts as a normal guest; UV_ESM moves it into secure mode
 * (H_SVM_INIT_START, every page made secure, H_SVM_INIT_DONE; on a bad ESM blob
 * H_SVM_INIT_ABORT pages everything back out and the guest gets H_PARAMETER). Afterwards the
 * guest shares and unshares 64 KiB pages; both zero them (the ultravisor never lets data
 * cross the boundary): a share before the host may see the pages, an unshare once the
 * host's I/O on them has been waited for (a completion landing later would otherwise leave
 * host data in memory the guest owns). Calls arrive through the platform-call window with
 * r3 = call number and r4.. = arguments (see cc.h).
 */
#include "cc_priv.h"

#include <string.h>

static int64_t esm(struct cc *cc)
{
        uint8_t blob[12];
        gpa_t a = CC_ARG(cc, 1);

        if (cc->pef_state == PEF_SECURE)
                return H_STATE;
        cc->pef_state = PEF_INIT_STARTED; /* H_SVM_INIT_START */
        if (cc_set_all(cc, true)) {
                cc->pef_state = PEF_ABORTED;
                return H_PARAMETER;
        }
        /* The ultravisor reads the blob from now-secure memory: the trusted path. */
        if (cc_trusted_read(cc, a, blob, sizeof(blob)) ||
            memcmp(blob, PEF_ESM_MAGIC, sizeof(PEF_ESM_MAGIC)) != 0 || get_le32(blob + 8) != 1) {
                /* H_SVM_INIT_ABORT: back to a normal VM, nothing left secure. */
                if (cc_set_all(cc, false))
                        LOG_ERROR("pef: cannot undo the secure transition");
                cc->pef_state = PEF_ABORTED;
                LOG_GUEST(&cc->rl, "pef: UV_ESM with an invalid ESM blob at 0x%llx: aborted",
                          (unsigned long long)a);
                return H_PARAMETER;
        }
        cc->pef_state = PEF_SECURE; /* H_SVM_INIT_DONE */
        atomic_store(&cc->secure, true);
        CC_COUNT(cc, secure_transitions, 1);
        return U_SUCCESS;
}

/* r4 = first 64 KiB page frame, r5 = number of pages. */
static int64_t share(struct cc *cc, bool to_shared)
{
        uint64_t gfn = CC_ARG(cc, 1), count = CC_ARG(cc, 2), gpa, len, end;
        int r;

        if (cc->pef_state != PEF_SECURE)
                return H_STATE;
        if (gfn > UINT64_MAX / PEF_GRANULE)
                return H_PARAMETER;
        gpa = gfn * PEF_GRANULE;
        if (!guest_mem_contains(cc->mem, gpa, PEF_GRANULE))
                return H_PARAMETER;
        if (count == 0 || count > UINT64_MAX / PEF_GRANULE)
                return H_P2;
        len = count * PEF_GRANULE;
        if (!range_end(gpa, len, &end) || !guest_mem_contains(cc->mem, gpa, len))
                return H_P2;
        r = to_shared ? cc_make_shared(cc, gpa, len, CC_ZERO)
                      : cc_make_private(cc, gpa, len, CC_ZERO);
        if (r)
                return H_PARAMETER;
        if (to_shared)
                CC_COUNT(cc, shared, len / OWNERSHIP_GRANULE);
        else
                CC_COUNT(cc, unshared, len / OWNERSHIP_GRANULE);
        return U_SUCCESS;
}

/* Zeroes a run of shared granules once it is private (cc_make_private waits first). */
static int unshare_run(struct cc *cc, gpa_t gpa, uint64_t len, void *opaque)
{
        (void)opaque;
        return cc_make_private(cc, gpa, len, CC_ZERO);
}

static int64_t unshare_all(struct cc *cc)
{
        uint64_t before = ownership_private_granules(cc->own);

        if (cc->pef_state != PEF_SECURE)
                return H_STATE;
        /* Every shared page goes private, then is zeroed, run by run. */
        for (unsigned i = 0; i < guest_mem_region_count(cc->mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(cc->mem, i);
                uint64_t len = align_down(reg.size, PEF_GRANULE);
                if (cc_for_each_run(cc, reg.gpa, len, false, unshare_run, NULL))
                        return H_PARAMETER;
        }
        CC_COUNT(cc, unshared, ownership_private_granules(cc->own) - before);
        return U_SUCCESS;
}

void pef_ucall(struct cc *cc)
{
        int64_t r;

        switch (CC_ARG(cc, 0)) {
        case UV_ESM:
                r = esm(cc);
                break;
        case UV_SHARE_PAGE:
                r = share(cc, true);
                break;
        case UV_UNSHARE_PAGE:
                r = share(cc, false);
                break;
        case UV_UNSHARE_ALL_PAGES:
                r = unshare_all(cc);
                break;
        default:
                r = H_FUNCTION;
                break;
        }
        if (r != U_SUCCESS) {
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "pef: ucall 0x%llx (r4 0x%llx, r5 0x%llx) failed with %lld",
                          (unsigned long long)CC_ARG(cc, 0), (unsigned long long)CC_ARG(cc, 1),
                          (unsigned long long)CC_ARG(cc, 2), (long long)r);
        }
        CC_RET(cc, 0) = (uint64_t)r;
        CC_RET(cc, 1) = 0;
}

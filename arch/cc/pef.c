/*
 * The POWER PEF model: the VM starts as a normal guest; UV_ESM moves it into secure mode
 * (H_SVM_INIT_START, every page made secure, H_SVM_INIT_DONE; on a bad ESM blob
 * H_SVM_INIT_ABORT pages everything back out and the guest gets H_PARAMETER). Afterwards the
 * guest shares and unshares 64 KiB pages; both zero them (the ultravisor never lets data
 * cross the boundary). Calls arrive through the platform-call window with r3 = call number
 * and r4.. = arguments (see cc.h).
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
        if (guest_mem_read(cc->mem, a, blob, sizeof(blob)) ||
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
        cc->secure = true;
        cc->stats.secure_transitions++;
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
        r = cc_zero(cc, gpa, len);
        if (!r)
                r = to_shared ? cc_make_shared(cc, gpa, len) : cc_make_private(cc, gpa, len);
        if (r)
                return H_PARAMETER;
        if (to_shared)
                cc->stats.shared += len / OWNERSHIP_GRANULE;
        else
                cc->stats.unshared += len / OWNERSHIP_GRANULE;
        return U_SUCCESS;
}

static int64_t unshare_all(struct cc *cc)
{
        uint64_t before = ownership_private_granules(cc->own);

        if (cc->pef_state != PEF_SECURE)
                return H_STATE;
        /* Every shared page is zeroed before it goes private again. */
        for (unsigned i = 0; i < guest_mem_region_count(cc->mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(cc->mem, i);
                for (gpa_t g = reg.gpa; g < reg.gpa + reg.size; g += PEF_GRANULE)
                        if (ownership_is_shared(cc->own, g, PEF_GRANULE) &&
                            cc_zero(cc, g, PEF_GRANULE))
                                return H_PARAMETER;
        }
        if (cc_set_all(cc, true))
                return H_PARAMETER;
        cc->stats.unshared += ownership_private_granules(cc->own) - before;
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
                cc->stats.failed_calls++;
                LOG_GUEST(&cc->rl, "pef: ucall 0x%llx (r4 0x%llx, r5 0x%llx) failed with %lld",
                          (unsigned long long)CC_ARG(cc, 0), (unsigned long long)CC_ARG(cc, 1),
                          (unsigned long long)CC_ARG(cc, 2), (long long)r);
        }
        CC_RET(cc, 0) = (uint64_t)r;
        CC_RET(cc, 1) = 0;
}

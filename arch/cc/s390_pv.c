/*
 * The s390 Protected Virtualization model: the VM starts as a normal guest; the PV IPL
 * (DIAG 0x308 subcode 10: KVM_PV_ENABLE, unpack, verify of the Secure Execution image)
 * makes every page private. The guest then shares and unshares 4 KiB pages with the UVC
 * instruction on a control block in its own memory (SET_SHARED_ACCESS 0x1000,
 * REMOVE_SHARED_ACCESS 0x1001; QUI lists the calls). The ultravisor reads and answers the
 * control block through the trusted path. Condition code 0 when rc is EXECUTED, else 1.
 */
#include "cc_priv.h"

#include <string.h>

/* struct uv_cb_header: le16 len, le16 cmd, le16 rc, le16 rrc; share: paddr at 0x20. */
#define CB_LEN       0
#define CB_CMD       2
#define CB_RC        4
#define CB_RRC       6
#define CB_PADDR     0x20
#define CB_QUI_CALLS 0x10 /* installed-calls bitmap, bit n (from the left) = call n */

static uint16_t share(struct cc *cc, gpa_t cb, uint16_t len, bool to_shared)
{
        uint8_t raw[8];
        gpa_t paddr;
        int r;

        if (len != UV_CB_SHARE_LEN)
                return UVC_RC_INV_LEN;
        if (!atomic_load(&cc->secure))
                return UVC_RC_INV_STATE;
        if (cc_trusted_read(cc, cb + CB_PADDR, raw, sizeof(raw)))
                return UVC_RC_INV_ADDR;
        paddr = get_le64(raw);
        if (!is_aligned(paddr, OWNERSHIP_GRANULE) ||
            !guest_mem_contains(cc->mem, paddr, OWNERSHIP_GRANULE))
                return UVC_RC_INV_ADDR;
        /* Protection by access control: the bytes stay as they are both ways. */
        r = to_shared ? cc_make_shared(cc, paddr, OWNERSHIP_GRANULE, CC_KEEP)
                      : cc_make_private(cc, paddr, OWNERSHIP_GRANULE, CC_KEEP);
        if (r)
                return UVC_RC_INV_ADDR;
        if (to_shared)
                CC_COUNT(cc, shared, 1);
        else
                CC_COUNT(cc, unshared, 1);
        return UVC_RC_EXECUTED;
}

static uint16_t query(struct cc *cc, gpa_t cb, uint16_t len)
{
        /* Calls numbered from the left of a 256-bit list: QUI 0, SET 8, REMOVE 9. */
        uint8_t list[32] = {0};

        if (len < UV_CB_QUI_LEN)
                return UVC_RC_INV_LEN;
        list[0] = 0x80 | 0x00;
        list[1] = 0x80 | 0x40;
        if (cc_trusted_write(cc, cb + CB_QUI_CALLS, list, sizeof(list)))
                return UVC_RC_INV_ADDR;
        return UVC_RC_EXECUTED;
}

void s390_uvc(struct cc *cc)
{
        gpa_t cb = CC_ARG(cc, 0);
        uint8_t hdr[8];
        uint16_t len, cmd, rc;

        /* A control block the ultravisor cannot even read: program check, modelled as
         * condition code 3 with nothing changed. */
        if (!is_aligned(cb, 8) || cc_trusted_read(cc, cb, hdr, sizeof(hdr))) {
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "s390-pv: UVC control block at 0x%llx is not usable",
                          (unsigned long long)cb);
                CC_RET(cc, 0) = 3;
                return;
        }
        len = get_le16(hdr + CB_LEN);
        cmd = get_le16(hdr + CB_CMD);
        switch (cmd) {
        case UVC_CMD_SET_SHARED_ACCESS:
                rc = share(cc, cb, len, true);
                break;
        case UVC_CMD_REMOVE_SHARED_ACCESS:
                rc = share(cc, cb, len, false);
                break;
        case UVC_CMD_QUI:
                rc = query(cc, cb, len);
                break;
        default:
                rc = UVC_RC_INV_CMD;
                break;
        }
        put_le16(hdr + CB_RC, rc);
        put_le16(hdr + CB_RRC, 0);
        if (cc_trusted_write(cc, cb + CB_RC, hdr + CB_RC, 4))
                rc = UVC_RC_INV_ADDR;
        if (rc != UVC_RC_EXECUTED) {
                CC_COUNT(cc, failed_calls, 1);
                /* Addresses and codes only: the command word came from the control block,
                 * private memory the guest may have aimed anywhere (at its secrets). */
                LOG_GUEST(&cc->rl, "s390-pv: UVC on the control block at 0x%llx: rc 0x%x",
                          (unsigned long long)cb, rc);
        }
        CC_RET(cc, 0) = rc == UVC_RC_EXECUTED ? 0 : 1;
}

/* DIAG 0x308 subcode 10 with ARG1 = the Secure Execution header of the image. */
void s390_diag308(struct cc *cc)
{
        uint8_t magic[8];
        uint64_t rc = DIAG308_RC_OK;

        if (CC_ARG(cc, 0) != DIAG308_PV_IPL) {
                rc = DIAG308_RC_INV_SUBCODE;
        } else if (atomic_load(&cc->secure)) {
                rc = DIAG308_RC_NOCONFIG;
        } else if (cc_trusted_read(cc, CC_ARG(cc, 1), magic, sizeof(magic)) ||
                   memcmp(magic, S390_SE_MAGIC, 8) != 0) {
                rc = DIAG308_RC_NOCONFIG; /* verify failed: stays a normal VM */
        } else if (cc_set_all(cc, true)) {
                rc = DIAG308_RC_NOCONFIG;
        } else {
                atomic_store(&cc->secure, true);
                CC_COUNT(cc, secure_transitions, 1);
        }
        if (rc != DIAG308_RC_OK) {
                CC_COUNT(cc, failed_calls, 1);
                LOG_GUEST(&cc->rl, "s390-pv: DIAG 0x308 subcode %llu refused (rc 0x%llx)",
                          (unsigned long long)CC_ARG(cc, 0), (unsigned long long)rc);
        }
        CC_RET(cc, 0) = rc;
}

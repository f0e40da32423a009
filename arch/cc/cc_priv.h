/* State shared by the platform models (private to arch/cc). */
#ifndef ARCH_CC_CC_PRIV_H
#define ARCH_CC_CC_PRIV_H

#include <nettle/xts.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cc.h"
#include "common/log.h"

/* The unit of the platform's cipher: one 4 KiB page, its guest physical address the tweak. */
#define CC_PAGE 4096ull

/* A private granule the host took away from the guest (pef page-out, s390 export). The guest
 * RAM keeps the plaintext, inaccessible to the guest (PROT_NONE) until its next touch pages
 * it back in; the host sees `cipher`, the granule encrypted under the VM's key with this
 * export's number in the tweak (a later export of the same bytes looks unrelated). */
struct cc_paged {
        gpa_t gpa;
        uint8_t *cipher;
};

enum pef_svm_state { PEF_NORMAL, PEF_INIT_STARTED, PEF_SECURE, PEF_ABORTED };

struct cc_counters {
        atomic_uint_fast64_t calls, failed_calls, shared, unshared, secure_transitions, page_outs,
            page_ins, host_private_reads;
};

/*
 * Two locks, so that the VMM thread never waits for a guest's transition:
 *  - call: the guest's platform calls, one at a time (the call window's registers, the
 *    platform's state, every ownership transition). Only vCPU threads take it, and a
 *    transition to private holds it while it waits for the host accesses under way on its
 *    range to end -- which may take the VMM thread reaping an io_uring completion. Nothing
 *    the VMM thread does takes it.
 *  - lock: the paged-out set and the pending transition. Held only for short copies and
 *    mprotect calls, never while waiting for anything; host reads (the VMM thread) and the
 *    vCPUs' faults on paged-out granules take it. Order: call, then lock.
 * Counters are atomic (a metrics flush takes no lock).
 */
struct cc {
        enum cc_platform platform;
        struct guest_mem *mem;
        struct ownership *own;
        pthread_mutex_t call;
        pthread_mutex_t lock;
        atomic_bool secure;
        uint64_t granule;          /* 4 KiB; the POWER calls work on 64 KiB */
        struct xts_aes128_key enc; /* the VM's key (random per VM, never the host's) */
        uint64_t exports;          /* pef/s390 exports so far (lock) */
        gpa_t pending_gpa;         /* a transition to private waiting for host accesses */
        uint64_t pending_len;      /* (lock; 0: none) */
        uint64_t regs[8];          /* call window ARG0-3, RET0-1 at their offsets / 8 - 2 */
        struct cc_paged *paged;    /* lock */
        unsigned nr_paged, cap_paged;
        atomic_bool any_paged;
        uint64_t ghcb_msr[PLATFORM_MAX_VCPUS];
        enum pef_svm_state pef_state;
        struct cc_counters count;
        struct ratelimit rl;
};

#define CC_ARG(cc, i)      ((cc)->regs[(i)])
#define CC_RET(cc, i)      ((cc)->regs[4 + (i)])
#define CC_COUNT(cc, f, n) atomic_fetch_add_explicit(&(cc)->count.f, (n), memory_order_relaxed)

/* What a conversion does to the contents of the granules whose owner changes. */
enum cc_content {
        CC_KEEP,  /* s390: protection is access control, memory is not encrypted */
        CC_ZERO,  /* pef: the ultravisor never lets data cross the boundary */
        CC_CRYPT, /* sev, to shared: the old contents become their ciphertext (what the
                   * C-bit-clear view of the same memory shows on hardware) */
};

/* Common helpers (cc.c); callers hold cc->call, the helpers take cc->lock. */
/* Makes [gpa, gpa+len) shared: granules that were private get `what` first (the whole range
 * for CC_ZERO), then the host may touch them. Never waits. */
int cc_make_shared(struct cc *cc, gpa_t gpa, uint64_t len, enum cc_content what);
/* Makes [gpa, gpa+len) private: refuses new host accesses, waits for those under way (the
 * in-flight I/O is quiesced), and only then, for CC_ZERO, zeroes the whole range, so nothing
 * the host wrote survives in memory the guest now owns. The other contents stay as they are
 * (sev hardware would show their decryption: guests initialise such pages before use).
 * Holds no lock the VMM thread takes while it waits. */
int cc_make_private(struct cc *cc, gpa_t gpa, uint64_t len, enum cc_content what);
int cc_set_all(struct cc *cc, bool private_);
/* Calls fn for each maximal run of granules of [gpa, gpa+len) (whole granules) that are
 * private (private_) or shared, in address order; stops at fn's first non-zero value. */
int cc_for_each_run(struct cc *cc, gpa_t gpa, uint64_t len, bool private_,
                    int (*fn)(struct cc *cc, gpa_t gpa, uint64_t len, void *opaque), void *opaque);
/* The trusted platform reading or writing guest memory (a control block, the ESM blob):
 * pages the range in first; -EFAULT when it is not RAM. */
int cc_trusted_read(struct cc *cc, gpa_t gpa, void *buf, size_t len) MUST_CHECK;
int cc_trusted_write(struct cc *cc, gpa_t gpa, const void *buf, size_t len) MUST_CHECK;
/* Pages [gpa, gpa+len) back in (the guest touches it, or its owner changes); cc->lock. */
int cc_page_in_range(struct cc *cc, gpa_t gpa, uint64_t len);

/* Backends; called with cc->call held. */
void pef_ucall(struct cc *cc);
void s390_uvc(struct cc *cc);
void s390_diag308(struct cc *cc);
bool sev_handle_msr(struct cc *cc, unsigned vcpu, struct kvm_run *run);
bool sev_handle_hypercall(struct cc *cc, struct kvm_run *run);

#endif

/* State shared by the platform models (private to arch/cc). */
#ifndef ARCH_CC_CC_PRIV_H
#define ARCH_CC_CC_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "cc.h"
#include "common/log.h"

/* A private granule the host took away from the guest (pef page-out, s390 export): the
 * plaintext lives here, the guest RAM holds ciphertext and is inaccessible to the guest. */
struct cc_paged {
        gpa_t gpa;
        uint8_t *plain;
};

enum pef_svm_state { PEF_NORMAL, PEF_INIT_STARTED, PEF_SECURE, PEF_ABORTED };

struct cc {
        enum cc_platform platform;
        struct guest_mem *mem;
        struct ownership *own;
        pthread_mutex_t lock; /* platform state, the call window, the paged-out set */
        bool secure;
        uint64_t granule; /* 4 KiB; the POWER calls work on 64 KiB */
        uint64_t key[2];  /* per-VM key of the ciphertext stand-in */
        uint64_t regs[8]; /* call window ARG0-3, RET0-1 at their offsets / 8 - 2 */
        struct cc_paged *paged;
        unsigned nr_paged, cap_paged;
        atomic_bool any_paged;
        uint64_t ghcb_msr[PLATFORM_MAX_VCPUS];
        enum pef_svm_state pef_state;
        struct cc_stats stats;
        struct ratelimit rl;
};

#define CC_ARG(cc, i) ((cc)->regs[(i)])
#define CC_RET(cc, i) ((cc)->regs[4 + (i)])

/* Common helpers (cc.c); callers hold cc->lock. */
void cc_scramble(const struct cc *cc, gpa_t gpa, const uint8_t *in, uint8_t *out, size_t len);
int cc_page_in_range(struct cc *cc, gpa_t gpa, uint64_t len);
int cc_page_out(struct cc *cc, gpa_t granule_gpa);
/* Transitions through the map, paging in first (a paged-out granule must come back before
 * its owner changes). */
int cc_make_private(struct cc *cc, gpa_t gpa, uint64_t len);
int cc_make_shared(struct cc *cc, gpa_t gpa, uint64_t len);
int cc_set_all(struct cc *cc, bool private_);
/* Zeroes guest RAM through the trusted path. */
int cc_zero(struct cc *cc, gpa_t gpa, uint64_t len);

/* Backends; called with cc->lock held. */
void pef_ucall(struct cc *cc);
void s390_uvc(struct cc *cc);
void s390_diag308(struct cc *cc);
bool sev_handle_msr(struct cc *cc, unsigned vcpu, struct kvm_run *run);
bool sev_handle_hypercall(struct cc *cc, struct kvm_run *run);

#endif

/*
 * An x86_64 vCPU's whole state through KVM, for snapshots: CPUID, MP state, general and
 * special registers, XSAVE (or the legacy FPU image when KVM has no XSAVE) and XCRs, debug
 * registers, the in-kernel LAPIC, the MSRs, pending events and the TSC frequency.
 *
 * MSRs: every index of KVM_GET_MSR_INDEX_LIST plus the MTRRs (which KVM emulates but does
 * not list), less any this KVM refuses to read. The KVM structures are stored as blobs of
 * their exact UAPI size and checked on the way back.
 *
 * Save needs a vCPU that is not in KVM_RUN and has no I/O completion pending (vcpu.c runs
 * an immediate-exit KVM_RUN before parking). Restore follows the order KVM needs (CPUID
 * first, the LAPIC before the MSRs that depend on it such as TSC_DEADLINE, events last).
 */
#ifndef ARCH_X86_CPU_STATE_H
#define ARCH_X86_CPU_STATE_H

#include <linux/kvm.h>

#include "common/error.h"
#include "common/snapbuf.h"
#include "common/util.h"

#define X86_CPU_STATE_MAX_MSRS  1024
#define X86_CPU_STATE_MAX_CPUID 256
#define X86_CPU_STATE_MAX_XSAVE (64u << 10)
#define X86_CPU_STATE_FPU       1 /* struct kvm_fpu */
#define X86_CPU_STATE_XSAVE     2 /* struct kvm_xsave (4 KiB, or KVM_CAP_XSAVE2's size) */
#define X86_CPU_STATE_VERSION   1

struct x86_cpu_state_env {
        int sys_fd;                          /* /dev/kvm: capabilities */
        const struct kvm_msr_list *msr_list; /* KVM_GET_MSR_INDEX_LIST */
};

int x86_cpu_state_save(const struct x86_cpu_state_env *env, int vcpu_fd, struct snapbuf_writer *w,
                       struct error *err) MUST_CHECK;
/* Errors name the part KVM refused ("vcpu state: KVM_SET_MSRS refused MSR 0x...") or the
 * reader's message (ERROR_CONFIG: the file is bad). */
int x86_cpu_state_restore(const struct x86_cpu_state_env *env, int vcpu_fd,
                          struct snapbuf_reader *r, struct error *err) MUST_CHECK;

/* The host CPU's vendor string (CPUID leaf 0: "GenuineIntel", "AuthenticAMD"). A vCPU's state
 * only restores on a host of the same vendor. */
void x86_host_cpu_vendor(char out[13]);

/* For --describe-snapshot: the instruction pointer and mode of a saved vCPU, without KVM. */
struct x86_cpu_state_summary {
        uint64_t rip;
        uint64_t cr0, efer;
        uint32_t mp_state;
        uint32_t nr_msrs;
};
int x86_cpu_state_describe(struct snapbuf_reader *r, struct x86_cpu_state_summary *out);

#endif

/*
 * A vCPU's ioctls, one function each, on the vCPU file descriptor kvm_create_vcpu returned.
 * Each returns what the ioctl returns when it succeeds (0, or the count or value named
 * below) and -errno when it fails, leaving errno as the ioctl set it.
 */
#ifndef KVM_KVM_VCPU_H
#define KVM_KVM_VCPU_H

#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>

/* Enters the guest until the next exit (kvm_run says which) or a signal (-EINTR). */
int kvm_vcpu_run(int fd);
/* The signals that interrupt kvm_vcpu_run while the guest runs: all but those in `blocked`
 * (the kernel's 8-byte sigset; glibc's sigset_t is larger and starts alike). */
int kvm_vcpu_set_signal_mask(int fd, const sigset_t *blocked);

int kvm_vcpu_get_regs(int fd, struct kvm_regs *regs);
int kvm_vcpu_set_regs(int fd, const struct kvm_regs *regs);
int kvm_vcpu_get_sregs(int fd, struct kvm_sregs *sregs);
int kvm_vcpu_set_sregs(int fd, const struct kvm_sregs *sregs);
int kvm_vcpu_get_fpu(int fd, struct kvm_fpu *fpu);
int kvm_vcpu_set_fpu(int fd, const struct kvm_fpu *fpu);
/* xsave points to struct kvm_xsave, or to KVM_CAP_XSAVE2's larger size for get_xsave2. */
int kvm_vcpu_get_xsave(int fd, void *xsave);
int kvm_vcpu_get_xsave2(int fd, void *xsave);
int kvm_vcpu_set_xsave(int fd, const void *xsave);
int kvm_vcpu_get_xcrs(int fd, struct kvm_xcrs *xcrs);
int kvm_vcpu_set_xcrs(int fd, const struct kvm_xcrs *xcrs);
int kvm_vcpu_get_debugregs(int fd, struct kvm_debugregs *dbg);
int kvm_vcpu_set_debugregs(int fd, const struct kvm_debugregs *dbg);
int kvm_vcpu_get_lapic(int fd, struct kvm_lapic_state *lapic);
int kvm_vcpu_set_lapic(int fd, const struct kvm_lapic_state *lapic);
/* Both return how many of msrs->nmsrs entries were read or written: KVM stops at the first
 * MSR it refuses. */
int kvm_vcpu_get_msrs(int fd, struct kvm_msrs *msrs);
int kvm_vcpu_set_msrs(int fd, const struct kvm_msrs *msrs);
/* cpuid->nent entries follow the header (get: the room there is). */
int kvm_vcpu_get_cpuid2(int fd, struct kvm_cpuid2 *cpuid);
int kvm_vcpu_set_cpuid2(int fd, const struct kvm_cpuid2 *cpuid);
int kvm_vcpu_get_mp_state(int fd, struct kvm_mp_state *mp);
int kvm_vcpu_set_mp_state(int fd, const struct kvm_mp_state *mp);
int kvm_vcpu_get_events(int fd, struct kvm_vcpu_events *events);
int kvm_vcpu_set_events(int fd, const struct kvm_vcpu_events *events);
/* Returns the vCPU's TSC frequency in kHz. */
int kvm_vcpu_get_tsc_khz(int fd);
int kvm_vcpu_set_tsc_khz(int fd, uint32_t khz);
/* The guest-physical address of tr->linear_address in the vCPU's current paging mode. */
int kvm_vcpu_translate(int fd, struct kvm_translation *tr);

#endif

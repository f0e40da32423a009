#include "kvm_vcpu.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

/* ioctl's result, or -errno (errno left as it is). */
static int vcpu_ioctl(int fd, unsigned long req, const void *arg)
{
        int r = ioctl(fd, req, arg);

        return r < 0 ? -errno : r;
}

int kvm_vcpu_run(int fd)
{
        return vcpu_ioctl(fd, KVM_RUN, NULL);
}

int kvm_vcpu_set_signal_mask(int fd, const sigset_t *blocked)
{
        union {
                struct kvm_signal_mask hdr;
                uint8_t bytes[sizeof(struct kvm_signal_mask) + 8];
        } mask;

        mask.hdr.len = 8;
        memcpy(mask.bytes + sizeof(struct kvm_signal_mask), blocked, 8);
        return vcpu_ioctl(fd, KVM_SET_SIGNAL_MASK, &mask);
}

int kvm_vcpu_get_regs(int fd, struct kvm_regs *regs)
{
        return vcpu_ioctl(fd, KVM_GET_REGS, regs);
}

int kvm_vcpu_set_regs(int fd, const struct kvm_regs *regs)
{
        return vcpu_ioctl(fd, KVM_SET_REGS, regs);
}

int kvm_vcpu_get_sregs(int fd, struct kvm_sregs *sregs)
{
        return vcpu_ioctl(fd, KVM_GET_SREGS, sregs);
}

int kvm_vcpu_set_sregs(int fd, const struct kvm_sregs *sregs)
{
        return vcpu_ioctl(fd, KVM_SET_SREGS, sregs);
}

int kvm_vcpu_get_fpu(int fd, struct kvm_fpu *fpu)
{
        return vcpu_ioctl(fd, KVM_GET_FPU, fpu);
}

int kvm_vcpu_set_fpu(int fd, const struct kvm_fpu *fpu)
{
        return vcpu_ioctl(fd, KVM_SET_FPU, fpu);
}

int kvm_vcpu_get_xsave(int fd, void *xsave)
{
        return vcpu_ioctl(fd, KVM_GET_XSAVE, xsave);
}

int kvm_vcpu_get_xsave2(int fd, void *xsave)
{
        return vcpu_ioctl(fd, KVM_GET_XSAVE2, xsave);
}

int kvm_vcpu_set_xsave(int fd, const void *xsave)
{
        return vcpu_ioctl(fd, KVM_SET_XSAVE, xsave);
}

int kvm_vcpu_get_xcrs(int fd, struct kvm_xcrs *xcrs)
{
        return vcpu_ioctl(fd, KVM_GET_XCRS, xcrs);
}

int kvm_vcpu_set_xcrs(int fd, const struct kvm_xcrs *xcrs)
{
        return vcpu_ioctl(fd, KVM_SET_XCRS, xcrs);
}

int kvm_vcpu_get_debugregs(int fd, struct kvm_debugregs *dbg)
{
        return vcpu_ioctl(fd, KVM_GET_DEBUGREGS, dbg);
}

int kvm_vcpu_set_debugregs(int fd, const struct kvm_debugregs *dbg)
{
        return vcpu_ioctl(fd, KVM_SET_DEBUGREGS, dbg);
}

int kvm_vcpu_get_lapic(int fd, struct kvm_lapic_state *lapic)
{
        return vcpu_ioctl(fd, KVM_GET_LAPIC, lapic);
}

int kvm_vcpu_set_lapic(int fd, const struct kvm_lapic_state *lapic)
{
        return vcpu_ioctl(fd, KVM_SET_LAPIC, lapic);
}

int kvm_vcpu_get_msrs(int fd, struct kvm_msrs *msrs)
{
        return vcpu_ioctl(fd, KVM_GET_MSRS, msrs);
}

int kvm_vcpu_set_msrs(int fd, const struct kvm_msrs *msrs)
{
        return vcpu_ioctl(fd, KVM_SET_MSRS, msrs);
}

int kvm_vcpu_get_cpuid2(int fd, struct kvm_cpuid2 *cpuid)
{
        return vcpu_ioctl(fd, KVM_GET_CPUID2, cpuid);
}

int kvm_vcpu_set_cpuid2(int fd, const struct kvm_cpuid2 *cpuid)
{
        return vcpu_ioctl(fd, KVM_SET_CPUID2, cpuid);
}

int kvm_vcpu_get_mp_state(int fd, struct kvm_mp_state *mp)
{
        return vcpu_ioctl(fd, KVM_GET_MP_STATE, mp);
}

int kvm_vcpu_set_mp_state(int fd, const struct kvm_mp_state *mp)
{
        return vcpu_ioctl(fd, KVM_SET_MP_STATE, mp);
}

int kvm_vcpu_get_events(int fd, struct kvm_vcpu_events *events)
{
        return vcpu_ioctl(fd, KVM_GET_VCPU_EVENTS, events);
}

int kvm_vcpu_set_events(int fd, const struct kvm_vcpu_events *events)
{
        return vcpu_ioctl(fd, KVM_SET_VCPU_EVENTS, events);
}

int kvm_vcpu_get_tsc_khz(int fd)
{
        return vcpu_ioctl(fd, KVM_GET_TSC_KHZ, NULL);
}

int kvm_vcpu_set_tsc_khz(int fd, uint32_t khz)
{
        int r = ioctl(fd, KVM_SET_TSC_KHZ, (unsigned long)khz);

        return r < 0 ? -errno : r;
}

int kvm_vcpu_translate(int fd, struct kvm_translation *tr)
{
        return vcpu_ioctl(fd, KVM_TRANSLATE, tr);
}

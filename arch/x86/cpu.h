/*
 * Initial vCPU state for x86_64: CPUID, boot MSRs, FPU, LAPIC LINT0/1 wiring, and for the
 * boot processor the registers of the kernel's boot protocol. Application processors are
 * left waiting for INIT/SIPI from the guest.
 */
#ifndef ARCH_X86_CPU_H
#define ARCH_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>

#include "common/error.h"
#include "cpuid.h"
#include "loader.h"

struct x86_cpu_init {
        unsigned index; /* vCPU index = APIC id */
        unsigned nr_vcpus;
        bool smt; /* two threads per core (machine-config smt) */
        const struct kvm_cpuid2 *supported_cpuid;
        const struct kvm_msr_list *msr_list; /* KVM_GET_MSR_INDEX_LIST */
        const struct x86_cpuid_mask *hide;
        const struct x86_kernel *kernel; /* boot processor only (index 0) */
};

int x86_cpu_init(int vcpu_fd, const struct x86_cpu_init *init, struct error *err) MUST_CHECK;

/* The register state the boot protocol prescribes (exposed for tests). */
void x86_boot_regs(const struct x86_kernel *k, struct kvm_regs *regs, struct kvm_sregs *sregs);

#endif

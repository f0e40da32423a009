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
#include "cpu_template.h"
#include "cpuid.h"
#include "loader.h"

struct x86_cpu_init {
        unsigned index; /* vCPU index = APIC id */
        unsigned nr_vcpus;
        bool smt; /* two threads per core (machine-config smt) */
        /* KVM_GET_SUPPORTED_CPUID with the CPU template applied (x86_cpu_template_apply_cpuid):
         * normalised per vCPU (x86_cpuid_apply) here, after the template as in Firecracker. */
        const struct kvm_cpuid2 *cpuid;
        const struct kvm_msr_list *msr_list; /* KVM_GET_MSR_INDEX_LIST */
        const struct x86_cpu_template *tmpl; /* its msr_modifiers; NULL: none */
        const struct x86_cpuid_mask *hide;
        const struct x86_kernel *kernel; /* boot processor only (index 0) */
};

/* The template's MSRs are set after the CPUID and before the boot MSRs, which win where both
 * set one (Firecracker's order): each is the MSR's value after KVM_SET_CPUID2 with the
 * template's bitmap applied, and one KVM refuses fails the vCPU (ERROR_CONFIG, naming it). */
int x86_cpu_init(int vcpu_fd, const struct x86_cpu_init *init, struct error *err) MUST_CHECK;

/* The register state the boot protocol prescribes (exposed for tests). */
void x86_boot_regs(const struct x86_kernel *k, struct kvm_regs *regs, struct kvm_sregs *sregs);

#endif

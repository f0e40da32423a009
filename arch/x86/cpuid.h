/*
 * Guest CPUID: KVM_GET_SUPPORTED_CPUID adjusted per vCPU (APIC id, topology, hypervisor
 * bit, KVM signature leaf) minus the features the user hides.
 *
 * Hiding is by Linux /proc/cpuinfo flag name ("cx16,xsave"), and hides what depends on the
 * feature too (xsave takes osxsave, avx, avx2, avx512*, xsaveopt... and leaf 0xD with it),
 * because this platform cannot execute some instructions and a guest must not see a
 * dependent feature whose base is gone.
 */
#ifndef ARCH_X86_CPUID_H
#define ARCH_X86_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

#define X86_CPUID_MAX_HIDDEN 64

enum x86_cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

struct x86_cpuid_bit {
        uint32_t leaf;
        uint32_t subleaf;
        enum x86_cpuid_reg reg;
        uint8_t bit;
};

struct x86_cpuid_mask {
        unsigned nr;
        struct x86_cpuid_bit bits[X86_CPUID_MAX_HIDDEN];
        bool hide_xsave_leaf; /* zero leaf 0xD entirely */
};

/* Parses a comma-separated list of feature names (empty string: nothing hidden). */
int x86_cpuid_parse_hide(const char *list, struct x86_cpuid_mask *out,
                         struct error *err) MUST_CHECK;

/* Entries x86_cpuid_apply may add to a supported table (the topology leaves' core level). */
#define X86_CPUID_ADDED_ENTRIES 2

/* Rewrites `cpuid` (a copy of the supported table, with room for `capacity` entries) for vCPU
 * `index` of `nr_vcpus`, with two threads per core when smt is set (and there are several
 * vCPUs), else one. */
void x86_cpuid_apply(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index, unsigned nr_vcpus,
                     bool smt, const struct x86_cpuid_mask *hide);

/* Looks an entry up; NULL when absent. */
struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t leaf, uint32_t subleaf);

#endif

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
#include <stddef.h>
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

/* Sets the bits KVM emulates although its supported table may not list them (the
 * TSC-deadline timer, see cpuid.c): x86_cpuid_apply sets them for every vCPU, and a restore
 * counts them as provided. */
void x86_cpuid_add_emulated(struct kvm_cpuid2 *cpuid);

/* Rewrites `cpuid` (a copy of the supported table, with room for `capacity` entries) for vCPU
 * `index` of `nr_vcpus`, with two threads per core when smt is set (and there are several
 * vCPUs), else one. */
void x86_cpuid_apply(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index, unsigned nr_vcpus,
                     bool smt, const struct x86_cpuid_mask *hide);

/* Looks an entry up; NULL when absent. */
struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t leaf, uint32_t subleaf);
/* The entry of exactly (leaf, subleaf) among n entries, as KVM lists it (subleaf 0 for a leaf
 * whose subleaf is not significant); NULL when absent. */
const struct kvm_cpuid_entry2 *x86_cpuid_find_exact(const struct kvm_cpuid_entry2 *e, uint32_t n,
                                                    uint32_t leaf, uint32_t subleaf);
uint32_t *x86_cpuid_reg(struct kvm_cpuid_entry2 *e, enum x86_cpuid_reg r);

/* The Linux /proc/cpuinfo name of a feature bit; NULL when it has none here. */
const char *x86_cpuid_feature_name(const struct x86_cpuid_bit *b);
/* "erms (leaf 0x7 subleaf 0x0 ebx bit 9)", or without the name when it has none. */
void x86_cpuid_describe_bit(const struct x86_cpuid_bit *b, char *buf, size_t cap);

/*
 * Capability bits: the bits of the feature registers (leaf 0x1 ECX/EDX, 0x7, 0xD's XCR0 and
 * XSS masks, 0x80000001, 0x80000007 EDX, 0x80000008 EBX, the KVM features leaf ...) whose 1
 * lets the guest use something the CPU and KVM must provide. A few bits of those registers
 * are not: they describe the topology or the hypervisor (HTT, CmpLegacy, the hypervisor bit),
 * follow the guest's own CR4 (OSXSAVE, OSPKE), say something is absent or restricted
 * (FDP_EXCPTN_ONLY, ZERO_FCS_FDS, EferLmsleUnsupported) or only how fast an instruction every
 * CPU has runs (ERMS, FSRM, fast zero-length MOVSB, fast short STOSB/CMPSB, IbrsPreferred,
 * IbrsSameMode).
 *
 * Finds the first capability bit set in the n entries that `supported`
 * (KVM_GET_SUPPORTED_CPUID) lacks: true and *out, false when there is none.
 */
bool x86_cpuid_find_unsupported(const struct kvm_cpuid_entry2 *e, uint32_t n,
                                const struct kvm_cpuid2 *supported, struct x86_cpuid_bit *out);

#endif

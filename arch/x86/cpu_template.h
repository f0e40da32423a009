/*
 * CPU templates: Firecracker's custom CPU template language for x86_64 (its docs/cpu_templates/
 * and schema.json), the static templates' identities, and the record a snapshot keeps of a
 * VM's CPU configuration.
 *
 * A template changes the guest's CPUID (per leaf and subleaf, per register: a bitmap of 32
 * characters, '0' clear, '1' set, 'x' keep), its MSRs (64-character bitmaps) and the KVM
 * capabilities checked at start ("171" also required, "!56" no longer required). The JSON
 * form is read in api/; this module holds the language's strings (bitmaps, numbers,
 * registers, capabilities, with Firecracker's messages), the template once read, and what
 * it does to a CPUID table.
 *
 * Several modifiers of one register (or of one leaf and subleaf, or one MSR) are folded into
 * one, applied in the order given: a later '0' or '1' overrides an earlier one, an 'x' keeps
 * what the earlier ones decided. So a template holds one bitmap per register it touches.
 *
 * Applying a template to the VM's CPUID (x86_cpu_template_apply_cpuid) refuses what the host
 * cannot provide: a leaf/subleaf KVM_GET_SUPPORTED_CPUID does not list (Firecracker's
 * message), and a capability bit set to 1 that KVM does not offer (x86_cpuid_check_supported).
 * The vendor string (leaf 0) stays the host's, as Firecracker's normalisation keeps it.
 */
#ifndef ARCH_X86_CPU_TEMPLATE_H
#define ARCH_X86_CPU_TEMPLATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/snapbuf.h"
#include "common/util.h"
#include "cpuid.h"

/* Distinct leaf/subleaf pairs, MSRs and capabilities a template may name (after folding). */
#define X86_TEMPLATE_MAX_LEAVES 256
#define X86_TEMPLATE_MAX_MSRS   256
#define X86_TEMPLATE_MAX_CAPS   64

/* filter bit 1: the template decides that bit (value's bit); 0: the bit is kept ('x'). */
struct x86_bitmap {
        uint64_t filter, value;
};

static inline uint64_t x86_bitmap_apply(const struct x86_bitmap *b, uint64_t v)
{
        return (v & ~b->filter) | (b->value & b->filter);
}

struct x86_cpuid_modifier {
        uint32_t leaf, subleaf;
        uint32_t flags;            /* KVM_CPUID_FLAG_*, as the template gives it */
        struct x86_bitmap regs[4]; /* eax, ebx, ecx, edx (enum x86_cpuid_reg); 32 bits */
};

struct x86_msr_modifier {
        uint32_t index;
        struct x86_bitmap bitmap;
};

struct x86_kvm_cap {
        uint32_t cap;
        bool remove; /* "!N": no longer checked */
};

struct x86_cpu_template {
        unsigned nr_caps, nr_cpuid, nr_msrs;
        struct x86_kvm_cap caps[X86_TEMPLATE_MAX_CAPS];
        struct x86_cpuid_modifier cpuid[X86_TEMPLATE_MAX_LEAVES];
        struct x86_msr_modifier msrs[X86_TEMPLATE_MAX_MSRS];
};

/* ---- the language's strings (Firecracker's messages) ---- */

/* "0b" (optional) then '0', '1', 'x' and '_' separators, the last character being bit 0; a
 * shorter string leaves the high bits 'x'. bits is 32 (CPUID) or 64 (MSR). */
int x86_template_parse_bitmap(const char *s, unsigned bits, struct x86_bitmap *out,
                              struct error *err) MUST_CHECK;
/* Exactly `bits` characters ("0b" then '0', '1', 'x'), as Firecracker writes them back; buf
 * holds at least 67 bytes. */
void x86_template_format_bitmap(const struct x86_bitmap *b, unsigned bits, char *buf);
/* A leaf, subleaf or MSR address: "0x..." (hexadecimal) or "0b..." (binary) that fits in 32
 * bits. */
int x86_template_parse_u32(const char *s, uint32_t *out, struct error *err) MUST_CHECK;
/* "eax", "ebx", "ecx" or "edx". */
int x86_template_parse_register(const char *s, enum x86_cpuid_reg *out,
                                struct error *err) MUST_CHECK;
/* A decimal capability number, "!" in front to remove it from the checks. */
int x86_template_parse_cap(const char *s, struct x86_kvm_cap *out, struct error *err) MUST_CHECK;
const char *x86_template_register_name(enum x86_cpuid_reg r);

/* ---- building a template ---- */

void x86_cpu_template_init(struct x86_cpu_template *t);
/* Folds one register modifier of (leaf, subleaf) in; flags are the leaf modifier's (the last
 * one given wins). */
int x86_cpu_template_add_cpuid(struct x86_cpu_template *t, uint32_t leaf, uint32_t subleaf,
                               uint32_t flags, bool has_reg, enum x86_cpuid_reg reg,
                               const struct x86_bitmap *b, struct error *err) MUST_CHECK;
int x86_cpu_template_add_msr(struct x86_cpu_template *t, uint32_t index, const struct x86_bitmap *b,
                             struct error *err) MUST_CHECK;
/* A later "N" or "!N" for the same capability replaces the earlier one. */
int x86_cpu_template_add_cap(struct x86_cpu_template *t, const struct x86_kvm_cap *c,
                             struct error *err) MUST_CHECK;
bool x86_cpu_template_empty(const struct x86_cpu_template *t);

/* ---- what it does ---- */

/*
 * Applies the template's CPUID modifiers to `cpuid` (the VM's table, a copy of `supported`
 * before per-vCPU normalisation). Refused (ERROR_CONFIG, nothing promised about cpuid):
 * a leaf/subleaf `supported` lacks ("Template changes a CPUID entry not supported by KVM:
 * Leaf: 1f, Subleaf: 5", Firecracker's words), flags that disagree with KVM on whether the
 * subleaf is significant, and a capability bit set that `supported` lacks (naming the leaf,
 * subleaf, register and bit, and the feature's /proc/cpuinfo name when it has one).
 */
int x86_cpu_template_apply_cpuid(struct kvm_cpuid2 *cpuid, const struct x86_cpu_template *t,
                                 const struct kvm_cpuid2 *supported, struct error *err) MUST_CHECK;

/* A template that sets to 1 a bit --cpu-hide hides (or any bit of leaf 0xD when xsave is
 * hidden) contradicts it: refused, naming the feature and the bit. */
int x86_cpu_template_check_hide(const struct x86_cpu_template *t, const struct x86_cpuid_mask *m,
                                struct error *err) MUST_CHECK;

/* ---- Firecracker's static templates (machine-config's deprecated cpu_template) ---- */

/* "C3", "T2", "T2S", "T2CL", "T2A": true for a name of an x86_64 static template. */
bool x86_static_template_known(const char *name);
/* The host CPU must be of the template's vendor (Firecracker's rule and message: "CPU vendor
 * mismatched between actual CPU and CPU template."); vendor is the host's leaf 0 string. Any
 * other name: "Invalid static CPU template: NAME". */
int x86_static_template_check(const char *name, const char *vendor, struct error *err) MUST_CHECK;

/* Whether KVM_GET_MSR_INDEX_LIST (l, may be NULL) has index. */
bool x86_msr_listed(const struct kvm_msr_list *l, uint32_t index);

/* ---- the snapshot's record of a VM's CPU configuration ---- */

struct x86_msr_value {
        uint32_t index;
        uint64_t value;
};

/*
 * What a VM's vCPUs were configured with: the static template's name or the custom template
 * (or neither), vCPU 0's resulting CPUID and the values of the MSRs the template changed. A
 * restore checks that this host provides it (x86_cpu_record_check and, for the
 * capabilities, the caller with KVM).
 */
struct x86_cpu_record {
        char static_template[8]; /* "" when none */
        bool has_template;
        struct x86_cpu_template tmpl;
        uint32_t nr_cpuid;
        struct kvm_cpuid_entry2 cpuid[X86_TEMPLATE_MAX_LEAVES];
        uint32_t nr_msrs;
        struct x86_msr_value msrs[X86_TEMPLATE_MAX_MSRS];
};

/* Records vCPU 0's CPUID: the VM's table (cpuid, template applied) as x86_cpuid_apply gives
 * it to vCPU 0. What the VMM gave KVM_SET_CPUID2, not KVM_GET_CPUID2's answer: the PVM KVM
 * of the project's test machines answers the latter from the host CPU. */
int x86_cpu_record_set_cpuid(struct x86_cpu_record *rec, const struct kvm_cpuid2 *cpuid,
                             unsigned nr_vcpus, bool smt, const struct x86_cpuid_mask *hide,
                             struct error *err) MUST_CHECK;
/* Reads the values of the template's MSRs from vcpu_fd into rec (at a snapshot). */
int x86_cpu_record_read(struct x86_cpu_record *rec, int vcpu_fd, struct error *err) MUST_CHECK;
void x86_cpu_record_save(struct snapbuf_writer *w, const struct x86_cpu_record *rec);
/* Fills rec (every count bounded); false with the reader's error on a bad record. */
bool x86_cpu_record_load(struct snapbuf_reader *r, struct x86_cpu_record *rec);
/* Whether this host's KVM provides the recorded configuration: every capability bit of the
 * CPUID (x86_cpuid_check_supported) and every MSR the template changed (listed by
 * KVM_GET_MSR_INDEX_LIST). ERROR_CONFIG, naming the first thing missing. */
int x86_cpu_record_check(const struct x86_cpu_record *rec, const struct kvm_cpuid2 *supported,
                         const struct kvm_msr_list *msrs, struct error *err) MUST_CHECK;

#endif

#include "cpu_template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/escape.h"
#include "kvm/kvm_vcpu.h"

/* ---- the language's strings ---- */

/* The user's string in a message: control characters escaped, long ones cut. */
static const char *shown(const char *s, char *buf, size_t cap)
{
        escape_controls(buf, cap, s);
        return buf;
}

int x86_template_parse_bitmap(const char *s, unsigned bits, struct x86_bitmap *out,
                              struct error *err)
{
        const char *digits = strncmp(s, "0b", 2) == 0 ? s + 2 : s;
        size_t len = strlen(digits);
        unsigned i = 0;
        char buf[160];

        memset(out, 0, sizeof(*out));
        /* From the last character (bit 0) up, as Firecracker reads it: the length check
         * comes first, so even a '_' past the last bit makes the string too long. */
        for (size_t k = len; k-- > 0;) {
                unsigned char c = (unsigned char)digits[k];

                if (i == bits)
                        return error_config(err,
                                            "Failed to parse string [%s] as a bitmap - string is "
                                            "too long",
                                            shown(s, buf, sizeof(buf)));
                if (c == '_')
                        continue;
                if (c == '0' || c == '1') {
                        out->filter |= 1ull << i;
                        if (c == '1')
                                out->value |= 1ull << i;
                } else if (c != 'x') {
                        /* Firecracker prints the byte's value. */
                        return error_config(err,
                                            "Failed to parse string [%s] as a bitmap - unknown "
                                            "character: %u",
                                            shown(s, buf, sizeof(buf)), c);
                }
                i++;
        }
        return 0;
}

void x86_template_format_bitmap(const struct x86_bitmap *b, unsigned bits, char *buf)
{
        char *p = buf;

        *p++ = '0';
        *p++ = 'b';
        for (unsigned i = bits; i-- > 0;) {
                if (!(b->filter & (1ull << i)))
                        *p++ = 'x';
                else
                        *p++ = (b->value & (1ull << i)) ? '1' : '0';
        }
        *p = '\0';
}

/* Rust's ParseIntError as Firecracker shows it ({:?}). */
static int number_error(const char *s, const char *kind, struct error *err)
{
        char buf[160];

        return error_config(err,
                            "Failed to parse string [%s] as a number for CPU template - "
                            "ParseIntError { kind: %s }",
                            shown(s, buf, sizeof(buf)), kind);
}

int x86_template_parse_u32(const char *s, uint32_t *out, struct error *err)
{
        unsigned base;
        uint64_t v = 0;
        const char *p;
        char buf[160];

        if (strncmp(s, "0b", 2) == 0)
                base = 2;
        else if (strncmp(s, "0x", 2) == 0)
                base = 16;
        else
                return error_config(err,
                                    "No supported number system prefix found in value [%s]. "
                                    "Make sure to prefix the number with '0x' for hexadecimal "
                                    "numbers or '0b' for binary numbers.",
                                    shown(s, buf, sizeof(buf)));
        p = s + 2;
        /* Rust's from_str_radix: an optional '+', then at least one digit. */
        if (*p == '+')
                p++;
        if (!*p)
                return number_error(s, p == s + 2 ? "Empty" : "InvalidDigit", err);
        for (; *p; p++) {
                unsigned d;

                if (*p >= '0' && *p <= '9')
                        d = (unsigned)(*p - '0');
                else if (*p >= 'a' && *p <= 'f')
                        d = (unsigned)(*p - 'a' + 10);
                else if (*p >= 'A' && *p <= 'F')
                        d = (unsigned)(*p - 'A' + 10);
                else
                        d = 99;
                if (d >= base)
                        return number_error(s, "InvalidDigit", err);
                v = v * base + d;
                if (v > UINT32_MAX)
                        return number_error(s, "PosOverflow", err);
        }
        *out = (uint32_t)v;
        return 0;
}

static const char *const reg_names[] = {"eax", "ebx", "ecx", "edx"};

const char *x86_template_register_name(enum x86_cpuid_reg r)
{
        return reg_names[r];
}

int x86_template_parse_register(const char *s, enum x86_cpuid_reg *out, struct error *err)
{
        for (unsigned i = 0; i < ARRAY_SIZE(reg_names); i++) {
                if (strcmp(s, reg_names[i]) == 0) {
                        *out = (enum x86_cpuid_reg)i;
                        return 0;
                }
        }
        return error_config(err, "Invalid CPUID register. Must be one of [eax, ebx, ecx, edx]");
}

int x86_template_parse_cap(const char *s, struct x86_kvm_cap *out, struct error *err)
{
        const char *p = s[0] == '!' ? s + 1 : s;
        uint64_t v = 0;
        const char *why = NULL;
        char buf[160];

        /* Rust's u32::from_str: an optional '+', decimal digits, Display of ParseIntError. */
        if (*p == '+')
                p++;
        if (!*p)
                why = p == s || (p == s + 1 && s[0] == '!')
                          ? "cannot parse integer from empty string"
                          : "invalid digit found in string";
        for (; !why && *p; p++) {
                if (*p < '0' || *p > '9')
                        why = "invalid digit found in string";
                else if ((v = v * 10 + (uint64_t)(*p - '0')) > UINT32_MAX)
                        why = "number too large to fit in target type";
        }
        if (why)
                return error_config(err,
                                    "Failed to parse string [%s] as a kvm capability - can not "
                                    "convert to numeric: %s",
                                    shown(s, buf, sizeof(buf)), why);
        out->cap = (uint32_t)v;
        out->remove = s[0] == '!';
        return 0;
}

/* ---- building a template ---- */

void x86_cpu_template_init(struct x86_cpu_template *t)
{
        memset(t, 0, sizeof(*t));
}

bool x86_cpu_template_empty(const struct x86_cpu_template *t)
{
        return !t->nr_caps && !t->nr_cpuid && !t->nr_msrs;
}

/* b after a: a later decided bit overrides, a later 'x' keeps a's. */
static void fold(struct x86_bitmap *a, const struct x86_bitmap *b)
{
        a->value = (a->value & a->filter & ~b->filter) | (b->value & b->filter);
        a->filter |= b->filter;
}

int x86_cpu_template_add_cpuid(struct x86_cpu_template *t, uint32_t leaf, uint32_t subleaf,
                               uint32_t flags, bool has_reg, enum x86_cpuid_reg reg,
                               const struct x86_bitmap *b, struct error *err)
{
        struct x86_cpuid_modifier *m = NULL;

        for (unsigned i = 0; i < t->nr_cpuid && !m; i++)
                if (t->cpuid[i].leaf == leaf && t->cpuid[i].subleaf == subleaf)
                        m = &t->cpuid[i];
        if (!m) {
                if (t->nr_cpuid == X86_TEMPLATE_MAX_LEAVES)
                        return error_config(err,
                                            "cpuid_modifiers: more than %u different leaves and "
                                            "subleaves",
                                            X86_TEMPLATE_MAX_LEAVES);
                m = &t->cpuid[t->nr_cpuid++];
                memset(m, 0, sizeof(*m));
                m->leaf = leaf;
                m->subleaf = subleaf;
        }
        m->flags = flags;
        if (has_reg)
                fold(&m->regs[reg], b);
        return 0;
}

int x86_cpu_template_add_msr(struct x86_cpu_template *t, uint32_t index, const struct x86_bitmap *b,
                             struct error *err)
{
        for (unsigned i = 0; i < t->nr_msrs; i++) {
                if (t->msrs[i].index == index) {
                        fold(&t->msrs[i].bitmap, b);
                        return 0;
                }
        }
        if (t->nr_msrs == X86_TEMPLATE_MAX_MSRS)
                return error_config(err, "msr_modifiers: more than %u different MSRs",
                                    X86_TEMPLATE_MAX_MSRS);
        t->msrs[t->nr_msrs].index = index;
        t->msrs[t->nr_msrs].bitmap = *b;
        t->nr_msrs++;
        return 0;
}

int x86_cpu_template_add_cap(struct x86_cpu_template *t, const struct x86_kvm_cap *c,
                             struct error *err)
{
        for (unsigned i = 0; i < t->nr_caps; i++) {
                if (t->caps[i].cap == c->cap) {
                        t->caps[i] = *c;
                        return 0;
                }
        }
        if (t->nr_caps == X86_TEMPLATE_MAX_CAPS)
                return error_config(err, "kvm_capabilities: more than %u different capabilities",
                                    X86_TEMPLATE_MAX_CAPS);
        t->caps[t->nr_caps++] = *c;
        return 0;
}

/* ---- what it does ---- */

int x86_cpu_template_apply_cpuid(struct kvm_cpuid2 *cpuid, const struct x86_cpu_template *t,
                                 const struct kvm_cpuid2 *supported, struct error *err)
{
        const struct kvm_cpuid_entry2 *vendor =
            x86_cpuid_find_exact(supported->entries, supported->nent, 0, 0);
        struct kvm_cpuid_entry2 *e;
        struct x86_cpuid_bit bit;
        char what[96];

        for (unsigned i = 0; i < t->nr_cpuid; i++) {
                const struct x86_cpuid_modifier *m = &t->cpuid[i];

                e = (struct kvm_cpuid_entry2 *)x86_cpuid_find_exact(cpuid->entries, cpuid->nent,
                                                                    m->leaf, m->subleaf);
                if (!e)
                        return error_config(err,
                                            "Template changes a CPUID entry not supported by "
                                            "KVM: Leaf: %x, Subleaf: %x",
                                            m->leaf, m->subleaf);
                /* KVM looks a significant subleaf up by its index, any other by the leaf
                 * alone: a template that says otherwise would make the guest read another
                 * entry than the one it changed. */
                if ((m->flags ^ e->flags) & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)
                        return error_config(
                            err,
                            "cpuid_modifiers: leaf 0x%x subleaf 0x%x: flags %u say "
                            "the subleaf is %ssignificant; KVM's entry (flags %u) "
                            "says it is %s",
                            m->leaf, m->subleaf, m->flags,
                            (m->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ? "" : "not ", e->flags,
                            (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ? "" : "not");
                e->flags = m->flags;
                for (unsigned r = 0; r < 4; r++) {
                        uint32_t *v = x86_cpuid_reg(e, (enum x86_cpuid_reg)r);

                        *v = (uint32_t)x86_bitmap_apply(&m->regs[r], *v);
                }
        }
        /* One vendor cannot be presented as another: the vendor string stays the host's. */
        e = x86_cpuid_find(cpuid, 0, 0);
        if (e && vendor) {
                e->ebx = vendor->ebx;
                e->ecx = vendor->ecx;
                e->edx = vendor->edx;
        }
        if (x86_cpuid_find_unsupported(cpuid->entries, cpuid->nent, supported, &bit)) {
                x86_cpuid_describe_bit(&bit, what, sizeof(what));
                return error_config(err,
                                    "the CPU template sets %s, which this host's KVM does not "
                                    "provide (KVM_GET_SUPPORTED_CPUID)",
                                    what);
        }
        return 0;
}

int x86_cpu_template_check_hide(const struct x86_cpu_template *t, const struct x86_cpuid_mask *m,
                                struct error *err)
{
        char what[96];

        for (unsigned i = 0; i < t->nr_cpuid; i++) {
                const struct x86_cpuid_modifier *c = &t->cpuid[i];

                for (unsigned r = 0; r < 4; r++) {
                        uint32_t set = (uint32_t)(c->regs[r].filter & c->regs[r].value);
                        uint32_t hidden = 0;

                        for (unsigned k = 0; k < m->nr; k++)
                                if (m->bits[k].leaf == c->leaf &&
                                    m->bits[k].subleaf == c->subleaf &&
                                    m->bits[k].reg == (enum x86_cpuid_reg)r)
                                        hidden |= 1u << m->bits[k].bit;
                        if (m->hide_xsave_leaf && c->leaf == 0xd)
                                hidden = UINT32_MAX;
                        if (set & hidden) {
                                struct x86_cpuid_bit b = {c->leaf, c->subleaf,
                                                          (enum x86_cpuid_reg)r,
                                                          (uint8_t)__builtin_ctz(set & hidden)};

                                x86_cpuid_describe_bit(&b, what, sizeof(what));
                                return error_config(err,
                                                    "the CPU template sets %s, which cpu_hide "
                                                    "hides: drop one of them",
                                                    what);
                        }
                }
        }
        return 0;
}

/* ---- static templates ---- */

/* Firecracker checks the vendor only: a template's bits that the host lacks are refused when
 * the template is applied (x86_cpu_template_apply_cpuid), whatever the model. */
static const struct {
        const char *name;
        const char *vendor;
} static_templates[] = {
    {"C3", "GenuineIntel"},   {"T2", "GenuineIntel"},  {"T2S", "GenuineIntel"},
    {"T2CL", "GenuineIntel"}, {"T2A", "AuthenticAMD"},
};

bool x86_static_template_known(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(static_templates); i++)
                if (strcmp(static_templates[i].name, name) == 0)
                        return true;
        return false;
}

int x86_static_template_check(const char *name, const char *vendor, struct error *err)
{
        for (size_t i = 0; i < ARRAY_SIZE(static_templates); i++) {
                if (strcmp(static_templates[i].name, name) != 0)
                        continue;
                if (strcmp(static_templates[i].vendor, vendor) != 0)
                        return error_config(err, "CPU vendor mismatched between actual CPU and CPU "
                                                 "template.");
                return 0;
        }
        return error_config(err, "Invalid static CPU template: %s", name);
}

/* ---- the snapshot's record ---- */

#define RECORD_VERSION 1

int x86_cpu_record_set_cpuid(struct x86_cpu_record *rec, const struct kvm_cpuid2 *cpuid,
                             unsigned nr_vcpus, bool smt, const struct x86_cpuid_mask *hide,
                             struct error *err)
{
        unsigned capacity = cpuid->nent + X86_CPUID_ADDED_ENTRIES;
        struct kvm_cpuid2 *c;

        c = calloc(1, sizeof(*c) + capacity * sizeof(c->entries[0]));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        memcpy(c, cpuid, sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]));
        x86_cpuid_apply(c, capacity, 0, nr_vcpus, smt, hide);
        if (c->nent > X86_TEMPLATE_MAX_LEAVES) {
                unsigned n = c->nent;

                free(c);
                return error_set(err, -E2BIG, "CPU configuration: %u CPUID entries (at most %u)", n,
                                 X86_TEMPLATE_MAX_LEAVES);
        }
        rec->nr_cpuid = c->nent;
        memcpy(rec->cpuid, c->entries, c->nent * sizeof(c->entries[0]));
        free(c);
        return 0;
}

int x86_cpu_record_read(struct x86_cpu_record *rec, int vcpu_fd, struct error *err)
{
        struct {
                struct kvm_msrs hdr;
                struct kvm_msr_entry e[1];
        } msr;

        rec->nr_msrs = 0;
        for (unsigned i = 0; rec->has_template && i < rec->tmpl.nr_msrs; i++) {
                memset(&msr, 0, sizeof(msr));
                msr.hdr.nmsrs = 1;
                msr.e[0].index = rec->tmpl.msrs[i].index;
                if (kvm_vcpu_get_msrs(vcpu_fd, &msr.hdr) != 1)
                        return error_set(err, -EIO, "CPU configuration: KVM cannot read MSR 0x%x",
                                         rec->tmpl.msrs[i].index);
                rec->msrs[rec->nr_msrs++] = (struct x86_msr_value){msr.e[0].index, msr.e[0].data};
        }
        return 0;
}

static void put_bitmap(struct snapbuf_writer *w, const struct x86_bitmap *b)
{
        snapbuf_put_u64(w, b->filter);
        snapbuf_put_u64(w, b->value);
}

static void get_bitmap(struct snapbuf_reader *r, struct x86_bitmap *b, uint64_t mask)
{
        b->filter = snapbuf_get_u64(r, "bitmap");
        b->value = snapbuf_get_u64(r, "bitmap");
        if (snapbuf_ok(r) && ((b->filter | b->value) & ~mask))
                snapbuf_fail(r, "bitmap", "wider than its register");
}

void x86_cpu_record_save(struct snapbuf_writer *w, const struct x86_cpu_record *rec)
{
        const struct x86_cpu_template *t = &rec->tmpl;

        snapbuf_put_u32(w, RECORD_VERSION);
        snapbuf_put_str(w, rec->static_template[0] ? rec->static_template : NULL);
        snapbuf_put_bool(w, rec->has_template);
        if (rec->has_template) {
                snapbuf_put_u32(w, t->nr_caps);
                for (unsigned i = 0; i < t->nr_caps; i++) {
                        snapbuf_put_u32(w, t->caps[i].cap);
                        snapbuf_put_bool(w, t->caps[i].remove);
                }
                snapbuf_put_u32(w, t->nr_cpuid);
                for (unsigned i = 0; i < t->nr_cpuid; i++) {
                        snapbuf_put_u32(w, t->cpuid[i].leaf);
                        snapbuf_put_u32(w, t->cpuid[i].subleaf);
                        snapbuf_put_u32(w, t->cpuid[i].flags);
                        for (unsigned r = 0; r < 4; r++)
                                put_bitmap(w, &t->cpuid[i].regs[r]);
                }
                snapbuf_put_u32(w, t->nr_msrs);
                for (unsigned i = 0; i < t->nr_msrs; i++) {
                        snapbuf_put_u32(w, t->msrs[i].index);
                        put_bitmap(w, &t->msrs[i].bitmap);
                }
        }
        snapbuf_put_u32(w, rec->nr_cpuid);
        for (unsigned i = 0; i < rec->nr_cpuid; i++)
                snapbuf_put_blob(w, &rec->cpuid[i], sizeof(rec->cpuid[i]));
        snapbuf_put_u32(w, rec->nr_msrs);
        for (unsigned i = 0; i < rec->nr_msrs; i++) {
                snapbuf_put_u32(w, rec->msrs[i].index);
                snapbuf_put_u64(w, rec->msrs[i].value);
        }
}

bool x86_cpu_record_load(struct snapbuf_reader *r, struct x86_cpu_record *rec)
{
        uint32_t version = snapbuf_get_u32(r, "CPU configuration version");
        struct x86_cpu_template *t = &rec->tmpl;
        char *name = NULL;

        memset(rec, 0, sizeof(*rec));
        if (snapbuf_ok(r) && version != RECORD_VERSION)
                return snapbuf_fail(r, "CPU configuration", "unknown version");
        snapbuf_get_str(r, sizeof(rec->static_template) - 1, &name, "static CPU template");
        if (name) {
                if (snapbuf_ok(r) && !x86_static_template_known(name))
                        snapbuf_fail(r, "static CPU template", "unknown name");
                else
                        snprintf(rec->static_template, sizeof(rec->static_template), "%s", name);
                free(name);
        }
        rec->has_template = snapbuf_get_bool(r, "CPU template");
        if (rec->has_template) {
                t->nr_caps = snapbuf_get_count(r, X86_TEMPLATE_MAX_CAPS, "KVM capabilities");
                for (unsigned i = 0; i < t->nr_caps; i++) {
                        t->caps[i].cap = snapbuf_get_u32(r, "KVM capability");
                        t->caps[i].remove = snapbuf_get_bool(r, "KVM capability");
                }
                t->nr_cpuid = snapbuf_get_count(r, X86_TEMPLATE_MAX_LEAVES, "CPUID modifiers");
                for (unsigned i = 0; i < t->nr_cpuid; i++) {
                        t->cpuid[i].leaf = snapbuf_get_u32(r, "CPUID leaf");
                        t->cpuid[i].subleaf = snapbuf_get_u32(r, "CPUID subleaf");
                        t->cpuid[i].flags = snapbuf_get_u32(r, "CPUID flags");
                        for (unsigned k = 0; k < 4; k++)
                                get_bitmap(r, &t->cpuid[i].regs[k], UINT32_MAX);
                }
                t->nr_msrs = snapbuf_get_count(r, X86_TEMPLATE_MAX_MSRS, "MSR modifiers");
                for (unsigned i = 0; i < t->nr_msrs; i++) {
                        t->msrs[i].index = snapbuf_get_u32(r, "MSR");
                        get_bitmap(r, &t->msrs[i].bitmap, UINT64_MAX);
                }
        }
        rec->nr_cpuid = snapbuf_get_count(r, X86_TEMPLATE_MAX_LEAVES, "CPUID entries");
        for (unsigned i = 0; i < rec->nr_cpuid; i++)
                snapbuf_get_blob(r, &rec->cpuid[i], sizeof(rec->cpuid[i]), "CPUID entry");
        rec->nr_msrs = snapbuf_get_count(r, X86_TEMPLATE_MAX_MSRS, "MSR values");
        for (unsigned i = 0; i < rec->nr_msrs; i++) {
                rec->msrs[i].index = snapbuf_get_u32(r, "MSR");
                rec->msrs[i].value = snapbuf_get_u64(r, "MSR value");
        }
        return snapbuf_expect_end(r, "CPU configuration");
}

bool x86_msr_listed(const struct kvm_msr_list *l, uint32_t index)
{
        for (uint32_t i = 0; l && i < l->nmsrs; i++)
                if (l->indices[i] == index)
                        return true;
        return false;
}

/* "the CPU template T2A", "a custom CPU template", "no CPU template". */
static void record_origin(const struct x86_cpu_record *rec, char *buf, size_t cap)
{
        if (rec->static_template[0])
                snprintf(buf, cap, "the CPU template %s", rec->static_template);
        else
                snprintf(buf, cap, "%s CPU template", rec->has_template ? "a custom" : "no");
}

int x86_cpu_record_check(const struct x86_cpu_record *rec, const struct kvm_cpuid2 *supported,
                         const struct kvm_msr_list *msrs, struct error *err)
{
        size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
        struct kvm_cpuid2 *provided = malloc(size);
        struct x86_cpuid_bit bit;
        char what[96], origin[32];
        bool missing;

        if (!provided)
                return error_set(err, -ENOMEM, "out of memory");
        /* What this host provides includes what vmm itself sets on every boot (a snapshot
         * taken here records those bits; KVM's table may not list them). */
        memcpy(provided, supported, size);
        x86_cpuid_add_emulated(provided);
        record_origin(rec, origin, sizeof(origin));
        missing = x86_cpuid_find_unsupported(rec->cpuid, rec->nr_cpuid, provided, &bit);
        free(provided);
        if (missing) {
                x86_cpuid_describe_bit(&bit, what, sizeof(what));
                return error_config(err,
                                    "the snapshot's vCPUs (%s) have %s, which this host's KVM "
                                    "does not provide",
                                    origin, what);
        }
        for (unsigned i = 0; i < rec->nr_msrs; i++)
                if (!x86_msr_listed(msrs, rec->msrs[i].index))
                        return error_config(err,
                                            "the snapshot's vCPUs (%s) need MSR 0x%x, which this "
                                            "host's KVM does not support",
                                            origin, rec->msrs[i].index);
        return 0;
}

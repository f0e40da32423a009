#include "cpuid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct feature {
        const char *name;
        uint32_t leaf, subleaf;
        enum x86_cpuid_reg reg;
        uint8_t bit;
        const char *deps; /* features that must disappear with this one */
};

#define L1C(n, b, d)                                                                               \
        {                                                                                          \
                n, 1, 0, CPUID_ECX, b, d                                                           \
        }
#define L1D(n, b, d)                                                                               \
        {                                                                                          \
                n, 1, 0, CPUID_EDX, b, d                                                           \
        }
#define L7B(n, b, d)                                                                               \
        {                                                                                          \
                n, 7, 0, CPUID_EBX, b, d                                                           \
        }
#define L7C(n, b, d)                                                                               \
        {                                                                                          \
                n, 7, 0, CPUID_ECX, b, d                                                           \
        }
#define L7D(n, b, d)                                                                               \
        {                                                                                          \
                n, 7, 0, CPUID_EDX, b, d                                                           \
        }
#define LXC(n, b, d)                                                                               \
        {                                                                                          \
                n, 0x80000001, 0, CPUID_ECX, b, d                                                  \
        }
#define LXD(n, b, d)                                                                               \
        {                                                                                          \
                n, 0x80000001, 0, CPUID_EDX, b, d                                                  \
        }
#define LX8B(n, b, d)                                                                              \
        {                                                                                          \
                n, 0x80000008, 0, CPUID_EBX, b, d                                                  \
        }
#define LDA(n, b, d)                                                                               \
        {                                                                                          \
                n, 0xd, 1, CPUID_EAX, b, d                                                         \
        }

#define AVX512 "avx512f,avx512dq,avx512ifma,avx512pf,avx512er,avx512cd,avx512bw,avx512vl,avx512vbmi"

static const struct feature features[] = {
    L1C("pni", 0, "ssse3"), /* Linux's name for SSE3 */
    L1C("sse3", 0, "ssse3"),
    L1C("pclmulqdq", 1, NULL),
    L1C("monitor", 3, NULL),
    L1C("ssse3", 9, "sse4_1"),
    L1C("fma", 12, NULL),
    L1C("cx16", 13, NULL),
    L1C("pcid", 17, NULL),
    L1C("sse4_1", 19, "sse4_2"),
    L1C("sse4_2", 20, "popcnt,aes"),
    L1C("x2apic", 21, NULL),
    L1C("movbe", 22, NULL),
    L1C("popcnt", 23, NULL),
    L1C("tsc_deadline_timer", 24, NULL),
    L1C("aes", 25, NULL),
    L1C("xsave", 26, "osxsave,avx,xsaveopt,xsavec,xgetbv1,xsaves"),
    L1C("osxsave", 27, NULL),
    L1C("avx", 28, "fma,f16c,avx2,vaes,vpclmulqdq,fma4,xop," AVX512),
    L1C("f16c", 29, NULL),
    L1C("rdrand", 30, NULL),
    L1D("pse", 3, NULL),
    L1D("tsc", 4, NULL),
    L1D("pae", 6, NULL),
    L1D("mce", 7, NULL),
    L1D("cx8", 8, NULL),
    L1D("sep", 11, NULL),
    L1D("mtrr", 12, NULL),
    L1D("pge", 13, NULL),
    L1D("cmov", 15, NULL),
    L1D("pat", 16, NULL),
    L1D("pse36", 17, NULL),
    L1D("clflush", 19, NULL),
    L1D("mmx", 23, NULL),
    L1D("fxsr", 24, NULL),
    L1D("sse", 25, "sse2"),
    L1D("sse2", 26, "sse3"),
    L1D("ht", 28, NULL),
    L7B("fsgsbase", 0, NULL),
    L7B("bmi1", 3, NULL),
    L7B("hle", 4, NULL),
    L7B("avx2", 5, NULL),
    L7B("smep", 7, NULL),
    L7B("bmi2", 8, NULL),
    L7B("erms", 9, NULL),
    L7B("invpcid", 10, NULL),
    L7B("rtm", 11, NULL),
    L7B("avx512f", 16, AVX512),
    L7B("avx512dq", 17, NULL),
    L7B("rdseed", 18, NULL),
    L7B("adx", 19, NULL),
    L7B("smap", 20, NULL),
    L7B("avx512ifma", 21, NULL),
    L7B("clflushopt", 23, NULL),
    L7B("clwb", 24, NULL),
    L7B("avx512pf", 26, NULL),
    L7B("avx512er", 27, NULL),
    L7B("avx512cd", 28, NULL),
    L7B("sha_ni", 29, NULL),
    L7B("avx512bw", 30, NULL),
    L7B("avx512vl", 31, NULL),
    L7C("avx512vbmi", 1, NULL),
    L7C("umip", 2, NULL),
    L7C("pku", 3, NULL),
    L7C("waitpkg", 5, NULL),
    L7C("vaes", 9, NULL),
    L7C("vpclmulqdq", 10, NULL),
    L7C("la57", 16, NULL),
    L7C("gfni", 8, NULL),
    L7C("rdpid", 22, NULL),
    L7D("fsrm", 4, NULL),
    L7D("md_clear", 10, NULL),
    L7D("serialize", 14, NULL),
    L7D("arch_capabilities", 29, NULL),
    LXC("lahf_lm", 0, NULL),
    LXC("cmp_legacy", 1, NULL),
    LXC("svm", 2, NULL),
    LXC("abm", 5, NULL),
    LXC("lzcnt", 5, NULL),
    LXC("sse4a", 6, NULL),
    LXC("misalignsse", 7, NULL),
    LXC("3dnowprefetch", 8, NULL),
    LXC("xop", 11, NULL),
    LXC("fma4", 16, NULL),
    LXC("tbm", 21, NULL),
    LXC("topoext", 22, NULL),
    LXD("syscall", 11, NULL),
    LXD("nx", 20, NULL),
    LXD("mmxext", 22, NULL),
    LXD("fxsr_opt", 25, NULL),
    LXD("pdpe1gb", 26, NULL),
    LXD("rdtscp", 27, NULL),
    LX8B("clzero", 0, NULL),
    LX8B("xsaveerptr", 2, NULL),
    LX8B("wbnoinvd", 9, NULL),
    LDA("xsaveopt", 0, NULL),
    LDA("xsavec", 1, NULL),
    LDA("xgetbv1", 2, NULL),
    LDA("xsaves", 3, NULL),
};

static const struct feature *feature_find(const char *name, size_t len)
{
        for (size_t i = 0; i < ARRAY_SIZE(features); i++)
                if (strlen(features[i].name) == len && strncmp(features[i].name, name, len) == 0)
                        return &features[i];
        return NULL;
}

static int mask_add(struct x86_cpuid_mask *m, const struct feature *f, unsigned depth,
                    struct error *err);

static int mask_add_list(struct x86_cpuid_mask *m, const char *list, unsigned depth, bool user,
                         struct error *err)
{
        const char *p = list;

        while (*p) {
                size_t len = strcspn(p, ",");
                const struct feature *f;
                int r;

                if (len == 0) {
                        p++;
                        continue;
                }
                f = feature_find(p, len);
                if (!f) {
                        if (!user)
                                return error_set(err, -EINVAL, "internal: unknown dependency");
                        return error_set(err, -EINVAL,
                                         "unknown CPU feature '%.*s' in cpu hide list (use Linux "
                                         "/proc/cpuinfo names, e.g. cx16,xsave)",
                                         (int)len, p);
                }
                r = mask_add(m, f, depth, err);
                if (r)
                        return r;
                p += len;
        }
        return 0;
}

static int mask_add(struct x86_cpuid_mask *m, const struct feature *f, unsigned depth,
                    struct error *err)
{
        if (depth > 8)
                return error_set(err, -ELOOP, "CPU feature dependencies nest too deeply");
        for (unsigned i = 0; i < m->nr; i++) {
                const struct x86_cpuid_bit *b = &m->bits[i];
                if (b->leaf == f->leaf && b->subleaf == f->subleaf && b->reg == f->reg &&
                    b->bit == f->bit)
                        return 0;
        }
        if (m->nr == X86_CPUID_MAX_HIDDEN)
                return error_set(err, -E2BIG, "too many hidden CPU features (max %d)",
                                 X86_CPUID_MAX_HIDDEN);
        m->bits[m->nr++] = (struct x86_cpuid_bit){f->leaf, f->subleaf, f->reg, f->bit};
        if (strcmp(f->name, "xsave") == 0)
                m->hide_xsave_leaf = true;
        return f->deps ? mask_add_list(m, f->deps, depth + 1, false, err) : 0;
}

int x86_cpuid_parse_hide(const char *list, struct x86_cpuid_mask *out, struct error *err)
{
        memset(out, 0, sizeof(*out));
        return list ? mask_add_list(out, list, 0, true, err) : 0;
}

/* The entry CPUID (leaf, subleaf) reads among n entries: a leaf whose subleaf is not
 * significant answers every subleaf. */
static const struct kvm_cpuid_entry2 *entry_for(const struct kvm_cpuid_entry2 *e, uint32_t n,
                                                uint32_t leaf, uint32_t subleaf)
{
        for (uint32_t i = 0; i < n; i++) {
                bool indexed = e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

                if (e[i].function == leaf && (!indexed || e[i].index == subleaf))
                        return &e[i];
        }
        return NULL;
}

struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t leaf, uint32_t subleaf)
{
        return (struct kvm_cpuid_entry2 *)entry_for(cpuid->entries, cpuid->nent, leaf, subleaf);
}

const struct kvm_cpuid_entry2 *x86_cpuid_find_exact(const struct kvm_cpuid_entry2 *e, uint32_t n,
                                                    uint32_t leaf, uint32_t subleaf)
{
        for (uint32_t i = 0; i < n; i++)
                if (e[i].function == leaf && e[i].index == subleaf)
                        return &e[i];
        return NULL;
}

uint32_t *x86_cpuid_reg(struct kvm_cpuid_entry2 *e, enum x86_cpuid_reg r)
{
        switch (r) {
        case CPUID_EAX:
                return &e->eax;
        case CPUID_EBX:
                return &e->ebx;
        case CPUID_ECX:
                return &e->ecx;
        default:
                return &e->edx;
        }
}

static unsigned order_of(unsigned n)
{
        unsigned s = 0;
        while ((1u << s) < n)
                s++;
        return s;
}

static bool is_intel(struct kvm_cpuid2 *cpuid)
{
        struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, 0, 0);
        return e && e->ebx == 0x756e6547 && e->edx == 0x49656e69 && e->ecx == 0x6c65746e;
}

/* One package of n logical CPUs: n cores of one thread, or, with SMT (threads == 2), n / 2
 * cores of two threads each, as Firecracker lays them out: the APIC id is the vCPU index,
 * its low bit the thread with SMT. Every topology leaf must agree or Linux warns and
 * miscounts CPUs. */
/* KVM (since Linux 6.2, backported) no longer lists subleaf 1 of the extended topology leaves:
 * without it the guest reads zeros for the core level. Firecracker adds it; so do we, when the
 * leaf is there and the table has room. */
static void add_core_level(struct kvm_cpuid2 *cpuid, unsigned capacity, uint32_t leaf)
{
        struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, leaf, 0);

        if (!e || x86_cpuid_find(cpuid, leaf, 1) || cpuid->nent >= capacity)
                return;
        cpuid->entries[cpuid->nent++] = (struct kvm_cpuid_entry2){
            .function = leaf, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
}

static void set_topology(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index, unsigned n,
                         unsigned threads)
{
        unsigned core_shift = order_of(n), thread_shift = order_of(threads);
        unsigned cores = n / threads;
        struct kvm_cpuid_entry2 *e;

        add_core_level(cpuid, capacity, 0xb);
        add_core_level(cpuid, capacity, 0x1f);

        e = x86_cpuid_find(cpuid, 1, 0);
        if (e) {
                e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | ((n & 0xff) << 16);
                if (n > 1)
                        e->edx |= 1u << 28; /* HTT: the package has several logical CPUs */
                else
                        e->edx &= ~(1u << 28);
                e->ecx |= 1u << 31; /* running under a hypervisor */
        }
        for (uint32_t i = 0; i < cpuid->nent; i++) {
                struct kvm_cpuid_entry2 *s = &cpuid->entries[i];
                if (s->function == 0xb || s->function == 0x1f) {
                        s->edx = index;
                        if (s->index == 0) { /* the SMT level: threads per core */
                                s->eax = thread_shift;
                                s->ebx = threads;
                                s->ecx = (1u << 8) | 0;
                        } else if (s->index == 1) { /* the core level: the whole package */
                                s->eax = core_shift;
                                s->ebx = n;
                                s->ecx = (2u << 8) | 1;
                        } else {
                                s->eax = s->ebx = 0;
                                s->ecx = s->index;
                        }
                }
                if (s->function == 4 && is_intel(cpuid) && (s->eax & 0x1f)) {
                        s->eax &= ~(0x3fu << 26);
                        /* 6-bit field: saturate, a wrapped count reads as a few cores. */
                        s->eax |= (cores - 1 < 0x3f ? cores - 1 : 0x3fu) << 26;
                        /* Each cache is a core's, shared by its threads. */
                        s->eax = (s->eax & ~(0xfffu << 14)) | ((threads - 1) << 14);
                }
        }
        e = x86_cpuid_find(cpuid, 0x80000008, 0);
        if (e && !is_intel(cpuid))
                e->ecx = (e->ecx & ~0xf0ffu) | (core_shift << 12) | ((n - 1) & 0xff);
        e = x86_cpuid_find(cpuid, 0x8000001e, 0);
        if (e) {
                e->eax = index;
                /* The compute unit (core) and its threads - 1. */
                e->ebx = ((index / threads) & 0xff) | ((threads - 1) << 8);
                e->ecx = 0;
        }
        e = x86_cpuid_find(cpuid, 0x80000001, 0);
        if (e && !is_intel(cpuid)) {
                if (n > 1)
                        e->ecx |= 1u << 1; /* CmpLegacy: HTT counts cores, not threads */
                else
                        e->ecx &= ~(1u << 1);
        }
}

static void set_kvm_signature(struct kvm_cpuid2 *cpuid)
{
        struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, 0x40000000, 0);
        if (!e)
                return; /* KVM always lists it; a table without it is left as KVM gave it */
        e->eax = e->eax < 0x40000001 ? 0x40000001 : e->eax;
        e->ebx = 0x4b4d564b; /* "KVMKVMKVM\0\0\0" */
        e->ecx = 0x564b4d56;
        e->edx = 0x0000004d;
}

/*
 * The TSC-deadline timer: the in-kernel LAPIC emulates it (KVM_CAP_TSC_DEADLINE_TIMER, which
 * kvm_open requires), but KVM's supported CPUID calls the bit reserved before Linux 6.x, so
 * it is set here, as Firecracker and QEMU do. A Linux guest needs it to do without a PIT
 * (its apic_needs_pit(): the VM has none unless --pit).
 */
void x86_cpuid_add_emulated(struct kvm_cpuid2 *cpuid)
{
        struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, 1, 0);

        if (e)
                e->ecx |= 1u << 24;
}

void x86_cpuid_apply(struct kvm_cpuid2 *cpuid, unsigned capacity, unsigned index, unsigned nr_vcpus,
                     bool smt, const struct x86_cpuid_mask *hide)
{
        set_topology(cpuid, capacity, index, nr_vcpus, smt && nr_vcpus > 1 ? 2 : 1);
        set_kvm_signature(cpuid);
        x86_cpuid_add_emulated(cpuid); /* before the hidden bits: tsc_deadline_timer hides it */
        for (unsigned i = 0; hide && i < hide->nr; i++) {
                const struct x86_cpuid_bit *b = &hide->bits[i];
                struct kvm_cpuid_entry2 *e = x86_cpuid_find(cpuid, b->leaf, b->subleaf);
                if (e)
                        *x86_cpuid_reg(e, b->reg) &= ~(1u << b->bit);
        }
        if (hide && hide->hide_xsave_leaf) {
                for (uint32_t i = 0; i < cpuid->nent; i++) {
                        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
                        if (e->function == 0xd)
                                e->eax = e->ebx = e->ecx = e->edx = 0;
                }
        }
}

const char *x86_cpuid_feature_name(const struct x86_cpuid_bit *b)
{
        for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
                const struct feature *f = &features[i];

                if (f->leaf == b->leaf && f->subleaf == b->subleaf && f->reg == b->reg &&
                    f->bit == b->bit)
                        return f->name;
        }
        return NULL;
}

void x86_cpuid_describe_bit(const struct x86_cpuid_bit *b, char *buf, size_t cap)
{
        static const char *const regs[] = {"eax", "ebx", "ecx", "edx"};
        const char *name = x86_cpuid_feature_name(b);

        snprintf(buf, cap, "%s%sleaf 0x%x subleaf 0x%x %s bit %u%s", name ? name : "",
                 name ? " (" : "", b->leaf, b->subleaf, regs[b->reg], b->bit, name ? ")" : "");
}

/* The feature registers and, in each, the bits whose 1 is not a capability (cpuid.h). */
static const struct {
        uint32_t leaf, subleaf;
        enum x86_cpuid_reg reg;
        uint32_t not_capability;
} capability_regs[] = {
    {0x1, 0, CPUID_ECX, (1u << 27) | (1u << 31)}, /* OSXSAVE, hypervisor */
    {0x1, 0, CPUID_EDX, 1u << 28},                /* HTT */
    {0x6, 0, CPUID_EAX, 0},
    {0x7, 0, CPUID_EBX, (1u << 6) | (1u << 9) | (1u << 13)},   /* FDP_EXCPTN_ONLY, ERMS, FCS/FDS */
    {0x7, 0, CPUID_ECX, 1u << 4},                              /* OSPKE */
    {0x7, 0, CPUID_EDX, 1u << 4},                              /* FSRM */
    {0x7, 1, CPUID_EAX, (1u << 10) | (1u << 11) | (1u << 12)}, /* fast MOVSB/STOSB/CMPSB */
    {0x7, 1, CPUID_EBX, 0},
    {0x7, 1, CPUID_ECX, 0},
    {0x7, 1, CPUID_EDX, 0},
    {0x7, 2, CPUID_EDX, 0},
    {0xd, 0, CPUID_EAX, 0}, /* XCR0 */
    {0xd, 0, CPUID_EDX, 0},
    {0xd, 1, CPUID_EAX, 0},
    {0xd, 1, CPUID_ECX, 0}, /* XSS */
    {0xd, 1, CPUID_EDX, 0},
    {0x80000001, 0, CPUID_ECX, 1u << 1}, /* CmpLegacy */
    {0x80000001, 0, CPUID_EDX, 0},
    {0x80000007, 0, CPUID_EDX, 0},
    /* IbrsPreferred, IbrsSameMode, EferLmsleUnsupported */
    {0x80000008, 0, CPUID_EBX, (1u << 18) | (1u << 19) | (1u << 20)},
    {0x8000000a, 0, CPUID_EDX, 0},
    {0x8000001f, 0, CPUID_EAX, 0},
    {0x80000021, 0, CPUID_EAX, 0},
    {0x40000001, 0, CPUID_EAX, 0}, /* KVM's paravirtual features */
};

static uint32_t reg_value(const struct kvm_cpuid_entry2 *e, enum x86_cpuid_reg r)
{
        const uint32_t v[4] = {e->eax, e->ebx, e->ecx, e->edx};

        return v[r];
}

bool x86_cpuid_find_unsupported(const struct kvm_cpuid_entry2 *e, uint32_t n,
                                const struct kvm_cpuid2 *supported, struct x86_cpuid_bit *out)
{
        for (size_t i = 0; i < ARRAY_SIZE(capability_regs); i++) {
                const struct kvm_cpuid_entry2 *g =
                    entry_for(e, n, capability_regs[i].leaf, capability_regs[i].subleaf);
                const struct kvm_cpuid_entry2 *h =
                    entry_for(supported->entries, supported->nent, capability_regs[i].leaf,
                              capability_regs[i].subleaf);
                uint32_t want, have, missing;

                if (!g)
                        continue;
                want = reg_value(g, capability_regs[i].reg);
                have = h ? reg_value(h, capability_regs[i].reg) : 0;
                missing = want & ~have & ~capability_regs[i].not_capability;
                if (missing) {
                        *out = (struct x86_cpuid_bit){
                            capability_regs[i].leaf, capability_regs[i].subleaf,
                            capability_regs[i].reg, (uint8_t)__builtin_ctz(missing)};
                        return true;
                }
        }
        return false;
}

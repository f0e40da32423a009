/*
 * Guest CPUID: parsing the hide list (with dependent features), and rewriting a synthetic
 * KVM_GET_SUPPORTED_CPUID table per vCPU (APIC ids, topology leaves, hypervisor bit, KVM
 * signature, hidden bits, leaf 0xD) for Intel and AMD vendor strings.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/cpuid.h"

#define SIG         KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define MAX_ENTRIES 40

#define L1_EBX_HOST 0x33550800u /* host APIC id 0x33, 0x55 logical CPUs, CLFLUSH size 8 */
#define HTT         (1u << 28)
#define HYPERVISOR  (1u << 31)

static struct kvm_cpuid2 *cpuid_alloc(void)
{
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));

        assert_non_null(c);
        return c;
}

static struct kvm_cpuid_entry2 *add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags,
                                    uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx)
{
        struct kvm_cpuid_entry2 *e;

        assert_true(c->nent < MAX_ENTRIES);
        e = &c->entries[c->nent++];
        *e = (struct kvm_cpuid_entry2){.function = fn,
                                       .index = idx,
                                       .flags = flags,
                                       .eax = eax,
                                       .ebx = ebx,
                                       .ecx = ecx,
                                       .edx = edx};
        return e;
}

/* A supported-CPUID table as KVM might return it, every feature bit set. */
static struct kvm_cpuid2 *supported(bool intel)
{
        struct kvm_cpuid2 *c = cpuid_alloc();

        if (intel) /* "GenuineIntel": EBX EDX ECX */
                add(c, 0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69);
        else /* "AuthenticAMD" */
                add(c, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65);
        add(c, 1, 0, 0, 0x000806f8, L1_EBX_HOST, 0x7fffffff, 0xffffffff);
        for (uint32_t i = 0; i < 4; i++) /* caches: type in EAX[4:0], sharing in [25:14] */
                add(c, 4, i, SIG, 0xfc004121, 0x1c0003f, 0x3f, 0);
        add(c, 7, 0, SIG, 0, 0xffffffff, 0xffffffff, 0xffffffff);
        for (uint32_t i = 0; i < 3; i++)
                add(c, 0xb, i, SIG, 0x7, 0x77, 0x777, 0x7777);
        for (uint32_t i = 0; i < 2; i++)
                add(c, 0x1f, i, SIG, 0x7, 0x77, 0x777, 0x7777);
        for (uint32_t i = 0; i < 3; i++)
                add(c, 0xd, i, SIG, 0x2e7 + i, 0x340, 0xa88, 0x1);
        add(c, 0x40000000, 0, 0, 0x40000001, 0x11111111, 0x22222222, 0x33333333);
        add(c, 0x80000001, 0, 0, 0, 0, 0xffffffff, 0xffffffff);
        add(c, 0x80000008, 0, 0, 0x3030, 0, 0x0000f0ff, 0);
        add(c, 0x8000001e, 0, 0, 0x99, 0x9999, 0x999, 0);
        return c;
}

static struct kvm_cpuid_entry2 *find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
        struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, fn, idx);

        if (!e)
                fail_msg("leaf 0x%x.%u missing", fn, idx);
        return e;
}

static bool mask_has(const struct x86_cpuid_mask *m, uint32_t leaf, uint32_t subleaf,
                     enum x86_cpuid_reg reg, uint8_t bit)
{
        for (unsigned i = 0; i < m->nr; i++)
                if (m->bits[i].leaf == leaf && m->bits[i].subleaf == subleaf &&
                    m->bits[i].reg == reg && m->bits[i].bit == bit)
                        return true;
        return false;
}

static void parse_ok(const char *list, struct x86_cpuid_mask *m)
{
        struct error err = {0};

        if (x86_cpuid_parse_hide(list, m, &err))
                fail_msg("parse '%s': %s", list ? list : "(null)", err.msg);
}

/* ---- parsing ---- */

static void test_hide_nothing(void **state)
{
        (void)state;
        struct x86_cpuid_mask m;

        memset(&m, 0x5a, sizeof(m));
        parse_ok("", &m);
        assert_int_equal(m.nr, 0);
        assert_false(m.hide_xsave_leaf);
        memset(&m, 0x5a, sizeof(m));
        parse_ok(NULL, &m);
        assert_int_equal(m.nr, 0);
        assert_false(m.hide_xsave_leaf);
        parse_ok(",,,", &m);
        assert_int_equal(m.nr, 0);
}

static void test_hide_cx16(void **state)
{
        (void)state;
        struct x86_cpuid_mask m;

        parse_ok("cx16", &m);
        assert_int_equal(m.nr, 1);
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 13));
        assert_false(m.hide_xsave_leaf);
}

static void test_hide_xsave_takes_dependents(void **state)
{
        (void)state;
        struct x86_cpuid_mask m;

        parse_ok("xsave", &m);
        assert_true(m.hide_xsave_leaf);
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 26));  /* xsave */
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 27));  /* osxsave */
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 28));  /* avx */
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 12));  /* fma */
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 29));  /* f16c */
        assert_true(mask_has(&m, 7, 0, CPUID_EBX, 5));   /* avx2 */
        assert_true(mask_has(&m, 7, 0, CPUID_EBX, 16));  /* avx512f */
        assert_true(mask_has(&m, 7, 0, CPUID_EBX, 30));  /* avx512bw */
        assert_true(mask_has(&m, 0xd, 1, CPUID_EAX, 0)); /* xsaveopt */
        assert_true(mask_has(&m, 0xd, 1, CPUID_EAX, 1)); /* xsavec */
        assert_true(mask_has(&m, 0xd, 1, CPUID_EAX, 3)); /* xsaves */
        /* VEX/XOP-encoded instructions need the AVX state too. */
        assert_true(mask_has(&m, 7, 0, CPUID_ECX, 9));           /* vaes */
        assert_true(mask_has(&m, 7, 0, CPUID_ECX, 10));          /* vpclmulqdq */
        assert_true(mask_has(&m, 0x80000001, 0, CPUID_ECX, 16)); /* fma4 */
        assert_true(mask_has(&m, 0x80000001, 0, CPUID_ECX, 11)); /* xop */
        /* Unrelated features stay. */
        assert_false(mask_has(&m, 1, 0, CPUID_ECX, 13)); /* cx16 */
        assert_false(mask_has(&m, 1, 0, CPUID_ECX, 20)); /* sse4_2 */
        assert_false(mask_has(&m, 7, 0, CPUID_EBX, 0));  /* fsgsbase */
}

static void test_hide_unknown_name(void **state)
{
        (void)state;
        static const char *const bad[] = {"cx16,bogus_feature", "cx1", "cx16x", "CX16",
                                          "xsave avx"};
        static const char *const name[] = {"'bogus_feature'", "'cx1'", "'cx16x'", "'CX16'",
                                           "'xsave avx'"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct x86_cpuid_mask m;
                struct error err = {0};

                assert_int_equal(x86_cpuid_parse_hide(bad[i], &m, &err), -EINVAL);
                if (!strstr(err.msg, name[i]))
                        fail_msg("'%s': message '%s' does not name %s", bad[i], err.msg, name[i]);
        }
}

static void test_hide_tolerates_empty_items(void **state)
{
        (void)state;
        struct x86_cpuid_mask m;

        parse_ok(",cx16,,", &m);
        assert_int_equal(m.nr, 1);
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 13));
        parse_ok("cx16,,,popcnt,", &m);
        assert_int_equal(m.nr, 2);
        assert_true(mask_has(&m, 1, 0, CPUID_ECX, 23));
}

static void test_hide_duplicates_do_not_overflow(void **state)
{
        (void)state;
        struct x86_cpuid_mask m, once;
        char list[4096] = "";

        for (int i = 0; i < 300; i++)
                strcat(list, "cx16,");
        parse_ok(list, &m);
        assert_int_equal(m.nr, 1);

        parse_ok("xsave", &once);
        list[0] = '\0';
        for (int i = 0; i < 40; i++)
                strcat(list, "xsave,avx,avx512f,fma,xsaves,");
        parse_ok(list, &m);
        assert_int_equal(m.nr, once.nr);
        /* abm and lzcnt are two names for one bit. */
        parse_ok("abm,lzcnt", &m);
        assert_int_equal(m.nr, 1);
}

static void test_hide_too_many_refused(void **state)
{
        (void)state;
        /* More than X86_CPUID_MAX_HIDDEN distinct bits. */
        static const char list[] =
            "sse3,pclmulqdq,monitor,ssse3,fma,cx16,pcid,sse4_1,sse4_2,x2apic,movbe,popcnt,"
            "tsc_deadline_timer,aes,xsave,f16c,rdrand,pse,tsc,pae,mce,cx8,sep,mtrr,pge,cmov,"
            "pat,pse36,clflush,mmx,fxsr,sse,sse2,ht,fsgsbase,bmi1,hle,smep,bmi2,erms,invpcid,"
            "rtm,rdseed,adx,smap,clflushopt,clwb,sha_ni,umip,pku,waitpkg,vaes,vpclmulqdq,la57,"
            "rdpid,md_clear,serialize,arch_capabilities,lahf_lm,cmp_legacy,svm,abm,sse4a,"
            "misalignsse,3dnowprefetch,xop,fma4,tbm,topoext,syscall,nx";
        struct x86_cpuid_mask m;
        struct error err = {0};

        assert_int_equal(x86_cpuid_parse_hide(list, &m, &err), -E2BIG);
        assert_true(m.nr <= X86_CPUID_MAX_HIDDEN);
        assert_non_null(strstr(err.msg, "too many"));
}

/* ---- applying ---- */

static void test_find_honours_significant_index(void **state)
{
        (void)state;
        struct kvm_cpuid2 *c = supported(true);

        assert_int_equal(find(c, 0xb, 1)->index, 1);
        assert_int_equal(find(c, 0xb, 2)->index, 2);
        assert_null(x86_cpuid_find(c, 0xb, 3));
        assert_int_equal(find(c, 0xd, 1)->eax, 0x2e8);
        /* Without the flag the subleaf does not matter. */
        assert_int_equal(find(c, 1, 0)->function, 1);
        assert_ptr_equal(x86_cpuid_find(c, 1, 7), find(c, 1, 0));
        assert_null(x86_cpuid_find(c, 0x12345678, 0));
        assert_null(x86_cpuid_find(c, 0x80000007, 0));
        free(c);
}

static unsigned ceil_log2(unsigned n)
{
        unsigned s = 0;

        while ((1u << s) < n)
                s++;
        return s;
}

/* vCPU index of n, with two threads per core when smt (and n > 1), as Firecracker lays out
 * the topology: the APIC id is the index, its low bit the thread. */
static void check_vcpu_smt(bool intel, unsigned index, unsigned n, bool smt)
{
        struct kvm_cpuid2 *c = supported(intel);
        struct kvm_cpuid_entry2 *e;
        unsigned threads = smt && n > 1 ? 2 : 1;

        x86_cpuid_apply(c, MAX_ENTRIES, index, n, smt, NULL);

        e = find(c, 1, 0);
        assert_int_equal(e->ebx >> 24, index);      /* initial APIC id */
        assert_int_equal((e->ebx >> 16) & 0xff, n); /* logical processors */
        assert_int_equal(e->ebx & 0xffff, L1_EBX_HOST & 0xffff);
        assert_int_equal(e->ecx & HYPERVISOR, HYPERVISOR);
        assert_int_equal(e->ecx & ~HYPERVISOR, 0x7fffffff); /* nothing else changed */
        if (n > 1)
                assert_int_equal(e->edx & HTT, HTT);
        else
                assert_int_equal(e->edx & HTT, 0);

        for (uint32_t leaf = 0xb; leaf <= 0x1f; leaf += 0x1f - 0xb) {
                e = find(c, leaf, 0); /* SMT level: threads per core */
                assert_int_equal(e->eax & 0x1f, threads == 2 ? 1 : 0);
                assert_int_equal(e->ebx & 0xffff, threads);
                assert_int_equal(e->ecx & 0xffff, 0x100);
                assert_int_equal(e->edx, index);
                e = find(c, leaf, 1); /* core level: n logical CPUs in the package */
                assert_int_equal(e->eax & 0x1f, ceil_log2(n));
                assert_int_equal(e->ebx & 0xffff, n);
                assert_int_equal(e->ecx & 0xffff, 0x201);
                assert_int_equal(e->edx, index);
        }
        e = find(c, 0xb, 2); /* invalid level ends the enumeration */
        assert_int_equal(e->eax, 0);
        assert_int_equal(e->ebx, 0);
        assert_int_equal(e->ecx & 0xff00, 0);
        assert_int_equal(e->ecx & 0xff, 2);
        assert_int_equal(e->edx, index);

        e = find(c, 0x40000000, 0);
        assert_true(e->eax >= 0x40000001);
        assert_memory_equal(&e->ebx, "KVMK", 4);
        assert_memory_equal(&e->ecx, "VMKV", 4);
        assert_memory_equal(&e->edx, "M\0\0\0", 4);

        if (intel) {
                unsigned cores = n / threads;

                e = find(c, 4, 0);
                /* Cores per package - 1, in 6 bits: saturates rather than wraps. */
                assert_int_equal(e->eax >> 26, cores - 1 < 0x3f ? cores - 1 : 0x3f);
                /* The core's cache, shared by its threads. */
                assert_int_equal((e->eax >> 14) & 0xfff, threads - 1);
                assert_int_equal(e->eax & 0x3fff, 0x0121);
                assert_int_equal(find(c, 0x80000008, 0)->ecx, 0xf0ff); /* AMD-only field */
        } else {
                assert_int_equal(find(c, 4, 0)->eax, 0xfc004121); /* Intel-only leaf */
                e = find(c, 0x80000008, 0);
                assert_int_equal((e->ecx >> 12) & 0xf, ceil_log2(n));
                assert_int_equal(e->ecx & 0xff, n - 1);
                e = find(c, 0x8000001e, 0);
                assert_int_equal(e->eax, index);
                assert_int_equal(e->ebx & 0xff, (index / threads) & 0xff); /* core id */
                assert_int_equal((e->ebx >> 8) & 0xff, threads - 1);       /* threads - 1 */
                assert_int_equal(find(c, 0x80000001, 0)->ecx & 2, n > 1 ? 2 : 0);
        }
        free(c);
}

static void check_vcpu(bool intel, unsigned index, unsigned n)
{
        check_vcpu_smt(intel, index, n, false);
}

/* KVM no longer lists subleaf 1 of leaves 0xB/0x1F (Linux 6.2): it is added, as Firecracker
 * adds it, so the guest sees the core level; a table without room is left as it is. */
static void test_apply_adds_the_core_level(void **state)
{
        struct kvm_cpuid2 *c = cpuid_alloc();
        struct kvm_cpuid_entry2 *e;

        (void)state;
        add(c, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65);
        add(c, 1, 0, 0, 0, L1_EBX_HOST, 0, 0);
        add(c, 0xb, 0, SIG, 0, 0, 0, 0);
        x86_cpuid_apply(c, MAX_ENTRIES, 1, 4, true, NULL);
        assert_int_equal(c->nent, 4); /* no 0x1F: none added */
        e = find(c, 0xb, 1);
        assert_int_equal(e->flags, SIG);
        assert_int_equal(e->eax & 0x1f, 2);
        assert_int_equal(e->ebx & 0xffff, 4);
        assert_int_equal(e->ecx & 0xffff, 0x201);
        assert_int_equal(e->edx, 1);
        e = find(c, 0xb, 0);
        assert_int_equal(e->ebx & 0xffff, 2);
        free(c);

        c = cpuid_alloc();
        add(c, 0xb, 0, SIG, 0, 0, 0, 0);
        x86_cpuid_apply(c, 1, 0, 2, false, NULL);
        assert_int_equal(c->nent, 1);
        free(c);
}

/* machine-config smt: two threads per core (x86); one vCPU stays one thread. */
static void test_apply_topology_smt(void **state)
{
        (void)state;
        static const unsigned counts[] = {1, 2, 4, 8, 254};

        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                for (int intel = 0; intel < 2; intel++) {
                        check_vcpu_smt(intel, 0, counts[i], true);
                        check_vcpu_smt(intel, counts[i] - 1, counts[i], true);
                }
        }
}

static void test_apply_topology_intel(void **state)
{
        (void)state;
        static const unsigned counts[] = {1, 2, 3, 4, 5, 8, 9, 254};

        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                check_vcpu(true, 0, counts[i]);
                check_vcpu(true, counts[i] - 1, counts[i]);
        }
}

static void test_apply_topology_amd(void **state)
{
        (void)state;
        static const unsigned counts[] = {1, 2, 3, 4, 7, 16, 254};

        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                check_vcpu(false, 0, counts[i]);
                check_vcpu(false, counts[i] / 2, counts[i]);
        }
}

static void test_apply_hides_bits(void **state)
{
        (void)state;
        struct kvm_cpuid2 *c = supported(true);
        struct x86_cpuid_mask m;

        parse_ok("cx16,nx,avx2", &m);
        x86_cpuid_apply(c, MAX_ENTRIES, 0, 1, false, &m);
        assert_int_equal(find(c, 1, 0)->ecx, HYPERVISOR | (0x7fffffffu & ~(1u << 13)));
        assert_int_equal(find(c, 0x80000001, 0)->edx, ~(1u << 20));
        assert_int_equal(find(c, 7, 0)->ebx, ~(1u << 5));
        assert_int_equal(find(c, 7, 0)->ecx, 0xffffffff);
        /* Leaf 0xD stays without xsave in the list. */
        assert_int_equal(find(c, 0xd, 0)->eax, 0x2e7);
        free(c);
}

static void test_apply_hides_xsave_and_leaf_d(void **state)
{
        (void)state;
        struct kvm_cpuid2 *c = supported(false);
        struct x86_cpuid_mask m;
        struct kvm_cpuid_entry2 *e;

        parse_ok("xsave", &m);
        x86_cpuid_apply(c, MAX_ENTRIES, 1, 2, false, &m);
        e = find(c, 1, 0);
        assert_int_equal(e->ecx & ((1u << 26) | (1u << 27) | (1u << 28) | (1u << 12) | (1u << 29)),
                         0);
        assert_int_equal(e->ecx & (1u << 13), 1u << 13); /* cx16 untouched */
        e = find(c, 7, 0);
        assert_int_equal(e->ebx & ((1u << 5) | (1u << 16)), 0);
        assert_int_equal(e->ebx & 1, 1); /* fsgsbase untouched */
        for (uint32_t i = 0; i < 3; i++) {
                e = find(c, 0xd, i);
                assert_int_equal(e->eax | e->ebx | e->ecx | e->edx, 0);
        }
        free(c);
}

/* KVM before Linux 6.x lists no TSC-deadline timer though its LAPIC has one: the guest gets
 * it (a Linux guest needs it without a PIT), unless hidden. */
static void test_apply_sets_tsc_deadline_unless_hidden(void **state)
{
        (void)state;
        struct kvm_cpuid2 *c = cpuid_alloc();
        struct x86_cpuid_mask m;

        add(c, 1, 0, 0, 0, 0, 0, 0);
        x86_cpuid_apply(c, MAX_ENTRIES, 0, 1, false, NULL);
        assert_int_equal(c->entries[0].ecx & (1u << 24), 1u << 24);
        c->entries[0].ecx = 0;
        parse_ok("tsc_deadline_timer", &m);
        x86_cpuid_apply(c, MAX_ENTRIES, 0, 1, false, &m);
        assert_int_equal(c->entries[0].ecx & (1u << 24), 0);
        free(c);
}

static void test_apply_without_optional_leaves(void **state)
{
        (void)state;
        struct kvm_cpuid2 *c = cpuid_alloc();
        struct x86_cpuid_mask m;

        /* Only leaf 1: nothing else is invented, hidden bits of absent leaves ignored. */
        add(c, 1, 0, 0, 0, 0, 0xffffffff, 0);
        parse_ok("nx,avx2,xsave", &m);
        x86_cpuid_apply(c, MAX_ENTRIES, 3, 4, false, &m);
        assert_int_equal(c->nent, 1);
        assert_int_equal(c->entries[0].ebx >> 24, 3);
        assert_int_equal(c->entries[0].ecx & (1u << 26), 0);
        free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_hide_nothing),
            cmocka_unit_test(test_hide_cx16),
            cmocka_unit_test(test_hide_xsave_takes_dependents),
            cmocka_unit_test(test_hide_unknown_name),
            cmocka_unit_test(test_hide_tolerates_empty_items),
            cmocka_unit_test(test_hide_duplicates_do_not_overflow),
            cmocka_unit_test(test_hide_too_many_refused),
            cmocka_unit_test(test_find_honours_significant_index),
            cmocka_unit_test(test_apply_topology_intel),
            cmocka_unit_test(test_apply_topology_amd),
            cmocka_unit_test(test_apply_topology_smt),
            cmocka_unit_test(test_apply_adds_the_core_level),
            cmocka_unit_test(test_apply_hides_bits),
            cmocka_unit_test(test_apply_hides_xsave_and_leaf_d),
            cmocka_unit_test(test_apply_without_optional_leaves),
            cmocka_unit_test(test_apply_sets_tsc_deadline_unless_hidden),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/kvm_vcpu.h"
#include "boot.h"
#include "common/log.h"
#include "layout.h"

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1
#define MTRR_ENABLE_WB          ((1u << 11) | 6u)

#define CR0_PE   0x1ull
#define CR0_ET   0x10ull
#define CR0_PG   0x80000000ull
#define CR4_PAE  0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

#define APIC_LVT_LINT0   0x350
#define APIC_LVT_LINT1   0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static int set_cpuid(int fd, const struct x86_cpu_init *in, struct error *err)
{
        unsigned capacity = in->cpuid->nent + X86_CPUID_ADDED_ENTRIES;
        size_t size = sizeof(struct kvm_cpuid2) + in->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + capacity * sizeof(c->entries[0]));
        int r;

        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        memcpy(c, in->cpuid, size);
        x86_cpuid_apply(c, capacity, in->index, in->nr_vcpus, in->smt, in->hide);
        r = kvm_vcpu_set_cpuid2(fd, c);
        free(c);
        return r ? error_set(err, -errno, "KVM_SET_CPUID2: %s", strerror(errno)) : 0;
}

static int set_msrs(int fd, const struct x86_cpu_init *in, struct error *err)
{
        static const struct {
                uint32_t index;
                uint64_t value;
        } boot_msrs[] = {
            {MSR_IA32_SYSENTER_CS, 0},
            {MSR_IA32_SYSENTER_ESP, 0},
            {MSR_IA32_SYSENTER_EIP, 0},
            {MSR_STAR, 0},
            {MSR_LSTAR, 0},
            {MSR_CSTAR, 0},
            {MSR_SYSCALL_MASK, 0},
            {MSR_KERNEL_GS_BASE, 0},
            {MSR_IA32_TSC, 0},
            {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
            {MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB},
        };
        /* struct kvm_msrs ends in a flexible array: header and entries share one buffer. */
        union {
                struct kvm_msrs hdr;
                uint8_t bytes[sizeof(struct kvm_msrs) +
                              ARRAY_SIZE(boot_msrs) * sizeof(struct kvm_msr_entry)];
        } msrs;
        struct kvm_msr_entry *e = msrs.hdr.entries;
        uint32_t n = 0;
        int r;

        memset(&msrs, 0, sizeof(msrs));
        for (size_t i = 0; i < ARRAY_SIZE(boot_msrs); i++) {
                /* MTRRs are emulated by every KVM but not always listed as saveable. */
                if (!x86_msr_listed(in->msr_list, boot_msrs[i].index) &&
                    boot_msrs[i].index != MSR_MTRR_DEF_TYPE)
                        continue;
                e[n].index = boot_msrs[i].index;
                e[n].data = boot_msrs[i].value;
                n++;
        }
        msrs.hdr.nmsrs = n;
        r = kvm_vcpu_set_msrs(fd, &msrs.hdr);
        if (r < 0)
                return error_set(err, -errno, "KVM_SET_MSRS: %s", strerror(errno));
        if ((uint32_t)r < n)
                LOG_DEBUG("vcpu%u: KVM refused boot MSR 0x%x; the guest keeps its reset value",
                          in->index, e[r].index);
        return 0;
}

/* The CPU template's msr_modifiers: the value KVM gives the MSR once the CPUID is set, with
 * the bitmap applied (vm.c checked that KVM lists each of them). */
static int set_template_msrs(int fd, const struct x86_cpu_init *in, struct error *err)
{
        struct {
                struct kvm_msrs hdr;
                struct kvm_msr_entry e[1];
        } msr;

        for (unsigned i = 0; in->tmpl && i < in->tmpl->nr_msrs; i++) {
                const struct x86_msr_modifier *m = &in->tmpl->msrs[i];

                memset(&msr, 0, sizeof(msr));
                msr.hdr.nmsrs = 1;
                msr.e[0].index = m->index;
                if (kvm_vcpu_get_msrs(fd, &msr.hdr) != 1)
                        return error_config(err,
                                            "Template changes an MSR entry not supported by KVM: "
                                            "Register Address: %x (KVM cannot read it)",
                                            m->index);
                msr.e[0].data = x86_bitmap_apply(&m->bitmap, msr.e[0].data);
                if (kvm_vcpu_set_msrs(fd, &msr.hdr) != 1)
                        return error_config(err,
                                            "KVM refused the value 0x%llx the CPU template gives "
                                            "MSR 0x%x",
                                            (unsigned long long)msr.e[0].data, m->index);
        }
        return 0;
}

static int set_fpu(int fd, struct error *err)
{
        struct kvm_fpu fpu;

        memset(&fpu, 0, sizeof(fpu));
        fpu.fcw = 0x37f;
        fpu.mxcsr = 0x1f80;
        return kvm_vcpu_set_fpu(fd, &fpu)
                   ? error_set(err, -errno, "KVM_SET_FPU: %s", strerror(errno))
                   : 0;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
        uint32_t v;

        memcpy(&v, lapic->regs + reg, sizeof(v));
        v = (v & ~0x700u) | (mode << 8);
        memcpy(lapic->regs + reg, &v, sizeof(v));
}

/* LINT0 takes the 8259's ExtINT and LINT1 the NMI, as on a PC: guests booting in PIC mode
 * and the MPTable's local interrupt entries rely on it. */
static int set_lint(int fd, struct error *err)
{
        struct kvm_lapic_state lapic;

        if (kvm_vcpu_get_lapic(fd, &lapic))
                return error_set(err, -errno, "KVM_GET_LAPIC: %s", strerror(errno));
        set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
        if (kvm_vcpu_set_lapic(fd, &lapic))
                return error_set(err, -errno, "KVM_SET_LAPIC: %s", strerror(errno));
        return 0;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
        memset(s, 0, sizeof(*s));
        s->base = 0;
        s->limit = 0xffffffff;
        s->selector = sel;
        s->type = type;
        s->present = 1;
        s->s = 1;
        s->g = 1;
        s->l = code64;
        s->db = !code64;
}

void x86_boot_regs(const struct x86_kernel *k, struct kvm_regs *regs, struct kvm_sregs *sregs)
{
        bool pvh = k->protocol == X86_BOOT_PVH;

        memset(regs, 0, sizeof(*regs));
        regs->rflags = 0x2;
        regs->rip = k->entry;
        if (pvh) {
                regs->rbx = X86_PVH_INFO_ADDR;
        } else {
                regs->rsi = X86_ZERO_PAGE_ADDR;
                regs->rsp = X86_BOOT_STACK_ADDR;
                regs->rbp = X86_BOOT_STACK_ADDR;
        }

        flat_segment(&sregs->cs, X86_GDT_CODE_SEL, 0xb, !pvh);
        flat_segment(&sregs->ds, X86_GDT_DATA_SEL, 0x3, false);
        sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
        memset(&sregs->tr, 0, sizeof(sregs->tr));
        sregs->tr.selector = X86_GDT_TSS_SEL;
        sregs->tr.limit = 0xfffff;
        sregs->tr.type = 0xb;
        sregs->tr.present = 1;
        sregs->gdt.base = X86_BOOT_GDT_ADDR;
        sregs->gdt.limit = X86_GDT_ENTRIES * 8 - 1;
        sregs->idt.base = X86_BOOT_IDT_ADDR;
        sregs->idt.limit = 7;

        sregs->cr0 = (sregs->cr0 & ~CR0_PG) | CR0_PE | CR0_ET;
        if (pvh) {
                sregs->cr4 = 0;
                sregs->efer = 0;
        } else {
                sregs->cr3 = X86_PML4_ADDR;
                sregs->cr4 |= CR4_PAE;
                sregs->cr0 |= CR0_PG;
                sregs->efer |= EFER_LME | EFER_LMA;
        }
}

static int set_boot_regs(int fd, const struct x86_kernel *k, struct error *err)
{
        struct kvm_sregs sregs;
        struct kvm_regs regs;

        if (kvm_vcpu_get_sregs(fd, &sregs))
                return error_set(err, -errno, "KVM_GET_SREGS: %s", strerror(errno));
        x86_boot_regs(k, &regs, &sregs);
        if (kvm_vcpu_set_sregs(fd, &sregs))
                return error_set(err, -errno, "KVM_SET_SREGS: %s", strerror(errno));
        if (kvm_vcpu_set_regs(fd, &regs))
                return error_set(err, -errno, "KVM_SET_REGS: %s", strerror(errno));
        return 0;
}

int x86_cpu_init(int vcpu_fd, const struct x86_cpu_init *in, struct error *err)
{
        int r = set_cpuid(vcpu_fd, in, err);

        if (!r)
                r = set_template_msrs(vcpu_fd, in, err);
        if (!r)
                r = set_msrs(vcpu_fd, in, err);
        if (!r)
                r = set_fpu(vcpu_fd, err);
        if (!r)
                r = set_lint(vcpu_fd, err);
        if (!r && in->index == 0 && in->kernel)
                r = set_boot_regs(vcpu_fd, in->kernel, err);
        if (r)
                error_prefix(err, "vcpu%u", in->index);
        return r;
}

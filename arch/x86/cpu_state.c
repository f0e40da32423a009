#include "cpu_state.h"

#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/kvm.h"
#include "kvm/kvm_vcpu.h"

/* Emulated by KVM, not in its index list: MTRRdefType, the variable and fixed ranges. */
static const uint32_t mtrr_msrs[] = {
    0x2ff, 0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208,
    0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f, 0x250, 0x258, 0x259,
    0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
};

struct msr_buf {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[X86_CPU_STATE_MAX_MSRS];
};

static uint32_t xsave_size(const struct x86_cpu_state_env *env)
{
        int n = kvm_check_extension(env->sys_fd, KVM_CAP_XSAVE2);

        return n > (int)sizeof(struct kvm_xsave) ? (uint32_t)n : (uint32_t)sizeof(struct kvm_xsave);
}

static bool has_cap(const struct x86_cpu_state_env *env, int cap)
{
        return kvm_check_extension(env->sys_fd, cap) > 0;
}

/* Reads every MSR of the save list KVM accepts; those it refuses are left out. */
static int read_msrs(const struct x86_cpu_state_env *env, int fd, struct msr_buf *b,
                     struct msr_buf *tmp)
{
        uint32_t n = 0, done = 0;

        for (uint32_t i = 0; env->msr_list && i < env->msr_list->nmsrs; i++)
                if (n < X86_CPU_STATE_MAX_MSRS)
                        b->e[n++].index = env->msr_list->indices[i];
        for (size_t i = 0; i < ARRAY_SIZE(mtrr_msrs) && n < X86_CPU_STATE_MAX_MSRS; i++)
                b->e[n++].index = mtrr_msrs[i];
        /* KVM_GET_MSRS stops at the first MSR it cannot read: drop that one and go on. */
        while (done < n) {
                int got;

                memset(&tmp->hdr, 0, sizeof(tmp->hdr));
                tmp->hdr.nmsrs = n - done;
                memcpy(tmp->e, &b->e[done], (n - done) * sizeof(b->e[0]));
                got = kvm_vcpu_get_msrs(fd, &tmp->hdr);
                if (got < 0)
                        return -errno;
                memcpy(&b->e[done], tmp->e, (uint32_t)got * sizeof(b->e[0]));
                done += (uint32_t)got;
                if (done < n) {
                        memmove(&b->e[done], &b->e[done + 1], (n - done - 1) * sizeof(b->e[0]));
                        n--;
                }
        }
        b->hdr.nmsrs = n;
        return 0;
}

static int fail(struct error *err, const char *what)
{
        return error_set(err, -errno, "vcpu state: %s: %s", what, strerror(errno));
}

int x86_cpu_state_save(const struct x86_cpu_state_env *env, int fd, struct snapbuf_writer *w,
                       struct error *err)
{
        struct {
                struct kvm_cpuid2 hdr;
                struct kvm_cpuid_entry2 e[X86_CPU_STATE_MAX_CPUID];
        } cpuid;
        struct kvm_mp_state mp;
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        struct kvm_xcrs xcrs;
        struct kvm_debugregs dbg;
        struct kvm_lapic_state lapic;
        struct kvm_vcpu_events events;
        struct msr_buf *msrs = NULL, *tmp = NULL;
        void *fpu = NULL;
        uint32_t fpu_len;
        uint8_t fpu_kind;
        int tsc_khz, r = 0;

        memset(&cpuid, 0, sizeof(cpuid));
        cpuid.hdr.nent = X86_CPU_STATE_MAX_CPUID;
        if (kvm_vcpu_get_cpuid2(fd, &cpuid.hdr))
                return fail(err, "KVM_GET_CPUID2");
        if (kvm_vcpu_get_mp_state(fd, &mp))
                return fail(err, "KVM_GET_MP_STATE");
        if (kvm_vcpu_get_regs(fd, &regs))
                return fail(err, "KVM_GET_REGS");
        if (kvm_vcpu_get_sregs(fd, &sregs))
                return fail(err, "KVM_GET_SREGS");
        if (has_cap(env, KVM_CAP_XSAVE)) {
                fpu_kind = X86_CPU_STATE_XSAVE;
                fpu_len = xsave_size(env);
        } else {
                fpu_kind = X86_CPU_STATE_FPU;
                fpu_len = sizeof(struct kvm_fpu);
        }
        if (fpu_len > X86_CPU_STATE_MAX_XSAVE)
                return error_set(err, -E2BIG, "vcpu state: XSAVE area of %u bytes", fpu_len);
        fpu = calloc(1, fpu_len);
        msrs = calloc(1, sizeof(*msrs));
        tmp = calloc(1, sizeof(*tmp));
        if (!fpu || !msrs || !tmp) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        if (fpu_kind == X86_CPU_STATE_FPU)
                r = kvm_vcpu_get_fpu(fd, fpu) ? fail(err, "KVM_GET_FPU") : 0;
        else if (fpu_len > sizeof(struct kvm_xsave))
                r = kvm_vcpu_get_xsave2(fd, fpu) ? fail(err, "KVM_GET_XSAVE2") : 0;
        else
                r = kvm_vcpu_get_xsave(fd, fpu) ? fail(err, "KVM_GET_XSAVE") : 0;
        memset(&xcrs, 0, sizeof(xcrs));
        if (!r && has_cap(env, KVM_CAP_XCRS) && kvm_vcpu_get_xcrs(fd, &xcrs))
                r = fail(err, "KVM_GET_XCRS");
        memset(&dbg, 0, sizeof(dbg));
        if (!r && has_cap(env, KVM_CAP_DEBUGREGS) && kvm_vcpu_get_debugregs(fd, &dbg))
                r = fail(err, "KVM_GET_DEBUGREGS");
        if (!r && kvm_vcpu_get_lapic(fd, &lapic))
                r = fail(err, "KVM_GET_LAPIC");
        if (!r && (r = read_msrs(env, fd, msrs, tmp)) != 0)
                r = error_set(err, r, "vcpu state: KVM_GET_MSRS: %s", strerror(-r));
        if (!r && kvm_vcpu_get_events(fd, &events))
                r = fail(err, "KVM_GET_VCPU_EVENTS");
        if (r)
                goto out;
        tsc_khz = has_cap(env, KVM_CAP_GET_TSC_KHZ) ? kvm_vcpu_get_tsc_khz(fd) : 0;

        snapbuf_put_u32(w, X86_CPU_STATE_VERSION);
        snapbuf_put_u32(w, cpuid.hdr.nent);
        for (uint32_t i = 0; i < cpuid.hdr.nent; i++)
                snapbuf_put_blob(w, &cpuid.e[i], sizeof(cpuid.e[i]));
        snapbuf_put_blob(w, &mp, sizeof(mp));
        snapbuf_put_blob(w, &regs, sizeof(regs));
        snapbuf_put_blob(w, &sregs, sizeof(sregs));
        snapbuf_put_u8(w, fpu_kind);
        snapbuf_put_blob(w, fpu, fpu_len);
        snapbuf_put_blob(w, &xcrs, sizeof(xcrs));
        snapbuf_put_blob(w, &dbg, sizeof(dbg));
        snapbuf_put_blob(w, &lapic, sizeof(lapic));
        snapbuf_put_u32(w, msrs->hdr.nmsrs);
        for (uint32_t i = 0; i < msrs->hdr.nmsrs; i++) {
                snapbuf_put_u32(w, msrs->e[i].index);
                snapbuf_put_u64(w, msrs->e[i].data);
        }
        snapbuf_put_blob(w, &events, sizeof(events));
        snapbuf_put_u32(w, tsc_khz > 0 ? (uint32_t)tsc_khz : 0);
out:
        free(fpu);
        free(msrs);
        free(tmp);
        return r;
}

/* Everything a saved vCPU holds, read and checked before KVM sees any of it. */
struct cpu_state {
        struct {
                struct kvm_cpuid2 hdr;
                struct kvm_cpuid_entry2 e[X86_CPU_STATE_MAX_CPUID];
        } cpuid;
        struct kvm_mp_state mp;
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        uint8_t fpu_kind;
        const uint8_t *fpu;
        uint32_t fpu_len;
        struct kvm_xcrs xcrs;
        struct kvm_debugregs dbg;
        struct kvm_lapic_state lapic;
        struct msr_buf msrs;
        struct kvm_vcpu_events events;
        uint32_t tsc_khz;
};

static bool read_state(struct snapbuf_reader *r, struct cpu_state *s)
{
        uint32_t version = snapbuf_get_u32(r, "vcpu state version");

        if (snapbuf_ok(r) && version != X86_CPU_STATE_VERSION)
                return snapbuf_fail(r, "vcpu state", "unknown version");
        s->cpuid.hdr.nent = snapbuf_get_count(r, X86_CPU_STATE_MAX_CPUID, "vcpu CPUID entries");
        for (uint32_t i = 0; i < s->cpuid.hdr.nent; i++)
                snapbuf_get_blob(r, &s->cpuid.e[i], sizeof(s->cpuid.e[i]), "vcpu CPUID entry");
        snapbuf_get_blob(r, &s->mp, sizeof(s->mp), "vcpu MP state");
        snapbuf_get_blob(r, &s->regs, sizeof(s->regs), "vcpu registers");
        snapbuf_get_blob(r, &s->sregs, sizeof(s->sregs), "vcpu special registers");
        s->fpu_kind = snapbuf_get_u8(r, "vcpu FPU kind");
        s->fpu = snapbuf_get_blob_view(r, X86_CPU_STATE_MAX_XSAVE, &s->fpu_len, "vcpu FPU state");
        snapbuf_get_blob(r, &s->xcrs, sizeof(s->xcrs), "vcpu XCRs");
        snapbuf_get_blob(r, &s->dbg, sizeof(s->dbg), "vcpu debug registers");
        snapbuf_get_blob(r, &s->lapic, sizeof(s->lapic), "vcpu LAPIC");
        s->msrs.hdr.nmsrs = snapbuf_get_count(r, X86_CPU_STATE_MAX_MSRS, "vcpu MSR count");
        for (uint32_t i = 0; i < s->msrs.hdr.nmsrs; i++) {
                s->msrs.e[i].index = snapbuf_get_u32(r, "vcpu MSR index");
                s->msrs.e[i].data = snapbuf_get_u64(r, "vcpu MSR value");
        }
        snapbuf_get_blob(r, &s->events, sizeof(s->events), "vcpu events");
        s->tsc_khz = snapbuf_get_u32(r, "vcpu TSC frequency");
        if (!snapbuf_ok(r))
                return false;
        if (s->fpu_kind == X86_CPU_STATE_FPU && s->fpu_len != sizeof(struct kvm_fpu))
                return snapbuf_fail(r, "vcpu FPU state", "wrong size");
        if (s->fpu_kind == X86_CPU_STATE_XSAVE && s->fpu_len < sizeof(struct kvm_xsave))
                return snapbuf_fail(r, "vcpu XSAVE state", "wrong size");
        if (s->fpu_kind != X86_CPU_STATE_FPU && s->fpu_kind != X86_CPU_STATE_XSAVE)
                return snapbuf_fail(r, "vcpu FPU kind", "unknown");
        if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
                return snapbuf_fail(r, "vcpu XCRs", "too many");
        return snapbuf_expect_end(r, "vcpu state");
}

static int refuse(struct error *err, const char *what)
{
        return error_set(err, -errno ? -errno : -EINVAL,
                         "vcpu state: this KVM refused the snapshot's %s (%s): a different host "
                         "or KVM?",
                         what, errno ? strerror(errno) : "rejected");
}

static int apply_fpu(const struct x86_cpu_state_env *env, int fd, const struct cpu_state *s,
                     struct error *err)
{
        uint32_t size;
        void *buf;
        int r = 0;

        if (s->fpu_kind == X86_CPU_STATE_FPU) {
                struct kvm_fpu fpu;

                memcpy(&fpu, s->fpu, sizeof(fpu));
                return kvm_vcpu_set_fpu(fd, &fpu) ? refuse(err, "FPU state") : 0;
        }
        if (!has_cap(env, KVM_CAP_XSAVE)) {
                errno = 0;
                return refuse(err, "XSAVE state (this KVM has no XSAVE)");
        }
        size = xsave_size(env);
        if (s->fpu_len > size) {
                errno = 0;
                return refuse(err, "XSAVE state (larger than this host's)");
        }
        buf = calloc(1, size);
        if (!buf)
                return error_set(err, -ENOMEM, "out of memory");
        memcpy(buf, s->fpu, s->fpu_len);
        if (kvm_vcpu_set_xsave(fd, buf))
                r = refuse(err, "XSAVE state");
        free(buf);
        return r;
}

int x86_cpu_state_restore(const struct x86_cpu_state_env *env, int fd, struct snapbuf_reader *r,
                          struct error *err)
{
        struct cpu_state *s = calloc(1, sizeof(*s));
        int n, ret = 0;

        if (!s)
                return error_set(err, -ENOMEM, "out of memory");
        if (!read_state(r, s)) {
                ret = error_config(err, "vcpu state: %s", r->err);
                goto out;
        }
        /* Another host's TSC rate where KVM can scale it; otherwise the guest's TSC runs at
         * this host's rate (its time-keeping drifts, nothing breaks). */
        if (s->tsc_khz && has_cap(env, KVM_CAP_GET_TSC_KHZ) && has_cap(env, KVM_CAP_TSC_CONTROL) &&
            kvm_vcpu_get_tsc_khz(fd) != (int)s->tsc_khz)
                (void)!kvm_vcpu_set_tsc_khz(fd, s->tsc_khz);
        errno = 0;
        if (kvm_vcpu_set_cpuid2(fd, &s->cpuid.hdr))
                ret = refuse(err, "CPUID");
        else if (kvm_vcpu_set_mp_state(fd, &s->mp))
                ret = refuse(err, "MP state");
        else if (kvm_vcpu_set_regs(fd, &s->regs))
                ret = refuse(err, "registers");
        else if (kvm_vcpu_set_sregs(fd, &s->sregs))
                ret = refuse(err, "special registers");
        else if ((ret = apply_fpu(env, fd, s, err)) != 0)
                ;
        else if (has_cap(env, KVM_CAP_XCRS) && s->xcrs.nr_xcrs && kvm_vcpu_set_xcrs(fd, &s->xcrs))
                ret = refuse(err, "XCRs");
        else if (has_cap(env, KVM_CAP_DEBUGREGS) && kvm_vcpu_set_debugregs(fd, &s->dbg))
                ret = refuse(err, "debug registers");
        else if (kvm_vcpu_set_lapic(fd, &s->lapic))
                ret = refuse(err, "LAPIC state");
        if (ret)
                goto out;
        n = kvm_vcpu_set_msrs(fd, &s->msrs.hdr);
        if (n < 0 || (uint32_t)n != s->msrs.hdr.nmsrs) {
                if (n >= 0) {
                        ret = error_set(err, -EINVAL,
                                        "vcpu state: this KVM refused the snapshot's MSR 0x%x: a "
                                        "different host or KVM?",
                                        s->msrs.e[n].index);
                } else {
                        ret = refuse(err, "MSRs");
                }
                goto out;
        }
        if (kvm_vcpu_set_events(fd, &s->events))
                ret = refuse(err, "pending events");
out:
        free(s);
        return ret;
}

int x86_cpu_state_describe(struct snapbuf_reader *r, struct x86_cpu_state_summary *out)
{
        struct cpu_state *s = calloc(1, sizeof(*s));
        int ret = 0;

        if (!s)
                return -ENOMEM;
        if (!read_state(r, s)) {
                ret = -EINVAL;
        } else {
                out->rip = s->regs.rip;
                out->cr0 = s->sregs.cr0;
                out->efer = s->sregs.efer;
                out->mp_state = s->mp.mp_state;
                out->nr_msrs = s->msrs.hdr.nmsrs;
        }
        free(s);
        return ret;
}

void x86_host_cpu_vendor(char out[13])
{
        unsigned a = 0, b = 0, c = 0, d = 0;

        __get_cpuid(0, &a, &b, &c, &d);
        memcpy(out, &b, 4);
        memcpy(out + 4, &d, 4);
        memcpy(out + 8, &c, 4);
        out[12] = '\0';
}

#include "cc_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "kvm/kvm_vcpu.h"
#include "arch/x86/layout.h"

static const char *const names[] = {
    [CC_PLATFORM_NONE] = "none",
    [CC_PLATFORM_SEV] = "sev",
    [CC_PLATFORM_PEF] = "pef",
    [CC_PLATFORM_S390_PV] = "s390-pv",
};

const char *cc_platform_name(enum cc_platform p)
{
        return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "unknown";
}

int cc_platform_parse(const char *s, enum cc_platform *out)
{
        for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
                if (strcasecmp(s, names[i]) == 0) {
                        *out = (enum cc_platform)i;
                        return 0;
                }
        }
        return -EINVAL;
}

int cc_create(const struct cc_config *cfg, struct guest_mem *mem, struct error *err,
              struct cc **out)
{
        struct cc *cc;
        int r;

        *out = NULL;
        if (cfg->platform == CC_PLATFORM_NONE)
                return 0;
        if ((unsigned)cfg->platform >= ARRAY_SIZE(names))
                return error_config(err, "unknown confidential platform %d", cfg->platform);
        cc = calloc(1, sizeof(*cc));
        if (!cc)
                return error_set(err, -ENOMEM, "out of memory");
        cc->platform = cfg->platform;
        cc->mem = mem;
        cc->granule = cfg->platform == CC_PLATFORM_PEF ? PEF_GRANULE : OWNERSHIP_GRANULE;
        pthread_mutex_init(&cc->lock, NULL);
        ratelimit_init(&cc->rl, 1000000000ull, 10);
        if (getrandom(cc->key, sizeof(cc->key), 0) != sizeof(cc->key)) {
                cc_destroy(cc);
                return error_set(err, -EIO, "getrandom: %s", strerror(errno));
        }
        /* SEV encrypts every page at launch; the others start as normal VMs. */
        r = ownership_create(mem, cfg->platform == CC_PLATFORM_SEV, &cc->own);
        if (r) {
                cc_destroy(cc);
                return error_set(err, r, "ownership map: %s", strerror(-r));
        }
        if (cfg->platform == CC_PLATFORM_SEV) {
                cc->secure = true;
                cc->stats.secure_transitions++;
                /* A real launch goes through /dev/sev and KVM_SEV_*; this host model keeps
                 * the ownership semantics without the hardware. */
                LOG_INFO("confidential platform sev: %s; running the SEV ownership model "
                         "(memory is not encrypted by hardware)",
                         access("/dev/sev", F_OK) == 0 ? "/dev/sev present, hardware launch "
                                                         "not implemented"
                                                       : "no SEV hardware on this host");
        } else {
                LOG_INFO("confidential platform %s: software model of the %s", names[cc->platform],
                         cc->platform == CC_PLATFORM_PEF ? "POWER ultravisor" : "s390 ultravisor");
        }
        *out = cc;
        return 0;
}

void cc_destroy(struct cc *cc)
{
        if (!cc)
                return;
        for (unsigned i = 0; i < cc->nr_paged; i++)
                free(cc->paged[i].plain);
        free(cc->paged);
        ownership_destroy(cc->own);
        pthread_mutex_destroy(&cc->lock);
        free(cc);
}

enum cc_platform cc_platform_of(const struct cc *cc)
{
        return cc ? cc->platform : CC_PLATFORM_NONE;
}

bool cc_secure(struct cc *cc)
{
        bool s;

        if (!cc)
                return false;
        pthread_mutex_lock(&cc->lock);
        s = cc->secure;
        pthread_mutex_unlock(&cc->lock);
        return s;
}

struct ownership *cc_ownership(struct cc *cc)
{
        return cc ? cc->own : NULL;
}

bool cc_platform_has_callwin(enum cc_platform p)
{
        return p == CC_PLATFORM_PEF || p == CC_PLATFORM_S390_PV;
}

bool cc_has_callwin(const struct cc *cc)
{
        return cc && cc_platform_has_callwin(cc->platform);
}

bool cc_describe_callwin(enum cc_platform p, struct platform_dev *out)
{
        if (!cc_platform_has_callwin(p))
                return false;
        *out = (struct platform_dev){.name = "CCPW",
                                     .kind = PLATFORM_DEV_ACPI_MMIO,
                                     .base = X86_CC_CALLWIN_ADDR,
                                     .len = X86_CC_CALLWIN_SIZE,
                                     .hid = CC_CALLWIN_HID};
        return true;
}

int cc_cmdline_append(enum cc_platform p, const struct platform_dev *callwin, char *cmdline,
                      size_t cap, struct error *err)
{
        size_t used = strlen(cmdline);
        int n;

        if (p == CC_PLATFORM_NONE)
                return 0;
        if (callwin)
                n = snprintf(cmdline + used, cap - used, " cc.platform=%s cc.callwin=0x%llx",
                             cc_platform_name(p), (unsigned long long)callwin->base);
        else
                n = snprintf(cmdline + used, cap - used, " cc.platform=%s", cc_platform_name(p));
        if (n < 0 || (size_t)n >= cap - used) {
                cmdline[used] = '\0';
                return error_config(err, "kernel command line too long for the confidential "
                                         "platform parameters");
        }
        return 0;
}

/* ---- the ciphertext stand-in ---- */

static uint64_t mix(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

/* A keyed keystream per 8-byte-aligned guest word: deterministic for the VM, different
 * for every address and every VM, never the plaintext. */
void cc_scramble(const struct cc *cc, gpa_t gpa, const uint8_t *in, uint8_t *out, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                gpa_t a = gpa + i;
                uint64_t ks = mix(cc->key[0] ^ mix((a & ~7ull) ^ cc->key[1]));
                out[i] = in[i] ^ (uint8_t)(ks >> (8 * (a & 7)));
        }
}

/* ---- paging granules out of and back into the guest ---- */

static struct cc_paged *find_paged(struct cc *cc, gpa_t gpa)
{
        for (unsigned i = 0; i < cc->nr_paged; i++)
                if (gpa >= cc->paged[i].gpa && gpa - cc->paged[i].gpa < cc->granule)
                        return &cc->paged[i];
        return NULL;
}

int cc_page_out(struct cc *cc, gpa_t g)
{
        uint8_t *host = guest_mem_translate(cc->mem, g, cc->granule);
        struct cc_paged *p;

        if (!host)
                return -EFAULT;
        if (find_paged(cc, g))
                return 0;
        if (cc->nr_paged == cc->cap_paged) {
                unsigned cap = cc->cap_paged ? cc->cap_paged * 2 : 16;
                struct cc_paged *n = realloc(cc->paged, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                cc->paged = n;
                cc->cap_paged = cap;
        }
        p = &cc->paged[cc->nr_paged];
        p->gpa = g;
        p->plain = malloc(cc->granule);
        if (!p->plain)
                return -ENOMEM;
        memcpy(p->plain, host, cc->granule);
        /* The host now holds ciphertext; the guest loses the page until it faults it back. */
        cc_scramble(cc, g, p->plain, host, cc->granule);
        if (mprotect(host, cc->granule, PROT_NONE)) {
                memcpy(host, p->plain, cc->granule);
                free(p->plain);
                return -errno;
        }
        cc->nr_paged++;
        atomic_store(&cc->any_paged, true);
        cc->stats.page_outs++;
        return 0;
}

static void page_in_one(struct cc *cc, struct cc_paged *p)
{
        uint8_t *host = guest_mem_translate(cc->mem, p->gpa, cc->granule);

        if (mprotect(host, cc->granule, PROT_READ | PROT_WRITE))
                LOG_ERROR("confidential: cannot map 0x%llx back: %s", (unsigned long long)p->gpa,
                          strerror(errno));
        memcpy(host, p->plain, cc->granule);
        free(p->plain);
        *p = cc->paged[--cc->nr_paged];
        if (!cc->nr_paged)
                atomic_store(&cc->any_paged, false);
        cc->stats.page_ins++;
}

int cc_page_in_range(struct cc *cc, gpa_t gpa, uint64_t len)
{
        uint64_t end;

        if (!range_end(gpa, len, &end))
                return -EFAULT;
        for (unsigned i = 0; i < cc->nr_paged;) {
                struct cc_paged *p = &cc->paged[i];
                if (ranges_overlap(p->gpa, cc->granule, gpa, len))
                        page_in_one(cc, p); /* moves the last entry to i */
                else
                        i++;
        }
        return 0;
}

int cc_make_private(struct cc *cc, gpa_t gpa, uint64_t len)
{
        int r = cc_page_in_range(cc, gpa, len);
        return r ? r : ownership_make_private(cc->own, gpa, len);
}

int cc_make_shared(struct cc *cc, gpa_t gpa, uint64_t len)
{
        int r = cc_page_in_range(cc, gpa, len);
        return r ? r : ownership_make_shared(cc->own, gpa, len);
}

int cc_set_all(struct cc *cc, bool private_)
{
        while (cc->nr_paged)
                page_in_one(cc, &cc->paged[0]);
        return ownership_set_all(cc->own, private_);
}

int cc_zero(struct cc *cc, gpa_t gpa, uint64_t len)
{
        int r = cc_page_in_range(cc, gpa, len);
        return r ? r : guest_mem_fill(cc->mem, gpa, 0, len);
}

/* ---- the untrusted host's view ---- */

int cc_host_read(struct cc *cc, gpa_t gpa, void *buf, size_t len)
{
        uint8_t *out = buf;
        uint64_t end;
        int r = 0;

        if (!range_end(gpa, len, &end) || !guest_mem_contains(cc->mem, gpa, len))
                return -EFAULT;
        pthread_mutex_lock(&cc->lock);
        while (len && !r) {
                gpa_t g = align_down(gpa, cc->granule);
                size_t n = (size_t)(g + cc->granule - gpa);
                struct cc_paged *p;

                if (n > len)
                        n = len;
                if (!ownership_any_private(cc->own, g, cc->granule)) {
                        r = guest_mem_read(cc->mem, gpa, out, n);
                } else {
                        cc->stats.host_private_reads++;
                        if (cc->platform != CC_PLATFORM_SEV) {
                                r = cc_page_out(cc, g);
                                if (r)
                                        break;
                        }
                        p = find_paged(cc, g);
                        if (p) {
                                cc_scramble(cc, gpa, p->plain + (gpa - g), out, n);
                        } else {
                                const uint8_t *host = guest_mem_translate(cc->mem, gpa, n);
                                cc_scramble(cc, gpa, host, out, n);
                        }
                }
                gpa += n;
                out += n;
                len -= n;
        }
        pthread_mutex_unlock(&cc->lock);
        return r;
}

/* ---- the platform-call window ---- */

void cc_callwin_read(struct cc *cc, uint64_t off, uint8_t *data, uint32_t len)
{
        uint64_t v = 0;

        memset(data, 0, len);
        if ((len != 8 && len != 4) || (off & (len - 1)))
                return;
        pthread_mutex_lock(&cc->lock);
        switch (off & ~7ull) {
        case CC_CALLWIN_REG_MAGIC:
                v = CC_CALLWIN_MAGIC;
                break;
        case CC_CALLWIN_REG_PLATFORM:
                v = cc->platform;
                break;
        case CC_CALLWIN_REG_ARG0:
        case CC_CALLWIN_REG_ARG1:
        case CC_CALLWIN_REG_ARG2:
        case CC_CALLWIN_REG_ARG3:
        case CC_CALLWIN_REG_RET0:
        case CC_CALLWIN_REG_RET1:
                v = cc->regs[(off & ~7ull) / 8 - 2];
                break;
        default:
                break;
        }
        pthread_mutex_unlock(&cc->lock);
        if (len == 4)
                put_le32(data, (uint32_t)(v >> ((off & 4) * 8)));
        else
                put_le64(data, v);
}

static void do_call(struct cc *cc, uint64_t kind)
{
        cc->stats.calls++;
        if (cc->platform == CC_PLATFORM_PEF && kind == CC_CALL_POWER_UCALL) {
                pef_ucall(cc);
        } else if (cc->platform == CC_PLATFORM_S390_PV && kind == CC_CALL_S390_UVC) {
                s390_uvc(cc);
        } else if (cc->platform == CC_PLATFORM_S390_PV && kind == CC_CALL_S390_DIAG308) {
                s390_diag308(cc);
        } else {
                cc->stats.failed_calls++;
                CC_RET(cc, 0) = cc->platform == CC_PLATFORM_PEF ? (uint64_t)(int64_t)H_UNSUPPORTED
                                                                : 3; /* s390: cc 3 */
                LOG_GUEST(&cc->rl, "confidential: call kind %llu is not a %s instruction",
                          (unsigned long long)kind, names[cc->platform]);
        }
}

void cc_callwin_write(struct cc *cc, uint64_t off, const uint8_t *data, uint32_t len)
{
        uint64_t reg = off & ~7ull;
        uint64_t v;

        if ((len != 8 && len != 4) || (off & (len - 1)))
                return;
        v = len == 8 ? get_le64(data) : get_le32(data);
        pthread_mutex_lock(&cc->lock);
        if (reg >= CC_CALLWIN_REG_ARG0 && reg <= CC_CALLWIN_REG_ARG3) {
                uint64_t *r = &cc->regs[reg / 8 - 2];
                if (len == 8)
                        *r = v;
                else if (off & 4)
                        *r = (*r & 0xffffffffull) | (v << 32);
                else
                        *r = (*r & ~0xffffffffull) | v;
        } else if (reg == CC_CALLWIN_REG_CALL) {
                do_call(cc, v);
        } else {
                LOG_GUEST(&cc->rl, "confidential: write to read-only call window register 0x%llx",
                          (unsigned long long)off);
        }
        pthread_mutex_unlock(&cc->lock);
}

/* ---- vCPU exits ---- */

static bool complete_paged_access(struct cc *cc, struct kvm_run *run)
{
        gpa_t a = run->mmio.phys_addr;
        uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
        int r;

        if (!atomic_load(&cc->any_paged) || !guest_mem_contains(cc->mem, a, len))
                return false;
        pthread_mutex_lock(&cc->lock);
        if (!find_paged(cc, a) && !find_paged(cc, a + len - 1)) {
                pthread_mutex_unlock(&cc->lock);
                return false;
        }
        /* The guest touched a page the host took: bring it back (H_SVM_PAGE_IN / import)
         * and finish the access the emulator stopped at. */
        cc_page_in_range(cc, a, len);
        r = run->mmio.is_write ? guest_mem_write(cc->mem, a, run->mmio.data, len)
                               : guest_mem_read(cc->mem, a, run->mmio.data, len);
        pthread_mutex_unlock(&cc->lock);
        return r == 0;
}

bool cc_handle_exit(struct cc *cc, unsigned vcpu, int vcpu_fd, struct kvm_run *run)
{
        bool handled = false;

        (void)vcpu_fd;
        if (!cc)
                return false;
        switch (run->exit_reason) {
        case KVM_EXIT_MMIO:
                return complete_paged_access(cc, run);
        case KVM_EXIT_X86_RDMSR:
        case KVM_EXIT_X86_WRMSR:
                if (cc->platform != CC_PLATFORM_SEV)
                        return false;
                pthread_mutex_lock(&cc->lock);
                handled = sev_handle_msr(cc, vcpu, run);
                pthread_mutex_unlock(&cc->lock);
                return handled;
        case KVM_EXIT_HYPERCALL:
                if (cc->platform != CC_PLATFORM_SEV)
                        return false;
                pthread_mutex_lock(&cc->lock);
                handled = sev_handle_hypercall(cc, run);
                pthread_mutex_unlock(&cc->lock);
                return handled;
        default:
                return false;
        }
}

bool cc_handle_fault(struct cc *cc, int vcpu_fd)
{
        struct kvm_regs regs;
        struct kvm_translation tr = {0};
        bool done = false;

        if (!cc || !atomic_load(&cc->any_paged))
                return false;
        pthread_mutex_lock(&cc->lock);
        /* An instruction fetch from a paged-out granule: page that one in. Otherwise the
         * fault does not say where it was: page everything back in. */
        if (kvm_vcpu_get_regs(vcpu_fd, &regs) == 0) {
                tr.linear_address = regs.rip;
                if (kvm_vcpu_translate(vcpu_fd, &tr) == 0 && tr.valid &&
                    find_paged(cc, tr.physical_address)) {
                        cc_page_in_range(cc, tr.physical_address, 16);
                        done = true;
                }
        }
        if (!done && cc->nr_paged) {
                while (cc->nr_paged)
                        page_in_one(cc, &cc->paged[0]);
                done = true;
        }
        pthread_mutex_unlock(&cc->lock);
        return done;
}

unsigned cc_intercepted_msrs(const struct cc *cc, uint32_t *msrs, unsigned max)
{
        if (!cc || cc->platform != CC_PLATFORM_SEV || max < 1)
                return 0;
        msrs[0] = SEV_GHCB_MSR;
        return 1;
}

bool cc_wants_map_gpa_range(const struct cc *cc)
{
        return cc && cc->platform == CC_PLATFORM_SEV;
}

void cc_get_stats(struct cc *cc, struct cc_stats *out)
{
        pthread_mutex_lock(&cc->lock);
        *out = cc->stats;
        out->secure = cc->secure;
        pthread_mutex_unlock(&cc->lock);
}

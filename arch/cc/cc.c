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
        uint8_t key[32];
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
        pthread_mutex_init(&cc->call, NULL);
        pthread_mutex_init(&cc->lock, NULL);
        ratelimit_init(&cc->rl, 1000000000ull, 10);
        /* The VM's key: what the hardware generates at launch and never lets out. */
        if (getrandom(key, sizeof(key), 0) != sizeof(key)) {
                cc_destroy(cc);
                return error_set(err, -EIO, "getrandom: %s", strerror(errno));
        }
        xts_aes128_set_encrypt_key(&cc->enc, key);
        explicit_bzero(key, sizeof(key));
        /* SEV encrypts every page at launch; the others start as normal VMs. */
        r = ownership_create(mem, cfg->platform == CC_PLATFORM_SEV, &cc->own);
        if (r) {
                cc_destroy(cc);
                return error_set(err, r, "ownership map: %s", strerror(-r));
        }
        if (cfg->platform == CC_PLATFORM_SEV) {
                atomic_store(&cc->secure, true);
                CC_COUNT(cc, secure_transitions, 1);
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
                free(cc->paged[i].cipher);
        free(cc->paged);
        ownership_destroy(cc->own);
        pthread_mutex_destroy(&cc->call);
        pthread_mutex_destroy(&cc->lock);
        explicit_bzero(&cc->enc, sizeof(cc->enc));
        free(cc);
}

enum cc_platform cc_platform_of(const struct cc *cc)
{
        return cc ? cc->platform : CC_PLATFORM_NONE;
}

bool cc_secure(struct cc *cc)
{
        return cc && atomic_load(&cc->secure);
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

/* ---- the platform's cipher ---- */

/*
 * XTS-AES-128 under the VM's random key, one 4 KiB page per data unit, the tweak the page's
 * guest physical address (low 8 bytes, little endian) and `seq` (high 8 bytes): sev's memory
 * encryption has seq 0, so the host learns at most whether one 16-byte block at one address
 * held the same bytes twice, as on hardware; each pef/s390 export has a number of its own.
 * A real block cipher: no read of a known page helps with another (CC-8).
 */
static void encrypt_pages(struct cc *cc, gpa_t gpa, uint64_t seq, const uint8_t *in, uint8_t *out,
                          uint64_t len)
{
        uint8_t tweak[16];

        for (uint64_t off = 0; off < len; off += CC_PAGE) {
                put_le64(tweak, gpa + off);
                put_le64(tweak + 8, seq);
                xts_aes128_encrypt_message(&cc->enc, tweak, CC_PAGE, out + off, in + off);
        }
}

/* ---- paging granules out of and back into the guest (cc->lock) ---- */

static struct cc_paged *find_paged(struct cc *cc, gpa_t gpa)
{
        for (unsigned i = 0; i < cc->nr_paged; i++)
                if (gpa >= cc->paged[i].gpa && gpa - cc->paged[i].gpa < cc->granule)
                        return &cc->paged[i];
        return NULL;
}

static void forget_last(struct cc *cc)
{
        free(cc->paged[--cc->nr_paged].cipher);
        if (!cc->nr_paged)
                atomic_store(&cc->any_paged, false);
}

/*
 * UV_PAGE_OUT / export of granule g. The guest loses write access before the copy and all
 * access after it, and its RAM is never changed: a guest write meanwhile faults and waits for
 * cc->lock (then pages the granule back in and completes), a read sees its own data, so the
 * host's read has no effect on the guest but a delay, as on hardware.
 */
static struct cc_paged *page_out(struct cc *cc, gpa_t g)
{
        uint8_t *host = guest_mem_translate(cc->mem, g, cc->granule);
        struct cc_paged *p = find_paged(cc, g);

        if (p || !host)
                return p;
        if (cc->nr_paged == cc->cap_paged) {
                unsigned cap = cc->cap_paged ? cc->cap_paged * 2 : 16;
                struct cc_paged *n = realloc(cc->paged, cap * sizeof(*n));
                if (!n)
                        return NULL;
                cc->paged = n;
                cc->cap_paged = cap;
        }
        p = &cc->paged[cc->nr_paged];
        p->gpa = g;
        p->cipher = malloc(cc->granule);
        if (!p->cipher)
                return NULL;
        /* Listed before the guest can fault on it: the fault then finds it (after waiting
         * for the lock) instead of an access to nothing. */
        cc->nr_paged++;
        atomic_store(&cc->any_paged, true);
        if (mprotect(host, cc->granule, PROT_READ)) {
                forget_last(cc);
                return NULL;
        }
        encrypt_pages(cc, g, ++cc->exports, host, p->cipher, cc->granule);
        if (mprotect(host, cc->granule, PROT_NONE)) {
                if (mprotect(host, cc->granule, PROT_READ | PROT_WRITE))
                        LOG_ERROR("confidential: cannot map 0x%llx back: %s", (unsigned long long)g,
                                  strerror(errno));
                forget_last(cc);
                return NULL;
        }
        CC_COUNT(cc, page_outs, 1);
        return p;
}

static void page_in_one(struct cc *cc, struct cc_paged *p)
{
        uint8_t *host = guest_mem_translate(cc->mem, p->gpa, cc->granule);

        /* H_SVM_PAGE_IN / import: the guest's own bytes, untouched while it was out. */
        if (mprotect(host, cc->granule, PROT_READ | PROT_WRITE))
                LOG_ERROR("confidential: cannot map 0x%llx back: %s", (unsigned long long)p->gpa,
                          strerror(errno));
        free(p->cipher);
        *p = cc->paged[--cc->nr_paged];
        if (!cc->nr_paged)
                atomic_store(&cc->any_paged, false);
        CC_COUNT(cc, page_ins, 1);
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

static void page_in_all(struct cc *cc)
{
        while (cc->nr_paged)
                page_in_one(cc, &cc->paged[0]);
}

/* ---- conversions (cc->call held) ---- */

int cc_for_each_run(struct cc *cc, gpa_t gpa, uint64_t len, bool private_,
                    int (*fn)(struct cc *cc, gpa_t gpa, uint64_t len, void *opaque), void *opaque)
{
        uint64_t g = cc->granule;

        for (uint64_t off = 0; off < len;) {
                uint64_t n = 0;

                while (off + n < len &&
                       ownership_any_private(cc->own, gpa + off + n, g) == private_)
                        n += g;
                if (n) {
                        int r = fn(cc, gpa + off, n, opaque);
                        if (r)
                                return r;
                        off += n;
                } else {
                        off += g;
                }
        }
        return 0;
}

static int encrypt_run(struct cc *cc, gpa_t gpa, uint64_t len, void *opaque)
{
        uint8_t *host = guest_mem_translate(cc->mem, gpa, len);

        (void)opaque;
        encrypt_pages(cc, gpa, 0, host, host, len);
        return 0;
}

/* The ownership map's refusals, for ranges of whole platform granules. */
static int check_range(const struct cc *cc, gpa_t gpa, uint64_t len)
{
        if (!len || !is_aligned(gpa, cc->granule) || !is_aligned(len, cc->granule))
                return -EINVAL;
        return guest_mem_contains(cc->mem, gpa, len) ? 0 : -EFAULT;
}

int cc_make_shared(struct cc *cc, gpa_t gpa, uint64_t len, enum cc_content what)
{
        int r = check_range(cc, gpa, len);

        if (r)
                return r;
        pthread_mutex_lock(&cc->lock);
        r = cc_page_in_range(cc, gpa, len);
        /* While the granules are still private: the host sees the result only. */
        if (!r && what == CC_ZERO)
                r = guest_mem_fill(cc->mem, gpa, 0, len);
        else if (!r && what == CC_CRYPT)
                r = cc_for_each_run(cc, gpa, len, true, encrypt_run, NULL);
        if (!r)
                r = ownership_make_shared(cc->own, gpa, len);
        pthread_mutex_unlock(&cc->lock);
        return r;
}

/* Transitions one run to private; the lock is not held while it waits. */
static int private_run(struct cc *cc, gpa_t gpa, uint64_t len, void *opaque)
{
        int r;

        (void)opaque;
        pthread_mutex_lock(&cc->lock);
        cc->pending_gpa = gpa;
        cc->pending_len = len;
        pthread_mutex_unlock(&cc->lock);
        /* New host accesses are refused from here on, the ones under way are waited for
         * (a completion the VMM thread reaps). */
        r = ownership_make_private(cc->own, gpa, len);
        pthread_mutex_lock(&cc->lock);
        cc->pending_len = 0;
        pthread_mutex_unlock(&cc->lock);
        return r;
}

int cc_make_private(struct cc *cc, gpa_t gpa, uint64_t len, enum cc_content what)
{
        int r = check_range(cc, gpa, len);

        if (r)
                return r;
        /* Only what is shared changes owner; granules already private keep their bytes
         * (and may stay paged out). */
        r = cc_for_each_run(cc, gpa, len, false, private_run, NULL);
        /* Quiesced: no device write lands after this. */
        if (!r && what == CC_ZERO) {
                pthread_mutex_lock(&cc->lock);
                r = cc_page_in_range(cc, gpa, len);
                if (!r)
                        r = guest_mem_fill(cc->mem, gpa, 0, len);
                pthread_mutex_unlock(&cc->lock);
        }
        return r;
}

int cc_set_all(struct cc *cc, bool private_)
{
        int r;

        pthread_mutex_lock(&cc->lock);
        page_in_all(cc);
        if (!private_) {
                r = ownership_set_all(cc->own, false);
                pthread_mutex_unlock(&cc->lock);
                return r;
        }
        cc->pending_gpa = 0;
        cc->pending_len = UINT64_MAX;
        pthread_mutex_unlock(&cc->lock);
        r = ownership_set_all(cc->own, true);
        pthread_mutex_lock(&cc->lock);
        cc->pending_len = 0;
        pthread_mutex_unlock(&cc->lock);
        return r;
}

/* The trusted path, with the range paged in and no page-out meanwhile. */
static int trusted_access(struct cc *cc, gpa_t gpa, void *buf, size_t len, bool write)
{
        int r;

        pthread_mutex_lock(&cc->lock);
        r = cc_page_in_range(cc, gpa, len);
        if (!r)
                r = write ? guest_mem_write(cc->mem, gpa, buf, len)
                          : guest_mem_read(cc->mem, gpa, buf, len);
        pthread_mutex_unlock(&cc->lock);
        return r;
}

int cc_trusted_read(struct cc *cc, gpa_t gpa, void *buf, size_t len)
{
        return trusted_access(cc, gpa, buf, len, false);
}

int cc_trusted_write(struct cc *cc, gpa_t gpa, const void *buf, size_t len)
{
        return trusted_access(cc, gpa, (void *)buf, len, true);
}

/* ---- the untrusted host's view ---- */

static bool pending(const struct cc *cc, gpa_t g, uint64_t len)
{
        return cc->pending_len && (cc->pending_len == UINT64_MAX ||
                                   ranges_overlap(cc->pending_gpa, cc->pending_len, g, len));
}

/* What the host sees of the private page at `page` (4 KiB): sev, the memory's ciphertext;
 * pef/s390, the export of its granule. A granule whose transition to private still waits
 * for host accesses cannot be taken from the guest yet (a device may be writing it): the
 * host gets an export of it that leaves it in place. */
static int private_view(struct cc *cc, gpa_t page, uint8_t *out)
{
        gpa_t g = align_down(page, cc->granule);
        const uint8_t *host = guest_mem_translate(cc->mem, page, CC_PAGE);
        struct cc_paged *p;

        if (cc->platform == CC_PLATFORM_SEV) {
                encrypt_pages(cc, page, 0, host, out, CC_PAGE);
                return 0;
        }
        p = find_paged(cc, g);
        if (!p && pending(cc, g, cc->granule)) {
                encrypt_pages(cc, page, ++cc->exports, host, out, CC_PAGE);
                return 0;
        }
        if (!p)
                p = page_out(cc, g);
        if (!p)
                return -ENOMEM;
        memcpy(out, p->cipher + (page - g), CC_PAGE);
        return 0;
}

int cc_host_read(struct cc *cc, gpa_t gpa, void *buf, size_t len)
{
        uint8_t *out = buf, view[CC_PAGE];
        uint64_t end;
        int r = 0;

        if (!range_end(gpa, len, &end) || !guest_mem_contains(cc->mem, gpa, len))
                return -EFAULT;
        pthread_mutex_lock(&cc->lock);
        while (len && !r) {
                gpa_t page = align_down(gpa, CC_PAGE);
                size_t n = (size_t)(page + CC_PAGE - gpa);

                if (n > len)
                        n = len;
                if (!ownership_any_private(cc->own, page, CC_PAGE)) {
                        r = guest_mem_read_snapshot(cc->mem, gpa, out, n);
                } else {
                        CC_COUNT(cc, host_private_reads, 1);
                        r = private_view(cc, page, view);
                        if (!r)
                                memcpy(out, view + (gpa - page), n);
                }
                gpa += n;
                out += n;
                len -= n;
        }
        pthread_mutex_unlock(&cc->lock);
        explicit_bzero(view, sizeof(view));
        return r;
}

/* ---- the platform-call window ---- */

void cc_callwin_read(struct cc *cc, uint64_t off, uint8_t *data, uint32_t len)
{
        uint64_t v = 0;

        memset(data, 0, len);
        if ((len != 8 && len != 4) || (off & (len - 1)))
                return;
        pthread_mutex_lock(&cc->call);
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
        pthread_mutex_unlock(&cc->call);
        if (len == 4)
                put_le32(data, (uint32_t)(v >> ((off & 4) * 8)));
        else
                put_le64(data, v);
}

static void do_call(struct cc *cc, uint64_t kind)
{
        CC_COUNT(cc, calls, 1);
        if (cc->platform == CC_PLATFORM_PEF && kind == CC_CALL_POWER_UCALL) {
                pef_ucall(cc);
        } else if (cc->platform == CC_PLATFORM_S390_PV && kind == CC_CALL_S390_UVC) {
                s390_uvc(cc);
        } else if (cc->platform == CC_PLATFORM_S390_PV && kind == CC_CALL_S390_DIAG308) {
                s390_diag308(cc);
        } else {
                CC_COUNT(cc, failed_calls, 1);
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
        pthread_mutex_lock(&cc->call);
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
        pthread_mutex_unlock(&cc->call);
}

/* ---- vCPU exits ---- */

static bool complete_paged_access(struct cc *cc, struct kvm_run *run)
{
        gpa_t a = run->mmio.phys_addr;
        uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
        int r;

        /* KVM exits on RAM only when the page was not accessible: the host took it (another
         * vCPU may have brought it back since, and a write must not be lost then either). */
        if (!guest_mem_contains(cc->mem, a, len))
                return false;
        pthread_mutex_lock(&cc->lock);
        /* Bring it back (H_SVM_PAGE_IN / import) and finish the access the emulator stopped
         * at. */
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
                pthread_mutex_lock(&cc->call);
                handled = sev_handle_msr(cc, vcpu, run);
                pthread_mutex_unlock(&cc->call);
                return handled;
        case KVM_EXIT_HYPERCALL:
                if (cc->platform != CC_PLATFORM_SEV)
                        return false;
                pthread_mutex_lock(&cc->call);
                handled = sev_handle_hypercall(cc, run);
                pthread_mutex_unlock(&cc->call);
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
                page_in_all(cc);
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

/* Lock-free: a metrics flush on the VMM thread never waits for a guest's transition. */
void cc_get_stats(struct cc *cc, struct cc_stats *out)
{
        const struct cc_counters *c = &cc->count;

        *out = (struct cc_stats){.secure = atomic_load(&cc->secure),
                                 .calls = atomic_load(&c->calls),
                                 .failed_calls = atomic_load(&c->failed_calls),
                                 .shared = atomic_load(&c->shared),
                                 .unshared = atomic_load(&c->unshared),
                                 .secure_transitions = atomic_load(&c->secure_transitions),
                                 .page_outs = atomic_load(&c->page_outs),
                                 .page_ins = atomic_load(&c->page_ins),
                                 .host_private_reads = atomic_load(&c->host_private_reads)};
}

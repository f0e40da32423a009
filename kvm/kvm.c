#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KVM_TSS_ADDR      0xfffbd000ull
#define KVM_IDENTITY_ADDR 0xfffbc000ull

static const struct {
        int cap;
        const char *name;
} required_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
    {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
    {KVM_CAP_SYNC_MMU, "KVM_CAP_SYNC_MMU"},
};

static bool skipped(const struct kvm_cap_checks *checks, int cap)
{
        for (unsigned i = 0; checks && i < checks->nr_skip; i++)
                if (checks->skip[i] == (uint32_t)cap)
                        return true;
        return false;
}

static int check_caps(struct kvm *kvm, const char *path, const struct kvm_cap_checks *checks,
                      struct error *err)
{
        int v = ioctl(kvm->sys_fd, KVM_GET_API_VERSION, 0);

        if (v < 0)
                return error_set(err, -ENODEV, "%s is not a KVM device (KVM_GET_API_VERSION: %s)",
                                 path, strerror(errno));
        if (v != KVM_API_VERSION)
                return error_set(err, -ENOTSUP, "KVM API version is %d, expected %d", v,
                                 KVM_API_VERSION);
        for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++)
                if (!skipped(checks, required_caps[i].cap) &&
                    kvm_check_extension(kvm->sys_fd, required_caps[i].cap) <= 0)
                        return error_set(err, -ENOTSUP, "KVM lacks the required capability %s",
                                         required_caps[i].name);
        for (unsigned i = 0; checks && i < checks->nr_require; i++)
                if (kvm_check_extension(kvm->sys_fd, (int)checks->require[i]) <= 0)
                        return error_config(err,
                                            "Missing KVM capabilities: %#x (capability %u, which "
                                            "the CPU template's kvm_capabilities require)",
                                            checks->require[i], checks->require[i]);
        v = kvm_check_extension(kvm->sys_fd, KVM_CAP_MAX_VCPUS);
        if (v <= 0)
                v = kvm_check_extension(kvm->sys_fd, KVM_CAP_NR_VCPUS);
        kvm->max_vcpus = v > 0 ? (unsigned)v : 4;
        return 0;
}

static int get_cpuid(struct kvm *kvm, struct error *err)
{
        /* Grow until KVM stops answering E2BIG; 128 covers current hosts in one call. */
        for (unsigned n = 128; n <= 4096; n *= 2) {
                struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
                if (!c)
                        return error_set(err, -ENOMEM, "out of memory");
                c->nent = n;
                if (ioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
                        kvm->supported_cpuid = c;
                        return 0;
                }
                free(c);
                if (errno != E2BIG)
                        return error_set(err, -errno, "KVM_GET_SUPPORTED_CPUID: %s",
                                         strerror(errno));
        }
        return error_set(err, -E2BIG, "KVM_GET_SUPPORTED_CPUID: table too large");
}

static int get_msr_list(struct kvm *kvm, struct error *err)
{
        struct kvm_msr_list probe = {.nmsrs = 0};
        struct kvm_msr_list *l;

        if (ioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) && errno != E2BIG)
                return error_set(err, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
        l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
        if (!l)
                return error_set(err, -ENOMEM, "out of memory");
        l->nmsrs = probe.nmsrs;
        if (ioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, l)) {
                free(l);
                return error_set(err, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
        }
        kvm->msr_list = l;
        return 0;
}

int kvm_check_extension(int sys_fd, int cap)
{
        int r = ioctl(sys_fd, KVM_CHECK_EXTENSION, cap);

        return r < 0 ? -errno : r;
}

int kvm_open(const char *path, const struct kvm_cap_checks *checks, struct error *err,
             struct kvm **out)
{
        struct kvm *kvm = calloc(1, sizeof(*kvm));
        int r;

        if (!kvm)
                return error_set(err, -ENOMEM, "out of memory");
        kvm->vm_fd = -1;
        kvm->sys_fd = open(path, O_RDWR | O_CLOEXEC);
        if (kvm->sys_fd < 0) {
                r = error_set(err, -errno, "cannot open %s: %s%s", path, strerror(errno),
                              errno == EACCES ? " (add your user to the kvm group)" : "");
                free(kvm);
                return r;
        }
        r = check_caps(kvm, path, checks, err);
        if (!r)
                r = get_cpuid(kvm, err);
        if (!r)
                r = get_msr_list(kvm, err);
        if (!r) {
                kvm->run_size = ioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
                if (kvm->run_size < (int)sizeof(struct kvm_run))
                        r = error_set(err, -errno, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        }
        if (!r) {
                kvm->vm_fd = ioctl(kvm->sys_fd, KVM_CREATE_VM, 0);
                if (kvm->vm_fd < 0)
                        r = error_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
        }
        if (r) {
                kvm_close(kvm);
                return r;
        }
        *out = kvm;
        return 0;
}

void kvm_close(struct kvm *kvm)
{
        if (!kvm)
                return;
        if (kvm->vm_fd >= 0)
                close(kvm->vm_fd);
        close(kvm->sys_fd);
        free(kvm->supported_cpuid);
        free(kvm->msr_list);
        free(kvm);
}

static int create_pit(struct kvm *kvm, struct error *err)
{
        struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

        if (ioctl(kvm->vm_fd, KVM_CREATE_PIT2, &pit))
                return error_set(err, -errno, "KVM_CREATE_PIT2: %s", strerror(errno));
        kvm->has_pit = true;
        return 0;
}

int kvm_create_platform(struct kvm *kvm, bool pit, struct error *err)
{
        uint64_t identity = KVM_IDENTITY_ADDR;

        /* Intel VMX needs these pages for real-mode emulation; they sit in the MMIO hole. */
        if (ioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity))
                return error_set(err, -errno, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        if (ioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR))
                return error_set(err, -errno, "KVM_SET_TSS_ADDR: %s", strerror(errno));
        if (ioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, 0))
                return error_set(err, -errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
        /* The PIT only if asked: closing a VM that has one waits 12-30 ms here (its worker
         * thread and grace periods), and a Linux guest on KVM with the TSC-deadline timer
         * and ARAT (both in the CPUID this VMM gives) never uses it. */
        return pit ? create_pit(kvm, err) : 0;
}

int kvm_map_memory(struct kvm *kvm, const struct guest_mem *mem, bool log_dirty, struct error *err)
{
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region r = guest_mem_region_get(mem, i);
                struct kvm_userspace_memory_region slot = {
                    .slot = i,
                    .flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
                    .guest_phys_addr = r.gpa,
                    .memory_size = r.size,
                    .userspace_addr = (uint64_t)(uintptr_t)r.host,
                };
                if (ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot))
                        return error_set(err, -errno,
                                         "KVM_SET_USER_MEMORY_REGION slot %u (0x%llx+0x%llx): %s",
                                         i, (unsigned long long)r.gpa, (unsigned long long)r.size,
                                         strerror(errno));
        }
        kvm->nr_slots = guest_mem_region_count(mem);
        return 0;
}

int kvm_map_window(struct kvm *kvm, uint64_t gpa, uint64_t size, void *host, bool read_only,
                   struct error *err)
{
        struct kvm_userspace_memory_region slot = {
            .slot = kvm->nr_slots,
            .flags = read_only ? KVM_MEM_READONLY : 0,
            .guest_phys_addr = gpa,
            .memory_size = size,
            .userspace_addr = (uint64_t)(uintptr_t)host,
        };

        if (read_only && kvm_check_extension(kvm->sys_fd, KVM_CAP_READONLY_MEM) <= 0)
                return error_set(err, -ENOTSUP,
                                 "this KVM cannot map read-only memory "
                                 "(KVM_CAP_READONLY_MEM)");
        if (ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot))
                return error_set(
                    err, -errno, "KVM_SET_USER_MEMORY_REGION slot %u (0x%llx+0x%llx): %s",
                    slot.slot, (unsigned long long)gpa, (unsigned long long)size, strerror(errno));
        kvm->nr_slots++;
        return 0;
}

int kvm_irq_line(struct kvm *kvm, uint32_t gsi, bool level)
{
        struct kvm_irq_level l = {.irq = gsi, .level = level};
        return ioctl(kvm->vm_fd, KVM_IRQ_LINE, &l) ? -errno : 0;
}

int kvm_irqfd(struct kvm *kvm, int fd, uint32_t gsi, struct error *err)
{
        struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};

        return ioctl(kvm->vm_fd, KVM_IRQFD, &irqfd)
                   ? error_set(err, -errno, "KVM_IRQFD gsi %u: %s", gsi, strerror(errno))
                   : 0;
}

int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch,
                  struct error *err)
{
        struct kvm_ioeventfd io = {
            .datamatch = datamatch,
            .addr = addr,
            .len = len,
            .fd = fd,
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };

        return ioctl(kvm->vm_fd, KVM_IOEVENTFD, &io)
                   ? error_set(err, -errno, "KVM_IOEVENTFD 0x%llx: %s", (unsigned long long)addr,
                               strerror(errno))
                   : 0;
}

static int enable_cap(struct kvm *kvm, uint32_t cap, uint64_t arg0, const char *name,
                      struct error *err)
{
        struct kvm_enable_cap ec = {.cap = cap, .args = {arg0}};

        if (kvm_check_extension(kvm->sys_fd, cap) <= 0)
                return error_set(err, -ENOTSUP, "KVM lacks the capability %s", name);
        if (ioctl(kvm->vm_fd, KVM_ENABLE_CAP, &ec))
                return error_set(err, -errno, "KVM_ENABLE_CAP %s: %s", name, strerror(errno));
        return 0;
}

int kvm_intercept_msrs(struct kvm *kvm, const uint32_t *msrs, unsigned n, struct error *err)
{
        /* A filter bit of 0 denies the access in the kernel, which then exits. */
        static const uint8_t deny = 0;
        struct kvm_msr_filter f = {.flags = KVM_MSR_FILTER_DEFAULT_ALLOW};
        int r;

        if (n > KVM_MSR_FILTER_MAX_RANGES)
                return error_set(err, -E2BIG, "too many intercepted MSRs");
        r = enable_cap(kvm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER,
                       "KVM_CAP_X86_USER_SPACE_MSR", err);
        if (r)
                return r;
        for (unsigned i = 0; i < n; i++)
                f.ranges[i] = (struct kvm_msr_filter_range){
                    .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
                    .nmsrs = 1,
                    .base = msrs[i],
                    .bitmap = (uint8_t *)&deny,
                };
        if (ioctl(kvm->vm_fd, KVM_X86_SET_MSR_FILTER, &f))
                return error_set(err, -errno, "KVM_X86_SET_MSR_FILTER: %s", strerror(errno));
        return 0;
}

int kvm_exit_on_hypercalls(struct kvm *kvm, uint64_t mask, struct error *err)
{
        return enable_cap(kvm, KVM_CAP_EXIT_HYPERCALL, mask, "KVM_CAP_EXIT_HYPERCALL", err);
}

int kvm_create_vcpu(struct kvm *kvm, unsigned id, int *fd_out, struct kvm_run **run_out,
                    struct error *err)
{
        int fd = ioctl(kvm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
        void *run;

        if (fd < 0)
                return error_set(err, -errno, "KVM_CREATE_VCPU %u: %s", id, strerror(errno));
        run = mmap(NULL, (size_t)kvm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (run == MAP_FAILED) {
                int r = error_set(err, -errno, "mmap kvm_run of vcpu %u: %s", id, strerror(errno));
                close(fd);
                return r;
        }
        *fd_out = fd;
        *run_out = run;
        return 0;
}

int kvm_take_dirty_log(struct kvm *kvm, const struct guest_mem *mem, uint64_t *bitmap,
                       struct error *err)
{
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(mem, i);
                uint64_t pages = reg.size / GUEST_MEM_PAGE, base = reg.offset / GUEST_MEM_PAGE;
                size_t words = (size_t)((pages + 63) / 64);
                uint64_t *log = calloc(words ? words : 1, sizeof(uint64_t));
                struct kvm_dirty_log dl = {.slot = i, .dirty_bitmap = log};

                if (!log)
                        return error_set(err, -ENOMEM, "out of memory");
                if (ioctl(kvm->vm_fd, KVM_GET_DIRTY_LOG, &dl)) {
                        int r = error_set(err, -errno, "KVM_GET_DIRTY_LOG slot %u: %s", i,
                                          strerror(errno));
                        free(log);
                        return r;
                }
                for (size_t w = 0; w < words; w++) {
                        for (uint64_t bits = log[w]; bits; bits &= bits - 1) {
                                uint64_t p = base + w * 64 + (uint64_t)__builtin_ctzll(bits);
                                bitmap[p / 64] |= 1ull << (p % 64);
                        }
                }
                free(log);
        }
        return 0;
}

/* ---- VM-wide state ---- */

/* 1: the PIT always follows the irqchip; 2: a u32 says whether a PIT follows. */
#define VM_STATE_VERSION 2

int kvm_save_vm_state(struct kvm *kvm, struct snapbuf_writer *w, struct error *err)
{
        struct kvm_irqchip chip[3];
        struct kvm_pit_state2 pit;
        struct kvm_clock_data clock;

        for (unsigned i = 0; i < 3; i++) {
                memset(&chip[i], 0, sizeof(chip[i]));
                chip[i].chip_id = i; /* PIC master, PIC slave, IOAPIC */
                if (ioctl(kvm->vm_fd, KVM_GET_IRQCHIP, &chip[i]))
                        return error_set(err, -errno, "KVM_GET_IRQCHIP %u: %s", i, strerror(errno));
        }
        if (kvm->has_pit && ioctl(kvm->vm_fd, KVM_GET_PIT2, &pit))
                return error_set(err, -errno, "KVM_GET_PIT2: %s", strerror(errno));
        memset(&clock, 0, sizeof(clock));
        if (ioctl(kvm->vm_fd, KVM_GET_CLOCK, &clock))
                return error_set(err, -errno, "KVM_GET_CLOCK: %s", strerror(errno));
        /* KVM pairs no wall-clock time with its clock unless the host's clocksource is the
         * TSC (a nested host's often is not): the VMM's own reading, microseconds later,
         * for a load's clock_realtime (kvm_clock_for_load). The flag stays clear. */
        if (!(clock.flags & KVM_CLOCK_REALTIME)) {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                clock.realtime = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
        snapbuf_put_u32(w, VM_STATE_VERSION);
        for (unsigned i = 0; i < 3; i++)
                snapbuf_put_blob(w, &chip[i], sizeof(chip[i]));
        snapbuf_put_u32(w, kvm->has_pit);
        if (kvm->has_pit)
                snapbuf_put_blob(w, &pit, sizeof(pit));
        snapbuf_put_blob(w, &clock, sizeof(clock));
        return 0;
}

int kvm_restore_vm_state(struct kvm *kvm, struct snapbuf_reader *r, struct kvm_clock_data *clock,
                         struct error *err)
{
        uint32_t version = snapbuf_get_u32(r, "VM state version"), has_pit = 1;
        struct kvm_irqchip chip[3];
        struct kvm_pit_state2 pit;

        if (snapbuf_ok(r) && version != 1 && version != VM_STATE_VERSION)
                snapbuf_fail(r, "VM state", "unknown version");
        for (unsigned i = 0; i < 3; i++)
                snapbuf_get_blob(r, &chip[i], sizeof(chip[i]), "irqchip state");
        if (version >= 2)
                has_pit = snapbuf_get_u32(r, "PIT present");
        if (snapbuf_ok(r) && has_pit > 1)
                snapbuf_fail(r, "PIT present", "neither 0 nor 1");
        if (has_pit)
                snapbuf_get_blob(r, &pit, sizeof(pit), "PIT state");
        snapbuf_get_blob(r, clock, sizeof(*clock), "KVM clock");
        for (unsigned i = 0; snapbuf_ok(r) && i < 3; i++)
                if (chip[i].chip_id != i)
                        snapbuf_fail(r, "irqchip state", "chips out of order");
        if (!snapbuf_expect_end(r, "VM state"))
                return error_config(err, "%s", r->err);
        for (unsigned i = 0; i < 3; i++)
                if (ioctl(kvm->vm_fd, KVM_SET_IRQCHIP, &chip[i]))
                        return error_set(err, -errno, "KVM_SET_IRQCHIP %u: %s", i, strerror(errno));
        if (!has_pit)
                return 0;
        /* The snapshot's VM had a PIT (every VM did before it became optional): its guest may
         * count on it, so this one gets one too, whatever the configuration says. */
        if (!kvm->has_pit) {
                int ret = create_pit(kvm, err);

                if (ret)
                        return ret;
        }
        if (ioctl(kvm->vm_fd, KVM_SET_PIT2, &pit))
                return error_set(err, -errno, "KVM_SET_PIT2: %s", strerror(errno));
        return 0;
}

bool kvm_vm_state_has_pit(struct snapbuf_reader *r)
{
        uint32_t version = snapbuf_get_u32(r, "VM state version");
        struct kvm_irqchip chip;

        for (unsigned i = 0; i < 3; i++)
                snapbuf_get_blob(r, &chip, sizeof(chip), "irqchip state");
        if (version == 1)
                return snapbuf_ok(r);
        return version == VM_STATE_VERSION && snapbuf_get_u32(r, "PIT present") == 1 &&
               snapbuf_ok(r);
}

struct kvm_clock_data kvm_clock_for_load(const struct kvm_clock_data *saved, bool realtime,
                                         uint64_t now_ns)
{
        struct kvm_clock_data c = {.clock = saved->clock};

        if (!realtime || !saved->realtime)
                return c;
        if (saved->flags & KVM_CLOCK_REALTIME) {
                c.flags = KVM_CLOCK_REALTIME;
                c.realtime = saved->realtime;
        } else if (now_ns > saved->realtime) {
                c.clock += now_ns - saved->realtime;
        }
        return c;
}

int kvm_set_clock(struct kvm *kvm, const struct kvm_clock_data *clock, struct error *err)
{
        struct kvm_clock_data c = *clock;

        if (ioctl(kvm->vm_fd, KVM_SET_CLOCK, &c))
                return error_set(err, -errno, "KVM_SET_CLOCK: %s", strerror(errno));
        return 0;
}

/*
 * The KVM layer (with kvm_vcpu.h, a vCPU's ioctls): nothing above it calls ioctl on KVM.
 * A thin wrapper over /dev/kvm and one VM file descriptor: opens KVM, checks the API
 * version and every capability this VMM relies on (naming the missing one), and creates
 * the in-kernel irqchip, PIT, memory slots and vCPU file descriptors.
 */
#ifndef KVM_KVM_H
#define KVM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/snapbuf.h"
#include "common/util.h"
#include "memory/guest_mem.h"

struct kvm {
        int sys_fd;
        int vm_fd;
        int run_size;       /* mmap size of struct kvm_run */
        unsigned max_vcpus; /* KVM_CAP_MAX_VCPUS */
        bool has_pit;       /* the in-kernel PIT exists (KVM_CREATE_PIT2) */
        struct kvm_cpuid2 *supported_cpuid;
        struct kvm_msr_list *msr_list;
        unsigned nr_slots; /* memory slots in use: RAM's, then windows' */
};

/* KVM_CHECK_EXTENSION on /dev/kvm: > 0 when KVM has the capability (some answer a value: a
 * count, a size), 0 when it has not, -errno when the question fails. */
int kvm_check_extension(int sys_fd, int cap);

/* Capabilities checked beyond this VMM's own list, or left out of it: a CPU template's
 * kvm_capabilities ("171": also required; "!56": not checked, as Firecracker's templates
 * remove a check). */
#define KVM_MAX_CAP_CHECKS 64
struct kvm_cap_checks {
        unsigned nr_require, nr_skip;
        uint32_t require[KVM_MAX_CAP_CHECKS];
        uint32_t skip[KVM_MAX_CAP_CHECKS];
};

/* path is normally "/dev/kvm"; checks may be NULL. */
int kvm_open(const char *path, const struct kvm_cap_checks *checks, struct error *err,
             struct kvm **out) MUST_CHECK;
void kvm_close(struct kvm *kvm);

/* TSS and identity-map pages, in-kernel PIC/IOAPIC/LAPIC, and the PIT if asked (pit). */
int kvm_create_platform(struct kvm *kvm, bool pit, struct error *err) MUST_CHECK;
/* Registers every RAM region of `mem` as a memory slot (slot i = region i); log_dirty turns
 * on KVM's dirty page log for them (KVM_MEM_LOG_DIRTY_PAGES). */
int kvm_map_memory(struct kvm *kvm, const struct guest_mem *mem, bool log_dirty,
                   struct error *err) MUST_CHECK;
/* Adds a memory slot (the next free one) mapping size bytes at host to gpa: a window that is
 * no RAM (a virtio-pmem file). read_only: KVM_MEM_READONLY, guest writes exit as MMIO. */
int kvm_map_window(struct kvm *kvm, uint64_t gpa, uint64_t size, void *host, bool read_only,
                   struct error *err) MUST_CHECK;
/* ORs the pages vCPUs wrote since the last call into bitmap (guest_mem's layout: bit n =
 * backing offset n * 4 KiB) and clears KVM's log. */
int kvm_take_dirty_log(struct kvm *kvm, const struct guest_mem *mem, uint64_t *bitmap,
                       struct error *err) MUST_CHECK;

/* Snapshots of the VM-wide state: the in-kernel irqchip (both PICs and the IOAPIC), the PIT if
 * the VM has one, and the KVM clock. Restore sets the irqchip and the PIT (creating it if the
 * snapshot has one and this VM has not) and returns the clock, which the caller sets once
 * the vCPUs are restored (kvm_set_clock). */
int kvm_save_vm_state(struct kvm *kvm, struct snapbuf_writer *w, struct error *err) MUST_CHECK;
int kvm_restore_vm_state(struct kvm *kvm, struct snapbuf_reader *r, struct kvm_clock_data *clock,
                         struct error *err) MUST_CHECK;
/* --describe-snapshot: whether a saved VM state has a PIT; false if it is malformed. */
bool kvm_vm_state_has_pit(struct snapbuf_reader *r);
/* The clock a load sets, from the saved one: where it stopped, or with realtime moved on by
 * the wall-clock time since it was saved (now_ns: CLOCK_REALTIME now). KVM pairs its clock
 * with the host's wall-clock time (KVM_CLOCK_REALTIME) only on a host whose clocksource is
 * the TSC, and then moves it on itself at KVM_SET_CLOCK; elsewhere the save pairs it with
 * the VMM's own reading (kvm_save_vm_state), and the clock is moved on here. A saved clock
 * with no wall-clock time (a snapshot from before the VMM paired one) resumes where it
 * stopped. */
struct kvm_clock_data kvm_clock_for_load(const struct kvm_clock_data *saved, bool realtime,
                                         uint64_t now_ns);
/* KVM_SET_CLOCK: the clock kvm_clock_for_load made. */
int kvm_set_clock(struct kvm *kvm, const struct kvm_clock_data *clock,
                  struct error *err) MUST_CHECK;
/* Drives an interrupt line of the in-kernel irqchip (PIC and IOAPIC pin `gsi`). */
int kvm_irq_line(struct kvm *kvm, uint32_t gsi, bool level);
/* Routes writes to the eventfd into edges on `gsi`. */
int kvm_irqfd(struct kvm *kvm, int fd, uint32_t gsi, struct error *err) MUST_CHECK;
/* Turns guest writes of `datamatch` (len bytes) at MMIO `addr` into eventfd signals. */
int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch,
                  struct error *err) MUST_CHECK;
/* Sends guest accesses to these MSRs to user space (KVM_EXIT_X86_RDMSR/WRMSR). */
int kvm_intercept_msrs(struct kvm *kvm, const uint32_t *msrs, unsigned n,
                       struct error *err) MUST_CHECK;
/* Forwards these hypercalls (bit n = hypercall n) as KVM_EXIT_HYPERCALL. */
int kvm_exit_on_hypercalls(struct kvm *kvm, uint64_t mask, struct error *err) MUST_CHECK;
/* Creates vCPU `id` and maps its kvm_run page. */
int kvm_create_vcpu(struct kvm *kvm, unsigned id, int *fd_out, struct kvm_run **run_out,
                    struct error *err) MUST_CHECK;

#endif

/*
 * One vCPU and its thread: runs KVM_RUN, dispatches port and MMIO exits to the buses, and
 * stops at a safe point (between exits, after the previous exit's data was handed back to
 * KVM) when the VMM pauses or stops it.
 *
 * Kicking uses a signal the vCPU thread keeps blocked except inside KVM_RUN
 * (KVM_SET_SIGNAL_MASK): a pending kick makes KVM_RUN return EINTR and is then drained, so
 * no signal handler is ever installed (the VMM can be embedded as a library).
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"
#include "devices/bus.h"
#include "kvm/kvm.h"

enum vcpu_stop_reason {
        VCPU_STOP_RESET,    /* guest reset or triple fault: a clean end (exit code 0) */
        VCPU_STOP_SHUTDOWN, /* guest powered off (exit code 0) */
        VCPU_STOP_ERROR,    /* emulation failure or KVM error (exit code 1) */
};

struct vcpu_env {
        struct bus *pio;
        struct bus *mmio;
        /* Called on the vCPU thread when the guest ends the VM; the vCPU then parks. */
        void (*request_stop)(void *opaque, unsigned index, enum vcpu_stop_reason why);
        void *opaque;
        /* The confidential platform's share of exits (NULL: none): port/MMIO/MSR/hypercall
         * exits it owns, and faults it can repair (a guest touching a page the host paged
         * out). Both return true when the vCPU may go on. */
        bool (*platform_exit)(void *opaque, unsigned index, int fd, struct kvm_run *run);
        bool (*platform_fault)(void *opaque, int fd);
        void *platform_opaque;
        /* Runs first on the vCPU thread, before it touches the guest (the executable's
         * seccomp filter, vmm/sandbox.h); NULL: none. Nonzero ends the thread and fails
         * vcpu_start. Gets opaque, like request_stop. */
        int (*thread_init)(void *opaque, unsigned index);
};

/* Counters in Firecracker's naming (vcpu.exit_io_in, ...), updated by the vCPU thread. */
struct vcpu_stats {
        atomic_uint_fast64_t exit_io_in;
        atomic_uint_fast64_t exit_io_out;
        atomic_uint_fast64_t exit_mmio_read;
        atomic_uint_fast64_t exit_mmio_write;
        atomic_uint_fast64_t failures;
        /* CLOCK_MONOTONIC and CLOCK_PROCESS_CPUTIME_ID at the first exit; 0 before it. */
        atomic_uint_fast64_t first_exit_ns;
        atomic_uint_fast64_t first_exit_cpu_ns;
};

struct vcpu;

int vcpu_create(struct kvm *kvm, unsigned index, const struct vcpu_env *env, struct error *err,
                struct vcpu **out) MUST_CHECK;
/* Stops the thread if running, then releases everything. */
void vcpu_destroy(struct vcpu *v);

int vcpu_fd(const struct vcpu *v);
unsigned vcpu_index(const struct vcpu *v);
struct vcpu_stats *vcpu_stats(struct vcpu *v);

/* paused: the thread parks before running the guest (vcpu_resume lets it go). With a
 * thread_init hook, returns once the thread has run it (its error, if any). */
int vcpu_start(struct vcpu *v, bool paused, struct error *err) MUST_CHECK;
/* Asks the thread to park and waits until it has. A parked vCPU has completed its last exit
 * (KVM_RUN with immediate_exit): its registers are the guest's, ready to be saved. */
void vcpu_pause(struct vcpu *v);
void vcpu_resume(struct vcpu *v);
/* Asks the thread to stop running the guest as soon as possible, without waiting; safe to
 * call from any thread, including a vCPU thread. */
void vcpu_request_stop(struct vcpu *v);
/* Asks the thread to end and joins it. Idempotent; never call it from a vCPU thread. */
void vcpu_stop(struct vcpu *v);

/* The signal used to kick vCPUs out of KVM_RUN. */
int vcpu_kick_signal(void);

#endif

/*
 * A virtual machine: owns guest memory, the KVM VM, the buses, the devices and the vCPUs.
 * vm_create builds it from the configuration in one fixed order, everything that depends
 * only on the user's input first, so a bad configuration fails the same way on any host:
 * guest memory (or the snapshot's), the confidential platform, the board (vm_board.h:
 * every device's place), the kernel, initrd, command line and firmware tables (a boot
 * only), the virtio device models; then KVM: memory slots, irqchip and PIT, the platform's
 * exits, the buses, the console, the legacy devices, every device wired where the board
 * put it, the vCPUs, and for a restore the saved state. vm_destroy stops the vCPUs first,
 * then frees the rest. Several VMs can live in one process: nothing here is global.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/cc/cc.h"
#include "arch/x86/platform.h"
#include "common/error.h"
#include "common/snapbuf.h"
#include "config.h"
#include "common/event_loop.h"
#include "devices/serial.h"

struct vm;
struct snapshot_info;

/* Building the VM from a snapshot instead of booting it: the configuration (cfg) is the
 * snapshot's (with the load's overrides); the memory comes from mem_path, every device's,
 * vCPU's and the irqchip's state from `state` (positioned after the state file's CPUC
 * section). The host's KVM must provide the recorded CPU configuration (cpu). The vCPUs start
 * parked: vm_resume runs them. */
struct vm_restore {
        const struct snapshot_info *info;
        const struct x86_cpu_record *cpu; /* the CPU configuration the vCPUs had (CPUC) */
        struct snapbuf_reader *state;
        const char *mem_path; /* the memory file, or with mem_uffd the handler's socket */
        bool mem_uffd;        /* the Uffd backend: a page-fault handler fills the memory */
        bool clock_realtime;  /* advance the KVM clock by the time since the snapshot */
};

/* The threads of a VMM process, by what they do (each gets its own seccomp filter in the
 * executable, vmm/sandbox.h). */
enum vmm_thread_role {
        VMM_THREAD_VMM,  /* the event loop: devices' I/O, the control plane */
        VMM_THREAD_API,  /* the REST API server (api/server.c) */
        VMM_THREAD_VCPU, /* one per vCPU: KVM_RUN and the exits it handles */
        VMM_THREAD_UFFD, /* watches a Uffd backend's page-fault handler (uffd_peer.h) */
};

struct log_context;

struct vm_params {
        const struct vmm_config *cfg;
        struct event_loop *loop; /* the VMM thread's loop: console input and stop events */
        const char *kvm_path;    /* NULL: /dev/kvm */
        int console_in_fd;       /* -1: no serial input */
        int console_out_fd;      /* used when cfg->serial_out_path is NULL */
        uint64_t start_ns;       /* CLOCK_MONOTONIC at "start", for the boot timer */
        uint64_t start_cpu_ns;   /* CLOCK_PROCESS_CPUTIME_ID at "start" */
        /* Runs on the VMM thread once the guest has ended the VM. */
        void (*on_stop)(void *opaque, int exit_code);
        void *opaque;
        const struct vm_restore *restore; /* NULL: boot the kernel */
        /* Confinement (NULL: none), with opaque: vm_start calls it at the top of each vCPU
         * thread (VMM_THREAD_VCPU), then on the calling thread (VMM_THREAD_VMM) while the
         * vCPUs wait, so every thread is confined before the guest's first instruction.
         * Nonzero fails vm_start. */
        int (*thread_init)(void *opaque, enum vmm_thread_role role);
        /* The Uffd backend's page-fault handler is gone (uffd_peer.h): runs, with opaque, on
         * the thread that watches it, after the message was logged; it may end the process.
         * When it returns (or is NULL), the VM stops as an error (on_stop with 1). */
        void (*on_memory_lost)(void *opaque, const char *msg);
        /* The metadata service (the controller's) for the interfaces that answer for it. */
        struct mmds *mmds;
        /* The VM's log context (common/log.h): the vCPU threads and the Uffd watcher are
         * bound to it. */
        struct log_context *log;
};

/* Errors caused by the configuration or input files come back as ERROR_CONFIG. */
int vm_create(const struct vm_params *params, struct error *err, struct vm **out) MUST_CHECK;
/* Starts the vCPU threads (parked, for a restored VM, until vm_resume); with a thread_init
 * hook, confines them and the calling thread before any runs the guest. */
int vm_start(struct vm *vm, struct error *err) MUST_CHECK;
/* Stops the vCPUs (if running) and frees everything. */
void vm_destroy(struct vm *vm);

void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
int vm_send_ctrl_alt_del(struct vm *vm) MUST_CHECK;

/* Writes the generated firmware tables to dir as <NAME>.dat (created if missing). */
int vm_dump_platform(const struct vmm_config *cfg, const char *dir, struct error *err) MUST_CHECK;

/* Counters for metrics, summed over the vCPUs (Firecracker's vcpu.* names). */
struct vm_stats {
        uint64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write, failures;
        struct serial_stats serial;
        uint64_t i8042_resets;
        uint64_t pio_unhandled, mmio_unhandled; /* accesses no device claimed */
        enum cc_platform cc_platform;           /* CC_PLATFORM_NONE: ordinary VM */
        struct cc_stats cc;
};
void vm_get_stats(struct vm *vm, struct vm_stats *out);
/* The virtio devices (metrics, runtime updates); valid until vm_destroy. */
struct vm_devices *vm_get_devices(struct vm *vm);

/* For the executable's SIGBUS handler (async-signal-safe; install it with SA_NODEFER): when
 * the calling thread is in one of the VMM's checked copies of guest memory, resumes it
 * (guest_mem_sigbus_recover: the copy fails with -EIO) and does not return. Otherwise, when
 * addr is guest RAM mapped from a snapshot's memory file, writes the one-line message naming
 * that file (it was truncated under the mapping) to buf and returns its length; 0 for any
 * other address. */
size_t vm_sigbus_message(const void *addr, char *buf, size_t cap);

/* The untrusted host reading guest memory (a debugger, a dump): plaintext on an ordinary VM;
 * on a protected VM the platform's view of private granules (cc_host_read, CC-8). Over a
 * truncated memory file: -EIO, naming the file. */
int vm_host_read(struct vm *vm, gpa_t gpa, void *buf, size_t len, struct error *err) MUST_CHECK;
/* Writes guest RAM (the regions in address order, back to back) to path (a temporary file
 * renamed over it: a failed dump leaves what was there). Refused on a protected VM (CC-13). */
int vm_memory_dump(struct vm *vm, const char *path, struct error *err) MUST_CHECK;

/*
 * Snapshots (vmm/snapshot.h has the file formats). The vCPUs must be paused (vm_pause).
 * Devices finish their in-flight work first; then the memory file (Full: all non-zero
 * pages; Diff: the pages written since the previous snapshot, which needs
 * track_dirty_pages) and the state file, which embeds cfg (the machine as it is now, with
 * runtime updates). Refused on a protected VM (CC-13). Configuration-like mistakes (a bad
 * path, Diff without dirty tracking) are ERROR_CONFIG. After a failure the VM is unchanged
 * and can be resumed or snapshotted again.
 */
int vm_snapshot(struct vm *vm, const struct vmm_config *cfg, bool diff, const char *state_path,
                const char *mem_path, struct error *err) MUST_CHECK;
/* The first vCPU exit after the start or the restore (CLOCK_MONOTONIC ns; 0: none yet): the
 * moment the guest's first instruction ran, to within one exit. */
uint64_t vm_first_exit_ns(struct vm *vm);

/* Logs startup measurements (first guest exit, VMM memory beyond guest RAM) at debug. */
void vm_log_startup_stats(struct vm *vm);

#endif

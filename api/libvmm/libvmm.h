/*
 * libvmm: the VMM as a library, for platforms that drive microVMs from their own process.
 *
 * One `struct libvmm` is one microVM with its own thread (its event loop: devices, the
 * control queue), its vCPU threads and, when it has callbacks, a thread that runs them. Any
 * number of them may live in one process. The configuration is the one the `vmm` binary reads with
 * --config-file (GET /vm/config's JSON: "boot-source", "machine-config", "drives",
 * "network-interfaces", "vsock", "balloon", "entropy", ...), checked by the same code as
 * the command line, the config file and the REST API; snapshots are loaded from
 * Firecracker's SnapshotLoadParams JSON.
 *
 *     struct libvmm_options o = LIBVMM_OPTIONS_INIT;
 *     struct libvmm *vm;
 *     int code;
 *
 *     if (libvmm_create("{\"boot-source\": {\"kernel_image_path\": \"vmlinux\"}}", &o, &vm))
 *             fprintf(stderr, "%s\n", libvmm_last_error());
 *     libvmm_start(vm);
 *     libvmm_wait_exit(vm, -1, &code);
 *     libvmm_destroy(vm);
 *
 * ERRORS. Every function returns 0 or a negative errno. The message of the last failure
 * on the calling thread is libvmm_last_error() (one line, valid until the thread's next
 * call). Configuration and input-file errors are -EINVAL; operations in the wrong phase
 * are -EPERM (Firecracker's wording: "... not supported before starting the microVM.").
 * The library never calls exit(), never installs signal handlers or seccomp filters.
 *
 * THREADS. Every function may be called from any thread, and several threads may call into
 * one VM at once: calls on one VM are executed one at a time, in arrival order, on the VM's
 * thread (the caller waits). The VM's thread never runs the embedder's code.
 *
 * CALLBACKS (console output, life-cycle events) run on a thread of their own per VM (created
 * only when a callback is given), one at a time: console output as it comes, events in the
 * order of the calls and guest actions that caused them. A callback may call into any
 * VM, its own included. A call that causes an event (libvmm_start: STARTED, libvmm_pause:
 * PAUSED, ...) returns after the event's callback returned, unless it is made from a
 * callback (any VM's): its event then follows the callback in progress. From a callback of
 * its own VM, libvmm_wait_exit fails with -EDEADLK (the exit is delivered on that thread)
 * and libvmm_destroy is refused (-EDEADLK in libvmm_last_error; the VM stays). Callbacks of
 * two VMs must not destroy each other's VM, nor may a callback wait for the thread that
 * destroys its VM. The log sink (libvmm_set_log) runs on the VMM's own threads: a call from
 * it fails with -EDEADLK.
 *
 * THE END OF A VM. When the guest ends the VM, its EXITED callback runs first (after all
 * the console output written before), then libvmm_exit_fd becomes readable, then
 * libvmm_wait_exit returns. No event follows EXITED: the calls that act on the guest
 * (pause, resume, snapshot, Ctrl-Alt-Del) are refused with -EPERM ("... not supported after
 * the guest ended the microVM."); info, metrics and destroy still work.
 *
 * DESTROY. libvmm_destroy may run while other threads are inside calls on the VM (a metrics
 * scraper beside a teardown): calls that reach the VM once it began fail with -ESHUTDOWN
 * ("The microVM is shutting down."), libvmm_wait_exit's waiters wake up with -ESHUTDOWN,
 * and the calls already executing finish; destroy frees the VM only after every call let go
 * of it and every queued callback ran. As with free(), no call may be made on the VM once
 * libvmm_destroy has returned, and it is called once. libvmm_last_error is per thread.
 *
 * PROCESS-WIDE STATE. The logger's sink and level (libvmm_set_log) are the process's and
 * change only through libvmm_set_log. A VM's "logger" configuration section (a log file, a
 * level, show_level, show_log_origin) applies to that VM's lines only, and ends with the
 * VM; the lines of a VM's threads carry its id ("[id:vcpu0] ..."). The vCPU threads use the
 * real-time signal SIGRTMIN, blocked everywhere except inside KVM_RUN, to interrupt KVM_RUN:
 * no handler is installed, but the embedder must not use SIGRTMIN itself. SIGPIPE is
 * blocked in the threads the library creates (a write to a closed socket or pipe fails with
 * EPIPE there).
 */
#ifndef LIBVMM_H
#define LIBVMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIBVMM_API_VERSION 1

struct libvmm;

enum libvmm_event {
        LIBVMM_EVENT_STARTED = 1, /* booted (libvmm_start), or restored and running */
        LIBVMM_EVENT_PAUSED,      /* libvmm_pause, or restored without resume_vm */
        LIBVMM_EVENT_RESUMED,
        LIBVMM_EVENT_EXITED, /* the guest ended the VM; code: 0 reset or power-off, 1 error */
};

struct libvmm_options {
        /* The instance id (GET / of the API, metrics, the VM's log lines); NULL: "libvmm" */
        const char *id;
        /* The guest's console (COM1) output: written to console_fd (>= 0), or given to the
         * console callback, or dropped. The callback runs on the VM's callback thread;
         * output it does not keep up with is dropped past a 1 MiB backlog. */
        int console_fd;
        void (*console)(void *opaque, const char *data, size_t len);
        /* Console input: bytes read from this fd go to COM1 (-1: none). */
        int console_in_fd;
        /* Life-cycle events (the VM's callback thread). */
        void (*event)(void *opaque, enum libvmm_event event, int code);
        void *opaque;
        const char *kvm_path; /* NULL: /dev/kvm */
};

#define LIBVMM_OPTIONS_INIT                                                                        \
        {                                                                                          \
                .console_fd = -1, .console_in_fd = -1                                              \
        }

/* The message of the calling thread's last failed call ("" when there was none). */
const char *libvmm_last_error(void);

/* A VM configured from a JSON document (the config file's format), not started. */
int libvmm_create(const char *config_json, const struct libvmm_options *opts, struct libvmm **out);
/* A VM restored from a snapshot. load_params_json is Firecracker's SnapshotLoadParams:
 * {"snapshot_path": "...", "mem_file_path": "...", "resume_vm": true, "network_overrides":
 * [...], "vsock_override": {...}, "track_dirty_pages": ..., "clock_realtime": ...}, and ours
 * "drive_overrides": [{"drive_id": "...", "path_on_host": "..."}]. The VM
 * is Paused, or running with resume_vm. config_json (NULL allowed) may only hold "logger",
 * "metrics" and "serial". */
int libvmm_restore(const char *load_params_json, const char *config_json,
                   const struct libvmm_options *opts, struct libvmm **out);

int libvmm_start(struct libvmm *vm); /* InstanceStart */
int libvmm_pause(struct libvmm *vm);
int libvmm_resume(struct libvmm *vm);
/* A snapshot of the paused VM: Full, or Diff (the pages written since the previous snapshot;
 * needs "track_dirty_pages" in the machine configuration). */
int libvmm_snapshot(struct libvmm *vm, const char *state_path, const char *mem_path, bool diff);
/* Merges a Diff snapshot's memory file over the memory file of the snapshot it follows. */
int libvmm_merge_memory(const char *base_mem_path, const char *diff_mem_path);
int libvmm_send_ctrl_alt_del(struct libvmm *vm);

/* Waits until the guest ended the VM and its EXITED callback returned (timeout_ms < 0:
 * forever); -ETIMEDOUT otherwise, -ESHUTDOWN when libvmm_destroy began meanwhile, -EDEADLK
 * from the VM's own callback. *exit_code (may be NULL): 0 reset or power-off, 1 error. */
int libvmm_wait_exit(struct libvmm *vm, int timeout_ms, int *exit_code);
/* An eventfd that becomes readable when the guest ended the VM and its EXITED callback
 * returned (for poll/epoll loops); owned by the VM. */
int libvmm_exit_fd(struct libvmm *vm);

enum libvmm_state { LIBVMM_NOT_STARTED, LIBVMM_RUNNING, LIBVMM_PAUSED, LIBVMM_EXITED };

struct libvmm_info {
        enum libvmm_state state;
        /* CLOCK_MONOTONIC ns of the first vCPU exit after the start or restore (0: none
         * yet): when the guest ran its first instruction, to within one exit. */
        uint64_t first_exit_ns;
};
int libvmm_info(struct libvmm *vm, struct libvmm_info *info);

/* The metadata service's data store (docs/mmds.md), as PUT, PATCH and GET /mmds: put replaces
 * it with a JSON document, patch merges one into it (RFC 7396); get gives it as JSON (free
 * with libvmm_free). -EINVAL for text that is not JSON, -EFBIG past the size limit, -ENODATA
 * for a patch before the first put (or any call after the start when nothing used the
 * store before it, Firecracker's rule). The service itself
 * (its interfaces, version, address) is the configuration's "mmds-config". */
int libvmm_mmds_put(struct libvmm *vm, const char *json);
int libvmm_mmds_patch(struct libvmm *vm, const char *json);
int libvmm_mmds_get(struct libvmm *vm, char **json);

/* Every metrics group (Firecracker's names, as the metrics file has them) as one JSON
 * object with counters as totals since the start; free *json with libvmm_free. */
int libvmm_metrics(struct libvmm *vm, char **json);
void libvmm_free(void *p);

/* Stops the VM if it runs (no EXITED event then), waits for the calls under way on other
 * threads and for the queued callbacks, joins its threads, frees everything (see DESTROY). */
void libvmm_destroy(struct libvmm *vm);

/* The process-wide logger: "Error", "Warning", "Info", "Debug" or "Off" (NULL: keep), and
 * where lines go (NULL: stderr; the callback gets whole lines, one at a time, from any
 * thread, the VMM's own included: it must not call libvmm). Lines of a VM with a "logger"
 * section of its own follow that section where it says something. Once libvmm_set_log
 * returned, the previous sink is called no more. */
int libvmm_set_log(const char *level, void (*sink)(void *opaque, const char *line, size_t len),
                   void *opaque);

#ifdef __cplusplus
}
#endif

#endif

/*
 * libvmm: the VMM as a library, for platforms that drive microVMs from their own process.
 *
 * One `struct libvmm` is one microVM with its own thread (its event loop: devices, the
 * control queue, console output, callbacks) and its vCPU threads. Any number of them may
 * live in one process. The configuration is the one the `vmm` binary reads with
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
 * thread (the caller waits). libvmm_destroy must be the last call on a VM and must not run
 * while another thread is inside a call on that VM. Callbacks run on the VM's thread: they
 * must not call libvmm_destroy on their own VM, nor wait for another call on it (other
 * VMs are fine). libvmm_last_error is per thread.
 *
 * PROCESS-WIDE STATE. The logger is one per process (libvmm_set_log; a configuration's
 * "logger" section changes it for every VM). The vCPU threads use the real-time signal
 * SIGRTMIN, blocked everywhere except inside KVM_RUN, to interrupt KVM_RUN: no handler is
 * installed, but the embedder must not use SIGRTMIN itself. SIGPIPE is blocked in the
 * threads the library creates (a write to a closed socket or pipe fails with EPIPE there).
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
        const char *id; /* the instance id (GET / of the API, metrics); NULL: "libvmm" */
        /* The guest's console (COM1) output: written to console_fd (>= 0), or given to the
         * console callback, or dropped. The callback runs on the VM's thread; output it
         * does not keep up with is dropped past a 1 MiB backlog. */
        int console_fd;
        void (*console)(void *opaque, const char *data, size_t len);
        /* Console input: bytes read from this fd go to COM1 (-1: none). */
        int console_in_fd;
        /* Life-cycle events (VM thread). */
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
 * [...], "vsock_override": {...}, "track_dirty_pages": ..., "clock_realtime": ...}. The VM
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

/* Waits until the guest ended the VM (timeout_ms < 0: forever); -ETIMEDOUT otherwise.
 * *exit_code (may be NULL): 0 reset or power-off, 1 error. */
int libvmm_wait_exit(struct libvmm *vm, int timeout_ms, int *exit_code);
/* An eventfd that becomes readable when the guest ended the VM (for poll/epoll loops);
 * owned by the VM. */
int libvmm_exit_fd(struct libvmm *vm);

enum libvmm_state { LIBVMM_NOT_STARTED, LIBVMM_RUNNING, LIBVMM_PAUSED, LIBVMM_EXITED };

struct libvmm_info {
        enum libvmm_state state;
        /* CLOCK_MONOTONIC ns of the first vCPU exit after the start or restore (0: none
         * yet): when the guest ran its first instruction, to within one exit. */
        uint64_t first_exit_ns;
};
int libvmm_info(struct libvmm *vm, struct libvmm_info *info);

/* Every metrics group (Firecracker's names, as the metrics file has them) as one JSON
 * object with counters as totals since the start; free *json with libvmm_free. */
int libvmm_metrics(struct libvmm *vm, char **json);
void libvmm_free(void *p);

/* Stops the VM if it runs, frees everything, joins its threads. */
void libvmm_destroy(struct libvmm *vm);

/* The process-wide logger: "Error", "Warning", "Info", "Debug" or "Off" (NULL: keep), and
 * where lines go (NULL: stderr; the callback gets whole lines, from any thread). */
int libvmm_set_log(const char *level, void (*sink)(void *opaque, const char *line, size_t len),
                   void *opaque);

#ifdef __cplusplus
}
#endif

#endif

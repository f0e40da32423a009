/*
 * The controller's inside, shared by its files: controller.c (requests, their execution,
 * runtime updates, the life cycle), controller_queue.c (the command queue),
 * controller_edit.c (configuration edits before the start), controller_log.c (the logger's
 * file output), controller_metrics.c (the API request counters and the metrics lines) and
 * controller_snapshot.c (snapshot create, and load with its rewriting of the saved
 * configuration).
 */
#ifndef VMM_CONTROLLER_PRIV_H
#define VMM_CONTROLLER_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/log.h"
#include "controller.h"
#include "metrics.h"

#define MSG_AFTER_START  "The requested operation is not supported after starting the microVM."
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_SHUTDOWN     "The microVM is shutting down."
#define MSG_NO_BALLOON   "No balloon device is configured."
#define MSG_LOAD_CONFIGURED                                                                        \
        "Load snapshot error: Loading a microVM snapshot not allowed after configuring "           \
        "boot-specific resources."
#define MSG_NOT_PAUSED "Cannot create a snapshot: the microVM is not paused."
/* Firecracker's answer to a device PUT after the start without PCI (a hot-plug). */
#define MSG_NO_PCI               "PCI is not enabled"
#define MSG_ENDED                "The requested operation is not supported after the guest ended the microVM."
#define MSG_MMDS_NOT_INITIALIZED "MMDS error: The MMDS data store is not initialized."

struct controller {
        struct controller_params p;
        char instance_id[65];
        struct vmm_host_limits limits;
        /* What GET /vm/config reports; pre-boot commands edit it, runtime updates too. */
        struct vmm_config cfg;
        /* The copy the VM was built from: it never changes while the VM exists. */
        struct vmm_config vm_cfg;
        struct vm *vm;
        /* The metadata service (one per VM, before and after the start). */
        struct mmds *mmds;
        /* Something used it before the start (Firecracker creates its store then: its
         * runtime endpoints work only if it exists). */
        bool mmds_used;
        enum controller_state state;
        /* A machine resource was configured (snapshot/load is refused from then on). */
        bool configured;
        struct metrics *metrics;
        uint64_t startup_us, startup_cpu_us;

        /* This VM's logging context (common/log.h): its instance id and the settings of its
         * logger configuration; its file output, if any (controller_log.c). */
        struct log_context log;
        struct controller_log_file *log_file;
        atomic_uint_fast64_t log_missed;
        /* The guest ended the VM: operations on the running guest are refused. */
        bool ended;

        /* The queue. */
        pthread_mutex_t lock;
        struct controller_request *head, *tail;
        bool closed;
        int wake_fd;

        /* API request counters (Firecracker's *_api_requests) and latencies. */
        atomic_uint_fast64_t count[VMM_ACTION_COUNT];
        atomic_uint_fast64_t fails[VMM_ACTION_COUNT];
        uint64_t pause_us, resume_us, vmm_pause_us, vmm_resume_us;
        uint64_t full_snapshot_us, diff_snapshot_us, load_snapshot_us;
};

/* Exchanges two lvalues of one type (strings move between a request and a configuration). */
#define SWAP(a, b)                                                                                 \
        do {                                                                                       \
                __typeof__(a) swap_tmp_ = (a);                                                     \
                (a) = (b);                                                                         \
                (b) = swap_tmp_;                                                                   \
        } while (0)

/* ---- the table (controller.c, from controller_actions.def) ---- */

enum controller_phase {
        CONTROLLER_PHASE_ANY,
        CONTROLLER_PHASE_BEFORE_START,
        CONTROLLER_PHASE_AFTER_START,
        CONTROLLER_PHASE_BEFORE_START_HOTPLUG, /* after the start: MSG_NO_PCI */
        CONTROLLER_PHASE_LIVE,                 /* after the start, until the guest ended the VM */
};

typedef int (*controller_run_fn)(struct controller *c, struct controller_request *req,
                                 struct error *err);
typedef int (*controller_edit_fn)(struct vmm_config *next, struct controller_request *req,
                                  struct error *err);

struct controller_action {
        enum controller_phase phase;
        bool configures;
        controller_run_fn run;   /* NULL: none */
        controller_edit_fn edit; /* NULL: none; after run when both are set */
        void (*clear)(struct controller_request *req);
        enum controller_event event;
        const char *method; /* "GET", "PUT", "PATCH" */
        const char *path;   /* the REST route ("pmem/{id}"); NULL: none */
        const char *metric;
};

/* NULL for a value outside the enum. */
const struct controller_action *controller_action_get(enum vmm_action a);

/* ---- controller_edit.c: the EDIT functions ---- */

/* An edit that failed (err set) after a change that stands (controller_edit keeps it). */
#define EDIT_FAILED_KEEP 1

/* "<description> (os error <errnum>)", the way Firecracker's messages show an OS error. */
const char *controller_os_error(int errnum, char *buf, size_t cap);
/* Opens a file a command names as its device will (vmm_check_file) and closes it: 0, or a
 * negative errno with why set to the reason as Firecracker words it, "No such file or
 * directory (os error 2)" (an empty path included), or, for a kind refused without opening
 * it (a directory, a FIFO, ...), file_open's message. */
int controller_check_file(const char *what, const char *path, bool write, unsigned kinds, char *why,
                          size_t cap);

#define CONTROLLER_EDIT(f)                                                                         \
        int controller_edit_##f(struct vmm_config *next, struct controller_request *req,           \
                                struct error *err) MUST_CHECK
CONTROLLER_EDIT(boot);
CONTROLLER_EDIT(machine);
CONTROLLER_EDIT(drive);
CONTROLLER_EDIT(net);
CONTROLLER_EDIT(pmem);
CONTROLLER_EDIT(memory_hotplug);
CONTROLLER_EDIT(vsock);
CONTROLLER_EDIT(entropy);
CONTROLLER_EDIT(confidential);
CONTROLLER_EDIT(cpu_config);
CONTROLLER_EDIT(serial);
CONTROLLER_EDIT(mmds_config);
CONTROLLER_EDIT(balloon);
CONTROLLER_EDIT(logger);
CONTROLLER_EDIT(metrics);
#undef CONTROLLER_EDIT

/* ---- controller_log.c ---- */

/* Applies a logger setting (the file output, level, what lines show) to this VM's context;
 * the process's settings and other VMs' stay as they are. */
int controller_log_apply(struct controller *c, const struct vmm_logger_config *l,
                         struct error *err) MUST_CHECK;
/* Records the applied settings in the configuration (GET /vm/config). */
int controller_log_merge(struct vmm_logger_config *dst, struct vmm_logger_config *src);
/* Detaches and closes the file output, if any (this VM's lines go to the process's sink). */
void controller_log_close(struct controller *c);

/* ---- controller_metrics.c ---- */

/* The metrics' collector (metrics_create): every group of a metrics line. */
void controller_collect_metrics(void *opaque, struct metrics_writer *w);

/* ---- controller_queue.c ---- */

/* The queue's eventfd became readable: executes every queued request. */
void controller_on_wake(void *opaque, uint32_t events);

/* ---- controller.c, for the files above ---- */

int controller_build(struct controller *c, struct vmm_config *cfg, const struct vm_restore *rs,
                     uint64_t start_ns, uint64_t start_cpu_ns, struct error *err) MUST_CHECK;
int controller_pause_or_resume(struct controller *c, bool pause);
/* The index of the network interface (drive) with that id, or -1. */
int controller_find_net(const struct vmm_config *cfg, const char *id);
int controller_find_drive(const struct vmm_config *cfg, const char *id);

#endif

/*
 * The VMM thread's side of the control plane.
 *
 * A controller owns the machine configuration (the one object the CLI, the config file and
 * the API fill), the VM once it is started, the logger's file output and the metrics. Its
 * state machine is Firecracker's: Not started -> Running <-> Paused; a guest reset or a
 * signal ends the process, not the state machine.
 *
 * Commands are typed requests (struct controller_request) that any thread submits to a FIFO
 * queue; an eventfd in the VMM thread's event loop wakes it, and it executes them one at a
 * time in submission order, then calls each request's done callback (on the VMM thread).
 * Each command runs in the phase it is allowed in: configuration commands before
 * InstanceStart ("The requested operation is not supported after starting the microVM."),
 * runtime commands after it ("... before starting the microVM."), and those that act on the
 * running guest only until the guest ended the VM ("... after the guest ended the microVM.":
 * the library keeps an ended VM until it is destroyed). Before the start they edit
 * the configuration (validated as a whole by vmm_config_validate, the CLI's validation);
 * after it they act on the VM (pause, Ctrl-Alt-Del, drive / interface / balloon updates).
 * Each command's phase, handler, metrics name and REST route are one entry of
 * controller_actions.def.
 */
#ifndef VMM_CONTROLLER_H
#define VMM_CONTROLLER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "common/util.h"
#include "config.h"
#include "devices/virtio/balloon.h"
#include "vm.h"

#define VMM_APP_NAME "vmm"

enum controller_state {
        CONTROLLER_NOT_STARTED,
        CONTROLLER_RUNNING,
        CONTROLLER_PAUSED,
};

/* "Not started", "Running", "Paused" (InstanceInfo.state). */
const char *controller_state_name(enum controller_state s);

/* Every command, from the one table of them (controller_actions.def). */
enum vmm_action {
#define X(name, ...) VMM_##name,
#include "controller_actions.def"
#undef X
        VMM_ACTION_COUNT
};

/* What a command's success does to the VM's life (the table's EVENT column). */
enum controller_event {
        CONTROLLER_EVENT_NONE,
        CONTROLLER_EVENT_STARTED, /* booted or restored: the reply's state is Running, or
                                     Paused after a restore without resume_vm */
        CONTROLLER_EVENT_PAUSED,
        CONTROLLER_EVENT_RESUMED,
};
enum controller_event controller_action_event(enum vmm_action a);

/* PATCH /drives/{id}: path and/or rate limiter (Firecracker's PartialDrive). */
struct vmm_drive_update {
        char *drive_id;
        char *path_on_host; /* NULL: keep */
        bool has_rate_limiter;
        struct vmm_rate_limiter_update rate_limiter;
};

/* PATCH /pmem/{id}: the rate limiter (Firecracker's PartialPmem). */
struct vmm_pmem_update {
        char *id;
        bool has_rate_limiter;
        struct vmm_rate_limiter_update rate_limiter;
};

/* PATCH /network-interfaces/{id} (PartialNetworkInterface). */
struct vmm_net_update {
        char *iface_id;
        bool has_rx;
        struct vmm_rate_limiter_update rx;
        bool has_tx;
        struct vmm_rate_limiter_update tx;
};

/* PUT /snapshot/create (Firecracker's SnapshotCreateParams). */
struct vmm_snapshot_create {
        char *snapshot_path;
        char *mem_file_path;
        bool diff; /* snapshot_type Diff */
};

/* A load's override: the host resource (TAP name, backing file) that replaces the saved
 * one of the device with this id. */
struct vmm_override {
        char *id;
        char *value;
};

/* PUT /snapshot/load (SnapshotLoadParams). */
struct vmm_snapshot_load {
        char *snapshot_path;
        /* mem_file_path, or mem_backend's backend_path: the memory file (File), or the
         * page-fault handler's Unix socket (mem_uffd: backend_type Uffd) */
        char *mem_file_path;
        bool mem_uffd;
        bool resume_vm;
        bool track_dirty_pages; /* track_dirty_pages or the deprecated enable_diff_snapshots */
        bool clock_realtime;
        bool huge_pages_none; /* huge_pages "None" (default "Snapshot": as saved) */
        bool huge_pages_2m;   /* huge_pages "2M" (the Uffd backend only) */
        unsigned nr_net_overrides;
        struct vmm_override net_overrides[VMM_MAX_NETS]; /* iface_id, host_dev_name */
        unsigned nr_drive_overrides;
        struct vmm_override drive_overrides[VMM_MAX_DRIVES]; /* ours: drive_id, path_on_host */
        char *vsock_uds_path;                                /* vsock_override; NULL: as saved */
};
void vmm_snapshot_load_free(struct vmm_snapshot_load *l);

/* PUT /mmds/config (Firecracker's MmdsConfig): cfg, and the interfaces to answer on. */
struct vmm_mmds_config_request {
        struct vmm_mmds_config cfg;
        unsigned nr_ifaces;
        char **ifaces; /* malloc'd, like each id */
};

/* PUT /serial (Firecracker's SerialDevice). */
struct vmm_serial {
        char *out_path; /* NULL: the VMM's stdout */
        struct vmm_rate_limiter rate_limiter;
};

struct controller_reply {
        int status;                  /* 0, or a negative errno with err set */
        struct error err;            /* the fault message */
        enum controller_state state; /* the controller's, after the command */
        /* VMM_GET_INSTANCE_INFO */
        char id[65];
        /* VMM_GET_MACHINE_CONFIG, VMM_GET_VM_CONFIG, VMM_GET_BALLOON: a copy the reply owns
         * (freed by controller_request_clear). */
        struct vmm_config *config;
        /* VMM_GET_BALLOON_STATS */
        struct virtio_balloon_stats balloon_stats;
        /* VMM_GET_BALLOON_HINTING */
        struct virtio_balloon_hinting balloon_hinting;
        /* VMM_GET_MEMORY_HOTPLUG: the configuration, and plugged_size_mib (0 before the
         * start) */
        struct vmm_memory_hotplug hotplug;
        uint64_t hotplug_plugged_mib;
        /* VMM_GET_MEMORY: the page, owned by the reply */
        uint64_t memory_address;
        uint8_t *memory;
        size_t memory_len;
        /* VMM_GET_METRICS: a JSON object (malloc'd, owned by the reply) */
        char *metrics;
        /* VMM_GET_MMDS: the data store as JSON text (malloc'd, owned by the reply) */
        char *mmds;
        /* VMM_GET_INSTANCE_INFO: the VM's first vCPU exit after its start or restore
         * (CLOCK_MONOTONIC ns, 0: none yet) */
        uint64_t first_exit_ns;
};

struct controller_request;
typedef void (*controller_done_fn)(struct controller_request *req);

/* A command. The payload member used depends on the action; its strings are owned by the
 * request (controller_request_clear frees them, and whatever the controller did not take). */
struct controller_request {
        enum vmm_action action;
        union {
                struct vmm_boot_source boot;
                struct {
                        struct vmm_machine_update update;
                        char *cpu_hide; /* owned; update.cpu_hide points here */
                        /* cpu_template: the name and the static template's content (owned;
                         * NULL for "None"); update.cpu_template(_data) point here. */
                        char cpu_template[8];
                        struct x86_cpu_template *cpu_template_data;
                } machine;
                struct x86_cpu_template *cpu_config; /* PUT /cpu-config (owned) */
                struct vmm_drive drive;
                struct vmm_drive_update drive_update;
                struct vmm_net net;
                struct vmm_net_update net_update;
                struct vmm_pmem pmem;
                struct vmm_pmem_update pmem_update;
                struct vmm_memory_hotplug hotplug;
                uint64_t hotplug_requested_mib; /* VMM_PATCH_MEMORY_HOTPLUG */
                struct vmm_vsock vsock;
                struct vmm_entropy entropy;
                struct vmm_confidential confidential;
                uint64_t memory_address; /* VMM_GET_MEMORY */
                char *memory_dump_path;  /* VMM_PUT_MEMORY_DUMP */
                struct vmm_serial serial;
                struct vmm_balloon balloon;
                uint32_t balloon_amount_mib;
                uint32_t balloon_stats_interval_s;
                bool balloon_ack_on_stop; /* VMM_START_BALLOON_HINTING */
                struct vmm_logger_config logger;
                struct vmm_metrics_config metrics;
                struct vmm_snapshot_create snapshot_create;
                struct vmm_snapshot_load snapshot_load;
                struct vmm_mmds_config_request mmds_config;
                /* PUT, PATCH /mmds: the body as sent (the store keeps the numbers' text) */
                struct {
                        char *json;
                        size_t len;
                } mmds_data;
        } u;
        uint64_t received_ns; /* CLOCK_MONOTONIC when the request arrived (latency metrics) */
        /* The request used a deprecated field: the notice a front end logs and answers with
         * (Firecracker's "Deprecation: true" header); a static string, NULL: none. */
        const char *deprecation;
        struct controller_reply reply;
        /* Called on the VMM thread after the reply is filled; may be NULL. */
        controller_done_fn done;
        void *opaque;
        struct controller_request *next; /* queue link, controller-private */
};

void controller_request_init(struct controller_request *req, enum vmm_action action);
void controller_request_clear(struct controller_request *req);

/* Signals the executable counts for the metrics (Firecracker's "signals" group). */
struct controller_signal_counts {
        atomic_uint_fast64_t sigbus, sigsegv, sigxfsz, sigxcpu, sigpipe, sighup, sigill;
};

struct controller_params {
        struct event_loop *loop; /* the VMM thread's */
        const char *instance_id; /* NULL: "anonymous-instance" */
        const char *kvm_path;    /* NULL: /dev/kvm */
        int console_in_fd;       /* -1: none */
        int console_out_fd;
        uint64_t process_start_ns, process_start_cpu_ns;
        const struct controller_signal_counts *signals; /* may be NULL */
        /* The VM ended: the guest reset or powered off (exit code 0) or failed (1), or a
         * snapshot load failed (1: the process is unusable); VMM thread. */
        void (*on_exit)(void *opaque, int exit_code);
        void *opaque;
        /* Confinement of the process's threads (the executable's seccomp filters,
         * vmm/sandbox.h; NULL: none), called on the thread to confine, with thread_opaque:
         * at the top of the API thread (controller_thread_init) and of each vCPU thread,
         * and on the VMM thread once the VM is built and its vCPUs wait, before the guest's
         * first instruction. Nonzero (negative errno) fails that start. */
        int (*thread_init)(void *opaque, enum vmm_thread_role role);
        void *thread_opaque;
        /* Guest memory can no longer be served: the Uffd backend's page-fault handler is
         * gone (vm.h's on_memory_lost: the message is logged; any thread). It may end the
         * process; when it returns (or is NULL) the VM stops as an error (on_exit, 1). */
        void (*on_memory_lost)(void *opaque, const char *msg);
        /* Forbidden system calls trapped so far (metrics seccomp.num_faults); NULL: 0. */
        uint64_t (*seccomp_faults)(void);
        /* The metadata service's data store: its size limit (0: MMDS_DEFAULT_SIZE_LIMIT) and
         * its first contents (--metadata FILE's text; NULL: none), refused like a PUT /mmds
         * body (ERROR_CONFIG). */
        size_t mmds_size_limit;
        const char *metadata;
        size_t metadata_len;
};

struct controller;

/* Takes over *cfg (left empty). Applies its logger and metrics settings; errors there are
 * ERROR_CONFIG. */
int controller_create(const struct controller_params *p, struct vmm_config *cfg, struct error *err,
                      struct controller **out) MUST_CHECK;
/* Stops the VM if any, writes a last metrics line, closes the VM's log file. The queue must
 * have been closed (controller_close), and every thread bound to the VM's log context have
 * ended, but the caller's. The process's logger (its sink, its level) is left as it is. */
void controller_destroy(struct controller *c);

/* The calling thread logs for this VM from now on: its lines carry the VM's instance id and
 * follow the VM's logger settings (common/log.h), until controller_destroy. The VM's vCPU
 * threads and controller_thread_init's callers are bound by the controller itself. */
void controller_bind_thread(struct controller *c);
/* The VM's log context (to log one line for the VM from another thread: log_bind). */
struct log_context *controller_log(struct controller *c);

/*
 * Snapshots, with Firecracker's phase rules. create needs a Paused VM. load needs a fresh
 * controller: nothing configured but the logger, the metrics and the serial output
 * ("Loading a microVM snapshot not allowed after configuring boot-specific resources.").
 * It reads and checks the state file (version, checksum, a machine this host can run),
 * applies network_overrides / drive_overrides / vsock_override / track_dirty_pages /
 * huge_pages None to the snapshot's configuration, validates it like any configuration, builds the
 * VM from the snapshot and leaves it Paused (Running with resume_vm). A load that fails leaves the
 * controller Not started and usable: another load, or a normal configuration and boot.
 */
int controller_snapshot_create(struct controller *c, const struct vmm_snapshot_create *s,
                               struct error *err) MUST_CHECK;
int controller_snapshot_load(struct controller *c, const struct vmm_snapshot_load *l,
                             struct error *err) MUST_CHECK;

/* Builds and starts the VM from the configuration (InstanceStart). start_ns/start_cpu_ns are
 * the boot timer's zero. On failure the controller stays Not started and usable. */
int controller_start(struct controller *c, uint64_t start_ns, uint64_t start_cpu_ns,
                     struct error *err) MUST_CHECK;
enum controller_state controller_get_state(const struct controller *c);

/* The calling thread, about to act as role: binds it to the VM's log context, runs the
 * thread_init hook (0 without one). */
int controller_thread_init(struct controller *c, enum vmm_thread_role role) MUST_CHECK;

/*
 * A configuration command (one whose table entry has an EDIT function: PUT /boot-source,
 * /machine-config, /drives/{id}, ...) applied to cfg, exactly as the controller applies it
 * before the start: the files it names are checked, and cfg changes only if the whole
 * configuration is still valid (vmm_config_validate with limits, which may be NULL). The
 * config file's sections go through here too. The request keeps what was not taken over
 * (controller_request_clear it).
 */
int controller_edit(struct vmm_config *cfg, const struct vmm_host_limits *limits,
                    struct controller_request *req, struct error *err) MUST_CHECK;

/* Any thread: queues req; -ESHUTDOWN once the queue is closed (req untouched). */
int controller_submit(struct controller *c, struct controller_request *req) MUST_CHECK;
/* VMM thread: refuses further submissions and answers every queued request with an error
 * ("The microVM is shutting down."). Idempotent. */
void controller_close(struct controller *c);
/* VMM thread: executes one request now and fills its reply (done is not called). */
void controller_execute(struct controller *c, struct controller_request *req);

/* Any thread: a request the API refused before it reached the queue (bad JSON, bad id),
 * counted as a request and a failure of that action (API request metrics). */
void controller_count_rejected(struct controller *c, enum vmm_action action);

/* Logs startup measurements of the VM, if any (debug level). */
void controller_log_startup_stats(struct controller *c);

#endif

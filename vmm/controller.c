#include "controller.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpu_state.h"
#include "common/log.h"
#include "devices.h"
#include "metrics.h"
#include "snapshot.h"
#include "vm.h"

#define MSG_AFTER_START  "The requested operation is not supported after starting the microVM."
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_SHUTDOWN     "The microVM is shutting down."
#define MSG_NO_BALLOON   "No balloon device is configured."
#define MSG_LOAD_CONFIGURED                                                                        \
        "Loading a microVM snapshot not allowed after configuring boot-specific resources."
#define MSG_NOT_PAUSED "Cannot create a snapshot: the microVM is not paused."

struct controller {
        struct controller_params p;
        char instance_id[65];
        struct vmm_host_limits limits;
        /* What GET /vm/config reports; pre-boot commands edit it, runtime updates too. */
        struct vmm_config cfg;
        /* The copy the VM was built from: it never changes while the VM exists. */
        struct vmm_config vm_cfg;
        struct vm *vm;
        enum controller_state state;
        /* A machine resource was configured (snapshot/load is refused from then on). */
        bool configured;
        struct metrics *metrics;
        uint64_t startup_us, startup_cpu_us;

        /* The logger's file output. */
        _Atomic int log_fd;
        atomic_uint_fast64_t log_missed;
        bool log_torn; /* the last line went out only in part (the logger serialises sinks) */

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

static uint64_t clock_ns(clockid_t id)
{
        struct timespec ts;
        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *controller_state_name(enum controller_state s)
{
        switch (s) {
        case CONTROLLER_RUNNING:
                return "Running";
        case CONTROLLER_PAUSED:
                return "Paused";
        default:
                return "Not started";
        }
}

/* ---- requests ---- */

void controller_request_init(struct controller_request *req, enum vmm_action action)
{
        memset(req, 0, sizeof(*req));
        req->action = action;
        req->received_ns = clock_ns(CLOCK_MONOTONIC);
}

static void free_boot(struct vmm_boot_source *b)
{
        free(b->kernel_image_path);
        free(b->initrd_path);
        free(b->boot_args);
}

void controller_request_clear(struct controller_request *req)
{
        switch (req->action) {
        case VMM_PUT_BOOT_SOURCE:
                free_boot(&req->u.boot);
                break;
        case VMM_PUT_MACHINE_CONFIG:
        case VMM_PATCH_MACHINE_CONFIG:
                free(req->u.machine.cpu_hide);
                break;
        case VMM_PUT_DRIVE:
                vmm_drive_free(&req->u.drive);
                break;
        case VMM_PATCH_DRIVE:
                free(req->u.drive_update.drive_id);
                free(req->u.drive_update.path_on_host);
                break;
        case VMM_PUT_NET:
                vmm_net_free(&req->u.net);
                break;
        case VMM_PATCH_NET:
                free(req->u.net_update.iface_id);
                break;
        case VMM_PUT_VSOCK:
                free(req->u.vsock.uds_path);
                free(req->u.vsock.vsock_id);
                break;
        case VMM_PUT_SERIAL:
                free(req->u.serial_out_path);
                break;
        case VMM_PUT_LOGGER:
                vmm_logger_config_free(&req->u.logger);
                break;
        case VMM_PUT_METRICS:
                vmm_metrics_config_free(&req->u.metrics);
                break;
        case VMM_PUT_MEMORY_DUMP:
                free(req->u.memory_dump_path);
                break;
        case VMM_SNAPSHOT_CREATE:
                free(req->u.snapshot_create.snapshot_path);
                free(req->u.snapshot_create.mem_file_path);
                break;
        case VMM_SNAPSHOT_LOAD:
                vmm_snapshot_load_free(&req->u.snapshot_load);
                break;
        default:
                break;
        }
        free(req->reply.memory);
        req->reply.memory = NULL;
        free(req->reply.metrics);
        req->reply.metrics = NULL;
        if (req->reply.config) {
                vmm_config_free(req->reply.config);
                free(req->reply.config);
        }
        memset(&req->u, 0, sizeof(req->u));
        req->reply.config = NULL;
}

/* ---- the logger's file output ---- */

static void log_file_sink(void *opaque, enum log_level level, const char *line, size_t len)
{
        struct controller *c = opaque;
        int fd = atomic_load(&c->log_fd);
        ssize_t n;

        (void)level;
        /* A line cut short (a full disk, a full pipe) is ended before the next one. */
        if (c->log_torn) {
                do
                        n = write(fd, "\n", 1);
                while (n < 0 && errno == EINTR);
                if (n != 1) {
                        atomic_fetch_add(&c->log_missed, 1);
                        return;
                }
                c->log_torn = false;
        }
        do
                n = write(fd, line, len);
        while (n < 0 && errno == EINTR);
        if (n > 0 && n < (ssize_t)len)
                c->log_torn = true;
        if (n != (ssize_t)len)
                atomic_fetch_add(&c->log_missed, 1);
}

static int apply_logger(struct controller *c, const struct vmm_logger_config *l, struct error *err)
{
        if (l->log_path) {
                int fd = vmm_open_output("log", l->log_path, err);
                int old;

                if (fd < 0)
                        return fd;
                /* Detach the sink first: log_set_sink waits for a line being written. */
                log_set_sink(NULL, NULL);
                old = atomic_exchange(&c->log_fd, fd);
                c->log_torn = false; /* a new file (the sink is detached meanwhile) */
                if (old >= 0)
                        close(old);
                log_set_sink(log_file_sink, c);
        }
        if (l->has_level)
                log_set_level(l->level);
        if (l->has_show_level)
                log_set_show_level(l->show_level);
        if (l->has_show_log_origin)
                log_set_show_origin(l->show_log_origin);
        return 0;
}

/* Records the applied settings in the configuration (GET /vm/config). */
static int merge_logger(struct vmm_logger_config *dst, struct vmm_logger_config *src)
{
        dst->present = true;
        if (src->log_path) {
                free(dst->log_path);
                dst->log_path = src->log_path;
                src->log_path = NULL;
        }
        if (src->has_level) {
                dst->has_level = true;
                dst->level = src->level;
        }
        if (src->has_show_level) {
                dst->has_show_level = true;
                dst->show_level = src->show_level;
        }
        if (src->has_show_log_origin) {
                dst->has_show_log_origin = true;
                dst->show_log_origin = src->show_log_origin;
        }
        return 0;
}

/* ---- metrics ---- */

static const struct {
        const char *group;
        const char *name;
} action_metric[VMM_ACTION_COUNT] = {
    [VMM_GET_INSTANCE_INFO] = {"get_api_requests", "instance_info"},
    [VMM_GET_VERSION] = {"get_api_requests", "vmm_version"},
    [VMM_GET_MACHINE_CONFIG] = {"get_api_requests", "machine_cfg"},
    [VMM_GET_VM_CONFIG] = {"get_api_requests", "vm_config"},
    [VMM_GET_BALLOON] = {"get_api_requests", "balloon"},
    [VMM_GET_BALLOON_STATS] = {"get_api_requests", "balloon_stats"},
    [VMM_PUT_BOOT_SOURCE] = {"put_api_requests", "boot_source"},
    [VMM_PUT_MACHINE_CONFIG] = {"put_api_requests", "machine_cfg"},
    [VMM_PATCH_MACHINE_CONFIG] = {"patch_api_requests", "machine_cfg"},
    [VMM_PUT_DRIVE] = {"put_api_requests", "drive"},
    [VMM_PATCH_DRIVE] = {"patch_api_requests", "drive"},
    [VMM_PUT_NET] = {"put_api_requests", "network"},
    [VMM_PATCH_NET] = {"patch_api_requests", "network"},
    [VMM_PUT_VSOCK] = {"put_api_requests", "vsock"},
    [VMM_PUT_ENTROPY] = {"put_api_requests", "entropy"},
    [VMM_PUT_CONFIDENTIAL] = {"put_api_requests", "confidential"},
    [VMM_GET_MEMORY] = {"get_api_requests", "memory"},
    [VMM_PUT_MEMORY_DUMP] = {"put_api_requests", "memory_dump"},
    [VMM_PUT_SERIAL] = {"put_api_requests", "serial"},
    [VMM_PUT_BALLOON] = {"put_api_requests", "balloon"},
    [VMM_PATCH_BALLOON] = {"patch_api_requests", "balloon"},
    [VMM_PATCH_BALLOON_STATS] = {"patch_api_requests", "balloon_stats"},
    [VMM_PUT_LOGGER] = {"put_api_requests", "logger"},
    [VMM_PUT_METRICS] = {"put_api_requests", "metrics"},
    [VMM_INSTANCE_START] = {"put_api_requests", "actions"},
    [VMM_FLUSH_METRICS] = {"put_api_requests", "actions"},
    [VMM_SEND_CTRL_ALT_DEL] = {"put_api_requests", "actions"},
    [VMM_PAUSE] = {"patch_api_requests", "vm"},
    [VMM_RESUME] = {"patch_api_requests", "vm"},
    [VMM_SNAPSHOT_CREATE] = {"put_api_requests", "snapshot_create"},
    [VMM_SNAPSHOT_LOAD] = {"put_api_requests", "snapshot_load"},
    [VMM_GET_METRICS] = {"get_api_requests", "metrics"},
};

/* One group of API request counters: "<name>_count" and "<name>_fails", several actions
 * adding up under one name (PUT /actions). */
static void put_api_group(struct controller *c, struct metrics_writer *w, const char *group)
{
        char name[64];

        metrics_group(w, "%s", group);
        for (int a = 0; a < VMM_ACTION_COUNT; a++) {
                uint64_t count = 0, fails = 0;
                bool first = true;

                if (strcmp(action_metric[a].group, group) != 0)
                        continue;
                for (int b = 0; b < a && first; b++)
                        if (strcmp(action_metric[b].group, group) == 0 &&
                            strcmp(action_metric[b].name, action_metric[a].name) == 0)
                                first = false;
                if (!first)
                        continue;
                for (int b = a; b < VMM_ACTION_COUNT; b++) {
                        if (strcmp(action_metric[b].group, group) != 0 ||
                            strcmp(action_metric[b].name, action_metric[a].name) != 0)
                                continue;
                        count += atomic_load(&c->count[b]);
                        fails += atomic_load(&c->fails[b]);
                }
                snprintf(name, sizeof(name), "%s_count", action_metric[a].name);
                metrics_counter(w, name, count);
                snprintf(name, sizeof(name), "%s_fails", action_metric[a].name);
                metrics_counter(w, name, fails);
        }
}

static void collect_metrics(void *opaque, struct metrics_writer *w)
{
        struct controller *c = opaque;
        const struct controller_signal_counts *sig = c->p.signals;
        struct vm_device_stats devs[VMM_MAX_VIRTIO_DEVICES];
        struct vm_devices *d = c->vm ? vm_get_devices(c->vm) : NULL;
        unsigned n = vm_devices_count(d);
        struct vm_stats st;

        metrics_group(w, "api_server");
        metrics_store(w, "process_startup_time_us", c->startup_us);
        metrics_store(w, "process_startup_time_cpu_us", c->startup_cpu_us);
        put_api_group(c, w, "get_api_requests");
        put_api_group(c, w, "put_api_requests");
        put_api_group(c, w, "patch_api_requests");
        metrics_group(w, "latencies_us");
        metrics_store(w, "pause_vm", c->pause_us);
        metrics_store(w, "resume_vm", c->resume_us);
        metrics_store(w, "vmm_pause_vm", c->vmm_pause_us);
        metrics_store(w, "vmm_resume_vm", c->vmm_resume_us);
        metrics_store(w, "full_create_snapshot", c->full_snapshot_us);
        metrics_store(w, "diff_create_snapshot", c->diff_snapshot_us);
        metrics_store(w, "load_snapshot", c->load_snapshot_us);
        metrics_group(w, "logger");
        metrics_counter(w, "missed_metrics_count", metrics_missed_count(c->metrics));
        metrics_counter(w, "metrics_fails", metrics_missed_count(c->metrics));
        metrics_counter(w, "missed_log_count", atomic_load(&c->log_missed) + log_lost_count());
        /* The process ends at a fault (vmm/sandbox.h): a line written after one is rare. */
        metrics_group(w, "seccomp");
        metrics_store(w, "num_faults", c->p.seccomp_faults ? c->p.seccomp_faults() : 0);
        metrics_group(w, "signals");
        metrics_store(w, "sigbus", sig ? atomic_load(&sig->sigbus) : 0);
        metrics_store(w, "sigsegv", sig ? atomic_load(&sig->sigsegv) : 0);
        metrics_store(w, "sigxfsz", sig ? atomic_load(&sig->sigxfsz) : 0);
        metrics_store(w, "sigxcpu", sig ? atomic_load(&sig->sigxcpu) : 0);
        metrics_counter(w, "sigpipe", sig ? atomic_load(&sig->sigpipe) : 0);
        metrics_store(w, "sighup", sig ? atomic_load(&sig->sighup) : 0);
        metrics_store(w, "sigill", sig ? atomic_load(&sig->sigill) : 0);
        if (c->vm)
                vm_get_stats(c->vm, &st);
        metrics_put_vm(w, c->vm ? &st : NULL);
        for (unsigned i = 0; i < n; i++)
                vm_devices_get_stats(d, i, &devs[i]);
        metrics_put_devices(w, devs, n);
}

/* ---- configuration edits (before the start) ---- */

#define SWAP(a, b)                                                                                 \
        do {                                                                                       \
                __typeof__(a) swap_tmp_ = (a);                                                     \
                (a) = (b);                                                                         \
                (b) = swap_tmp_;                                                                   \
        } while (0)

typedef int (*edit_fn)(struct vmm_config *next, struct controller_request *req, struct error *err);

/* Applies fn to a copy of the configuration and keeps the copy only if the whole of it is
 * still valid. Strings move between the request and the copy by swapping, so whichever
 * side is dropped frees them. */
static int edit_config(struct controller *c, struct controller_request *req, edit_fn fn,
                       struct error *err)
{
        struct vmm_config next;
        int r;

        if (vmm_config_copy(&next, &c->cfg))
                return error_set(err, -ENOMEM, "out of memory");
        r = fn(&next, req, err);
        if (!r)
                r = vmm_config_validate(&next, &c->limits, err);
        if (r) {
                vmm_config_free(&next);
                return r;
        }
        vmm_config_free(&c->cfg);
        c->cfg = next;
        return 0;
}

static int edit_boot(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        struct vmm_boot_source *b = &req->u.boot;
        int r = vmm_check_file("kernel image", b->kernel_image_path, false, err);

        if (!r && b->initrd_path)
                r = vmm_check_file("initrd", b->initrd_path, false, err);
        if (r)
                return r;
        SWAP(next->boot.kernel_image_path, b->kernel_image_path);
        SWAP(next->boot.initrd_path, b->initrd_path);
        SWAP(next->boot.boot_args, b->boot_args);
        return 0;
}

static int edit_drive(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        struct vmm_drive *d = &req->u.drive;
        int r = vmm_check_file("drive", d->path_on_host, !d->is_read_only, err);

        if (r) {
                error_prefix(err, "drive '%s'", d->drive_id);
                return r;
        }
        return vmm_config_put_drive(next, d, err);
}

static int edit_net(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        return vmm_config_put_net(next, &req->u.net, err);
}

static int edit_vsock(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        (void)err;
        req->u.vsock.present = true;
        SWAP(next->vsock, req->u.vsock);
        return 0;
}

static int edit_entropy(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        (void)err;
        next->entropy = req->u.entropy;
        next->entropy.present = true;
        return 0;
}

static int edit_confidential(struct vmm_config *next, struct controller_request *req,
                             struct error *err)
{
        (void)err;
        next->confidential = req->u.confidential;
        return 0;
}

#define MEMORY_PAGE 4096

/* A debugger's peek: the page holding the address, as the host sees it (CC-8 on a protected
 * VM: the platform's ciphertext, never the plaintext of a private granule). */
static int get_memory(struct controller *c, struct controller_request *req, struct error *err)
{
        struct controller_reply *rep = &req->reply;
        uint64_t a = align_down(req->u.memory_address, MEMORY_PAGE);
        int r;

        rep->memory = malloc(MEMORY_PAGE);
        if (!rep->memory)
                return error_set(err, -ENOMEM, "out of memory");
        r = vm_host_read(c->vm, a, rep->memory, MEMORY_PAGE, err);
        if (r)
                return r;
        rep->memory_address = a;
        rep->memory_len = MEMORY_PAGE;
        return 0;
}

static int edit_serial(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        (void)err;
        SWAP(next->serial_out_path, req->u.serial_out_path);
        return 0;
}

static int edit_balloon(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        (void)err;
        next->balloon = req->u.balloon;
        next->balloon.present = true;
        return 0;
}

/* ---- runtime updates (after the start) ---- */

static int find_drive(const struct vmm_config *cfg, const char *id)
{
        for (unsigned i = 0; i < cfg->nr_drives; i++)
                if (strcmp(cfg->drives[i].drive_id, id) == 0)
                        return (int)i;
        return -1;
}

static int find_net(const struct vmm_config *cfg, const char *id)
{
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                if (strcmp(cfg->nets[i].iface_id, id) == 0)
                        return (int)i;
        return -1;
}

static int patch_drive(struct controller *c, struct vmm_drive_update *u, struct error *err)
{
        int i = find_drive(&c->cfg, u->drive_id);
        struct vmm_rate_limiter rl;
        int r;

        if (i < 0)
                return error_set(err, -ENOENT,
                                 "Unable to patch the block device: drive '%s' "
                                 "does not exist.",
                                 u->drive_id);
        rl = c->cfg.drives[i].rate_limiter;
        if (u->has_rate_limiter)
                vmm_rate_limiter_merge(&rl, &u->rate_limiter);
        r = vm_devices_update_drive(vm_get_devices(c->vm), u->drive_id, u->path_on_host,
                                    u->has_rate_limiter ? &rl : NULL, err);
        if (r) {
                error_prefix(err, "Unable to patch the block device '%s'", u->drive_id);
                return r;
        }
        if (u->path_on_host)
                SWAP(c->cfg.drives[i].path_on_host, u->path_on_host);
        c->cfg.drives[i].rate_limiter = rl;
        return 0;
}

static int patch_net(struct controller *c, struct vmm_net_update *u, struct error *err)
{
        int i = find_net(&c->cfg, u->iface_id);
        struct vmm_rate_limiter rx, tx;
        int r;

        if (i < 0)
                return error_set(err, -ENOENT,
                                 "Unable to patch the network interface: '%s' "
                                 "does not exist.",
                                 u->iface_id);
        rx = c->cfg.nets[i].rx_rate_limiter;
        tx = c->cfg.nets[i].tx_rate_limiter;
        if (u->has_rx)
                vmm_rate_limiter_merge(&rx, &u->rx);
        if (u->has_tx)
                vmm_rate_limiter_merge(&tx, &u->tx);
        r = vm_devices_update_net(vm_get_devices(c->vm), u->iface_id, &rx, &tx, err);
        if (r)
                return r;
        c->cfg.nets[i].rx_rate_limiter = rx;
        c->cfg.nets[i].tx_rate_limiter = tx;
        return 0;
}

static struct virtio_balloon *running_balloon(struct controller *c, struct error *err)
{
        struct virtio_balloon *b;

        if (!c->cfg.balloon.present) {
                error_set(err, -ENOENT, MSG_NO_BALLOON);
                return NULL;
        }
        b = vm_devices_balloon(vm_get_devices(c->vm));
        if (!b)
                error_set(err, -ENODEV, "The balloon device is not running.");
        return b;
}

static int patch_balloon(struct controller *c, uint32_t amount_mib, struct error *err)
{
        struct virtio_balloon *b = running_balloon(c, err);
        int r;

        if (!b)
                return err->code;
        if (amount_mib > c->cfg.machine.mem_size_mib)
                return error_config(err, "balloon size %u MiB exceeds the guest memory of %llu MiB",
                                    amount_mib, (unsigned long long)c->cfg.machine.mem_size_mib);
        r = vmm_config_check_balloon_target(&c->cfg, amount_mib, err); /* CC-13 */
        if (r)
                return r;
        virtio_balloon_set_target(b, amount_mib);
        c->cfg.balloon.amount_mib = amount_mib;
        return 0;
}

static int patch_balloon_stats(struct controller *c, uint32_t seconds, struct error *err)
{
        struct virtio_balloon *b = running_balloon(c, err);
        int r;

        if (!b)
                return err->code;
        if (!c->cfg.balloon.stats_polling_interval_s)
                return error_set(err, -EINVAL,
                                 "Balloon statistics were not enabled when the device was "
                                 "configured; they cannot be enabled after boot.");
        if (!seconds)
                return error_set(err, -EINVAL, "Balloon statistics cannot be disabled after boot.");
        r = virtio_balloon_set_stats_interval(b, seconds);
        if (r)
                return error_set(err, r, "cannot change the statistics interval: %s", strerror(-r));
        c->cfg.balloon.stats_polling_interval_s = seconds;
        return 0;
}

static int get_balloon_stats(struct controller *c, struct controller_reply *rep, struct error *err)
{
        struct virtio_balloon *b;

        if (!c->cfg.balloon.present)
                return error_set(err, -ENOENT, MSG_NO_BALLOON);
        if (!c->cfg.balloon.stats_polling_interval_s)
                return error_set(err, -EINVAL,
                                 "Statistics for the balloon device are not enabled.");
        b = running_balloon(c, err);
        if (!b)
                return err->code;
        virtio_balloon_get_stats(b, &rep->balloon_stats);
        return 0;
}

static int pause_or_resume(struct controller *c, bool pause)
{
        uint64_t t0 = clock_ns(CLOCK_MONOTONIC);

        if (pause && c->state == CONTROLLER_RUNNING) {
                vm_pause(c->vm);
                c->state = CONTROLLER_PAUSED;
                c->vmm_pause_us = (clock_ns(CLOCK_MONOTONIC) - t0) / 1000;
                LOG_INFO("microVM paused in %llu us", (unsigned long long)c->vmm_pause_us);
        } else if (!pause && c->state == CONTROLLER_PAUSED) {
                vm_resume(c->vm);
                c->state = CONTROLLER_RUNNING;
                c->vmm_resume_us = (clock_ns(CLOCK_MONOTONIC) - t0) / 1000;
                LOG_INFO("microVM resumed in %llu us", (unsigned long long)c->vmm_resume_us);
        }
        return 0;
}

/* ---- execution ---- */

enum phase { ANY, BEFORE_START, AFTER_START };

static enum phase phase_of(enum vmm_action a)
{
        switch (a) {
        case VMM_GET_INSTANCE_INFO:
        case VMM_GET_VERSION:
        case VMM_GET_MACHINE_CONFIG:
        case VMM_GET_VM_CONFIG:
        case VMM_GET_BALLOON:
                return ANY;
        case VMM_GET_BALLOON_STATS:
        case VMM_PATCH_DRIVE:
        case VMM_PATCH_NET:
        case VMM_PATCH_BALLOON:
        case VMM_PATCH_BALLOON_STATS:
        case VMM_FLUSH_METRICS:
        case VMM_SEND_CTRL_ALT_DEL:
        case VMM_PAUSE:
        case VMM_RESUME:
        case VMM_GET_MEMORY:
        case VMM_PUT_MEMORY_DUMP:
        case VMM_SNAPSHOT_CREATE:
                return AFTER_START;
        case VMM_GET_METRICS:
                return ANY;
        default:
                return BEFORE_START;
        }
}

static int copy_config(struct controller *c, struct controller_reply *rep, struct error *err)
{
        rep->config = malloc(sizeof(*rep->config));
        if (!rep->config || vmm_config_copy(rep->config, &c->cfg)) {
                free(rep->config);
                rep->config = NULL;
                return error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int run(struct controller *c, struct controller_request *req, struct error *err)
{
        struct controller_reply *rep = &req->reply;
        int r;

        switch (req->action) {
        case VMM_GET_INSTANCE_INFO:
                snprintf(rep->id, sizeof(rep->id), "%s", c->instance_id);
                rep->state = c->state;
                rep->first_exit_ns = c->vm ? vm_first_exit_ns(c->vm) : 0;
                return 0;
        case VMM_GET_VERSION:
                return 0;
        case VMM_GET_MACHINE_CONFIG:
        case VMM_GET_VM_CONFIG:
                return copy_config(c, rep, err);
        case VMM_GET_BALLOON:
                if (!c->cfg.balloon.present)
                        return error_set(err, -ENOENT, MSG_NO_BALLOON);
                return copy_config(c, rep, err);
        case VMM_GET_BALLOON_STATS:
                return get_balloon_stats(c, rep, err);
        case VMM_PUT_BOOT_SOURCE:
                return edit_config(c, req, edit_boot, err);
        case VMM_PUT_MACHINE_CONFIG:
        case VMM_PATCH_MACHINE_CONFIG:
                req->u.machine.update.cpu_hide = req->u.machine.cpu_hide;
                return vmm_config_apply_machine(&c->cfg, &req->u.machine.update, &c->limits, err);
        case VMM_PUT_DRIVE:
                return edit_config(c, req, edit_drive, err);
        case VMM_PUT_NET:
                return edit_config(c, req, edit_net, err);
        case VMM_PUT_VSOCK:
                return edit_config(c, req, edit_vsock, err);
        case VMM_PUT_ENTROPY:
                return edit_config(c, req, edit_entropy, err);
        case VMM_PUT_CONFIDENTIAL:
                return edit_config(c, req, edit_confidential, err);
        case VMM_GET_MEMORY:
                return get_memory(c, req, err);
        case VMM_PUT_MEMORY_DUMP:
                return vm_memory_dump(c->vm, req->u.memory_dump_path, err);
        case VMM_PUT_SERIAL:
                return edit_config(c, req, edit_serial, err);
        case VMM_PUT_BALLOON:
                return edit_config(c, req, edit_balloon, err);
        case VMM_PUT_LOGGER:
                r = apply_logger(c, &req->u.logger, err);
                return r ? r : merge_logger(&c->cfg.logger, &req->u.logger);
        case VMM_PUT_METRICS:
                r = metrics_configure(c->metrics, &req->u.metrics, c->instance_id, err);
                if (r)
                        return r;
                SWAP(c->cfg.metrics, req->u.metrics);
                c->cfg.metrics.present = true;
                return 0;
        case VMM_INSTANCE_START:
                return controller_start(c, clock_ns(CLOCK_MONOTONIC),
                                        clock_ns(CLOCK_PROCESS_CPUTIME_ID), err);
        case VMM_PATCH_DRIVE:
                return patch_drive(c, &req->u.drive_update, err);
        case VMM_PATCH_NET:
                return patch_net(c, &req->u.net_update, err);
        case VMM_PATCH_BALLOON:
                return patch_balloon(c, req->u.balloon_amount_mib, err);
        case VMM_PATCH_BALLOON_STATS:
                return patch_balloon_stats(c, req->u.balloon_stats_interval_s, err);
        case VMM_FLUSH_METRICS:
                return metrics_flush(c->metrics, err);
        case VMM_SEND_CTRL_ALT_DEL:
                r = vm_send_ctrl_alt_del(c->vm);
                return r ? error_set(err, r, "the i8042 cannot take the key sequence now: %s",
                                     strerror(-r))
                         : 0;
        case VMM_PAUSE:
        case VMM_RESUME:
                return pause_or_resume(c, req->action == VMM_PAUSE);
        case VMM_SNAPSHOT_CREATE:
                return controller_snapshot_create(c, &req->u.snapshot_create, err);
        case VMM_SNAPSHOT_LOAD:
                return controller_snapshot_load(c, &req->u.snapshot_load, err);
        case VMM_GET_METRICS:
                r = metrics_read(c->metrics, &rep->metrics);
                return r ? error_set(err, r, "metrics: %s", strerror(-r)) : 0;
        default:
                return error_set(err, -ENOSYS, "internal: unknown action %d", (int)req->action);
        }
}

void controller_execute(struct controller *c, struct controller_request *req)
{
        struct controller_reply *rep = &req->reply;
        enum phase ph;
        int r;

        if ((unsigned)req->action >= VMM_ACTION_COUNT) {
                rep->status = error_set(&rep->err, -ENOSYS, "internal: unknown action");
                return;
        }
        ph = phase_of(req->action);
        atomic_fetch_add(&c->count[req->action], 1);
        error_clear(&rep->err);
        if (ph == BEFORE_START && c->state != CONTROLLER_NOT_STARTED)
                r = error_set(&rep->err, -EPERM, MSG_AFTER_START);
        else if (ph == AFTER_START && c->state == CONTROLLER_NOT_STARTED)
                r = error_set(&rep->err, -EPERM, MSG_BEFORE_START);
        else
                r = run(c, req, &rep->err);
        if (r && !rep->err.code)
                error_set(&rep->err, r, "%s", strerror(-r));
        rep->status = r;
        /* Once the machine has a resource, a snapshot can no longer be loaded into it. */
        if (!r && ph == BEFORE_START && req->action != VMM_PUT_LOGGER &&
            req->action != VMM_PUT_METRICS && req->action != VMM_PUT_SERIAL &&
            req->action != VMM_SNAPSHOT_LOAD)
                c->configured = true;
        if (r)
                atomic_fetch_add(&c->fails[req->action], 1);
}

/* ---- the queue ---- */

int controller_submit(struct controller *c, struct controller_request *req)
{
        uint64_t one = 1;

        req->next = NULL;
        pthread_mutex_lock(&c->lock);
        if (c->closed) {
                pthread_mutex_unlock(&c->lock);
                return -ESHUTDOWN;
        }
        if (c->tail)
                c->tail->next = req;
        else
                c->head = req;
        c->tail = req;
        pthread_mutex_unlock(&c->lock);
        if (write(c->wake_fd, &one, sizeof(one)) < 0)
                LOG_ERROR("controller eventfd: %s", strerror(errno));
        return 0;
}

static struct controller_request *pop(struct controller *c)
{
        struct controller_request *req;

        pthread_mutex_lock(&c->lock);
        req = c->head;
        if (req) {
                c->head = req->next;
                if (!c->head)
                        c->tail = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        return req;
}

static void finish(struct controller *c, struct controller_request *req)
{
        /* API-level latencies of the last pause / resume (Firecracker's latencies_us). */
        if (!req->reply.status && req->received_ns &&
            (req->action == VMM_PAUSE || req->action == VMM_RESUME)) {
                uint64_t us = (clock_ns(CLOCK_MONOTONIC) - req->received_ns) / 1000;
                if (req->action == VMM_PAUSE)
                        c->pause_us = us;
                else
                        c->resume_us = us;
        }
        /* After done the request may be gone (its owner frees it on another thread). */
        if (req->done)
                req->done(req);
}

static void on_wake(void *opaque, uint32_t events)
{
        struct controller *c = opaque;
        struct controller_request *req;
        uint64_t v;

        (void)events;
        if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                LOG_ERROR("controller eventfd: %s", strerror(errno));
        while ((req = pop(c))) {
                controller_execute(c, req);
                finish(c, req);
        }
}

void controller_close(struct controller *c)
{
        struct controller_request *req;

        pthread_mutex_lock(&c->lock);
        c->closed = true;
        pthread_mutex_unlock(&c->lock);
        while ((req = pop(c))) {
                error_clear(&req->reply.err);
                req->reply.status = error_set(&req->reply.err, -ESHUTDOWN, MSG_SHUTDOWN);
                finish(c, req);
        }
}

void controller_count_rejected(struct controller *c, enum vmm_action action)
{
        if ((unsigned)action >= VMM_ACTION_COUNT)
                return;
        atomic_fetch_add(&c->count[action], 1);
        atomic_fetch_add(&c->fails[action], 1);
}

/* ---- life cycle ---- */

int controller_thread_init(struct controller *c, enum vmm_thread_role role)
{
        return c->p.thread_init ? c->p.thread_init(c->p.thread_opaque, role) : 0;
}

static int vm_thread_init(void *opaque, enum vmm_thread_role role)
{
        return controller_thread_init(opaque, role);
}

static void on_vm_stop(void *opaque, int exit_code)
{
        struct controller *c = opaque;

        if (c->p.on_exit)
                c->p.on_exit(c->p.opaque, exit_code);
}

/*
 * Builds and starts the VM: from c->cfg (a boot), or from a snapshot (cfg: its
 * configuration, taken over on success; rs: its state). On success the VM runs (a boot) or
 * waits Paused (a restore); on failure nothing changed.
 */
static int controller_build(struct controller *c, struct vmm_config *cfg,
                            const struct vm_restore *rs, uint64_t start_ns, uint64_t start_cpu_ns,
                            struct error *err)
{
        struct vm_params params = {
            .cfg = &c->vm_cfg,
            .loop = c->p.loop,
            .kvm_path = c->p.kvm_path,
            .console_in_fd = c->p.console_in_fd,
            .console_out_fd = c->p.console_out_fd,
            .start_ns = start_ns,
            .start_cpu_ns = start_cpu_ns,
            .on_stop = on_vm_stop,
            .opaque = c,
            .restore = rs,
            .thread_init = c->p.thread_init ? vm_thread_init : NULL,
        };
        int r;

        if (vmm_config_copy(&c->vm_cfg, cfg ? cfg : &c->cfg))
                return error_set(err, -ENOMEM, "out of memory");
        r = vm_create(&params, err, &c->vm);
        if (!r) {
                r = vm_start(c->vm, err);
                if (r) {
                        vm_destroy(c->vm);
                        c->vm = NULL;
                }
        }
        if (r) {
                vmm_config_free(&c->vm_cfg);
                return r;
        }
        if (cfg) {
                vmm_config_free(&c->cfg);
                c->cfg = *cfg;
                vmm_config_init(cfg);
        }
        c->state = rs ? CONTROLLER_PAUSED : CONTROLLER_RUNNING;
        return 0;
}

int controller_start(struct controller *c, uint64_t start_ns, uint64_t start_cpu_ns,
                     struct error *err)
{
        int r;

        if (c->state != CONTROLLER_NOT_STARTED)
                return error_set(err, -EALREADY, MSG_AFTER_START);
        if (!c->cfg.boot.kernel_image_path)
                return error_config(err, "Cannot start microvm without kernel configuration.");
        r = vmm_config_validate(&c->cfg, &c->limits, err);
        if (!r)
                r = controller_build(c, NULL, NULL, start_ns, start_cpu_ns, err);
        if (r)
                return r;
        LOG_INFO("microVM started");
        return 0;
}

/* ---- snapshots ---- */

void vmm_snapshot_load_free(struct vmm_snapshot_load *l)
{
        free(l->snapshot_path);
        free(l->mem_file_path);
        for (unsigned i = 0; i < l->nr_net_overrides; i++) {
                free(l->net_overrides[i].iface_id);
                free(l->net_overrides[i].host_dev_name);
        }
        free(l->vsock_uds_path);
        memset(l, 0, sizeof(*l));
}

int controller_snapshot_create(struct controller *c, const struct vmm_snapshot_create *s,
                               struct error *err)
{
        uint64_t t0 = clock_ns(CLOCK_MONOTONIC), us;
        int r;

        if (c->state != CONTROLLER_PAUSED)
                return error_set(err, -EPERM, MSG_NOT_PAUSED);
        r = vm_snapshot(c->vm, &c->cfg, s->diff, s->snapshot_path, s->mem_file_path, err);
        if (r)
                return r;
        us = (clock_ns(CLOCK_MONOTONIC) - t0) / 1000;
        if (s->diff)
                c->diff_snapshot_us = us;
        else
                c->full_snapshot_us = us;
        LOG_INFO("%s snapshot created in %llu us", s->diff ? "Diff" : "Full",
                 (unsigned long long)us);
        return 0;
}

/* The snapshot's machine as this load wants it: overrides, and the process's own outputs. */
static int load_config(struct controller *c, const struct vmm_snapshot_load *l,
                       struct vmm_config *cfg, struct error *err)
{
        for (unsigned i = 0; i < l->nr_net_overrides; i++) {
                int n = find_net(cfg, l->net_overrides[i].iface_id);

                if (n < 0)
                        return error_config(err,
                                            "network_overrides: the snapshot has no network "
                                            "interface '%s'",
                                            l->net_overrides[i].iface_id);
                if (vmm_config_set_str(&cfg->nets[n].host_dev_name,
                                       l->net_overrides[i].host_dev_name))
                        return error_set(err, -ENOMEM, "out of memory");
        }
        if (l->vsock_uds_path) {
                if (!cfg->vsock.present)
                        return error_config(err, "vsock_override: the snapshot has no vsock "
                                                 "device");
                if (vmm_config_set_str(&cfg->vsock.uds_path, l->vsock_uds_path))
                        return error_set(err, -ENOMEM, "out of memory");
        }
        if (cfg->machine.huge_pages && !l->huge_pages_none)
                return error_config(err, "the snapshot's guest memory used 2 MiB huge pages, "
                                         "which a memory file cannot back: load it with "
                                         "huge_pages None");
        if (l->huge_pages_none)
                cfg->machine.huge_pages = false;
        cfg->machine.track_dirty_pages = l->track_dirty_pages;
        if (cfg->confidential.platform != CC_PLATFORM_NONE)
                return error_config(err, "the snapshot describes a protected VM (CC-13)");
        /* This process's console, logger and metrics, not the saved process's. */
        if (vmm_config_set_str(&cfg->serial_out_path, c->cfg.serial_out_path))
                return error_set(err, -ENOMEM, "out of memory");
        cfg->serial_in = c->cfg.serial_in;
        vmm_logger_config_free(&cfg->logger);
        vmm_metrics_config_free(&cfg->metrics);
        cfg->logger = c->cfg.logger;
        if (cfg->logger.log_path && !(cfg->logger.log_path = strdup(cfg->logger.log_path)))
                return error_set(err, -ENOMEM, "out of memory");
        if (vmm_metrics_config_copy(&cfg->metrics, &c->cfg.metrics))
                return error_set(err, -ENOMEM, "out of memory");
        return vmm_config_validate(cfg, &c->limits, err);
}

/* The snapshot must be of a machine this host can run. */
static int check_info(const struct snapshot_info *info, struct error *err)
{
        char vendor[13];

        if (strcmp(info->arch, "x86_64") != 0)
                return error_config(err, "the snapshot is of a %s machine; this VMM runs x86_64",
                                    info->arch);
        x86_host_cpu_vendor(vendor);
        if (strcmp(info->cpu_vendor, vendor) != 0)
                return error_config(err,
                                    "the snapshot was taken on a %s host; this host is %s: its "
                                    "vCPU state cannot be restored here",
                                    info->cpu_vendor, vendor);
        return 0;
}

int controller_snapshot_load(struct controller *c, const struct vmm_snapshot_load *l,
                             struct error *err)
{
        uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
        struct snapbuf_reader r, sec;
        struct snapshot_info info;
        struct vmm_config cfg;
        uint8_t *payload = NULL;
        size_t len;
        int ret;

        if (c->state != CONTROLLER_NOT_STARTED)
                return error_set(err, -EPERM, MSG_AFTER_START);
        if (c->configured)
                return error_set(err, -EPERM, MSG_LOAD_CONFIGURED);
        vmm_config_init(&cfg);
        ret = snapshot_read_state(l->snapshot_path, &payload, &len, err);
        if (ret) {
                error_prefix(err, "Cannot load the snapshot");
                return ret;
        }
        snapbuf_reader_init(&r, payload, len);
        if (snapbuf_get_section(&r, SNAPSHOT_TAG_INFO, &sec, "INFO") &&
            !snapshot_info_load(&sec, &info))
                snapbuf_merge(&r, &sec);
        if (snapbuf_ok(&r) && snapbuf_get_section(&r, SNAPSHOT_TAG_CONF, &sec, "CONF")) {
                vmm_config_free(&cfg);
                if (!snapshot_config_load(&sec, &cfg))
                        snapbuf_merge(&r, &sec);
        }
        if (!snapbuf_ok(&r))
                ret = error_config(err, "snapshot state file '%s': %s", l->snapshot_path, r.err);
        if (!ret)
                ret = check_info(&info, err);
        if (!ret)
                ret = load_config(c, l, &cfg, err);
        if (!ret) {
                struct vm_restore rs = {.info = &info,
                                        .state = &r,
                                        .mem_path = l->mem_file_path,
                                        .clock_realtime = l->clock_realtime};

                ret = controller_build(c, &cfg, &rs, t0, clock_ns(CLOCK_PROCESS_CPUTIME_ID), err);
        }
        free(payload);
        if (ret) {
                vmm_config_free(&cfg);
                error_prefix(err, "Cannot load the snapshot");
                return ret;
        }
        /* Firecracker's GET /vm/config after a restore: the VM was not booted from a kernel
         * in this process, so it has no boot source. */
        free(c->cfg.boot.kernel_image_path);
        free(c->cfg.boot.initrd_path);
        free(c->cfg.boot.boot_args);
        memset(&c->cfg.boot, 0, sizeof(c->cfg.boot));
        c->load_snapshot_us = (clock_ns(CLOCK_MONOTONIC) - t0) / 1000;
        LOG_INFO("snapshot %s loaded in %llu us (%s)", l->snapshot_path,
                 (unsigned long long)c->load_snapshot_us, snapshot_type_name(info.type));
        if (l->resume_vm)
                pause_or_resume(c, false);
        return 0;
}

enum controller_state controller_get_state(const struct controller *c)
{
        return c->state;
}

/* Whether the configuration describes a machine (not only the process's outputs). */
static bool machine_configured(const struct vmm_config *cfg)
{
        const struct vmm_machine_config *m = &cfg->machine;

        return cfg->boot.kernel_image_path || cfg->nr_drives || cfg->nr_nets ||
               cfg->vsock.present || cfg->balloon.present || cfg->entropy.present ||
               cfg->confidential.platform != CC_PLATFORM_NONE ||
               m->vcpu_count != VMM_DEFAULT_VCPUS || m->mem_size_mib != VMM_DEFAULT_MEM_MIB ||
               m->huge_pages || m->cpu_hide || m->track_dirty_pages;
}

int controller_create(const struct controller_params *p, struct vmm_config *cfg, struct error *err,
                      struct controller **out)
{
        struct controller *c = calloc(1, sizeof(*c));
        uint64_t now = clock_ns(CLOCK_MONOTONIC), now_cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        int r;

        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        c->p = *p;
        snprintf(c->instance_id, sizeof(c->instance_id), "%s",
                 p->instance_id ? p->instance_id : "anonymous-instance");
        c->p.instance_id = c->instance_id;
        c->cfg = *cfg;
        vmm_config_init(cfg);
        c->configured = machine_configured(&c->cfg);
        vmm_host_limits_get(&c->limits, 0);
        atomic_init(&c->log_fd, -1);
        pthread_mutex_init(&c->lock, NULL);
        c->startup_us = p->process_start_ns && now > p->process_start_ns
                            ? (now - p->process_start_ns) / 1000
                            : 0;
        c->startup_cpu_us =
            now_cpu > p->process_start_cpu_ns ? (now_cpu - p->process_start_cpu_ns) / 1000 : 0;
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->wake_fd < 0) {
                r = error_set(err, -errno, "eventfd: %s", strerror(errno));
                goto fail;
        }
        r = event_loop_add(p->loop, c->wake_fd, EPOLLIN, on_wake, c);
        if (r) {
                close(c->wake_fd);
                c->wake_fd = -1;
                error_set(err, r, "event loop: %s", strerror(-r));
                goto fail;
        }
        if (metrics_create(p->loop, collect_metrics, c, &c->metrics)) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        /* Settings from the command line or the config file. */
        if (c->cfg.logger.present) {
                r = apply_logger(c, &c->cfg.logger, err);
                if (r)
                        goto fail;
        }
        if (c->cfg.metrics.present) {
                r = metrics_configure(c->metrics, &c->cfg.metrics, c->instance_id, err);
                if (r)
                        goto fail;
        }
        *out = c;
        return 0;
fail:
        c->closed = true;
        controller_destroy(c);
        return r;
}

void controller_log_startup_stats(struct controller *c)
{
        if (c->vm)
                vm_log_startup_stats(c->vm);
}

void controller_destroy(struct controller *c)
{
        struct error err = {0};
        int fd;

        if (!c)
                return;
        /* The last line includes the VM's final counters. */
        if (c->metrics && metrics_flush(c->metrics, &err))
                LOG_WARN("%s", err.msg);
        vm_destroy(c->vm);
        metrics_destroy(c->metrics);
        if (c->wake_fd >= 0) {
                event_loop_remove(c->p.loop, c->wake_fd);
                close(c->wake_fd);
        }
        fd = atomic_load(&c->log_fd);
        if (fd >= 0) {
                log_set_sink(NULL, NULL);
                close(fd);
        }
        vmm_config_free(&c->cfg);
        vmm_config_free(&c->vm_cfg);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

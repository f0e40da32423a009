#include "controller_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/file.h"
#include "common/log.h"
#include "vm_devices.h"
#include "metrics.h"
#include "vm.h"

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

/* ---- what a request owns (the CLEAR column of controller_actions.def) ---- */

static void clear_none(struct controller_request *req)
{
        (void)req;
}

static void clear_boot(struct controller_request *req)
{
        free(req->u.boot.kernel_image_path);
        free(req->u.boot.initrd_path);
        free(req->u.boot.boot_args);
}

static void clear_machine(struct controller_request *req)
{
        free(req->u.machine.cpu_hide);
        free(req->u.machine.cpu_template_data);
}

static void clear_cpu_config(struct controller_request *req)
{
        free(req->u.cpu_config);
}

static void clear_drive(struct controller_request *req)
{
        vmm_drive_free(&req->u.drive);
}

static void clear_pmem(struct controller_request *req)
{
        vmm_pmem_free(&req->u.pmem);
}

static void clear_pmem_update(struct controller_request *req)
{
        free(req->u.pmem_update.id);
}

static void clear_drive_update(struct controller_request *req)
{
        free(req->u.drive_update.drive_id);
        free(req->u.drive_update.path_on_host);
}

static void clear_net(struct controller_request *req)
{
        vmm_net_free(&req->u.net);
}

static void clear_net_update(struct controller_request *req)
{
        free(req->u.net_update.iface_id);
}

static void clear_vsock(struct controller_request *req)
{
        free(req->u.vsock.uds_path);
        free(req->u.vsock.vsock_id);
}

static void clear_serial(struct controller_request *req)
{
        free(req->u.serial.out_path);
}

static void clear_mmds_config(struct controller_request *req)
{
        for (unsigned i = 0; i < req->u.mmds_config.nr_ifaces; i++)
                free(req->u.mmds_config.ifaces[i]);
        free(req->u.mmds_config.ifaces);
}

static void clear_mmds_data(struct controller_request *req)
{
        free(req->u.mmds_data.json);
}

static void clear_logger(struct controller_request *req)
{
        vmm_logger_config_free(&req->u.logger);
}

static void clear_metrics(struct controller_request *req)
{
        vmm_metrics_config_free(&req->u.metrics);
}

static void clear_memory_dump(struct controller_request *req)
{
        free(req->u.memory_dump_path);
}

static void clear_snapshot_create(struct controller_request *req)
{
        free(req->u.snapshot_create.snapshot_path);
        free(req->u.snapshot_create.mem_file_path);
}

static void clear_snapshot_load(struct controller_request *req)
{
        vmm_snapshot_load_free(&req->u.snapshot_load);
}

/* ---- handlers that act on the controller (RUN in controller_actions.def) ---- */

static int act_get_instance_info(struct controller *c, struct controller_request *req,
                                 struct error *err)
{
        struct controller_reply *rep = &req->reply;

        (void)err;
        snprintf(rep->id, sizeof(rep->id), "%s", c->instance_id);
        rep->first_exit_ns = c->vm ? vm_first_exit_ns(c->vm) : 0;
        return 0;
}

static int act_nothing(struct controller *c, struct controller_request *req, struct error *err)
{
        (void)c;
        (void)req;
        (void)err;
        return 0;
}

static int act_copy_config(struct controller *c, struct controller_request *req, struct error *err)
{
        struct controller_reply *rep = &req->reply;

        rep->config = malloc(sizeof(*rep->config));
        if (!rep->config || vmm_config_copy(rep->config, &c->cfg)) {
                free(rep->config);
                rep->config = NULL;
                return error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int act_get_balloon(struct controller *c, struct controller_request *req, struct error *err)
{
        if (!c->cfg.balloon.present)
                return error_set(err, -ENOENT, MSG_NO_BALLOON);
        return act_copy_config(c, req, err);
}

#define MEMORY_PAGE 4096

/* A debugger's peek: the page holding the address, as the host sees it (CC-8 on a protected
 * VM: the platform's ciphertext, never the plaintext of a private granule). */
static int act_get_memory(struct controller *c, struct controller_request *req, struct error *err)
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

/* ---- the metadata service's data store ---- */

/* Before the start any use creates the store (Firecracker's mmds_or_default); after it, the
 * store exists only if something used it before or the VM's configuration has the service. */
static int mmds_ready(struct controller *c, struct error *err)
{
        if (c->state == CONTROLLER_NOT_STARTED)
                c->mmds_used = true;
        return c->mmds_used ? 0 : error_set(err, -ENODATA, MSG_MMDS_NOT_INITIALIZED);
}

static int act_get_mmds(struct controller *c, struct controller_request *req, struct error *err)
{
        size_t len;
        int r = mmds_ready(c, err);

        if (!r && mmds_get(c->mmds, &req->reply.mmds, &len))
                r = error_set(err, -ENOMEM, "out of memory");
        return r;
}

/* PUT (replace) or PATCH (merge) with Firecracker's answers; -EFBIG is its 413. */
static int write_mmds(struct controller *c, struct controller_request *req, bool patch,
                      struct error *err)
{
        char msg[128];
        int r = mmds_ready(c, err);

        if (r)
                return r;
        r = (patch ? mmds_patch : mmds_put)(c->mmds, req->u.mmds_data.json, req->u.mmds_data.len,
                                            msg, sizeof(msg));
        switch (r) {
        case 0:
                return 0;
        case -EFBIG:
                return error_set(err, r,
                                 "MMDS limit exceeded error: The MMDS patch request doesn't fit.");
        case -ENODATA:
                return error_set(err, r, MSG_MMDS_NOT_INITIALIZED);
        case -EINVAL:
                return error_set(err, r,
                                 "An error occurred when deserializing the json body of a "
                                 "request: %s.",
                                 msg);
        default:
                return error_set(err, r, "MMDS error: %s", strerror(-r));
        }
}

static int act_put_mmds(struct controller *c, struct controller_request *req, struct error *err)
{
        return write_mmds(c, req, false, err);
}

static int act_patch_mmds(struct controller *c, struct controller_request *req, struct error *err)
{
        return write_mmds(c, req, true, err);
}

/* ---- runtime updates (after the start) ---- */

int controller_find_drive(const struct vmm_config *cfg, const char *id)
{
        for (unsigned i = 0; i < cfg->nr_drives; i++)
                if (strcmp(cfg->drives[i].drive_id, id) == 0)
                        return (int)i;
        return -1;
}

int controller_find_net(const struct vmm_config *cfg, const char *id)
{
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                if (strcmp(cfg->nets[i].iface_id, id) == 0)
                        return (int)i;
        return -1;
}

/* Firecracker's update_block_device and its words: neither a path nor a limiter is an
 * update of a vhost-user drive (a virtio drive refuses it), then the new file, opened as the
 * drive opens it, then the limiter. */
#define PATCH_DRIVE_FAIL "Drive config error: Unable to patch the block device: "
#define PATCH_DRIVE_HINT " Please verify the request arguments."

static int patch_drive(struct controller *c, struct vmm_drive_update *u, struct error *err)
{
        int i = controller_find_drive(&c->cfg, u->drive_id);
        struct vmm_rate_limiter rl;
        char why[512];
        int r;

        if (i < 0)
                return error_set(err, -ENOENT,
                                 PATCH_DRIVE_FAIL "Failed perform action on device: Device not "
                                                  "found" PATCH_DRIVE_HINT);
        if (!u->path_on_host && !u->has_rate_limiter)
                return error_config(err, PATCH_DRIVE_FAIL "Block: Running method expected "
                                                          "different backend." PATCH_DRIVE_HINT);
        if (u->path_on_host) {
                r = controller_check_file("drive", u->path_on_host, !c->cfg.drives[i].is_read_only,
                                          FILE_REGULAR | FILE_BLOCK, why, sizeof(why));
                if (r)
                        return error_config(err,
                                            PATCH_DRIVE_FAIL "Block: Virtio backend error: Error "
                                                             "manipulating the backing file: %s "
                                                             "%s" PATCH_DRIVE_HINT,
                                            why, u->path_on_host);
        }
        rl = c->cfg.drives[i].rate_limiter;
        if (u->has_rate_limiter)
                vmm_rate_limiter_merge(&rl, &u->rate_limiter);
        r = vm_devices_update_drive(vm_get_devices(c->vm), u->drive_id, u->path_on_host,
                                    u->has_rate_limiter ? &rl : NULL, err);
        if (r) {
                error_prefix(err, "Drive config error: Unable to patch the block device: Block");
                return r;
        }
        if (u->path_on_host)
                SWAP(c->cfg.drives[i].path_on_host, u->path_on_host);
        c->cfg.drives[i].rate_limiter = rl;
        return 0;
}

static int patch_net(struct controller *c, struct vmm_net_update *u, struct error *err)
{
        int i = controller_find_net(&c->cfg, u->iface_id);
        struct vmm_rate_limiter rx, tx;
        int r;

        if (i < 0)
                return error_set(err, -ENOENT,
                                 "Network config error: Unable to update the net device: Failed "
                                 "perform action on device: Device not found");
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

static int patch_pmem(struct controller *c, struct vmm_pmem_update *u, struct error *err)
{
        struct vmm_rate_limiter rl;
        int i;

        for (i = 0; i < (int)c->cfg.nr_pmems; i++)
                if (strcmp(c->cfg.pmems[i].id, u->id) == 0)
                        break;
        if (i == (int)c->cfg.nr_pmems)
                return error_set(err, -ENOENT,
                                 "Unable to patch the pmem device: pmem '%s' does not exist.",
                                 u->id);
        rl = c->cfg.pmems[i].rate_limiter;
        if (u->has_rate_limiter)
                vmm_rate_limiter_merge(&rl, &u->rate_limiter);
        if (vm_devices_update_pmem(vm_get_devices(c->vm), u->id, &rl) < 0)
                return error_set(err, -ENOENT,
                                 "Unable to patch the pmem device: '%s' is not "
                                 "attached.",
                                 u->id);
        c->cfg.pmems[i].rate_limiter = rl;
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

/* Free page hinting, with Firecracker's messages: its "Balloon update error" wraps a
 * missing device ("Failed perform action on device: Device not found") and the device's
 * refusals ("Balloon: ..."). */
#define MSG_HINTING "Balloon update error: "

static struct virtio_balloon *hinting_balloon(struct controller *c, struct error *err)
{
        struct virtio_balloon *b = NULL;

        if (c->cfg.balloon.present)
                b = vm_devices_balloon(vm_get_devices(c->vm));
        if (!b)
                error_set(err, -ENOENT,
                          MSG_HINTING "Failed perform action on device: Device not found");
        return b;
}

static int hinting_error(int r, struct error *err)
{
        switch (r) {
        case 0:
                return 0;
        case -EOPNOTSUPP:
                return error_set(err, r,
                                 MSG_HINTING "Balloon: Attempting to use hinting when not enabled");
        case -ENODEV:
                return error_set(err, r, MSG_HINTING "Balloon: Device not activated yet.");
        case -EPROTO:
                return error_set(err, r,
                                 MSG_HINTING "Balloon: the guest's driver did not accept free page "
                                             "hinting.");
        default:
                return error_set(err, r, MSG_HINTING "Balloon: %s", strerror(-r));
        }
}

static int act_start_balloon_hinting(struct controller *c, struct controller_request *req,
                                     struct error *err)
{
        struct virtio_balloon *b = hinting_balloon(c, err);

        return b ? hinting_error(virtio_balloon_hinting_start(b, req->u.balloon_ack_on_stop), err)
                 : err->code;
}

static int act_stop_balloon_hinting(struct controller *c, struct controller_request *req,
                                    struct error *err)
{
        struct virtio_balloon *b = hinting_balloon(c, err);

        (void)req;
        return b ? hinting_error(virtio_balloon_hinting_stop(b), err) : err->code;
}

static int act_get_balloon_hinting(struct controller *c, struct controller_request *req,
                                   struct error *err)
{
        struct virtio_balloon *b = hinting_balloon(c, err);

        return b ? hinting_error(virtio_balloon_hinting_status(b, &req->reply.balloon_hinting), err)
                 : err->code;
}

int controller_pause_or_resume(struct controller *c, bool pause)
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

static int act_patch_drive(struct controller *c, struct controller_request *req, struct error *err)
{
        return patch_drive(c, &req->u.drive_update, err);
}

static int act_patch_pmem(struct controller *c, struct controller_request *req, struct error *err)
{
        return patch_pmem(c, &req->u.pmem_update, err);
}

static int act_patch_net(struct controller *c, struct controller_request *req, struct error *err)
{
        return patch_net(c, &req->u.net_update, err);
}

static int act_patch_balloon(struct controller *c, struct controller_request *req,
                             struct error *err)
{
        return patch_balloon(c, req->u.balloon_amount_mib, err);
}

static int act_patch_balloon_stats(struct controller *c, struct controller_request *req,
                                   struct error *err)
{
        return patch_balloon_stats(c, req->u.balloon_stats_interval_s, err);
}

#define MSG_NO_HOTPLUG "Memory hotplug is not configured: PUT /hotplug/memory before the start."

static int act_patch_memory_hotplug(struct controller *c, struct controller_request *req,
                                    struct error *err)
{
        const struct vmm_memory_hotplug *h = &c->cfg.hotplug;
        uint64_t mib = req->u.hotplug_requested_mib;
        struct virtio_mem *m = vm_devices_mem(vm_get_devices(c->vm));

        if (!h->present || !m)
                return error_set(err, -ENOENT, MSG_NO_HOTPLUG);
        if (mib > h->total_size_mib || mib % h->block_size_mib)
                return error_set(err, -EINVAL,
                                 "requested_size_mib %llu is not a multiple of block_size_mib "
                                 "%llu up to total_size_mib %llu",
                                 (unsigned long long)mib, (unsigned long long)h->block_size_mib,
                                 (unsigned long long)h->total_size_mib);
        virtio_mem_set_requested(m, mib << 20);
        c->cfg.hotplug.requested_size_mib = mib;
        return 0;
}

static int act_get_memory_hotplug(struct controller *c, struct controller_request *req,
                                  struct error *err)
{
        struct virtio_mem *m = c->vm ? vm_devices_mem(vm_get_devices(c->vm)) : NULL;
        struct virtio_mem_stats st;

        if (!c->cfg.hotplug.present)
                return error_set(err, -ENOENT, MSG_NO_HOTPLUG);
        req->reply.hotplug = c->cfg.hotplug;
        req->reply.hotplug_plugged_mib = 0;
        if (m) {
                virtio_mem_get_stats(m, &st);
                req->reply.hotplug_plugged_mib = st.plugged_size >> 20;
        }
        return 0;
}

static int act_get_balloon_stats(struct controller *c, struct controller_request *req,
                                 struct error *err)
{
        return get_balloon_stats(c, &req->reply, err);
}

static int act_memory_dump(struct controller *c, struct controller_request *req, struct error *err)
{
        return vm_memory_dump(c->vm, req->u.memory_dump_path, err);
}

static int act_apply_logger(struct controller *c, struct controller_request *req, struct error *err)
{
        return controller_log_apply(c, &req->u.logger, err);
}

static int act_apply_metrics(struct controller *c, struct controller_request *req,
                             struct error *err)
{
        return metrics_configure(c->metrics, &req->u.metrics, c->instance_id, err);
}

static int act_instance_start(struct controller *c, struct controller_request *req,
                              struct error *err)
{
        (void)req;
        return controller_start(c, clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_PROCESS_CPUTIME_ID),
                                err);
}

static int act_flush_metrics(struct controller *c, struct controller_request *req,
                             struct error *err)
{
        (void)req;
        return metrics_flush(c->metrics, err);
}

static int act_send_ctrl_alt_del(struct controller *c, struct controller_request *req,
                                 struct error *err)
{
        int r = vm_send_ctrl_alt_del(c->vm);

        (void)req;
        return r ? error_set(err, r, "the i8042 cannot take the key sequence now: %s", strerror(-r))
                 : 0;
}

static int act_pause(struct controller *c, struct controller_request *req, struct error *err)
{
        (void)req;
        (void)err;
        return controller_pause_or_resume(c, true);
}

static int act_resume(struct controller *c, struct controller_request *req, struct error *err)
{
        (void)req;
        (void)err;
        return controller_pause_or_resume(c, false);
}

static int act_snapshot_create(struct controller *c, struct controller_request *req,
                               struct error *err)
{
        return controller_snapshot_create(c, &req->u.snapshot_create, err);
}

/*
 * Firecracker's documented behaviour (its snapshot support guide, "LoadSnapshot
 * ... on failure: A specific error is reported and then the current Firecracker process is
 * ended (as it might be in an invalid state)"): a load that was allowed and failed is
 * answered, then the process ends with exit code 1, its generic error. An orchestrator waits
 * for that exit. A load refused before it began (after a configuration command) is not.
 */
static int act_snapshot_load(struct controller *c, struct controller_request *req,
                             struct error *err)
{
        bool allowed = c->state == CONTROLLER_NOT_STARTED && !c->configured;
        int r = controller_snapshot_load(c, &req->u.snapshot_load, err);

        if (r && allowed) {
                LOG_ERROR("%s: the process ends (a failed snapshot load leaves it unusable)",
                          err->msg);
                if (c->p.on_exit)
                        c->p.on_exit(c->p.opaque, 1);
        }
        return r;
}

static int act_get_metrics(struct controller *c, struct controller_request *req, struct error *err)
{
        int r = metrics_read(c->metrics, &req->reply.metrics);

        return r ? error_set(err, r, "metrics: %s", strerror(-r)) : 0;
}

/* ---- the table ---- */

/* HANDLER is RUN(f), EDIT(f) or both: designated initializers of .run and .edit. */
#define RUN(f)  .run = act_##f,
#define EDIT(f) .edit = controller_edit_##f,
#define X(NAME, PHASE, CONFIGURES, HANDLER, CLEAR, EVENT, METHOD, PATH, PARSE, METRIC)             \
        [VMM_##NAME] = {.phase = CONTROLLER_PHASE_##PHASE,                                         \
                        .configures = CONFIGURES,                                                  \
                        .clear = clear_##CLEAR,                                                    \
                        .event = CONTROLLER_EVENT_##EVENT,                                         \
                        .method = #METHOD,                                                         \
                        .path = PATH,                                                              \
                        .metric = METRIC,                                                          \
                        HANDLER},

static const struct controller_action actions[VMM_ACTION_COUNT] = {
#include "controller_actions.def"
};

#undef X
#undef EDIT
#undef RUN

const struct controller_action *controller_action_get(enum vmm_action a)
{
        return (unsigned)a < VMM_ACTION_COUNT ? &actions[a] : NULL;
}

enum controller_event controller_action_event(enum vmm_action a)
{
        return (unsigned)a < VMM_ACTION_COUNT ? actions[a].event : CONTROLLER_EVENT_NONE;
}

void controller_request_clear(struct controller_request *req)
{
        if ((unsigned)req->action < VMM_ACTION_COUNT)
                actions[req->action].clear(req);
        free(req->reply.memory);
        req->reply.memory = NULL;
        free(req->reply.metrics);
        req->reply.metrics = NULL;
        free(req->reply.mmds);
        req->reply.mmds = NULL;
        if (req->reply.config) {
                vmm_config_free(req->reply.config);
                free(req->reply.config);
        }
        memset(&req->u, 0, sizeof(req->u));
        req->reply.config = NULL;
}

/* ---- execution ---- */

static int run(struct controller *c, struct controller_request *req, struct error *err)
{
        const struct controller_action *a = &actions[req->action];
        int r = a->run ? a->run(c, req, err) : 0;

        if (!r && a->edit)
                r = controller_edit(&c->cfg, &c->limits, req, err);
        return r;
}

void controller_execute(struct controller *c, struct controller_request *req)
{
        struct controller_reply *rep = &req->reply;
        const struct controller_action *a;
        int r;

        if ((unsigned)req->action >= VMM_ACTION_COUNT) {
                rep->status = error_set(&rep->err, -ENOSYS, "internal: unknown action");
                return;
        }
        a = &actions[req->action];
        atomic_fetch_add(&c->count[req->action], 1);
        error_clear(&rep->err);
        if (a->phase == CONTROLLER_PHASE_BEFORE_START && c->state != CONTROLLER_NOT_STARTED)
                r = error_set(&rep->err, -EPERM, MSG_AFTER_START);
        else if (a->phase == CONTROLLER_PHASE_BEFORE_START_HOTPLUG &&
                 c->state != CONTROLLER_NOT_STARTED)
                r = error_set(&rep->err, -EPERM, MSG_NO_PCI);
        else if ((a->phase == CONTROLLER_PHASE_AFTER_START || a->phase == CONTROLLER_PHASE_LIVE) &&
                 c->state == CONTROLLER_NOT_STARTED)
                r = error_set(&rep->err, -EPERM, MSG_BEFORE_START);
        else if (a->phase == CONTROLLER_PHASE_LIVE && c->ended)
                r = error_set(&rep->err, -EPERM, MSG_ENDED);
        else
                r = run(c, req, &rep->err);
        if (r && !rep->err.code)
                error_set(&rep->err, r, "%s", strerror(-r));
        rep->status = r;
        rep->state = c->state;
        /* Once the machine has a resource, a snapshot can no longer be loaded into it. */
        if (!r && a->configures)
                c->configured = true;
        if (r)
                atomic_fetch_add(&c->fails[req->action], 1);
}

/* ---- life cycle ---- */

void controller_bind_thread(struct controller *c)
{
        log_bind(&c->log);
}

struct log_context *controller_log(struct controller *c)
{
        return &c->log;
}

int controller_thread_init(struct controller *c, enum vmm_thread_role role)
{
        controller_bind_thread(c);
        return c->p.thread_init ? c->p.thread_init(c->p.thread_opaque, role) : 0;
}

static int vm_thread_init(void *opaque, enum vmm_thread_role role)
{
        return controller_thread_init(opaque, role);
}

static void on_vm_stop(void *opaque, int exit_code)
{
        struct controller *c = opaque;

        c->ended = true;
        if (c->p.on_exit)
                c->p.on_exit(c->p.opaque, exit_code);
}

static void on_vm_memory_lost(void *opaque, const char *msg)
{
        struct controller *c = opaque;

        c->p.on_memory_lost(c->p.opaque, msg);
}

/*
 * Builds and starts the VM: from c->cfg (a boot), or from a snapshot (cfg: its
 * configuration, taken over on success; rs: its state). On success the VM runs (a boot) or
 * waits Paused (a restore); on failure nothing changed.
 */
int controller_build(struct controller *c, struct vmm_config *cfg, const struct vm_restore *rs,
                     uint64_t start_ns, uint64_t start_cpu_ns, struct error *err)
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
            .on_memory_lost = c->p.on_memory_lost ? on_vm_memory_lost : NULL,
            .mmds = c->mmds,
            .log = &c->log,
        };
        int r;

        if (vmm_config_copy(&c->vm_cfg, cfg ? cfg : &c->cfg))
                return error_set(err, -ENOMEM, "out of memory");
        /* The service's settings are the configuration's (a restore's too: Firecracker keeps
         * version and imds_compat in the snapshot, never the store). */
        mmds_configure(c->mmds, c->vm_cfg.mmds.version, c->vm_cfg.mmds.imds_compat);
        if (c->vm_cfg.mmds.present)
                c->mmds_used = true;
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
                r = error_config(err, "Cannot start microvm without kernel configuration.");
        else
                r = vmm_config_validate(&c->cfg, &c->limits, err);
        /* Firecracker takes any memory size and fails to map one this host cannot hold:
         * answered in its words (the size was accepted when it was set). */
        if (!r && vmm_config_check_memory(&c->cfg, &c->limits, err)) {
                char e[64];

                error_clear(err);
                r = error_config(err, "Invalid Memory Configuration: Cannot create mmap region: %s",
                                 controller_os_error(ENOMEM, e, sizeof(e)));
        }
        if (!r)
                r = controller_build(c, NULL, NULL, start_ns, start_cpu_ns, err);
        if (r) {
                /* Firecracker's VmmActionError::StartMicrovm. */
                error_prefix(err, "Start microvm error");
                return r;
        }
        LOG_INFO("microVM started");
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
               m->huge_pages || m->cpu_hide || m->track_dirty_pages || m->pit || cfg->cpu.tmpl;
}

/* The store, with --metadata's contents when given. */
static int create_mmds(struct controller *c, struct error *err)
{
        struct mmds_params mp = {.size_limit = c->p.mmds_size_limit, .instance_id = c->instance_id};
        char msg[128];
        int r = mmds_create(&mp, &c->mmds);

        if (r)
                return error_set(err, r, "the metadata service: %s", strerror(-r));
        if (!c->p.metadata)
                return 0;
        c->mmds_used = true;
        r = mmds_put(c->mmds, c->p.metadata, c->p.metadata_len, msg, sizeof(msg));
        if (r == -EINVAL)
                return error_config(err, "the MMDS metadata is not valid JSON: %s", msg);
        if (r == -EFBIG)
                return error_config(err,
                                    "the MMDS metadata is larger than the data store limit of %zu "
                                    "bytes",
                                    c->p.mmds_size_limit ? c->p.mmds_size_limit
                                                         : (size_t)MMDS_DEFAULT_SIZE_LIMIT);
        return r ? error_set(err, r, "the MMDS metadata: %s", strerror(-r)) : 0;
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
        log_context_init(&c->log, c->instance_id);
        c->cfg = *cfg;
        vmm_config_init(cfg);
        c->configured = machine_configured(&c->cfg);
        vmm_host_limits_get(&c->limits, 0);
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
        r = event_loop_add(p->loop, c->wake_fd, EPOLLIN, controller_on_wake, c);
        if (r) {
                close(c->wake_fd);
                c->wake_fd = -1;
                error_set(err, r, "event loop: %s", strerror(-r));
                goto fail;
        }
        if (metrics_create(p->loop, controller_collect_metrics, c, &c->metrics)) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        r = create_mmds(c, err);
        if (r)
                goto fail;
        /* Settings from the command line or the config file. */
        if (c->cfg.logger.present) {
                r = controller_log_apply(c, &c->cfg.logger, err);
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

        if (!c)
                return;
        /* The last line includes the VM's final counters. */
        if (c->metrics && metrics_flush(c->metrics, &err))
                LOG_WARN("%s", err.msg);
        vm_destroy(c->vm);
        mmds_destroy(c->mmds);
        metrics_destroy(c->metrics);
        if (c->wake_fd >= 0) {
                event_loop_remove(c->p.loop, c->wake_fd);
                close(c->wake_fd);
        }
        controller_log_close(c);
        log_context_destroy(&c->log);
        vmm_config_free(&c->cfg);
        vmm_config_free(&c->vm_cfg);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

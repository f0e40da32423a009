/* Configuration edits before the start: each command edits a copy of the configuration. */
#include <errno.h>

#include "controller_priv.h"

/*
 * The one way a configuration changes before the start: the API's commands (PUT
 * /boot-source, /machine-config, /drives/{id}, ...) and each section of a config file (the
 * same command, parsed by the same function) alike. The command's edit function (EDIT in
 * controller_actions.def) works on a copy, which is kept only when the whole of it is still
 * valid; strings move between the request and the copy by swapping, so whichever side is
 * dropped frees them.
 */
int controller_edit(struct vmm_config *cfg, const struct vmm_host_limits *limits,
                    struct controller_request *req, struct error *err)
{
        const struct controller_action *a = controller_action_get(req->action);
        struct vmm_config next;
        int r;

        if (!a || !a->edit)
                return error_set(err, -ENOSYS, "internal: action %d is not a configuration edit",
                                 (int)req->action);
        if (vmm_config_copy(&next, cfg))
                return error_set(err, -ENOMEM, "out of memory");
        r = a->edit(&next, req, err);
        if (!r)
                r = vmm_config_validate(&next, limits, err);
        if (r) {
                vmm_config_free(&next);
                return r;
        }
        vmm_config_free(cfg);
        *cfg = next;
        return 0;
}

int controller_edit_boot(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        struct vmm_boot_source *b = &req->u.boot;
        int r = vmm_check_file("kernel image", b->kernel_image_path, false, FILE_REGULAR, err);

        if (!r && b->initrd_path)
                r = vmm_check_file("initrd", b->initrd_path, false, FILE_REGULAR, err);
        if (r)
                return r;
        SWAP(next->boot.kernel_image_path, b->kernel_image_path);
        SWAP(next->boot.initrd_path, b->initrd_path);
        SWAP(next->boot.boot_args, b->boot_args);
        return 0;
}

/* The whole configuration is validated afterwards (controller_edit), with the host's limits. */
int controller_edit_machine(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        req->u.machine.update.cpu_hide = req->u.machine.cpu_hide;
        req->u.machine.update.cpu_template = req->u.machine.cpu_template;
        req->u.machine.update.cpu_template_data = req->u.machine.cpu_template_data;
        return vmm_config_apply_machine(next, &req->u.machine.update, NULL, err);
}

/* PUT /cpu-config: a custom template replaces whatever template was set (a static one too). */
int controller_edit_cpu_config(struct vmm_config *next, struct controller_request *req,
                               struct error *err)
{
        (void)err;
        SWAP(next->cpu.tmpl, req->u.cpu_config);
        next->cpu.static_template[0] = '\0';
        return 0;
}

int controller_edit_drive(struct vmm_config *next, struct controller_request *req,
                          struct error *err)
{
        struct vmm_drive *d = &req->u.drive;
        int r = vmm_check_file("drive", d->path_on_host, !d->is_read_only,
                               FILE_REGULAR | FILE_BLOCK, err);

        if (r) {
                error_prefix(err, "drive '%s'", d->drive_id);
                return r;
        }
        return vmm_config_put_drive(next, d, err);
}

int controller_edit_pmem(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        int r = vmm_pmem_measure(&req->u.pmem, err);

        return r ? r : vmm_config_put_pmem(next, &req->u.pmem, err);
}

int controller_edit_memory_hotplug(struct vmm_config *next, struct controller_request *req,
                                   struct error *err)
{
        int r = vmm_check_memory_hotplug(&req->u.hotplug, err);

        if (!r) {
                next->hotplug = req->u.hotplug;
                next->hotplug.present = true;
                next->hotplug.requested_size_mib = 0;
        }
        return r;
}

int controller_edit_net(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        return vmm_config_put_net(next, &req->u.net, err);
}

int controller_edit_vsock(struct vmm_config *next, struct controller_request *req,
                          struct error *err)
{
        (void)err;
        req->u.vsock.present = true;
        SWAP(next->vsock, req->u.vsock);
        return 0;
}

int controller_edit_entropy(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        (void)err;
        next->entropy = req->u.entropy;
        next->entropy.present = true;
        return 0;
}

int controller_edit_confidential(struct vmm_config *next, struct controller_request *req,
                                 struct error *err)
{
        (void)err;
        next->confidential = req->u.confidential;
        return 0;
}

int controller_edit_serial(struct vmm_config *next, struct controller_request *req,
                           struct error *err)
{
        (void)err;
        SWAP(next->serial_out_path, req->u.serial_out_path);
        return 0;
}

int controller_edit_balloon(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        (void)err;
        next->balloon = req->u.balloon;
        next->balloon.present = true;
        return 0;
}

/* The logger and the metrics act on the process first (controller.c); this records what was
 * applied (GET /vm/config), or what a config file asks for (applied by controller_create). */
int controller_edit_logger(struct vmm_config *next, struct controller_request *req,
                           struct error *err)
{
        (void)err;
        return controller_log_merge(&next->logger, &req->u.logger);
}

int controller_edit_metrics(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        (void)err;
        SWAP(next->metrics, req->u.metrics);
        next->metrics.present = true;
        return 0;
}

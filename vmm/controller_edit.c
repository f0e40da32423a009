/* Configuration edits before the start: each command edits a copy of the configuration. */
#include <errno.h>

#include "controller_priv.h"

/* Applies fn to a copy of the configuration and keeps the copy only if the whole of it is
 * still valid. Strings move between the request and the copy by swapping, so whichever
 * side is dropped frees them. */
int controller_edit_config(struct controller *c, struct controller_request *req, edit_fn fn,
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

int controller_edit_boot(struct vmm_config *next, struct controller_request *req, struct error *err)
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

int controller_edit_drive(struct vmm_config *next, struct controller_request *req,
                          struct error *err)
{
        struct vmm_drive *d = &req->u.drive;
        int r = vmm_check_file("drive", d->path_on_host, !d->is_read_only, err);

        if (r) {
                error_prefix(err, "drive '%s'", d->drive_id);
                return r;
        }
        return vmm_config_put_drive(next, d, err);
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

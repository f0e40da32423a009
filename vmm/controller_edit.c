/* Configuration edits before the start: each command edits a copy of the configuration. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller_priv.h"

#include "common/file.h"

/*
 * The one way a configuration changes before the start: the API's commands (PUT
 * /boot-source, /machine-config, /drives/{id}, ...) and each section of a config file (the
 * same command, parsed by the same function) alike. The command's edit function (EDIT in
 * controller_actions.def) works on a copy, which is kept only when the whole of it is still
 * valid; strings move between the request and the copy by swapping, so whichever side is
 * dropped frees them. An edit that fails the way Firecracker fails after changing something
 * returns EDIT_FAILED_KEEP: its error stands and so does the (still valid) copy.
 *
 * The messages are Firecracker's, with its prefix for the resource ("Boot source error: ",
 * "Machine config error: ", "Drive config error: ", "Network config error: ", "Balloon
 * config error: ").
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
        if (r == EDIT_FAILED_KEEP) {
                struct error ignored = {0};

                r = err->code ? err->code : -EINVAL;
                if (vmm_config_validate(&next, limits, &ignored)) {
                        vmm_config_free(&next);
                        return r;
                }
                vmm_config_free(cfg);
                *cfg = next;
                return r;
        }
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

/* Rust's io::Error for an errno as Firecracker's messages show it: Firecracker is built
 * against musl, whose strerror words a few errors its own way (the rest read as glibc's). */
const char *controller_os_error(int errnum, char *buf, size_t cap)
{
        static const struct {
                int errnum;
                const char *text;
        } musl[] = {
            {ENOMEM, "Out of memory"},
            {EAGAIN, "Operation would block"},
            {ENAMETOOLONG, "Filename too long"},
            {EBADF, "Bad file number"},
            {ENFILE, "File table overflow"},
            {EIO, "I/O error"},
            {ENOTTY, "Not a tty"},
            {ENOSYS, "Function not supported"},
        };
        const char *text = strerror(errnum);

        for (size_t i = 0; i < ARRAY_SIZE(musl); i++)
                if (musl[i].errnum == errnum)
                        text = musl[i].text;
        snprintf(buf, cap, "%s (os error %d)", text, errnum);
        return buf;
}

#define os_error controller_os_error

int controller_check_file(const char *what, const char *path, bool write, unsigned kinds, char *why,
                          size_t cap)
{
        struct error ferr = {0};
        int os_errno;
        int r = vmm_check_file(what, path, write, kinds, &os_errno, &ferr);

        if (!r)
                return 0;
        if (!path || !*path)
                os_errno = ENOENT; /* what Firecracker's open of "" fails with */
        if (os_errno)
                os_error(os_errno, why, cap);
        else
                snprintf(why, cap, "%s", ferr.msg);
        return r;
}

int controller_edit_boot(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        struct vmm_boot_source *b = &req->u.boot;
        char why[512];
        int r = controller_check_file("kernel image", b->kernel_image_path, false, FILE_REGULAR,
                                      why, sizeof(why));

        if (r)
                return error_config(err, "Boot source error: The kernel file cannot be opened: %s",
                                    why);
        r = b->initrd_path ? controller_check_file("initrd", b->initrd_path, false, FILE_REGULAR,
                                                   why, sizeof(why))
                           : 0;
        if (r)
                return error_config(err,
                                    "Boot source error: The initrd file cannot be opened due to "
                                    "invalid path or invalid permissions. %s",
                                    why);
        SWAP(next->boot.kernel_image_path, b->kernel_image_path);
        SWAP(next->boot.initrd_path, b->initrd_path);
        SWAP(next->boot.boot_args, b->boot_args);
        return 0;
}

/* The whole configuration is validated afterwards (controller_edit), with the host's limits;
 * here the machine's own rules, with Firecracker's prefix. */
int controller_edit_machine(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        bool balloon = next->balloon.present;
        int r;

        req->u.machine.update.cpu_hide = req->u.machine.cpu_hide;
        req->u.machine.update.cpu_template = req->u.machine.cpu_template;
        req->u.machine.update.cpu_template_data = req->u.machine.cpu_template_data;
        /* Firecracker checks the machine, then the balloon against it: the balloon is left
         * out of the machine's check (controller_edit validates everything afterwards). */
        next->balloon.present = false;
        r = vmm_config_apply_machine(next, &req->u.machine.update, NULL, err);
        next->balloon.present = balloon;
        if (r) {
                error_prefix(err, "Machine config error");
                return r;
        }
        if (!vmm_balloon_fits(next))
                return error_config(err, "Machine config error: The memory size (MiB) is smaller "
                                         "than the previously set balloon device target size.");
        return 0;
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

/* Firecracker's order: the root drive rule, then the backing file (opened as the device will
 * open it); a drive without a file (nor a vhost-user socket) is not a valid block device. */
int controller_edit_drive(struct vmm_config *next, struct controller_request *req,
                          struct error *err)
{
        struct vmm_drive *d = &req->u.drive;
        bool write = !d->is_read_only;
        char *path = NULL, why[512];
        int r;

        if (d->path_on_host && !(path = strdup(d->path_on_host)))
                return error_set(err, -ENOMEM, "out of memory");
        r = vmm_config_put_drive(next, d, err);
        if (r) {
                free(path);
                error_prefix(err, "Drive config error");
                return r;
        }
        if (!path)
                return error_config(err, "Drive config error: Unable to create the virtio block "
                                         "device: Invalid block config.");
        r = controller_check_file("drive", path, write, FILE_REGULAR | FILE_BLOCK, why,
                                  sizeof(why));
        if (r)
                r = error_config(err,
                                 "Drive config error: Unable to create the virtio block device: "
                                 "Virtio backend error: Error manipulating the backing file: %s %s",
                                 why, path);
        free(path);
        return r;
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

/*
 * Firecracker's NetBuilder::build: a guest MAC another interface has is refused first; then
 * the interface with this id is dropped and the new one created, which opens its TAP. A TAP
 * another interface holds cannot be opened (EBUSY): Firecracker fails there with the old
 * interface already gone, and so do we (the TAPs themselves are opened at the start).
 */
int controller_edit_net(struct vmm_config *next, struct controller_request *req, struct error *err)
{
        struct vmm_net *n = &req->u.net;
        char e[128];
        int self;

        for (unsigned j = 0; n->has_mac && j < next->nr_nets; j++)
                if (next->nets[j].has_mac &&
                    memcmp(next->nets[j].guest_mac, n->guest_mac, 6) == 0 &&
                    strcmp(next->nets[j].iface_id, n->iface_id) != 0)
                        return error_config(err,
                                            "Network config error: The MAC address is already in "
                                            "use: %02x:%02x:%02x:%02x:%02x:%02x",
                                            n->guest_mac[0], n->guest_mac[1], n->guest_mac[2],
                                            n->guest_mac[3], n->guest_mac[4], n->guest_mac[5]);
        for (unsigned j = 0; j < next->nr_nets; j++) {
                if (strcmp(next->nets[j].iface_id, n->iface_id) == 0 || !n->host_dev_name ||
                    !next->nets[j].host_dev_name ||
                    strcmp(next->nets[j].host_dev_name, n->host_dev_name) != 0)
                        continue;
                self = controller_find_net(next, n->iface_id);
                if (self >= 0) {
                        vmm_net_free(&next->nets[self]);
                        memmove(&next->nets[self], &next->nets[self + 1],
                                (next->nr_nets - (unsigned)self - 1) * sizeof(next->nets[0]));
                        next->nr_nets--;
                }
                error_config(err,
                             "Network config error: Could not create the network device: Open tap "
                             "device failed: Error while creating ifreq structure: %s. Invalid "
                             "TUN/TAP Backend provided by %s. Check our documentation on setting "
                             "up the network devices.",
                             os_error(EBUSY, e, sizeof(e)), n->host_dev_name);
                return self >= 0 ? EDIT_FAILED_KEEP : -EINVAL;
        }
        return vmm_config_put_net(next, n, err);
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
        SWAP(next->serial_out_path, req->u.serial.out_path);
        next->serial_rate_limiter = req->u.serial.rate_limiter;
        return 0;
}

#define MMDS_CONFIG_ERROR "MMMDS config error: " /* sic: Firecracker's wording */

/* Firecracker's checks, in its order: the address, an empty list, unknown interfaces. The
 * interfaces listed answer for the service; the others stop. */
int controller_edit_mmds_config(struct vmm_config *next, struct controller_request *req,
                                struct error *err)
{
        const struct vmm_mmds_config_request *m = &req->u.mmds_config;
        bool listed[VMM_MAX_NETS] = {false};

        if (!vmm_mmds_ipv4_valid(m->cfg.ipv4))
                return error_config(err,
                                    MMDS_CONFIG_ERROR "The MMDS IPv4 address is not link local.");
        if (!m->nr_ifaces)
                return error_config(err, MMDS_CONFIG_ERROR
                                    "The list of network interface IDs that allow forwarding MMDS "
                                    "requests is empty.");
        for (unsigned i = 0; i < m->nr_ifaces; i++) {
                int n = controller_find_net(next, m->ifaces[i]);

                if (n < 0)
                        return error_config(
                            err, MMDS_CONFIG_ERROR
                            "The list of network interface IDs provided contains at "
                            "least one ID that does not correspond to any existing "
                            "network interface.");
                listed[n] = true;
        }
        for (unsigned i = 0; i < next->nr_nets; i++)
                next->nets[i].mmds = listed[i];
        next->mmds = m->cfg;
        next->mmds.present = true;
        return 0;
}

int controller_edit_balloon(struct vmm_config *next, struct controller_request *req,
                            struct error *err)
{
        next->balloon = req->u.balloon;
        next->balloon.present = true;
        if (!vmm_balloon_fits(next))
                return error_config(err, "Balloon config error: Amount of pages requested is too "
                                         "large.");
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

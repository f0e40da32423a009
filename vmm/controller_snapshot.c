/* Snapshots: create, and load with the rewriting of the saved configuration it needs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/cpu_state.h"
#include "common/clock.h"
#include "common/log.h"
#include "controller_priv.h"
#include "snapshot.h"
#include "vm.h"

void vmm_snapshot_load_free(struct vmm_snapshot_load *l)
{
        free(l->snapshot_path);
        free(l->mem_file_path);
        for (unsigned i = 0; i < l->nr_net_overrides; i++) {
                free(l->net_overrides[i].id);
                free(l->net_overrides[i].value);
        }
        for (unsigned i = 0; i < l->nr_drive_overrides; i++) {
                free(l->drive_overrides[i].id);
                free(l->drive_overrides[i].value);
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
                int n = controller_find_net(cfg, l->net_overrides[i].id);

                if (n < 0)
                        return error_config(err,
                                            "network_overrides: the snapshot has no network "
                                            "interface '%s'",
                                            l->net_overrides[i].id);
                if (vmm_config_set_str(&cfg->nets[n].host_dev_name, l->net_overrides[i].value))
                        return error_set(err, -ENOMEM, "out of memory");
        }
        /* The same disk in another place (a platform restoring a snapshot made elsewhere):
         * the device keeps its saved state, read-only flag and features. */
        for (unsigned i = 0; i < l->nr_drive_overrides; i++) {
                int d = controller_find_drive(cfg, l->drive_overrides[i].id);

                if (d < 0)
                        return error_config(err, "drive_overrides: the snapshot has no drive '%s'",
                                            l->drive_overrides[i].id);
                if (vmm_config_set_str(&cfg->drives[d].path_on_host, l->drive_overrides[i].value))
                        return error_set(err, -ENOMEM, "out of memory");
        }
        if (l->vsock_uds_path) {
                if (!cfg->vsock.present)
                        return error_config(err, "vsock_override: the snapshot has no vsock "
                                                 "device");
                if (vmm_config_set_str(&cfg->vsock.uds_path, l->vsock_uds_path))
                        return error_set(err, -ENOMEM, "out of memory");
        }
        /* A memory file cannot be mapped with hugetlbfs pages; a page-fault handler fills
         * them whole (Firecracker restores huge-page snapshots this way only). */
        if (cfg->machine.huge_pages && !l->huge_pages_none && !l->mem_uffd)
                return error_config(err, "the snapshot's guest memory used 2 MiB huge pages, "
                                         "which a memory file cannot back: load it with "
                                         "huge_pages None, or with the Uffd memory backend");
        if (l->huge_pages_none)
                cfg->machine.huge_pages = false;
        if (l->huge_pages_2m)
                cfg->machine.huge_pages = true;
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
        struct x86_cpu_record *cpu;
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
        cpu = calloc(1, sizeof(*cpu));
        if (!cpu) {
                free(payload);
                vmm_config_free(&cfg);
                return error_set(err, -ENOMEM, "out of memory");
        }
        if (snapbuf_ok(&r) && snapbuf_get_section(&r, SNAPSHOT_TAG_CPUC, &sec, "CPUC") &&
            !x86_cpu_record_load(&sec, cpu))
                snapbuf_merge(&r, &sec);
        if (!snapbuf_ok(&r))
                ret = error_config(err, "snapshot state file '%s': %s", l->snapshot_path, r.err);
        if (!ret)
                ret = check_info(&info, err);
        /* The restored VM's configuration shows the template its vCPUs have (GET /vm/config). */
        if (!ret &&
            vmm_config_set_cpu_template(&cfg, cpu->static_template[0] ? cpu->static_template : NULL,
                                        cpu->has_template ? &cpu->tmpl : NULL))
                ret = error_set(err, -ENOMEM, "out of memory");
        if (!ret)
                ret = load_config(c, l, &cfg, err);
        if (!ret) {
                struct vm_restore rs = {.info = &info,
                                        .cpu = cpu,
                                        .state = &r,
                                        .mem_path = l->mem_file_path,
                                        .mem_uffd = l->mem_uffd,
                                        .clock_realtime = l->clock_realtime};

                ret = controller_build(c, &cfg, &rs, t0, clock_ns(CLOCK_PROCESS_CPUTIME_ID), err);
        }
        free(payload);
        free(cpu);
        if (ret) {
                vmm_config_free(&cfg);
                error_prefix(err, "Cannot load the snapshot");
                return ret;
        }
        /* GET /vm/config keeps the saved boot source, as Firecracker's does after a restore. */
        c->load_snapshot_us = (clock_ns(CLOCK_MONOTONIC) - t0) / 1000;
        LOG_INFO("snapshot %s loaded in %llu us (%s)", l->snapshot_path,
                 (unsigned long long)c->load_snapshot_us, snapshot_type_name(info.type));
        if (l->resume_vm)
                controller_pause_or_resume(c, false);
        return 0;
}

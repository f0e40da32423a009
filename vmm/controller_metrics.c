/* The API request counters (Firecracker's *_api_requests) and what a metrics line holds. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "controller_priv.h"
#include "vm.h"
#include "vm_devices.h"

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

void controller_collect_metrics(void *opaque, struct metrics_writer *w)
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

void controller_count_rejected(struct controller *c, enum vmm_action action)
{
        if ((unsigned)action >= VMM_ACTION_COUNT)
                return;
        atomic_fetch_add(&c->count[action], 1);
        atomic_fetch_add(&c->fails[action], 1);
}

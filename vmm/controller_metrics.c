/* The API request counters (Firecracker's *_api_requests) and what a metrics line holds. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "controller_priv.h"
#include "vm.h"
#include "vm_devices.h"

/* Whether commands a and b count under one name (PUT /actions' three add up). */
static bool same_counter(enum vmm_action a, enum vmm_action b)
{
        const struct controller_action *x = controller_action_get(a), *y = controller_action_get(b);

        return strcmp(x->method, y->method) == 0 && strcmp(x->metric, y->metric) == 0;
}

/* One group of API request counters, "<method>_api_requests" (the METHOD and METRIC columns
 * of controller_actions.def): "<name>_count" and "<name>_fails" per name, in table order. */
static void put_api_group(struct controller *c, struct metrics_writer *w, const char *method,
                          const char *group)
{
        char name[64];

        metrics_group(w, "%s", group);
        for (int a = 0; a < VMM_ACTION_COUNT; a++) {
                const struct controller_action *act = controller_action_get(a);
                uint64_t count = 0, fails = 0;
                bool first = true;

                if (strcmp(act->method, method) != 0)
                        continue;
                for (int b = 0; b < a && first; b++)
                        if (same_counter(b, a))
                                first = false;
                if (!first)
                        continue;
                for (int b = a; b < VMM_ACTION_COUNT; b++) {
                        if (!same_counter(b, a))
                                continue;
                        count += atomic_load(&c->count[b]);
                        fails += atomic_load(&c->fails[b]);
                }
                snprintf(name, sizeof(name), "%s_count", act->metric);
                metrics_counter(w, name, count);
                snprintf(name, sizeof(name), "%s_fails", act->metric);
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
        uint64_t mmds[MMDS_COUNTER_COUNT];
        struct vm_stats st;

        metrics_group(w, "api_server");
        metrics_store(w, "process_startup_time_us", c->startup_us);
        metrics_store(w, "process_startup_time_cpu_us", c->startup_cpu_us);
        put_api_group(c, w, "GET", "get_api_requests");
        put_api_group(c, w, "PUT", "put_api_requests");
        put_api_group(c, w, "PATCH", "patch_api_requests");
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
        metrics_counter(w, "missed_log_count",
                        atomic_load(&c->log_missed) + log_context_lost(&c->log));
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
        /* Firecracker's "mmds" group: the service's counters, before the start too. */
        metrics_group(w, "mmds");
        mmds_get_counters(c->mmds, mmds);
        for (unsigned i = 0; i < MMDS_COUNTER_COUNT; i++)
                metrics_counter(w, mmds_counter_name(i), mmds[i]);
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

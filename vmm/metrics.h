/*
 * Metrics: one JSON object per line, written to metrics_path every 60 seconds (a timerfd in
 * the VMM thread's event loop) and on demand (FlushMetrics, exit).
 *
 * The layout is Firecracker's: "utc_timestamp_ms", then groups of named numbers ("vcpu":
 * {"exit_io_in": ...}, "block": {...}, "block_<drive_id>": {...}, ...). Like Firecracker's
 * SharedIncMetric, a counter is reported as what it gained since the previous line; a store
 * (a latency, a start-up time) is reported as it is.
 *
 * The numbers come from a collector callback (the controller), which opens groups and adds
 * values through a writer; metrics_put_vm / metrics_put_devices know Firecracker's names for
 * the VM's and the devices' counters. All of it runs on the VMM thread.
 */
#ifndef VMM_METRICS_H
#define VMM_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "common/util.h"
#include "config.h"
#include "vm_devices.h"
#include "vm.h"

#define METRICS_PERIOD_S 60

struct metrics;
struct metrics_writer;

typedef void (*metrics_collect_fn)(void *opaque, struct metrics_writer *w);

int metrics_create(struct event_loop *loop, metrics_collect_fn collect, void *opaque,
                   struct metrics **out) MUST_CHECK;
/* Stops the timer and closes the destination (the caller flushes first if it wants to). */
void metrics_destroy(struct metrics *m);

/* Opens metrics_path (created if missing; a named pipe is opened without waiting for a
 * reader) and starts the periodic flush. Firecracker's rule: only once per process
 * (-EALREADY, "Reinitialization of metrics not allowed."). ERROR_CONFIG for a bad path. */
int metrics_configure(struct metrics *m, const struct vmm_metrics_config *cfg,
                      const char *instance_id, struct error *err) MUST_CHECK;
bool metrics_configured(const struct metrics *m);

/* Collects and writes one line now. 0 when metrics are not configured (nothing to do). */
int metrics_flush(struct metrics *m, struct error *err) MUST_CHECK;

/* Every group as one JSON object (malloc'd into *json), counters as their totals since the
 * start; the periodic lines' differences are not disturbed. Works unconfigured too. */
int metrics_read(struct metrics *m, char **json) MUST_CHECK;

/* Lines that could not be written whole (logger.missed_metrics_count / metrics_fails). */
uint64_t metrics_missed_count(const struct metrics *m);

/* ---- for the collector ---- */

/* Starts a group; the previous one ends. Names are printf-formatted ("block_%s"). */
void metrics_group(struct metrics_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A counter: reported as the increase since the previous line. */
void metrics_counter(struct metrics_writer *w, const char *name, uint64_t value);
/* A store: reported as is. */
void metrics_store(struct metrics_writer *w, const char *name, uint64_t value);

/* vcpu, uart, i8042 and vmm groups from the VM's counters (zeros before boot: st NULL). */
void metrics_put_vm(struct metrics_writer *w, const struct vm_stats *st);
/* block, net, vsock, balloon and entropy aggregates (always present), then one group per
 * drive ("block_<drive_id>") and interface ("net_<iface_id>"). */
void metrics_put_devices(struct metrics_writer *w, const struct vm_device_stats *devs, unsigned n);

#endif

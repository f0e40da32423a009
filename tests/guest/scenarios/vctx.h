/*
 * Helpers shared by the virtio scenarios (defined in virtio.c): discovery once per run, the
 * options, and a few checks.
 */
#ifndef PROBE_SCENARIOS_VCTX_H
#define PROBE_SCENARIOS_VCTX_H

#include <stddef.h>

#include "bootinfo.h"
#include "print.h"
#include "virtio.h"

struct vctx {
        const struct boot_info *bi;
        struct virtio_opts opts;
        struct virtio_dev devs[VIRTIO_MAX_DEVS];
        unsigned count;
};

/* alloc_init, options, discovery (prints the `probe: virtio ...` lines). */
struct vctx *vctx_get(const struct boot_info *bi);
/* The n-th device with this id, or a failure naming it. */
struct virtio_dev *vctx_need(struct vctx *c, uint32_t id, unsigned n, const char *what);
/* The feature bits the options allow (EVENT_IDX, INDIRECT_DESC). */
uint64_t vctx_ring_features(const struct vctx *c);
/* Sets up interrupts for d when the option (or the scenario's default) says so. */
void vctx_mode(struct vctx *c, struct virtio_dev *d, bool irq_default);
/* "event_idx 1 indirect 0 irq" */
void vctx_print_mode(const char *who, const struct virtio_dev *d);
/* Waits for a line on COM1 (polled at each timer tick); used to pause for the host. */
void vctx_wait_line(struct vctx *c, char *buf, unsigned size);
/* Fails when d is in interrupt mode and no interrupt came. */
void vctx_check_irqs(const struct virtio_dev *d);
/* snprintf. */
void vctx_fmt(char *buf, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);
bool all_zero(const void *p, uint64_t n);

#endif

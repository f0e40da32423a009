/*
 * 8250/16550A UART (COM1): transmit goes to an output callback as soon as the guest writes
 * THR; input is queued into a 64-byte receive FIFO by the VMM thread. LSR, IIR priorities,
 * the THRE and received-data interrupts, DLAB, scratch and loopback behave like the chip.
 * The device is bus-relative (offsets 0..7) and thread-safe.
 */
#ifndef DEVICES_SERIAL_H
#define DEVICES_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "common/snapbuf.h"
#include "irq.h"
#include "rate_limiter.h"

#define SERIAL_FIFO_SIZE 64

struct serial_config {
        struct irq_line irq;
        /* Guest output; called with the device lock held, from a vCPU thread. */
        void (*out)(void *opaque, const uint8_t *buf, size_t len);
        /* Called when the receive FIFO gains free space after being full. */
        void (*rx_space)(void *opaque);
        void *opaque;
        /* Firecracker's serial rate limiter (a bandwidth bucket, one token per byte; NULL:
         * unlimited): output beyond it is dropped and counted, never waited for, so a guest
         * flooding the console neither blocks its vCPU nor fills the host's disk. The clock
         * is for tests (NULL: CLOCK_MONOTONIC). */
        const struct rate_limiter_config *out_limit;
        rate_limiter_clock out_limit_clock;
        void *out_limit_clock_opaque;
};

struct serial;

/* -ENOMEM, or the rate limiter's error. */
int serial_create(const struct serial_config *cfg, struct serial **out) MUST_CHECK;
void serial_destroy(struct serial *s);
const struct bus_ops *serial_bus_ops(void);

/* Queues guest input; returns how many bytes fit (the rest stays with the caller). */
size_t serial_rx_push(struct serial *s, const uint8_t *buf, size_t len);
size_t serial_rx_space(struct serial *s);

/* Counters for metrics: bytes out (written to THR, dropped ones included), bytes in,
 * missed_read_count: pushes that could not queue all their bytes because the FIFO was full
 * (the caller keeps and retries the rest), and the output bytes the rate limiter dropped. */
struct serial_stats {
        uint64_t tx_bytes;
        uint64_t rx_bytes;
        uint64_t missed_read_count;
        uint64_t rate_limiter_dropped_bytes;
};
void serial_get_stats(struct serial *s, struct serial_stats *st);

/* Snapshots: every register, the pending THRE interrupt and the receive FIFO. restore
 * checks what it reads (-EINVAL with the reader's error, the device unchanged) and drives the
 * interrupt line to the restored level. */
void serial_save(struct serial *s, struct snapbuf_writer *w);
int serial_restore(struct serial *s, struct snapbuf_reader *r) MUST_CHECK;

#endif

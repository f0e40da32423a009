/*
 * virtio scenarios that need nothing but one device: `rng` (virtio-rng), plus the helpers
 * shared by blk.c, net.c, vsock.c, balloon.c and hostile.c.
 */
#include "vctx.h"

#include "alloc.h"
#include "cpu.h"
#include "probe.h"
#include "scenarios.h"
#include "serial.h"
#include "str.h"

static struct vctx ctx;

struct vctx *vctx_get(const struct boot_info *bi)
{
        if (ctx.bi)
                return &ctx;
        ctx.bi = bi;
        alloc_init(bi);
        virtio_opts(bi, &ctx.opts);
        ctx.count = virtio_discover(bi, ctx.devs, VIRTIO_MAX_DEVS);
        return &ctx;
}

struct virtio_dev *vctx_need(struct vctx *c, uint32_t id, unsigned n, const char *what)
{
        struct virtio_dev *d = virtio_find(c->devs, c->count, id, n);

        if (!d)
                probe_fail("no %s device", what);
        return d;
}

uint64_t vctx_ring_features(const struct vctx *c)
{
        return (c->opts.event_idx ? VBIT(VF_EVENT_IDX) : 0) |
               (c->opts.indirect ? VBIT(VF_INDIRECT_DESC) : 0);
}

void vctx_mode(struct vctx *c, struct virtio_dev *d, bool irq_default)
{
        if (c->opts.irq == 1 || (c->opts.irq < 0 && irq_default)) {
                virtio_irq_setup(c->bi);
                virtio_irq_enable(d);
        }
}

void vctx_print_mode(const char *who, const struct virtio_dev *d)
{
        print("probe: %s event_idx %u indirect %u %s\n", who,
              (d->features & VBIT(VF_EVENT_IDX)) ? 1u : 0u,
              (d->features & VBIT(VF_INDIRECT_DESC)) ? 1u : 0u, d->irq_mode ? "irq" : "poll");
}

void vctx_wait_line(struct vctx *c, char *buf, unsigned size)
{
        unsigned n = 0;

        virtio_irq_setup(c->bi); /* the timer tick paces the polling */
        for (;;) {
                while (serial_read_reg(UART_LSR) & UART_LSR_DR) {
                        char ch = (char)serial_read_reg(UART_RBR);

                        if (ch == '\n' || ch == '\r') {
                                buf[n] = '\0';
                                return;
                        }
                        if (n + 1 < size)
                                buf[n++] = ch;
                }
                cpu_sti_hlt();
                cpu_cli();
        }
}

void vctx_check_irqs(const struct virtio_dev *d)
{
        uint32_t t0 = virtio_ticks();

        /* An interrupt raised after the last completion was seen may still be on its way. */
        while (d->irq_mode && !d->irqs && virtio_ticks() - t0 < 3)
                virtio_idle(d);
        if (d->irq_mode && !d->irqs)
                probe_fail("virtio 0x%llx: no interrupt taken in interrupt mode", U64(d->base));
}

void vctx_fmt(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        print_vbuf(buf, size, fmt, ap);
        va_end(ap);
}

bool all_zero(const void *p, uint64_t n)
{
        const uint8_t *b = p;

        for (uint64_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

#define RNG_BYTES 64

/* Two requests: one buffer, then two buffers (as one indirect descriptor when negotiated);
 * the bytes must be non-zero and differ. */
void scenario_rng(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct virtio_dev *d = vctx_need(c, VID_RNG, 0, "virtio-rng");
        struct virtq q;
        uint8_t *a = alloc_zeroed(RNG_BYTES, 64), *b = alloc_zeroed(RNG_BYTES, 64);
        struct vbuf one = {a, RNG_BYTES, true};
        struct vbuf two[2] = {{b, RNG_BYTES / 2, true}, {b + RNG_BYTES / 2, RNG_BYTES / 2, true}};
        uint32_t len;

        vctx_mode(c, d, false);
        virtio_bring_up(d, vctx_ring_features(c), &q, 1, 16);
        vctx_print_mode("rng", d);
        len = virtq_call(&q, &one, 1, false);
        print("probe: rng request 1: %u bytes\n", len);
        if (len != RNG_BYTES || all_zero(a, RNG_BYTES))
                probe_fail("rng request 1 returned %u bytes%s", len,
                           all_zero(a, RNG_BYTES) ? ", all zero" : "");
        len = virtq_call(&q, two, 2, true);
        print("probe: rng request 2: %u bytes in 2 buffers%s\n", len,
              q.use_indirect ? " (indirect)" : "");
        if (len != RNG_BYTES || all_zero(b, RNG_BYTES / 2) ||
            all_zero(b + RNG_BYTES / 2, RNG_BYTES / 2))
                probe_fail("rng request 2 returned %u bytes", len);
        if (memcmp(a, b, RNG_BYTES) == 0)
                probe_fail("rng returned the same bytes twice");
        print("probe: rng bytes differ\n");
        vctx_check_irqs(d);
        virtio_reset(d);
        virtio_irq_disable(d);
}

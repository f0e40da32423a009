#include "serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
        REG_DATA = 0, /* RBR/THR, DLL when DLAB */
        REG_IER = 1,  /* DLM when DLAB */
        REG_IIR = 2,  /* FCR on write */
        REG_LCR = 3,
        REG_MCR = 4,
        REG_LSR = 5,
        REG_MSR = 6,
        REG_SCR = 7,
};

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08
#define IER_MASK 0x0f

#define IIR_NONE    0x01
#define IIR_MSI     0x00
#define IIR_THRI    0x02
#define IIR_RDI     0x04
#define IIR_RLSI    0x06
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS       0x01
#define MSR_DDSR       0x02
#define MSR_TERI       0x04
#define MSR_DDCD       0x08
#define MSR_CTS        0x10
#define MSR_DSR        0x20
#define MSR_RI         0x40
#define MSR_DCD        0x80
#define MSR_DELTA_MASK 0x0f
/* A host console is always "connected": carrier, data-set-ready and clear-to-send. */
#define MSR_DEFAULT (MSR_DCD | MSR_DSR | MSR_CTS)

struct serial {
        pthread_mutex_t lock;
        struct serial_config cfg;
        uint8_t ier, lcr, mcr, lsr_err, msr, scr, fcr, dll, dlm;
        bool thr_ipending; /* THR became empty and the guest has not read IIR since */
        bool irq_level;
        uint8_t rx[SERIAL_FIFO_SIZE];
        unsigned rx_head, rx_count;
        bool rx_was_full;
        struct serial_stats stats;
        struct rate_limiter *out_limit; /* NULL: unlimited */
};

int serial_create(const struct serial_config *cfg, struct serial **out)
{
        struct serial *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        if (cfg->out_limit) {
                int r = rate_limiter_create(cfg->out_limit, cfg->out_limit_clock,
                                            cfg->out_limit_clock_opaque, &s->out_limit);
                if (r) {
                        free(s);
                        return r;
                }
        }
        pthread_mutex_init(&s->lock, NULL);
        s->cfg = *cfg;
        s->msr = MSR_DEFAULT;
        s->dll = 0x0c; /* 9600 baud, the chip's usual power-on divisor */
        s->lcr = 0x03; /* 8N1 */
        s->mcr = MCR_OUT2;
        s->thr_ipending = true;
        *out = s;
        return 0;
}

void serial_destroy(struct serial *s)
{
        if (!s)
                return;
        rate_limiter_destroy(s->out_limit);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static uint8_t compute_iir(const struct serial *s)
{
        uint8_t iir = IIR_NONE;

        if ((s->ier & IER_RLSI) && s->lsr_err)
                iir = IIR_RLSI;
        else if ((s->ier & IER_RDI) && s->rx_count)
                iir = IIR_RDI;
        else if ((s->ier & IER_THRI) && s->thr_ipending)
                iir = IIR_THRI;
        else if ((s->ier & IER_MSI) && (s->msr & MSR_DELTA_MASK))
                iir = IIR_MSI;
        return iir;
}

static void update_irq(struct serial *s)
{
        bool level = !(compute_iir(s) & IIR_NONE);

        if (level != s->irq_level) {
                s->irq_level = level;
                irq_line_set(&s->cfg.irq, level);
        }
}

/* Caller holds the lock. Returns false when the FIFO is full (overrun). */
static bool rx_put(struct serial *s, uint8_t b)
{
        if (s->rx_count == SERIAL_FIFO_SIZE) {
                s->lsr_err |= LSR_OE;
                return false;
        }
        s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = b;
        s->rx_count++;
        return true;
}

static uint8_t rx_get(struct serial *s)
{
        uint8_t b;

        if (!s->rx_count)
                return 0;
        b = s->rx[s->rx_head];
        s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
        s->rx_count--;
        return b;
}

static uint8_t loopback_msr(uint8_t mcr)
{
        uint8_t m = 0;

        if (mcr & MCR_RTS)
                m |= MSR_CTS;
        if (mcr & MCR_DTR)
                m |= MSR_DSR;
        if (mcr & MCR_OUT1)
                m |= MSR_RI;
        if (mcr & MCR_OUT2)
                m |= MSR_DCD;
        return m;
}

static void set_msr_lines(struct serial *s, uint8_t lines)
{
        uint8_t old = s->msr, delta = 0;

        if ((old ^ lines) & MSR_CTS)
                delta |= MSR_DCTS;
        if ((old ^ lines) & MSR_DSR)
                delta |= MSR_DDSR;
        if ((old ^ lines) & MSR_DCD)
                delta |= MSR_DDCD;
        if ((old & MSR_RI) && !(lines & MSR_RI))
                delta |= MSR_TERI; /* trailing edge of ring indicator */
        s->msr = (uint8_t)(lines | (old & MSR_DELTA_MASK) | delta);
}

static void write_thr(struct serial *s, uint8_t b)
{
        /* Writing THR clears the THRE interrupt; it comes back once the byte has left. The
         * line must drop in between, or an edge-triggered input sees no new interrupt. */
        s->thr_ipending = false;
        update_irq(s);
        if (s->mcr & MCR_LOOP) {
                rx_put(s, b);
        } else {
                s->stats.tx_bytes++;
                if (s->out_limit && !rate_limiter_try_consume(s->out_limit, 1, 0))
                        s->stats.rate_limiter_dropped_bytes++;
                else if (s->cfg.out)
                        s->cfg.out(s->cfg.opaque, &b, 1);
        }
        /* Transmission is instantaneous: THR is empty again right away. */
        s->thr_ipending = true;
}

static uint8_t reg_read(struct serial *s, unsigned reg, bool *space_freed)
{
        uint8_t v = 0;

        switch (reg) {
        case REG_DATA:
                if (s->lcr & LCR_DLAB)
                        return s->dll;
                v = rx_get(s);
                if (s->rx_was_full && s->rx_count < SERIAL_FIFO_SIZE) {
                        s->rx_was_full = false;
                        *space_freed = true;
                }
                return v;
        case REG_IER:
                return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        case REG_IIR:
                v = compute_iir(s);
                /* Reading IIR acknowledges a THRE interrupt (and only that one). */
                if (v == IIR_THRI)
                        s->thr_ipending = false;
                return (uint8_t)(v | ((s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0));
        case REG_LCR:
                return s->lcr;
        case REG_MCR:
                return s->mcr;
        case REG_LSR:
                v = (uint8_t)(LSR_THRE | LSR_TEMT | s->lsr_err | (s->rx_count ? LSR_DR : 0));
                s->lsr_err = 0;
                return v;
        case REG_MSR:
                v = s->msr;
                s->msr &= (uint8_t)~MSR_DELTA_MASK;
                return v;
        default:
                return s->scr;
        }
}

static void reg_write(struct serial *s, unsigned reg, uint8_t v, bool *space_freed)
{
        switch (reg) {
        case REG_DATA:
                if (s->lcr & LCR_DLAB)
                        s->dll = v;
                else
                        write_thr(s, v);
                break;
        case REG_IER:
                if (s->lcr & LCR_DLAB) {
                        s->dlm = v;
                        break;
                }
                /* Enabling THRI while THR is empty raises the interrupt at once. */
                if ((v & IER_THRI) && !(s->ier & IER_THRI))
                        s->thr_ipending = true;
                s->ier = v & IER_MASK;
                break;
        case REG_IIR: /* FCR */
                if (v & FCR_CLEAR_RX)
                        s->rx_head = s->rx_count = 0;
                s->fcr = v & 0xc9;
                break;
        case REG_LCR:
                s->lcr = v;
                break;
        case REG_MCR:
                s->mcr = v & MCR_MASK;
                set_msr_lines(s, (s->mcr & MCR_LOOP) ? loopback_msr(s->mcr) : MSR_DEFAULT);
                break;
        case REG_LSR:
        case REG_MSR:
                break; /* read-only on a 16550A */
        default:
                s->scr = v;
                break;
        }
        /* Input refused earlier (FIFO full or loopback) may flow again. */
        if (s->rx_was_full && !(s->mcr & MCR_LOOP) && s->rx_count < SERIAL_FIFO_SIZE) {
                s->rx_was_full = false;
                *space_freed = true;
        }
}

static void serial_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct serial *s = opaque;
        bool space_freed = false;

        memset(data, 0xff, len);
        if (off > REG_SCR || len != 1)
                return;
        pthread_mutex_lock(&s->lock);
        data[0] = reg_read(s, (unsigned)off, &space_freed);
        update_irq(s);
        pthread_mutex_unlock(&s->lock);
        if (space_freed && s->cfg.rx_space)
                s->cfg.rx_space(s->cfg.opaque);
}

static void serial_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct serial *s = opaque;
        bool space_freed = false;

        if (off > REG_SCR || len != 1)
                return;
        pthread_mutex_lock(&s->lock);
        reg_write(s, (unsigned)off, data[0], &space_freed);
        update_irq(s);
        pthread_mutex_unlock(&s->lock);
        if (space_freed && s->cfg.rx_space)
                s->cfg.rx_space(s->cfg.opaque);
}

const struct bus_ops *serial_bus_ops(void)
{
        static const struct bus_ops ops = {.read = serial_read, .write = serial_write};
        return &ops;
}

size_t serial_rx_push(struct serial *s, const uint8_t *buf, size_t len)
{
        size_t n = 0;

        pthread_mutex_lock(&s->lock);
        /* In loopback the chip is disconnected from the outside world. */
        if (!(s->mcr & MCR_LOOP)) {
                while (n < len && s->rx_count < SERIAL_FIFO_SIZE)
                        rx_put(s, buf[n++]);
                if (n < len) {
                        s->rx_was_full = true;
                        s->stats.missed_read_count++;
                }
                s->stats.rx_bytes += n;
        }
        update_irq(s);
        pthread_mutex_unlock(&s->lock);
        return n;
}

size_t serial_rx_space(struct serial *s)
{
        size_t n;

        pthread_mutex_lock(&s->lock);
        n = (s->mcr & MCR_LOOP) ? 0 : SERIAL_FIFO_SIZE - s->rx_count;
        if (n == 0)
                s->rx_was_full = true;
        pthread_mutex_unlock(&s->lock);
        return n;
}

void serial_get_stats(struct serial *s, struct serial_stats *st)
{
        pthread_mutex_lock(&s->lock);
        *st = s->stats;
        pthread_mutex_unlock(&s->lock);
}

/* ---- snapshots ---- */

void serial_save(struct serial *s, struct snapbuf_writer *w)
{
        pthread_mutex_lock(&s->lock);
        snapbuf_put_u8(w, s->ier);
        snapbuf_put_u8(w, s->lcr);
        snapbuf_put_u8(w, s->mcr);
        snapbuf_put_u8(w, s->lsr_err);
        snapbuf_put_u8(w, s->msr);
        snapbuf_put_u8(w, s->scr);
        snapbuf_put_u8(w, s->fcr);
        snapbuf_put_u8(w, s->dll);
        snapbuf_put_u8(w, s->dlm);
        snapbuf_put_bool(w, s->thr_ipending);
        snapbuf_put_u32(w, s->rx_count);
        for (unsigned i = 0; i < s->rx_count; i++)
                snapbuf_put_u8(w, s->rx[(s->rx_head + i) % SERIAL_FIFO_SIZE]);
        pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, struct snapbuf_reader *r)
{
        struct serial v;
        uint32_t n;

        memset(&v, 0, sizeof(v));
        v.ier = snapbuf_get_u8(r, "serial IER");
        v.lcr = snapbuf_get_u8(r, "serial LCR");
        v.mcr = snapbuf_get_u8(r, "serial MCR");
        v.lsr_err = snapbuf_get_u8(r, "serial LSR");
        v.msr = snapbuf_get_u8(r, "serial MSR");
        v.scr = snapbuf_get_u8(r, "serial SCR");
        v.fcr = snapbuf_get_u8(r, "serial FCR");
        v.dll = snapbuf_get_u8(r, "serial DLL");
        v.dlm = snapbuf_get_u8(r, "serial DLM");
        v.thr_ipending = snapbuf_get_bool(r, "serial THRE pending");
        n = snapbuf_get_count(r, SERIAL_FIFO_SIZE, "serial receive FIFO");
        snapbuf_get_bytes(r, v.rx, n, "serial receive FIFO");
        if (!snapbuf_ok(r))
                return -EINVAL;
        if ((v.ier & ~IER_MASK) || (v.mcr & ~MCR_MASK) || (v.lsr_err & ~LSR_OE))
                return snapbuf_fail(r, "serial", "impossible register values"), -EINVAL;
        pthread_mutex_lock(&s->lock);
        s->ier = v.ier;
        s->lcr = v.lcr;
        s->mcr = v.mcr;
        s->lsr_err = v.lsr_err;
        s->msr = v.msr;
        s->scr = v.scr;
        s->fcr = v.fcr;
        s->dll = v.dll;
        s->dlm = v.dlm;
        s->thr_ipending = v.thr_ipending;
        memcpy(s->rx, v.rx, sizeof(s->rx));
        s->rx_head = 0;
        s->rx_count = n;
        s->rx_was_full = n == SERIAL_FIFO_SIZE;
        s->irq_level = !(compute_iir(s) & IIR_NONE);
        irq_line_set(&s->cfg.irq, s->irq_level);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/*
 * 8250/16550A UART, checked against the chip's documented register behaviour (TI/NS 16550A
 * data sheet): THR output, LSR bits, IIR priorities and acknowledgement rules, the interrupt
 * line's exact transitions, DLAB, scratch, loopback with MSR mirroring, the receive FIFO
 * (its limit, flow-control callback and overrun) and malformed accesses.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/serial.h"
#include "fakes.h"

enum {
        RBR = 0,
        THR = 0,
        DLL = 0,
        IER = 1,
        DLM = 1,
        IIR = 2,
        FCR = 2,
        LCR = 3,
        MCR = 4,
        LSR = 5,
        MSR = 6,
        SCR = 7
};

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define IIR_NONE 0x01
#define IIR_MSI  0x00
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_RLSI 0x06

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

struct fixture {
        struct serial *s;
        struct fake_irq irq;
        struct out_capture out;
        unsigned rx_space_calls;
        size_t space_seen_in_callback;
};

static void fx_out(void *opaque, const uint8_t *buf, size_t len)
{
        struct fixture *fx = opaque;

        out_capture_fn(&fx->out, buf, len);
}

static void fx_rx_space(void *opaque)
{
        struct fixture *fx = opaque;

        fx->rx_space_calls++;
        /* The callback runs without the device lock: the VMM may query or push from it. */
        fx->space_seen_in_callback = serial_rx_space(fx->s);
}

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));
        struct serial_config cfg;

        if (!fx)
                return -1;
        fake_irq_init(&fx->irq);
        cfg = (struct serial_config){
            .irq = fake_irq_line(&fx->irq), .out = fx_out, .rx_space = fx_rx_space, .opaque = fx};
        if (serial_create(&cfg, &fx->s)) {
                free(fx);
                return -1;
        }
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        serial_destroy(fx->s);
        free(fx);
        return 0;
}

static uint8_t rd(struct fixture *fx, uint64_t off)
{
        uint8_t v = 0;

        serial_bus_ops()->read(fx->s, off, &v, 1);
        return v;
}

static void wr(struct fixture *fx, uint64_t off, uint8_t v)
{
        serial_bus_ops()->write(fx->s, off, &v, 1);
}

static void push(struct fixture *fx, const char *bytes)
{
        size_t len = strlen(bytes);

        assert_int_equal(serial_rx_push(fx->s, (const uint8_t *)bytes, len), len);
}

/* Asserts the exact sequence of levels the device gave its line since the last check. */
static void expect_irq(struct fixture *fx, const bool *levels, unsigned n)
{
        if (fx->irq.nr_events != n)
                fail_msg("expected %u irq transitions, got %u", n, fx->irq.nr_events);
        for (unsigned i = 0; i < n; i++)
                if (fx->irq.events[i] != levels[i])
                        fail_msg("irq transition %u: expected %d, got %d", i, levels[i],
                                 fx->irq.events[i]);
        fake_irq_clear_events(&fx->irq);
}

#define EXPECT_IRQ(fx, ...)                                                                        \
        do {                                                                                       \
                const bool levels_[] = {__VA_ARGS__};                                              \
                expect_irq((fx), levels_, sizeof(levels_) / sizeof(levels_[0]));                   \
        } while (0)
#define EXPECT_NO_IRQ(fx) expect_irq((fx), NULL, 0)

static void test_thr_write_reaches_output(void **state)
{
        struct fixture *fx = *state;
        struct serial_stats st;

        wr(fx, THR, 'o');
        wr(fx, THR, 'k');
        wr(fx, THR, '\n');
        assert_int_equal(fx->out.len, 3);
        assert_memory_equal(fx->out.buf, "ok\n", 3);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.tx_bytes, 3);
        assert_int_equal(st.rx_bytes, 0);
        /* Interrupts are disabled after reset: no line activity. */
        EXPECT_NO_IRQ(fx);
}

/* ---- the output rate limiter (PUT /serial's rate_limiter) ---- */

static uint64_t limit_now_ns;

static uint64_t limit_clock(void *opaque)
{
        (void)opaque;
        return limit_now_ns;
}

/* 10 bytes per second, with a one-time burst of 5. */
static const struct rate_limiter_config ten_per_second = {
    .bandwidth = {.size = 10, .one_time_burst = 5, .refill_time_ms = 1000}};

static int setup_limited(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));
        struct serial_config cfg;

        if (!fx)
                return -1;
        limit_now_ns = 1000000000ull;
        fake_irq_init(&fx->irq);
        cfg = (struct serial_config){.irq = fake_irq_line(&fx->irq),
                                     .out = fx_out,
                                     .opaque = fx,
                                     .out_limit = &ten_per_second,
                                     .out_limit_clock = limit_clock};
        if (serial_create(&cfg, &fx->s)) {
                free(fx);
                return -1;
        }
        *state = fx;
        return 0;
}

static void write_n(struct fixture *fx, unsigned n, char c)
{
        for (unsigned i = 0; i < n; i++)
                wr(fx, THR, (uint8_t)c);
}

/* A guest flooding the console: what the bucket holds goes out, the rest is dropped and
 * counted, and the transmitter never looks busy (the vCPU never waits). */
static void test_output_beyond_the_limit_is_dropped_and_counted(void **state)
{
        struct fixture *fx = *state;
        struct serial_stats st;

        wr(fx, IER, IER_THRI);
        fake_irq_clear_events(&fx->irq);
        write_n(fx, 40, 'a');
        /* The bucket (10) and the burst (5). */
        assert_int_equal(fx->out.len, 15);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.tx_bytes, 40);
        assert_int_equal(st.rate_limiter_dropped_bytes, 25);
        /* THR is empty again after each write, dropped or not. */
        assert_int_equal(rd(fx, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        /* Half a second refills 5 tokens. */
        limit_now_ns += 500000000ull;
        write_n(fx, 8, 'b');
        assert_int_equal(fx->out.len, 20);
        assert_memory_equal(fx->out.buf + 15, "bbbbb", 5);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.rate_limiter_dropped_bytes, 28);
        /* A full refill: never more than the bucket's size. */
        limit_now_ns += 10000000000ull;
        write_n(fx, 12, 'c');
        assert_int_equal(fx->out.len, 30);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.tx_bytes, 60);
        assert_int_equal(st.rate_limiter_dropped_bytes, 30);
}

/* Loopback does not go out: the limiter does not count it. */
static void test_loopback_is_not_limited(void **state)
{
        struct fixture *fx = *state;
        struct serial_stats st;

        wr(fx, MCR, MCR_LOOP);
        write_n(fx, 20, 'x');
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.rate_limiter_dropped_bytes, 0);
        assert_int_equal(fx->out.len, 0);
        wr(fx, MCR, 0);
        write_n(fx, 20, 'y');
        assert_int_equal(fx->out.len, 15);
}

static void test_lsr_thre_temt_and_dr_follow_fifo(void **state)
{
        struct fixture *fx = *state;

        /* Transmitter always empty; no data. */
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);
        wr(fx, THR, 'x');
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);

        push(fx, "ab");
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        assert_int_equal(rd(fx, RBR), 'a');
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        assert_int_equal(rd(fx, RBR), 'b');
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);
}

static void test_iir_idle_and_fifo_bits(void **state)
{
        struct fixture *fx = *state;

        assert_int_equal(rd(fx, IIR), IIR_NONE);
        /* FCR bit 0 enables the FIFOs: IIR bits 7:6 read 11. */
        wr(fx, FCR, 0x01);
        assert_int_equal(rd(fx, IIR), 0xc0 | IIR_NONE);
        wr(fx, IER, IER_THRI);
        assert_int_equal(rd(fx, IIR), 0xc0 | IIR_THRI);
        assert_int_equal(rd(fx, IIR), 0xc0 | IIR_NONE);
        wr(fx, FCR, 0x00);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

static void test_fcr_clears_receive_fifo(void **state)
{
        struct fixture *fx = *state;

        push(fx, "stale");
        wr(fx, FCR, 0x01 | 0x02);
        assert_int_equal(rd(fx, LSR) & LSR_DR, 0);
        assert_int_equal(serial_rx_space(fx->s), SERIAL_FIFO_SIZE);
        push(fx, "n");
        assert_int_equal(rd(fx, RBR), 'n');
}

/* All four sources pending at once: RLS > RDA > THRE > MSR, each cleared its own way. */
static void test_iir_priorities(void **state)
{
        struct fixture *fx = *state;
        uint8_t msr;

        wr(fx, IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
        /* Loopback changes the modem inputs (MSR deltas); 65 bytes overrun the FIFO. */
        wr(fx, MCR, MCR_LOOP | MCR_DTR);
        for (unsigned i = 0; i <= SERIAL_FIFO_SIZE; i++)
                wr(fx, THR, (uint8_t)i);

        assert_int_equal(rd(fx, IIR), IIR_RLSI);
        assert_int_equal(rd(fx, IIR), IIR_RLSI); /* IIR does not clear a line status */
        assert_int_equal(rd(fx, LSR) & LSR_OE, LSR_OE);

        assert_int_equal(rd(fx, IIR), IIR_RDI);
        assert_int_equal(rd(fx, IIR), IIR_RDI); /* ... nor received data */
        for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
                assert_int_equal(rd(fx, RBR), (uint8_t)i);

        assert_int_equal(rd(fx, IIR), IIR_THRI); /* reading IIR acknowledges THRE ... */
        assert_int_equal(rd(fx, IIR), IIR_MSI);  /* ... and only THRE */
        assert_int_equal(rd(fx, IIR), IIR_MSI);
        msr = rd(fx, MSR);
        assert_int_not_equal(msr & 0x0f, 0);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
        assert_false(fx->irq.level);
}

static void test_iir_read_does_not_ack_thre_behind_higher_source(void **state)
{
        struct fixture *fx = *state;

        push(fx, "d");
        wr(fx, IER, IER_RDI | IER_THRI);
        assert_int_equal(rd(fx, IIR), IIR_RDI);
        assert_int_equal(rd(fx, RBR), 'd');
        /* THRE was hidden behind RDA when IIR was read: still pending. */
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

static void test_thri_enable_raises_immediately(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_THRI);
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        EXPECT_IRQ(fx, false);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
        EXPECT_NO_IRQ(fx);

        /* Linux's UART_BUG_THRE probe: disabling and re-enabling THRI must reassert it. */
        wr(fx, IER, 0);
        EXPECT_NO_IRQ(fx);
        wr(fx, IER, IER_THRI);
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        EXPECT_IRQ(fx, false);
}

static void test_thri_disable_lowers_line(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_THRI);
        EXPECT_IRQ(fx, true);
        wr(fx, IER, 0);
        EXPECT_IRQ(fx, false);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

/*
 * Writing THR clears the THRE interrupt; it is set again once the character has moved on,
 * which is at once here. The line must therefore drop and rise again, so an edge-triggered
 * input sees a new interrupt for the new "transmitter empty" event.
 */
static void test_thr_write_clears_and_reasserts_thre(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_THRI);
        EXPECT_IRQ(fx, true);
        wr(fx, THR, 'a'); /* without acknowledging through IIR */
        EXPECT_IRQ(fx, false, true);
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        EXPECT_IRQ(fx, false);
        wr(fx, THR, 'b'); /* after acknowledging */
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        EXPECT_IRQ(fx, false);
        assert_int_equal(fx->out.len, 2);
}

static void test_thr_write_with_thri_disabled_is_silent(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_RDI);
        wr(fx, THR, 'a');
        EXPECT_NO_IRQ(fx);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

static void test_rda_interrupt_until_drained(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_RDI);
        EXPECT_NO_IRQ(fx);
        push(fx, "xy");
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_RDI);
        assert_int_equal(rd(fx, RBR), 'x');
        EXPECT_NO_IRQ(fx); /* one byte still there */
        assert_int_equal(rd(fx, IIR), IIR_RDI);
        push(fx, "z");
        EXPECT_NO_IRQ(fx); /* already high */
        assert_int_equal(rd(fx, RBR), 'y');
        assert_int_equal(rd(fx, RBR), 'z');
        EXPECT_IRQ(fx, false);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

static void test_rda_enable_with_data_pending(void **state)
{
        struct fixture *fx = *state;

        push(fx, "q");
        EXPECT_NO_IRQ(fx); /* masked */
        wr(fx, IER, IER_RDI);
        EXPECT_IRQ(fx, true);
        wr(fx, IER, 0);
        EXPECT_IRQ(fx, false);
        assert_int_equal(rd(fx, RBR), 'q');
        EXPECT_NO_IRQ(fx);
}

static void test_irq_level_tracks_sources(void **state)
{
        struct fixture *fx = *state;

        /* THRE and RDA both enabled: the line stays high while either is pending. */
        wr(fx, IER, IER_RDI | IER_THRI);
        EXPECT_IRQ(fx, true);
        push(fx, "1");
        EXPECT_NO_IRQ(fx);
        assert_int_equal(rd(fx, IIR), IIR_RDI);
        assert_int_equal(rd(fx, RBR), '1');
        EXPECT_NO_IRQ(fx); /* THRE still pending */
        assert_int_equal(rd(fx, IIR), IIR_THRI);
        EXPECT_IRQ(fx, false);
        push(fx, "2");
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, RBR), '2');
        EXPECT_IRQ(fx, false);
}

static void test_dlab_divisor_latch(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_RDI);
        wr(fx, LCR, 0x83);
        assert_int_equal(rd(fx, LCR), 0x83);
        /* Power-on divisor: 12 (9600 baud). */
        assert_int_equal(rd(fx, DLL), 0x0c);
        assert_int_equal(rd(fx, DLM), 0x00);
        wr(fx, DLL, 0x01);
        wr(fx, DLM, 0x02);
        assert_int_equal(rd(fx, DLL), 0x01);
        assert_int_equal(rd(fx, DLM), 0x02);
        /* With DLAB set, offset 0/1 are not THR/IER. */
        assert_int_equal(fx->out.len, 0);
        wr(fx, LCR, 0x03);
        assert_int_equal(rd(fx, IER), IER_RDI);
        push(fx, "r");
        assert_int_equal(rd(fx, RBR), 'r');
        wr(fx, THR, 't');
        assert_int_equal(fx->out.len, 1);
        /* The divisor survives clearing DLAB. */
        wr(fx, LCR, 0x80);
        assert_int_equal(rd(fx, DLL), 0x01);
        assert_int_equal(rd(fx, DLM), 0x02);
}

static void test_ier_ignores_reserved_bits(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, 0xff);
        assert_int_equal(rd(fx, IER), 0x0f);
}

static void test_scratch_register(void **state)
{
        struct fixture *fx = *state;

        assert_int_equal(rd(fx, SCR), 0);
        wr(fx, SCR, 0x5a);
        assert_int_equal(rd(fx, SCR), 0x5a);
        wr(fx, SCR, 0xa5);
        assert_int_equal(rd(fx, SCR), 0xa5);
        /* Independent of DLAB. */
        wr(fx, LCR, 0x80);
        assert_int_equal(rd(fx, SCR), 0xa5);
}

static void test_loopback_routes_thr_to_rx(void **state)
{
        struct fixture *fx = *state;
        struct serial_stats st;
        const uint8_t outside = '!';

        wr(fx, MCR, MCR_LOOP | MCR_OUT2);
        wr(fx, THR, 'L');
        assert_int_equal(fx->out.len, 0); /* the transmitter is disconnected */
        assert_int_equal(rd(fx, LSR) & LSR_DR, LSR_DR);
        assert_int_equal(rd(fx, RBR), 'L');
        assert_int_equal(rd(fx, LSR) & LSR_DR, 0);
        /* ... and so is the receiver: host input is refused. */
        assert_int_equal(serial_rx_push(fx->s, &outside, 1), 0);
        assert_int_equal(serial_rx_space(fx->s), 0);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.tx_bytes, 0);
        assert_int_equal(st.rx_bytes, 0);

        wr(fx, MCR, MCR_OUT2);
        wr(fx, THR, 'T');
        assert_int_equal(fx->out.len, 1);
        assert_int_equal(fx->out.buf[0], 'T');
        assert_int_equal(serial_rx_push(fx->s, &outside, 1), 1);
}

static void test_loopback_msr_mirrors_mcr(void **state)
{
        struct fixture *fx = *state;

        /* A connected console: DCD, DSR and CTS asserted, nothing changed yet. */
        assert_int_equal(rd(fx, MSR), MSR_DCD | MSR_DSR | MSR_CTS);

        /* Loopback with all outputs low: CTS, DSR and DCD drop, with their delta bits. */
        wr(fx, MCR, MCR_LOOP);
        assert_int_equal(rd(fx, MCR), MCR_LOOP);
        assert_int_equal(rd(fx, MSR), MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_int_equal(rd(fx, MSR), 0); /* reading MSR clears the deltas */

        /* RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
        wr(fx, MCR, MCR_LOOP | MCR_RTS);
        assert_int_equal(rd(fx, MSR), MSR_CTS | MSR_DCTS);
        wr(fx, MCR, MCR_LOOP | MCR_RTS | MCR_DTR);
        assert_int_equal(rd(fx, MSR), MSR_CTS | MSR_DSR | MSR_DDSR);
        wr(fx, MCR, MCR_LOOP | MCR_RTS | MCR_DTR | MCR_OUT2);
        assert_int_equal(rd(fx, MSR), MSR_CTS | MSR_DSR | MSR_DCD | MSR_DDCD);
        /* RI rising sets no delta; only its trailing edge sets TERI. */
        wr(fx, MCR, MCR_LOOP | MCR_RTS | MCR_DTR | MCR_OUT2 | MCR_OUT1);
        assert_int_equal(rd(fx, MSR), MSR_CTS | MSR_DSR | MSR_DCD | MSR_RI);
        wr(fx, MCR, MCR_LOOP | MCR_RTS | MCR_DTR | MCR_OUT2);
        assert_int_equal(rd(fx, MSR), MSR_CTS | MSR_DSR | MSR_DCD | MSR_TERI);
        /* Deltas accumulate until MSR is read. */
        wr(fx, MCR, MCR_LOOP | MCR_DTR | MCR_OUT2);
        wr(fx, MCR, MCR_LOOP | MCR_OUT2);
        assert_int_equal(rd(fx, MSR), MSR_DCD | MSR_DCTS | MSR_DDSR);

        /* Leaving loopback reconnects the console's lines. */
        wr(fx, MCR, MCR_OUT2);
        assert_int_equal(rd(fx, MSR), MSR_DCD | MSR_DSR | MSR_CTS | MSR_DCTS | MSR_DDSR);
}

static void test_msr_interrupt(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_MSI);
        EXPECT_NO_IRQ(fx);
        wr(fx, MCR, MCR_LOOP | MCR_OUT2 | MCR_DTR | MCR_RTS); /* no line changes */
        EXPECT_NO_IRQ(fx);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
        wr(fx, MCR, MCR_LOOP | MCR_OUT2 | MCR_DTR);
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_MSI);
        EXPECT_NO_IRQ(fx); /* IIR does not clear a modem status interrupt */
        assert_int_equal(rd(fx, MSR), MSR_DCD | MSR_DSR | MSR_DCTS);
        EXPECT_IRQ(fx, false);
        assert_int_equal(rd(fx, IIR), IIR_NONE);
}

static void test_rx_push_limited_by_fifo(void **state)
{
        struct fixture *fx = *state;
        struct serial_stats st;
        uint8_t in[100];

        for (unsigned i = 0; i < sizeof(in); i++)
                in[i] = (uint8_t)(i + 1);
        assert_int_equal(serial_rx_space(fx->s), SERIAL_FIFO_SIZE);
        assert_int_equal(serial_rx_push(fx->s, in, 10), 10);
        serial_get_stats(fx->s, &st);
        assert_int_equal(st.missed_read_count, 0);
        assert_int_equal(serial_rx_space(fx->s), SERIAL_FIFO_SIZE - 10);

        assert_int_equal(serial_rx_push(fx->s, in + 10, 90), SERIAL_FIFO_SIZE - 10);
        serial_get_stats(fx->s, &st);
        assert_true(st.missed_read_count > 0);
        assert_int_equal(st.rx_bytes, SERIAL_FIFO_SIZE);
        assert_int_equal(serial_rx_space(fx->s), 0);
        assert_int_equal(serial_rx_push(fx->s, in, 1), 0);

        /* FIFO order, nothing lost or duplicated, and no overrun: the host held back. */
        for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
                assert_int_equal(rd(fx, RBR), in[i]);
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);
}

static void test_rx_space_callback_after_full_fifo_drains(void **state)
{
        struct fixture *fx = *state;
        uint8_t in[SERIAL_FIFO_SIZE + 6];

        memset(in, 'k', sizeof(in));
        assert_int_equal(serial_rx_push(fx->s, in, 10), 10);
        (void)rd(fx, RBR);
        assert_int_equal(fx->rx_space_calls, 0); /* never full: no callback */

        assert_int_equal(serial_rx_push(fx->s, in, sizeof(in)), SERIAL_FIFO_SIZE - 9);
        assert_int_equal(fx->rx_space_calls, 0);
        (void)rd(fx, RBR);
        assert_int_equal(fx->rx_space_calls, 1);
        assert_int_equal(fx->space_seen_in_callback, 1);
        (void)rd(fx, RBR);
        (void)rd(fx, RBR);
        assert_int_equal(fx->rx_space_calls, 1); /* once per full episode */

        /* The VMM polling serial_rx_space() on a full FIFO arms it too. */
        assert_int_equal(serial_rx_space(fx->s), 3);
        assert_int_equal(serial_rx_push(fx->s, in, 3), 3);
        assert_int_equal(fx->rx_space_calls, 1);
        assert_int_equal(serial_rx_space(fx->s), 0);
        (void)rd(fx, RBR);
        assert_int_equal(fx->rx_space_calls, 2);
}

static void test_overrun_sets_oe_until_lsr_read(void **state)
{
        struct fixture *fx = *state;

        wr(fx, MCR, MCR_LOOP);
        for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
                wr(fx, THR, (uint8_t)(0x80 + i));
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        wr(fx, THR, 0x7f); /* one too many */
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT | LSR_DR | LSR_OE);
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        /* The character that overran is lost; the FIFO keeps the first 64. */
        for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
                assert_int_equal(rd(fx, RBR), 0x80 + i);
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);
}

static void test_rls_interrupt_on_overrun(void **state)
{
        struct fixture *fx = *state;

        wr(fx, IER, IER_RLSI);
        wr(fx, MCR, MCR_LOOP);
        for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
                wr(fx, THR, 'o');
        EXPECT_NO_IRQ(fx);
        wr(fx, THR, 'o');
        EXPECT_IRQ(fx, true);
        assert_int_equal(rd(fx, IIR), IIR_RLSI);
        EXPECT_NO_IRQ(fx);
        assert_int_equal(rd(fx, LSR) & LSR_OE, LSR_OE);
        EXPECT_IRQ(fx, false);
}

static void test_bad_accesses_ignored(void **state)
{
        struct fixture *fx = *state;
        uint8_t two[2] = {'A', 'B'};
        uint8_t v = 0;

        push(fx, "z");
        wr(fx, SCR, 0x42);

        /* Wrong width: reads return all ones and have no side effect (the FIFO keeps 'z'). */
        memset(two, 0, sizeof(two));
        serial_bus_ops()->read(fx->s, RBR, two, 2);
        assert_int_equal(two[0], 0xff);
        assert_int_equal(two[1], 0xff);
        two[0] = 'A';
        two[1] = 'B';
        serial_bus_ops()->write(fx->s, THR, two, 2);
        serial_bus_ops()->write(fx->s, SCR, two, 2);
        assert_int_equal(fx->out.len, 0);

        /* Offsets past the eight registers. */
        serial_bus_ops()->read(fx->s, 8, &v, 1);
        assert_int_equal(v, 0xff);
        v = 0;
        serial_bus_ops()->read(fx->s, 0x100, &v, 1);
        assert_int_equal(v, 0xff);
        v = 0x13;
        serial_bus_ops()->write(fx->s, 8, &v, 1);
        serial_bus_ops()->write(fx->s, 15, &v, 1);
        assert_int_equal(fx->out.len, 0);

        assert_int_equal(rd(fx, SCR), 0x42);
        assert_int_equal(rd(fx, RBR), 'z');
        EXPECT_NO_IRQ(fx);
}

static void test_lsr_and_msr_are_read_only(void **state)
{
        struct fixture *fx = *state;

        wr(fx, LSR, 0x00);
        wr(fx, MSR, 0x00);
        assert_int_equal(rd(fx, LSR), LSR_THRE | LSR_TEMT);
        assert_int_equal(rd(fx, MSR), MSR_DCD | MSR_DSR | MSR_CTS);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define L(fn) cmocka_unit_test_setup_teardown(fn, setup_limited, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_thr_write_reaches_output),
            L(test_output_beyond_the_limit_is_dropped_and_counted),
            L(test_loopback_is_not_limited),
            T(test_lsr_thre_temt_and_dr_follow_fifo),
            T(test_iir_idle_and_fifo_bits),
            T(test_fcr_clears_receive_fifo),
            T(test_iir_priorities),
            T(test_iir_read_does_not_ack_thre_behind_higher_source),
            T(test_thri_enable_raises_immediately),
            T(test_thri_disable_lowers_line),
            T(test_thr_write_clears_and_reasserts_thre),
            T(test_thr_write_with_thri_disabled_is_silent),
            T(test_rda_interrupt_until_drained),
            T(test_rda_enable_with_data_pending),
            T(test_irq_level_tracks_sources),
            T(test_dlab_divisor_latch),
            T(test_ier_ignores_reserved_bits),
            T(test_scratch_register),
            T(test_loopback_routes_thr_to_rx),
            T(test_loopback_msr_mirrors_mcr),
            T(test_msr_interrupt),
            T(test_rx_push_limited_by_fifo),
            T(test_rx_space_callback_after_full_fifo_drains),
            T(test_overrun_sets_oe_until_lsr_read),
            T(test_rls_interrupt_on_overrun),
            T(test_bad_accesses_ignored),
            T(test_lsr_and_msr_are_read_only),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * i8042 keyboard controller: status bits, the controller configuration byte (CTR), the
 * controller and keyboard command sets Linux uses, the CPU reset line (0xFE pulse, 0xD1
 * output port), IRQ 1 pulses gated by CTR bit 0, and Ctrl-Alt-Del injection in the scancode
 * set the guest sees (set 1 with translation, set 2 without).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/i8042.h"
#include "fakes.h"

#define SR_OBF 0x01
#define SR_SYS 0x04
#define SR_CMD 0x08

#define CTR_KBD_INT 0x01
#define CTR_SYS     0x04
#define CTR_XLATE   0x40

struct fixture {
        struct i8042 *k;
        struct fake_irq irq;
        unsigned resets;
};

static void on_reset(void *opaque)
{
        struct fixture *fx = opaque;

        fx->resets++;
}

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));
        struct i8042_config cfg;

        if (!fx)
                return -1;
        fake_irq_init(&fx->irq);
        cfg = (struct i8042_config){
            .kbd_irq = fake_irq_line(&fx->irq), .reset = on_reset, .opaque = fx};
        if (i8042_create(&cfg, &fx->k)) {
                free(fx);
                return -1;
        }
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        i8042_destroy(fx->k);
        free(fx);
        return 0;
}

static uint8_t status(struct fixture *fx)
{
        uint8_t v = 0;

        i8042_cmd_ops()->read(fx->k, 0, &v, 1);
        return v;
}

static void cmd(struct fixture *fx, uint8_t v)
{
        i8042_cmd_ops()->write(fx->k, 0, &v, 1);
}

static uint8_t data_rd(struct fixture *fx)
{
        uint8_t v = 0;

        i8042_data_ops()->read(fx->k, 0, &v, 1);
        return v;
}

static void data_wr(struct fixture *fx, uint8_t v)
{
        i8042_data_ops()->write(fx->k, 0, &v, 1);
}

/* Reads the whole output buffer, checking OBF before each byte. */
static void expect_output(struct fixture *fx, const uint8_t *bytes, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (!(status(fx) & SR_OBF))
                        fail_msg("output buffer empty at byte %zu, expected 0x%02x", i, bytes[i]);
                uint8_t b = data_rd(fx);
                if (b != bytes[i])
                        fail_msg("byte %zu: expected 0x%02x, got 0x%02x", i, bytes[i], b);
        }
        if (status(fx) & SR_OBF)
                fail_msg("output buffer holds more than the %zu expected bytes", n);
}

#define EXPECT_OUTPUT(fx, ...)                                                                     \
        do {                                                                                       \
                const uint8_t bytes_[] = {__VA_ARGS__};                                            \
                expect_output((fx), bytes_, sizeof(bytes_));                                       \
        } while (0)

static uint8_t read_ctr(struct fixture *fx)
{
        cmd(fx, 0x20);
        assert_true(status(fx) & SR_OBF);
        return data_rd(fx);
}

static void write_ctr(struct fixture *fx, uint8_t v)
{
        cmd(fx, 0x60);
        data_wr(fx, v);
}

static void test_status_bits(void **state)
{
        struct fixture *fx = *state;

        /* Self-test passed (SYS), nothing to read, last write was not a command. */
        assert_int_equal(status(fx) & (SR_OBF | SR_SYS | SR_CMD), SR_SYS);
        cmd(fx, 0xa7); /* a command without a reply */
        assert_int_equal(status(fx) & (SR_OBF | SR_CMD), SR_CMD);
        data_wr(fx, 0xf4); /* a keyboard command: replies ACK */
        assert_int_equal(status(fx) & (SR_OBF | SR_CMD), SR_OBF);
        /* Reading the status does not consume the output. */
        assert_int_equal(status(fx) & SR_OBF, SR_OBF);
        assert_int_equal(data_rd(fx), 0xfa);
        assert_int_equal(status(fx) & SR_OBF, 0);
}

static void test_read_and_write_ctr(void **state)
{
        struct fixture *fx = *state;
        uint8_t ctr = read_ctr(fx);

        /* As a BIOS leaves it: keyboard interrupt, system flag and translation on. */
        assert_int_equal(ctr & (CTR_KBD_INT | CTR_SYS | CTR_XLATE),
                         CTR_KBD_INT | CTR_SYS | CTR_XLATE);
        write_ctr(fx, 0x45);
        assert_int_equal(read_ctr(fx), 0x45);
        write_ctr(fx, 0x01);
        assert_int_equal(read_ctr(fx), 0x01);
        /* The status register's SYS flag follows CTR bit 2. */
        assert_int_equal(status(fx) & SR_SYS, 0);
        write_ctr(fx, 0x05);
        assert_int_equal(status(fx) & SR_SYS, SR_SYS);
        /* Writing the CTR produces no output. */
        assert_int_equal(status(fx) & SR_OBF, 0);
}

static void test_controller_commands(void **state)
{
        struct fixture *fx = *state;

        cmd(fx, 0xaa); /* controller self-test */
        EXPECT_OUTPUT(fx, 0x55);
        cmd(fx, 0xab); /* keyboard interface test */
        EXPECT_OUTPUT(fx, 0x00);
        /* 0xad/0xae disable and enable the keyboard (CTR bit 4), 0xa7/0xa8 the aux port. */
        write_ctr(fx, 0x01);
        cmd(fx, 0xad);
        assert_int_equal(read_ctr(fx), 0x11);
        cmd(fx, 0xae);
        assert_int_equal(read_ctr(fx), 0x01);
        cmd(fx, 0xa7);
        assert_int_equal(read_ctr(fx), 0x21);
        cmd(fx, 0xa8);
        assert_int_equal(read_ctr(fx), 0x01);
        /* 0xd2: the next data byte comes back as if the keyboard had sent it. */
        cmd(fx, 0xd2);
        data_wr(fx, 0x1c);
        EXPECT_OUTPUT(fx, 0x1c);
}

static void test_fe_pulse_resets(void **state)
{
        struct fixture *fx = *state;

        cmd(fx, 0xfe);
        assert_int_equal(fx->resets, 1);
        assert_int_equal(i8042_reset_count(fx->k), 1);
}

static void test_only_pulses_with_bit0_clear_reset(void **state)
{
        struct fixture *fx = *state;
        unsigned expected = 0;

        /* 0xF0-0xFF pulse output port bits 0-3 where the command bit is 0; bit 0 is RESET. */
        for (unsigned c = 0xf0; c <= 0xff; c++) {
                cmd(fx, (uint8_t)c);
                if (!(c & 1))
                        expected++;
                if (fx->resets != expected)
                        fail_msg("command 0x%02x: %u resets, expected %u", c, fx->resets, expected);
        }
        assert_int_equal(i8042_reset_count(fx->k), 8);
        /* 0xFF and friends are no-ops: the controller still works. */
        assert_int_equal(read_ctr(fx) & CTR_KBD_INT, CTR_KBD_INT);
}

static void test_other_commands_do_not_reset(void **state)
{
        struct fixture *fx = *state;
        static const uint8_t cmds[] = {0x20, 0xa7, 0xa8, 0xaa, 0xab, 0xad, 0xae, 0xd0, 0xe0};

        for (size_t i = 0; i < sizeof(cmds); i++)
                cmd(fx, cmds[i]);
        /* Keyboard reset is not a CPU reset. */
        data_wr(fx, 0xff);
        assert_int_equal(fx->resets, 0);
        assert_int_equal(i8042_reset_count(fx->k), 0);
}

static void test_write_output_port_reset(void **state)
{
        struct fixture *fx = *state;

        cmd(fx, 0xd1);
        data_wr(fx, 0x03); /* RESET line high (not asserted), A20 on */
        assert_int_equal(fx->resets, 0);
        cmd(fx, 0xd0);
        EXPECT_OUTPUT(fx, 0x03);
        cmd(fx, 0xd1);
        data_wr(fx, 0x02); /* bit 0 low: CPU reset */
        assert_int_equal(fx->resets, 1);
        assert_int_equal(i8042_reset_count(fx->k), 1);
}

static void test_keyboard_reset(void **state)
{
        struct fixture *fx = *state;

        data_wr(fx, 0xff);
        EXPECT_OUTPUT(fx, 0xfa, 0xaa);
}

static void test_keyboard_identify(void **state)
{
        struct fixture *fx = *state;

        write_ctr(fx, CTR_KBD_INT | CTR_SYS); /* untranslated: the raw MF2 id */
        data_wr(fx, 0xf2);
        EXPECT_OUTPUT(fx, 0xfa, 0xab, 0x83);
}

static void test_keyboard_scancode_set(void **state)
{
        struct fixture *fx = *state;

        write_ctr(fx, CTR_KBD_INT | CTR_SYS);
        data_wr(fx, 0xf0);
        EXPECT_OUTPUT(fx, 0xfa); /* command acknowledged, waiting for the argument */
        data_wr(fx, 0x00);
        EXPECT_OUTPUT(fx, 0xfa, 0x02); /* the default set is 2 */
        data_wr(fx, 0xf0);
        data_wr(fx, 0x01);
        EXPECT_OUTPUT(fx, 0xfa, 0xfa);
        data_wr(fx, 0xf0);
        data_wr(fx, 0x00);
        EXPECT_OUTPUT(fx, 0xfa, 0xfa, 0x01);
        /* A keyboard reset restores set 2. */
        data_wr(fx, 0xff);
        EXPECT_OUTPUT(fx, 0xfa, 0xaa);
        data_wr(fx, 0xf0);
        data_wr(fx, 0x00);
        EXPECT_OUTPUT(fx, 0xfa, 0xfa, 0x02);
}

static void test_keyboard_replies_are_translated(void **state)
{
        struct fixture *fx = *state;

        /* Power-on state has translation on: keyboard bytes pass the set-2-to-1 table. */
        data_wr(fx, 0xf2);
        EXPECT_OUTPUT(fx, 0xfa, 0xab, 0x41);
        data_wr(fx, 0xf0);
        data_wr(fx, 0x00);
        EXPECT_OUTPUT(fx, 0xfa, 0xfa, 0x41); /* set 2, translated */
}

static void test_keyboard_echo_leds_and_unknown(void **state)
{
        struct fixture *fx = *state;

        data_wr(fx, 0xee);
        EXPECT_OUTPUT(fx, 0xee);
        data_wr(fx, 0xed); /* set LEDs: ACK, then ACK for the argument */
        EXPECT_OUTPUT(fx, 0xfa);
        data_wr(fx, 0x07);
        EXPECT_OUTPUT(fx, 0xfa);
        data_wr(fx, 0xf4); /* enable scanning */
        EXPECT_OUTPUT(fx, 0xfa);
        data_wr(fx, 0x42); /* not a command */
        EXPECT_OUTPUT(fx, 0xfe);
        data_wr(fx, 0xee); /* the keyboard still works after a resend */
        EXPECT_OUTPUT(fx, 0xee);
}

static void test_irq_pulses_only_with_ctr_bit0(void **state)
{
        struct fixture *fx = *state;

        /* Enabled: one pulse when a reply is queued, another per byte still waiting. */
        data_wr(fx, 0xff);
        assert_int_equal(fx->irq.nr_events, 2);
        assert_true(fx->irq.events[0]);
        assert_false(fx->irq.events[1]);
        assert_false(fx->irq.level);
        fake_irq_clear_events(&fx->irq);
        assert_int_equal(data_rd(fx), 0xfa);
        assert_int_equal(fx->irq.raises, 1); /* 0xAA still queued */
        assert_false(fx->irq.level);
        assert_int_equal(data_rd(fx), 0xaa);
        assert_int_equal(fx->irq.raises, 1); /* nothing left */

        cmd(fx, 0x20);
        assert_int_equal(fx->irq.raises, 2);
        (void)data_rd(fx);

        /* Disabled: replies are queued silently. */
        write_ctr(fx, CTR_SYS | CTR_XLATE);
        fake_irq_clear_events(&fx->irq);
        data_wr(fx, 0xff);
        cmd(fx, 0xaa);
        assert_int_equal(status(fx) & SR_OBF, SR_OBF);
        EXPECT_OUTPUT(fx, 0xfa, 0xaa, 0x55);
        assert_int_equal(fx->irq.nr_events, 0);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), 0);
        assert_int_equal(fx->irq.nr_events, 0);
}

static void test_ctrl_alt_del_set1_with_translation(void **state)
{
        struct fixture *fx = *state;

        assert_int_equal(read_ctr(fx) & CTR_XLATE, CTR_XLATE);
        fake_irq_clear_events(&fx->irq);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), 0);
        assert_int_equal(fx->irq.raises, 1);
        /* Make codes Ctrl, Alt, E0 Del; break codes (make | 0x80) in reverse. */
        EXPECT_OUTPUT(fx, 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d);
}

static void test_ctrl_alt_del_set2_without_translation(void **state)
{
        struct fixture *fx = *state;

        write_ctr(fx, CTR_KBD_INT | CTR_SYS);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), 0);
        /* Set 2: make codes, then F0-prefixed breaks. */
        EXPECT_OUTPUT(fx, 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14);
        /* The keyboard itself switched to set 1, untranslated: set 1 codes. */
        data_wr(fx, 0xf0);
        data_wr(fx, 0x01);
        EXPECT_OUTPUT(fx, 0xfa, 0xfa);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), 0);
        EXPECT_OUTPUT(fx, 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d);
}

static void test_ctrl_alt_del_busy_queues_nothing(void **state)
{
        struct fixture *fx = *state;
        uint8_t echoes[16], ee[16];

        /* 16-byte buffer: 8 free bytes take the 8-byte set 1 sequence exactly. */
        for (unsigned i = 0; i < 8; i++)
                data_wr(fx, 0xee);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), 0);
        memset(ee, 0xee, sizeof(ee));
        memset(echoes, 0xee, 8);
        memcpy(echoes + 8, (const uint8_t[]){0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}, 8);
        expect_output(fx, echoes, 16);

        /* 7 free bytes: refused, and nothing of it is queued, no interrupt. */
        for (unsigned i = 0; i < 9; i++)
                data_wr(fx, 0xee);
        fake_irq_clear_events(&fx->irq);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), -EBUSY);
        assert_int_equal(fx->irq.nr_events, 0);
        expect_output(fx, ee, 9);

        /* Set 2 (11 bytes) needs more room: 10 free is not enough. */
        write_ctr(fx, CTR_KBD_INT | CTR_SYS);
        for (unsigned i = 0; i < 6; i++)
                data_wr(fx, 0xee);
        assert_int_equal(i8042_send_ctrl_alt_del(fx->k), -EBUSY);
        expect_output(fx, ee, 6);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_status_bits),
            T(test_read_and_write_ctr),
            T(test_controller_commands),
            T(test_fe_pulse_resets),
            T(test_only_pulses_with_bit0_clear_reset),
            T(test_other_commands_do_not_reset),
            T(test_write_output_port_reset),
            T(test_keyboard_reset),
            T(test_keyboard_identify),
            T(test_keyboard_scancode_set),
            T(test_keyboard_replies_are_translated),
            T(test_keyboard_echo_leds_and_unknown),
            T(test_irq_pulses_only_with_ctr_bit0),
            T(test_ctrl_alt_del_set1_with_translation),
            T(test_ctrl_alt_del_set2_without_translation),
            T(test_ctrl_alt_del_busy_queues_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

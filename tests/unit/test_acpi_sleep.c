/*
 * The ACPI sleep registers of the hardware-reduced platform: Linux's power-off sequence
 * (clear WAK_STS, then SLP_TYP = S5 with SLP_EN) ends the VM once; writes without SLP_EN and
 * other registers do nothing; a sleep state the platform does not offer is refused and
 * answered with WAK_STS at once (write 1 to clear), so the guest does not wait forever.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "devices/acpi_sleep.h"
#include "fakes.h"

#define S5 5

struct fixture {
        struct acpi_sleep *s;
        unsigned power_offs;
};

static void on_power_off(void *opaque)
{
        ((struct fixture *)opaque)->power_offs++;
}

static int setup(void **state)
{
        static struct fixture fx;
        struct acpi_sleep_config cfg = {.s5_type = S5, .power_off = on_power_off, .opaque = &fx};

        fx.power_offs = 0;
        assert_int_equal(acpi_sleep_create(&cfg, &fx.s), 0);
        *state = &fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        acpi_sleep_destroy(fx->s);
        return 0;
}

static void wr(struct fixture *fx, uint64_t off, uint8_t v)
{
        acpi_sleep_ops()->write(fx->s, off, &v, 1);
}

static uint8_t rd(struct fixture *fx, uint64_t off)
{
        uint8_t v = 0xee;

        acpi_sleep_ops()->read(fx->s, off, &v, 1);
        return v;
}

/* What Linux's acpi_hw_extended_sleep() writes for poweroff. */
static void test_linux_power_off(void **state)
{
        struct fixture *fx = *state;

        wr(fx, ACPI_SLEEP_STATUS_OFF, ACPI_SLEEP_WAK_STS);
        assert_int_equal(fx->power_offs, 0);
        wr(fx, ACPI_SLEEP_CONTROL_OFF, (S5 << ACPI_SLEEP_TYP_SHIFT) | ACPI_SLEEP_EN);
        assert_int_equal(fx->power_offs, 1);
        assert_int_equal(acpi_sleep_power_off_count(fx->s), 1);
        assert_int_equal(acpi_sleep_refused_count(fx->s), 0);
}

static void test_without_sleep_enable_nothing_happens(void **state)
{
        struct fixture *fx = *state;

        wr(fx, ACPI_SLEEP_CONTROL_OFF, S5 << ACPI_SLEEP_TYP_SHIFT);
        wr(fx, 2, (S5 << ACPI_SLEEP_TYP_SHIFT) | ACPI_SLEEP_EN); /* outside the registers */
        assert_int_equal(fx->power_offs, 0);
        assert_int_equal(rd(fx, ACPI_SLEEP_CONTROL_OFF), 0);
        assert_int_equal(rd(fx, ACPI_SLEEP_STATUS_OFF), 0);
}

static void test_other_sleep_state_refused_and_woken(void **state)
{
        struct fixture *fx = *state;
        struct log_capture logs;

        log_capture_start(&logs);
        wr(fx, ACPI_SLEEP_CONTROL_OFF, (3 << ACPI_SLEEP_TYP_SHIFT) | ACPI_SLEEP_EN); /* S3 */
        log_capture_stop();
        assert_int_equal(fx->power_offs, 0);
        assert_int_equal(acpi_sleep_refused_count(fx->s), 1);
        assert_true(log_capture_find(&logs, "ACPI sleep type 3 requested") >= 0);
        /* The guest's wait for the wake-up ends at once; writing 1 clears WAK_STS. */
        assert_int_equal(rd(fx, ACPI_SLEEP_STATUS_OFF), ACPI_SLEEP_WAK_STS);
        wr(fx, ACPI_SLEEP_STATUS_OFF, 0);
        assert_int_equal(rd(fx, ACPI_SLEEP_STATUS_OFF), ACPI_SLEEP_WAK_STS);
        wr(fx, ACPI_SLEEP_STATUS_OFF, ACPI_SLEEP_WAK_STS);
        assert_int_equal(rd(fx, ACPI_SLEEP_STATUS_OFF), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_linux_power_off, setup, teardown),
            cmocka_unit_test_setup_teardown(test_without_sleep_enable_nothing_happens, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_other_sleep_state_refused_and_woken, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

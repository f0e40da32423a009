/*
 * The clock a snapshot load sets (kvm_clock_for_load): where it stopped, or with
 * clock_realtime moved on by the wall-clock time since the snapshot, by KVM (the saved clock
 * carries KVM_CLOCK_REALTIME) or, where KVM paired no wall-clock time with its clock (a host
 * whose clocksource is not the TSC, as in the nested test bed), by the VMM from its own
 * reading at the save. Before the VMM's reading, such a load left the clock where it stopped
 * (tests/linux/test_clones.py saw the guest's date lag by the whole gap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvm/kvm.h"

#define SEC 1000000000ull

static void test_plain_load_resumes_where_it_stopped(void **state)
{
        (void)state;
        struct kvm_clock_data saved = {.clock = 5 * SEC, .realtime = 1000 * SEC};
        struct kvm_clock_data c = kvm_clock_for_load(&saved, false, 1010 * SEC);

        assert_int_equal(c.clock, 5 * SEC);
        assert_int_equal(c.flags, 0);
        saved.flags = KVM_CLOCK_REALTIME;
        c = kvm_clock_for_load(&saved, false, 1010 * SEC);
        assert_int_equal(c.clock, 5 * SEC);
        assert_int_equal(c.flags, 0);
}

static void test_realtime_by_kvm(void **state)
{
        (void)state;
        struct kvm_clock_data saved = {
            .clock = 5 * SEC, .flags = KVM_CLOCK_REALTIME, .realtime = 1000 * SEC};
        struct kvm_clock_data c = kvm_clock_for_load(&saved, true, 1010 * SEC);

        /* KVM adds the time at KVM_SET_CLOCK. */
        assert_int_equal(c.clock, 5 * SEC);
        assert_int_equal(c.flags, KVM_CLOCK_REALTIME);
        assert_int_equal(c.realtime, 1000 * SEC);
}

static void test_realtime_by_the_vmm(void **state)
{
        (void)state;
        struct kvm_clock_data saved = {.clock = 5 * SEC, .realtime = 1000 * SEC};
        struct kvm_clock_data c = kvm_clock_for_load(&saved, true, 1010 * SEC + 7);

        assert_int_equal(c.clock, 15 * SEC + 7);
        assert_int_equal(c.flags, 0);
        /* A wall clock set back since the snapshot never moves the guest's clock back. */
        c = kvm_clock_for_load(&saved, true, 990 * SEC);
        assert_int_equal(c.clock, 5 * SEC);
}

static void test_realtime_without_a_reading(void **state)
{
        (void)state;
        struct kvm_clock_data saved = {.clock = 5 * SEC};
        struct kvm_clock_data c = kvm_clock_for_load(&saved, true, 1010 * SEC);

        assert_int_equal(c.clock, 5 * SEC);
        assert_int_equal(c.flags, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_plain_load_resumes_where_it_stopped),
            cmocka_unit_test(test_realtime_by_kvm),
            cmocka_unit_test(test_realtime_by_the_vmm),
            cmocka_unit_test(test_realtime_without_a_reading),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

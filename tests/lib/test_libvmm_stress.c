/*
 * libvmm under stress, through its public header only, with the probe guest (run by
 * tests/kvm/test_concurrency.py): pause and resume back to back.
 *
 * Arguments: probe_vm_args (the probe, a scratch directory, the tests to run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "libvmm.h"
#include "probe_vm.h"

/* Pause/resume pairs: before the fix of issue 20 item 1 (a lost vCPU kick), this many hung
 * libvmm_pause in 19 of 20 runs here. */
#define FLAP_PAIRS 30000
/* Far beyond what the pairs take, even under ThreadSanitizer. */
#define WATCHDOG_S 120

static const char *dir;

/* Pause and resume, back to back, on the idle guest (in hlt, so a vCPU that misses its kick
 * never leaves KVM_RUN): every pause must come back with the vCPU parked, every event must
 * arrive, and the guest must still run afterwards. A lost kick hangs libvmm_pause for ever:
 * the watchdog ends the program. */
static void test_pause_resume_flap(void **state)
{
        struct guest g;
        struct libvmm *vm;
        struct libvmm_info info;

        (void)state;
        probe_vm_watchdog("test_pause_resume_flap", WATCHDOG_S);
        vm = idle_vm(&g, "flap", false, NULL);
        for (unsigned i = 0; i < FLAP_PAIRS; i++) {
                assert_int_equal(libvmm_pause(vm), 0);
                assert_int_equal(libvmm_resume(vm), 0);
        }
        assert_int_equal(libvmm_info(vm, &info), 0);
        assert_int_equal(info.state, LIBVMM_RUNNING);
        assert_int_equal(guest_events(&g, LIBVMM_EVENT_PAUSED), FLAP_PAIRS);
        assert_int_equal(guest_events(&g, LIBVMM_EVENT_RESUMED), FLAP_PAIRS);
        end_vm(vm, &g);
        probe_vm_watchdog("", 0);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pause_resume_flap),
        };

        if (probe_vm_args(argc, argv, &dir))
                return 2;
        return cmocka_run_group_tests(tests, NULL, NULL);
}

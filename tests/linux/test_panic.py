"""Scenario 10, guest failure: a kernel panic (`echo c > /proc/sysrq-trigger`). With the
default command line's panic=1, Linux reboots one second after the panic, which ends vmm with
exit code 0 like any guest reset (docs/running.md); the panic is on the console and vmm logs
the reset. Both sides: the guest's last words, vmm's exit code and log.
"""
from testbed import scenario


@scenario(outer="""
    vm_boot g crash --mem 256 --no-serial-in --metrics-path $R/g.metrics
    vm_wait g 300
""", guest={"crash": """
    put crashing 1
    echo c >/proc/sysrq-trigger
    put survived 1
"""}, timeout=240)
def test_kernel_panic(linux):
    console, report = linux.console("g"), linux.report("g")
    assert "@@ crashing 1" in console and "@@ survived" not in console, report
    assert "Kernel panic - not syncing: sysrq triggered crash" in console, report
    assert linux.vm_rc("g") == 0, report
    assert "guest requested a reset through the i8042" in linux.log("g"), report

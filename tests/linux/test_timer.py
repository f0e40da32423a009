"""Issue 13: a VM has no i8254 PIT unless --pit asks for one (its teardown costs 12-30 ms).
Linux on KVM must not need it: with the TSC-deadline timer (which vmm puts in CPUID), ARAT
and kvmclock, its apic_needs_pit() is false and it ticks on the LAPIC's deadline timer.
Without a PIT and with one, the guest boots, its clock events come from the LAPIC in
deadline mode, its clock from kvmclock, a one-second sleep takes a second, and its log
has no problem; the VM ends cleanly.
"""
from testbed import scenario
from test_boot import unexplained_problems

GUEST = """
    put clockevent "$(cat /sys/devices/system/clockevents/clockevent0/current_device)"
    put clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    put deadline "$(grep -c tsc_deadline_timer /proc/cpuinfo)"
    a=$(cut -d' ' -f1 /proc/uptime)
    sleep 1
    b=$(cut -d' ' -f1 /proc/uptime)
    put slept "$a $b"
    dmesg_problems
"""


@scenario(outer="""
    vm_boot nopit timer --mem 256 --no-serial-in
    vm_wait nopit 300
    vm_boot pit timer --mem 256 --no-serial-in --pit
    vm_wait pit 300
""", guest={"timer": GUEST}, timeout=240)
def test_linux_needs_no_pit(linux):
    for vm in ("nopit", "pit"):
        report = linux.report(vm)
        g = linux.guest(vm)
        assert linux.vm_rc(vm) == 0, report
        assert g.get("clockevent") == "lapic-deadline", report
        assert g.get("clocksource") == "kvm-clock", report
        assert g.get("deadline") == "1", report
        a, b = (float(x) for x in g["slept"].split())
        assert 1.0 <= b - a < 10, report
        problems = [v for k, v in linux.guest_all(vm) if k == "dmesg.problem"]
        assert unexplained_problems(problems) == [], report

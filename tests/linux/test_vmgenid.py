"""VMGenID with a Linux guest (issue 14): every restore of a snapshot is a new VM generation,
and Linux's vmgenid driver reseeds the guest's RNG on it. Debian's cloud kernel has no such
driver, so this scenario boots the generic kernel (needs "generic", docs/snapshots.md):

  a       booted, its heartbeat on the console; paused, Full snapshot, kill -9
  f, u    two loads of that snapshot with resume_vm: f with the File memory backend, u with
          Uffd served by examples/uffd_handler; both heartbeats go on from a's

The guest prints a heartbeat and, each time the kernel log gains "crng reseeded due to
virtual machine fork" (add_vmfork_randomness, which only the vmgenid driver calls), a line
"@@ vmfork N" with N the reseeds seen so far. Each clone must see exactly one, the source
none; each clone's vmm log says it made a new generation. The guest also reports which
drivers took the VM generation ID device (VGEN, _HID CVMM0002) and its Generic Event Device
(ACPI0013).
"""
import re

from testbed import scenario

OUTER = """
    beats() { grep -o '@@ hb [0-9]*' $R/$1.console | tail -n 1 | cut -d' ' -f3; }
    vm_start a --api-sock $T/a.sock
    wait_for $T/a.sock 60
    api a PUT /boot-source '{"kernel_image_path": "'$GENERIC_KERNEL'",
        "initrd_path": "'$GENERIC_INITRD'", "boot_args": "'"$CMDLINE vmm.run=/tb/guest/$S/work"'"}'
    api a PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
    api a PUT /actions '{"action_type": "InstanceStart"}'; put a.start.rc $?
    console_wait a '@@ hb 3[^0-9]' 150 || exit 1
    api a PATCH /vm '{"state": "Paused"}'
    put a.beats "$(beats a)"
    api a PUT /snapshot/create '{"snapshot_type": "Full", "snapshot_path": "'$T/s'",
        "mem_file_path": "'$T/m'"}'
    put a.snap.rc $?
    vm_kill a KILL
    vm_wait a 60
    uffd_handler $T/handler.sock $T/m >$R/handler.log 2>&1 &
    echo $! >>$T/pids
    wait_for $T/handler.sock 30
    for c in f u; do
        case $c in
        f) backend='"backend_type": "File", "backend_path": "'$T/m'"' ;;
        u) backend='"backend_type": "Uffd", "backend_path": "'$T/handler.sock'"' ;;
        esac
        vm_start $c --api-sock $T/$c.sock
        wait_for $T/$c.sock 60
        api $c PUT /snapshot/load '{"snapshot_path": "'$T/s'", "mem_backend": {'"$backend"'},
            "resume_vm": true}'
        put $c.load.rc $?
    done
    # Six beats on: the guest looks for a reseed after every beat, and Linux reseeds within
    # a second of the load, so the reseed and any second one would show by then (waiting
    # for the reseed line itself would wait out its limit when there is none).
    for c in f u; do console_wait $c "@@ hb $(( $(beats a) + 6 ))[^0-9]" 60; done
    for c in f u; do vm_kill $c KILL; vm_wait $c 60; done
    sleep 1   # the handler's note that u's vmm is gone
"""

GUEST = """
    for d in /sys/bus/acpi/devices/*; do
        case "$(cat $d/hid 2>/dev/null)" in
        CVMM0002 | ACPI0013)
            # An ACPI driver binds the ACPI device itself (vmgenid in 6.1), a platform driver
            # its physical node (acpi-ged).
            drv=$(readlink $d/driver 2>/dev/null)
            pdrv=$(readlink $d/physical_node/driver 2>/dev/null)
            put acpi "$(cat $d/hid) ${drv##*/} ${pdrv##*/}" ;;
        esac
    done
    i=0 n=0
    while :; do
        echo "@@ hb $i"
        # dmesg -c: each reseed is counted once, from a log that cannot overflow.
        new=$(dmesg -c | grep -c 'crng reseeded due to virtual machine fork')
        if [ "$new" -gt 0 ]; then
            n=$((n + new))
            put vmfork "$n"
        fi
        i=$((i + 1))
        sleep 1
    done
"""


def beats(console):
    return [int(n) for n in re.findall(r"@@ hb (\d+)", console)]


@scenario(outer=OUTER, guest={"work": GUEST}, timeout=240, needs=("generic", "uffd"))
def test_vmgenid(linux):
    v = linux.values()
    report = linux.report("a", "f", "u")
    for k in ("a.start.rc", "a.snap.rc", "f.load.rc", "u.load.rc"):
        assert v.get(k) == "0", (k, report)
    a = beats(linux.console("a"))
    assert a and int(v["a.beats"]) == a[-1], report
    # The source: never a new generation (a boot is not one, nor is the snapshot).
    assert [x for k, x in linux.guest_all("a") if k == "vmfork"] == [], report
    acpi = [line.split() for k, line in linux.guest_all("a") if k == "acpi"]
    assert ["ACPI0013", "acpi-ged"] in acpi, (acpi, report)
    assert ["CVMM0002", "vmgenid"] in acpi, (acpi, report)
    for c in ("f", "u"):
        reports = linux.guest_all(c)
        forks = [x for k, x in reports if k == "vmfork"]
        # Exactly one reseed, and it was the first this guest ever saw.
        assert forks == ["1"], (c, forks, report)
        cb = beats(linux.console(c))
        # From where the snapshot stopped (a reboot would count from 0), and on well past
        # the reseed.
        assert cb and a[-1] <= cb[0] <= a[-1] + 1 and cb[-1] >= a[-1] + 6, (c, cb, report)
        at = [i for i, (k, _) in enumerate(reports) if k == "vmfork"][0]
        assert sum(1 for k, _ in reports[at:] if k == "hb") >= 3, (c, report)
        assert "VMGenID: a new generation for the restored guest" in linux.log(c), report
    assert "guest memory is served by the page-fault handler" in linux.log("u"), report
    served = re.findall(r"VMM pid \d+ gone: (\d+) pages copied", linux.text("handler.log"))
    assert len(served) == 1 and int(served[0]) > 0, (linux.text("handler.log"), report)

"""Fan-out with a Linux guest (issue 14): a snapshot of a running Linux restored twice at once
through the Uffd memory backend, both clones served by one examples/uffd_handler in the
outer:

  a       booted, its heartbeat on the console; paused, Full snapshot, kill -9
  u1, u2  two loads of that snapshot with mem_backend Uffd and resume_vm: both heartbeats go
          on from a's (no reboot), every page they touch filled by the handler, which then
          sees both VMMs go

The guest also lists the ACPI devices of the VM generation ID (VGEN, _HID CVMM0002) and its
Generic Event Device (ACPI0013, bound to Linux's acpi-ged). Debian's cloud kernel has no
vmgenid driver (no CONFIG_VIRT_DRIVERS): test_vmgenid.py boots the generic kernel and sees
each clone reseed its RNG (docs/snapshots.md, "VMGenID").
"""
import re

from testbed import scenario

OUTER = """
    beats() { grep -o '@@ hb [0-9]*' $R/$1.console | tail -n 1 | cut -d' ' -f3; }
    vm_start a --api-sock $T/a.sock
    wait_for $T/a.sock 60
    api a PUT /boot-source '{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE vmm.run=/tb/guest/$S/work"'"}'
    api a PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
    api a PUT /actions '{"action_type": "InstanceStart"}'; put a.start.rc $?
    console_wait a '@@ hb 3[^0-9]' 300 || exit 1
    api a PATCH /vm '{"state": "Paused"}'
    put a.beats "$(beats a)"
    api a PUT /snapshot/create '{"snapshot_path": "'$T/s'", "mem_file_path": "'$T/m'"}'
    put a.snap.rc $?
    vm_kill a KILL
    vm_wait a 60
    uffd_handler $T/u.sock $T/m >$R/handler.log 2>&1 &
    echo $! >>$T/pids
    wait_for $T/u.sock 30
    for c in u1 u2; do
        vm_start $c --api-sock $T/$c.sock
        wait_for $T/$c.sock 60
        api $c PUT /snapshot/load '{"snapshot_path": "'$T/s'", "mem_backend": {"backend_type":
            "Uffd", "backend_path": "'$T/u.sock'"}, "resume_vm": true}'
        put $c.load.rc $?
    done
    for c in u1 u2; do console_wait $c "@@ hb $(( $(beats a) + 3 ))[^0-9]" 300; done
    for c in u1 u2; do vm_kill $c KILL; vm_wait $c 60; done
    sleep 1
"""

GUEST = """
    for d in /sys/bus/acpi/devices/*; do
        case "$(cat $d/hid 2>/dev/null)" in
        CVMM0002 | ACPI0013)
            drv=$(readlink $d/physical_node/driver 2>/dev/null)
            put acpi "$(cat $d/hid) ${drv##*/}" ;;
        esac
    done
    i=0
    while :; do
        echo "@@ hb $i"
        i=$((i + 1))
        sleep 1
    done
"""


def beats(console):
    return [int(n) for n in re.findall(r"@@ hb (\d+)", console)]


@scenario(outer=OUTER, guest={"work": GUEST}, timeout=240, needs=("uffd",))
def test_uffd_clones(linux):
    v = linux.values()
    report = linux.report("a", "u1", "u2")
    for k in ("a.start.rc", "a.snap.rc", "u1.load.rc", "u2.load.rc"):
        assert v.get(k) == "0", (k, report)
    a = beats(linux.console("a"))
    assert a and int(v["a.beats"]) == a[-1], report
    for c in ("u1", "u2"):
        cb = beats(linux.console(c))
        # From where the snapshot stopped (a reboot would count from 0), and on.
        assert cb and a[-1] <= cb[0] <= a[-1] + 1 and len(cb) >= 3, (c, cb[:3], report)
        assert "guest memory is served by the page-fault handler" in linux.text(f"{c}.log",
                                                                                 ""), report
    handler = linux.text("handler.log")
    served = re.findall(r"VMM pid \d+ gone: (\d+) pages copied", handler)
    assert len(served) == 2 and all(int(n) > 0 for n in served), handler
    acpi = [l.split() for k, l in linux.guest_all("a") if k == "acpi"]
    assert ["ACPI0013", "acpi-ged"] in acpi and any(a[0] == "CVMM0002" for a in acpi), acpi

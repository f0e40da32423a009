"""Scenario 8, the API: Firecracker's getting-started sequence with curl, unchanged but for
the paths (logger, metrics, boot-source, drives/rootfs, machine-config,
network-interfaces/eth0, InstanceStart); GET /vm/config gives back what was configured;
pausing stops the guest's heartbeat and resuming restarts it; FlushMetrics writes counters
that match the traffic the guest made; the logger file has vmm's lines; SendCtrlAltDel makes
Linux reboot and vmm exit 0. The guest runs from the initramfs (vmm.run=), where it mounts
the rootfs drive read-only and reads it; with /proc/sys/kernel/ctrl-alt-del = 1 Linux
reboots at once on Ctrl-Alt-Del (a distribution's init would run its shutdown first).
"""
import json
import re

from testbed import scenario

MIB = 1 << 20
SENT = 4 * MIB

OUTER = f"""
    tap_add tb0 172.16.0.1/24
    cp $ROOTFS_DEV $T/rootfs.ext4
    vm_start g --api-sock $T/g.sock
    wait_for $T/g.sock 60
    api g PUT /logger '{{"log_path": "'$R/vmm.log'", "level": "Info", "show_level": true,
        "show_log_origin": true}}' || exit 1
    api g PUT /metrics '{{"metrics_path": "'$R/g.metrics'"}}' || exit 1
    api g PUT /boot-source '{{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE $GUEST_IP vmm.run=/tb/guest/$S/api"'"}}' || exit 1
    api g PUT /drives/rootfs '{{"drive_id": "rootfs", "path_on_host": "'$T/rootfs.ext4'",
        "is_root_device": true, "is_read_only": false}}' || exit 1
    api g PUT /machine-config '{{"vcpu_count": 2, "mem_size_mib": 256}}' || exit 1
    api g PUT /network-interfaces/eth0 '{{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02",
        "host_dev_name": "tb0"}}' || exit 1
    api g PUT /actions '{{"action_type": "InstanceStart"}}' || exit 1
    api g GET /vm/config >$R/vm-config.json
    tbtool recv tcp-listen:5001 --bytes {SENT} >$R/recv.txt 2>&1
    console_wait g '@@ hb 3[^0-9]' 300 || exit 1

    api g PATCH /vm '{{"state": "Paused"}}'; put pause.rc $?
    sleep 2
    put hb.paused "$(grep -c '@@ hb' $R/g.console)"
    sleep 6
    put hb.still "$(grep -c '@@ hb' $R/g.console)"
    api g PATCH /vm '{{"state": "Resumed"}}'; put resume.rc $?
    console_wait g "@@ hb $(( $(grep -c '@@ hb' $R/g.console) + 2 ))[^0-9]" 120
    put hb.resumed "$(grep -c '@@ hb' $R/g.console)"

    api g PUT /actions '{{"action_type": "FlushMetrics"}}'; put flush.rc $?
    cp $R/g.metrics $R/flushed.metrics
    api g PUT /actions '{{"action_type": "SendCtrlAltDel"}}'; put cad.rc $?
    vm_wait g 300
"""

GUEST = f"""
    echo 1 >/proc/sys/kernel/ctrl-alt-del
    mkdir -p /rootfs && mount -o ro /dev/vda /rootfs
    put rootfs "$(cat /rootfs/etc/hostname) $(cat /rootfs/etc/debian_version)"
    umount /rootfs
    tbtool send tcp:172.16.0.1:5001 --bytes {SENT} --retry 60 | while read -r l; do put sent "$l"; done
    hb_start 1
    sleep 100000
"""



@scenario(outer=OUTER, guest={"api": GUEST}, timeout=240, needs={"rootfs"})
def test_api_getting_started(linux):
    g, v = linux.guest("g"), linux.values()
    report = linux.report("g")
    api_log = linux.text("g.api")
    assert linux.vm_rc("g") == 0, report + api_log
    assert g["rootfs"].startswith("microvm 12."), report
    assert "ok=1" in linux.text("recv.txt"), linux.text("recv.txt")

    # GET /vm/config is the configuration the sequence made.
    cfg = json.loads(linux.text("vm-config.json"))
    assert cfg["boot-source"]["kernel_image_path"] == "/in/guest/vmlinux", cfg
    assert cfg["machine-config"]["vcpu_count"] == 2, cfg
    assert cfg["machine-config"]["mem_size_mib"] == 256, cfg
    (drive,) = cfg["drives"]
    assert drive["drive_id"] == "rootfs" and drive["is_root_device"] is True, cfg
    (nic,) = cfg["network-interfaces"]
    assert nic["iface_id"] == "eth0" and nic["host_dev_name"] == "tb0", cfg
    assert nic["guest_mac"].lower() == "06:00:ac:10:00:02", cfg

    # Paused: no heartbeat for 6 s; resumed: it goes on.
    assert v["pause.rc"] == "0" and v["resume.rc"] == "0", api_log
    assert v["hb.paused"] == v["hb.still"], v
    assert int(v["hb.resumed"]) >= int(v["hb.still"]) + 2, v

    # FlushMetrics: the counters in the file cover the guest's traffic.
    assert v["flush.rc"] == "0", api_log
    net, blk = linux.totals("flushed", "net"), linux.totals("flushed", "block")
    assert net["tx_bytes_count"] >= SENT, net
    assert blk["read_bytes"] > 0, blk
    assert linux.totals("flushed", "put_api_requests")["actions_count"] >= 2, linux.text(
        "flushed.metrics")

    # The logger file has vmm's lines (with level and origin, as PUT /logger asked).
    vlog = linux.text("vmm.log")
    assert re.search(r"\[anonymous-instance:\w+:INFO:\w+\.c:\d+\] microVM started", vlog), vlog

    # SendCtrlAltDel: Linux rebooted, vmm ended with 0.
    assert v["cad.rc"] == "0", api_log
    assert "guest requested a reset through the i8042" in vlog, vlog

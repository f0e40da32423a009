"""Scenario 9, snapshots, with a Linux guest that keeps a heartbeat on its console, writes
each beat to a disk, answers pings and serves vsock connections (a new one after each
reset: the guest reconnects):

  a  booted through the API with track_dirty_pages; a vsock transfer and a ping work; a long
     vsock transfer is open; paused, Full snapshot, kill -9
  b  a new process loads it: the heartbeat goes on from where it was, the beats reach the
     disk, ping and a new vsock connection work (the open one was reset); more work, paused,
     Diff snapshot, kill -9
  c  the Diff merged over the Full memory file (vmm --base-file/--diff-file) and loaded: the
     heartbeat goes on from b's, ping and vsock work
  d1, d2  two restores of that snapshot at once (another TAP and vsock socket each through
     network_overrides/vsock_override): both heartbeats go on

Both sides: consoles, the outer's pings, vsock transfers and reading of the disk file,
vmm's logs, the state files described by `vmm --describe-snapshot` on the host.
"""
import re
import subprocess

from testbed import fields, BUILD_DIR, scenario

MIB = 1 << 20
XFER = 256 * 1024
MEM = 256

OUTER = f"""
    tap_add tb0 172.16.0.1/24
    tunctl -t tb1 >/dev/null && echo tb1 >>$T/taps && ip link set tb1 up
    tunctl -t tb2 >/dev/null && echo tb2 >>$T/taps && ip link set tb2 up
    truncate -s 16M $T/data.img
    beats() {{ grep -o '@@ hb [0-9]*' $R/$1.console | tail -n 1 | cut -d' ' -f3; }}
    # A vsock transfer to the guest's listener (the guest listens again after each one).
    xfer() {{ tbtool send fc:$T/$2:6000 --bytes {XFER} --retry 120 >>$R/$1.xfer 2>&1; }}
    load() {{   # NAME STATE MEM [EXTRA JSON]
        vm_start $1 --api-sock $T/$1.sock
        wait_for $T/$1.sock 60
        api $1 PUT /snapshot/load '{{"snapshot_path": "'$2'", "mem_backend": {{"backend_type":
            "File", "backend_path": "'$3'"}}, "resume_vm": true'"$4"'}}'
        local rc=$?
        put $1.load.rc $rc
        return $rc
    }}
    snap() {{   # NAME TYPE STATE MEM
        api $1 PATCH /vm '{{"state": "Paused"}}'
        put $1.beats.paused "$(beats $1)"
        api $1 PUT /snapshot/create '{{"snapshot_type": "'$2'", "snapshot_path": "'$3'",
            "mem_file_path": "'$4'"}}'
        local rc=$?
        put $1.snap.rc $rc
        cp $3 $R/$1.state
        vm_kill $1 KILL
        vm_wait $1 60
        return $rc
    }}

    vm_start a --api-sock $T/a.sock
    wait_for $T/a.sock 60
    api a PUT /boot-source '{{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE $GUEST_IP vmm.run=/tb/guest/$S/work"'"}}'
    api a PUT /machine-config '{{"vcpu_count": 2, "mem_size_mib": {MEM},
        "track_dirty_pages": true}}'
    api a PUT /drives/data '{{"drive_id": "data", "path_on_host": "'$T/data.img'",
        "is_root_device": false, "is_read_only": false}}'
    api a PUT /network-interfaces/eth0 '{{"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02",
        "host_dev_name": "tb0"}}'
    api a PUT /vsock '{{"guest_cid": 3, "uds_path": "'$T/v.sock'"}}'
    api a PUT /actions '{{"action_type": "InstanceStart"}}'; put a.start.rc $?
    console_wait a '@@ hb 5[^0-9]' 300 || exit 1
    xfer a v.sock
    ping -c 2 -W 10 172.16.0.2 >/dev/null; put a.ping $?
    # A long transfer, open when the snapshot is taken (its host end dies with the process).
    tbtool send fc:$T/v.sock:6000 --bytes 1G --retry 60 >$R/a.open 2>&1 &
    echo $! >>$T/pids
    sleep 3
    snap a Full $T/full.state $T/full.mem || exit 1

    # Dirty page tracking is the load's choice (Firecracker's rule), for b's Diff.
    load b $T/full.state $T/full.mem ', "track_dirty_pages": true' || exit 1
    console_wait b "@@ hb $(( $(beats a) + 5 ))[^0-9]" 300
    ping -c 2 -W 10 172.16.0.2 >/dev/null; put b.ping $?
    xfer b v.sock
    snap b Diff $T/diff.state $T/diff.mem || exit 1
    put disk.beats "$(strings $T/data.img | grep -o 'hb [0-9]*' | cut -d' ' -f2 | sort -n | tail -n 1)"

    vmm --base-file $T/full.mem --diff-file $T/diff.mem >$R/merge.log 2>&1; put merge.rc $?
    load c $T/diff.state $T/full.mem || exit 1
    console_wait c "@@ hb $(( $(beats b) + 3 ))[^0-9]" 300
    ping -c 2 -W 10 172.16.0.2 >/dev/null; put c.ping $?
    xfer c v.sock
    vm_kill c KILL
    vm_wait c 60

    for d in d1 d2; do
        n=${{d#d}}
        load $d $T/diff.state $T/full.mem ', "network_overrides": [{{"iface_id": "eth0",
            "host_dev_name": "tb'$n'"}}], "vsock_override": {{"uds_path": "'$T/$d.sock.v'"}}' ||
            exit 1
    done
    for d in d1 d2; do
        console_wait $d "@@ hb $(( $(beats b) + 3 ))[^0-9]" 300
        xfer $d $d.sock.v
    done
    for d in d1 d2; do vm_kill $d KILL; vm_wait $d 60; done
"""

GUEST = """
    i=0
    (   # the heartbeat: console and disk
        while :; do
            echo "@@ hb $i"
            echo "hb $i" | dd of=/dev/vda bs=512 seek=$((i % 4096)) conv=fsync 2>/dev/null
            i=$((i + 1))
            sleep 1
        done
    ) &
    # vsock: serve one transfer after another; a reset (a restore) ends one early.
    while :; do
        tbtool recv vsock-listen:6000 --bytes 262144 2>/dev/null | while read -r l; do
            put vsock "$l"
        done
    done
"""


def beats(console):
    return [int(n) for n in re.findall(r"@@ hb (\d+)", console)]



@scenario(outer=OUTER, guest={"work": GUEST}, timeout=300, asan=True)
def test_snapshot_restore(linux, tmp_path):
    v = linux.values()
    report = linux.report("a", "b", "c", "d1", "d2")
    for k in ("a.start.rc", "a.snap.rc", "b.load.rc", "b.snap.rc", "merge.rc", "c.load.rc",
              "d1.load.rc", "d2.load.rc"):
        assert v.get(k) == "0", (k, report)

    # Each restore's heartbeat starts where the snapshot's left off (no reboot: the count
    # would start at 0) and goes on.
    a, b, c = beats(linux.console("a")), beats(linux.console("b")), beats(linux.console("c"))
    assert a and b and c, report
    assert a[-1] <= b[0] <= a[-1] + 1 and len(b) >= 5, (a[-3:], b[:3], report)
    assert b[-1] <= c[0] <= b[-1] + 1 and len(c) >= 3, (b[-3:], c[:3], report)
    for d in ("d1", "d2"):
        dd = beats(linux.console(d))
        assert dd and b[-1] <= dd[0] <= b[-1] + 1 and len(dd) >= 3, (d, dd[:3], report)
    # The beats reached the disk, also after the restore.
    assert int(v["disk.beats"]) >= b[-1] - 2, (v["disk.beats"], b[-1])

    # The network after each restore; vsock transfers before and after each one, the open
    # one reset by the restore (the guest's receiver ended early) and the guest reconnected.
    for n in ("a", "b", "c"):
        assert v[f"{n}.ping"] == "0", (n, report)
    for n in ("a", "b", "c", "d1", "d2"):
        sent = [fields(l) for l in linux.text(f"{n}.xfer").splitlines()
                if l.startswith("tbtool: send")]
        assert sent and int(sent[-1]["bytes"]) == XFER, (n, linux.text(f"{n}.xfer"))
    got = [fields(l) for k, l in linux.guest_all("b") if k == "vsock"]
    assert any(f.get("ok") == "0" for f in got), got       # the one open at the snapshot
    assert got[-1].get("ok") == "1" and int(got[-1]["bytes"]) == XFER, got

    # vmm's own account of the state files.
    for n in ("a", "b"):
        state = linux.fetch(f"{n}.state", tmp_path / f"{n}.state")
        out = subprocess.run([str(BUILD_DIR / "vmm"), "--describe-snapshot", str(state)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "machine: 2 vCPU(s), 256 MiB" in out.stdout, out.stdout
        assert f"snapshot type: {'Full' if n == 'a' else 'Diff'}" in out.stdout, out.stdout
        for dev in ("device block data", "device net eth0", "device vsock"):
            assert f"{dev}: status 0x0f (driver running)" in out.stdout, out.stdout

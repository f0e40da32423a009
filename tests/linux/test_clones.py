"""Clones of one Linux snapshot, each on its own TAP and vsock socket (issue 14, fan-out):
what a Firecracker platform relies on when it restores one snapshot many times at once.

  a       booted through the API with a virtio-net on TAP tb0 and a vsock on $T/v.sock; its
          heartbeat (with the guest's `date +%s`) on the console; paused, Full snapshot,
          kill -9; the snapshot then lies on disk for GAP seconds
  c1, c2  loaded at once, each with network_overrides (TAP tapc1, tapc2) and vsock_override
          ($T/c1.v, $T/c2.v), resume_vm; c2 also with clock_realtime

The clones are identical (same IP, MAC and vsock CID), so each is given an identity after
the load: the guest listens on vsock ports 7001 and 7002, and the outer connects to port
7000+N through clone N's own socket (Firecracker's "CONNECT port"), sending tbtool's stream
with seed N; the guest takes N from the port that answered, moves its eth0 to 172.16.N.2/24
(the outer's tapcN is 172.16.N.1/24) and answers on CID 2 port 7100 with the stream of seed
N, which vmm delivers to $T/cN.v_7100, where the outer checks the seed. Then each clone in
turn moves XFER bytes each way over TCP on its own TAP while the other idles: the other's
vmm net metrics (FlushMetrics before and after) and its TAP's counters stay (nearly) still.

Clock: Linux's kvm-clock follows KVM's clock, which a plain load resumes where the snapshot
stopped it (the guest's wall clock lags by the time the snapshot lay on disk), and
clock_realtime moves on by that time (KVM_CLOCK_REALTIME: the guest's `date` is the outer's
again). Both are asserted on the first heartbeat each clone prints after its load.
"""
import re

from testbed import fields, scenario

MIB = 1 << 20
XFER = 4 * MIB
GAP = 10          # seconds between the snapshot and the loads
QUIET = 16 * 1024  # what an idle clone may move meanwhile (ARP, IPv6 noise), in bytes

OUTER = f"""
    put outer.clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    tap_add tb0 172.16.0.1/24
    tap_add tapc1 172.16.1.1/24
    tap_add tapc2 172.16.2.1/24
    vm_start a --api-sock $T/a.sock
    wait_for $T/a.sock 60
    api a PUT /boot-source '{{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE $GUEST_IP vmm.run=/tb/guest/$S/work"'"}}'
    api a PUT /machine-config '{{"vcpu_count": 1, "mem_size_mib": 256}}'
    api a PUT /network-interfaces/eth0 '{{"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02",
        "host_dev_name": "tb0"}}'
    api a PUT /vsock '{{"guest_cid": 3, "uds_path": "'$T/v.sock'"}}'
    api a PUT /actions '{{"action_type": "InstanceStart"}}'; put a.start.rc $?
    console_wait a '@@ hb 3[^0-9]' 300 || exit 1
    put a.hb3.outer "$(date +%s)"
    api a PATCH /vm '{{"state": "Paused"}}'
    api a PUT /snapshot/create '{{"snapshot_type": "Full", "snapshot_path": "'$T/s'",
        "mem_file_path": "'$T/m'"}}'
    put a.snap.rc $?
    put snap.at "$(date +%s)"
    vm_kill a KILL
    vm_wait a 60
    sleep {GAP}

    # Each clone's answer: the stream of its own seed, on its own socket.
    for n in 1 2; do
        tbtool recv unix-listen:$T/c$n.v_7100 --bytes 4K --seed $n >$R/c$n.answer 2>&1 &
        echo $! >>$T/pids
    done
    for n in 1 2; do
        extra=
        [ $n = 2 ] && extra=', "clock_realtime": true'
        vm_start c$n --api-sock $T/c$n.sock --metrics-path $R/c$n.metrics
        wait_for $T/c$n.sock 60
        api c$n PUT /snapshot/load '{{"snapshot_path": "'$T/s'", "mem_backend": {{"backend_type":
            "File", "backend_path": "'$T/m'"}}, "resume_vm": true,
            "network_overrides": [{{"iface_id": "eth0", "host_dev_name": "tapc'$n'"}}],
            "vsock_override": {{"uds_path": "'$T/c$n.v'"}}'"$extra"'}}'
        rc=$?
        put c$n.load.rc $rc
        put c$n.load.at "$(date +%s)"
        [ $rc = 0 ] || exit 1   # what follows would only wait out its limits
    done
    for n in 1 2; do
        tbtool send fc:$T/c$n.v:700$n --bytes 4K --seed $n --retry 30 >$R/c$n.tell 2>&1
        rc=$?
        put c$n.tell.rc $rc
        [ $rc = 0 ] || exit 1
    done
    for n in 1 2; do console_wait c$n '@@ answer ' 60; done
    for n in 1 2; do
        ping -c 3 -W 10 172.16.$n.2 >$R/c$n.ping 2>&1
        rc=$?
        put c$n.ping.rc $rc
        [ $rc = 0 ] || exit 1
    done

    # Each clone in turn moves data; the marks around each turn: both TAPs' counters and a
    # metrics flush of both clones (the line count says which lines belong to the turn).
    mark() {{
        for n in 1 2; do
            api c$n PUT /actions '{{"action_type": "FlushMetrics"}}' >/dev/null
            put mark$1.c$n.lines "$(wc -l <$R/c$n.metrics)"
            st=/sys/class/net/tapc$n/statistics
            put mark$1.tapc$n "$(cat $st/rx_bytes) $(cat $st/tx_bytes)"
        done
    }}
    mark 0
    for n in 1 2; do
        tbtool recv tcp-listen:510$n --bytes {XFER} >$R/c$n.g2h 2>&1 &
        rpid=$!
        echo $rpid >>$T/pids
        timeout 120 tbtool send tcp:172.16.$n.2:5001 --bytes {XFER} --retry 60 >$R/c$n.h2g 2>&1
        put c$n.h2g.rc $?
        i=0
        while alive $rpid && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
        mark $n
    done
    for n in 1 2; do vm_kill c$n KILL; vm_wait c$n 60; done
"""

GUEST = f"""
    put clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    (
        i=0
        while :; do
            echo "@@ hb $i $(date +%s) $(cut -d' ' -f1 /proc/uptime)"
            i=$((i + 1))
            sleep 1
        done
    ) &
    # Who am I: the port the outer connected to through this clone's own socket.
    for n in 1 2; do
        (tbtool recv vsock-listen:700$n --bytes 4K --seed $n >/tmp/id.$n 2>&1 &&
            echo $n >/tmp/id) &
    done
    while [ ! -s /tmp/id ]; do sleep 1; done
    n=$(cat /tmp/id)
    put id "$n $(date +%s)"
    ip addr flush dev eth0 && ip addr add 172.16.$n.2/24 dev eth0
    put ip.rc $?
    tbtool send vsock:2:7100 --bytes 4K --seed $n --retry 30 | while read -r l; do put answer "$l"; done
    tbtool recv tcp-listen:5001 --bytes {XFER} 2>/dev/null | while read -r l; do put h2g "$l"; done
    tbtool send tcp:172.16.$n.1:510$n --bytes {XFER} --retry 60 | while read -r l; do put g2h "$l"; done
    sleep 1000
"""


def last(text):
    lines = [l for l in text.splitlines() if l.startswith("tbtool: ")]
    return lines[-1] if lines else ""


def beats(console):
    """(beat, guest date, guest uptime) of each heartbeat."""
    return [(int(a), int(b), float(c))
            for a, b, c in re.findall(r"@@ hb (\d+) (\d+) ([\d.]+)", console)]


def net_between(linux, vm, first, end):
    """vmm's net bytes (rx, tx) in the metrics lines first..end-1 (one turn)."""
    rx = tx = 0
    for m in linux.metrics(vm)[first:end]:
        rx += m.get("net", {}).get("rx_bytes_count", 0)
        tx += m.get("net", {}).get("tx_bytes_count", 0)
    return rx, tx


@scenario(outer=OUTER, guest={"work": GUEST}, timeout=240)
def test_clones_isolated(linux):
    v = linux.values()
    report = linux.report("a", "c1", "c2")
    for k in ("a.start.rc", "a.snap.rc", "c1.load.rc", "c2.load.rc", "c1.tell.rc", "c2.tell.rc",
              "c1.ping.rc", "c2.ping.rc", "c1.h2g.rc", "c2.h2g.rc"):
        assert v.get(k) == "0", (k, report)
    a = beats(linux.console("a"))
    assert a, report
    for n in (1, 2):
        c = f"c{n}"
        g = linux.guest(c)
        # Its identity arrived on its own socket, and its answer came back on its own socket
        # with its own number (the seed: the other clone's stream would not check).
        assert g.get("id", "").split()[:1] == [str(n)], (c, report)
        assert fields(g.get("answer", "")).get("bytes") == "4096", (c, report)
        got = fields(last(linux.text(f"{c}.answer")))
        assert got.get("ok") == "1" and got.get("bytes") == "4096", (c, linux.text(f"{c}.answer"))
        # Reachable on its own TAP: XFER bytes each way, checked byte by byte.
        sent, got = fields(last(linux.text(f"{c}.h2g"))), fields(g.get("h2g", ""))
        assert got.get("ok") == "1" and int(got["bytes"]) == XFER, (c, report)
        assert got["fnv"] == sent["fnv"], (c, report)
        sent, got = fields(g.get("g2h", "")), fields(last(linux.text(f"{c}.g2h")))
        assert got.get("ok") == "1" and int(got["bytes"]) == XFER, (c, linux.text(f"{c}.g2h"))
        assert got["fnv"] == sent["fnv"], (c, report)

    # Isolation: in clone n's turn (marks n-1 .. n), n's vmm and TAP moved both streams, the
    # other's (nearly) nothing.
    turns = {}
    for n in (1, 2):
        for o in (1, 2):
            first = int(v[f"mark{n - 1}.c{o}.lines"])
            end = int(v[f"mark{n}.c{o}.lines"])
            rx, tx = net_between(linux, f"c{o}", first, end)
            t0 = [int(x) for x in v[f"mark{n - 1}.tapc{o}"].split()]
            t1 = [int(x) for x in v[f"mark{n}.tapc{o}"].split()]
            tap = (t1[0] - t0[0], t1[1] - t0[1])
            turns[(n, o)] = (rx, tx, tap)
    print("turns (clone moving, clone seen): vmm net rx, tx; tapc rx, tx bytes:", turns)
    for n in (1, 2):
        rx, tx, tap = turns[(n, n)]
        assert rx >= XFER and tx >= XFER and min(tap) >= XFER, (n, turns)
        rx, tx, tap = turns[(n, 3 - n)]
        assert rx <= QUIET and tx <= QUIET and max(tap) <= QUIET, (n, turns)

    # The clock. The snapshot lay GAP seconds on disk; c1 (a plain load) resumes its clock
    # where it stopped, c2 (clock_realtime) moves on by that time. The outer's clocksource
    # is not the TSC (hpet), so KVM pairs no wall-clock time with its clock and vmm moves it
    # on itself (kvm_clock_for_load), and says so. Lags are measured against the source's
    # own: its guest date at beat 3 against the outer's when the outer saw that beat.
    outer_a = int(v["a.hb3.outer"])
    off = outer_a - [d for b, d, _ in a if b == 3][0]
    lag = {}
    for n in (1, 2):
        c = f"c{n}"
        after = [x for x in beats(linux.console(c)) if x[0] > a[-1][0]]
        assert after, (c, report)
        lag[c] = int(v[f"{c}.load.at"]) - after[0][1] - off
    gap = int(v["c1.load.at"]) - int(v["snap.at"])
    print(f"clock: outer clocksource {v['outer.clocksource']}, guest "
          f"{linux.guest('a').get('clocksource')}; source guest {off} s behind the outer; "
          f"snapshot to load {gap} s; clone's guest date behind the outer's at its first beat "
          f"after the load, less the source's: {lag}")
    assert abs(off) <= 5 and gap >= GAP, (off, v)
    assert abs(lag["c2"]) <= 3, (lag, gap)
    assert gap - 4 <= lag["c1"] <= gap + 3, (lag, gap)
    assert "clock_realtime: " in linux.log("c2") and "clock_realtime" not in linux.log("c1"), \
        report
    print([l for l in linux.log("c2").splitlines() if "clock_realtime" in l])

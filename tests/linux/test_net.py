"""Scenario 4, net: a TAP in the outer, the guest at 172.16.0.2 behind it. Ping both ways,
BIG bytes of checked data each way over TCP (tbtool: every byte compared with the stream it
should be), the MTU and the offloads negotiated, the tx and rx rate limiters set at run time
through the API (the measured throughput stays within 20% of the setting), and the TAP
deleted under the running guest (vmm carries on, drops what the guest sends, counts and logs
it, and exits 0 when the guest reboots). Both sides: the guest's reports and the outer's
receivers, vmm's metrics and log.
"""
import re

from testbed import fields, scenario, vmm_sanitized

MIB = 1 << 20
# The sanitizer build moves less data: it checks vmm's code paths, not the guest's TCP.
BIG = 16 * MIB if vmm_sanitized() else 64 * MIB
MTU = 1400
# Token buckets: the burst is one second's worth (Firecracker's buckets start full), so
# moving LIMITED bytes takes at least (LIMITED - rate) / rate seconds.
TX_RATE, RX_RATE = 1 * MIB, 1 * MIB
LIMITED = 8 * MIB

OUTER = f"""
    tap_add tb0 172.16.0.1/24
    VM_CMDLINE=$GUEST_IP
    tbtool recv tcp-listen:5001 --bytes {BIG} >$R/g2h.txt 2>&1 &
    echo $! >>$T/pids
    vm_boot g net --mem 256 --vcpus 2 --net tap=tb0,mac=06:00:ac:10:00:02,mtu={MTU} \\
        --api-sock $T/g.sock --metrics-path $R/g.metrics --no-serial-in
    console_wait g '@@ ready' 180
    ping -c 3 -W 10 172.16.0.2 >$R/ping.txt 2>&1; put ping.rc $?
    timeout 600 tbtool send tcp:172.16.0.2:5002 --bytes {BIG} --retry 60 >$R/h2g.txt 2>&1

    console_wait g '@@ g2h ' 600
    # The rate limiters, at run time.
    api g PATCH /network-interfaces/net0 '{{"iface_id": "net0",
        "tx_rate_limiter": {{"bandwidth": {{"size": {TX_RATE}, "refill_time": 1000}}}},
        "rx_rate_limiter": {{"bandwidth": {{"size": {RX_RATE}, "refill_time": 1000}}}}}}'
    put patch.rc $?
    tbtool recv tcp-listen:5004 --bytes {LIMITED} >$R/tx-limited.txt 2>&1 &
    echo $! >>$T/pids
    tbtool send tcp-listen:5003 --bytes 0 >/dev/null 2>&1      # the guest's go
    timeout 300 tbtool send tcp:172.16.0.2:5005 --bytes {LIMITED} --retry 60 \\
        >$R/rx-limited.txt 2>&1
    api g PUT /actions '{{"action_type": "FlushMetrics"}}' >/dev/null

    # The TAP goes away under the running guest.
    console_wait g '@@ rx-limited ' 300
    ip link delete tb0; put tapdel.rc $?
    tbtool send tcp-listen:5006 --bytes 0 >/dev/null 2>&1 &     # never reached: the link is gone
    echo $! >>$T/pids
    vm_wait g 300
"""

GUEST = f"""
    put mtu "$(cat /sys/class/net/eth0/mtu)"
    for d in /sys/bus/virtio/devices/*; do
        [ "$(($(cat $d/device)))" = 1 ] && put features "$(cat $d/features)"
    done
    ping -c 3 -W 10 172.16.0.1 >/dev/null; put ping.rc $?
    put ready 1
    tbtool recv tcp-listen:5002 --bytes {BIG} 2>/dev/null | while read -r l; do put h2g "$l"; done
    tbtool send tcp:172.16.0.1:5001 --bytes {BIG} --retry 60 | while read -r l; do put g2h "$l"; done
    tbtool recv tcp:172.16.0.1:5003 --bytes 0 --retry 120 >/dev/null
    tbtool send tcp:172.16.0.1:5004 --bytes {LIMITED} --retry 60 \\
        | while read -r l; do put tx-limited "$l"; done
    tbtool recv tcp-listen:5005 --bytes {LIMITED} 2>/dev/null \\
        | while read -r l; do put rx-limited "$l"; done
    # The TAP is deleted now: what the guest sends is dropped by vmm.
    sleep 5
    ping -c 5 -W 2 172.16.0.1 >/dev/null; put ping-after.rc $?
    put link "$(cat /sys/class/net/eth0/carrier 2>/dev/null)"
    # What the driver handed to the device and got from it, to check vmm's accounts.
    put tx_packets "$(cat /sys/class/net/eth0/statistics/tx_packets)"
    put rx_packets "$(cat /sys/class/net/eth0/statistics/rx_packets)"
"""




@scenario(outer=OUTER, guest={"net": GUEST}, timeout=300, asan=True)
def test_net(linux):
    g = linux.guest("g")
    report = linux.report("g")
    assert linux.vm_rc("g") == 0, report
    assert g["ping.rc"] == "0" and linux.value("ping.rc") == "0", report

    # BIG bytes each way, intact, with the same hash on both sides.
    sent, got = fields(linux.text("h2g.txt").splitlines()[-1]), fields(g["h2g"])
    assert got.get("ok") == "1" and int(got["bytes"]) == BIG, report
    assert got["fnv"] == sent["fnv"], report
    sent, got = fields(g["g2h"]), fields(linux.text("g2h.txt").splitlines()[-1])
    assert got.get("ok") == "1" and int(got["bytes"]) == BIG, report
    assert got["fnv"] == sent["fnv"], report

    # MTU and offloads: csum both ways, TSO both ways, mergeable rx buffers, status, MTU,
    # MAC, event index, virtio 1.
    assert g["mtu"] == str(MTU), report
    features = g["features"]
    for bit in (0, 1, 3, 5, 7, 8, 11, 12, 15, 16, 29, 32):
        assert features[bit] == "1", (bit, features)

    # The limiters: the guest's measured throughput within 20% of the setting (never above
    # it by more: the bucket's first second is a burst), and vmm throttled.
    assert linux.value("patch.rc") == "0", linux.text("g.api")
    for name, rate, line in (("tx", TX_RATE, g["tx-limited"]),
                             ("rx", RX_RATE, g["rx-limited"])):
        f = fields(line)
        assert int(f["bytes"]) == LIMITED and f.get("ok", "1") == "1", (name, report)
        measured = LIMITED / float(f["secs"])
        assert 0.8 * rate <= measured <= 1.2 * rate, (name, measured, rate, report)
    net = linux.totals("g", "net")
    assert net["tx_rate_limiter_throttled"] > 0 and net["rx_rate_limiter_throttled"] > 0, net
    assert net["tx_bytes_count"] >= BIG + LIMITED and net["rx_bytes_count"] >= BIG + LIMITED, net

    # The TAP removed: vmm survived and said so, and the guest saw the link go down.
    assert linux.value("tapdel.rc") == "0", linux.outer_log
    assert g["ping-after.rc"] != "0" and g["link"] == "0", report
    assert re.search(r"TAP 'tb0' is gone", linux.log("g")), linux.log("g")
    # Every frame is accounted for: each one the guest's driver transmitted was written to
    # the TAP or counted as lost (the metrics have every loss counter), and each one it
    # received was delivered by vmm.
    lost = sum(net[k] for k in ("tx_dropped_count", "tap_write_fails", "tx_malformed_frames"))
    assert int(g["tx_packets"]) == net["tx_packets_count"] + lost, (g["tx_packets"], net)
    assert int(g["rx_packets"]) == net["rx_packets_count"], (g["rx_packets"], net)
    assert net["rx_dropped_count"] == 0 and net["tap_read_fails"] == 0, net

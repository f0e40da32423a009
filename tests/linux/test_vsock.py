"""Scenario 5, vsock: Firecracker's protocol on the device's Unix socket. Host->guest (the
outer connects to $T/v.sock and sends "CONNECT 5000"), guest->host (the guest connects to
CID 2 port 5001, vmm connects to $T/v.sock_5001), BIG bytes each way checked byte by byte,
100 connections one after the other, a host peer that resets mid-stream (the guest's sender
sees the reset) and a guest peer that resets (the host's receiver sees the stream end), then
one more connection to show the device carried on. Both sides: each end's byte counts and
hashes, vmm's vsock metrics.
"""
from testbed import fields, scenario, vmm_sanitized

MIB = 1 << 20
BIG = 4 * MIB if vmm_sanitized() else 16 * MIB
CONNS = 100

OUTER = f"""
    V=$T/v.sock
    tbtool recv unix-listen:${{V}}_5001 --bytes {BIG} >$R/g2h.txt 2>&1 &
    echo $! >>$T/pids
    tbtool recv unix-listen:${{V}}_5004 --bytes {BIG} >$R/guest-reset.txt 2>&1 &
    echo $! >>$T/pids
    vm_boot g vsock --mem 256 --vsock cid=3,uds=$V --metrics-path $R/g.metrics --no-serial-in
    tbtool send fc:$V:5000 --bytes {BIG} --retry 120 >$R/h2g.txt 2>&1
    tbtool send fc:$V:5002 --bytes 64K --count {CONNS} --retry 120 >$R/many.txt 2>&1
    # The host end goes away after 1 MiB of a long stream.
    tbtool recv fc:$V:5003 --bytes {BIG} --reset-after 1M --retry 120 >$R/host-reset.txt 2>&1
    tbtool send fc:$V:5005 --bytes 1M --retry 120 >$R/after.txt 2>&1
    vm_wait g 600
"""

GUEST = f"""
    tbtool recv vsock-listen:5000 --bytes {BIG} 2>/dev/null | while read -r l; do put h2g "$l"; done
    tbtool send vsock:2:5001 --bytes {BIG} --retry 30 | while read -r l; do put g2h "$l"; done
    put many.ok "$(tbtool recv vsock-listen:5002 --bytes 64K --count {CONNS} 2>/dev/null | grep -c ok=1)"
    put host-reset "$(tbtool send vsock-listen:5003 --bytes {BIG} 2>&1 | tail -n 1)"
    put guest-reset "$(tbtool send vsock:2:5004 --bytes {BIG} --reset-after 1M --retry 30 2>&1)"
    tbtool recv vsock-listen:5005 --bytes 1M 2>/dev/null | while read -r l; do put after "$l"; done
"""



def last(text):
    lines = [l for l in text.splitlines() if l.startswith("tbtool: ")]
    return lines[-1] if lines else ""


@scenario(outer=OUTER, guest={"vsock": GUEST}, timeout=240)
def test_vsock(linux):
    g = linux.guest("g")
    report = linux.report("g")
    assert linux.vm_rc("g") == 0, report

    sent, got = fields(last(linux.text("h2g.txt"))), fields(g.get("h2g", ""))
    assert got.get("ok") == "1" and int(got["bytes"]) == BIG, report
    assert got["fnv"] == sent["fnv"], report
    sent, got = fields(g.get("g2h", "")), fields(last(linux.text("g2h.txt")))
    assert got.get("ok") == "1" and int(got["bytes"]) == BIG, report
    assert got["fnv"] == sent["fnv"], report

    # 100 connections in sequence, every one complete on both ends.
    many = [l for l in linux.text("many.txt").splitlines() if l.startswith("tbtool: send")]
    assert len(many) == CONNS and all("bytes=65536" in l for l in many), linux.text("many.txt")
    assert g["many.ok"] == str(CONNS), report

    # The host's end reset after 1 MiB: the guest's sender sees the connection reset.
    assert "reset=1" in linux.text("host-reset.txt"), linux.text("host-reset.txt")
    assert "Connection reset by peer" in g["host-reset"] or "Broken pipe" in g["host-reset"], report
    # The guest's end reset after 1 MiB: the host's receiver gets 1 MiB and the end.
    assert "reset=1" in g["guest-reset"], report
    r = fields(last(linux.text("guest-reset.txt")))
    assert r.get("ok") == "0" and int(r["bytes"]) <= MIB, linux.text("guest-reset.txt")
    # And the device carried on.
    assert fields(g.get("after", "")).get("ok") == "1", report

    vs = linux.totals("g", "vsock")
    assert vs["conns_added"] >= CONNS + 5, vs
    assert vs["conns_removed"] + vs["conns_killed"] >= CONNS + 5, vs
    assert vs["rx_bytes_count"] >= BIG and vs["tx_bytes_count"] >= BIG, vs
    assert vs["bad_packets"] == 0, vs

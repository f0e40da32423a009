"""KVM integration: the probe guest drives every virtio device of the VMM through real KVM
exits (virtio-mmio registers, ioeventfd notifications, irqfd interrupts) and the host sees
the effects. Transcripts are asserted line by line (tests/guest/README.md documents them).

Scenarios: rng (polling), blk (interrupts; a disk image whose sector i starts with "SECT"
and le32 i and ends with i & 0xff, plus a read-only drive), hostile (rule-breaking driver
against rng and blk), net (frames echoed by a host peer on a TAP in a private network
namespace), vsock (both directions against a host peer on the Unix socket backend) and
balloon (the VMM's resident memory falls while the guest holds the balloon).

Each VMM run takes well under a second here. The network-namespace part needs root and
`unshare`; it fails in CI (VMM_REQUIRE_KVM=1) instead of skipping.

This file is also the helper that runs inside the namespace:
  unshare -n python3 test_virtio.py net-harness TAP [--all] VMM ARGS...
creates the TAP, echoes frames of ethertype 0x88b5 on it (with --all: records every frame
the guest sends, of any ethertype, and echoes none), runs the VMM and prints a JSON report
(exit code, output, frames seen).
"""
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

SLOT_BASE = 0xC0001000
FIRST_GSI = 5
ETHERTYPE = 0x88B5
SECTOR = 512


# ---- the in-namespace helper (runs without pytest) ----

def net_harness(tap, vmm_args, capture_all=False):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:  # no router solicitations or MLD reports on the wire
        with open(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
    subprocess.run(["ip", "link", "set", tap, "up"], check=True)
    proto = 0x0003 if capture_all else ETHERTYPE  # ETH_P_ALL
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    sock.bind((tap, proto))
    sock.settimeout(0.1)
    mac = sock.getsockname()[4]
    frames, stop = [], threading.Event()

    def echo():
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65536)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            frames.append(data.hex())
            if not capture_all:
                # Back to the sender, from the TAP's address, same ethertype and payload.
                sock.send(data[6:12] + mac + data[12:])

    thread = threading.Thread(target=echo)
    thread.start()
    start = time.monotonic()
    proc = subprocess.Popen(vmm_args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        out, err = proc.communicate(timeout=30)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        # Report what the guest said so far; a VMM that does not die is reported too.
        proc.kill()
        try:
            out, err = proc.communicate(timeout=10)
            rc = "killed after 30 s"
        except subprocess.TimeoutExpired:
            out, err, rc = "", "", "still running 10 s after SIGKILL"
    seconds = time.monotonic() - start
    stop.set()
    thread.join()
    json.dump({"rc": rc, "out": out, "err": err, "frames": frames, "tap_mac": mac.hex(":"),
               "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "net-harness":
        if len(sys.argv) > 3 and sys.argv[3] == "--all":
            net_harness(sys.argv[2], sys.argv[4:], capture_all=True)
        else:
            net_harness(sys.argv[2], sys.argv[3:])
        sys.exit(0)
    sys.exit("usage: test_virtio.py net-harness TAP [--all] VMM ARGS...")


# ---- the tests ----

import pytest  # noqa: E402

from conftest import PROBE_ENTRY, PROBES, VMM, require_netns, run_probe  # noqa: E402

pytestmark = pytest.mark.usefixtures("kvm")
TIMEOUT = 30


def discovery(ids):
    """The discovery lines for devices in slot order: ACPI first, then the command line."""
    lines = []
    for via in ("acpi", "cmdline"):
        lines += [f"probe: virtio 0x{SLOT_BASE + i * 0x1000:x} irq {FIRST_GSI + i} id {d} "
                  f"(via {via})" for i, d in enumerate(ids)]
    return lines


def assert_transcript(run, name, fmt, expected):
    lines = run.lines()
    assert lines == [f"probe: start {name} via {PROBE_ENTRY[fmt]}", *expected,
                     f"probe: ok {name}"], run
    assert run.rc == 0, run
    assert "guest requested a reset through the i8042" in run.err, run


def mode(who, event_idx=1, indirect=1, irq=False):
    return f"probe: {who} event_idx {event_idx} indirect {indirect} {'irq' if irq else 'poll'}"


def disk_image(path, sectors):
    """Sector i: "SECT", le32 i, zeros, and the byte i & 0xff at its end."""
    data = bytearray()
    for i in range(sectors):
        data += struct.pack("<4sI", b"SECT", i) + bytes(SECTOR - 9) + bytes([i & 0xFF])
    path.write_bytes(data)
    return bytes(data)


def sector(data, i):
    return data[i * SECTOR:(i + 1) * SECTOR]


# -- virtio-rng --

RNG_CASES = [  # fmt, vcpus, extra command line, (event_idx, indirect, irq)
    ("elf", 1, "", (1, 1, False)),
    ("elf", 2, "probe.irq=1", (1, 1, True)),
    ("elf", 1, "probe.event_idx=0 probe.indirect=0 probe.irq=1", (0, 0, True)),
    ("nopvh", 1, "", (1, 1, False)),
    ("bzimage", 2, "probe.event_idx=0", (0, 1, False)),
]


@pytest.mark.parametrize("fmt,vcpus,extra,modes", RNG_CASES)
def test_rng(fmt, vcpus, extra, modes):
    run = run_probe(fmt, "rng", "--entropy", "--vcpus", vcpus, cmdline_extra=extra,
                    timeout=TIMEOUT)
    event_idx, indirect, irq = modes
    assert_transcript(run, "rng", fmt, [
        *discovery([4]),
        mode("rng", event_idx, indirect, irq),
        "probe: rng request 1: 64 bytes",
        f"probe: rng request 2: 64 bytes in 2 buffers{' (indirect)' if indirect else ''}",
        "probe: rng bytes differ",
    ])


def test_rng_missing_device_fails_cleanly():
    run = run_probe("elf", "rng", cmdline_extra="", timeout=TIMEOUT)
    assert run.lines()[-1] == "probe: fail rng no virtio-rng device", run
    assert run.rc == 0, run


# -- virtio-blk --

def blk_lines(rw, ro, flush, disk_id, rw_first=True):
    """Expected blk transcript; rw/ro are the drives' blkN numbers (discovery order)."""
    opened = [
        mode(f"blk{rw}", irq=True),
        f"probe: blk{rw} capacity 2048 sectors ro 0 flush {int(flush)} discard 1 "
        "write-zeroes 1",
    ]
    opened_ro = [
        mode(f"blk{ro}", irq=True),
        f"probe: blk{ro} capacity 64 sectors ro 1 flush 0 discard 0 write-zeroes 0",
    ]
    return (opened + opened_ro if rw_first else opened_ro + opened) + [
        f"probe: blk{rw} read sectors 0-7 ok",
        f"probe: blk{rw} wrote sectors 8-9",
        f"probe: blk{rw} read back sectors 8-9 ok",
        f"probe: blk{rw} flush ok" if flush else f"probe: blk{rw} flush not offered",
        f'probe: blk{rw} id "{disk_id}"',
        f"probe: blk{rw} write-zeroes sectors 10-11 ok",
        f"probe: blk{rw} discard sectors 12-13 ok (reads zeros)",
        f"probe: blk{rw} read past the end: ioerr",
        f"probe: blk{rw} unknown request type: unsupp",
        f"probe: blk{ro} read sector 1 ok",
        f"probe: blk{ro} write refused: ioerr",
        f"probe: blk{ro} sector 1 unchanged",
    ]


BLK_CASES = [  # fmt, vcpus, drive options of the writable drive, root on the read-only one
    ("elf", 1, "cache=writeback", False),
    ("elf", 2, "engine=io_uring", False),
    ("nopvh", 2, "cache=writeback,engine=io_uring", False),
    ("bzimage", 1, "", True),
]


@pytest.mark.parametrize("fmt,vcpus,opts,ro_root", BLK_CASES)
def test_blk(fmt, vcpus, opts, ro_root, tmp_path):
    disk, ro_disk = tmp_path / "disk.img", tmp_path / "ro.img"
    before = disk_image(disk, 2048)
    ro_before = disk_image(ro_disk, 64)
    rw_opt = f"path={disk},id=disk0" + (f",{opts}" if opts else "")
    ro_opt = f"path={ro_disk},id=ro1,ro" + (",root" if ro_root else "")
    run = run_probe(fmt, "blk", "--vcpus", vcpus, "--drive", rw_opt, "--drive", ro_opt,
                    cmdline_extra="probe.blk_id=disk0", timeout=TIMEOUT)
    # The root drive is attached first (slot 0), whatever the order on the command line.
    rw, ro = (1, 0) if ro_root else (0, 1)
    assert_transcript(run, "blk", fmt, [
        *discovery([2, 2]), *blk_lines(rw, ro, "writeback" in opts, "disk0", not ro_root)])

    after = disk.read_bytes()
    assert len(after) == len(before)
    for i in range(2048):
        if i in (8, 9):
            want = struct.pack("<4sI", b"WRIT", i) + bytes(SECTOR - 9) + bytes([i ^ 0xA5])
        elif i in (10, 11, 12, 13):
            want = bytes(SECTOR)  # WRITE_ZEROES, DISCARD (a punched hole)
        else:
            want = sector(before, i)
        assert sector(after, i) == want, f"sector {i}"
    assert ro_disk.read_bytes() == ro_before


def test_blk_without_event_idx_and_indirect(tmp_path):
    disk, ro_disk = tmp_path / "disk.img", tmp_path / "ro.img"
    disk_image(disk, 2048)
    disk_image(ro_disk, 64)
    run = run_probe("elf", "blk", "--drive", f"path={disk},id=d0", "--drive",
                    f"path={ro_disk},ro", cmdline_extra="probe.event_idx=0 probe.indirect=0",
                    timeout=TIMEOUT)
    lines = blk_lines(0, 1, False, "d0")
    lines = [l.replace("event_idx 1 indirect 1", "event_idx 0 indirect 0") for l in lines]
    assert_transcript(run, "blk", "elf", [*discovery([2, 2]), *lines])


# -- hostile drivers --

def hostile_lines(blk, indirect=True):
    refused = "used len 0, status not written" if blk else "used len 0"
    still, reset = "device still works", "works after reset"
    cases = [f"probe: hostile loop: refused ({refused}); {still}"]
    if indirect:
        cases.append(f"probe: hostile long-chain: refused ({refused}); {still}")
    else:
        cases.append("probe: hostile long-chain: skipped (no INDIRECT_DESC)")
    cases += [f"probe: hostile {c}: refused ({refused}); {still}"
              for c in ("outside-ram", "ram-end", "mmio-hole", "len-overflow")]
    cases += [
        f"probe: hostile bad-head: refused (needs reset, config interrupt); {reset}",
        f"probe: hostile bad-avail-idx: refused (needs reset, config interrupt); {reset}",
        f"probe: hostile notify-storm: refused (2000 + 200 notifications, nothing completed); "
        f"{still}",
        f"probe: hostile reset-in-flight: refused (nothing written after the reset); {reset}",
        f"probe: hostile queue-size: refused (QueueReady 0 for size 3, 0 for size 512); "
        f"{reset}",
        "probe: hostile ring-in-mmio-hole: refused (QueueReady 0 with the descriptor table on "
        f"the device's registers); {reset}",
        "probe: hostile ring-misaligned: refused (QueueReady 0 with the descriptor table 8 bytes "
        f"off its alignment); {reset}",
        f"probe: hostile early-queue: refused (QueueReady 0 before FEATURES_OK); {reset}",
        f"probe: hostile early-driver-ok: refused (status 0x3); {reset}",
        f"probe: hostile unoffered-feature: refused (bit 0, status 0x3); {reset}",
        f"probe: hostile no-version-1: refused (status 0x3); {reset}",
        f"probe: hostile {16 + int(indirect)} cases refused",
    ]
    return cases


def test_hostile_rng():
    run = run_probe("elf", "hostile", "--entropy", timeout=TIMEOUT)
    assert_transcript(run, "hostile", "elf",
                      [*discovery([4]), mode("hostile", irq=True), *hostile_lines(False)])
    # The VMM logged the refusals as guest errors and stayed up.
    assert "device needs reset" in run.err, run


def test_hostile_rng_without_ring_features():
    run = run_probe("nopvh", "hostile", "--entropy", "--vcpus", 2,
                    cmdline_extra="probe.event_idx=0 probe.indirect=0", timeout=TIMEOUT)
    assert_transcript(run, "hostile", "nopvh", [
        *discovery([4]), mode("hostile", 0, 0, irq=True), *hostile_lines(False, False)])


@pytest.mark.parametrize("fmt,vcpus,engine", [("elf", 2, "io_uring"), ("bzimage", 1, "sync")])
def test_hostile_blk(fmt, vcpus, engine, tmp_path):
    disk = tmp_path / "disk.img"
    data = disk_image(disk, 512)
    run = run_probe(fmt, "hostile", "--vcpus", vcpus, "--drive", f"path={disk},engine={engine}",
                    cmdline_extra="probe.dev=blk", timeout=TIMEOUT)
    assert_transcript(run, "hostile", fmt,
                      [*discovery([2]), mode("hostile", irq=True), *hostile_lines(True)])
    assert disk.read_bytes() == data  # only reads were attempted


def test_hostile_single_case_selection():
    run = run_probe("elf", "hostile", "--entropy",
                    cmdline_extra="probe.case=bad-avail-idx,early-driver-ok", timeout=TIMEOUT)
    assert_transcript(run, "hostile", "elf", [
        *discovery([4]), mode("hostile", irq=True),
        "probe: hostile bad-avail-idx: refused (needs reset, config interrupt); "
        "works after reset",
        "probe: hostile early-driver-ok: refused (status 0x3); works after reset",
        "probe: hostile 2 cases refused"])


# -- discovery with several kinds of device --

def test_discovery_slot_order(tmp_path):
    """Drives, nets (none here), vsock, balloon, entropy: slot n at 0xc0001000 + n * 4 KiB,
    GSI 5 + n; rng finds its device among the others."""
    disk = tmp_path / "disk.img"
    disk_image(disk, 16)
    devices = ["--entropy", "--balloon", 4, "--vsock", f"cid=7,uds={tmp_path / 'v.sock'}",
               "--drive", f"path={disk}"]
    ids = [2, 19, 5, 4]
    run = run_probe("elf", "rng", *devices, timeout=TIMEOUT)
    assert run.lines()[1:1 + 2 * len(ids)] == discovery(ids), run
    assert "probe: ok rng" in run.lines(), run


def test_nineteen_devices_last_one_on_the_last_ioapic_pin(tmp_path):
    """The most this platform takes: 18 drives and the entropy device on GSI 23."""
    disk = tmp_path / "disk.img"
    disk_image(disk, 16)
    drives = [a for i in range(18) for a in ("--drive", f"path={disk},ro,id=d{i}")]
    run = run_probe("elf", "rng", *drives, "--entropy", cmdline_extra="probe.irq=1",
                    timeout=TIMEOUT)
    assert_transcript(run, "rng", "elf", [
        *discovery([2] * 18 + [4]), mode("rng", irq=True), "probe: rng request 1: 64 bytes",
        "probe: rng request 2: 64 bytes in 2 buffers (indirect)", "probe: rng bytes differ"])


# -- virtio-net --

@pytest.fixture
def netns():
    require_netns("the virtio-net tests")


def run_net(fmt, vcpus, net_opt, extra):
    cmdline = f"console=ttyS0 probe=net {extra}".strip()
    args = [str(VMM), "--kernel", str(PROBES[fmt]), "--vcpus", str(vcpus), "--net", net_opt,
            "--cmdline", cmdline]
    try:
        proc = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                               "net-harness", "tap0", *args], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the network-namespace helper hung: {e.stdout!r} {e.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


NET_SIZES = [60, 128, 600, 1000, 1514]


@pytest.mark.parametrize("fmt,vcpus,mrg", [("elf", 1, True), ("elf", 2, False),
                                           ("bzimage", 1, True)])
def test_net_echo(netns, fmt, vcpus, mrg):
    mac = "52:54:00:12:34:56"
    extra = "" if mrg else "probe.mrg=0"
    r = run_net(fmt, vcpus, f"tap=tap0,mac={mac},mtu=1500", extra)
    report = f"rc={r['rc']}\n--- stdout\n{r['out']}\n--- stderr\n{r['err']}"
    lines = [l for l in r["out"].splitlines() if l.startswith("probe: ")]
    bufs = [1, 1, 2, 2, 3] if mrg else [1] * 5
    assert lines == [
        f"probe: start net via {PROBE_ENTRY[fmt]}", *discovery([1]), mode("net", irq=True),
        f"probe: net mac {mac} mrg_rxbuf {int(mrg)} link up mtu 1500",
        *[f"probe: net frame {k}: {n} bytes sent, echoed in {b} buffer{'s' if b > 1 else ''}"
          for k, (n, b) in enumerate(zip(NET_SIZES, bufs))],
        "probe: net 5 frames echoed", "probe: ok net"], report
    assert r["rc"] == 0, report
    # The host saw exactly the guest's frames: broadcast, from the guest MAC, the payload.
    frames = [bytes.fromhex(f) for f in r["frames"]]
    assert len(frames) == 5, report
    guest_mac = bytes.fromhex(mac.replace(":", ""))
    for k, (f, n) in enumerate(zip(frames, NET_SIZES)):
        assert len(f) == n, (k, f.hex())
        assert f[:6] == b"\xff" * 6 and f[6:12] == guest_mac, (k, f.hex())
        assert f[12:14] == ETHERTYPE.to_bytes(2, "big"), (k, f.hex())
        assert f[14:24] == b"PROBE-NET" + bytes([k]), (k, f.hex())
        assert f[24:] == bytes((k * 7 + j) & 0xFF for j in range(24, n)), k


# -- helpers for scenarios that talk with the host while they run --

class Guest:
    """A VMM whose console is read line by line while the test acts on the host."""

    def __init__(self, fmt, scenario, *args, extra=""):
        cmdline = f"console=ttyS0 probe={scenario} {extra}".strip()
        self.proc = subprocess.Popen(
            [str(VMM), "--kernel", str(PROBES[fmt]), "--cmdline", cmdline, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.seen = b""

    def wait_for(self, needle, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen in {self.seen.decode(errors='replace')}"
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    raise AssertionError(f"vmm ended before {needle!r}:\n"
                                         f"{self.seen.decode(errors='replace')}\n{err}")
                self.seen += chunk

    def send_line(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout=TIMEOUT):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        text = (self.seen + out).decode(errors="replace")
        lines = [l for l in text.splitlines() if l.startswith("probe: ")]
        return lines, self.proc.returncode, text + "\n--- stderr\n" + err.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- virtio-vsock --

def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize("fmt,vcpus", [("elf", 1), ("elf", 2)])
def test_vsock_both_directions(fmt, vcpus, tmp_path):
    uds = str(tmp_path / "v.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{uds}_5678")  # the guest connects to host port 5678
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    host_side = {}

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            host_side["got"] = read_line(conn)
            conn.sendall(b"hello from the host\n")
            rest = b""
            while chunk := conn.recv(256):
                rest += chunk
            host_side["rest"] = rest  # the guest's SHUTDOWN ends the stream
            conn.close()
        except OSError as e:
            host_side["error"] = repr(e)

    thread = threading.Thread(target=serve)
    thread.start()
    guest = Guest(fmt, "vsock", "--vcpus", vcpus, "--vsock", f"cid=3,uds={uds}")
    try:
        guest.wait_for("probe: vsock cid 3 ready\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(uds)
            s.sendall(b"CONNECT 1234\n")
            ok = read_line(s)
            assert re.fullmatch(rb"OK \d+\n", ok), ok
            host_port = int(ok.split()[1])
            s.sendall(b"hello from the host side\n")
            assert read_line(s) == b"guest got: hello from the host side\n"
        lines, rc, report = guest.finish()
    finally:
        guest.kill()
        thread.join(TIMEOUT)
        listener.close()
    assert lines == [
        f"probe: start vsock via {PROBE_ENTRY[fmt]}", *discovery([19]),
        mode("vsock", irq=True), "probe: vsock cid 3 ready",
        f"probe: vsock request from cid 2 port {host_port} to port 1234",
        'probe: vsock host sent "hello from the host side"',
        "probe: vsock host closed (shutdown flags 3), guest resets",
        "probe: vsock connected to host port 5678",
        'probe: vsock host answered "hello from the host"',
        "probe: vsock guest closed, device reset the connection",
        "probe: vsock port 9999 refused with RST", "probe: ok vsock"], report
    assert rc == 0, report
    assert host_side == {"got": b"hello from the guest\n", "rest": b""}, host_side


# -- virtio-balloon --

@pytest.mark.parametrize("fmt,vcpus,oom", [("elf", 1, False), ("nopvh", 2, True)])
def test_balloon_releases_memory_to_the_host(fmt, vcpus, oom):
    mib, pages = 16, 16 * 256
    guest = Guest(fmt, "balloon", "--mem", 128, "--vcpus", vcpus, "--balloon",
                  f"{mib}{',deflate-on-oom' if oom else ''}")
    try:
        guest.wait_for(f"probe: balloon touched {pages} pages\n")
        touched = vm_rss_kib(guest.proc.pid)
        guest.send_line("inflate")
        guest.wait_for(f"probe: balloon inflated {pages} pages, actual {pages}\n")
        inflated = vm_rss_kib(guest.proc.pid)
        guest.send_line("deflate")
        lines, rc, report = guest.finish()
    finally:
        guest.kill()
    assert lines == [
        f"probe: start balloon via {PROBE_ENTRY[fmt]}", *discovery([5]),
        mode("balloon", irq=True),
        f"probe: balloon num_pages {pages} actual 0 deflate_on_oom {int(oom)}",
        f"probe: balloon touched {pages} pages",
        f"probe: balloon inflated {pages} pages, actual {pages}",
        f"probe: balloon deflated {pages} pages, actual 0",
        f"probe: balloon {pages} pages read back zero", "probe: ok balloon"], report
    assert rc == 0, report
    # The inflated pages left the VMM's resident set (allow a little noise).
    assert touched - inflated >= (mib << 10) * 3 // 4, (touched, inflated)


class Api:
    """A client of the running VMM's API socket; answers are checked against api/openapi.yaml."""

    def __init__(self, sock):
        import requests_unixsocket
        import urllib.parse
        self.base = "http+unix://" + urllib.parse.quote(str(sock), safe="")
        self.session = requests_unixsocket.Session()

    def request(self, method, path, body=None, status=204, fault=None):
        from vmm_api import check
        data = None if body is None else json.dumps(body)
        return check(self.session.request(method, self.base + path, data=data, timeout=30),
                     status, fault)

    def metrics(self, path):
        self.request("PUT", "/actions", {"action_type": "FlushMetrics"})
        return json.loads(path.read_text().splitlines()[-1])


# The statistics queue offered (stats=2) and declined by the probe: the free page and
# reporting queues still take indices 2 and 3 (numbered by the negotiated features).
@pytest.mark.parametrize("fmt,stats", [("elf", ""), ("nopvh", ",stats=2")])
def test_balloon_free_page_reporting_and_hinting(tmp_path, fmt, stats):
    """The guest reports 4 MiB it touched: the VMM's resident memory falls, no inflation.
    It touches them again; a hinting run started through the API (PATCH
    /balloon/hinting/start, acknowledge_on_stop by default) has it hint them: the memory
    falls again, the device answers DONE, GET /balloon/hinting/status and the metrics say
    what happened."""
    pages, mib = 1024, 4
    sock, metrics = tmp_path / "api.sock", tmp_path / "metrics.json"
    guest = Guest(fmt, "freepage", "--mem", 64, "--balloon",
                  f"0,free-page-reporting,free-page-hinting{stats}", "--api-sock", sock,
                  "--metrics-path", metrics)
    try:
        guest.wait_for(f"probe: freepage touched {pages} pages\n")
        api = Api(sock)
        assert api.request("GET", "/balloon/hinting/status", status=200) == {"host_cmd": 0,
                                                                            "guest_cmd": None}
        touched = vm_rss_kib(guest.proc.pid)
        guest.send_line("report")
        guest.wait_for(f"probe: freepage reported {pages} pages")
        reported = vm_rss_kib(guest.proc.pid)
        guest.send_line("touch")
        guest.wait_for(f"probe: freepage touched {pages} pages again\n")
        retouched = vm_rss_kib(guest.proc.pid)
        api.request("PATCH", "/balloon/hinting/start", {})
        assert api.request("GET", "/balloon/hinting/status", status=200) == {"host_cmd": 2,
                                                                            "guest_cmd": None}
        guest.send_line("hint")
        guest.wait_for("host answered DONE")
        hinted = vm_rss_kib(guest.proc.pid)
        status = api.request("GET", "/balloon/hinting/status", status=200)
        m = api.metrics(metrics)["balloon"]
        guest.send_line("end")
        lines, rc, report = guest.finish()
    finally:
        guest.kill()
    assert lines == [
        f"probe: start freepage via {PROBE_ENTRY[fmt]}", *discovery([5]),
        mode("freepage", irq=True), "probe: freepage hinting 1 reporting 1 queues 4",
        f"probe: freepage touched {pages} pages",
        f"probe: freepage reported {pages} pages in 2 ranges, {pages} read back zero",
        f"probe: freepage touched {pages} pages again",
        f"probe: freepage command 2, hinted {pages} pages in 2 ranges, host answered DONE, "
        f"{pages} read back zero", "probe: ok freepage"], report
    assert rc == 0, report
    # The guest's STOP ended the run; the device answered DONE (1).
    assert status == {"host_cmd": 1, "guest_cmd": 0}, status
    kib = (mib << 10) * 3 // 4  # allow a little noise
    assert touched - reported >= kib, (touched, reported)
    assert retouched - reported >= kib, (reported, retouched)
    assert retouched - hinted >= kib, (retouched, hinted)
    assert {k: v for k, v in m.items() if k.startswith("free_page") or k in
            ("inflate_count", "released_bytes", "event_fails")} == {
        "free_page_report_count": 2, "free_page_report_freed": mib << 20,
        "free_page_report_fails": 0, "free_page_report_kept": 0,
        "free_page_hint_count": 2, "free_page_hint_freed": mib << 20,
        "free_page_hint_fails": 0, "free_page_hint_ignored": 0,
        "inflate_count": 0, "released_bytes": 0, "event_fails": 0}, m

"""Confidential guests end to end: the probe guest runs each platform's protocol (sev's GHCB
MSR page-state changes, pef's ultravisor calls, s390-pv's UVC and PV IPL) against the VMM's
models and drives blk, net and vsock with VIRTIO_F_ACCESS_PLATFORM through a shared pool
(bounce buffers), then attacks the devices and the platform with everything the rules say
must be refused. Each test is named after the rule of docs/confidential.md it
proves (tests/guest/README.md documents the scenarios' lines).

One VMM run per platform and scenario (cached for the module): the whole host side of a run
happens in a private network namespace holding the TAP (a frame echo on it), with a vsock
host peer on the Unix socket backend, the REST API, serial input and a metrics file. While
the guest pauses (probe.cc.peek=1) the host reads the secret's page and the whole shared pool
through GET /vm/memory, GET /vm/config and GET /, tries PUT /vm/memory-dump and flushes the
metrics. The report of a run is everything the host saw.

This file is also that harness:  unshare -n python3 test_cc_e2e.py harness SPEC.json
"""
import json
import os
import pathlib
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

ETHERTYPE = 0x88B5
SECTOR = 512
VSOCK_CID = 3
WAIT_RE = re.compile(rb"probe: cc waiting for the host \(secret at (0x[0-9a-f]+)\)\n")
POOL_RE = re.compile(rb"probe: cc shared pool: (\d+) KiB at (0x[0-9a-f]+)\n")


# ---- the harness (no pytest here: it also runs inside the namespace) ----

class Reader(threading.Thread):
    """Collects everything a pipe delivers."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.data, self.lock = pipe, b"", threading.Lock()
        self.start()

    def run(self):
        while chunk := os.read(self.pipe.fileno(), 65536):
            with self.lock:
                self.data += chunk

    def get(self):
        with self.lock:
            return self.data


def tap_echo(tap, frames, stop):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:  # no router solicitations or MLD reports on the wire
        with open(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
    subprocess.run(["ip", "link", "set", tap, "up"], check=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    sock.bind((tap, 0))
    sock.settimeout(0.1)
    mac = sock.getsockname()[4]

    def echo():
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65536)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            frames.append(data.hex())  # every frame the guest sent, whatever its type
            if data[12:14] == ETHERTYPE.to_bytes(2, "big"):
                sock.send(data[6:12] + mac + data[12:])

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    return thread


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise OSError(f"EOF after {data!r}")
        data += chunk
    return data


def vsock_listener(uds, received, errors, stop):
    """The host side of the guest's connection to host port 5678 (if it comes)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{uds}_5678")
    listener.listen(1)
    listener.settimeout(0.1)

    def serve():
        try:
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except socket.timeout:
                    if stop.is_set():
                        return
            conn.settimeout(30)
            received.append(read_line(conn).hex())
            conn.sendall(b"hello from the host\n")
            rest = b""
            while chunk := conn.recv(256):
                rest += chunk
            received.append(rest.hex())
            conn.close()
        except OSError as e:
            errors.append(f"listener: {e!r}")
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def vsock_connect(uds, received, errors):
    """The host connects to the guest's port 1234 and exchanges a line."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(uds)
            s.sendall(b"CONNECT 1234\n")
            ok = read_line(s)
            received.append(ok.hex())
            s.sendall(b"hello from the host side\n")
            received.append(read_line(s).hex())
    except OSError as e:
        errors.append(f"connect: {e!r}")


class Api:
    def __init__(self, sock):
        import requests_unixsocket
        self.session = requests_unixsocket.Session()
        self.base = "http+unix://" + urllib.parse.quote(sock, safe="")
        self.log = []

    def call(self, method, path, body=None):
        r = self.session.request(method, self.base + path, timeout=30,
                                 data=None if body is None else json.dumps(body))
        self.log.append({"method": method, "path": path, "status": r.status_code,
                         "body": r.text})
        return r


def at_pause(spec, out, api, report):
    """The guest waits: everything a curious host can ask for."""
    m = WAIT_RE.search(out)
    secret_at = int(m.group(1), 16)
    report["secret_at"] = secret_at
    api.call("GET", f"/vm/memory/{secret_at:#x}")
    api.call("GET", f"/vm/memory/{secret_at:#x}")  # again: a stable stand-in, no plaintext
    pool = POOL_RE.search(out)
    if pool:
        size, base = int(pool.group(1)) << 10, int(pool.group(2), 16)
        report["pool"] = [base, size]
        for a in range(base, base + size, 4096):
            api.call("GET", f"/vm/memory/{a:#x}")
    api.call("GET", "/vm/config")
    api.call("GET", "/")
    api.call("GET", "/machine-config")
    dump = pathlib.Path(spec["workdir"]) / "memory.dump"
    api.call("PUT", "/vm/memory-dump", {"mem_file_path": str(dump)})
    report["dump_exists"] = dump.exists()
    api.call("PUT", "/actions", {"action_type": "FlushMetrics"})


def harness(spec):
    """Runs one VMM with its host peers; returns the report (JSON-serialisable)."""
    workdir = pathlib.Path(spec["workdir"])
    sock, metrics = str(workdir / "api.sock"), workdir / "metrics.json"
    frames, vsock_rx, errors, stop = [], [], [], threading.Event()
    report = {"errors": errors, "frames": frames, "vsock_rx": vsock_rx, "dump_exists": None}
    echo = tap_echo(spec["tap"], frames, stop) if spec.get("tap") else None
    uds = spec.get("vsock_uds")
    listener = vsock_listener(uds, vsock_rx, errors, stop) if uds else None
    args = [spec["vmm"], *spec["args"], "--api-sock", sock, "--metrics-path", str(metrics)]
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    api, connected, paused = None, False, False
    deadline = start + spec.get("timeout", 60)
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            text = out.get()
            if uds and not connected and b"probe: vsock cid 3 ready\n" in text:
                connected = True
                vsock_connect(uds, vsock_rx, errors)
            if not paused and WAIT_RE.search(text):
                paused = True
                api = Api(sock)
                at_pause(spec, text, api, report)
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            errors.append(f"killed after {spec.get('timeout', 60)} s")
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    out.join(10)
    err.join(10)
    stop.set()
    if echo:
        echo.join(5)
    if listener:
        listener.join(5)
    report.update(rc=rc, out=out.get().decode(errors="replace"),
                  err=err.get().decode(errors="replace"), api=api.log if api else [],
                  metrics=metrics.read_text() if metrics.exists() else "",
                  seconds=time.monotonic() - start)
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "harness":
        json.dump(harness(json.loads(pathlib.Path(sys.argv[2]).read_text())), sys.stdout)
        sys.exit(0)
    sys.exit("usage: test_cc_e2e.py harness SPEC.json")


# ---- the tests ----

import pytest  # noqa: E402

from conftest import PROBES, VMM, require_kvm, require_netns, run_probe  # noqa: E402

PLATFORMS = ["sev", "pef", "s390-pv"]
SLOT_BASE = 0xC0001000
FIRST_GSI = 5
DISK_SECTORS = 2048
GUEST_MAC = "52:54:00:12:34:56"


def disk_image(path, sectors=DISK_SECTORS):
    """Sector i: "SECT", le32 i, zeros, and the byte i & 0xff at its end."""
    data = bytearray()
    for i in range(sectors):
        data += struct.pack("<4sI", b"SECT", i) + bytes(SECTOR - 9) + bytes([i & 0xFF])
    path.write_bytes(data)
    return bytes(data)


class Run:
    """One VMM run through the harness, and what it left behind."""

    def __init__(self, platform, scenario, workdir):
        self.platform, self.scenario, self.dir = platform, scenario, workdir
        self.token = secrets.token_hex(12)
        self.secret = f"CC-SECRET-{self.token}".encode()
        self.disk = workdir / "disk.img"
        self.disk_before = disk_image(self.disk)
        uds = str(workdir / "v.sock")
        cmdline = (f"console=ttyS0 probe={scenario} probe.cc.secret={self.token} "
                   f"probe.blk_id=disk0{' probe.cc.peek=1' if scenario.endswith('-io') else ''}")
        spec = {
            "workdir": str(workdir), "vmm": str(VMM), "tap": "tap0", "vsock_uds": uds,
            "timeout": 60,
            "args": ["--kernel", str(PROBES["elf"]), "--confidential", platform,
                     "--drive", f"path={self.disk},id=disk0",
                     "--net", f"tap=tap0,id=net0,mac={GUEST_MAC},mtu=1500",
                     "--vsock", f"cid={VSOCK_CID},uds={uds}", "--cmdline", cmdline],
        }
        (workdir / "spec.json").write_text(json.dumps(spec))
        try:
            proc = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                                   "harness", str(workdir / "spec.json")],
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"the harness hung: {e.stdout!r} {e.stderr!r}")
        assert proc.returncode == 0, proc.stderr
        (workdir / "report.json").write_text(proc.stdout)  # for a look after a failure
        self.r = json.loads(proc.stdout)
        self.lines = [l for l in self.r["out"].splitlines() if l.startswith("probe: ")]
        self.metrics = [json.loads(l) for l in self.r["metrics"].splitlines() if l.strip()]

    def __repr__(self):
        return (f"<{self.platform} {self.scenario} rc={self.r['rc']} errors={self.r['errors']}"
                f"\n--- stdout\n{self.r['out']}\n--- stderr\n{self.r['err'][-4000:]}>")

    def total(self, group, field):
        """A counter summed over every metrics line (each line holds what it gained)."""
        return sum(m.get(group, {}).get(field, 0) for m in self.metrics)

    def attack_lines(self):
        return {m.group(1): m.group(2) for m in
                (re.match(r"probe: cc-attack ([a-z0-9-]+): (.*)$", l) for l in self.lines) if m}


_runs = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    def get(platform, scenario):
        key = (platform, scenario)
        if key not in _runs:
            require_kvm()
            require_netns("the confidential e2e tests")
            _runs[key] = Run(platform, scenario, tmp_path_factory.mktemp(
                f"{scenario}-{platform}".replace("-", "_")))
        run = _runs[key]
        assert run.r["rc"] == 0 and not run.r["errors"], run
        return run
    return get


def io_run(runs, platform):
    return runs(platform, f"cc-{platform}-io")


def attack_run(runs, platform):
    return runs(platform, f"cc-{platform}-attack")


# -- the transcripts --

def discovery(ids):
    lines = []
    for via in ("acpi", "cmdline"):
        lines += [f"probe: virtio 0x{SLOT_BASE + i * 0x1000:x} irq {FIRST_GSI + i} id {d} "
                  f"(via {via})" for i, d in enumerate(ids)]
    return lines


DEVICE_IDS = [2, 1, 19]  # slot order: drives, nets, vsock


def platform_line(platform):
    if platform == "sev":
        return "probe: cc platform sev (via cmdline)"
    return f"probe: cc platform {platform}, call window 0xc0080000 (via acpi and cmdline)"


def io_expected(platform, run):
    secret_at = run.r.get("secret_at", 0)
    pool = run.r.get("pool", [0, 0])
    if platform == "sev":
        transition = ["probe: cc sev: every page is private from launch"]
    else:
        secure = ("probe: cc secure: UV_ESM ok" if platform == "pef" else
                  "probe: cc secure: DIAG 0x308 subcode 10 (PV IPL) ok")
        transition = [
            "probe: cc before the transition: blk0 offers ACCESS_PLATFORM, read sector 0 from "
            "ordinary memory ok",
            secure,
            "probe: cc after the transition: the request in flight was not served, blk0 needs "
            "reset (its rings are private now)"]
    qui = (["probe: cc QUI: SET_SHARED_ACCESS and REMOVE_SHARED_ACCESS installed"]
           if platform == "s390-pv" else [])
    mode = "event_idx 1 indirect 1 irq"
    unshare = ("probe: cc UV_UNSHARE_ALL_PAGES ok, the pool reads zeros" if platform == "pef"
               else "probe: cc pool unshared")
    bounced = [l for l in run.lines if l.startswith("probe: cc ") and "buffers bounced" in l]
    return [
        f"probe: start cc-{platform}-io via pvh", *discovery(DEVICE_IDS), platform_line(platform),
        *[f"probe: cc device 0x{SLOT_BASE + i * 0x1000:x} id {d} offers VERSION_1 1 "
          "ACCESS_PLATFORM 1" for i, d in enumerate(DEVICE_IDS)],
        f"probe: cc secret planted: 4096 bytes at {secret_at:#x}",
        *transition,
        "probe: cc rings in private memory: QueueReady 0",
        *qui,
        f"probe: cc shared pool: {pool[1] >> 10} KiB at {pool[0]:#x}",
        # blk (tests/guest/README.md)
        f"probe: blk0 {mode}",
        "probe: blk0 capacity 2048 sectors ro 0 flush 0 discard 1 write-zeroes 1",
        "probe: blk0 read sectors 0-7 ok", "probe: blk0 wrote sectors 8-9",
        "probe: blk0 read back sectors 8-9 ok", "probe: blk0 flush not offered",
        'probe: blk0 id "disk0"', "probe: blk0 write-zeroes sectors 10-11 ok",
        "probe: blk0 discard sectors 12-13 ok (reads zeros)",
        "probe: blk0 read past the end: ioerr", "probe: blk0 unknown request type: unsupp",
        "probe: blk no read-only drive",
        # net
        f"probe: net {mode}", f"probe: net mac {GUEST_MAC} mrg_rxbuf 1 link up mtu 1500",
        *[f"probe: net frame {k}: {n} bytes sent, echoed in {b} buffer{'s' if b > 1 else ''}"
          for k, (n, b) in enumerate(zip([60, 128, 600, 1000, 1514], [1, 1, 2, 2, 3]))],
        "probe: net 5 frames echoed",
        # vsock
        f"probe: vsock {mode}", f"probe: vsock cid {VSOCK_CID} ready",
        *[l for l in run.lines if l.startswith("probe: vsock request from cid 2 port ")][:1],
        'probe: vsock host sent "hello from the host side"',
        "probe: vsock host closed (shutdown flags 3), guest resets",
        "probe: vsock connected to host port 5678",
        'probe: vsock host answered "hello from the host"',
        "probe: vsock guest closed, device reset the connection",
        "probe: vsock port 9999 refused with RST",
        *bounced[:1],
        f"probe: cc waiting for the host (secret at {secret_at:#x})",
        "probe: cc secret intact",
        unshare,
        "probe: cc rings in the former pool: QueueReady 0",
        "probe: cc secret intact",
        f"probe: ok cc-{platform}-io",
    ]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc_io_scenario_passes(runs, platform):
    """blk, net and vsock with ACCESS_PLATFORM through the shared pool, on each platform."""
    run = io_run(runs, platform)
    assert run.lines == io_expected(platform, run), run
    assert "guest requested a reset through the i8042" in run.r["err"], run
    assert re.fullmatch(r"probe: cc \d+ buffers bounced through the shared pool",
                        [l for l in run.lines if "buffers bounced" in l][0]), run
    # The block I/O landed: sectors 8-9 written, 10-13 zeroed, the rest as it was.
    after = run.disk.read_bytes()
    for i in range(DISK_SECTORS):
        got = after[i * SECTOR:(i + 1) * SECTOR]
        if i in (8, 9):
            want = struct.pack("<4sI", b"WRIT", i) + bytes(SECTOR - 9) + bytes([i ^ 0xA5])
        elif i in (10, 11, 12, 13):
            want = bytes(SECTOR)
        else:
            want = run.disk_before[i * SECTOR:(i + 1) * SECTOR]
        assert got == want, f"sector {i}"
    # The frames and the vsock bytes the host saw are the guest's, unchanged by the bounce.
    frames = [bytes.fromhex(f) for f in run.r["frames"]]
    assert [len(f) for f in frames] == [60, 128, 600, 1000, 1514], run
    for k, f in enumerate(frames):
        assert f[14:24] == b"PROBE-NET" + bytes([k]), k
    rx = [bytes.fromhex(x) for x in run.r["vsock_rx"]]
    assert rx[1] == b"guest got: hello from the host side\n", rx
    assert b"hello from the guest\n" in rx, rx


def test_cc1_devices_offer_version_1_and_access_platform(runs):
    """CC-1: every device of a protected VM is a version-2 transport (legacy is refused at
    discovery) offering VERSION_1 and ACCESS_PLATFORM; the driver, under restricted memory
    access, would refuse any device that does not."""
    for platform in PLATFORMS:
        run = io_run(runs, platform)
        offers = [l for l in run.lines if l.startswith("probe: cc device ")]
        assert len(offers) == 3 and all(l.endswith("VERSION_1 1 ACCESS_PLATFORM 1")
                                        for l in offers), run
        assert not [l for l in run.lines if "refused (legacy)" in l], run


# -- the attacks --

REFUSED_BLK = {
    "no-access-platform": "refused (FEATURES_OK clear, status 0x3 after DRIVER_OK, QueueReady 0); "
                          "works after reset",
    "no-version-1": "refused (FEATURES_OK clear, status 0x3 after DRIVER_OK, QueueReady 0); "
                    "works after reset",
    "private-rings": "refused (QueueReady 0); works after reset",
    "private-used-ring": "refused (QueueReady 0); works after reset",
    "private-read-buffer": "refused (status ioerr); device still works",
    "private-write-buffer": "refused (status ioerr, sector 3 unchanged); device still works",
    "private-header": "refused (status ioerr); device still works",
    "private-status": "refused (completed, used len 0, status not written, shared buffer "
                      "untouched); device still works",
    "private-indirect": "refused (completed, used len 0, status not written); device still works",
    "unshare-buffer": "refused (completed, status ioerr, buffer not written); device still works",
    "unshare-ring": "refused (needs reset, config interrupt); works after reset",
}
OTHER_DEVICES = {
    "vsock-private-packet": "refused (dropped, used len 0)",
    "net-private-frame": "refused (dropped, used len 0)",
}


def calls_expected(platform, target):
    still = f"{target:#x} still refused by the device"
    if platform == "sev":
        return {
            "psc-bad-operation": f"refused (response 0x100000015, {still})",
            "psc-operation-zero": f"refused (response 0x100000015, {still})",
            "psc-mmio-hole": "refused (response 0x200000015)",
            "psc-outside-ram": "refused (response 0x200000015)",
            "ghcb-unknown-request": f"refused (response 0x0, {still})",
        }
    if platform == "pef":
        return {
            "share-before-esm": "refused (H_STATE)",
            "unshare-all-before-esm": "refused (H_STATE)",
            "esm-bad-blob": "refused (H_PARAMETER, still an ordinary VM)",
            "esm-twice": "refused (H_STATE)",
            "share-outside-ram": "refused (H_PARAMETER)",
            "share-mmio-hole": "refused (H_PARAMETER)",
            "share-zero-pages": f"refused (H_P2, {still})",
            "share-past-ram-end": f"refused (H_P2, {still})",
            "unshare-zero-pages": "refused (H_P2)",
            "unknown-ucall": f"refused (H_FUNCTION, {still})",
            "wrong-call-kind": f"refused (H_UNSUPPORTED, {still})",
        }
    return {
        "uvc-before-ipl": "refused (cc 1 rc 0x3)",
        "diag308-bad-subcode": "refused (rc 0x402)",
        "ipl-bad-header": "refused (rc 0x102, still an ordinary VM)",
        "ipl-twice": "refused (rc 0x102)",
        "uvc-bad-length": f"refused (cc 1 rc 0x5, {still})",
        "uvc-unknown-command": f"refused (cc 1 rc 0x2, {still})",
        "uvc-unaligned-address": f"refused (cc 1 rc 0x101, {still})",
        "uvc-address-outside-ram": "refused (cc 1 rc 0x101)",
        "uvc-misaligned-block": f"refused (cc 3, {still})",
        "uvc-block-outside-ram": "refused (cc 3)",
        "qui-short-block": "refused (cc 1 rc 0x5)",
        "wrong-call-kind": f"refused (cc 3, {still})",
    }


def attack_target(run):
    """The private page the malformed calls aim at (named in their lines)."""
    m = re.search(r"(0x[0-9a-f]+) still refused by the device", run.r["out"])
    return int(m.group(1), 16)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc_attack_scenario_passes(runs, platform):
    """Every case refused, the device working after each, the VMM up to the end."""
    run = attack_run(runs, platform)
    cases = run.attack_lines()
    calls = calls_expected(platform, attack_target(run))
    want = {**REFUSED_BLK, **calls, **OTHER_DEVICES}
    assert cases == want, run
    assert run.lines[-3:] == ["probe: cc secret intact",
                              f"probe: cc-attack {len(want)} cases refused",
                              f"probe: ok cc-{platform}-attack"], run
    assert "guest requested a reset through the i8042" in run.r["err"], run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc2_no_features_ok_without_access_platform_or_version_1(runs, platform):
    """CC-2: FEATURES_OK does not latch, DRIVER_OK is refused and no queue is taken."""
    cases = attack_run(runs, platform).attack_lines()
    assert cases["no-access-platform"] == REFUSED_BLK["no-access-platform"]
    assert cases["no-version-1"] == REFUSED_BLK["no-version-1"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc3_cc4_a_private_byte_fails_the_whole_request(runs, platform):
    """CC-3/CC-4: a private data buffer (the secret's page), header, status byte or indirect
    table fails the request as a whole; nothing reaches the shared buffers or the disk."""
    run = attack_run(runs, platform)
    cases = run.attack_lines()
    for c in ("private-read-buffer", "private-write-buffer", "private-header", "private-status",
              "private-indirect"):
        assert cases[c] == REFUSED_BLK[c], (c, run)
    assert run.disk.read_bytes() == run.disk_before  # the attack only read, or was refused
    assert run.secret not in run.disk.read_bytes()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc4_private_ring_needs_reset_and_the_vmm_stays_up(runs, platform):
    """CC-4: a ring that became private: DEVICE_NEEDS_RESET and a configuration interrupt;
    the device works after a reset, the other devices and the VMM go on."""
    run = attack_run(runs, platform)
    cases = run.attack_lines()
    assert cases["unshare-ring"] == REFUSED_BLK["unshare-ring"], run
    assert cases["vsock-private-packet"] == OTHER_DEVICES["vsock-private-packet"], run
    assert run.total("block_disk0", "activate_fails") == 1, run.metrics  # DEVICE_NEEDS_RESET
    assert run.r["rc"] == 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc5_queue_ready_refused_over_private_rings(runs, platform):
    """CC-5: QueueReady reads back 0 when any ring area is private: rings in private memory,
    only the used ring private, and rings in the pool after it was unshared."""
    cases = attack_run(runs, platform).attack_lines()
    assert cases["private-rings"] == REFUSED_BLK["private-rings"]
    assert cases["private-used-ring"] == REFUSED_BLK["private-used-ring"]
    lines = io_run(runs, platform).lines
    assert "probe: cc rings in private memory: QueueReady 0" in lines
    assert "probe: cc rings in the former pool: QueueReady 0" in lines


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc6_unshared_while_in_flight(runs, platform):
    """CC-6: a buffer and the rings unshared after the request was published: the device
    sees the current state, no earlier check lets it through."""
    cases = attack_run(runs, platform).attack_lines()
    assert cases["unshare-buffer"] == REFUSED_BLK["unshare-buffer"]
    assert cases["unshare-ring"] == REFUSED_BLK["unshare-ring"]


# Device-memory refusals each attack case provokes (one per refused access the device
# attempted; the QueueReady and status-byte checks count too).
BLK_VIOLATIONS = {
    "private-rings": 1, "private-used-ring": 1, "private-read-buffer": 1,
    "private-write-buffer": 1, "private-header": 1, "private-status": 1,
    "private-indirect": 1, "unshare-buffer": 1, "unshare-ring": 1,
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc7_violations_counted_per_device_and_per_vm(runs, platform):
    """CC-7: the metrics count the refusals the attack provoked, per device (block_disk0,
    net_net0, vsock) and for the VM (confidential_devices), and the VMM logged them."""
    run = attack_run(runs, platform)
    verifications = sum("still refused by the device" in v for v in run.attack_lines().values())
    blk = sum(BLK_VIOLATIONS.values()) + verifications
    assert run.total("block_disk0", "access_violations") == blk, run.metrics
    assert run.total("block", "access_violations") == blk
    assert run.total("vsock", "access_violations") == 1
    assert run.total("net_net0", "access_violations") == 1
    assert run.total("confidential_devices", "access_violations") == blk + 2
    assert "data buffers refused by guest memory" in run.r["err"]
    io = io_run(runs, platform)
    # io: the rings refused twice (CC-5), and on pef/s390-pv the request in flight at the
    # transition; the io itself never touched private memory.
    expected = 2 + (0 if platform == "sev" else 1)
    assert io.total("confidential_devices", "access_violations") == expected, io.metrics
    assert io.total("net", "access_violations") == 0
    assert io.total("vsock", "access_violations") == 0


def host_outputs(run):
    """Everything the host saw of a run: (what, bytes)."""
    yield "disk image", run.disk.read_bytes()
    yield "vmm stdout", run.r["out"].encode()
    yield "vmm stderr", run.r["err"].encode()
    yield "metrics", run.r["metrics"].encode()
    for f in run.r["frames"]:
        yield "tap frame", bytes.fromhex(f)
    for b in run.r["vsock_rx"]:
        yield "vsock stream", bytes.fromhex(b)
    for a in run.r["api"]:
        yield f"{a['method']} {a['path']}", a["body"].encode()
        if a["path"].startswith("/vm/memory/") and a["status"] == 200:
            yield f"{a['path']} data", bytes.fromhex(json.loads(a["body"])["data"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc8_the_secret_never_reaches_the_host(runs, platform):
    """CC-8: the secret planted in private memory appears in nothing the host saw: the disk
    image, the TAP's frames, the vsock streams, the VMM's output and logs, the metrics, every
    API response (the secret's page itself, the whole shared pool, the configuration), and
    the refused memory dump wrote no file. The attack run pointed devices at the secret's
    page on purpose."""
    for scenario in ("io", "attack"):
        run = io_run(runs, platform) if scenario == "io" else attack_run(runs, platform)
        for what, data in host_outputs(run):
            assert run.secret not in data, f"{scenario}: the secret in the {what}"
            assert run.secret.hex().encode() not in data, f"{scenario}: hex secret in {what}"
    run = io_run(runs, platform)
    assert run.r["dump_exists"] is False
    api = {(a["method"], a["path"]): a for a in run.r["api"]}
    dump = api[("PUT", "/vm/memory-dump")]
    assert dump["status"] == 400 and "(CC-13)" in dump["body"], dump
    page = [a for a in run.r["api"] if a["path"] == f"/vm/memory/{run.r['secret_at']:#x}"]
    assert len(page) == 2 and all(a["status"] == 200 for a in page), page
    seen = bytes.fromhex(json.loads(page[0]["body"])["data"])
    assert seen == bytes.fromhex(json.loads(page[1]["body"])["data"])  # a stable stand-in
    plain = (run.secret * (4096 // len(run.secret) + 1))[:4096]
    assert sum(a == b for a, b in zip(seen, plain)) < 4096 // 16  # not the plaintext
    pool = [a for a in run.r["api"] if a["path"].startswith("/vm/memory/") and a not in page]
    assert len(pool) == run.r["pool"][1] // 4096 and all(a["status"] == 200 for a in pool)
    cfg = json.loads(api[("GET", "/vm/config")]["body"])
    assert cfg["confidential"] == {"platform": platform}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc8_secret_intact_for_the_guest_after_the_hosts_read(runs, platform):
    """CC-8: the host's read gave it ciphertext; the guest still reads its plaintext (pef
    and s390-pv: the page was paged out / exported and came back in on the guest's touch)."""
    run = io_run(runs, platform)
    i = run.lines.index(f"probe: cc waiting for the host (secret at {run.r['secret_at']:#x})")
    assert run.lines[i + 1] == "probe: cc secret intact", run
    assert run.total("confidential", "host_private_reads") >= 2
    if platform == "sev":
        assert run.total("confidential", "page_outs") == 0
    else:
        assert run.total("confidential", "page_outs") >= 1, run.metrics
        assert run.total("confidential", "page_ins") >= 1, run.metrics


@pytest.mark.parametrize("platform", ["pef", "s390-pv"])
def test_cc9_guest_originated_devices_offer_access_platform_from_boot(runs, platform):
    """CC-9: pef and s390-pv devices offer ACCESS_PLATFORM before the transition and work from
    ordinary memory; at the guest's transition ownership starts being enforced, and the
    request in flight across it obeys CC-3/CC-4 (not served, the ring is private)."""
    run = io_run(runs, platform)
    i = run.lines.index("probe: cc before the transition: blk0 offers ACCESS_PLATFORM, read "
                        "sector 0 from ordinary memory ok")
    assert run.lines[i + 2] == ("probe: cc after the transition: the request in flight was not "
                                "served, blk0 needs reset (its rings are private now)"), run
    assert run.total("confidential", "secure_transitions") == 1
    # The request across the transition read nothing from the disk.
    assert run.total("block_disk0", "access_violations") >= 1


def test_cc9_platform_originated_access_platform_on_an_ordinary_vm(kvm, tmp_path):
    """CC-9: access-platform=required on a VM without a platform: the devices offer and
    require ACCESS_PLATFORM (the probe's driver accepts it as Linux does) and no ownership
    map restricts them: the ordinary blk scenario works from ordinary memory."""
    disk = tmp_path / "disk.img"
    disk_image(disk)
    run = run_probe("elf", "blk", "--drive", f"path={disk},id=disk0,access-platform=required",
                    cmdline_extra="probe.blk_id=disk0", timeout=30)
    lines = run.lines()
    assert lines[-1] == "probe: ok blk", run
    assert "probe: blk0 read back sectors 8-9 ok" in lines, run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc12_malformed_platform_calls_change_nothing(runs, platform):
    """CC-12: every malformed call gets the platform's error code and changes no ownership
    (the target page is still refused by the device; a refused transition leaves an ordinary
    VM); the platform counted each as a failed call."""
    run = attack_run(runs, platform)
    calls = calls_expected(platform, attack_target(run))
    cases = run.attack_lines()
    for name, want in calls.items():
        assert cases[name] == want, (name, run)
    assert run.total("confidential", "failed_platform_calls") == len(calls), run.metrics
    assert run.total("confidential", "secure_transitions") == 1

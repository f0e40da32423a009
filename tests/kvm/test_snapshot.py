"""Snapshots and restore end to end, with the probe's `snapshot` scenario (tests/guest/README.md):
a guest that keeps a counter, a block write stream, a vsock stream and entropy reads going is
paused, snapshotted, killed, restored in a new process, resumed, and checks its memory, its
devices and further I/O; the same after a Diff snapshot merged over a Full one. Then the
refusals: truncated, corrupted, unknown-version and other-machine state files (the process
stays usable and loads a good one next), the phase rules, a protected VM (CC-13), and
`vmm --describe-snapshot`.

The vsock host peer answers "tick N" lines with "tock N" on `<uds>_5678` (the guest connects
there, and again after a restore: its connection is reset with TRANSPORT_RESET).
"""
import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import VMM
from test_api import AFTER, BEFORE, boot_source, start
from vmm_api import VmmProcess, check, netns_available, probe_kernel

pytestmark = pytest.mark.usefixtures("kvm")

SECTORS = 64
MAGIC = b"VMMSNAP\0"
TRAILER = 4096  # the memory file's identity after the RAM (vmm/snapshot.h)


class TockPeer:
    """Listens on every path; answers each "tick N" line with "tock N"."""

    def __init__(self, paths):
        self.listeners = []
        self.connections = 0
        self.ticks = 0
        self.stop = threading.Event()
        self.threads = []
        for p in paths:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(p)
            s.listen(4)
            s.settimeout(0.1)
            self.listeners.append(s)
            t = threading.Thread(target=self.serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, listener):
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn):
        conn.settimeout(0.2)
        data = b""
        while not self.stop.is_set():
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            while b"\n" in data:
                line, data = data.split(b"\n", 1)
                m = re.fullmatch(rb"tick (\d+)", line)
                assert m, line
                self.ticks += 1
                try:
                    conn.sendall(b"tock " + m.group(1) + b"\n")
                except OSError:
                    break
        conn.close()

    def close(self):
        self.stop.set()
        for s in self.listeners:
            s.close()
        for t in self.threads:
            t.join(2)


def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(SECTORS * 512))
    return path


def guest(v, tmp_path, uds, track=False, vcpus=2, mem=128, engine="Sync"):
    """Configures and starts the snapshot scenario; returns the counter's guest address."""
    check(v.put("/boot-source", boot_source("snapshot")), 204)
    check(v.put("/machine-config", {"vcpu_count": vcpus, "mem_size_mib": mem,
                                    "track_dirty_pages": track}), 204)
    check(v.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk(tmp_path)),
                                 "is_root_device": False, "is_read_only": False,
                                 "io_engine": engine}), 204)
    check(v.put("/vsock", {"guest_cid": 3, "uds_path": uds}), 204)
    check(v.put("/entropy", {}), 204)
    check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
    v.wait_output("probe: snapshot ready")
    v.wait_output("\n", timeout=10)
    deadline = time.monotonic() + 10
    while not (m := re.search(r"probe: snapshot ready cid 3 counter (0x[0-9a-f]+)\n", v.out())):
        assert time.monotonic() < deadline, v.out()
        time.sleep(0.01)
    return int(m.group(1), 16)


def console(v, line):
    v.proc.stdin.write(line.encode() + b"\n")
    v.proc.stdin.flush()


def status(v, what="status", timeout=60):
    """Sends a command and returns the numbers of the answer line it causes."""
    before = v.out().count(f"probe: snapshot {what} ")  # complete or not, it is an older one
    console(v, what)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = v.out()
        out = out[:out.rfind("\n") + 1]  # whole lines only
        lines = [l for l in out.splitlines() if l.startswith(f"probe: snapshot {what} ")]
        if len(lines) > before:
            nums = re.findall(r"(\w+) (\d+)", lines[before])
            return {k: int(n) for k, n in nums}
        if v.proc.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"no answer to {what!r}:\n{v.out()}\n--- stderr\n{v.err()}")


def counter(v, addr):
    """The guest's counter, read from guest memory through the API."""
    page = addr & ~0xfff
    body = check(v.get(f"/vm/memory/0x{page:x}"), 200)
    data = bytes.fromhex(body["data"])
    return struct.unpack_from("<Q", data, addr - page)[0]


def new_vmm(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    return VmmProcess(d, instance_id=name, stdin=subprocess.PIPE)


def load(v, state, mem, **extra):
    return v.put("/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                    **extra})


def finish(v):
    """`check`, then the guest ends the VM: returns the check line's numbers."""
    numbers = status(v, "check")
    assert v.wait_exit(timeout=60) == 0, v.err()
    lines = v.probe_lines()
    assert "probe: ok snapshot" in lines, v.out()
    assert not [l for l in lines if l.startswith("probe: fail")], v.out()
    assert "Sanitizer" not in v.err(), v.err()
    return numbers


def ctrl_alt_del_ends_idle(v):
    """The running idle probe ends its VM on Ctrl+Alt+Del."""
    check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
    assert v.wait_exit(30) == 0 and "probe: ok idle" in v.out(), v.out()


def snapshot(v, state, mem, kind="Full"):
    check(v.put("/snapshot/create", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                     "snapshot_type": kind}), 204)


# Async: the io_uring engine, whose requests in flight complete before the state is saved.
@pytest.mark.parametrize("engine", ["Sync", "Async"])
def test_full_snapshot_restore_in_a_new_process(tmp_path, engine):
    uds_a, uds_b = str(tmp_path / "a.vsock"), str(tmp_path / "b.vsock")
    peer = TockPeer([uds_a + "_5678", uds_b + "_5678"])
    a = new_vmm(tmp_path, "a")
    b = None
    try:
        addr = guest(a, tmp_path, uds_a, engine=engine)
        first = status(a)
        assert first["writes"] > 0 and first["ticks"] >= 0
        time.sleep(0.3)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        at_pause = counter(a, addr)
        assert at_pause >= first["counter"]
        snapshot(a, tmp_path / "state", tmp_path / "mem")
        a.proc.kill()  # SIGKILL: nothing of the first process survives but the files
        a.wait_exit()
        mem = tmp_path / "mem"
        assert mem.stat().st_size == (128 << 20) + TRAILER
        assert mem.stat().st_blocks * 512 < 32 << 20, "the memory file is not sparse"

        b = new_vmm(tmp_path, "b")
        check(load(b, tmp_path / "state", mem, vsock_override={"uds_path": uds_b}), 204)
        info = check(b.get("/"), 200)
        assert info["state"] == "Paused"
        assert counter(b, addr) == at_pause  # the memory is the snapshot's, exactly
        cfg = check(b.get("/vm/config"), 200)
        assert cfg["vsock"]["uds_path"] == uds_b
        assert cfg["machine-config"]["vcpu_count"] == 2
        assert cfg["drives"][0]["drive_id"] == "data"
        # Firecracker keeps the saved boot source after a restore.
        assert cfg["boot-source"] == {"kernel_image_path": str(probe_kernel()),
                                      "initrd_path": None,
                                      "boot_args": "console=ttyS0 probe=snapshot"}
        check(b.put("/actions", {"action_type": "InstanceStart"}), 400, AFTER)
        check(b.patch("/vm", {"state": "Resumed"}), 204)
        after = status(b)
        assert after["counter"] >= at_pause and after["writes"] >= first["writes"]
        done = finish(b)
        # TRANSPORT_RESET reached the guest, it reconnected and its stream went on.
        assert done["resets"] >= 1, done
        assert done["ticks"] > first["ticks"], done
        assert peer.connections >= 2
        assert "told the guest its connections were reset" in b.err()
        assert re.search(r"snapshot .* loaded in \d+ us", b.err())
    finally:
        peer.close()
        a.kill()
        if b:
            b.kill()


def test_diff_snapshot_merged_over_full(tmp_path):
    uds_a, uds_b = str(tmp_path / "a.vsock"), str(tmp_path / "b.vsock")
    peer = TockPeer([uds_a + "_5678", uds_b + "_5678"])
    a = new_vmm(tmp_path, "a")
    b = None
    try:
        addr = guest(a, tmp_path, uds_a, track=True)
        status(a)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        at_full = counter(a, addr)
        snapshot(a, tmp_path / "full.state", tmp_path / "full.mem")
        check(a.patch("/vm", {"state": "Resumed"}), 204)
        # Enough rounds that devices rewrote every buffer of theirs since the Full one.
        second = status(a)
        while second["counter"] < at_full + 20:
            second = status(a)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        at_diff = counter(a, addr)
        # Every device-written buffer of the guest was rewritten since the Full snapshot.
        assert at_diff > at_full + 16
        snapshot(a, tmp_path / "diff.state", tmp_path / "diff.mem", "Diff")
        a.proc.kill()
        a.wait_exit()
        full, diff = tmp_path / "full.mem", tmp_path / "diff.mem"
        assert diff.stat().st_size == full.stat().st_size
        assert diff.stat().st_blocks < full.stat().st_blocks, "the diff holds more than the full"
        desc = subprocess.run([str(VMM), "--describe-snapshot", str(tmp_path / "diff.state")],
                              capture_output=True, text=True)
        assert desc.returncode == 0 and "snapshot type: Diff" in desc.stdout, desc
        merge = subprocess.run([str(VMM), "--base-file", str(full), "--diff-file", str(diff)],
                               capture_output=True, text=True)
        assert merge.returncode == 0, merge

        b = new_vmm(tmp_path, "b")
        check(load(b, tmp_path / "diff.state", full,
                   vsock_override={"uds_path": uds_b}, resume_vm=False), 204)
        assert counter(b, addr) == at_diff  # the Diff's pages are there, not the Full's
        check(b.patch("/vm", {"state": "Resumed"}), 204)
        after = status(b)
        assert after["counter"] >= at_diff and after["writes"] >= second["writes"]
        done = finish(b)
        assert done["resets"] >= 1
    finally:
        peer.close()
        a.kill()
        if b:
            b.kill()


def test_diff_without_dirty_tracking_and_phase_rules(tmp_path):
    v = VmmProcess(tmp_path)
    try:
        body = {"snapshot_path": str(tmp_path / "s"), "mem_file_path": str(tmp_path / "m")}
        check(v.put("/snapshot/create", body), 400, BEFORE)
        start(v)
        check(v.put("/snapshot/create", body), 400, "the microVM is not paused")
        check(v.put("/snapshot/load", body), 400, AFTER)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {**body, "snapshot_type": "Diff"}), 400,
              "Diff snapshots need dirty page tracking")
        assert not os.path.exists(body["snapshot_path"])
        check(v.put("/snapshot/create", {**body, "mem_file_path": "/nonexistent/dir/m"}), 400,
              "/nonexistent/dir/m")
        check(v.put("/snapshot/create", body), 204)  # the failures changed nothing
        check(v.patch("/vm", {"state": "Resumed"}), 204)
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0
    finally:
        v.kill()


def failed_load_ends_the_process(v, body, fault):
    """Firecracker's documented behaviour: a load that fails is answered, then the process
    ends with its generic error (exit code 1); the socket goes with it."""
    check(v.put("/snapshot/load", body), 400, fault)
    assert v.wait_exit(30) == 1, v.err()
    assert "a failed snapshot load leaves it unusable" in v.err(), v.err()
    assert not os.path.exists(v.sock)


def test_load_refused_after_configuring(tmp_path):
    body = {"snapshot_path": str(tmp_path / "s"), "mem_file_path": str(tmp_path / "m")}
    v = new_vmm(tmp_path, "outputs")
    try:
        check(v.put("/logger", {"level": "Info"}), 204)
        check(v.put("/metrics", {"metrics_path": str(tmp_path / "metrics")}), 204)
        # Logger and metrics are allowed: this load fails only because the file is missing.
        failed_load_ends_the_process(v, body, "No such file")
    finally:
        v.kill()
    v = new_vmm(tmp_path, "configured")
    try:
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        # Refused before it began: the process stays.
        check(v.put("/snapshot/load", body), 400,
              "Load snapshot error: Loading a microVM snapshot not allowed after configuring "
              "boot-specific resources.")
        assert check(v.get("/"), 200)["state"] == "Not started"
        v.stop()
    finally:
        v.kill()


def crc64(data):
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


@pytest.fixture(scope="module")
def idle_snapshot(tmp_path_factory):
    """A Full snapshot of the idle probe (64 MiB), made once for the refusal tests."""
    d = tmp_path_factory.mktemp("idle")
    v = VmmProcess(d)
    try:
        start(v)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, d / "state", d / "mem")
    finally:
        v.kill()
    return d / "state", d / "mem"


def test_describe_snapshot(idle_snapshot):
    state, _ = idle_snapshot
    r = subprocess.run([str(VMM), "--describe-snapshot", str(state)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r
    out = r.stdout
    assert "format version: 3" in out and "snapshot type: Full" in out, out
    assert "memory: 67108864 bytes in 1 region(s): 0x0+0x4000000" in out, out
    assert "machine: 1 vCPU(s), 64 MiB" in out and "vcpu0: rip 0x" in out, out
    r = subprocess.run([str(VMM), "--describe-snapshot", "/nonexistent"], capture_output=True,
                       text=True)
    assert r.returncode == 152 and "No such file" in r.stderr, r


def bad_copies(tmp_path, state):
    """(name, path, fault) for every way the state file can be wrong."""
    data = state.read_bytes()
    cases = []

    def add(name, content, fault):
        p = tmp_path / name
        p.write_bytes(content)
        cases.append((name, p, fault))

    add("truncated", data[:len(data) // 2], "is truncated")
    add("header-only", data[:20], "is truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    add("corrupted", bytes(flipped), "is corrupted (checksum mismatch)")
    add("version", data[:8] + struct.pack("<I", 99) + data[12:],
        "has format version 99; this VMM reads version 3")
    add("magic", b"NOTASNAP" + data[8:], "is not a snapshot state file")
    add("empty", b"", "is truncated")
    add("longer", data + b"\0", "is corrupted")
    # Another vendor's host, with a valid checksum: a different machine.
    vendors = (b"AuthenticAMD", b"GenuineIntel")
    mine = next(v for v in vendors if v in data)
    other = vendors[1 - vendors.index(mine)]
    payload = data[40:].replace(mine, other, 1)
    header = data[:24] + struct.pack("<Q", crc64(payload)) + data[32:40]
    add("vendor", header + payload, f"the snapshot was taken on a {other.decode()} host")
    # A payload whose checksum is right but whose sections are garbage.
    junk = b"INFO" + b"\0" * 4 + struct.pack("<Q", 1 << 40) + b"x" * 64
    add("junk", data[:16] + struct.pack("<QQ", len(junk), crc64(junk)) + data[32:40] + junk,
        "section longer than the file")
    return cases


def describe(state):
    r = subprocess.run([str(VMM), "--describe-snapshot", str(state)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r
    return r.stdout


def test_pit_survives_a_snapshot(tmp_path, idle_snapshot):
    """A VM has a PIT only with machine-config's pit (--pit); its state is saved, and a
    restore gives the VM one even though the saved configuration does not say so."""
    assert "irqchip and clock (no PIT)" in describe(idle_snapshot[0])
    v = new_vmm(tmp_path, "p")
    w = None
    try:
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "pit": True}), 204)
        assert check(v.get("/machine-config"), 200)["pit"] is True
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, tmp_path / "pit.state", tmp_path / "pit.mem")
        v.kill()
        assert "irqchip, PIT and clock" in describe(tmp_path / "pit.state")
        w = new_vmm(tmp_path, "w")
        check(load(w, tmp_path / "pit.state", tmp_path / "pit.mem"), 204)
        snapshot(w, tmp_path / "again.state", tmp_path / "again.mem")
        assert "irqchip, PIT and clock" in describe(tmp_path / "again.state")
        check(w.patch("/vm", {"state": "Resumed"}), 204)
        ctrl_alt_del_ends_idle(w)
    finally:
        v.kill()
        if w:
            w.kill()


def test_bad_state_files_refused_then_the_process_exits(tmp_path, idle_snapshot):
    state, mem = idle_snapshot
    small = tmp_path / "small.mem"
    small.write_bytes(bytes(4096))
    refusals = [(name, {"snapshot_path": str(path), "mem_file_path": str(mem)}, fault)
                for name, path, fault in bad_copies(tmp_path, state)]
    refusals += [
        # A file that is no memory file at all.
        ("small-mem", {"snapshot_path": str(state), "mem_file_path": str(small)},
         "is not a snapshot memory file"),
        ("missing-mem", {"snapshot_path": str(state), "mem_file_path": str(tmp_path / "no.mem")},
         "No such file"),
        ("net-override", {"snapshot_path": str(state), "mem_file_path": str(mem),
                          "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap0"}]},
         "the snapshot has no network interface 'eth0'"),
        ("vsock-override", {"snapshot_path": str(state), "mem_file_path": str(mem),
                            "vsock_override": {"uds_path": "/tmp/x"}},
         "the snapshot has no vsock device"),
    ]
    for name, body, fault in refusals:
        v = new_vmm(tmp_path, f"vmm-{name}")
        try:
            failed_load_ends_the_process(v, body, fault)
            assert "Cannot load the snapshot" in v.err(), (name, v.err())
        finally:
            v.kill()
    # The files were not touched: the good snapshot loads and runs in a new process.
    v = new_vmm(tmp_path, "good")
    try:
        check(load(v, state, mem, resume_vm=True), 204)
        assert check(v.get("/"), 200)["state"] == "Running"
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0
        assert "probe: ok idle" in v.out()
    finally:
        v.kill()


def test_restore_twice_from_one_snapshot(tmp_path, idle_snapshot):
    """Two processes restore the same files (the memory file is mapped privately)."""
    state, mem = idle_snapshot
    before = mem.read_bytes()
    vs = [new_vmm(tmp_path, f"r{i}") for i in range(2)]
    try:
        for v in vs:
            check(load(v, state, mem, resume_vm=True), 204)
        for v in vs:
            check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        for v in vs:
            assert v.wait_exit(30) == 0 and "probe: ok idle" in v.out(), v.out()
    finally:
        for v in vs:
            v.kill()
    assert mem.read_bytes() == before, "a restored guest wrote into the memory file"


def test_cc13_snapshot_of_a_protected_vm_refused(tmp_path):
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/confidential", {"platform": "sev"}), 204)
        start(v)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s"),
                                         "mem_file_path": str(tmp_path / "m")}), 400,
              "a snapshot of a protected (sev) VM is refused: the host may not read its private "
              "memory (CC-13)")
        assert not (tmp_path / "s").exists() and not (tmp_path / "m").exists()
    finally:
        v.kill()


def test_snapshot_metrics(tmp_path):
    metrics = tmp_path / "metrics.json"
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/metrics", {"metrics_path": str(metrics)}), 204)
        start(v)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, tmp_path / "s", tmp_path / "m")
        check(v.put("/actions", {"action_type": "FlushMetrics"}), 204)
    finally:
        v.kill()
    import json
    line = json.loads(metrics.read_text().splitlines()[-1])
    assert line["put_api_requests"]["snapshot_create_count"] == 1
    assert line["latencies_us"]["full_create_snapshot"] > 0


def net_wrap(*taps):
    """Runs the VMM in a private network namespace holding these TAPs."""
    setup = " && ".join(f"ip tuntap add dev {t} mode tap && ip link set {t} up" for t in taps)
    return ("unshare", "--net", "--", "sh", "-c", setup + ' && exec "$@"', "sh")


def test_network_overrides(tmp_path):
    """The snapshot's TAP is gone where it is restored: network_overrides names another."""
    if not netns_available():
        if os.environ.get("VMM_REQUIRE_KVM") == "1":
            pytest.fail("a network namespace with a TAP cannot be created here")
        pytest.skip("no network namespace with a TAP here")
    (tmp_path / "a").mkdir()
    a = VmmProcess(tmp_path / "a", wrap=net_wrap("vmtap0"))
    b = None
    try:
        check(a.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "vmtap0",
                                                 "guest_mac": "06:00:ac:10:00:02"}), 204)
        start(a)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        snapshot(a, tmp_path / "state", tmp_path / "mem")
        a.kill()
        (tmp_path / "b").mkdir()
        b = VmmProcess(tmp_path / "b", wrap=net_wrap("vmtap1"))
        # Without the override the TAP is missing: the load fails and the process ends.
        check(load(b, tmp_path / "state", tmp_path / "mem"), 400, "vmtap0")
        assert b.wait_exit(30) == 1
        b.kill()
        (tmp_path / "c").mkdir()
        b = VmmProcess(tmp_path / "c", wrap=net_wrap("vmtap1"))
        check(load(b, tmp_path / "state", tmp_path / "mem", resume_vm=True,
                   network_overrides=[{"iface_id": "eth0", "host_dev_name": "vmtap1"}]), 204)
        cfg = check(b.get("/vm/config"), 200)
        assert cfg["network-interfaces"][0]["host_dev_name"] == "vmtap1"
        assert cfg["network-interfaces"][0]["guest_mac"] == "06:00:ac:10:00:02"
        check(b.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert b.wait_exit(30) == 0 and "probe: ok idle" in b.out()
    finally:
        a.kill()
        if b:
            b.kill()


def test_snapshot_of_a_restored_vm(tmp_path, idle_snapshot):
    """A restored VM's memory is a private mapping of the memory file: its own snapshot still
    holds every page (those never touched since the restore come from the file)."""
    state, mem = idle_snapshot
    v = new_vmm(tmp_path, "r")
    w = None
    try:
        check(load(v, state, mem), 204)  # stays Paused: the guest changes nothing
        snapshot(v, tmp_path / "again.state", tmp_path / "again.mem")
        # The same memory; the trailer names another snapshot.
        assert (tmp_path / "again.mem").read_bytes()[:-TRAILER] == mem.read_bytes()[:-TRAILER]
        v.kill()
        w = new_vmm(tmp_path, "w")
        check(load(w, tmp_path / "again.state", tmp_path / "again.mem", resume_vm=True), 204)
        ctrl_alt_del_ends_idle(w)
    finally:
        v.kill()
        if w:
            w.kill()


def test_free_page_state_survives_a_snapshot(tmp_path):
    """The balloon's free page features and its hinting state (versioned device section)
    across a snapshot: after a completed hinting run (the probe's `freepage` scenario), the
    restored VM shows the same configuration and status, its next run takes the next id,
    and the guest carries on."""
    v = new_vmm(tmp_path, "a")
    w = None
    try:
        start(v, "freepage", balloon={"amount_mib": 0, "deflate_on_oom": False,
                                      "free_page_reporting": True, "free_page_hinting": True})
        v.wait_output("probe: freepage touched 1024 pages\n")
        console(v, "report")
        v.wait_output("probe: freepage reported")
        console(v, "touch")
        v.wait_output("probe: freepage touched 1024 pages again\n")
        check(v.patch("/balloon/hinting/start", {"acknowledge_on_stop": True}), 204)
        console(v, "hint")
        v.wait_output("host answered DONE")
        status = check(v.get("/balloon/hinting/status"), 200)
        assert status == {"host_cmd": 1, "guest_cmd": 0}, status
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, tmp_path / "state", tmp_path / "mem")
        v.kill()

        w = new_vmm(tmp_path, "b")
        check(load(w, tmp_path / "state", tmp_path / "mem", resume_vm=True), 204)
        balloon = check(w.get("/balloon"), 200)
        assert balloon["free_page_reporting"] and balloon["free_page_hinting"], balloon
        assert check(w.get("/balloon/hinting/status"), 200) == status
        check(w.patch("/balloon/hinting/start"), 204)
        assert check(w.get("/balloon/hinting/status"), 200) == {"host_cmd": 3, "guest_cmd": 0}
        console(w, "end")
        assert w.wait_exit(30) == 0, w.err()
        assert w.probe_lines()[-1] == "probe: ok freepage", w.out()
        assert "Sanitizer" not in w.err(), w.err()
    finally:
        v.kill()
        if w:
            w.kill()

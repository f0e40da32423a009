"""The Uffd memory backend of PUT /snapshot/load (issue 14 item 1): a page-fault handler
process fills the restored guest's memory through a userfaultfd, with Firecracker's
protocol.

- examples/uffd_handler (the project's handler) serves a restored guest that checks its
  memory, its block writes, entropy and a vsock stream; the memory file is untouched.
- A handler written like Firecracker's own (tests/kvm/fc_uffd_handler.py: its message
  buffer, its field names, its raw RAM image) serves ours unchanged; the message is
  Firecracker 1.17's, byte for byte in its shape.
- A handler that disappears never leaves anything hanging: the VMM reports it and ends with
  exit code 1, whether it was paused, waiting for a page, or in another PID namespace;
  a handler that only closes its connection and keeps serving is not gone.
- Balloon removals reach the handler (UFFD_EVENT_REMOVE): pages given back read zero.
- A snapshot of a Uffd-restored VM holds the pages the handler never had to serve.
- 2 MiB huge-page snapshots load with Uffd (the File backend refuses them).
- Refusals: no handler, a path too long (a failed load ends the process with 1, as a File
  load's does), huge_pages 2M with a memory file (refused with the body); the handler
  refuses memory files that are not the snapshot's (trailer, --snapshot-id, another size).
- The watcher thread's seccomp role ("uffd").
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import BUILD_DIR, SOURCE_DIR, VMM
from test_api import start
from test_snapshot import (TRAILER, TockPeer, counter, failed_load_ends_the_process, finish,
                           guest, new_vmm, snapshot, status)
from test_boot import hugepage_pool
from vmm_api import VmmProcess, check, probe_kernel

pytestmark = pytest.mark.usefixtures("kvm")

HANDLER = BUILD_DIR / "examples" / "uffd_handler"
FC_HANDLER = SOURCE_DIR / "tests" / "kvm" / "fc_uffd_handler.py"


def listening(path):
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                return True
    return False


class Handler:
    """A page-fault handler process listening on sock."""

    def __init__(self, sock, mem, *extra, fc_mode=None, record=None):
        self.sock = str(sock)
        self.log = open(str(sock) + ".log", "w+")
        if fc_mode:
            args = [sys.executable, FC_HANDLER, fc_mode, self.sock, mem] + (
                [record] if record else [])
        else:
            args = [HANDLER, *extra, self.sock, mem]
        self.proc = subprocess.Popen([str(a) for a in args], stderr=self.log)
        # The path appears at bind(), before listen(): wait for the listening socket
        # (__SO_ACCEPTCON in /proc/net/unix's flags), or a load in between is refused.
        deadline = time.monotonic() + 10
        while not listening(self.sock):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the handler never listened"
            time.sleep(0.01)

    def output(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def wait_output(self, needle, timeout=30):
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        return self.output()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def uffd(sock):
    return {"backend_type": "Uffd", "backend_path": str(sock)}


def load_uffd(v, state, sock, **extra):
    return v.put("/snapshot/load", {"snapshot_path": str(state), "mem_backend": uffd(sock),
                                    **extra})


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """A Full snapshot of the idle probe (64 MiB); its memory file and a raw copy of the RAM
    (what Firecracker's handlers take)."""
    d = tmp_path_factory.mktemp("idle")
    v = VmmProcess(d)
    try:
        start(v)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, d / "state", d / "mem")
    finally:
        v.kill()
    raw = d / "raw"
    with open(d / "mem", "rb") as src, open(raw, "wb") as dst:
        dst.write(src.read()[:-TRAILER])
    return d / "state", d / "mem", raw


def run_idle(v):
    """The restored idle probe ends the VM on Ctrl-Alt-Del."""
    check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
    assert v.wait_exit(60) == 0, v.err()
    assert "probe: ok idle" in v.out(), v.out()


def test_restore_served_by_the_example_handler(tmp_path):
    """The snapshot scenario (memory pattern, device-written buffers, block writes, vsock,
    entropy, two vCPUs) restored through the handler checks everything it did before."""
    uds_a, uds_b = str(tmp_path / "a.vsock"), str(tmp_path / "b.vsock")
    peer = TockPeer([uds_a + "_5678", uds_b + "_5678"])
    a = new_vmm(tmp_path, "a")
    b = h = None
    try:
        guest(a, tmp_path, uds_a)
        status(a)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        snapshot(a, tmp_path / "state", tmp_path / "mem")
        a.kill()
        before = (tmp_path / "mem").read_bytes()
        h = Handler(tmp_path / "uffd.sock", tmp_path / "mem")
        b = new_vmm(tmp_path, "b")
        check(load_uffd(b, tmp_path / "state", h.sock, resume_vm=True,
                        vsock_override={"uds_path": uds_b}), 204)
        status(b)
        # The reset event reaches the guest when the device thread first runs after the
        # resume, which may be after the first status line (its pages come from the handler).
        done = finish(b)
        assert done["resets"] == 1, done
        log = h.stop()
        m = re.search(r"gone: (\d+) pages copied, (\d+) zero pages, 0 removes", log)
        assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, log
        assert "serving VMM pid" in log, log
        assert (tmp_path / "mem").read_bytes() == before, "the memory file changed"
    finally:
        peer.close()
        for p in (a, b):
            if p:
                p.kill()
        if h:
            h.kill()


@pytest.mark.parametrize("mode", ["on_demand", "fault_all"])
def test_firecracker_handler_protocol(tmp_path, idle, mode):
    state, _, raw = idle
    record = tmp_path / "message"
    h = Handler(tmp_path / "fc.sock", raw, fc_mode=mode, record=record)
    v = VmmProcess(tmp_path)
    try:
        check(load_uffd(v, state, h.sock, resume_vm=True), 204)
        run_idle(v)
        h.proc.wait(10)
        assert "the VMM is gone" in h.output(), h.output()
    finally:
        v.kill()
        h.kill()
    # Firecracker 1.17's message: serde_json's compact list of GuestRegionUffdMapping.
    msg = record.read_bytes()
    regions = json.loads(msg)
    assert msg == json.dumps(regions, separators=(",", ":")).encode(), msg
    assert [list(r) for r in regions] == [["base_host_virt_addr", "size", "offset", "page_size",
                                          "page_size_kib"]], msg
    assert regions[0]["size"] == 64 << 20 and regions[0]["offset"] == 0, msg
    assert regions[0]["page_size"] == regions[0]["page_size_kib"] == 4096, msg
    assert regions[0]["base_host_virt_addr"] % 4096 == 0, msg


def wait_gone(v, how, timeout=30):
    assert v.wait_exit(timeout) == 1, v.err()
    line = [l for l in v.err().splitlines() if "page-fault handler of the Uffd" in l]
    assert line and how in line[0] and "guest memory can no longer be served" in line[0], \
        v.err()
    return line[0]


def test_handler_gone_while_paused_ends_the_vmm(tmp_path, idle):
    state, mem, _ = idle
    h = Handler(tmp_path / "uffd.sock", mem)
    v = VmmProcess(tmp_path)
    try:
        check(load_uffd(v, state, h.sock), 204)
        assert check(v.get("/"), 200)["state"] == "Paused"
        pid = h.proc.pid
        h.kill()
        line = wait_gone(v, "exited")
        assert f"'{h.sock}' (pid {pid}) exited" in line, line
    finally:
        v.kill()
        h.kill()


def test_handler_gone_while_a_page_waits_ends_the_vmm(tmp_path, idle):
    """A handler that never answers: the vCPU waits for its first page; the handler dies;
    nothing stays hanging."""
    state, _, raw = idle
    h = Handler(tmp_path / "fc.sock", raw, fc_mode="silent")
    v = VmmProcess(tmp_path)
    try:
        check(load_uffd(v, state, h.sock, resume_vm=True), 204)
        h.wait_output("region(s)")
        time.sleep(0.5)  # the vCPU is waiting for a page now
        assert v.proc.poll() is None
        h.kill()
        wait_gone(v, "exited")
    finally:
        v.kill()
        h.kill()


def test_handler_in_another_pid_namespace(tmp_path, idle):
    """A VMM in its own PID namespace (the jailer's) cannot see the handler's pid: the end of
    its connection tells."""
    state, mem, _ = idle
    h = Handler(tmp_path / "uffd.sock", mem)
    v = VmmProcess(tmp_path, wrap=("unshare", "--pid", "--fork", "--kill-child"))
    try:
        check(load_uffd(v, state, h.sock), 204)
        h.kill()
        wait_gone(v, "closed its connection")
    finally:
        v.kill()
        h.kill()


def test_handler_closing_its_connection_is_not_gone(tmp_path, idle):
    state, _, raw = idle
    h = Handler(tmp_path / "fc.sock", raw, fc_mode="close_early")
    v = VmmProcess(tmp_path)
    try:
        check(load_uffd(v, state, h.sock, resume_vm=True), 204)
        run_idle(v)
        assert "closed its connection; its process still serves" in v.err(), v.err()
    finally:
        v.kill()
        h.kill()


def test_balloon_removals_reach_the_handler(tmp_path):
    """Pages the balloon gave back read zero after a Uffd restore (the handler serves zero
    pages there, not the snapshot's bytes)."""
    a = new_vmm(tmp_path, "a")
    b = h = None
    try:
        check(a.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                     "boot_args": "console=ttyS0 probe=balloon"}), 204)
        check(a.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(a.put("/balloon", {"amount_mib": 4, "deflate_on_oom": False}), 204)
        check(a.put("/actions", {"action_type": "InstanceStart"}), 204)
        a.wait_output("probe: balloon touched 1024 pages")
        check(a.patch("/vm", {"state": "Paused"}), 204)
        snapshot(a, tmp_path / "state", tmp_path / "mem")
        a.kill()
        h = Handler(tmp_path / "uffd.sock", tmp_path / "mem")
        b = new_vmm(tmp_path, "b")
        check(load_uffd(b, tmp_path / "state", h.sock, resume_vm=True), 204)
        b.proc.stdin.write(b"go\n")
        b.proc.stdin.flush()
        b.wait_output("probe: balloon inflated 1024 pages")
        b.proc.stdin.write(b"go\n")
        b.proc.stdin.flush()
        assert b.wait_exit(60) == 0, b.err()
        assert "probe: balloon 1024 pages read back zero" in b.out(), b.out()
        assert "probe: ok balloon" in b.out(), b.out()
        log = h.stop()
        m = re.search(r"gone: \d+ pages copied, \d+ zero pages, (\d+) removes", log)
        assert m and int(m.group(1)) > 0, log
    finally:
        for p in (a, b):
            if p:
                p.kill()
        if h:
            h.kill()


def test_snapshot_of_a_uffd_restored_vm(tmp_path, idle):
    """Pages the handler never had to fill are still the guest's: a new snapshot holds them
    (they are not present in the VMM, but not zero)."""
    state, mem, _ = idle
    h = Handler(tmp_path / "uffd.sock", mem)
    v = new_vmm(tmp_path, "r")
    w = None
    try:
        check(load_uffd(v, state, h.sock), 204)  # Paused: the guest changes nothing
        snapshot(v, tmp_path / "again.state", tmp_path / "again.mem")
        assert (tmp_path / "again.mem").read_bytes()[:-TRAILER] == mem.read_bytes()[:-TRAILER]
        v.kill()
        w = new_vmm(tmp_path, "w")
        check(w.put("/snapshot/load", {"snapshot_path": str(tmp_path / "again.state"),
                                       "mem_file_path": str(tmp_path / "again.mem"),
                                       "resume_vm": True}), 204)
        run_idle(w)
    finally:
        v.kill()
        if w:
            w.kill()
        h.kill()


def test_huge_page_snapshot_loads_with_uffd(tmp_path):
    old = hugepage_pool(80)
    if old is None:
        pytest.skip("needs root to reserve 2 MiB huge pages")
    a = new_vmm(tmp_path, "a")
    b = c = h = None
    try:
        check(a.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                     "boot_args": "console=ttyS0 probe=idle"}), 204)
        check(a.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                        "huge_pages": "2M"}), 204)
        check(a.put("/actions", {"action_type": "InstanceStart"}), 204)
        a.wait_output("probe: idle ready")
        check(a.patch("/vm", {"state": "Paused"}), 204)
        snapshot(a, tmp_path / "state", tmp_path / "mem")
        a.kill()
        c = new_vmm(tmp_path, "c")
        failed_load_ends_the_process(
            c, {"snapshot_path": str(tmp_path / "state"), "mem_file_path": str(tmp_path / "mem")},
            "which a memory file cannot back: load it with huge_pages None, or with the Uffd "
            "memory backend")
        b = new_vmm(tmp_path, "b")
        h = Handler(tmp_path / "uffd.sock", tmp_path / "mem")
        check(load_uffd(b, tmp_path / "state", h.sock, resume_vm=True), 204)
        assert check(b.get("/vm/config"), 200)["machine-config"]["huge_pages"] == "2M"
        run_idle(b)
        assert "2048 KiB pages" in h.stop()
    finally:
        for p in (a, b, c):
            if p:
                p.kill()
        if h:
            h.kill()
        hugepage_pool(old)


def test_refusals(tmp_path, idle):
    """A Uffd load that fails ends the process with 1, as a File load does (Firecracker's
    rule); a body refused when it is read leaves the process usable."""
    state, mem, _ = idle
    for i, (path, fault) in enumerate([
            (tmp_path / "nobody.sock",
             f"cannot connect to the page-fault handler's socket '{tmp_path}/nobody.sock': "
             "No such file or directory"),
            (tmp_path / ("x" * 120), "is too long"),
            (mem, "Connection refused")]):  # a regular file
        v = new_vmm(tmp_path, f"failed{i}")
        try:
            failed_load_ends_the_process(
                v, {"snapshot_path": str(state), "mem_backend": uffd(path)}, fault)
        finally:
            v.kill()
    v = new_vmm(tmp_path, "usable")
    try:
        check(v.put("/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                       "huge_pages": "2M"}), 400,
              "`2M` is not supported on a snapshot load from a memory file")
        check(load_uffd(v, state, mem, huge_pages="Transparent"), 400,
              "`Transparent` is not supported on a snapshot load")
        assert check(v.get("/"), 200)["state"] == "Not started"
        h = Handler(tmp_path / "uffd.sock", mem)
        try:
            check(load_uffd(v, state, h.sock, resume_vm=True), 204)
            run_idle(v)
        finally:
            h.kill()
    finally:
        v.kill()


def handler_refuses(tmp_path, mem, *extra):
    r = subprocess.run([str(HANDLER), *extra, str(tmp_path / "h.sock"), str(mem)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and not (tmp_path / "h.sock").exists(), r
    return r.stderr


def test_handler_checks_the_memory_file(tmp_path, idle):
    state, mem, raw = idle
    assert "is not a snapshot memory file" in handler_refuses(tmp_path, raw)
    desc = subprocess.run([str(VMM), "--describe-snapshot", str(state)], capture_output=True,
                          text=True).stdout
    mem_id = re.search(r"memory file: ([0-9a-f]{16})", desc).group(1)
    assert "belongs to another snapshot" in handler_refuses(tmp_path, mem, "--snapshot-id",
                                                            "0" * 16)
    diff = tmp_path / "diff.mem"
    data = bytearray(mem.read_bytes())
    data[-TRAILER + 12] = 1  # kind Diff
    diff.write_bytes(bytes(data))
    assert "a Diff snapshot's memory file that was not merged" in handler_refuses(tmp_path, diff)
    # A version 2 trailer (memsnap15) with virtio-mem blocks after RAM: not served (the
    # file is made as the VMM writes one: the blocks between RAM and the trailer).
    hotplug = tmp_path / "hotplug.mem"
    block = 2 << 20
    data = bytearray(mem.read_bytes())
    ram, trailer = data[:-TRAILER], bytearray(data[-TRAILER:])
    assert int.from_bytes(trailer[8:12], "little") == 2
    trailer[40:48] = block.to_bytes(8, "little")
    hotplug.write_bytes(bytes(ram) + bytes(block) + bytes(trailer))
    assert "holds a virtio-mem region after its RAM" in handler_refuses(tmp_path, hotplug)
    # The right id serves.
    h = Handler(tmp_path / "uffd.sock", mem, "--snapshot-id", mem_id)
    v = VmmProcess(tmp_path)
    try:
        check(load_uffd(v, state, h.sock, resume_vm=True), 204)
        run_idle(v)
    finally:
        v.kill()
        h.kill()


def test_handler_kills_a_vmm_of_another_size(tmp_path, idle):
    """A 64 MiB snapshot's state file with a handler serving 128 MiB of memory: the handler
    cannot serve that VMM, says why and ends it (it would wait for its first page forever)."""
    state, _, _ = idle
    big = tmp_path / "big.mem"
    with open(big, "wb") as f:
        f.truncate(128 << 20)
    h = Handler(tmp_path / "uffd.sock", big, "--raw")
    v = VmmProcess(tmp_path)
    try:
        try:  # killed at once: maybe before the load answers
            load_uffd(v, state, h.sock, resume_vm=True)
        except requests.exceptions.ConnectionError:
            pass
        assert v.wait_exit(30) == -signal.SIGKILL
        assert "guest memory of another size than the memory file's RAM; killing it" in \
            h.output(), h.output()
    finally:
        v.kill()
        h.kill()


def test_watcher_seccomp_role(tmp_path, idle):
    state, mem, _ = idle
    h = Handler(tmp_path / "uffd.sock", mem)
    v = VmmProcess(tmp_path, "--seccomp-test-violation", "uffd")
    try:
        try:  # the watcher starts during the load: the process may end before it answers
            load_uffd(v, state, h.sock)
        except requests.exceptions.ConnectionError:
            pass
        assert v.wait_exit(30) == 148, v.err()
        assert 'seccomp: thread role "uffd" made forbidden syscall' in v.err(), v.err()
    finally:
        v.kill()
        h.kill()


def test_jailed_vmm_uses_dev_userfaultfd(tmp_path, idle):
    """A jailed VMM (an unprivileged uid, vm.unprivileged_userfaultfd 0) may not call
    userfaultfd(2) for guest memory KVM touches: it takes /dev/userfaultfd, which the jailer
    creates; the handler's socket and nothing else is in the jail."""
    from test_jailer import GID, UID, jails as _jails, require_root, start as jail_start  # noqa
    require_root()
    if not os.path.exists("/dev/userfaultfd"):
        pytest.skip("the host has no /dev/userfaultfd")
    state, mem, _ = idle
    base = tmp_path / "jails"
    base.mkdir()
    started = []
    h = None
    try:
        j = jail_start(started, base, "uffd-1")
        inside = j.root / "state"
        inside.write_bytes(state.read_bytes())
        os.chown(inside, UID, GID)
        h = Handler(j.root / "uffd.sock", mem)
        os.chown(h.sock, UID, GID)
        check(j.request("PUT", "/snapshot/load", {"snapshot_path": "/state",
                                                  "mem_backend": uffd("/uffd.sock"),
                                                  "resume_vm": True}), 204)
        check(j.request("PUT", "/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert j.wait_exit() == 0, j.err()
        assert "probe: ok idle" in j.out(), j.out()
        assert "serving VMM pid" in h.stop()
    finally:
        for j in started:
            j.kill()
        if h:
            h.kill()

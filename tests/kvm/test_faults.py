"""Fault injection end to end: the host side fails underneath a running guest, and the VMM
must turn each failure into what the guest and the operator are owed -- an error status for
the guest, a counted loss for the operator -- and keep running.

  ENOSPC      a drive on a tmpfs smaller than the disk: writes past the space fail; the
              guest sees VIRTIO_BLK_S_IOERR, the VMM keeps serving (both engines)
  EIO         a drive on a loop device over a file on a tiny tmpfs: the writes land in the
              page cache, the flush fails with EIO from the block layer; the guest sees
              IOERR on FLUSH, never "flushed"
  SIGTERM     during continuous writes + flushes: a clean exit (0), and every round the guest
              was told was flushed is on the disk, intact
  TAP gone    the interface is deleted while the guest transmits: the device reports the link
              down, the guest's chains still complete, the VMM keeps running
  vsock peer  the host peer closes (and resets) its socket mid-stream: the guest gets RST or
              SHUTDOWN, then connects again through the same device
  API client  clients vanish mid-request (half a header, half a body, a reset after a full
              request, a malformed request right before the VMM stops); the VMM answers the
              others and exits cleanly
  log/metrics their files on a full filesystem, or a named pipe nobody reads: lines are
              counted as lost (logger.missed_log_count, missed_metrics_count), never fatal

The probe scenarios are blk-stream, net-stream and vsock-stream (tests/guest/README.md). The
tmpfs, loop-device and network-namespace parts need root; they skip on a developer machine
and fail under VMM_REQUIRE_KVM=1 (CI). The backend seam of virtio-blk injects the same
errors at unit level (tests/unit/test_virtio_blk.c, tests/fuzz/fuzz_virtio_blk.c).

This file is also the helper that runs inside a network namespace:
  unshare -n python3 test_faults.py tap-harness TAP DELETE_AFTER VMM ARGS...
"""
import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

TIMEOUT = 60


# ---- the in-namespace helper (runs without pytest) ----

def tap_harness(tap, delete_after, vmm_args):
    """Runs the VMM on a fresh TAP; once the guest has sent `delete_after` lines of output
    past "link up", deletes the TAP; reports as JSON."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    with contextlib.suppress(OSError), open(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6",
                                            "w") as f:
        f.write("1")
    subprocess.run(["ip", "link", "set", tap, "up"], check=True)
    proc = subprocess.Popen(vmm_args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen, deleted_at, start = b"", None, time.monotonic()
    while time.monotonic() - start < 30:
        ready = select.select([proc.stdout], [], [], 0.5)[0]
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
        if deleted_at is None and b"probe: net-stream link up, sending" in seen:
            # Let it transmit for a while, then pull the interface away.
            time.sleep(delete_after)
            subprocess.run(["ip", "link", "del", tap], check=True)
            deleted_at = time.monotonic() - start
    try:
        out, err = proc.communicate(timeout=20)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = "killed: the VMM did not end after the TAP was deleted"
    json.dump({"rc": rc, "out": (seen + out).decode(errors="replace"),
               "err": err.decode(errors="replace"), "deleted_at": deleted_at}, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "tap-harness":
        tap_harness(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
        sys.exit(0)
    sys.exit("usage: test_faults.py tap-harness TAP DELETE_AFTER VMM ARGS...")


# ---- the tests ----

import pytest  # noqa: E402

from conftest import PROBES, VMM, require_kvm, require_netns  # noqa: E402

SECTOR = 512


def need_root(what):
    """Root-only parts skip on a developer machine and fail in CI."""
    if os.geteuid() == 0:
        return
    if os.environ.get("VMM_REQUIRE_KVM") == "1":
        pytest.fail(f"{what} needs root, and VMM_REQUIRE_KVM=1 requires the fault tests")
    pytest.skip(f"{what} needs root")


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` bytes mounted at path."""
    need_root("a tmpfs mount")
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def loop_device(backing):
    need_root("a loop device")
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


class Guest:
    """A VMM whose console is read line by line while the test acts on the host."""

    def __init__(self, scenario, *args, extra=""):
        cmdline = f"console=ttyS0 probe={scenario} {extra}".strip()
        self.proc = subprocess.Popen(
            [str(VMM), "--kernel", str(PROBES["elf"]), "--cmdline", cmdline, "--no-serial-in",
             *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.seen = b""

    def read_until(self, predicate, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not predicate(self.seen.decode(errors="replace")):
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in time:\n{self.seen.decode(errors='replace')}"
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("vmm ended early:\n" + self.report())
                self.seen += chunk

    def finish(self, timeout=TIMEOUT):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        self.seen += out
        self.err = err.decode(errors="replace")
        return self.proc.returncode

    def lines(self):
        return [l for l in self.seen.decode(errors="replace").splitlines()
                if l.startswith("probe: ")]

    def report(self):
        return (f"--- stdout\n{self.seen.decode(errors='replace')}\n--- stderr\n"
                f"{getattr(self, 'err', '')}")


def run_guest(scenario, *args, extra="", timeout=TIMEOUT):
    g = Guest(scenario, *args, extra=extra)
    rc = g.finish(timeout)
    return g, rc


def stream_summary(g):
    m = [re.fullmatch(r"probe: blk-stream (\d+) rounds: (\d+) flushed, (\d+) written, "
                      r"(\d+) write errors, (\d+) flush errors", l) for l in g.lines()]
    m = [x for x in m if x]
    assert m, g.report()
    return tuple(int(x) for x in m[-1].groups())


def check_rounds_on_disk(data, rounds, span):
    """Every listed round's sectors hold exactly what blk-stream wrote."""
    for r in rounds:
        for i in range(span):
            s = r * span + i
            sec = data[s * SECTOR:(s + 1) * SECTOR]
            want = (b"BSTR" + struct.pack("<II", r, s) +
                    bytes([0x40 + (r & 0x3F)]) * (SECTOR - 13) + bytes([r & 0xFF]))
            assert sec == want, f"round {r} sector {s} is not what the guest wrote"


# -- block devices --

@pytest.mark.parametrize("engine", ["sync", "io_uring"])
def test_blk_enospc(kvm, tmp_path, engine):
    """The disk file is sparse and larger than its filesystem: writes fail with ENOSPC once
    the tmpfs is full. The guest gets IOERR for those, the flushed rounds stay intact."""
    with tmpfs(tmp_path / "mnt", 64 * 1024) as mnt:
        disk = mnt / "disk.img"
        disk.write_bytes(b"")
        os.truncate(disk, 1 << 20)  # 2048 sectors: 128 rounds of 16
        g, rc = run_guest("blk-stream", "--drive",
                          f"path={disk},cache=writeback,engine={engine}")
        assert rc == 0, g.report()
        assert "probe: ok blk-stream" in g.lines(), g.report()
        rounds, flushed, written, werr, ferr = stream_summary(g)
        assert rounds == 128 and werr > 0 and flushed > 0, g.report()
        assert flushed + werr + ferr == rounds, g.report()
        assert "No space left on device" in g.err, g.report()
        ok = [int(m.group(1)) for l in g.lines()
              if (m := re.fullmatch(r"probe: blk-stream round (\d+) flushed", l))]
        check_rounds_on_disk(disk.read_bytes(), ok, 16)


def test_blk_eio_on_flush(kvm, tmp_path):
    """A loop device whose backing file cannot grow: writes are cached, the flush fails with
    EIO from the block layer. No round after the first failure may be reported flushed
    unless its flush really succeeded."""
    with tmpfs(tmp_path / "mnt", 64 * 1024) as mnt:
        backing = mnt / "backing"
        backing.write_bytes(b"")
        os.truncate(backing, 1 << 20)
        with loop_device(backing) as dev:
            g, rc = run_guest("blk-stream", "--drive", f"path={dev},cache=writeback")
            assert rc == 0, g.report()
            assert "probe: ok blk-stream" in g.lines(), g.report()
            rounds, flushed, written, werr, ferr = stream_summary(g)
            assert ferr > 0 and flushed > 0 and werr == 0, g.report()
            assert "Input/output error" in g.err, g.report()
            ok = [int(m.group(1)) for l in g.lines()
                  if (m := re.fullmatch(r"probe: blk-stream round (\d+) flushed", l))]
            with open(dev, "rb") as f:
                check_rounds_on_disk(f.read(), ok, 16)


@pytest.mark.parametrize("engine", ["sync", "io_uring"])
def test_sigterm_during_io(kvm, tmp_path, engine):
    """SIGTERM while the guest writes and flushes as fast as it can: the VMM exits 0 and
    every round acknowledged as flushed is on the disk, intact."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"")
    os.truncate(disk, 32 << 20)  # more rounds than the test lets it do
    g = Guest("blk-stream", "--drive", f"path={disk},cache=writeback,engine={engine}")
    try:
        g.read_until(lambda s: s.count(" flushed\n") >= 40)
        g.proc.send_signal(signal.SIGTERM)
        rc = g.finish()
    finally:
        if g.proc.poll() is None:
            g.proc.kill()
    assert rc == 0, g.report()
    assert "received signal 15" in g.err, g.report()
    ok = [int(m.group(1)) for l in g.lines()
          if (m := re.fullmatch(r"probe: blk-stream round (\d+) flushed", l))]
    assert len(ok) >= 40 and ok == list(range(len(ok))), g.report()
    check_rounds_on_disk(disk.read_bytes(), ok, 16)


# -- network --

def test_tap_deleted_while_sending(kvm):
    require_netns("the fault tests")
    args = [str(VMM), "--kernel", str(PROBES["elf"]), "--net", "tap=tapf0", "--cmdline",
            "console=ttyS0 probe=net-stream"]
    proc = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                           "tap-harness", "tapf0", "0.5", *args], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    report = f"rc={r['rc']}\n--- stdout\n{r['out']}\n--- stderr\n{r['err']}"
    assert r["deleted_at"] is not None, report
    lines = [l for l in r["out"].splitlines() if l.startswith("probe: ")]
    down = [l for l in lines if re.fullmatch(r"probe: net-stream link down after \d+ frames", l)]
    assert down and int(down[0].split()[-2]) > 1, report
    assert "probe: ok net-stream" in lines, report
    assert r["rc"] == 0, report
    # The device said the link is down once (a frame dropped meanwhile is logged apart, as
    # "the TAP is gone", by the frame-loss channel).
    assert r["err"].count("TAP 'tapf0' is gone (") == 1, report


# -- vsock --

@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_vsock_peer_closes_mid_stream(kvm, tmp_path, reset):
    uds = str(tmp_path / "v.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{uds}_5679")
    listener.listen(2)
    listener.settimeout(TIMEOUT)
    host = {}

    def serve():
        try:
            conn, _ = listener.accept()
            got = 0
            while got < 100_000:  # mid-stream: the guest is still sending
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            host["first"] = got
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            conn, _ = listener.accept()  # the guest comes back
            conn.settimeout(TIMEOUT)
            rest = b""
            while chunk := conn.recv(4096):
                rest += chunk
            host["again"] = rest
            conn.close()
        except OSError as e:
            host["error"] = repr(e)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        g, rc = run_guest("vsock-stream", "--vsock", f"cid=3,uds={uds}")
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert rc == 0, g.report()
    assert "error" not in host, host
    lines = g.lines()
    closed = [l for l in lines if l.startswith("probe: vsock-stream peer closed after ")]
    assert closed, g.report()
    assert int(closed[0].split()[5]) >= host["first"], (closed, host)
    assert 'probe: vsock-stream reconnected, sent "again", closed' in lines, g.report()
    assert host["again"] == b"again\n", host
    assert "probe: ok vsock-stream" in lines, g.report()


# -- API clients --

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(path, method, url, body=None):
    c = UnixHTTP(path)
    try:
        c.request(method, url, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_socket(path, proc):
    """Until the API socket accepts connections (it exists a moment before it listens)."""
    for _ in range(500):
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no API socket")


def raw(path, data, how):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(data)
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


VANISHING = [
    ("half a request line", b"PUT /machine-con", "close"),
    ("half the headers", b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Le", "close"),
    ("half the body", b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n"
                      b'{"vcpu_count": 2,', "reset"),
    ("a full request, no reading", b"PUT /machine-config HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 38\r\n\r\n"
                                   b'{"vcpu_count": 2, "mem_size_mib": 256}', "reset"),
    ("a malformed request line", b"\x00GET / HTTP/1.1\r\n\r\n", "reset"),
]


def test_api_clients_vanish_mid_request(tmp_path):
    sock = str(tmp_path / "api.sock")
    proc = subprocess.Popen([str(VMM), "--api-sock", sock], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_socket(sock, proc)
        for _ in range(20):
            for _, data, how in VANISHING:
                raw(sock, data, how)
            status, body = api(sock, "GET", "/")
            assert status == 200 and b'"Not started"' in body, body
        # Whether the full request of a client that left was executed depends on when the
        # server saw it go; either way the configuration is a valid one.
        status, body = api(sock, "GET", "/machine-config")
        assert status == 200 and json.loads(body)["mem_size_mib"] in (128, 256), body
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert not os.path.exists(sock)


def test_api_malformed_request_racing_the_stop(tmp_path):
    """A client sends a malformed request line and vanishes just as the VMM stops: the stop
    must not crash (libmicrohttpd 0.9.75's MHD_stop_daemon did, when it served the API)."""
    for i in range(20):
        sock = str(tmp_path / f"api{i}.sock")
        proc = subprocess.Popen([str(VMM), "--api-sock", sock], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_socket(sock, proc)
            idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.connect(sock)  # a second, idle keep-alive client
            raw(sock, b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n", "reset")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=TIMEOUT)
            idle.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, (i, proc.returncode, err)


# -- the log and the metrics --

def fill(fs_dir):
    """Fills a filesystem: writes until ENOSPC. Returns the filler's path."""
    filler = fs_dir / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096) > 0:
                pass
    finally:
        os.close(fd)
    return filler


def idle_vm(sock, *args):
    """An idle probe guest with the API (FlushMetrics needs a started VM)."""
    g = Guest("idle", "--api-sock", sock, *args)
    g.read_until(lambda out: "probe: idle ready" in out)
    return g


def last_metrics(path):
    """The last metrics line. A line the full disk cut short stays in the file, on a line
    of its own: every line after it parses."""
    lines = path.read_text(errors="replace").splitlines()
    assert lines and lines[-1].startswith("{"), lines[-3:]
    return json.loads(lines[-1])


def test_log_and_metrics_on_a_full_filesystem(kvm, tmp_path):
    with tmpfs(tmp_path / "mnt", 256 * 1024) as mnt:
        sock = str(tmp_path / "api.sock")
        log, metrics = mnt / "vmm.log", mnt / "metrics.json"
        g = idle_vm(sock, "--log-path", log, "--metrics-path", metrics, "--level", "Info")
        proc = g.proc
        try:
            assert api(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 204
            filler = fill(mnt)
            # Refused requests are logged (Info): these lines cannot be written now (but for
            # the room left in the log's last page: a few dozen lines).
            for _ in range(200):
                assert api(sock, "GET", "/nothing-here")[0] == 400
            status, body = api(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})
            assert status == 400 and b"metrics" in body, body  # said, and counted
            assert proc.poll() is None
            filler.unlink()
            assert api(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 204
            m = last_metrics(metrics)
            # The failed line's increments are reported by the next one.
            assert m["logger"]["missed_log_count"] >= 150, m["logger"]
            assert m["logger"]["missed_metrics_count"] >= 1, m["logger"]
            # Lines after a cut one are whole again.
            assert api(sock, "GET", "/nothing-here")[0] == 400
            assert log.read_text(errors="replace").splitlines()[-1].endswith(
                "Invalid request method and/or path: GET nothing-here.\"}"), log.read_text()
            proc.send_signal(signal.SIGTERM)
            rc = g.finish()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert rc == 0, g.report()


def test_log_to_a_pipe_nobody_reads(kvm, tmp_path):
    """A named pipe as the log: without a reader its buffer fills; later lines are dropped
    and counted, and the VMM never blocks on them."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    sock = str(tmp_path / "api.sock")
    metrics = tmp_path / "metrics.json"
    g = idle_vm(sock, "--log-path", fifo, "--metrics-path", metrics, "--level", "Info")
    proc = g.proc
    try:
        start = time.monotonic()
        for _ in range(1500):  # ~100 KiB of log lines: more than a pipe holds
            assert api(sock, "GET", "/nothing-here")[0] == 400
        assert time.monotonic() - start < 30
        assert api(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 204
        m = last_metrics(metrics)
        assert m["logger"]["missed_log_count"] > 0, m["logger"]
        proc.send_signal(signal.SIGTERM)
        rc = g.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rc == 0, g.report()

"""The host's side of the confidential rules (docs/confidential.md, "The host side"): a
hostile host reading a protected VM's memory, flushing its metrics and doing its I/O while
the guest changes ownership. The host must get nothing it can invert (CC-8), its reads must
have no effect on the guest but a delay, no log may carry private bytes, and no host action
may hang the guest or the VMM.

Each test runs the VMM with one of the probe's cc-peek, cc-hammer and cc-stress scenarios
(tests/guest/README.md), talks to the guest over its serial console and drives the REST API
from threads, as a debugger or a monitoring agent would.
"""
import json
import os
import re
import secrets
import struct
import subprocess
import threading
import time
import urllib.parse

import pytest
import requests_unixsocket

from conftest import PROBES, VMM, require_kvm

PLATFORMS = ["sev", "pef", "s390-pv"]
PAGE = 4096
SECTOR = 512
KNOWN = (b"KNOWN-PLAINTEXT-" * (PAGE // 16))
# Bytes of a 4 KiB "recovery" that may equal the plaintext by chance: 16 expected (1/256).
CHANCE = PAGE // 64


class Stream(threading.Thread):
    """Collects what a pipe delivers."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.data, self.cond = pipe, b"", threading.Condition()
        self.start()

    def run(self):
        while chunk := self.pipe.read1(65536):
            with self.cond:
                self.data += chunk
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def text(self):
        with self.cond:
            return self.data.decode(errors="replace")


class Guest:
    """The VMM running one probe scenario on a protected VM, with an API socket, a metrics
    file and the guest's serial console on stdin/stdout."""

    def __init__(self, workdir, platform, scenario, *extra, token=None):
        self.dir, self.platform = workdir, platform
        self.sock = str(workdir / "api.sock")
        self.metrics = workdir / "metrics.json"
        self.token = token or secrets.token_hex(12)
        self.secret = f"CC-SECRET-{self.token}".encode()
        cmdline = f"console=ttyS0 probe={scenario} probe.cc.secret={self.token}"
        require_kvm()
        self.proc = subprocess.Popen(
            [str(VMM), "--api-sock", self.sock, "--metrics-path", str(self.metrics),
             "--kernel", str(PROBES["elf"]), "--confidential", platform, *map(str, extra),
             "--cmdline", cmdline],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = Stream(self.proc.stdout), Stream(self.proc.stderr)
        self.base = "http+unix://" + urllib.parse.quote(self.sock, safe="")

    def plain(self):
        """The secret's page as the guest fills it."""
        return (self.secret * (PAGE // len(self.secret) + 1))[:PAGE]

    def wait(self, pattern, timeout=60, start=0):
        """The first match of pattern in the guest's output from offset start; fails the test
        when the VMM ends or the time runs out first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.out.cond:
            while True:
                m = regex.search(self.out.data.decode(errors="replace"), start)
                if m:
                    return m
                if self.proc.poll() is not None and not self.out.is_alive():
                    pytest.fail(f"the VMM ended before {pattern!r}: {self!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    pytest.fail(f"no {pattern!r} within {timeout} s (hung?): {self!r}")
                self.out.cond.wait(min(left, 0.5))

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def session(self):
        return requests_unixsocket.Session()

    def read_page(self, session, address):
        r = session.get(f"{self.base}/vm/memory/{address:#x}", timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        assert body["address"] == address and body["length"] == PAGE, body
        return bytes.fromhex(body["data"])

    def finish(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the VMM did not end within {timeout} s (hung?): {self!r}")
        self.out.join(5)
        self.err.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def lines(self):
        return [l for l in self.out.text().splitlines() if l.startswith("probe: ")]

    def __repr__(self):
        return (f"<{self.platform} rc={self.proc.poll()}\n--- stdout\n{self.out.text()[-6000:]}"
                f"\n--- stderr\n{self.err.text()[-6000:]}>")


def assert_ok(guest, scenario, rc):
    assert rc == 0, guest
    assert guest.lines()[-1] == f"probe: ok {scenario}", guest
    assert "guest requested a reset through the i8042" in guest.err.text(), guest


def xor(*blocks):
    out = bytearray(blocks[0])
    for b in blocks[1:]:
        for i, v in enumerate(b):
            out[i] ^= v
    return bytes(out)


def same(a, b):
    return sum(x == y for x, y in zip(a, b))


# ---- cc-peek: the host's reads of private memory ----

_peeks = {}


def peek_run(platform, tmp_path_factory):
    """cc-peek on platform: at each of the guest's pauses the host reads the page twice."""
    if platform in _peeks:
        return _peeks[platform]
    guest = Guest(tmp_path_factory.mktemp(f"peek_{platform.replace('-', '_')}"), platform,
                  "cc-peek")
    seen, pos = [], 0
    try:
        s = guest.session()
        while True:
            m = guest.wait(r"probe: cc peek ([a-z-]+) (0x[0-9a-f]+)\n|probe: (ok|fail) .*\n",
                           start=pos)
            pos = m.end()
            if m.group(3):
                break
            address = int(m.group(2), 16)
            first, again = guest.read_page(s, address), guest.read_page(s, address)
            seen.append((m.group(1), address, first, again))
            guest.send("go")
        rc = guest.finish()
    finally:
        guest.kill()
    assert_ok(guest, "cc-peek", rc)
    _peeks[platform] = guest, seen
    return guest, seen


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc8_known_plaintext_attack_recovers_nothing(platform, tmp_path_factory):
    """CC-8 against the host's own reads: two reads of one private page, the first while its
    contents are known (zeros; data the guest shared, the host read and the guest unshared),
    the second after the guest wrote its secret there. XOR-ing the two reads and the known
    contents must give nothing like the secret (a keystream per address gave it whole); each
    read is stable while the guest does not touch the page, and never holds the secret."""
    guest, seen = peek_run(platform, tmp_path_factory)
    plain = guest.plain()
    steps = [(what, data) for what, _, data, _ in seen]
    assert [w for w, _ in steps][:5] == ["zeros", "secret", "shared-known", "unshared-known",
                                         "secret"], seen
    for what, _, first, again in seen:
        assert first == again, f"{what}: two reads of an untouched page differ"
        assert guest.secret not in first, f"{what}: the secret in the host's read"
    zeros, secret1, shared, unshared, secret2 = (d for _, d in steps[:5])
    assert zeros != bytes(PAGE) and same(zeros, bytes(PAGE)) < CHANCE, "zeros shown in the clear"
    assert same(secret1, plain) < CHANCE
    assert same(xor(zeros, secret1), plain) < CHANCE, "the secret recovered from two reads"
    assert shared == KNOWN  # shared memory reads in the clear
    # What the host knows of the unshared page: what it read while shared, or zeros (pef
    # zeroes on unshare).
    for known in (KNOWN, bytes(PAGE)):
        assert same(xor(unshared, secret2, known), plain) < CHANCE, \
            "the secret recovered through a page the host knew"
    assert same(xor(unshared, secret2), plain) < CHANCE


@pytest.mark.parametrize("platform", ["sev", "pef"])
def test_cc8_a_page_converted_to_shared_shows_no_old_contents(platform, tmp_path_factory):
    """CC-8 across a conversion: a private page holding the secret, converted to shared, shows
    the host ciphertext of its old contents until the guest writes it (sev, as SNP hardware
    does), or zeros (pef's UV_SHARE_PAGE); after the guest cleared it, zeros in the clear.
    (s390-pv shares a page as it is: its guests clear a page before they share it.)"""
    guest, seen = peek_run(platform, tmp_path_factory)
    steps = {what: data for what, _, data, _ in seen[5:]}
    converted, cleared = steps["converted"], steps["cleared"]
    assert guest.secret not in converted
    if platform == "sev":
        assert same(converted, guest.plain()) < CHANCE
        assert same(converted, bytes(PAGE)) < CHANCE
    else:
        assert converted == bytes(PAGE)
    assert cleared == bytes(PAGE)


# ---- cc-hammer: no effect on the guest but a delay ----

class Hammer(threading.Thread):
    """Calls fn(session) in a loop until stopped; counts the calls and keeps the first
    error."""

    def __init__(self, guest, fn):
        super().__init__(daemon=True)
        self.guest, self.fn, self.stop, self.calls, self.error = guest, fn, threading.Event(), 0, None
        self.start()

    def run(self):
        s = self.guest.session()
        try:
            while not self.stop.is_set():
                self.fn(s, self.calls)
                self.calls += 1
        except Exception as e:  # the VMM ended, or an answer was wrong
            if not self.stop.is_set():
                self.error = repr(e)

    def end(self):
        self.stop.set()
        self.join(30)
        assert not self.is_alive(), "an API call never returned"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc8_host_reads_have_no_effect_on_a_running_guest(platform, tmp_path):
    """A host read of private memory is invisible to the guest but for the delay: while the
    guest writes and reads back a page in a tight loop, the host reads that page and the page
    of the loop's code, over and over (each read pages the granule out; the guest's next
    access, an instruction fetch included, pages it back in). No write is lost, no read
    returns anything but what the guest wrote, the guest neither faults nor stops the VMM.
    (Not the stack's page: on this platform's software MMU an interrupt delivered onto a
    paged-out stack is not reported to the VMM, see docs/confidential.md.)"""
    guest = Guest(tmp_path, platform, "cc-hammer")
    try:
        m = guest.wait(r"probe: cc hammer page (0x[0-9a-f]+) code (0x[0-9a-f]+)\n")
        pages = [int(a, 16) & ~(PAGE - 1) for a in m.groups()]
        hammer = Hammer(guest, lambda s, n: guest.read_page(s, pages[n % 2]))
        guest.send("go")
        done = guest.wait(r"probe: cc hammer (\d+) rounds of (\d+) words, (\d+) mismatches\n|"
                          r"probe: fail .*\n", timeout=120, start=m.end())
        hammer.end()
        guest.send("end")
        rc = guest.finish()
    finally:
        guest.kill()
    assert done.group(1), guest
    assert done.group(3) == "0", guest
    assert_ok(guest, "cc-hammer", rc)
    assert hammer.error is None, hammer.error
    assert hammer.calls >= 20, f"only {hammer.calls} host reads during the loop"


# ---- cc-stress: no hang ----

def cold_disk(path, mib=32):
    """A disk of real data that is not in the host's page cache: its reads go to the device
    and complete asynchronously (an io_uring pin outlives the VMM thread's submission)."""
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(struct.pack("<4sI", b"SECT", i) * (1 << 20 >> 3))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@pytest.mark.parametrize("engine", ["io_uring", "sync"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_cc_transitions_under_io_never_hang_host_reads_or_metrics(platform, engine, tmp_path):
    """A guest unsharing a granule while a blk read into it is in flight (io_uring: its pin
    is released when the VMM thread reaps the completion), 120 rounds (pef: then 6 rounds of
    UV_UNSHARE_ALL_PAGES), while the host reads guest memory, flushes the metrics and pauses
    and resumes the VM as fast as it can. The run must finish (a transition waiting for the
    pin while holding a lock the VMM thread needs hung it, and so did a pause waiting for a
    vCPU that waited for the pin), every API call must be answered, and no device write may
    land in the granule after the unshare returned (pef: zeroed only after the I/O was
    waited for, so nothing the host wrote is left in memory the guest owns)."""
    disk = tmp_path / "disk.img"
    cold_disk(disk)
    guest = Guest(tmp_path, platform, "cc-stress", "--drive",
                  f"path={disk},id=disk0,engine={engine}")
    try:
        m = guest.wait(r"probe: cc stress granule (0x[0-9a-f]+) pool (0x[0-9a-f]+)\n")
        granule, pool = (int(a, 16) for a in m.groups())
        reads = Hammer(guest, lambda s, n: guest.read_page(s, (granule, pool)[n % 2]))

        def flush(s, n):
            r = s.put(f"{guest.base}/actions", data=json.dumps({"action_type": "FlushMetrics"}),
                      timeout=30)
            assert r.status_code == 204, (r.status_code, r.text)

        def pause(s, n):
            r = s.patch(f"{guest.base}/vm", data=json.dumps(
                {"state": "Resumed" if n % 2 else "Paused"}), timeout=30)
            assert r.status_code == 204, (r.status_code, r.text)

        flushes = Hammer(guest, flush)
        pauses = Hammer(guest, pause)
        guest.send("go")
        done = guest.wait(r"probe: cc stress (\d+) rounds .*\n|probe: fail .*\n", timeout=120,
                          start=m.end())
        reads.end()
        flushes.end()
        pauses.end()
        if pauses.calls % 2:  # the last call paused it
            pause(guest.session(), 1)
        guest.send("end")
        rc = guest.finish()
    finally:
        guest.kill()
    assert done.group(1) == "120", guest
    assert "; 0 written after the unshare, 0 not zeroed" in done.group(0), guest
    assert_ok(guest, "cc-stress", rc)
    assert (reads.error, flushes.error, pauses.error) == (None, None, None)
    assert min(reads.calls, flushes.calls, pauses.calls) >= 10, \
        (reads.calls, flushes.calls, pauses.calls)


def test_cc8_uvc_errors_never_log_private_bytes(tmp_path_factory):
    """CC-8 for logs (s390-pv): a UVC whose control block the guest aimed at a private page of
    its secret is refused and logged -- with the block's address and the return code only,
    never the command word the ultravisor read from it (two bytes of the secret a call)."""
    guest, _ = peek_run("s390-pv", tmp_path_factory)
    assert "probe: cc uvc on the secret's page: 8 of 8 refused" in guest.lines(), guest
    plain, err = guest.plain(), guest.err.text()
    logged = [l for l in err.splitlines() if "s390-pv: UVC" in l]
    assert logged, err
    for i in range(8):
        cmd = int.from_bytes(plain[8 * i + 2:8 * i + 4], "little")
        for text in (f"{cmd:#x}", f"{cmd:#06x}", f" {cmd} ", f" {cmd}:"):
            assert not [l for l in logged if text in l], (text, logged)

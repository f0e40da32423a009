"""The probe's virtio driver under QEMU's microvm machine: the independent check of the
driver (tests/guest/lib/virtio.c) that does not involve this project's VMM. If a virtio
scenario fails under our VMM but passes here, suspect the VMM.

QEMU 7.2's microvm: virtio-mmio transports at 0xfeb00000 + 512 * n; with ACPI the DSDT
lists the populated ones (level-triggered interrupts on the second IOAPIC, GSI 24 + n) and
the command line gets no virtio_mmio.device= entries; with acpi=off QEMU appends them
(`512@0x...:n`) instead. `-global virtio-mmio.force-legacy=false` gives version-2 transports.

Hostile cases run here only where QEMU refuses too (descriptor loops, impossible ring
indices and heads, notification storms, a reset with requests in flight): QEMU bounce-buffers descriptors that point outside
RAM or into the MMIO hole, latches FEATURES_OK for features it did not offer and accepts
any queue size, all of which our VMM refuses.

virtio-balloon runs here too (the target comes from the monitor's `balloon` command before
the guest starts), and so does virtio-net, on a `-netdev socket,udp=` backend (no root needed): the test
echoes the guest's frames back over UDP on the loopback.

Run: /usr/bin/python3 -m pytest tests/kvm/test_virtio_qemu.py
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import PROBES, require_kvm

PROBE = PROBES["elf"]
QEMU = "qemu-system-x86_64"
TIMEOUT = 60
SECTOR = 512


def qemu_args(acpi=True):
    machine = "microvm,x-oem-id=PROBEQ" + ("" if acpi else ",acpi=off")
    return [QEMU, "-M", machine, "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false"]


@pytest.fixture(autouse=True)
def qemu_kvm():
    require_kvm()
    if shutil.which(QEMU) is None:
        problem = f"{QEMU} is not installed (Debian package qemu-system-x86)"
        if os.environ.get("VMM_REQUIRE_KVM") == "1":
            pytest.fail(f"{problem}, and VMM_REQUIRE_KVM=1 requires these tests to run")
        pytest.skip(problem)
    assert PROBE.exists(), f"{PROBE} is not built"


def run_qemu(devices, cmdline, smp=1, acpi=True):
    cmd = [*qemu_args(acpi), "-smp", str(smp), *devices, "-kernel", str(PROBE),
           "-append", cmdline]
    try:
        # SIGKILL: a wedged QEMU does not always honour SIGTERM.
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"QEMU did not exit within {TIMEOUT}s: {' '.join(cmd)}\n{e.stdout}")
    report = f"{' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    return [l for l in proc.stdout.splitlines() if l.startswith("probe: ")], report


def check(lines, report, name, expected):
    """expected: the lines between start and ok, each a regex."""
    assert len(lines) == len(expected) + 2, report
    assert lines[0] == f"probe: start {name} via pvh", report
    for got, want in zip(lines[1:-1], expected):
        assert re.fullmatch(want, got), f"{got!r} !~ {want!r}\n{report}"
    assert lines[-1] == f"probe: ok {name}", report


def acpi_dev(dev_id):
    return rf"probe: virtio 0xfeb0[0-9a-f]{{2}}00 irq \d+ id {dev_id} \(via acpi\)"


RNG = ["-device", "virtio-rng-device"]


@pytest.mark.parametrize("extra,modes,smp", [
    ("", "event_idx 1 indirect 1 poll", 1),
    ("probe.irq=1", "event_idx 1 indirect 1 irq", 2),
    ("probe.irq=1 probe.event_idx=0 probe.indirect=0", "event_idx 0 indirect 0 irq", 1),
])
def test_rng(extra, modes, smp):
    lines, report = run_qemu(RNG, f"probe=rng {extra}", smp=smp)
    indirect = " (indirect)" if "indirect 1" in modes else ""
    check(lines, report, "rng", [
        acpi_dev(4), f"probe: rng {modes}", "probe: rng request 1: 64 bytes",
        re.escape(f"probe: rng request 2: 64 bytes in 2 buffers{indirect}"),
        "probe: rng bytes differ"])


def test_rng_found_through_the_command_line_without_acpi():
    # No MADT either: polling mode; the probe ends by a triple fault (-no-reboot exits).
    lines, report = run_qemu(RNG, "probe=rng", acpi=False)
    check(lines, report, "rng", [
        r"probe: virtio 0xfeb0[0-9a-f]{2}00 irq \d+ id 4 \(via cmdline\)",
        "probe: rng event_idx 1 indirect 1 poll", "probe: rng request 1: 64 bytes",
        re.escape("probe: rng request 2: 64 bytes in 2 buffers (indirect)"),
        "probe: rng bytes differ"])


def test_legacy_transport_refused():
    """Without force-legacy=false QEMU 7.2 offers version-1 (legacy) transports: refused."""
    cmd = [c for c in qemu_args() if c not in ("-global", "virtio-mmio.force-legacy=false")]
    cmd += [*RNG, "-kernel", str(PROBE), "-append", "probe=rng"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=TIMEOUT)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("probe: ")]
    assert proc.returncode == 0, proc.stderr
    assert len(lines) == 3, lines
    assert re.fullmatch(r"probe: virtio 0xfeb0[0-9a-f]{2}00 version 1 refused \(legacy\) "
                        r"\(via acpi\)", lines[1]), lines
    assert lines[2] == "probe: fail rng no virtio-rng device", lines


def disk_image(path, sectors):
    data = bytearray()
    for i in range(sectors):
        data += struct.pack("<4sI", b"SECT", i) + bytes(SECTOR - 9) + bytes([i & 0xFF])
    path.write_bytes(data)
    return bytes(data)


def blk_devices(disk, ro_disk, serial):
    return ["-drive", f"id=d0,file={disk},format=raw,if=none,discard=unmap",
            "-device", f"virtio-blk-device,drive=d0,serial={serial}",
            "-drive", f"id=d1,file={ro_disk},format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=d1"]


@pytest.mark.parametrize("extra,modes", [("", "event_idx 1 indirect 1 irq"),
                                         ("probe.event_idx=0 probe.indirect=0 probe.irq=0",
                                          "event_idx 0 indirect 0 poll")])
def test_blk(extra, modes, tmp_path):
    disk, ro_disk = tmp_path / "disk.img", tmp_path / "ro.img"
    before = disk_image(disk, 2048)
    ro_before = disk_image(ro_disk, 64)
    lines, report = run_qemu(blk_devices(disk, ro_disk, "probe-disk-0"),
                             f"probe=blk probe.blk_id=probe-disk-0 {extra}")
    # QEMU lists the first -device first: blk0 is the writable drive.
    check(lines, report, "blk", [
        acpi_dev(2), acpi_dev(2),
        f"probe: blk0 {modes}",
        "probe: blk0 capacity 2048 sectors ro 0 flush 1 discard 1 write-zeroes 1",
        f"probe: blk1 {modes}",
        # QEMU offers FLUSH, DISCARD and WRITE_ZEROES even on a read-only drive.
        r"probe: blk1 capacity 64 sectors ro 1 flush 1 discard 1 write-zeroes 1",
        "probe: blk0 read sectors 0-7 ok", "probe: blk0 wrote sectors 8-9",
        "probe: blk0 read back sectors 8-9 ok", "probe: blk0 flush ok",
        'probe: blk0 id "probe-disk-0"', "probe: blk0 write-zeroes sectors 10-11 ok",
        r"probe: blk0 discard sectors 12-13 ok \((reads zeros|data kept)\)",
        "probe: blk0 read past the end: ioerr", "probe: blk0 unknown request type: unsupp",
        "probe: blk1 read sector 1 ok", "probe: blk1 write refused: ioerr",
        "probe: blk1 sector 1 unchanged"])
    after = disk.read_bytes()
    assert after[8 * SECTOR:10 * SECTOR] == b"".join(
        struct.pack("<4sI", b"WRIT", i) + bytes(SECTOR - 9) + bytes([i ^ 0xA5]) for i in (8, 9))
    assert after[10 * SECTOR:12 * SECTOR] == bytes(2 * SECTOR)
    assert after[:8 * SECTOR] == before[:8 * SECTOR]
    assert after[14 * SECTOR:] == before[14 * SECTOR:]
    assert ro_disk.read_bytes() == ro_before


# The cases QEMU refuses as well.
QEMU_HOSTILE = "loop,bad-head,bad-avail-idx,notify-storm,reset-in-flight"


@pytest.mark.parametrize("dev", ["rng", "blk"])
def test_hostile(dev, tmp_path):
    if dev == "blk":
        disk = tmp_path / "disk.img"
        disk_image(disk, 64)
        devices = ["-drive", f"id=d0,file={disk},format=raw,if=none",
                   "-device", "virtio-blk-device,drive=d0"]
    else:
        devices = RNG
    lines, report = run_qemu(devices, f"probe=hostile probe.dev={dev} probe.case={QEMU_HOSTILE}")
    reset = r"refused \(needs reset, config interrupt\); works after reset"
    check(lines, report, "hostile", [
        acpi_dev(2 if dev == "blk" else 4), "probe: hostile event_idx 1 indirect 1 irq",
        f"probe: hostile loop: {reset}", f"probe: hostile bad-head: {reset}",
        f"probe: hostile bad-avail-idx: {reset}",
        r"probe: hostile notify-storm: refused \(2000 \+ 200 notifications, nothing "
        r"completed\); device still works",
        r"probe: hostile reset-in-flight: refused \(nothing written after the reset\); works "
        "after reset",
        "probe: hostile 5 cases refused"])


def udp_echo(sock, peer, frames, stop):
    """QEMU's socket netdev: each datagram is one frame. Echo ours with swapped addresses."""
    while not stop.is_set():
        try:
            data, _ = sock.recvfrom(65536)
        except socket.timeout:
            continue
        if data[12:14] != b"\x88\xb5":
            continue
        frames.append(data)
        sock.sendto(data[6:12] + bytes.fromhex("020000000002") + data[12:], peer)


@pytest.mark.parametrize("extra,mrg", [("", 1), ("probe.mrg=0 probe.irq=0", 0)])
def test_net(extra, mrg):
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.1)
    qemu_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    qemu_side.bind(("127.0.0.1", 0))  # a free port for QEMU to bind again
    peer = qemu_side.getsockname()
    qemu_side.close()
    frames, stop = [], threading.Event()
    thread = threading.Thread(target=udp_echo, args=(echo, peer, frames, stop))
    thread.start()
    mac = "52:54:00:12:34:56"
    try:
        lines, report = run_qemu(
            ["-netdev", f"socket,id=n0,udp=127.0.0.1:{echo.getsockname()[1]},"
                        f"localaddr=127.0.0.1:{peer[1]}",
             "-device", f"virtio-net-device,netdev=n0,mac={mac}"], f"probe=net {extra}")
    finally:
        stop.set()
        thread.join()
        echo.close()
    sizes, bufs = [60, 128, 600, 1000, 1514], ([1, 1, 2, 2, 3] if mrg else [1] * 5)
    check(lines, report, "net", [
        acpi_dev(1), rf"probe: net event_idx 1 indirect 1 {'irq' if mrg else 'poll'}",
        f"probe: net mac {mac} mrg_rxbuf {mrg} link up",
        *[f"probe: net frame {k}: {n} bytes sent, echoed in {b} buffers?"
          for k, (n, b) in enumerate(zip(sizes, bufs))],
        "probe: net 5 frames echoed"])
    assert [len(f) for f in frames] == sizes


def test_balloon(tmp_path):
    """Target 16 MiB through the monitor while QEMU waits (-S); the console is a socket so
    the test can answer the scenario's pauses and read QEMU's resident memory meanwhile."""
    mon, ser = str(tmp_path / "mon.sock"), str(tmp_path / "serial.sock")
    cmd = [*qemu_args(), "-S", "-monitor", f"unix:{mon},server=on,wait=off",
           "-chardev", f"socket,id=s0,path={ser},server=on,wait=off", "-device",
           "virtio-balloon-device", "-kernel", str(PROBE), "-append", "probe=balloon"]
    cmd[cmd.index("-serial") + 1] = "chardev:s0"
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen, rss = b"", {}
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (os.path.exists(mon) and os.path.exists(ser)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as m, socket.socket(socket.AF_UNIX) as s:
            # QEMU binds each socket before it listens: a connect in between is refused.
            for sock, path in ((m, mon), (s, ser)):
                while True:
                    try:
                        sock.connect(path)
                        break
                    except ConnectionRefusedError:
                        assert time.monotonic() < deadline and proc.poll() is None, \
                            proc.stderr.read()
                        time.sleep(0.02)
            s.settimeout(TIMEOUT)
            m.sendall(b"balloon 240\n")  # of 256 MiB: a 16 MiB balloon
            time.sleep(0.2)
            m.sendall(b"cont\n")
            for step in (b"touched 4096 pages\n", b"actual 4096\n"):
                while step not in seen:
                    chunk = s.recv(4096)
                    assert chunk, seen
                    seen += chunk
                with open(f"/proc/{proc.pid}/status") as f:
                    rss[step] = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                s.sendall(b"go\n")
            while chunk := s.recv(4096):
                seen += chunk
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [l for l in seen.decode(errors="replace").splitlines() if l.startswith("probe: ")]
    report = f"{' '.join(cmd)}\n{seen.decode(errors='replace')}\n{proc.stderr.read()}"
    check(lines, report, "balloon", [
        acpi_dev(5), "probe: balloon event_idx 1 indirect 1 irq",
        "probe: balloon num_pages 4096 actual 0 deflate_on_oom 0",
        "probe: balloon touched 4096 pages", "probe: balloon inflated 4096 pages, actual 4096",
        "probe: balloon deflated 4096 pages, actual 0",
        "probe: balloon 4096 pages read back zero"])
    touched, inflated = rss.values()
    assert touched - inflated >= 12 << 10, rss

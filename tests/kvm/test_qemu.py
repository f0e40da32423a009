"""Boots the probe guest (tests/guest) under QEMU's microvm machine with KVM.

An independent check of the probe and of its PVH entry that does not involve this project's
VMM: if a scenario fails under our VMM but passes here, suspect the VMM. QEMU boots an ELF
through PVH only, so this covers probe.elf; the Linux boot protocol entries (probe-nopvh.elf,
probe.bzImage) are exercised by the VMM's own tests.

QEMU's firmware (qboot) hands over an unsorted PVH memory map that ends in an empty entry, so
the boot scenario runs with `probe.e820=lenient` here (README.md in tests/guest).

Run: /usr/bin/python3 -m pytest tests/kvm/test_qemu.py
VMM_BUILD_DIR selects the build tree (default "build" under the repository root).
KVM and QEMU missing: skip, or fail when VMM_REQUIRE_KVM=1.
"""

import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD_DIR, PROBES, require_kvm

PROBE = PROBES["elf"]
BUILD = BUILD_DIR
QEMU = "qemu-system-x86_64"
TIMEOUT = 60  # seconds; each scenario takes well under one here
MEM_MIB = 256
OEM_ID = "PROBEQ"  # set through QEMU, read back from every table header by the probe

# -cpu host alone dies on this platform's KVM (QEMU cannot set IA32_ARCH_CAPABILITIES).
# No i8042 on microvm: the probe resets through the FADT reset register and -no-reboot
# turns the reset into QEMU's exit.
QEMU_ARGS = [
    "-M", f"microvm,x-oem-id={OEM_ID}", "-enable-kvm", "-cpu", "host,-arch-capabilities",
    "-m", str(MEM_MIB), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
    "-serial", "stdio",
]


@pytest.fixture(autouse=True)
def qemu_kvm():
    require_kvm()
    if shutil.which(QEMU) is None:
        problem = f"{QEMU} is not installed (Debian package qemu-system-x86)"
        if os.environ.get("VMM_REQUIRE_KVM") == "1":
            pytest.fail(f"{problem}, and VMM_REQUIRE_KVM=1 requires these tests to run")
        pytest.skip(problem)
    assert PROBE.exists(), f"{PROBE} is not built (cmake --build {BUILD} --target probe_guest)"


def qemu_command(cmdline, smp=1, initrd=None):
    cmd = [QEMU, *QEMU_ARGS, "-smp", str(smp), "-kernel", str(PROBE), "-append", cmdline]
    if initrd is not None:
        cmd += ["-initrd", str(initrd)]
    return cmd


def transcript(out):
    return [l for l in out.splitlines() if l.startswith("probe: ")]


def run_probe(cmdline, smp=1, initrd=None):
    """Boots the probe and returns its `probe: ` lines, once QEMU has exited by itself."""
    cmd = qemu_command(cmdline, smp, initrd)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"QEMU did not exit within {TIMEOUT}s: {' '.join(cmd)}\n"
                    f"--- stdout\n{e.stdout}")
    report = f"{' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    return transcript(proc.stdout), report


def assert_result(lines, report, name):
    assert lines and lines[0] == f"probe: start {name} via pvh", report
    assert lines[-1] == f"probe: ok {name}", report
    assert not [l for l in lines if l.startswith("probe: fail")], report


def fnv1a64_words(data):
    """The probe's initrd hash (tests/guest/README.md)."""
    h = 0xCBF29CE484222325
    words = len(data) // 8
    for (w,) in struct.iter_unpack("<Q", data[:words * 8]):
        h = ((h ^ w) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    for b in data[words * 8:]:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_hello():
    lines, report = run_probe("probe=hello")
    assert_result(lines, report, "hello")
    assert "probe: hello from the probe guest" in lines, report


def test_default_scenario_is_hello():
    lines, report = run_probe("console=ttyS0")
    assert_result(lines, report, "hello")


def test_unknown_scenario_fails():
    lines, report = run_probe("probe=no-such-scenario")
    assert lines == ["probe: start no-such-scenario via pvh",
                     "probe: fail no-such-scenario unknown scenario"], report


def test_boot(tmp_path):
    # Not a multiple of 8, so the hash's byte tail is covered too.
    data = random.Random(1).randbytes(256 * 1024 + 5)
    initrd = tmp_path / "initrd.bin"
    initrd.write_bytes(data)
    digest = f"{fnv1a64_words(data):016x}"
    cmdline = f"probe=boot probe.e820=lenient probe.initrd_sum={len(data)}:{digest} x=y"

    lines, report = run_probe(cmdline, smp=2, initrd=initrd)
    assert_result(lines, report, "boot")
    assert f'probe: cmdline "{cmdline}"' in lines, report
    # RAM from 1 MiB to the end of memory, as QEMU's e820 says.
    assert (f"probe: e820 0x{0x100000:016x}-0x{MEM_MIB << 20:016x} type 1") in lines, report
    initrd_lines = [l for l in lines if l.startswith("probe: initrd ")]
    assert len(initrd_lines) == 1, report
    assert re.fullmatch(rf"probe: initrd 0x[0-9a-f]+ size {len(data)} hash {digest}",
                        initrd_lines[0]), report
    assert [l for l in lines if re.fullmatch(r"probe: rsdp 0x[0-9a-f]+", l)], report
    for sig in ("XSDT", "FACP", "APIC", "DSDT"):
        assert [l for l in lines
                if re.fullmatch(rf'probe: acpi {sig} oem "{OEM_ID}" len \d+', l)], report
    assert "probe: cpus 2" in lines, report
    assert "probe: ioapic 0xfec00000" in lines, report


def test_boot_detects_wrong_initrd(tmp_path):
    data = b"\x01" * 4099
    initrd = tmp_path / "initrd.bin"
    initrd.write_bytes(data)
    wrong = fnv1a64_words(data) ^ 1
    lines, report = run_probe(f"probe=boot probe.e820=lenient "
                              f"probe.initrd_sum={len(data)}:{wrong:016x}", initrd=initrd)
    assert lines[-1].startswith("probe: fail boot initrd hash "), report


def test_boot_strict_memmap_rejects_qboot_map():
    # Without probe.e820=lenient the probe holds the loader to a sorted map.
    lines, report = run_probe("probe=boot")
    assert re.fullmatch(r"probe: fail boot memory map entry \d+ is (out of order|empty)",
                        lines[-1]), report


@pytest.mark.parametrize("cpus", [1, 2])
def test_smp(cpus):
    lines, report = run_probe("probe=smp", smp=cpus)
    assert_result(lines, report, "smp")
    expected = [f"probe: cpu {n} up (apic {n})" for n in range(1, cpus)]
    assert sorted(l for l in lines if l.startswith("probe: cpu ") and " up " in l) == expected, \
        report
    assert f"probe: cpus {cpus} started" in lines, report


def test_timer():
    lines, report = run_probe("probe=timer")
    assert_result(lines, report, "timer")


def test_serial_irq():
    lines, report = run_probe("probe=serial-irq")
    assert_result(lines, report, "serial-irq")
    assert "probe: serial iir 0xc2" in lines, report


def test_echo():
    cmd = qemu_command("probe=echo")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = b""
    try:
        # The UART's FIFO reset at probe start would drop earlier input: wait for the cue.
        while b"probe: echo ready\n" not in out:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            out += chunk
        proc.stdin.write(b"hello from the host\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, err = proc.communicate()
        pytest.fail(f"QEMU did not exit within {TIMEOUT}s\n{(out + rest).decode(errors='replace')}")
    text = (out + rest).decode(errors="replace")
    report = f"{' '.join(cmd)}\n--- stdout\n{text}\n--- stderr\n{err.decode(errors='replace')}"
    assert proc.returncode == 0, report
    lines = transcript(text)
    assert_result(lines, report, "echo")
    assert 'probe: got "hello from the host"' in lines, report

"""SLOW: boots Debian's real cloud kernel in the VMM.

This platform's KVM emulates guest code (about 1.6 M instructions/s) and cannot execute
every instruction (see docs/platform-notes.md), so Linux cannot reach user space here.
What it can show, and this test asserts:
  * ELF vmlinux through PVH: the kernel prints exactly the e820 map the VMM built, finds our
    ACPI tables (RSDP, XSDT, FACP, DSDT, APIC with the VMM's OEM ids), the command line and
    the IOAPIC, and runs until the known stop: an emulation failure (KVM_EXIT_INTERNAL_ERROR)
    in the FPU/self-test code, which the VMM reports and exits with code 1. On a host with
    hardware virtualization the same boot goes on (and this test accepts that too).
  * bzImage through the 64-bit boot protocol: the kernel's decompressor starts and reads the
    command line from boot_params (it reports 'nokaslr'); decompressing 53 MB at emulation
    speed would take hours, so the test stops the VMM with SIGTERM there and expects a clean
    exit (code 0).
"""
import os
import pathlib
import re
import select
import signal
import subprocess
import time

import pytest

from conftest import SOURCE_DIR, VMM, require_kvm

LINUX_DIR = pathlib.Path(os.environ.get("VMM_LINUX_DIR", SOURCE_DIR / "out" / "linux"))
CMDLINE = "console=ttyS0 earlyprintk=ttyS0 noxsave nokaslr reboot=k panic=1 pci=off"


@pytest.fixture(scope="module")
def kernel():
    require_kvm()
    if not (LINUX_DIR / "vmlinux").exists():
        proc = subprocess.run([str(SOURCE_DIR / "scripts" / "fetch-linux-kernel"), str(LINUX_DIR)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            msg = f"cannot fetch Debian's kernel: {proc.stderr.strip()}"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
    return LINUX_DIR


def test_vmlinux_pvh_e820_and_acpi(kernel):
    mem_mib = 256
    proc = subprocess.run([str(VMM), "--kernel", str(kernel / "vmlinux"), "--mem", str(mem_mib),
                           "--cpu-hide", "cx16", "--cmdline", CMDLINE, "--no-serial-in"],
                          capture_output=True, text=True, errors="replace", timeout=900)
    out, err = proc.stdout, proc.stderr
    report = f"rc={proc.returncode}\n--- stdout\n{out[-6000:]}\n--- stderr\n{err[-3000:]}"

    assert "Linux version 6." in out, report
    assert f"Command line: {CMDLINE}" in out, report

    e820 = re.findall(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)", out)
    top = (mem_mib << 20) - 1
    assert e820 == [("0x0000000000000000", "0x000000000009fbff", "usable"),
                    ("0x000000000009fc00", "0x00000000000fffff", "reserved"),
                    ("0x0000000000100000", f"0x{top:016x}", "usable")], report

    assert re.search(r"ACPI: RSDP 0x00000000000E0000 000024 \(v02 CVMM  \)", out), report
    for sig in ("XSDT", "FACP", "DSDT", "APIC"):
        assert re.search(rf"ACPI: {sig} 0x[0-9A-F]{{16}} [0-9A-F]{{6}} "
                         rf"\(v\d\d CVMM   CVMM{sig} 00000001 CVMM 00000001\)", out), (sig, report)
    assert "IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23" in out, report
    assert "smpboot: Allowing 1 CPUs" in out, report
    assert "Booting paravirtualized kernel on KVM" in out, report

    if proc.returncode == 1:
        # The known stop on this platform (docs/platform-notes.md): reported, not crashed.
        assert "KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)" in err, report
        print("Linux stopped at the known emulation failure after:", out.splitlines()[-1])
    else:
        assert proc.returncode == 0, report  # hardware KVM: panic=1 without a root fs resets


def test_bzimage_decompressor_reads_boot_params(kernel):
    proc = subprocess.Popen([str(VMM), "--kernel", str(kernel / "bzImage"), "--mem", "256",
                             "--cpu-hide", "cx16", "--no-serial-in", "--cmdline",
                             "console=ttyS0 earlyprintk=serial,ttyS0,115200 noxsave nokaslr"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + 180
    try:
        while b"KASLR disabled: 'nokaslr' on cmdline." not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"decompressor output not seen: {seen!r}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            assert chunk or ready == [], f"vmm ended early: {seen!r}"
            seen += chunk
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode(errors="replace")
    assert rc == 0, err
    assert "received signal 15 (Terminated), shutting down" in err, err

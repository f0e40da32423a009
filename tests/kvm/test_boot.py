"""KVM integration: the probe guest boots through every entry path (PVH ELF, 64-bit Linux
boot protocol ELF, bzImage) with 1 and 2 vCPUs, and its transcript shows what the VMM
built: command line, e820 map, initrd, ACPI tables, CPUs, serial interrupts, boot timer."""
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import PROBES, VMM, assert_probe_ok, run_probe, run_vmm

FORMATS = ["elf", "nopvh", "bzimage"]
pytestmark = pytest.mark.usefixtures("kvm")


def fnv_words(data):
    """The probe's initrd hash: FNV-1a over little-endian 64-bit words, then tail bytes."""
    h, prime, mask = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1
    full = len(data) // 8 * 8
    for (w,) in struct.iter_unpack("<Q", data[:full]):
        h = ((h ^ w) * prime) & mask
    for b in data[full:]:
        h = ((h ^ b) * prime) & mask
    return h


def expected_e820(mem_mib):
    return [f"probe: e820 0x{0:016x}-0x{0x9fc00:016x} type 1",
            f"probe: e820 0x{0x9fc00:016x}-0x{0x100000:016x} type 2",
            f"probe: e820 0x{0x100000:016x}-0x{mem_mib << 20:016x} type 1"]


@pytest.mark.parametrize("vcpus", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_hello(fmt, vcpus):
    run = run_probe(fmt, "hello", "--vcpus", vcpus)
    assert_probe_ok(run, "hello", fmt)
    assert "probe: hello from the probe guest" in run.lines()


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_command_line_runs_hello(fmt):
    run = run_vmm(["--kernel", PROBES[fmt]])
    assert_probe_ok(run, "hello", fmt)


@pytest.mark.parametrize("vcpus", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_boot_information(fmt, vcpus, tmp_path):
    initrd = os.urandom(300 * 1024 + 5)  # not a multiple of 8: exercises the tail bytes
    (tmp_path / "initrd").write_bytes(initrd)
    extra = f"probe.initrd_sum={len(initrd)}:{fnv_words(initrd):016x} token=42"
    mem = 96
    run = run_probe(fmt, "boot", "--vcpus", vcpus, "--mem", mem, "--initrd",
                    tmp_path / "initrd", cmdline_extra=extra)
    assert_probe_ok(run, "boot", fmt)
    lines = run.lines()
    assert f'probe: cmdline "console=ttyS0 probe=boot {extra}"' in lines, run
    assert [l for l in lines if l.startswith("probe: e820 ")] == expected_e820(mem), run

    m = [re.match(r"probe: initrd (0x[0-9a-f]+) size (\d+) hash ([0-9a-f]{16})$", l)
         for l in lines]
    m = [x for x in m if x]
    assert len(m) == 1, run
    addr, size = int(m[0].group(1), 16), int(m[0].group(2))
    assert size == len(initrd) and m[0].group(3) == f"{fnv_words(initrd):016x}", run
    # Top of low RAM, page aligned, as the layout promises.
    assert addr % 4096 == 0 and addr + size <= mem << 20 and addr + size > (mem << 20) - 4096, run

    assert "probe: rsdp 0xe0000" in lines, run
    for sig in ("XSDT", "FACP", "APIC", "DSDT"):
        assert any(re.fullmatch(rf'probe: acpi {sig} oem "CVMM  " len \d+', l) for l in lines), \
            (sig, run)
    assert f"probe: cpus {vcpus}" in lines, run
    assert "probe: ioapic 0xfec00000" in lines, run
    # The legacy MPTable, found where Linux scans (last KiB of base memory): one processor
    # per vCPU (BSP apic 0), an ISA bus, the IOAPIC, ISA IRQs 0-15, ExtINT and NMI lints.
    entries = vcpus + 1 + 1 + 16 + 2
    assert (f'probe: mptable 0x9fc10 oem "CVMM    " entries {entries} count {entries} '
            f"cpus {vcpus} bsp 0 ioapic 0xfec00000 irqs 16 lints 2") in lines, run


@pytest.mark.parametrize("vcpus", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_smp_application_processors_start(fmt, vcpus):
    run = run_probe(fmt, "smp", "--vcpus", vcpus)
    assert_probe_ok(run, "smp", fmt)
    lines = run.lines()
    assert f"probe: cpus {vcpus} started" in lines, run
    aps = sorted(l for l in lines if re.fullmatch(r"probe: cpu \d+ up \(apic \d+\)", l))
    assert len(aps) == vcpus - 1, run
    if vcpus == 2:
        assert aps[0].endswith("(apic 1)"), run


def test_smp_more_vcpus_than_host_cpus():
    run = run_probe("elf", "smp", "--vcpus", 4)
    assert_probe_ok(run, "smp", "elf")
    assert "probe: cpus 4 started" in run.lines(), run


@pytest.mark.parametrize("fmt", FORMATS)
def test_boot_timer_reports(fmt):
    run = run_probe(fmt, "timer", "--boot-timer")
    assert_probe_ok(run, "timer", fmt)
    m = re.search(r"Guest-boot-time = +(\d+) us (\d+) ms, +(\d+) CPU us (\d+) CPU ms", run.err)
    assert m, run
    us, ms = int(m.group(1)), int(m.group(2))
    assert us > 0 and ms == us // 1000, run


def test_boot_timer_absent_without_flag():
    # The write lands on no device: counted and ignored, never fatal.
    run = run_probe("elf", "timer")
    assert_probe_ok(run, "timer", "elf")
    assert "Guest-boot-time" not in run.err, run


def test_serial_thre_interrupt():
    run = run_probe("elf", "serial-irq", "--vcpus", 2)
    assert_probe_ok(run, "serial-irq", "elf")
    assert "probe: serial iir 0xc2" in run.lines(), run


@pytest.mark.parametrize("fmt", ["elf", "bzimage"])
def test_serial_input_interrupt_driven(fmt):
    proc = subprocess.Popen([str(VMM), "--kernel", str(PROBES[fmt]), "--cmdline",
                             "console=ttyS0 probe=echo"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(proc, b"probe: echo ready\n", 30)
        proc.stdin.write(b"hello from the host\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    assert b'probe: got "hello from the host"' in out, (out, err)
    assert b"probe: ok echo" in out, (out, err)


def wait_for(proc, needle, timeout):
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {seen!r}"
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"vmm ended before {needle!r}: {seen!r}"
            seen += chunk
    return seen


def test_sigterm_stops_a_running_guest_cleanly():
    # `echo` waits for input forever with interrupts on: the VMM must stop it on SIGTERM.
    proc = subprocess.Popen([str(VMM), "--kernel", str(PROBES["elf"]), "--vcpus", "2",
                             "--cmdline", "probe=echo"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(proc, b"probe: echo ready\n", 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert b"received signal 15 (Terminated), shutting down" in err, err


def test_serial_out_file(tmp_path):
    out = tmp_path / "serial.log"
    run = run_probe("elf", "hello", "--serial-out", out)
    assert run.rc == 0 and "probe:" not in run.out, run
    text = out.read_text()
    assert "probe: start hello via pvh" in text and "probe: ok hello" in text, text


def test_unknown_scenario_reports_failure():
    run = run_probe("elf", "no-such-thing")
    assert "probe: fail no-such-thing unknown scenario" in run.lines(), run
    assert run.rc == 0, run  # the probe still resets the machine cleanly


def pvh_elf(code):
    """An ELF with a PVH note whose 32-bit entry runs `code` (paging off)."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    load, note_off, code_off = 0x100000, 0x200, 0x1000
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", load)
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, load, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, code_off, load, load, len(code), len(code), 0x1000)
    ph += struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    img = bytearray(code_off + len(code))
    img[:len(hdr + ph)] = hdr + ph
    img[note_off:note_off + len(note)] = note
    img[code_off:] = code
    return bytes(img)


def test_fatal_vcpu_error_exits_1(tmp_path):
    # mov $0xd0000000, %eax; jmp *%eax: fetching instructions from the MMIO hole is an
    # emulation failure on every KVM. The VMM must report it and exit 1, not crash.
    k = tmp_path / "bad.elf"
    k.write_bytes(pvh_elf(b"\xb8\x00\x00\x00\xd0\xff\xe0"))
    run = run_vmm(["--kernel", k], timeout=60)
    assert run.rc == 1, run
    assert re.search(r"vcpu0: KVM_EXIT_INTERNAL_ERROR suberror \d+.* at rip=0x", run.err), run


def test_triple_fault_is_a_reset(tmp_path):
    # lidt of a zero-limit IDT, then ud2: #UD cannot be delivered -> triple fault.
    code = bytes.fromhex("0f011d00101000" + "0f0b")  # lidt [0x101000]; ud2
    k = tmp_path / "tf.elf"
    img = bytearray(pvh_elf(code + bytes(0x1000 - len(code)) + bytes(6)))
    k.write_bytes(bytes(img))
    run = run_vmm(["--kernel", k], timeout=60)
    assert run.rc == 0, run
    assert "triple fault (KVM_EXIT_SHUTDOWN)" in run.err, run


# Programs PIT channel 0 (mode 2, low then high byte), latches its status with a read-back
# command, and writes (status & 0x3f) | 0x40 to COM1 before the i8042 reset: "t" (0x34 |
# 0x40) when an i8254 answered, anything else when the ports are unclaimed.
PIT_PROBE = bytes.fromhex(
    "b034e643"  # mov $0x34, %al; out %al, $0x43   (channel 0, lobyte/hibyte, mode 2)
    "b000e640"  # mov $0x00, %al; out %al, $0x40
    "b010e640"  # mov $0x10, %al; out %al, $0x40
    "b0e2e643"  # mov $0xe2, %al; out %al, $0x43   (read-back: status of channel 0)
    "e440"  # in $0x40, %al
    "243f0c40"  # and $0x3f, %al; or $0x40, %al
    "66baf803ee"  # mov $0x3f8, %dx; out %al, %dx
    "b0fee664")  # mov $0xfe, %al; out %al, $0x64


@pytest.mark.parametrize("flag,answer", [([], False), (["--pit"], True)])
def test_pit_only_when_asked(tmp_path, flag, answer):
    # Closing a VM with the in-kernel PIT costs 12-30 ms (bench/tiny), so a VM has none
    # unless --pit asks for it; the guest sees the difference on ports 0x40-0x43.
    k = tmp_path / "pit.elf"
    k.write_bytes(pvh_elf(PIT_PROBE))
    run = run_vmm(["--kernel", k, "--no-serial-in", *flag], timeout=60)
    assert run.rc == 0, run
    assert len(run.out) == 1, run
    assert (run.out == "t") == answer, run


def hugepage_pool(pages=None):
    """Reads (and, when pages is given, sets) the 2 MiB huge page pool; None if not root."""
    path = "/proc/sys/vm/nr_hugepages"
    old = int(open(path).read())
    if pages is not None:
        if os.geteuid() != 0:
            return None
        with open(path, "w") as f:
            f.write(str(pages))
    return old


def test_huge_pages_back_guest_ram():
    old = hugepage_pool(40)
    if old is None:
        pytest.skip("needs root to reserve 2 MiB huge pages")
    try:
        run = run_probe("elf", "boot", "--huge-pages", "--mem", 64)
        assert_probe_ok(run, "boot", "elf")
        assert [l for l in run.lines() if l.startswith("probe: e820 ")] == expected_e820(64), run
    finally:
        hugepage_pool(old)


def test_huge_pages_without_a_pool_fail_cleanly():
    old = hugepage_pool(0)
    if old is None and hugepage_pool() != 0:
        pytest.skip("the host has huge pages reserved and we cannot empty the pool")
    try:
        run = run_probe("elf", "hello", "--huge-pages", "--mem", 64)
        assert run.rc == 1, run  # a host resource problem, not a bad configuration
        assert "cannot map 64 MiB of guest memory with 2 MiB huge pages" in run.err, run
    finally:
        if old is not None:
            hugepage_pool(old)


@pytest.mark.parametrize("setup,expect", [
    ("mount -t tmpfs none /dev", "cannot open /dev/kvm: No such file or directory"),
    ("mount --bind /dev/null /dev/kvm", "/dev/kvm is not a KVM device"),
])
def test_unusable_kvm_is_a_clear_error(setup, expect):
    # A private mount namespace hides or replaces /dev/kvm for this one process.
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to hide /dev/kvm")
    proc = subprocess.run(["unshare", "-m", "sh", "-c",
                           f'{setup} && exec "$0" --kernel "$1"', str(VMM), str(PROBES["elf"])],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc
    errors = [l for l in proc.stderr.splitlines() if ":ERROR:" in l]
    assert len(errors) == 1 and expect in errors[0], proc

"""Bad input on the command line: one precise message, exit 152 (bad configuration) or 153
(bad arguments), never a crash. Configuration is checked before KVM is opened, so these run
on any host."""
import os
import shutil
import struct
import subprocess

import pytest

from conftest import VMM, run_vmm

BAD_ARGS, BAD_CONFIG = 153, 152


def elf_image(phdrs, phnum=None, phoff=64, entry=0x100000, etype=2, machine=62, cls=2,
              payload=b"\xf4" * 64):
    """A minimal ELF64 executable; phdrs: list of (type, offset, paddr, filesz, memsz)."""
    n = len(phdrs) if phnum is None else phnum
    ident = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9)
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", etype, machine, 1, entry, phoff, 0, 0, 64, 56,
                              n, 0, 0, 0)
    ph = b"".join(struct.pack("<IIQQQQQQ", t, 5, off, pa, pa, fs, ms, 0x1000)
                  for (t, off, pa, fs, ms) in phdrs)
    body = hdr + ph
    return body + bytes(0x1000 - len(body)) + payload


def one_error(run):
    """The single ERROR line's message (after the log prefix)."""
    errs = [l for l in run.err.splitlines() if ":ERROR:" in l]
    assert len(errs) == 1, run
    return errs[0].split("] ", 1)[1]


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


GOOD_SEG = (1, 0x1000, 0x100000, 64, 64)


@pytest.mark.parametrize("name,data,expect", [
    ("empty", b"", "is empty"),
    ("random", bytes(range(256)) * 40, "not an ELF vmlinux or a bzImage"),
    ("truncated", elf_image([GOOD_SEG])[:40], "ELF image is truncated"),
    ("elf32", elf_image([GOOD_SEG], cls=1), "not 64-bit"),
    ("arm", elf_image([GOOD_SEG], machine=183), "not x86_64"),
    ("hole", elf_image([(1, 0x1000, 0xbfff0000, 64, 0x20000)]), "overlaps the MMIO hole"),
    ("beyond-ram", elf_image([(1, 0x1000, 0x7000000, 64, 64)]), "does not fit in guest RAM"),
    ("below-1m", elf_image([(1, 0x1000, 0x8000, 64, 64)]), "below 1 MiB"),
    ("absurd-phnum", elf_image([GOOD_SEG], phnum=5000), "program headers"),
    ("phoff-past-eof", elf_image([GOOD_SEG], phoff=1 << 40), "past the end of the file"),
    ("seg-past-eof", elf_image([(1, 0x1000, 0x100000, 1 << 20, 1 << 20)]), "past the end"),
    ("no-load", elf_image([(4, 0x1000, 0, 0, 0)]), "no loadable segment"),
    ("entry-outside", elf_image([GOOD_SEG], entry=0x500000), "entry point"),
])
def test_bad_kernel_image(tmp_path, name, data, expect):
    k = write(tmp_path, name, data)
    run = run_vmm(["--kernel", k, "--mem", "64"], timeout=30)
    assert run.rc == BAD_CONFIG, run
    msg = one_error(run)
    assert expect in msg and str(k) in msg, run


def bzimage(version=0x020f, xload=1, loadflags=1, setup_sects=1, payload=b"\xf4" * 512):
    img = bytearray(512 * (setup_sects + 1))
    img[0x1f1] = setup_sects
    img[0x1fe:0x200] = b"\x55\xaa"
    img[0x200:0x202] = b"\xeb\x66"  # jump past a 0x68-byte header
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, version)
    img[0x211] = loadflags
    struct.pack_into("<H", img, 0x236, xload)
    struct.pack_into("<I", img, 0x238, 2047)
    return bytes(img) + payload


@pytest.mark.parametrize("name,data,expect", [
    ("old-protocol", bzimage(version=0x020b), "2.11"),
    ("no-64bit-entry", bzimage(xload=0), "XLF_KERNEL_64"),
    ("zimage", bzimage(loadflags=0), "LOADED_HIGH"),
    ("no-payload", bzimage(setup_sects=30, payload=b""), "setup sectors"),
])
def test_bad_bzimage(tmp_path, name, data, expect):
    run = run_vmm(["--kernel", write(tmp_path, name, data)], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert expect in one_error(run), run


def test_kernel_missing_directory_and_special_file(tmp_path):
    for path, expect in [(tmp_path / "nope", "No such file or directory"),
                         (tmp_path, "is a directory"),
                         ("/dev/null", "not a regular file")]:
        run = run_vmm(["--kernel", path], timeout=30)
        assert run.rc == BAD_CONFIG, run
        assert expect in one_error(run), run


def test_kernel_unreadable(tmp_path):
    k = write(tmp_path, "k", elf_image([GOOD_SEG]))
    k.chmod(0)
    if os.geteuid() == 0:
        # root reads anything: drop to nobody to see the permission check.
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test as an unprivileged user"
        tmp_path.chmod(0o755)
        proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(VMM), "--kernel", str(k)], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == BAD_CONFIG, proc
        assert "Permission denied" in proc.stderr, proc
    else:
        run = run_vmm(["--kernel", k], timeout=30)
        assert run.rc == BAD_CONFIG and "Permission denied" in one_error(run), run


def test_initrd_too_large(tmp_path):
    k = write(tmp_path, "k", elf_image([GOOD_SEG]))
    initrd = tmp_path / "initrd"
    with open(initrd, "wb") as f:
        f.truncate(8 << 20)
    run = run_vmm(["--kernel", k, "--initrd", initrd, "--mem", "4"], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert "does not fit" in one_error(run), run


def test_command_line_too_large(tmp_path):
    k = write(tmp_path, "k", elf_image([GOOD_SEG]))
    run = run_vmm(["--kernel", k, "--cmdline", "x" * 2048], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert "command line is 2048 bytes; the limit is 2047" in one_error(run), run


@pytest.mark.parametrize("args,expect", [
    # The configuration's rules are Firecracker's, in its words, for every front end.
    (["--mem", "0"], "The memory size (MiB) is either 0, or not a multiple of the configured "
                     "page size."),
    (["--mem", "1"], "memory size 1 MiB is too small"),
    (["--mem", str(1 << 40)], "exceeds what this host allows"),
    (["--vcpus", "0"], "The number of vCPUs must be greater than 0, less than 254"),
    (["--vcpus", "255"], "The number of vCPUs must be greater than 0, less than 254"),
    (["--cpu-hide", "cx16,nosuchflag"], "unknown CPU feature 'nosuchflag'"),
    (["--mem", "3", "--huge-pages"], "not a multiple of the configured page size"),
])
def test_bad_machine_config(tmp_path, args, expect):
    k = write(tmp_path, "k", elf_image([GOOD_SEG]))
    run = run_vmm(["--kernel", k, *args], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert expect in one_error(run), run


@pytest.mark.parametrize("args,expect", [
    (["--mem", "abc"], "--mem: 'abc' is not a non-negative number"),
    (["--mem", "-5"], "--mem: '-5' is not a non-negative number"),
    (["--vcpus", "2x"], "--vcpus: '2x' is not a number"),
    (["--vcpus", "99999999999"], "too large"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--kernel"], "needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--level", "loud"], "--level: 'loud'"),
    ([], "no kernel image was given"),
])
def test_bad_arguments(args, expect):
    run = run_vmm(args, timeout=30)
    assert run.rc == BAD_ARGS, run
    assert expect in run.err, run


@pytest.mark.parametrize("args,expect", [
    (["--balloon", ""], "--balloon: the value is empty"),
    (["--kernel", ""], "--kernel: the value is empty"),
    (["--describe-snapshot", "s", "--kernel", "k"],
     "--describe-snapshot cannot be combined with --kernel"),
    (["--base-file", "m", "--diff-file", "d", "--kernel", "k"],
     "--base-file cannot be combined with --kernel"),
])
def test_refused_combinations_and_empty_values(args, expect):
    """An option that would be ignored, or an empty value (--balloon '' was 0 MiB), is
    refused with one message."""
    run = run_vmm(args, timeout=30)
    assert run.rc == BAD_ARGS, run
    assert expect in run.err, run


def test_dump_platform_creates_no_missing_parent(tmp_path):
    """--dump-platform DIR creates DIR, never the folders above it."""
    run = run_vmm(["--dump-platform", tmp_path / "x" / "y"], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert "cannot create" in run.err and "No such file or directory" in run.err, run
    assert not (tmp_path / "x").exists()
    run = run_vmm(["--dump-platform", tmp_path / "x"], timeout=30)
    assert run.rc == 0, run
    assert (tmp_path / "x" / "DSDT.dat").is_file()


def test_help_and_version():
    run = run_vmm(["--help"], timeout=30)
    assert run.rc == 0 and "--kernel FILE" in run.out
    run = run_vmm(["--version"], timeout=30)
    assert run.rc == 0 and run.out.startswith("vmm ")

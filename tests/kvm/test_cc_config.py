"""Confidential platforms at configuration time (no KVM needed): what each platform adds to
the machine description, the pef device tree, and the combinations refused (CC-10, CC-13)."""
import re
import shutil
import subprocess

import pytest

from conftest import run_vmm

PLATFORMS = ["sev", "pef", "s390-pv"]


def dump(tmp_path, *args):
    out = tmp_path / "platform"
    run = run_vmm(["--dump-platform", out, *args], timeout=30)
    assert run.rc == 0, run
    return out


def iasl_dsdt(tmp_path, out):
    iasl = shutil.which("iasl")
    assert iasl, "iasl (acpica-tools) is required"
    proc = subprocess.run([iasl, "-d", str(out / "DSDT.dat")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc
    return (out / "DSDT.dsl").read_text()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_platform_call_window_is_described(tmp_path, platform):
    dsl = iasl_dsdt(tmp_path, dump(tmp_path, "--confidential", platform, "--entropy"))
    if platform == "sev":
        assert "CVMM0001" not in dsl  # sev is driven through MSRs and hypercalls
    else:
        m = re.search(r'Device \(CCPW\).*?_HID, "CVMM0001".*?Memory32Fixed \(ReadWrite,\s*'
                      r'0xC0080000,.*?0x00001000', dsl, re.S)
        assert m, dsl
    assert "LNRO0005" in dsl


def test_pef_device_tree(tmp_path):
    out = dump(tmp_path, "--confidential", "pef", "--vcpus", "2", "--entropy",
               "--drive", f"path={tmp_path}/disk,ro")
    dtc = shutil.which("dtc")
    assert dtc, "dtc (device-tree-compiler) is required"
    proc = subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(out / "platform.dtb")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc  # no warnings either
    dts = proc.stdout
    assert re.search(r"memory@0 \{\s*device_type = \"memory\";\s*reg = <0x00 0x00 0x00 0x8000000>",
                     dts), dts
    assert dts.count('device_type = "cpu"') == 2, dts
    for addr, irq in (("c0001000", 5), ("c0002000", 6)):
        m = re.search(rf"virtio_mmio@{addr} \{{\s*compatible = \"virtio,mmio\";\s*"
                      rf"reg = <0x00 0x{addr} 0x00 0x1000>;\s*interrupts = <0x{irq:02x} 0x01>", dts)
        assert m, (addr, dts)
    assert 'compatible = "ibm,ultravisor"' in dts
    assert re.search(r'secure-memory@0 \{\s*compatible = "ibm,secure-memory";', dts), dts
    # Only pef machines get one. (--dump-platform creates its directory, not the parents.)
    (tmp_path / "sev").mkdir()
    assert not (dump(tmp_path / "sev", "--confidential", "sev") / "platform.dtb").exists()


@pytest.mark.parametrize("args,expect", [
    (["--confidential", "sev", "--drive", "path=/tmp/x,access-platform=off"],
     "drive 'drive0' has access_platform off, but a protected (sev) VM's devices must use "
     "VIRTIO_F_ACCESS_PLATFORM (CC-10)"),
    (["--confidential", "pef", "--entropy=access-platform=off"],
     "entropy 'entropy' has access_platform off"),
    (["--confidential", "s390-pv", "--vsock", "cid=3,uds=/tmp/v.sock,access-platform=off"],
     "vsock 'vsock' has access_platform off"),
    (["--confidential", "sev", "--balloon", "16"],
     "balloon inflation (amount_mib 16) is refused on a protected (sev) VM"),
    (["--confidential", "pef", "--huge-pages", "--mem", "64"],
     "huge pages cannot back a pef VM"),
])
def test_cc10_impossible_combinations_are_refused(tmp_path, args, expect):
    k = tmp_path / "k"
    k.write_bytes(b"\x7fELF")
    run = run_vmm(["--kernel", k, *args], timeout=30)
    assert run.rc == 152, run
    errors = [l for l in run.err.splitlines() if ":ERROR:" in l]
    assert len(errors) == 1 and expect in errors[0], run


def test_unknown_platform_is_a_bad_argument():
    run = run_vmm(["--confidential", "tdx", "--kernel", "x"], timeout=30)
    assert run.rc == 153 and "'tdx' is not one of sev, pef, s390-pv" in run.err, run

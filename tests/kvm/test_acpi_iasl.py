"""Validates the generated ACPI tables with ACPICA's iasl (Debian's acpica-tools).

For a few board configurations the tables are dumped as <NAME>.dat files, then:
  * `iasl -d` disassembles XSDT, FACP, APIC and DSDT without complaint (exit status 0, no
    error, warning, invalid or checksum message, no "Incorrect" note in the output .dsl);
  * the disassembly recompiles with iasl, without errors or warnings, to the same bytes
    (except the checksum and the compiler id/revision iasl stamps into the header), so every
    field iasl decoded means what we meant;
  * the RSDP, which iasl cannot load from a binary file (ACPICA: "Loading an RSDP is not
    supported"), is compiled by iasl's data table compiler from our field values and must
    come out byte-identical, checksums included;
  * the DSDT's ASL names the serial port, the i8042 and every virtio-mmio slot with its
    base and interrupt, and the VM generation ID as Linux's vmgenid driver looks for it
    (_CID VM_Gen_Counter, ADDR) with the Generic Event Device whose _EVT
    notifies it, on the GSI after the slots' (none when the slots take every GSI).

Needs no KVM. Run: /usr/bin/python3 -m pytest tests/kvm/test_acpi_iasl.py
(VMM_BUILD_DIR selects the build tree, default "build" under the repository root).
"""

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("VMM_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD

# (vCPUs, virtio-mmio slots): the smallest board, a typical one, and the largest vCPU count
# with every free GSI (5..23) used by a slot.
CONFIGS = [(1, 0), (2, 3), (254, 19)]

DATA_TABLES = ["XSDT", "FACP", "APIC", "DSDT"]
COMPLAINTS = re.compile(r"error|warning|invalid|checksum", re.IGNORECASE)
VIRTIO_BASE = 0xC0001000
VIRTIO_SIZE = 0x1000
VIRTIO_FIRST_GSI = 5


def dump_command(outdir, vcpus, virtio):
    """The command that writes <NAME>.dat per table into outdir: the VMM's own
    `--dump-platform`, for a machine with `virtio` read-only drives (one virtio-mmio slot
    each) described in a config file next to outdir."""
    drives = []
    for i in range(virtio):
        disk = outdir.parent / ("disk%d.img" % i)
        disk.write_bytes(b"\0" * 4096)
        drives.append({"drive_id": "d%d" % i, "path_on_host": str(disk),
                       "is_root_device": False, "is_read_only": True})
    config = outdir.parent / "config.json"
    config.write_text(json.dumps({"machine-config": {"vcpu_count": vcpus, "mem_size_mib": 128},
                                  "drives": drives}))
    return [str(BUILD / "vmm"), "--config-file", str(config), "--dump-platform", str(outdir)]


def iasl_path():
    path = shutil.which("iasl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("iasl not found (install acpica-tools)")
        pytest.skip("iasl not found (install acpica-tools)")
    return path


def run_iasl(args, cwd):
    """Runs iasl; returns (exit status, stdout+stderr)."""
    proc = subprocess.run([iasl_path()] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "vcpus%d-virtio%d" % c)
def tables(request, tmp_path_factory):
    vcpus, virtio = request.param
    outdir = tmp_path_factory.mktemp("tables-%d-%d" % (vcpus, virtio)) / "tables"
    cmd = dump_command(outdir, vcpus, virtio)
    if not Path(cmd[0]).exists():
        pytest.fail("%s missing: build it first (cmake --build %s)" % (cmd[0], BUILD))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in DATA_TABLES + ["RSDP"]:
        assert (outdir / (name + ".dat")).is_file(), "no %s.dat in %s" % (name, outdir)
    return {"dir": outdir, "vcpus": vcpus, "virtio": virtio}


def disassemble(tables, name):
    """iasl -d NAME.dat, checked; returns the .dsl text."""
    status, out = run_iasl(["-d", name + ".dat"], tables["dir"])
    assert status == 0, "iasl -d %s.dat failed:\n%s" % (name, out)
    # The banner names the "Compiler/Disassembler"; nothing else may say error/warning/...
    complaints = [l for l in out.splitlines() if COMPLAINTS.search(l)]
    assert not complaints, "iasl -d %s.dat complained:\n%s" % (name, "\n".join(complaints))
    dsl = (tables["dir"] / (name + ".dsl")).read_text()
    assert "Incorrect" not in dsl, dsl
    return dsl


def compile_dsl(tables, name, extra=()):
    """Recompiles NAME.dsl; returns the .aml bytes."""
    dsl = tables["dir"] / (name + ".dsl")
    aml = tables["dir"] / (name + ".aml")
    aml.unlink(missing_ok=True)
    status, out = run_iasl(list(extra) + ["-p", name, dsl.name], tables["dir"])
    assert status == 0, "iasl %s.dsl failed:\n%s" % (name, out)
    summary = re.search(r"Compilation successful\.\s+(\d+) Errors, (\d+) Warnings", out)
    assert summary, out
    assert summary.group(1) == "0" and summary.group(2) == "0", out
    return aml.read_bytes()


def same_but_compiler_stamp(ours, theirs):
    """Equal except the checksum (byte 9) and the compiler id/revision (28..35)."""
    assert len(ours) == len(theirs)
    return all(a == b for i, (a, b) in enumerate(zip(ours, theirs)) if i != 9 and not 28 <= i < 36)


@pytest.mark.parametrize("name", DATA_TABLES)
def test_iasl_disassembles_and_recompiles(tables, name):
    disassemble(tables, name)
    # Without -oa iasl would shorten "\_SB_" to "_SB_"; keep its output comparable.
    aml = compile_dsl(tables, name, extra=["-oa"] if name == "DSDT" else [])
    ours = (tables["dir"] / (name + ".dat")).read_bytes()
    assert same_but_compiler_stamp(ours, aml), "%s does not survive an iasl round trip" % name


RSDP_TEMPLATE = """\
[0008]                          Signature : "RSD PTR "
[0001]                           Checksum : 00
[0006]                             Oem ID : "{oem}"
[0001]                           Revision : {rev:02X}
[0004]                       RSDT Address : {rsdt:08X}
[0004]                             Length : {length:08X}
[0008]                       XSDT Address : {xsdt:016X}
[0001]                  Extended Checksum : 00
[0003]                           Reserved : 000000
"""


def test_iasl_rsdp(tables):
    ours = (tables["dir"] / "RSDP.dat").read_bytes()
    assert len(ours) == 36 and ours[:8] == b"RSD PTR "
    rsdt, length, xsdt = struct.unpack_from("<IIQ", ours, 16)
    src = RSDP_TEMPLATE.format(oem=ours[9:15].decode("ascii"), rev=ours[15], rsdt=rsdt,
                               length=length, xsdt=xsdt)
    (tables["dir"] / "rsdp_ref.asl").write_text(src)
    status, out = run_iasl(["rsdp_ref.asl"], tables["dir"])
    assert status == 0 and "0 Errors, 0 Warnings" in out, out
    ref = (tables["dir"] / "rsdp_ref.aml").read_bytes()
    assert ours == ref, "RSDP differs from iasl's:\nours   %s\niasl's %s" % (ours.hex(), ref.hex())


def strip_comments(dsl):
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", dsl, flags=re.DOTALL)


def test_dsdt_describes_devices(tables):
    dsl = disassemble(tables, "DSDT")
    assert 'EisaId ("PNP0501")' in dsl
    assert 'EisaId ("PNP0303")' in dsl
    assert dsl.count('"LNRO0005"') == tables["virtio"]

    # One Device block per platform device, each with its own resources.
    asl = strip_comments(dsl)
    devices = dict(re.findall(r"Device \((\w{4})\)\s*\{(.*?)\n        \}", asl, re.DOTALL))
    vmgenid = tables["virtio"] < 19
    assert len(devices) == 2 + tables["virtio"] + 2 * vmgenid, sorted(devices)
    if vmgenid:
        vgen = devices["VGEN"]
        assert re.search(r'Name \(_HID, "CVMM0002"\)', vgen), vgen
        assert re.search(r'Name \(_CID, "VM_Gen_Counter"\)', vgen), vgen
        addr = re.search(r"Name \(ADDR, Package \(0x02\)\s*\{\s*0x([0-9A-F]+),\s*Zero\s*\}",
                         vgen)
        assert addr and int(addr.group(1), 16) == 0xC0100000, vgen
        ged = devices["VGED"]
        assert re.search(r'Name \(_HID, "ACPI0013"\s*\)', ged), ged  # iasl: "Generic Event Device"
        irq = re.search(r"Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)\s*"
                        r"\{\s*0x([0-9A-F]{8}),\s*\}", ged)
        assert irq and int(irq.group(1), 16) == VIRTIO_FIRST_GSI + tables["virtio"], ged
        assert re.search(r"Method \(_EVT, 1, NotSerialized\)\s*\{\s*"
                         r"Notify \(\\_SB\.VGEN, 0x80\)\s*\}", ged), ged
    else:
        assert "VGEN" not in devices and "VGED" not in devices
    com1 = devices["COM1"]
    assert re.search(r"IO \(Decode16,\s*0x03F8,\s*0x03F8,\s*0x01,\s*0x08,\s*\)", com1), com1
    assert re.search(r"IRQNoFlags \(\)\s*\{4\}", com1), com1
    kbd = devices["PS2K"]
    assert re.search(r"IO \(Decode16,\s*0x0060,\s*0x0060,\s*0x01,\s*0x01,\s*\)\s*"
                     r"IO \(Decode16,\s*0x0064,\s*0x0064,\s*0x01,\s*0x01,\s*\)\s*"
                     r"IRQNoFlags \(\)\s*\{1\}", kbd), kbd
    for i in range(tables["virtio"]):
        body = devices["VR%02d" % i]
        assert re.search(r'Name \(_HID, "LNRO0005"\)', body), body
        uid = re.search(r"Name \(_UID, (\w+)\)", body).group(1)
        assert {"Zero": 0, "One": 1}.get(uid, uid) in (i, "0x%02X" % i), body
        crs = re.search(r"Memory32Fixed \(ReadWrite,\s*0x([0-9A-F]{8}),\s*0x([0-9A-F]{8}),\s*\)\s*"
                        r"Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)\s*"
                        r"\{\s*0x([0-9A-F]{8}),\s*\}", body)
        assert crs, body
        assert int(crs.group(1), 16) == VIRTIO_BASE + i * VIRTIO_SIZE
        assert int(crs.group(2), 16) == VIRTIO_SIZE
        assert int(crs.group(3), 16) == VIRTIO_FIRST_GSI + i

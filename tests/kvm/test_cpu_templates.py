"""CPU templates through the API (docs/cpu-templates.md): PUT /cpu-config's shapes and
Firecracker's messages, machine-config's static templates and their vendor rule, a probe
guest booted under a custom template (its MSR seen from inside the guest, its CPUID in the
snapshot's record of what KVM gave the vCPU), and a restore refused on a host that lacks a
recorded CPUID bit.
"""
import struct
import subprocess

import pytest

from conftest import VMM
from test_api import boot_source
from test_snapshot import crc64
from vmm_api import VmmProcess, check

PAT = 0x277
# PAT entry 7 (bits 56-58) from UC (0) to WB (6): valid for KVM, read back by the guest.
PAT_BITMAP = "0b" + "xxxxx110" + "x" * 56
TEMPLATE = {
    "kvm_capabilities": ["!56"],
    "cpuid_modifiers": [
        {"leaf": "0x7", "subleaf": "0x0", "flags": 1,
         # fsgsbase (bit 0) and bmi1 (bit 3) cleared
         "modifiers": [{"register": "ebx", "bitmap": "0bxxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_0xx0"}]},
    ],
    "msr_modifiers": [{"addr": "0x277", "bitmap": PAT_BITMAP}],
}
FOLDED = {
    "kvm_capabilities": ["!56"],
    "cpuid_modifiers": [{"leaf": "0x7", "subleaf": "0x0", "flags": 1,
                         "modifiers": [{"register": "ebx",
                                        "bitmap": "0b" + "x" * 28 + "0xx0"}]}],
    "msr_modifiers": [{"addr": "0x277", "bitmap": PAT_BITMAP}],
}


def host_vendor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":")[1].strip()
    return ""


@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path)
    yield v
    v.kill()


def test_put_cpu_config_shapes_and_messages(vmm):
    check(vmm.put("/cpu-config", TEMPLATE), 204)
    cfg = check(vmm.get("/vm/config"), 200)
    assert cfg["cpu-config"] == FOLDED, cfg
    assert "cpu_template" not in cfg["machine-config"]
    # Firecracker's messages, word for word, after where the value is.
    for body, fault in [
        ({"cpuid_modifiers": [{"leaf": "7", "subleaf": "0x0", "flags": 1, "modifiers": []}]},
         "cpuid_modifiers[0]: No supported number system prefix found in value [7]. Make sure "
         "to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers."),
        ({"msr_modifiers": [{"addr": "0x277", "bitmap": "0b12"}]},
         "msr_modifiers[0]: Failed to parse string [0b12] as a bitmap - unknown character: 50"),
        ({"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0,
                               "modifiers": [{"register": "rax", "bitmap": "0b1"}]}]},
         "cpuid_modifiers[0].modifiers[0]: Invalid CPUID register. Must be one of "
         "[eax, ebx, ecx, edx]"),
        ({"kvm_capabilities": ["x"]},
         "kvm_capabilities[0]: Failed to parse string [x] as a kvm capability - can not "
         "convert to numeric: invalid digit found in string"),
        ({"vcpu_features": []}, "unknown field `vcpu_features`"),
    ]:
        assert fault in check(vmm.put("/cpu-config", body), 400)["fault_message"], body
    # A refused body changes nothing.
    assert check(vmm.get("/vm/config"), 200)["cpu-config"] == FOLDED
    # A static template replaces the custom one, and "None" drops it.
    check(vmm.patch("/machine-config", {"cpu_template": "T2A"}), 204)
    assert check(vmm.get("/machine-config"), 200)["cpu_template"] == "T2A"
    assert check(vmm.get("/vm/config"), 200)["cpu-config"] is None
    check(vmm.patch("/machine-config", {"cpu_template": "None"}), 204)
    assert "cpu_template" not in check(vmm.get("/machine-config"), 200)
    # aarch64's V1N1 is no variant of x86_64's StaticCpuTemplate (serde's words).
    check(vmm.patch("/machine-config", {"cpu_template": "V1N1"}), 400,
          "unknown variant `V1N1`, expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, `T2A`")
    vmm.stop()


@pytest.mark.usefixtures("kvm")
def test_static_template_of_the_other_vendor_refused(vmm):
    other = "T2A" if host_vendor() == "GenuineIntel" else "T2"
    check(vmm.put("/boot-source", boot_source("cpuid")), 204)
    check(vmm.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                      "cpu_template": other}), 204)
    check(vmm.put("/actions", {"action_type": "InstanceStart"}), 400,
          "CPU vendor mismatched between actual CPU and CPU template.")
    assert check(vmm.get("/"), 200)["state"] == "Not started"


@pytest.mark.usefixtures("kvm")
def test_static_template_of_this_vendor_boots_and_is_recorded(tmp_path):
    mine = "T2S" if host_vendor() == "GenuineIntel" else "T2A"
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                        "cpu_template": mine}), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        assert check(v.get("/vm/config"), 200)["machine-config"]["cpu_template"] == mine
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(tmp_path / "state"),
                                         "mem_file_path": str(tmp_path / "mem")}), 204)
    finally:
        v.kill()
    r = subprocess.run([str(VMM), "--describe-snapshot", str(tmp_path / "state")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and f"CPU template: {mine} (static)" in r.stdout, r


@pytest.mark.usefixtures("kvm")
def test_template_bits_the_host_lacks_refused(vmm):
    check(vmm.put("/boot-source", boot_source("cpuid")), 204)
    check(vmm.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
    # TME (leaf 7 ecx bit 13): no KVM offers it.
    check(vmm.put("/cpu-config", {"cpuid_modifiers": [
        {"leaf": "0x7", "subleaf": "0x0", "flags": 1,
         "modifiers": [{"register": "ecx", "bitmap": "0b1" + "x" * 13}]}]}), 204)
    check(vmm.put("/actions", {"action_type": "InstanceStart"}), 400,
          "the CPU template sets leaf 0x7 subleaf 0x0 ecx bit 13, which this host's KVM does "
          "not provide")
    check(vmm.put("/cpu-config", {"cpuid_modifiers": [
        {"leaf": "0x4000ffff", "subleaf": "0x0", "flags": 0, "modifiers": []}]}), 204)
    check(vmm.put("/actions", {"action_type": "InstanceStart"}), 400,
          "Template changes a CPUID entry not supported by KVM: Leaf: 4000ffff, Subleaf: 0")
    check(vmm.put("/cpu-config", {"kvm_capabilities": ["99999"]}), 204)
    check(vmm.put("/actions", {"action_type": "InstanceStart"}), 400,
          "Missing KVM capabilities: 0x1869f")
    assert check(vmm.get("/"), 200)["state"] == "Not started"


def cpuc_leaf(payload, leaf, subleaf):
    """The recorded kvm_cpuid_entry2 of (leaf, subleaf) in the state file's CPUC section:
    its offset in payload and (flags, eax, ebx, ecx, edx)."""
    sec = payload.index(b"CPUC")
    end = sec + 16 + struct.unpack_from("<Q", payload, sec + 8)[0]
    # The vCPU's entries follow the template's modifiers (which start alike): the last match,
    # each entry a blob (its u32 length, 40, first: leaf 1 subleaf 0 alone matches values too).
    at = payload.rindex(struct.pack("<III", 40, leaf, subleaf), sec, end) + 4
    return at, struct.unpack_from("<IIIII", payload, at + 8)


def snapshot_leaf7(d, template):
    """Boots the idle probe (with the template), snapshots it, returns the recorded leaf 7."""
    d.mkdir()
    v = VmmProcess(d)
    try:
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        if template:
            check(v.put("/cpu-config", template), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        if template:
            check(v.put("/cpu-config", template), 400,
                  "The requested operation is not supported after starting the microVM.")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(d / "state"),
                                         "mem_file_path": str(d / "mem")}), 204)
    finally:
        v.kill()
    return cpuc_leaf((d / "state").read_bytes()[40:], 7, 0)[1]


@pytest.mark.usefixtures("kvm")
def test_template_cpuid_given_to_the_vcpu(tmp_path):
    """The CPUID KVM holds for the vCPU (KVM_GET_CPUID2, which the snapshot records) has the
    template's bits. (This platform's PVM KVM answers the guest's CPUID instruction from the
    host CPU, whatever the table: docs/platform-notes.md; the Linux bed sees it in the guest.)"""
    plain = snapshot_leaf7(tmp_path / "plain", None)
    ebx = plain[2]
    bits = [b for b in range(32) if ebx >> b & 1 and b not in (6, 9, 13)][:2]
    assert bits, f"KVM offers no leaf 7 ebx feature here: {ebx:#x}"
    bitmap = "".join("0" if b in bits else "x" for b in range(31, -1, -1))
    template = {"cpuid_modifiers": [{"leaf": "0x7", "subleaf": "0x0", "flags": 1,
                                     "modifiers": [{"register": "ebx", "bitmap": "0b" + bitmap}]}]}
    templated = snapshot_leaf7(tmp_path / "t", template)
    mask = sum(1 << b for b in bits)
    assert templated[2] == ebx & ~mask, (hex(ebx), hex(templated[2]))
    assert templated[3] == plain[3] and templated[1] == plain[1]


@pytest.mark.usefixtures("kvm")
def test_template_msr_seen_by_the_guest(vmm):
    check(vmm.put("/boot-source", boot_source("cpuid", f"probe.msr={PAT:#x}")), 204)
    check(vmm.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
    check(vmm.put("/cpu-config", TEMPLATE), 204)
    check(vmm.put("/actions", {"action_type": "InstanceStart"}), 204)
    vmm.wait_output("probe: ok cpuid")
    assert "probe: msr 277: 607040600070406" in vmm.out(), vmm.out()


@pytest.mark.usefixtures("kvm")
def test_restore_refused_when_the_host_lacks_a_recorded_bit(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    v = VmmProcess(d)
    try:
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(v.put("/cpu-config", TEMPLATE), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(d / "state"),
                                         "mem_file_path": str(d / "mem")}), 204)
    finally:
        v.kill()
    data = (d / "state").read_bytes()
    payload = bytearray(data[40:])
    at, regs = cpuc_leaf(bytes(payload), 7, 0)
    # The recorded vCPU had TME (leaf 7 ecx bit 13), which no KVM offers.
    struct.pack_into("<I", payload, at + 20, regs[3] | 1 << 13)
    bad = tmp_path / "bad.state"
    bad.write_bytes(data[:24] + struct.pack("<Q", crc64(bytes(payload))) + data[32:40] +
                    bytes(payload))
    for name, state, status in [("refused", bad, 400), ("loaded", d / "state", 204)]:
        w = tmp_path / name
        w.mkdir()
        r = VmmProcess(w, instance_id=name)
        try:
            resp = r.put("/snapshot/load", {"snapshot_path": str(state),
                                            "mem_file_path": str(d / "mem")})
            if status == 400:
                check(resp, 400,
                      "the snapshot's vCPUs (a custom CPU template) have leaf 0x7 subleaf 0x0 "
                      "ecx bit 13, which this host's KVM does not provide")
                # A load that failed once begun ends the process (Firecracker's rule).
                assert r.wait_exit(30) == 1, r.err()
            else:
                check(resp, 204)
                # The restored VM's configuration shows its template.
                assert check(r.get("/vm/config"), 200)["cpu-config"] == FOLDED
        finally:
            r.kill()

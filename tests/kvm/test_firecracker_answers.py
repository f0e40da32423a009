"""Firecracker's exact answers (issue 18): what Firecracker's own API integration tests
(tests/integration_tests/functional/test_api.py) and its sources expect for each request,
status, fault_message, headers and body, pinned one test per item of the issue, with the
probe guest standing in for Linux. A platform that drives Firecracker checks these.

Every answer is also held to api/openapi.yaml (vmm_api.check). The deliberate differences
(docs/api.md) are pinned at the end.
"""
import json
import os
import re
import subprocess

import pytest

from conftest import VMM, run_vmm
from test_api import AFTER, BEFORE, boot_source, start
from test_cpu_templates import cpuc_leaf
from vmm_api import VmmProcess, check, probe_kernel

DESERIALIZE = "An error occurred when deserializing the json body of a request: "
# GET /vm/config's keys, in the order Firecracker's VmmConfig serialises them.
VM_CONFIG_KEYS = ["balloon", "drives", "boot-source", "cpu-config", "logger", "machine-config",
                  "metrics", "mmds-config", "network-interfaces", "vsock", "entropy", "pmem",
                  "memory-hotplug"]


@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path)
    yield v
    v.kill()


def fault(resp):
    """The whole fault message of a 400 answer (checked against the document)."""
    return check(resp, 400)["fault_message"]


# ---- 1. PUT /serial is not reported by GET /vm/config ----

def test_01_vm_config_has_firecrackers_keys_and_no_serial(vmm, tmp_path):
    check(vmm.put("/serial", {"serial_out_path": str(tmp_path / "serial.log")}), 204)
    cfg = check(vmm.get("/vm/config"), 200)
    assert list(cfg) == VM_CONFIG_KEYS
    vmm.stop()


# ---- 2. a kernel that cannot be opened ----

def test_02_kernel_file_cannot_be_opened(vmm):
    assert fault(vmm.put("/boot-source", {"kernel_image_path": "foo.bar"})) == (
        "Boot source error: The kernel file cannot be opened: No such file or directory "
        "(os error 2)")
    assert fault(vmm.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                          "initrd_path": "foo.bar"})) == (
        "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
        "permissions. No such file or directory (os error 2)")
    vmm.stop()


# ---- 3. a multicast guest MAC ----

def test_03_multicast_guest_mac_accepted(vmm):
    check(vmm.put("/network-interfaces/2", {"iface_id": "2", "guest_mac": "07:00:00:00:00:01",
                                            "host_dev_name": "vmtap2"}), 204)
    nets = check(vmm.get("/vm/config"), 200)["network-interfaces"]
    assert nets[0]["guest_mac"] == "07:00:00:00:00:01"
    vmm.stop()


# ---- 4. serde's messages, with line and column ----

def test_04_deserialization_errors_carry_line_and_column(vmm):
    # The two cases test_api.py checks (requests' json=: '{"mem_size_mib": 128}').
    assert fault(vmm.put("/machine-config", {"mem_size_mib": 128})) == (
        DESERIALIZE + "missing field `vcpu_count` at line 1 column 21.")
    assert fault(vmm.put("/machine-config", {"vcpu_count": 2})) == (
        DESERIALIZE + "missing field `mem_size_mib` at line 1 column 17.")
    # Document order, serde's types and positions (after the value, after the key).
    assert fault(vmm.put("/machine-config", {"vcpu_count": "-2"})) == (
        DESERIALIZE + 'invalid type: string "-2", expected u8 at line 1 column 19.')
    assert fault(vmm.put("/machine-config", data='{\n  "vcpu_count": 1,\n  "memory": 2\n}')) \
        == (DESERIALIZE + "unknown field `memory`, expected one of `vcpu_count`, "
            "`mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages`, "
            "`cpu_hide`, `pit` at line 3 column 10.")
    assert fault(vmm.put("/drives/a", {"drive_id": "a", "is_root_device": True,
                                       "rate_limiter": {"ops": {"size": 1}}})) == (
        DESERIALIZE + "missing field `refill_time` at line 1 column 77.")
    # Nothing was changed by the refusals.
    assert check(vmm.get("/machine-config"), 200)["vcpu_count"] == 1
    vmm.stop()


# ---- 5. deprecated fields: "Deprecation: true" and a log line ----

def test_05_deprecated_fields_answered_with_the_header(vmm, tmp_path):
    r = vmm.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256,
                                    "cpu_template": "None"})
    check(r, 204)
    assert r.headers["Deprecation"] == "true"
    r = vmm.patch("/machine-config", {"cpu_template": "None"})
    check(r, 204)
    assert r.headers["Deprecation"] == "true"
    r = vmm.put("/vsock", {"vsock_id": "vsock1", "guest_cid": 15,
                           "uds_path": str(tmp_path / "v.sock")})
    check(r, 204)
    assert r.headers["Deprecation"] == "true"
    # Not reported back, as Firecracker never reports it.
    assert check(vmm.get("/vm/config"), 200)["vsock"] == {"guest_cid": 15,
                                                        "uds_path": str(tmp_path / "v.sock")}
    r = vmm.put("/vsock", {"guest_cid": 15, "uds_path": str(tmp_path / "v.sock")})
    check(r, 204)
    assert "Deprecation" not in r.headers
    vmm.stop()
    log = vmm.err()
    assert "PUT /machine-config: cpu_template field is deprecated." in log, log
    assert "PATCH /machine-config: cpu_template field is deprecated." in log, log
    assert "PUT /vsock: vsock_id field is deprecated." in log, log


def test_05_deprecated_snapshot_load_answered_with_the_header(vmm):
    """test_negative_snapshot_load_api: a failed load that used mem_file_path still says it
    is deprecated (and then the process ends, item 12)."""
    r = vmm.put("/snapshot/load", {"snapshot_path": "foo", "mem_file_path": "bar"})
    check(r, 400)
    assert r.headers["Deprecation"] == "true"
    assert vmm.wait_exit(30) == 1
    assert "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are " \
           "deprecated." in vmm.err()


# ---- 6. mem_backend and mem_file_path together ----

def test_06_snapshot_load_memory_fields_exclusive(vmm):
    assert fault(vmm.put("/snapshot/load", {
        "snapshot_path": "foo", "mem_backend": {"backend_type": "File", "backend_path": "bar"},
        "mem_file_path": "bar"})) == (
        DESERIALIZE + "too many fields: either `mem_backend` or `mem_file_path` exclusively is "
        "required.")
    assert fault(vmm.put("/snapshot/load", {"snapshot_path": "foo"})) == (
        DESERIALIZE + "missing field: either `mem_backend` or `mem_file_path` is required.")
    assert fault(vmm.put("/snapshot/load", {"snapshot_path": "foo",
                                            "mem_backend": {"backend_path": "bar"}})) == (
        DESERIALIZE + "missing field `backend_type` at line 1 column 63.")
    # Refused before anything was loaded: the process stays.
    assert check(vmm.get("/"), 200)["state"] == "Not started"
    vmm.stop()


# ---- 7. the endpoints built since (MMDS, cpu-config, pmem, hotplug, hinting): Firecracker's
# order of checks, the body first, then the phase ----

PMEM = {"id": "p0", "path_on_host": "/tmp/x"}
PMEM_PATCH = {"id": "p0"}


def test_07_unbuilt_endpoints_check_the_phase_first(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        before = [
            ("PATCH", "/pmem/p0", PMEM_PATCH, BEFORE),
            ("PATCH", "/hotplug/memory", {"requested_size_mib": 512}, BEFORE),
            ("PATCH", "/balloon/hinting/start", None, BEFORE),
            ("GET", "/balloon/hinting/status", None, BEFORE),
            ("PATCH", "/balloon/hinting/stop", {}, BEFORE),
        ]
        after = [
            # Built since (mmds16): Firecracker's phase answer.
            ("PUT", "/mmds/config", {"network_interfaces": ["1"]}, AFTER),
            # Built since (cpu16): Firecracker's phase answer.
            ("PUT", "/cpu-config", {}, AFTER),
            # Built since (mem15): Firecracker's phase answers.
            ("PUT", "/pmem/p0", PMEM, "PCI is not enabled"),
            ("PUT", "/hotplug/memory", {"total_size_mib": 1024}, AFTER),
            # Built since (balloon15): Firecracker's answer without a balloon.
            ("PATCH", "/balloon/hinting/start", {},
             "Balloon update error: Failed perform action on device: Device not found"),
        ]
        for phase in (before, after):
            for method, path, body, expect in phase:
                got = fault(v.request(method, path, body))
                assert got == expect, (method, path, got)
            if phase is before:
                # A malformed body is refused as such first.
                assert fault(v.put("/mmds/config", data="{")) == (
                    DESERIALIZE + "EOF while parsing an object at line 1 column 1.")
                start(v)
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0
    finally:
        v.kill()


# ---- 8. Firecracker's words for drives, interfaces and the memory backend ----

def test_08_device_refusals_in_firecrackers_words(kvm, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(disk),
                                       "is_root_device": True}), 204)
        assert fault(v.put("/drives/scratch", {"drive_id": "scratch", "path_on_host": str(disk),
                                               "is_root_device": True})) == (
            "Drive config error: A root block device already exists!")
        assert fault(v.put("/drives/scratch", {"drive_id": "scratch",
                                               "path_on_host": "foo.bar",
                                               "is_root_device": False})) == (
            "Drive config error: Unable to create the virtio block device: Virtio backend "
            "error: Error manipulating the backing file: No such file or directory (os error 2) "
            "foo.bar")
        # test_net_api_put_update_pre_boot, step by step (the TAPs are opened at the start).
        check(v.put("/network-interfaces/1", {"iface_id": "1", "guest_mac": "06:00:00:00:00:01",
                                              "host_dev_name": "tap1"}), 204)
        check(v.put("/network-interfaces/2", {"iface_id": "2", "guest_mac": "07:00:00:00:00:01",
                                              "host_dev_name": "tap2"}), 204)
        assert fault(v.put("/network-interfaces/2", {"iface_id": "2", "host_dev_name": "tap2",
                                                     "guest_mac": "06:00:00:00:00:01"})) == (
            "Network config error: The MAC address is already in use: 06:00:00:00:00:01")
        check(v.put("/network-interfaces/2", {"iface_id": "2", "host_dev_name": "tap2",
                                              "guest_mac": "08:00:00:00:00:01"}), 204)
        assert fault(v.put("/network-interfaces/1", {"iface_id": "1", "host_dev_name": "tap2",
                                                     "guest_mac": "06:00:00:00:00:01"})) == (
            "Network config error: Could not create the network device: Open tap device failed: "
            "Error while creating ifreq structure: Device or resource busy (os error 16). "
            "Invalid TUN/TAP Backend provided by tap2. Check our documentation on setting up "
            "the network devices.")
        # As in Firecracker, the interface being replaced is gone, and its MAC free again.
        check(v.put("/network-interfaces/3", {"iface_id": "3", "host_dev_name": "tap3",
                                              "guest_mac": "06:00:00:00:00:01"}), 204)
        assert [n["iface_id"] for n in check(v.get("/vm/config"), 200)["network-interfaces"]] \
            == ["2", "3"]
        for i in ("2", "3"):  # no TAP here: the probe boots without them
            check(v.patch("/network-interfaces/" + i, {"iface_id": i}), 400, BEFORE)
        assert fault(v.put("/snapshot/load", {"snapshot_path": "foo", "mem_backend": {
            "backend_type": "foo", "backend_path": "bar"}})) == (
            DESERIALIZE + "unknown variant `foo`, expected `File` or `Uffd` at line 1 column 62.")
        v.stop()
    finally:
        v.kill()
    patch_scratch_drive(tmp_path / "started", disk, {"drive_id": "scratch",
                                                     "path_on_host": "foo.bar"},
                        "Drive config error: Unable to patch the block device: Block: Virtio "
                        "backend error: Error manipulating the backing file: No such file or "
                        "directory (os error 2) foo.bar Please verify the request arguments.")


# ---- 9. integers are exact; any memory size until the start ----

def test_09_memory_size_exact_and_checked_at_start(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        # 2^64 does not fit usize: serde reads it as a float.
        assert fault(v.put("/machine-config", {"mem_size_mib": 1 << 64})) == (
            DESERIALIZE + "invalid type: floating point `1.8446744073709552e+19`, expected "
            "usize at line 1 column 37.")
        check(v.put("/boot-source", boot_source("idle")), 204)
        # u64::MAX fits: taken as it is (never rounded through a double) ...
        check(v.patch("/machine-config", {"mem_size_mib": (1 << 64) - 1}), 204)
        assert check(v.get("/machine-config"), 200)["mem_size_mib"] == (1 << 64) - 1
        # ... and refused when the memory is mapped, the VMM staying configurable.
        assert fault(v.put("/actions", {"action_type": "InstanceStart"})) == (
            "Start microvm error: Invalid Memory Configuration: Cannot create mmap region: "
            "Out of memory (os error 12)")
        assert fault(v.patch("/machine-config", {"mem_size_mib": 0})) == (
            "Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
            "configured page size.")
        check(v.patch("/machine-config", {"mem_size_mib": 64}), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0
    finally:
        v.kill()


# ---- 10. PATCH /drives with only drive_id ----

def patch_scratch_drive(where, disk, body, expect):
    """PATCH /drives/scratch on a running probe with that drive: the whole fault message."""
    where.mkdir()
    v = VmmProcess(where)
    try:
        check(v.put("/drives/scratch", {"drive_id": "scratch", "path_on_host": str(disk),
                                        "is_root_device": False}), 204)
        start(v)
        assert fault(v.patch("/drives/scratch", body)) == expect
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0
    finally:
        v.kill()


def test_10_drive_patch_without_an_update(kvm, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    patch_scratch_drive(tmp_path / "vm", disk, {"drive_id": "scratch"},
                        "Drive config error: Unable to patch the block device: Block: Running "
                        "method expected different backend. Please verify the request arguments.")


# ---- 11. smt: two threads per core ----

def cpuid_lines(v):
    """{leaf: (eax, ebx, ecx, edx)} from the `topology` probe's lines."""
    out = {}
    for line in v.probe_lines():
        m = re.match(r"probe: cpuid (\S+) eax=(\w+) ebx=(\w+) ecx=(\w+) edx=(\w+)$", line)
        if m:
            out[m.group(1)] = tuple(int(x, 16) for x in m.groups()[1:])
    return out


def guest_topology(tmp_path, name, smt, template=None):
    d = tmp_path / name
    d.mkdir()
    v = VmmProcess(d)
    try:
        check(v.put("/boot-source", boot_source("topology")), 204)
        check(v.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 32, "smt": smt}), 204)
        if template is not None:
            check(v.put("/cpu-config", template), 204)
        assert check(v.get("/machine-config"), 200)["smt"] is smt
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        assert v.wait_exit(30) == 0, v.err()
        assert "probe: ok topology" in v.out(), v.out()
        return cpuid_lines(v)
    finally:
        v.kill()


def test_11_smt_two_threads_per_core(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        check(v.patch("/machine-config", {"smt": True}), 204)
        assert fault(v.put("/machine-config", {"vcpu_count": 3, "mem_size_mib": 64,
                                               "smt": True})) == (
            "Machine config error: The number of vCPUs must be greater than 0, less than 254 "
            "and must be 1 or an even number if SMT is enabled.")
        v.stop()
    finally:
        v.kill()
    on, off = guest_topology(tmp_path, "smt", True), guest_topology(tmp_path, "nosmt", False)
    for c in (on, off):
        assert (c["1"][1] >> 16) & 0xff == 2 and c["1"][3] & (1 << 28)  # 2 logical, HTT
        assert c["0xb.1"][1] & 0xffff == 2 and (c["0xb.1"][2] >> 8) & 0xff == 2  # core level
    # The SMT level: two threads to a core (one bit of the APIC id), or one.
    assert on["0xb.0"][0] & 0x1f == 1 and on["0xb.0"][1] & 0xffff == 2
    assert off["0xb.0"][0] & 0x1f == 0 and off["0xb.0"][1] & 0xffff == 1
    vendor = b"".join(on["0"][i].to_bytes(4, "little") for i in (1, 3, 2))
    if vendor == b"GenuineIntel":
        # One core of two threads; the core's caches shared by both.
        assert on["4.0"][0] >> 26 == 0 and (on["4.0"][0] >> 14) & 0xfff == 1
        assert off["4.0"][0] >> 26 == 1 and (off["4.0"][0] >> 14) & 0xfff == 0
    else:
        # Core 0, two threads per compute unit.
        assert on["0x8000001e"][1] & 0xff == 0 and (on["0x8000001e"][1] >> 8) & 0xff == 1
        assert (off["0x8000001e"][1] >> 8) & 0xff == 0


def test_11_smt_with_a_cpu_template(kvm, tmp_path):
    """The template applies to KVM's CPUID, the normalisation after it (Firecracker's order,
    its CPUID normalization document): a template's bit stays, and so does the SMT topology,
    even where the template names the topology's own field. Read from the snapshot's record of
    what vCPU 0 was given (this platform's KVM answers the guest's CPUID feature bits from
    the host CPU: test_cpu_templates.py)."""
    template = {"cpuid_modifiers": [
        # popcnt (leaf 1 ecx bit 23) cleared; leaf 1 ebx's logical count asked to be 7.
        {"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [
            {"register": "ecx", "bitmap": "0b0" + "x" * 23},
            {"register": "ebx", "bitmap": "0b00000111" + "x" * 16}]}]}
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 32, "smt": True}), 204)
        check(v.put("/cpu-config", template), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(tmp_path / "state"),
                                         "mem_file_path": str(tmp_path / "mem")}), 204)
    finally:
        v.kill()
    payload = (tmp_path / "state").read_bytes()[40:]
    _, (_, _, ebx, ecx, edx) = cpuc_leaf(payload, 1, 0)
    assert not ecx & (1 << 23), hex(ecx)
    assert (ebx >> 16) & 0xff == 2 and edx & (1 << 28), (hex(ebx), hex(edx))  # 2 logical, HTT
    _, (_, eax, ebx, _, _) = cpuc_leaf(payload, 0xb, 0)
    assert eax & 0x1f == 1 and ebx & 0xffff == 2, (hex(eax), hex(ebx))  # two threads a core


# ---- 12. a failed snapshot load ends the process ----

def test_12_failed_snapshot_load_ends_the_process(vmm, tmp_path):
    r = vmm.put("/snapshot/load", {"snapshot_path": str(tmp_path / "missing.state"),
                                   "mem_backend": {"backend_type": "File",
                                                   "backend_path": str(tmp_path / "m")}})
    assert "No such file or directory" in fault(r)
    assert "Deprecation" not in r.headers
    # Answered first, then the process ends with Firecracker's generic error code.
    assert vmm.wait_exit(30) == 1
    assert not os.path.exists(vmm.sock)


# ---- 13. GET /vm/config's shape ----

def test_13_vm_config_shape(kvm, tmp_path):
    disk = tmp_path / "rootfs.img"
    disk.write_bytes(bytes(1 << 20))
    tx_rl = {"bandwidth": {"size": 1000000, "refill_time": 100, "one_time_burst": None},
             "ops": None}
    v = VmmProcess(tmp_path, "--log-path", tmp_path / "vmm.log",
                   "--metrics-path", tmp_path / "metrics.json")
    try:
        check(v.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                     "boot_args": ""}), 204)
        check(v.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}), 204)
        check(v.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(disk),
                                       "is_root_device": True, "is_read_only": True}), 204)
        check(v.put("/balloon", {"amount_mib": 1, "deflate_on_oom": True}), 204)
        check(v.put("/vsock", {"guest_cid": 15, "uds_path": str(tmp_path / "vsock.sock")}), 204)
        check(v.put("/network-interfaces/1", {"iface_id": "1", "guest_mac": "06:00:00:00:00:01",
                                              "host_dev_name": "tap1",
                                              "tx_rate_limiter": tx_rl}), 204)
        check(v.put("/entropy", {"rate_limiter": {"bandwidth": {"size": 0, "refill_time": 5}}}),
              204)
        expected = {
            "balloon": {"amount_mib": 1, "deflate_on_oom": True, "stats_polling_interval_s": 0,
                        "free_page_hinting": False, "free_page_reporting": False},
            "drives": [{"drive_id": "rootfs", "partuuid": None, "is_root_device": True,
                        "cache_type": "Unsafe", "is_read_only": True,
                        "path_on_host": str(disk), "rate_limiter": None, "io_engine": "Sync",
                        "socket": None}],
            "boot-source": {"kernel_image_path": str(probe_kernel()), "initrd_path": None,
                            "boot_args": ""},
            "cpu-config": None,
            "logger": None,
            "machine-config": {"vcpu_count": 2, "mem_size_mib": 64, "smt": False,
                               "track_dirty_pages": False, "huge_pages": "None"},
            "metrics": None,
            "mmds-config": None,
            "network-interfaces": [{"iface_id": "1", "host_dev_name": "tap1",
                                    "guest_mac": "06:00:00:00:00:01", "mtu": None,
                                    "rx_rate_limiter": None, "tx_rate_limiter": tx_rl}],
            "vsock": {"guest_cid": 15, "uds_path": str(tmp_path / "vsock.sock")},
            # A bucket of size 0 limits nothing: the limiter is not there.
            "entropy": {"rate_limiter": None},
            "pmem": [],
            "memory-hotplug": None,
        }
        got = check(v.get("/vm/config"), 200)
        assert got == expected
        assert list(got) == VM_CONFIG_KEYS
        v.stop()
    finally:
        v.kill()


def test_13_vm_config_after_a_restore_keeps_the_boot_source(kvm, tmp_path):
    disk = tmp_path / "rootfs.img"
    disk.write_bytes(bytes(1 << 20))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = VmmProcess(tmp_path / "a")
    try:
        check(a.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(disk),
                                       "is_root_device": True, "is_read_only": True}), 204)
        check(a.put("/balloon", {"amount_mib": 1, "deflate_on_oom": True}), 204)
        start(a, mem=32)
        check(a.patch("/vm", {"state": "Paused"}), 204)
        before = check(a.get("/vm/config"), 200)
        check(a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s"),
                                         "mem_file_path": str(tmp_path / "m")}), 204)
    finally:
        a.kill()
    b = VmmProcess(tmp_path / "b")
    try:
        check(b.put("/snapshot/load", {"snapshot_path": str(tmp_path / "s"),
                                       "mem_backend": {"backend_type": "File",
                                                       "backend_path": str(tmp_path / "m")},
                                       "resume_vm": True}), 204)
        after = check(b.get("/vm/config"), 200)
        assert after["boot-source"] == {"kernel_image_path": str(probe_kernel()),
                                        "initrd_path": None,
                                        "boot_args": "console=ttyS0 probe=idle"}
        assert after == before
        check(b.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert b.wait_exit(30) == 0
    finally:
        b.kill()


# ---- kept as ours (docs/api.md, "Deliberate differences from Firecracker") ----

def test_deliberate_differences(vmm, tmp_path):
    info = check(vmm.get("/"), 200)
    # GET /version names the program that answers.
    assert check(vmm.get("/version"), 200) == {"firecracker_version": info["vmm_version"]}
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(4096))
    assert fault(vmm.put("/drives/vub", {"drive_id": "vub", "is_root_device": False,
                                         "socket": str(tmp_path / "vhost.sock")})) == (
        "vhost-user block devices (field `socket`) are not implemented yet")
    vmm.stop()
    run = run_vmm(["--enable-pci", "--api-sock", str(tmp_path / "x.sock")], timeout=30)
    assert run.rc == 153 and "enable-pci" in run.err, run

"""Memory hotplug (virtio-mem, docs/running.md): PUT/GET/PATCH /hotplug/memory with
Firecracker's shapes, the config file's "memory-hotplug" section, GET /vm/config; the probe's
`virtio-mem` scenario (tests/guest/README.md) plugging what the host requests (the VMM's
resident memory grows as the guest touches it) and unplugging it again (the memory goes back
to the host); a Full snapshot holds the device's state and the plugged memory, a Diff is
refused; a protected VM refused (CC-16).
"""
import json
import os
import subprocess

import pytest

from test_api import BEFORE, DESERIALIZE, boot_source
from vmm_api import VmmProcess, check

NOT_CONFIGURED = "Memory hotplug is not configured: PUT /hotplug/memory before the start."


@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path, stdin=subprocess.PIPE)
    yield v
    v.kill()


def test_put_get_and_refusals_before_the_start(vmm):
    check(vmm.get("/hotplug/memory"), 400, NOT_CONFIGURED)
    check(vmm.put("/hotplug/memory", {}), 400, DESERIALIZE + "missing field `total_size_mib`")
    check(vmm.put("/hotplug/memory", {"total_size_mib": 256, "bogus": 1}), 400,
          DESERIALIZE + "unknown field `bogus`")
    check(vmm.put("/hotplug/memory", {"total_size_mib": 256, "slot_size_mib": 64}), 400,
          # Firecracker checks the sizes after deserialising (MemoryHotplugConfig::validate).
          "memory hotplug: slot_size_mib 64 is not a multiple of block_size_mib 2 of at least 128")
    check(vmm.put("/hotplug/memory", {"total_size_mib": 256, "block_size_mib": 3}), 400,
          "memory hotplug: block_size_mib 3 is not a power of two of at least 2")
    check(vmm.put("/hotplug/memory", {"total_size_mib": 200}), 400,
          "memory hotplug: total_size_mib 200 is not a multiple of slot_size_mib 128")
    check(vmm.put("/hotplug/memory", {"total_size_mib": 384, "slot_size_mib": 192,
                                      "block_size_mib": 64}), 204)
    # Firecracker's defaults: slots of 128 MiB, blocks of 2 MiB.
    check(vmm.put("/hotplug/memory", {"total_size_mib": 256}), 204)
    assert check(vmm.get("/hotplug/memory"), 200) == {
        "total_size_mib": 256, "slot_size_mib": 128, "block_size_mib": 2,
        "plugged_size_mib": 0, "requested_size_mib": 0}
    assert check(vmm.get("/vm/config"), 200)["memory-hotplug"] == {
        "total_size_mib": 256, "slot_size_mib": 128, "block_size_mib": 2}
    check(vmm.patch("/hotplug/memory", {"requested_size_mib": 64}), 400, BEFORE)
    vmm.stop()


@pytest.mark.parametrize("platform", ["sev", "pef", "s390-pv"])
def test_cc16_memory_hotplug_refused_on_a_protected_vm(vmm, platform):
    msg = (f"memory hotplug (virtio-mem) cannot be used on a protected ({platform}) VM: its "
           "ownership map covers the RAM it was launched with (CC-16)")
    check(vmm.put("/confidential", {"platform": platform}), 204)
    check(vmm.put("/hotplug/memory", {"total_size_mib": 128}), 400, msg)
    assert check(vmm.get("/vm/config"), 200)["memory-hotplug"] is None
    check(vmm.put("/confidential", {"platform": "none"}), 204)
    check(vmm.put("/hotplug/memory", {"total_size_mib": 128}), 204)
    check(vmm.put("/confidential", {"platform": platform}), 400, msg)
    vmm.stop()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def sync(v, requested_mib):
    v.proc.stdin.write(b"sync\n")
    v.proc.stdin.flush()
    v.wait_output(f"probe: mem requested {requested_mib << 20} ")


@pytest.mark.usefixtures("kvm")
def test_plug_and_unplug_with_the_probe(tmp_path):
    """The host requests 64 MiB: the guest plugs 32 blocks and writes into them, the VMM's
    resident memory grows by about that; the host requests 16 MiB: the guest unplugs 24
    blocks and the memory goes back to the host. GET /hotplug/memory and the metrics follow;
    PATCH refuses what no block size gives."""
    metrics = tmp_path / "metrics.json"
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({
        "boot-source": boot_source("virtio-mem"),
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
        "memory-hotplug": {"total_size_mib": 256},
        "metrics": {"metrics_path": str(metrics)}}))
    v = VmmProcess(tmp_path, "--config-file", cfg, stdin=subprocess.PIPE)
    try:
        v.wait_output("probe: mem block 0x200000 addr 0x100000000 region 0x10000000 "
                      "requested 0\n")
        before = rss_kib(v.proc.pid)
        check(v.patch("/hotplug/memory", {"requested_size_mib": 64}), 204)
        sync(v, 64)
        plugged = rss_kib(v.proc.pid)
        assert check(v.get("/hotplug/memory"), 200) == {
            "total_size_mib": 256, "slot_size_mib": 128, "block_size_mib": 2,
            "plugged_size_mib": 64, "requested_size_mib": 64}
        check(v.patch("/hotplug/memory", {"requested_size_mib": 16}), 204)
        sync(v, 16)
        unplugged = rss_kib(v.proc.pid)
        assert check(v.get("/hotplug/memory"), 200)["plugged_size_mib"] == 16
        check(v.patch("/hotplug/memory", {"requested_size_mib": 3}), 400,
              "requested_size_mib 3 is not a multiple of block_size_mib 2 up to "
              "total_size_mib 256")
        check(v.patch("/hotplug/memory", {"requested_size_mib": 512}), 400,
              "requested_size_mib 512 is not a multiple")
        check(v.put("/actions", {"action_type": "FlushMetrics"}), 204)
        v.proc.stdin.write(b"end\n")
        v.proc.stdin.flush()
        assert v.wait_exit(30) == 0, v.err()
    finally:
        v.kill()
    assert v.probe_lines()[-4:] == [
        "probe: mem requested 67108864 plugged 67108864 (+32 blocks, -0 blocks, 0 nacked) "
        "state 2",
        "probe: mem requested 16777216 plugged 16777216 (+0 blocks, -24 blocks, 0 nacked) "
        "state 2",
        "probe: mem unplugged all: plugged 0", "probe: ok virtio-mem"], v.out()
    # 64 MiB written, then 48 MiB of it given back (allow some noise).
    assert plugged - before >= 60 << 10, (before, plugged)
    assert plugged - unplugged >= 44 << 10, (plugged, unplugged)
    m = json.loads(metrics.read_text().splitlines()[-2])["memory_hotplug"]
    assert (m["plug_count"], m["unplug_count"], m["plugged_bytes"], m["event_fails"]) == \
        (32, 24, 16 << 20, 0), m


@pytest.mark.usefixtures("kvm")
def test_a_request_the_guest_cannot_satisfy_is_reported(tmp_path):
    """The guest plugs at most 8 blocks (probe.mem_limit): a request of 64 MiB ends with 16
    plugged, which GET shows beside the request; nothing waits for the guest."""
    v = VmmProcess(tmp_path, stdin=subprocess.PIPE)
    try:
        check(v.put("/boot-source", boot_source("virtio-mem", "probe.mem_limit=8")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(v.put("/hotplug/memory", {"total_size_mib": 128}), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: mem block")
        check(v.patch("/hotplug/memory", {"requested_size_mib": 64}), 204)
        sync(v, 64)
        assert check(v.get("/hotplug/memory"), 200) == {
            "total_size_mib": 128, "slot_size_mib": 128, "block_size_mib": 2,
            "plugged_size_mib": 16, "requested_size_mib": 64}
        v.proc.stdin.write(b"end\n")
        v.proc.stdin.flush()
        assert v.wait_exit(30) == 0, v.err()
        assert "probe: mem requested 67108864 plugged 16777216 (+8 blocks, -0 blocks, 0 nacked) " \
            "state 2" in v.probe_lines(), v.out()
    finally:
        v.kill()


@pytest.mark.usefixtures("kvm")
def test_snapshot_and_restore_keep_the_plugged_memory(tmp_path):
    """Plug 10 MiB (the guest writes each page's address into it), unplug to 6 MiB (a hole),
    pause, take a Full snapshot (a Diff is refused), restore in a new VMM: the guest reads
    its pattern back from every plugged page, GET /hotplug/memory is the same, and the
    device keeps working (plug and unplug after the restore)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    state, mem = tmp_path / "state", tmp_path / "mem"
    v = VmmProcess(tmp_path / "a", instance_id="a", stdin=subprocess.PIPE)
    w = None
    try:
        check(v.put("/boot-source", boot_source("virtio-mem")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                        "track_dirty_pages": True}), 204)
        check(v.put("/hotplug/memory", {"total_size_mib": 128}), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: mem block")
        check(v.patch("/hotplug/memory", {"requested_size_mib": 10}), 204)
        sync(v, 10)
        check(v.patch("/hotplug/memory", {"requested_size_mib": 6}), 204)
        sync(v, 6)
        before = check(v.get("/hotplug/memory"), 200)
        assert before == {"total_size_mib": 128, "slot_size_mib": 128, "block_size_mib": 2,
                          "plugged_size_mib": 6, "requested_size_mib": 6}
        check(v.patch("/vm", {"state": "Paused"}), 204)
        check(v.put("/snapshot/create", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                         "snapshot_type": "Diff"}), 400,
              "Diff snapshots of a VM with hotpluggable memory (virtio-mem) are not supported: "
              "take a Full snapshot")
        check(v.put("/snapshot/create", {"snapshot_path": str(state),
                                         "mem_file_path": str(mem)}), 204)
        v.kill()
        # RAM, the 128 MiB region (only its plugged blocks hold data), the trailer.
        assert os.path.getsize(mem) == (64 << 20) + (128 << 20) + 4096
        w = VmmProcess(tmp_path / "b", instance_id="b", stdin=subprocess.PIPE)
        check(w.put("/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                       "resume_vm": True}), 204)
        assert check(w.get("/hotplug/memory"), 200) == before
        w.proc.stdin.write(b"check\n")
        w.proc.stdin.flush()
        w.wait_output("probe: mem check")
        check(w.patch("/hotplug/memory", {"requested_size_mib": 8}), 204)
        sync(w, 8)
        assert check(w.get("/hotplug/memory"), 200)["plugged_size_mib"] == 8
        w.proc.stdin.write(b"end\n")
        w.proc.stdin.flush()
        assert w.wait_exit(30) == 0, w.err()
        lines = w.probe_lines()
        # 3 blocks of 512 pages each.
        assert "probe: mem check plugged 6291456 (device 6291456): 1536 pages hold the " \
            "pattern, 0 do not" in lines, w.out()
        assert lines[-3:] == [
            "probe: mem requested 8388608 plugged 8388608 (+1 blocks, -0 blocks, 0 nacked) "
            "state 2",
            "probe: mem unplugged all: plugged 0", "probe: ok virtio-mem"], w.out()
    finally:
        v.kill()
        if w:
            w.kill()

"""virtio-pmem (docs/api.md, docs/running.md): PUT /pmem/{id} with Firecracker's shape and
refusals, the config file's "pmem" section, GET /vm/config; then the probe's `pmem` scenario
(tests/guest/README.md) reading the host file through the window, writing into it and
flushing, the host file showing the write (and a read-only image untouched); PATCH after the
start; the metrics; a snapshot restored in a new process (the memory file holds RAM only,
the window comes back from the file); a protected VM refused (CC-15).
"""
import json
import os
import subprocess

import pytest

from conftest import PROBE_ENTRY, VMM, run_probe
from test_api import BEFORE, DESERIALIZE, MISMATCH, boot_source
from vmm_api import VmmProcess, check

WINDOW = 2 << 20
HEAD = b"hello from the host file"


def image(path, size=1 << 20, head=HEAD):
    path.write_bytes(head + b"\0" + bytes(size - len(head) - 1))
    return path


@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path, stdin=subprocess.PIPE)
    yield v
    v.kill()


def pmem(id, path, **kw):
    return {"id": id, "path_on_host": str(path), **kw}


# ---- before the start: shapes and refusals (no KVM) ----

def test_put_pmem_and_vm_config(vmm, tmp_path):
    a, b = image(tmp_path / "a.img"), image(tmp_path / "b.img", 3 << 20)
    check(vmm.put("/pmem/p0", pmem("p0", a)), 204)
    check(vmm.put("/pmem/p1", pmem("p1", b, read_only=True, root_device=True,
                                   rate_limiter={"ops": {"size": 10, "refill_time": 100}})),
          204)
    # A PUT of an existing id replaces it in place (/dev/pmemN keep their order).
    check(vmm.put("/pmem/p0", pmem("p0", a, read_only=True)), 204)
    cfg = check(vmm.get("/vm/config"), 200)
    assert cfg["pmem"] == [
        {"id": "p0", "path_on_host": str(a), "root_device": False, "read_only": True,
         "rate_limiter": None},
        {"id": "p1", "path_on_host": str(b), "root_device": True, "read_only": True,
         "rate_limiter": {"bandwidth": None,
                          "ops": {"size": 10, "one_time_burst": None, "refill_time": 100}}}], cfg
    vmm.stop()


def test_put_pmem_refusals_word_for_word(vmm, tmp_path):
    a = image(tmp_path / "a.img")
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    check(vmm.put("/pmem/p0", {"id": "p0"}), 400,
          DESERIALIZE + "missing field `path_on_host`")
    check(vmm.put("/pmem/p0", pmem("p0", a, bogus=1)), 400, DESERIALIZE + "unknown field `bogus`")
    check(vmm.put("/pmem/p0", pmem("p0", a, read_only="yes")), 400,
          DESERIALIZE + "invalid type: string \"yes\", expected a boolean")
    check(vmm.put("/pmem/p1", pmem("p0", a)), 400, MISMATCH)
    check(vmm.put("/pmem/p0", pmem("p0", empty)), 400, "Error backing file size is 0")
    check(vmm.put("/pmem/p0", pmem("p0", tmp_path / "missing.img")), 400,
          "No such file or directory")
    check(vmm.put("/pmem/p0", pmem("p0", tmp_path)), 400, "not a regular file")
    # Firecracker's two root rules.
    check(vmm.put("/drives/d", {"drive_id": "d", "path_on_host": str(a),
                                "is_root_device": True, "is_read_only": True}), 204)
    check(vmm.put("/pmem/p0", pmem("p0", a, root_device=True)), 400,
          "Attempt to add pmem as a root device while the root device defined as a block "
          "device")
    check(vmm.put("/drives/d", {"drive_id": "d", "path_on_host": str(a),
                                "is_root_device": False, "is_read_only": True}), 204)
    check(vmm.put("/pmem/p0", pmem("p0", a, root_device=True)), 204)
    check(vmm.put("/pmem/p1", pmem("p1", a, root_device=True)), 400,
          "A root pmem device already exist")
    check(vmm.put("/drives/d", {"drive_id": "d", "path_on_host": str(a),
                                "is_root_device": True, "is_read_only": True}), 400,
          "drive 'd' cannot be the root device: pmem 'p0' already is")
    # The same device again as root is no second root.
    check(vmm.put("/pmem/p0", pmem("p0", a, root_device=True, read_only=True)), 204)
    check(vmm.patch("/pmem/p0", {"id": "p0"}), 400, BEFORE)
    assert [p["id"] for p in check(vmm.get("/vm/config"), 200)["pmem"]] == ["p0"]
    vmm.stop()


@pytest.mark.parametrize("platform", ["sev", "pef", "s390-pv"])
def test_cc15_pmem_refused_on_a_protected_vm(vmm, tmp_path, platform):
    """CC-15, in both orders: the second command is refused and changes nothing."""
    a = image(tmp_path / "a.img")
    msg = (f"pmem 'p0' cannot be attached to a protected ({platform}) VM: its window maps a "
           "host file into guest memory, which the guest can neither keep private nor trust "
           "(CC-15); use a drive")
    check(vmm.put("/confidential", {"platform": platform}), 204)
    check(vmm.put("/pmem/p0", pmem("p0", a)), 400, msg)
    assert check(vmm.get("/vm/config"), 200)["pmem"] == []
    check(vmm.put("/confidential", {"platform": "none"}), 204)
    check(vmm.put("/pmem/p0", pmem("p0", a)), 204)
    check(vmm.put("/confidential", {"platform": platform}), 400, msg)
    assert "confidential" not in check(vmm.get("/vm/config"), 200)
    vmm.stop()


# ---- the guest ----

def expected_lines(fmt, n_ro, windows):
    lines = [f"probe: start pmem via {PROBE_ENTRY[fmt]}"]
    for via in ("acpi", "cmdline"):
        lines += [f"probe: virtio 0x{0xc0001000 + i * 0x1000:x} irq {5 + i} id 27 (via {via})"
                  for i in range(len(windows))]
    for i, (start, size) in enumerate(windows):
        wrote = f"probe pmem {i}"
        lines += [f"probe: pmem {i} start 0x{start:x} size 0x{size:x}",
                  f'probe: pmem {i} reads "{HEAD.decode()}"',
                  f'probe: pmem {i} wrote "{wrote}" at 0x1000: reads '
                  f'"{"" if i in n_ro else wrote}"',
                  f"probe: pmem {i} flush status 0"]
    return lines + ["probe: ok pmem"]


@pytest.mark.usefixtures("kvm")
@pytest.mark.parametrize("fmt", ["elf", "bzimage"])
def test_probe_reads_writes_and_flushes_the_window(tmp_path, fmt):
    """Two devices, one read-only: both windows sit past RAM (64 MiB: from 4 GiB), 2 MiB
    apart; the guest reads the file's bytes, its write reaches the writable file (and only
    that one), each flush succeeds; the metrics count the flushes."""
    a, b = image(tmp_path / "a.img"), image(tmp_path / "b.img", 3 << 20)
    before_b = b.read_bytes()
    metrics = tmp_path / "metrics.json"
    run = run_probe(fmt, "pmem", "--mem", 64, "--pmem", f"path={a}",
                    "--pmem", f"path={b},ro,id=ro_img", "--metrics-path", metrics)
    assert run.lines() == expected_lines(fmt, {1}, [(1 << 32, WINDOW),
                                                    ((1 << 32) + WINDOW, 2 * WINDOW)]), run
    assert run.rc == 0, run
    assert a.read_bytes()[0x1000:0x100d] == b"probe pmem 0\0"
    assert b.read_bytes() == before_b
    m = json.loads(metrics.read_text().splitlines()[-1])
    assert m["pmem"]["flush_count"] == 2 and m["pmem"]["event_fails"] == 0, m["pmem"]
    assert m["pmem_ro_img"]["flush_count"] == 1, m


@pytest.mark.usefixtures("kvm")
def test_root_pmem_on_the_command_line(tmp_path):
    a = image(tmp_path / "a.img")
    run = run_probe("elf", "boot", "--pmem", f"path={a},root,ro")
    assert "root=/dev/pmem0 ro" in run.out + run.err, run


@pytest.mark.usefixtures("kvm")
def test_config_file_and_patch_after_the_start(tmp_path):
    a = image(tmp_path / "a.img")
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({
        "boot-source": boot_source("pmem", "probe.pmem_wait"),
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
        "pmem": [pmem("disk", a)]}))
    v = VmmProcess(tmp_path, "--config-file", cfg, stdin=subprocess.PIPE)
    try:
        v.wait_output("probe: pmem 0 waiting")
        check(v.patch("/pmem/disk", {"id": "disk",
                                     "rate_limiter": {"ops": {"size": 5, "refill_time": 10}}}),
              204)
        check(v.patch("/pmem/other", {"id": "other"}), 400,
              "Unable to patch the pmem device: pmem 'other' does not exist.")
        assert check(v.get("/vm/config"), 200)["pmem"][0]["rate_limiter"] == {
            "bandwidth": None, "ops": {"size": 5, "one_time_burst": None, "refill_time": 10}}
        v.proc.stdin.write(b"go\n")
        v.proc.stdin.flush()
        assert v.wait_exit(30) == 0, v.err()
        assert v.probe_lines()[-2:] == ["probe: pmem 0 flush status 0", "probe: ok pmem"]
    finally:
        v.kill()


@pytest.mark.usefixtures("kvm")
def test_snapshot_restores_the_window_from_the_file(tmp_path):
    """The guest writes into its window and waits; the VM is snapshotted and killed; a new
    process restores it. The memory file holds guest RAM only (not the window), the restored
    guest reads its write back through the file, writes again and flushes."""
    a = image(tmp_path / "a.img", 4 << 20)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v = VmmProcess(tmp_path / "a", instance_id="a", stdin=subprocess.PIPE)
    w = None
    try:
        check(v.put("/boot-source", boot_source("pmem", "probe.pmem_wait")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(v.put("/pmem/disk", pmem("disk", a)), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: pmem 0 waiting")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        state, mem = tmp_path / "state", tmp_path / "mem"
        check(v.put("/snapshot/create", {"snapshot_path": str(state),
                                         "mem_file_path": str(mem)}), 204)
        v.kill()
        # RAM and the file's identity trailer (vmm/snapshot.h), no window.
        assert os.path.getsize(mem) == (64 << 20) + 4096
        described = subprocess.run([str(VMM), "--describe-snapshot", str(state)],
                                   capture_output=True, text=True, check=True).stdout
        assert f"pmem disk: {a}, a window of 4 MiB\n" in described, described
        w = VmmProcess(tmp_path / "b", instance_id="b", stdin=subprocess.PIPE)
        check(w.put("/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                       "resume_vm": True}), 204)
        assert check(w.get("/vm/config"), 200)["pmem"] == [
            {"id": "disk", "path_on_host": str(a), "root_device": False, "read_only": False,
             "rate_limiter": None}]
        w.proc.stdin.write(b"go\n")
        w.proc.stdin.flush()
        assert w.wait_exit(30) == 0, w.err()
        assert w.probe_lines()[-3:] == ['probe: pmem 0 reads "probe pmem 0" at 0x1000 again',
                                        "probe: pmem 0 flush status 0", "probe: ok pmem"]
    finally:
        v.kill()
        if w:
            w.kill()


@pytest.mark.usefixtures("kvm")
def test_snapshot_refused_when_the_file_changed_size(tmp_path):
    a = image(tmp_path / "a.img")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v = VmmProcess(tmp_path / "a", instance_id="a")
    w = None
    try:
        check(v.put("/boot-source", boot_source("pmem-idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(v.put("/pmem/disk", pmem("disk", a)), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: pmem-idle ready 512 pages")
        check(v.patch("/vm", {"state": "Paused"}), 204)
        state, mem = tmp_path / "state", tmp_path / "mem"
        check(v.put("/snapshot/create", {"snapshot_path": str(state),
                                         "mem_file_path": str(mem)}), 204)
        v.kill()
        os.truncate(a, 3 << 20)
        w = VmmProcess(tmp_path / "b", instance_id="b")
        check(w.put("/snapshot/load", {"snapshot_path": str(state),
                                       "mem_file_path": str(mem)}), 400,
              f"pmem 'disk': '{a}' now needs a window of {4 << 20} bytes; the VM was "
              f"configured with {2 << 20} (the file changed size)")
        # A failed load ends the process, as Firecracker's (issue 18 item 12).
        assert w.wait_exit(30) == 1
    finally:
        v.kill()
        if w:
            w.kill()

"""The confidential configuration through the REST API and the config file: PUT
/confidential, the access_platform field of every device, GET /vm/config, the phase rules,
and the combinations a protected VM refuses at configuration time (CC-10, CC-13)."""
import json

import pytest

from test_api import AFTER, boot_source, start
from conftest import run_vmm
from vmm_api import VmmProcess, check


@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path)
    yield v
    v.kill()


@pytest.mark.parametrize("platform", ["sev", "pef", "s390-pv"])
def test_put_confidential_shows_in_vm_config(vmm, platform):
    check(vmm.put("/confidential", {"platform": platform}), 204)
    cfg = check(vmm.get("/vm/config"), 200)
    assert cfg["confidential"] == {"platform": platform}
    check(vmm.put("/confidential", {"platform": "none"}), 204)
    assert "confidential" not in check(vmm.get("/vm/config"), 200)


@pytest.mark.parametrize("body,fault", [
    ({"platform": "tdx"}, "unknown variant `tdx`, expected one of `none`, `sev`, `pef`, "
                          "`s390-pv` at line 1 column 18."),
    ({}, "missing field `platform` at line 1 column 2."),
    ({"platform": "sev", "key": 1}, "unknown field `key`, expected `platform`"),
    ({"platform": 3}, "expected value at line 1 column 14."),
])
def test_bad_confidential_bodies(vmm, body, fault):
    body = check(vmm.put("/confidential", body), 400, fault)
    assert body["fault_message"]


def test_cc10_device_without_access_platform_on_a_protected_vm(vmm, tmp_path):
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(1 << 20))
    check(vmm.put("/confidential", {"platform": "sev"}), 204)
    check(vmm.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(disk),
                                      "is_root_device": True, "is_read_only": False,
                                      "access_platform": "off"}), 400,
          "drive 'rootfs' has access_platform off, but a protected (sev) VM's devices must use "
          "VIRTIO_F_ACCESS_PLATFORM (CC-10)")
    check(vmm.put("/entropy", {"access_platform": "off"}), 400, "(CC-10)")
    # The other order: an "off" device first, then the platform is refused.
    check(vmm.put("/confidential", {"platform": "none"}), 204)
    check(vmm.put("/entropy", {"access_platform": "off"}), 204)
    check(vmm.put("/confidential", {"platform": "pef"}), 400, "(CC-10)")
    assert "confidential" not in check(vmm.get("/vm/config"), 200)  # nothing half-applied
    check(vmm.put("/entropy", {"access_platform": "required"}), 204)
    check(vmm.put("/confidential", {"platform": "pef"}), 204)
    cfg = check(vmm.get("/vm/config"), 200)
    assert cfg["entropy"]["access_platform"] == "required"


def test_access_platform_values(vmm):
    check(vmm.put("/entropy", {"access_platform": "sometimes"}), 400,
          "unknown variant `sometimes`, expected one of `default`, `required`, `off`")
    check(vmm.put("/vsock", {"guest_cid": 3, "uds_path": "/tmp/v.sock",
                             "access_platform": "required"}), 204)
    assert check(vmm.get("/vm/config"), 200)["vsock"]["access_platform"] == "required"


def test_cc13_balloon_inflation_refused_on_a_protected_vm(vmm):
    check(vmm.put("/confidential", {"platform": "s390-pv"}), 204)
    check(vmm.put("/balloon", {"amount_mib": 16, "deflate_on_oom": False}), 400,
          "balloon inflation (amount_mib 16) is refused on a protected (s390-pv) VM")
    check(vmm.put("/balloon", {"amount_mib": 0, "deflate_on_oom": True}), 204)


@pytest.mark.parametrize("platform", ["sev", "pef", "s390-pv"])
def test_cc13_balloon_inflation_refused_on_a_running_protected_vm(kvm, tmp_path, platform):
    """CC-13 after the start: PATCH /balloon asking a running protected VM to inflate is refused
    like the pre-boot PUT; the device's target (what the guest reads, shown in the balloon
    statistics) stays 0. Deflating to 0 stays allowed."""
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/confidential", {"platform": platform}), 204)
        check(v.put("/boot-source", boot_source("idle")), 204)
        check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(v.put("/balloon", {"amount_mib": 0, "deflate_on_oom": True,
                                 "stats_polling_interval_s": 1}), 204)
        check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
        v.wait_output("probe: idle ready")
        check(v.patch("/balloon", {"amount_mib": 16}), 400,
              f"balloon inflation (amount_mib 16) is refused on a protected ({platform}) VM: the "
              "host may not take its memory (CC-13)")
        assert check(v.get("/balloon"), 200)["amount_mib"] == 0
        st = check(v.get("/balloon/statistics"), 200)
        assert st["target_mib"] == 0 and st["target_pages"] == 0, st
        check(v.patch("/balloon", {"amount_mib": 0}), 204)
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit() == 0
    finally:
        v.kill()


def test_confidential_is_pre_boot_only_and_boots(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/confidential", {"platform": "sev"}), 204)
        start(v)
        check(v.put("/confidential", {"platform": "pef"}), 400, AFTER)
        assert check(v.get("/vm/config"), 200)["confidential"] == {"platform": "sev"}
        assert "running the SEV ownership model" in v.err()
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(timeout=30) == 0
    finally:
        v.kill()


def test_config_file_confidential_section(kvm, tmp_path):
    metrics = tmp_path / "metrics.json"
    doc = {"boot-source": boot_source("boot"),
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
           "confidential": {"platform": "pef"},
           "metrics": {"metrics_path": str(metrics)}}
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps(doc))
    run = run_vmm(["--config-file", cfg, "--no-api"], timeout=60)
    assert run.rc == 0, run
    assert "probe: ok boot" in run.out
    assert "cc.platform=pef cc.callwin=0xc0080000" in run.out
    lines = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert lines[-1]["confidential"]["platform"] == 2  # pef
    assert "access_violations" in lines[-1]["confidential_devices"]


def test_config_file_bad_platform(tmp_path):
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"confidential": {"platform": "tdx"}}))
    run = run_vmm(["--config-file", cfg, "--no-api"], timeout=30)
    assert run.rc == 152, run
    assert "confidential" in run.err and "platform" in run.err, run


def read_page(v, address):
    body = check(v.get(f"/vm/memory/{address:#x}"), 200)
    assert body["address"] == address & ~0xfff and body["length"] == 4096, body
    return bytes.fromhex(body["data"])


def test_memory_peek_and_dump_of_an_ordinary_vm(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        start(v, mem=32)
        page = read_page(v, 0x100040)  # the probe's entry code, linked at 1 MiB
        assert page[0x40:0x44] == bytes([0xb0, 0x01, 0xe6, 0x80])  # mov $1,%al; out %al,$0x80
        dump = tmp_path / "mem.dump"
        check(v.put("/vm/memory-dump", {"mem_file_path": str(dump)}), 204)
        data = dump.read_bytes()
        assert len(data) == 32 << 20
        assert data[0x100000:0x101000] == page
        check(v.get("/vm/memory/0xd0000000"), 400, "is not guest RAM")
        check(v.get("/vm/memory/zz"), 400, "is not a guest physical address")
        check(v.put("/vm/memory-dump", {"path": "x"}), 400, "path")
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit() == 0
    finally:
        v.kill()


def test_memory_endpoints_before_start(vmm):
    check(vmm.get("/vm/memory/0x1000"), 400, "before starting the microVM")
    check(vmm.put("/vm/memory-dump", {"mem_file_path": "/tmp/x"}), 400,
          "before starting the microVM")


def test_cc8_and_cc13_a_protected_vm_shows_the_host_ciphertext_only(kvm, tmp_path):
    plain_dir, sev_dir = tmp_path / "plain", tmp_path / "sev"
    plain_dir.mkdir()
    sev_dir.mkdir()
    v = VmmProcess(plain_dir)
    try:
        start(v, mem=32)
        plain = read_page(v, 0x100000)
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit() == 0
    finally:
        v.kill()
    v = VmmProcess(sev_dir)
    try:
        check(v.put("/confidential", {"platform": "sev"}), 204)
        start(v, mem=32)  # the guest runs from its (private) pages as usual
        seen = read_page(v, 0x100000)
        assert seen != plain
        same = sum(a == b for a, b in zip(seen, plain))
        assert same < 4096 // 16, same  # a keystream, not the plaintext
        assert read_page(v, 0x100000) == seen  # a stable per-VM stand-in
        check(v.put("/vm/memory-dump", {"mem_file_path": str(sev_dir / "d")}), 400,
              "a memory dump of a protected (sev) VM is refused")
        assert not (sev_dir / "d").exists()
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit() == 0
        assert "probe: ok idle" in v.out()
    finally:
        v.kill()

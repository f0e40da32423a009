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
    ({"platform": "tdx"}, "platform"),
    ({}, "platform"),
    ({"platform": "sev", "key": 1}, "key"),
    ({"platform": 3}, "platform"),
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
    check(vmm.put("/entropy", {"access_platform": "sometimes"}), 400, "access_platform")
    check(vmm.put("/vsock", {"guest_cid": 3, "uds_path": "/tmp/v.sock",
                             "access_platform": "required"}), 204)
    assert check(vmm.get("/vm/config"), 200)["vsock"]["access_platform"] == "required"


def test_cc13_balloon_inflation_refused_on_a_protected_vm(vmm):
    check(vmm.put("/confidential", {"platform": "s390-pv"}), 204)
    check(vmm.put("/balloon", {"amount_mib": 16, "deflate_on_oom": False}), 400,
          "balloon inflation (amount_mib 16) is refused on a protected (s390-pv) VM")
    check(vmm.put("/balloon", {"amount_mib": 0, "deflate_on_oom": True}), 204)


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
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": "/x"},
                               "confidential": {"platform": "tdx"}}))
    run = run_vmm(["--config-file", cfg, "--no-api"], timeout=30)
    assert run.rc == 152, run
    assert "confidential" in run.err and "platform" in run.err, run

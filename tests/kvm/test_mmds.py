"""The microVM metadata service (MMDS, docs/mmds.md) and the serial output's rate limiter.

- Through the guest: the probe's `mmds` scenario (tests/guest/README.md) is a tiny IPv4/TCP/
  HTTP client on virtio-net, in a private network namespace whose TAP records every frame the
  guest sends. It resolves the service's address by ARP, sends malformed frames, a stray
  segment, two frames for other addresses, then on one connection asks for a V2 token, reads
  with and without it, with a bad one, and closes. Asserted: the guest's transcript (V1 and
  V2, imds_compat, a custom address), the "mmds" metrics against the frame counts the guest
  reports, and that the TAP saw the two frames for other addresses and nothing for the
  service.
- The API and the command line: PUT/PATCH/GET /mmds, PUT /mmds/config and its refusals, the
  size limit (413), GET /vm/config's "mmds-config", --metadata, the config file, the runtime
  rules, and a snapshot (the settings survive a restore, the data store does not).
- The serial rate limiter: a guest printing 16 KiB through a 4 KiB bucket.

The network-namespace parts need root and `unshare`; they fail in CI (VMM_REQUIRE_KVM=1)
instead of skipping.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import BUILD_DIR, PROBES, VMM, require_kvm, require_netns, run_vmm
from vmm_api import NETNS_WRAP, VmmProcess, check, probe_kernel

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_virtio.py")
DATA = {"latest": {"meta-data": {"ami-id": "ami-probe"}}}
MMDS_MAC = "06:01:23:45:67:01"
NO_TOKEN = ("No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` "
            "header to specify the session token.")
DESERIALIZE = "An error occurred when deserializing the json body of a request: "


def ip_text(ip):
    return ".".join(str(b) for b in ip)


def run_mmds_probe(tmp_path, version, imds_compat=False, ipv4=None):
    """Boots the probe's mmds scenario with the service on eth0; returns (report, metrics)."""
    require_kvm()
    require_netns("the MMDS tests")
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps(DATA))
    metrics = tmp_path / "metrics.json"
    mmds_config = {"network_interfaces": ["eth0"], "version": version,
                   "imds_compat": imds_compat}
    extra = ""
    if ipv4:
        mmds_config["ipv4_address"] = ipv4
        extra = f" probe.mmds_ip={ipv4}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(PROBES["elf"]),
                        "boot_args": "console=ttyS0 probe=mmds" + extra},
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                "guest_mac": "52:54:00:12:34:56"}],
        "mmds-config": mmds_config,
        "metrics": {"metrics_path": str(metrics)}}))
    args = [str(VMM), "--config-file", str(config), "--metadata", str(metadata),
            "--no-serial-in"]
    try:
        proc = subprocess.run(["unshare", "-n", sys.executable, HARNESS, "net-harness", "tap0",
                               "--all", *args], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the network-namespace helper hung: {e.stdout!r} {e.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    lines = metrics.read_text().strip().splitlines() if metrics.exists() else []
    assert lines, f"no metrics line: {report}"
    return report, json.loads(lines[-1])


def expected_answers(version, imds_compat):
    v2 = version == "V2"
    value = "ami-probe" if imds_compat else '"ami-probe"'
    return [
        f"probe: mmds GET ami-id without a token: "
        + (f"401 {NO_TOKEN}" if v2 else "200 ami-probe"),
        f"probe: mmds GET ami-id with the token as JSON: 200 {value}",
        "probe: mmds GET meta-data with the token: 200 ami-id",
        "probe: mmds GET ami-id with a bad token: "
        + ("401 MMDS token not valid." if v2 else "200 ami-probe"),
    ]


@pytest.mark.parametrize("version,imds_compat,ipv4", [("V2", False, None), ("V1", False, None),
                                                      ("V2", True, "169.254.170.2")])
def test_the_guest_reaches_the_service(tmp_path, version, imds_compat, ipv4):
    r, m = run_mmds_probe(tmp_path, version, imds_compat, ipv4)
    report = f"rc={r['rc']}\n--- stdout\n{r['out']}\n--- stderr\n{r['err']}"
    lines = [l for l in r["out"].splitlines() if l.startswith("probe: ")]
    service = ipv4 or "169.254.169.254"
    assert lines[:5] == [
        "probe: start mmds via pvh", "probe: virtio 0xc0001000 irq 5 id 1 (via acpi)",
        "probe: virtio 0xc0001000 irq 5 id 1 (via cmdline)",
        "probe: mmds event_idx 1 indirect 1 irq", f"probe: mmds service {service}"], report
    assert lines[5:-2] == [
        f"probe: mmds arp: {service} is at {MMDS_MAC}",
        "probe: mmds 5 malformed frames sent",
        "probe: mmds stray segment answered: RST seq 12345",
        "probe: mmds 2 frames for the TAP sent",
        "probe: mmds connected: mss 1460 window 2500",
        "probe: mmds PUT /latest/api/token: 200, a token of 48 characters",
        *expected_answers(version, imds_compat),
        "probe: mmds connection closed"], report
    assert lines[-1] == "probe: ok mmds", report
    assert r["rc"] == 0, report
    words = lines[-2].split()
    assert words[:2] == ["probe:", "mmds"] and words[3:] == ["frames", "to", "the", "service,",
                                                             words[7], "from", "it"], lines[-2]
    to_service, from_service = int(words[2]), int(words[7])

    # The metrics count what the guest sent and received, no more.
    mmds = m["mmds"]
    assert mmds["rx_accepted"] == to_service, mmds
    # Not TCP segments to port 80: the ARP request and reply, the 4-word IPv4 header, UDP, port
    # 81, the TCP header past its packet.
    assert mmds["rx_count"] == to_service - 6, mmds
    assert mmds["tx_frames"] == from_service and mmds["tx_count"] == from_service, mmds
    assert mmds["tx_errors"] == 0 and mmds["rx_bad_eth"] == 0, mmds
    assert mmds["rx_accepted_err"] == 2, mmds  # port 81, the TCP header past its packet
    assert mmds["rx_accepted_unusual"] >= 1, mmds  # UDP
    assert (mmds["rx_no_token"], mmds["rx_invalid_token"]) == (1, 1), mmds
    assert (mmds["connections_created"], mmds["connections_destroyed"]) == (1, 1), mmds
    assert m["net"]["rx_packets_count"] == from_service, m["net"]
    assert m["net"]["tx_packets_count"] == 2, m["net"]

    # The TAP saw the two frames for other addresses, and nothing for the service.
    frames = [bytes.fromhex(f) for f in r["frames"]]
    ip = bytes(int(x) for x in service.split("."))
    assert len(frames) == 2, [f.hex() for f in frames]
    assert len(frames[0]) == 20 and frames[0][12:14] == b"\x08\x00", frames[0].hex()
    udp = frames[1]
    assert udp[12:14] == b"\x08\x00" and udp[30:34] == bytes([10, 0, 2, 2]), udp.hex()
    assert udp.endswith(b"PROBE-NOT-MMDS"), udp.hex()
    for f in frames:
        assert not (f[12:14] == b"\x08\x00" and len(f) >= 34 and f[30:34] == ip), f.hex()
        assert not (f[12:14] == b"\x08\x06" and f[38:42] == ip), f.hex()


# ---- the API and the command line (no guest) ----

@pytest.fixture
def vmm(tmp_path):
    v = VmmProcess(tmp_path, "--mmds-size-limit", "100")
    yield v
    v.kill()


def test_the_data_store_through_the_api(vmm):
    # Empty: {} (Firecracker's answer); PATCH needs a PUT first.
    assert check(vmm.get("/mmds"), 200) == {}
    check(vmm.patch("/mmds", {"a": 1}), 400,
          "MMDS error: The MMDS data store is not initialized.")
    check(vmm.put("/mmds", DATA), 204)
    assert check(vmm.get("/mmds"), 200) == DATA
    # RFC 7396: null removes, objects merge, the rest replaces; keys come back sorted.
    check(vmm.patch("/mmds", {"latest": {"meta-data": {"ami-id": None, "z": "1", "b": [1]}}}),
          204)
    r = vmm.get("/mmds")
    assert r.text == '{"latest":{"meta-data":{"b":[1],"z":"1"}}}'
    # Integers keep their digits (no rounding through a double).
    check(vmm.put("/mmds", {"n": 12345678901234567890}), 204)
    assert vmm.get("/mmds").text == '{"n":12345678901234567890}'
    # The limit (--mmds-size-limit 100) counts the compact text: 413, the store unchanged.
    r = vmm.put("/mmds", {"k": "x" * 100})
    check(r, 413, "MMDS limit exceeded error: The MMDS patch request doesn't fit.")
    check(vmm.patch("/mmds", {"k": "x" * 100}), 413)
    assert vmm.get("/mmds").text == '{"n":12345678901234567890}'
    check(vmm.put("/mmds", data="{"), 400, DESERIALIZE)
    vmm.stop()


def test_mmds_config_through_the_api(vmm):
    check(vmm.put("/mmds/config", {"network_interfaces": ["eth0"]}), 400,
          "MMMDS config error: The list of network interface IDs provided contains at least "
          "one ID that does not correspond to any existing network interface.")
    check(vmm.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap9"}),
          204)
    check(vmm.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap8"}),
          204)
    check(vmm.put("/mmds/config", {"network_interfaces": []}), 400,
          "The list of network interface IDs that allow forwarding MMDS requests is empty.")
    for bad in ("1.2.3.4", "169.254.0.1", "169.254.255.1"):
        check(vmm.put("/mmds/config", {"network_interfaces": ["eth0"], "ipv4_address": bad}),
              400, "The MMDS IPv4 address is not link local.")
    for bad in ("169.254.1", "169.254.01.1", "x", "169.254.1.256"):
        check(vmm.put("/mmds/config", {"network_interfaces": ["eth0"], "ipv4_address": bad}),
              400, DESERIALIZE)
    check(vmm.put("/mmds/config", {"network_interfaces": ["eth0"], "version": "V3"}), 400,
          "unknown variant `V3`")
    check(vmm.put("/mmds/config", {"network_interfaces": ["eth0"], "foo": 1}), 400,
          "unknown field `foo`")
    assert check(vmm.get("/vm/config"), 200)["mmds-config"] is None
    check(vmm.put("/mmds/config", {"network_interfaces": ["eth1", "eth0"]}), 204)
    assert check(vmm.get("/vm/config"), 200)["mmds-config"] == {
        "version": "V1", "network_interfaces": ["eth0", "eth1"],
        "ipv4_address": "169.254.169.254", "imds_compat": False}
    check(vmm.put("/mmds/config", {"network_interfaces": ["eth1"], "version": "V2",
                                   "ipv4_address": "169.254.170.2", "imds_compat": True}), 204)
    assert check(vmm.get("/vm/config"), 200)["mmds-config"] == {
        "version": "V2", "network_interfaces": ["eth1"], "ipv4_address": "169.254.170.2",
        "imds_compat": True}
    # A new eth1 has no MMDS stack (as Firecracker's new device): the service is off.
    check(vmm.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap7"}),
          204)
    assert check(vmm.get("/vm/config"), 200)["mmds-config"] is None
    vmm.stop()


def test_metadata_file_and_config_file(tmp_path):
    md = tmp_path / "md.json"
    md.write_text('{"b": 2, "a": [1, 2]}')
    v = VmmProcess(tmp_path, "--metadata", md)
    try:
        assert v.get("/mmds").text == '{"a":[1,2],"b":2}'
        # --metadata initialised the store: PATCH works at once.
        check(v.patch("/mmds", {"c": 3}), 204)
        v.stop()
    finally:
        v.kill()
    md.write_text('{"b": ')
    r = run_vmm(["--api-sock", tmp_path / "s2", "--metadata", md])
    assert r.rc == 152 and "the MMDS metadata is not valid JSON" in r.err, r
    md.write_text(json.dumps({"k": "x" * 200}))
    r = run_vmm(["--api-sock", tmp_path / "s3", "--metadata", md, "--mmds-size-limit", "100"])
    assert r.rc == 152 and "larger than the data store limit of 100 bytes" in r.err, r
    r = run_vmm(["--api-sock", tmp_path / "s4", "--metadata", tmp_path / "missing"])
    assert r.rc == 152 and "--metadata" in r.err, r
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(probe_kernel())},
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}],
        "mmds-config": {"network_interfaces": ["eth1"]}}))
    r = run_vmm(["--config-file", config, "--no-api"])
    assert r.rc == 152, r
    assert "mmds-config: MMMDS config error: The list of network interface IDs provided" in r.err


def test_runtime_rules(tmp_path):
    """After the start: the store exists only if something used it before (Firecracker's
    rule); PUT /mmds/config is refused."""
    require_kvm()
    for used in (False, True):
        (tmp_path / str(used)).mkdir()
        v = VmmProcess(tmp_path / str(used))
        try:
            if used:
                check(v.put("/mmds", DATA), 204)
            check(v.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                         "boot_args": "console=ttyS0 probe=idle"}), 204)
            check(v.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
            check(v.put("/actions", {"action_type": "InstanceStart"}), 204)
            v.wait_output("probe: idle ready")
            if used:
                assert check(v.get("/mmds"), 200) == DATA
                check(v.patch("/mmds", {"latest": None}), 204)
                assert check(v.get("/mmds"), 200) == {}
            else:
                for r in (v.get("/mmds"), v.put("/mmds", DATA), v.patch("/mmds", DATA)):
                    check(r, 400, "MMDS error: The MMDS data store is not initialized.")
            check(v.put("/mmds/config", {"network_interfaces": ["eth0"]}), 400,
                  "not supported after starting the microVM")
            v.stop()
        finally:
            v.kill()


def test_snapshot_keeps_the_settings_not_the_store(tmp_path):
    """Firecracker's rule: version, imds_compat, address and interfaces survive a restore; the
    data store does not (a clone is reseeded); a new process has a new token key."""
    require_kvm()
    require_netns("the MMDS snapshot test")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = VmmProcess(tmp_path / "a", wrap=NETNS_WRAP)
    b = None
    try:
        check(a.put("/boot-source", {"kernel_image_path": str(probe_kernel()),
                                     "boot_args": "console=ttyS0 probe=idle"}), 204)
        check(a.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}), 204)
        check(a.put("/network-interfaces/eth0", {"iface_id": "eth0",
                                                 "host_dev_name": "vmtap0"}), 204)
        settings = {"version": "V2", "network_interfaces": ["eth0"],
                    "ipv4_address": "169.254.170.2", "imds_compat": True}
        check(a.put("/mmds/config", settings), 204)
        check(a.put("/mmds", DATA), 204)
        check(a.put("/actions", {"action_type": "InstanceStart"}), 204)
        a.wait_output("probe: idle ready")
        check(a.patch("/vm", {"state": "Paused"}), 204)
        check(a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "state"),
                                         "mem_file_path": str(tmp_path / "mem")}), 204)
        a.stop()
        b = VmmProcess(tmp_path / "b", wrap=NETNS_WRAP)
        check(b.put("/snapshot/load", {"snapshot_path": str(tmp_path / "state"),
                                       "mem_file_path": str(tmp_path / "mem")}), 204)
        assert check(b.get("/vm/config"), 200)["mmds-config"] == settings
        assert check(b.get("/mmds"), 200) == {}
        check(b.put("/mmds", DATA), 204)
        assert check(b.get("/mmds"), 200) == DATA
        b.stop()
    finally:
        a.kill()
        if b:
            b.kill()


# ---- the serial console's rate limiter ----

FLOOD = "".join(f"probe: flood {i:04} {'.' * 46}\n" for i in range(256))


def test_serial_flood_is_limited_and_counted(tmp_path):
    require_kvm()
    metrics = tmp_path / "metrics.json"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(PROBES["elf"]),
                        "boot_args": "console=ttyS0 probe=serial-flood"},
        "serial": {"rate_limiter": {"size": 4096, "refill_time": 600000}},
        "metrics": {"metrics_path": str(metrics)}}))
    r = run_vmm(["--config-file", config, "--no-serial-in"])
    assert r.rc == 0, r
    assert "guest requested a reset through the i8042" in r.err, r
    whole = "probe: start serial-flood via pvh\n" + FLOOD + "probe: ok serial-flood\n"
    uart = json.loads(metrics.read_text().strip().splitlines()[-1])["uart"]
    # Every byte the guest wrote was either written out or dropped and counted.
    assert uart["write_count"] == len(whole), uart
    assert len(r.out) + uart["rate_limiter_dropped_bytes"] == len(whole), (uart, len(r.out))
    # The bucket's 4096 bytes went out in order; the refill (7 bytes a second) adds a few,
    # however slow the run (valgrind, a loaded machine).
    assert r.out[:4096] == whole[:4096]
    assert 4096 <= len(r.out) < len(whole) // 2, len(r.out)


def test_serial_rate_limiter_through_the_api(tmp_path):
    v = VmmProcess(tmp_path)
    try:
        check(v.put("/serial", {"serial_out_path": str(tmp_path / "s.log"),
                                "rate_limiter": {"size": 100, "refill_time": 1000}}), 204)
        # Firecracker's GET /vm/config does not report the serial section (fc18).
        assert "serial" not in check(v.get("/vm/config"), 200)
        check(v.put("/serial", {"rate_limiter": {"size": 100}}), 400,
              "missing field `refill_time`")
        # A TokenBucket ignores unknown fields (no deny_unknown_fields in Firecracker).
        check(v.put("/serial", {"rate_limiter": {"bandwidth": {}}}), 400,
              "missing field `size`")
        v.stop()
    finally:
        v.kill()

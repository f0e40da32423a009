"""A harness running Firecracker's tests/integration_tests/functional/test_api.py against vmm.

Firecracker's own HTTP client (framework/http_api.py, which validates every request and
answer against Firecracker's OpenAPI document) drives build/vmm, each microVM in a jail made
of an overlay of / in a private mount namespace and a network namespace, so that the paths
and TAPs the tests name are the ones Firecracker's jailer would give. The probe guest stands
in for Linux: the one rewrite the harness makes is " probe=idle" added to the boot arguments
(the probe's scenario, so that it stays up) and taken out of GET /vm/config's answer.

Run through tests/firecracker/run (README.md there), which assembles the tree.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

from framework import http_api

VMM = os.environ["VMM"]
PROBE = pathlib.Path(os.environ["PROBE"])
SCENARIO = " probe=idle"


def _rewrite_boot_args(api):
    """PUT /boot-source gets the probe's scenario; GET /vm/config loses it again."""
    boot_put, cfg_get = api.boot.put, api.vm_config.get

    def put(**kw):
        kw["boot_args"] = (kw.get("boot_args") or "") + SCENARIO
        if kw["boot_args"].startswith(" "):
            kw["boot_args"] = kw["boot_args"][1:]
        return boot_put(**kw)

    def get():
        res = cfg_get()
        body = res.json()
        bs = body.get("boot-source") or {}
        if isinstance(bs.get("boot_args"), str):
            args = bs["boot_args"]
            bs["boot_args"] = args[:-len(SCENARIO)] if args.endswith(SCENARIO) else \
                ("" if args == SCENARIO.strip() else args)
        res._content = json.dumps(body).encode()
        return res

    api.boot.put, api.vm_config.get = put, get


class NetIface:
    def __init__(self, dev_name, tap_name, guest_ip):
        self.dev_name, self.tap_name, self.guest_ip = dev_name, tap_name, guest_ip


class Snapshot:
    def __init__(self, vm, vmstate, mem, net_ifaces):
        self.vm, self.vmstate, self.mem, self.net_ifaces = vm, vmstate, mem, net_ifaces


class Jailer:
    def __init__(self):
        self.extra_args = {}


class Microvm:
    def __init__(self, base, pci=False):
        self.id = uuid.uuid4().hex
        self.dir = base / self.id
        self.fsfiles = self.dir / "fsfiles"
        for d in ("upper", "work", "merged", "fsfiles"):
            (self.dir / d).mkdir(parents=True)
        self.netns = "fc" + self.id[:10]
        self.kernel_file = PROBE
        self.rootfs_file = base / "rootfs.ext4"
        self.initrd_file = None
        self.pci_enabled = pci
        self.disks_vhost_user = {}
        self.jailer = Jailer()
        self.time_api_request = True
        self.proc = None
        self.api = None
        self.firecracker_version = subprocess.run([VMM, "--version"], capture_output=True,
                                                  text=True).stdout.split()[-1]

    # ---- the process ----

    def spawn(self):
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        args = [VMM, "--api-sock", "/api.sock", "--id", self.id[:64]]
        for k, v in self.jailer.extra_args.items():
            args += [f"--{k}", v]
        d = self.dir
        script = (f"mount -t overlay overlay -o lowerdir=/,upperdir={d}/upper,workdir={d}/work "
                  f"{d}/merged && mount --rbind /dev {d}/merged/dev && "
                  f"mount -t proc proc {d}/merged/proc && "
                  f"for m in /work /tmp /sys; do mount --rbind $m {d}/merged$m; done && "
                  f"cd {d}/merged && exec chroot {d}/merged \"$@\"")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "-m", "--propagation", "private",
             "sh", "-c", script, "sh", *args],
            stdout=open(d / "serial.log", "wb"), stderr=open(d / "vmm.log", "wb"),
            stdin=subprocess.DEVNULL)
        # Through the process's root: a socket bound on the overlay answers there only.
        sock = f"/proc/{self.proc.pid}/root/api.sock"
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sock)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("vmm did not start: " + self.log_data)
                time.sleep(0.01)
            finally:
                s.close()
        self.api = http_api.Api(sock)
        _rewrite_boot_args(self.api)

    @property
    def firecracker_pid(self):
        return self.proc.pid

    @property
    def log_data(self):
        return (self.dir / "vmm.log").read_text(errors="replace")

    def serial(self):
        return (self.dir / "serial.log").read_text(errors="replace")

    def root(self):
        return pathlib.Path(f"/proc/{self.proc.pid}/root") if self.proc else self.dir / "upper"

    def create_jailed_resource(self, path):
        path = pathlib.Path(path)
        dest = self.root() / path.name
        if not dest.exists():
            subprocess.run(["cp", "--sparse=always", str(path), str(dest)], check=True)
        return "/" + path.name

    def get_jailed_resource(self, path):
        return "/" + pathlib.Path(path).name

    def mark_killed(self, timeout=30):
        self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    # ---- configuration ----

    def basic_config(self, vcpu_count=2, smt=None, mem_size_mib=256, add_root_device=True,
                     boot_args=None, track_dirty_pages=False, huge_pages="None",
                     rootfs_io_engine=None, **_):
        self.api.machine_config.put(vcpu_count=vcpu_count, smt=smt, mem_size_mib=mem_size_mib,
                                    track_dirty_pages=track_dirty_pages, huge_pages=huge_pages)
        if boot_args is None:
            boot_args = "reboot=k panic=1 nomodule swiotlb=noforce console=ttyS0 " \
                        "cryptomgr.notests" + ("" if self.pci_enabled else " pci=off")
        self.boot_args = boot_args
        self.api.boot.put(kernel_image_path=self.create_jailed_resource(self.kernel_file),
                          boot_args=boot_args)
        if add_root_device:
            self.add_drive("rootfs", self.rootfs_file, True, True, io_engine=rootfs_io_engine)

    def add_drive(self, drive_id, path_on_host, is_root_device=False, is_read_only=False,
                  io_engine=None, **kw):
        self.api.drive.put(drive_id=drive_id,
                           path_on_host=self.create_jailed_resource(path_on_host),
                           is_root_device=is_root_device, is_read_only=is_read_only,
                           io_engine=io_engine, **kw)

    def add_vhost_user_drive(self, drive_id, path, **_):
        self.api.drive.put(drive_id=drive_id, socket="/" + drive_id + ".sock",
                           is_root_device=False)

    def add_pmem(self, pmem_id, path, root_device=False, read_only=False):
        self.api.pmem.put(id=pmem_id, path_on_host=self.create_jailed_resource(path),
                          root_device=root_device, read_only=read_only)

    def add_net_iface(self):
        iface = NetIface("eth0", "tap0", "192.168.0.2")
        from host_tools.network import Tap
        Tap(iface.tap_name, self.netns)
        from host_tools.network import mac_from_ip
        self.api.network.put(iface_id=iface.dev_name, host_dev_name=iface.tap_name,
                             guest_mac=mac_from_ip(iface.guest_ip))
        self.iface = iface
        return iface

    def set_cpu_template(self, template):
        self.api.machine_config.patch(cpu_template=template)

    def start(self):
        self.api.actions.put(action_type="InstanceStart")
        deadline = time.monotonic() + 30
        while "probe: idle ready" not in self.serial():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the guest did not come up: " + self.serial())
            time.sleep(0.01)

    # ---- snapshots ----

    def snapshot_full(self):
        self.api.vm.patch(state="Paused")
        self.api.snapshot_create.put(mem_file_path="/snapshot.mem",
                                     snapshot_path="/snapshot.vmstate", snapshot_type="Full")
        out = self.dir / "snapshot"
        out.mkdir()
        for name in ("snapshot.mem", "snapshot.vmstate"):
            subprocess.run(["cp", "--sparse=always", str(self.root() / name), str(out / name)],
                           check=True)
        return Snapshot(self, out / "snapshot.vmstate", out / "snapshot.mem",
                        [getattr(self, "iface", None)])


class Factory:
    def __init__(self, base):
        self.base = base
        self.vms = []
        with open(base / "rootfs.ext4", "wb") as f:
            f.truncate(64 << 20)

    def build(self, kernel=None, rootfs=None, pci=False, **_):
        vm = Microvm(self.base, pci=pci)
        self.vms.append(vm)
        return vm

    def build_from_snapshot(self, snapshot):
        vm = self.build()
        vm.spawn()
        for iface in snapshot.net_ifaces:
            if iface:
                from host_tools.network import Tap
                Tap(iface.tap_name, vm.netns)
        vm.api.snapshot_load.put(
            mem_backend={"backend_type": "File",
                         "backend_path": vm.create_jailed_resource(snapshot.mem)},
            snapshot_path=vm.create_jailed_resource(snapshot.vmstate), resume_vm=True)
        return vm

    def kill(self):
        for vm in self.vms:
            vm.kill()


@pytest.fixture
def microvm_factory(tmp_path):
    f = Factory(tmp_path)
    yield f
    f.kill()


@pytest.fixture(params=["Sync", "Async"])
def io_engine(request):
    return request.param


@pytest.fixture
def rootfs(tmp_path):
    p = tmp_path / "pmem-rootfs.ext4"
    with open(p, "wb") as f:
        f.truncate(2 << 20)
    return p


@pytest.fixture
def uvm(microvm_factory):
    """PCI off only: vmm has no PCI (--enable-pci is refused)."""
    return microvm_factory.build()


@pytest.fixture
def uvm_configured(uvm):
    uvm.spawn()
    uvm.basic_config(vcpu_count=2, mem_size_mib=256)
    return uvm

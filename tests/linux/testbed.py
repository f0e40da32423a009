"""The real-Linux test bed: vmm runs Debian's cloud kernel inside an outer Linux machine that
QEMU emulates (TCG) with AMD SVM and nested paging, where Debian's own kvm_amd gives a
hardware-style /dev/kvm (docs/linux-testbed.md). Used by the pytest suite of this folder,
by scripts/nested-vm and by bench/linux-boot and bench/linux-fanout.

Pieces, all made from the build tree and Debian packages (nothing downloaded but packages):

  guest image    scripts/guest-image's kernel, initramfs and root filesystem, built once into
                 out/guest-image and rebuilt when the script's files change (shared with
                 tests/kvm/test_guest_image.py); for scenarios that need "generic", the
                 same image with Debian's generic kernel (CONFIG_VMGENID=y), without the
                 root filesystem, in out/guest-image-generic
  outer modules  irqbypass, kvm, kvm-amd, tun and the virtio-pci disk drivers from the same
                 kernel package as the guest's (the outer runs that kernel too), cached in
                 out/nested/modules-RELEASE
  inner initrd   the guest image's initramfs with a second archive appended: tbtool, mke2fs
                 with its libraries, the guest helpers (guest/lib.sh) and every scenario's
                 guest scripts, which the initramfs's vmm.run= hook runs
  outer initrd   busybox-static, the modules, vmm and curl with every library ldd lists and
                 the loader, tbtool, the outer helpers (outer/lib.sh, outer/init) and the
                 scenarios' outer scripts (uncompressed: TCG would spend seconds inflating it)
  disks          tb-in (ext4, read-only: the guest's kernel files and initrd, and the
                 generic kernel's under /generic when a scenario needs it), the root
                 filesystem image itself (read-only; QEMU never writes the host file), and
                 tb-out (ext4 without a journal, so what the outer synced is readable even
                 after a crash), where each scenario leaves its files in /SCENARIO/

The outer's console carries only markers (@@TB ...); everything else goes to tb-out, which
the host reads after the run with debugfs (no root, no mount).
"""
import hashlib
import json
import os
import pathlib
import re
import select
import shlex
import shutil
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
SOURCE_DIR = pathlib.Path(os.environ.get("VMM_SOURCE_DIR", HERE.parents[1])).resolve()
BUILD_DIR = pathlib.Path(os.environ.get("VMM_BUILD_DIR", SOURCE_DIR / "build")).resolve()
OUT_DIR = SOURCE_DIR / "out"
GUEST_IMAGE_DIR = pathlib.Path(os.environ.get("VMM_GUEST_IMAGE_DIR", OUT_DIR / "guest-image"))
# The same guest with Debian's generic kernel (scenarios that need "generic": its vmgenid
# driver, which the cloud kernel lacks).
GENERIC_IMAGE_DIR = pathlib.Path(os.environ.get("VMM_GENERIC_IMAGE_DIR",
                                                OUT_DIR / "guest-image-generic"))
NESTED_DIR = pathlib.Path(os.environ.get("VMM_NESTED_DIR", OUT_DIR / "nested"))
GUEST_IMAGE_SCRIPT = SOURCE_DIR / "scripts" / "guest-image"
GUEST_IMAGE_TOOL = SOURCE_DIR / "scripts" / "guest-image-tool"
QEMU = os.environ.get("VMM_QEMU", "qemu-system-x86_64")

# The outer machine (platform facts in docs/linux-testbed.md): TCG's EPYC with SVM and NPT.
OUTER_CPU = "EPYC-v1,+svm,+npt"
OUTER_SMP = 2
OUTER_MEM_MIB = 2048
# transparent_hugepage=never: Debian's cloud kernel defaults to THP "always", so the inner
# guests' RAM was backed by 2 MiB pages mapped through 2 MiB nested page-table entries of
# TCG's emulated SVM, split by every 4 KiB balloon discard and collapsed by khugepaged. The
# balloon scenario (256 MiB guests touching most of their memory) saw a guest triple fault
# with no Oops, or a silent guest, in about 3 runs of 8 — twice before any discard. Suspected
# to be TCG's nested paging, not vmm (the device discards exactly what the guest gave it:
# unit test_linux_order_discards_only_ballooned_pages); unproven, so said here and in
# docs/linux-testbed.md rather than claimed fixed.
OUTER_CMDLINE = "console=ttyS0 rdinit=/init panic=-1 quiet transparent_hugepage=never"
# Modules the outer loads, dependencies first (from the package's modules.dep).
OUTER_MODULES = ["kvm_amd", "tun", "virtio_pci", "virtio_blk", "loop"]
# The inner guests' default command line (the guest image's, plus quiet: every console
# byte is a VM exit of the nested guest).
GUEST_CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd"
MARK = "@@TB "


class TestbedError(Exception):
    """The test bed cannot be built or started (a missing tool or package, a failed build)."""


def vmm_sanitized(vmm=None):
    """Whether the vmm under test is the ASan/UBSan build (it links libasan)."""
    libs = ldd_libraries(pathlib.Path(vmm or BUILD_DIR / "vmm"))
    return any("libasan" in lib for lib in libs)


def is_ci():
    return bool(os.environ.get("CI"))


# ---- the guest image ------------------------------------------------------------------

def guest_image_files():
    return [GUEST_IMAGE_SCRIPT, GUEST_IMAGE_TOOL,
            *sorted((SOURCE_DIR / "scripts" / "guest-files").iterdir())]


def guest_image_wants_rootfs():
    """The root filesystem needs root (debootstrap); VMM_GUEST_ROOTFS=0 leaves it out."""
    return os.geteuid() == 0 and os.environ.get("VMM_GUEST_ROOTFS", "1") != "0"


def guest_image_key(rootfs, kernel="cloud"):
    h = hashlib.sha256(b"rootfs" if rootfs else b"no-rootfs")
    if kernel != "cloud":
        h.update(b"kernel=" + kernel.encode())
    for f in guest_image_files():
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def guest_image(log=print, kernel="cloud"):
    """out/guest-image, (re)built by scripts/guest-image when its inputs changed: the
    kernel, initramfs and config, plus (as root) the root filesystem and its kept tree.
    kernel="generic": out/guest-image-generic, the same with Debian's generic kernel, without
    the root filesystem (its guests run from the initramfs)."""
    generic = kernel == "generic"
    directory = GENERIC_IMAGE_DIR if generic else GUEST_IMAGE_DIR
    rootfs = not generic and guest_image_wants_rootfs()
    key = guest_image_key(rootfs, kernel)
    stamp = directory / ".inputs"
    if stamp.exists() and stamp.read_text() == key and (directory / "SHA256SUMS").exists():
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    args = ["--kernel", "generic"] if generic else \
        ["--rootfs", "--keep-tree"] if rootfs else []
    start = time.monotonic()
    proc = subprocess.run([str(GUEST_IMAGE_SCRIPT), *args, str(directory)],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise TestbedError(f"scripts/guest-image failed:\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    log(f"scripts/guest-image {' '.join(args)}: {time.monotonic() - start:.0f}s\n" + proc.stdout)
    stamp.write_text(key)
    return directory


def manifest(image):
    out = {}
    for line in (image / "MANIFEST").read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


# ---- the outer kernel's modules --------------------------------------------------------

def outer_modules(image, log=print):
    """(directory, [module files in load order]) from the guest image's kernel package."""
    m = manifest(image)
    release, package = m["kernel_release"], m["kernel_package"]
    cache = NESTED_DIR / f"modules-{release}"
    order_file = cache / "order"
    wanted = " ".join(OUTER_MODULES)
    if order_file.exists() and (cache / "wanted").read_text() == wanted:
        return cache, order_file.read_text().split()
    with tempfile.TemporaryDirectory(prefix="tb-kernel.") as tmp:
        tmp = pathlib.Path(tmp)
        proc = subprocess.run(["apt-get", "download", "-q", package], cwd=tmp,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise TestbedError(f"apt-get download {package} failed ({proc.stderr.strip()}); "
                               "the archive may have moved on: rebuild out/guest-image "
                               "(delete it) after apt-get update")
        deb = next(tmp.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
        subprocess.run(["depmod", "-b", str(tmp / "root"), release], check=True)
        moddir = tmp / "root" / "lib" / "modules" / release
        proc = subprocess.run([str(GUEST_IMAGE_TOOL), "modorder", str(moddir), *OUTER_MODULES],
                              capture_output=True, text=True, check=True)
        order = proc.stdout.split()
        if cache.exists():
            shutil.rmtree(cache)
        cache.mkdir(parents=True)
        for rel in order:
            shutil.copy(moddir / rel, cache / os.path.basename(rel))
        names = [os.path.basename(rel) for rel in order]
        (cache / "wanted").write_text(wanted)
        order_file.write_text("\n".join(names) + "\n")
        log(f"outer modules from {package}: {' '.join(names)}")
        return cache, names


# ---- staging trees ---------------------------------------------------------------------

def ldd_libraries(binary):
    """Every library ldd lists for binary, and the loader, as host paths."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if "not a dynamic executable" in proc.stdout + proc.stderr:
        return []
    if proc.returncode != 0:
        raise TestbedError(f"ldd {binary}: {proc.stderr.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            raise TestbedError(f"ldd {binary}: {line.strip()}")
    return libs


def stage_binary(root, binary, dest):
    """Copies binary to root/dest and every library it loads to root at its host path (the
    loader finds them where it would on the host)."""
    root = pathlib.Path(root)
    target = root / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, target)
    os.chmod(target, 0o755)
    for lib in ldd_libraries(binary):
        t = root / lib.lstrip("/")
        if not t.exists():
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.realpath(lib), t)


def stage_busybox(root, busybox):
    root = pathlib.Path(root)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a not in ("busybox", "init", "linuxrc") and not (root / "bin" / a).exists():
            os.symlink("busybox", root / "bin" / a)


def make_cpio(root, out, compress):
    cmd = [str(GUEST_IMAGE_TOOL), "cpio", str(root), str(out), "--compress", compress,
           "--node", "dev/console:c:5:1:0600", "--node", "dev/null:c:1:3:0666"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def find_busybox():
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p) and not ldd_libraries(p):
            return p
    raise TestbedError("no static busybox (apt-get install busybox-static)")


# QEMU inside the outer (scenarios that need "qemu", bench/linux-boot): the binary and the
# option ROMs its microvm machine loads for a direct kernel boot. QEMU finds its data
# directory relative to its own path (../share/qemu), so it stays in /usr/bin.
QEMU_ROM_DIR = "/usr/share/qemu"
QEMU_ROMS = ["qboot.rom", "bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin", "kvmvapic.bin"]


def qemu_binaries():
    path = shutil.which(QEMU)
    if not path:
        raise TestbedError(f"{QEMU} is missing (apt-get install qemu-system-x86)")
    return {"/usr/bin/qemu-system-x86_64": path}


def tbtool_path():
    p = BUILD_DIR / "tests" / "linux" / "tbtool"
    if not p.exists():
        raise TestbedError(f"{p} is not built (cmake --build {BUILD_DIR})")
    return p


# ---- scenarios ---------------------------------------------------------------------------

class Scenario:
    """What runs in the outer (a busybox sh script with outer/lib.sh's helpers), what the
    inner guests run (name -> sh script, started by vmm.run=/tb/guest/SCENARIO/NAME), how
    long the outer may take for it (seconds) and what it needs."""

    def __init__(self, name, outer, guest=None, timeout=240, needs=(),
                 expect_triple_fault=False):
        self.name = name
        self.outer = outer
        self.guest = guest or {}
        self.timeout = timeout
        self.needs = set(needs)
        # A guest of this scenario may triple-fault on purpose (otherwise one that does is
        # run again once: Testbed.run).
        self.expect_triple_fault = expect_triple_fault


def dedent(text):
    import textwrap
    return textwrap.dedent(text).strip("\n") + "\n"


# ---- results -----------------------------------------------------------------------------

class Results:
    """The tb-out disk of a finished run, read with debugfs."""

    def __init__(self, image):
        self.image = pathlib.Path(image)

    def _debugfs(self, request):
        proc = subprocess.run(["debugfs", "-R", request, str(self.image)], capture_output=True)
        return proc

    def exists(self, path):
        proc = self._debugfs(f"stat {shlex.quote('/' + path.lstrip('/'))}")
        return b"Inode:" in proc.stdout

    def read(self, path):
        """The bytes of /path, or None when it does not exist."""
        if not self.exists(path):
            return None
        return self._debugfs(f"cat {shlex.quote('/' + path.lstrip('/'))}").stdout

    def text(self, path, default=None):
        data = self.read(path)
        return default if data is None else data.decode(errors="replace")

    def listdir(self, path):
        proc = self._debugfs(f"ls -p {shlex.quote('/' + path.lstrip('/'))}")
        names = []
        for line in proc.stdout.decode(errors="replace").splitlines():
            parts = line.strip("/").split("/")
            if len(parts) >= 5 and parts[4] not in (".", ".."):
                names.append(parts[4])
        return names

    def fetch(self, path, dest):
        """Copies /path out of the disk into dest (large files: no pipe through Python)."""
        dest = pathlib.Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._debugfs(f"dump {shlex.quote('/' + path.lstrip('/'))} {shlex.quote(str(dest))}")
        if not dest.exists():
            raise FileNotFoundError(path)
        return dest


class ScenarioResult:
    """One scenario's outcome: the outer script's exit status and time, and its files on
    tb-out (/NAME/...): outer.log, values (put KEY VALUE), and per VM: VM.console,
    VM.log, VM.rc, VM.metrics, VM.api."""

    def __init__(self, run, name):
        self.run = run
        self.name = name
        info = run.scenarios.get(name, {})
        self.rc = info.get("rc")
        self.secs = info.get("secs")
        # Why an earlier try of this scenario ended with the outer machine (Testbed.run).
        self.retried = info.get("retried", [])
        self.why = info.get("why")

    def text(self, rel, default=""):
        return self.run.results.text(f"{self.name}/{rel}", default)

    def read(self, rel):
        return self.run.results.read(f"{self.name}/{rel}")

    def fetch(self, rel, dest):
        return self.run.results.fetch(f"{self.name}/{rel}", dest)

    def exists(self, rel):
        return self.run.results.exists(f"{self.name}/{rel}")

    @property
    def outer_log(self):
        return self.text("outer.log")

    def values(self):
        out = {}
        for line in self.text("values").splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def value(self, key, default=None):
        return self.values().get(key, default)

    def console(self, vm):
        return self.text(f"{vm}.console")

    def log(self, vm):
        return self.text(f"{vm}.log")

    def vm_rc(self, vm):
        t = self.text(f"{vm}.rc").strip()
        return int(t) if re.fullmatch(r"-?\d+", t) else t or None

    def guest(self, vm):
        """The guest's reports: "@@ KEY VALUE" console lines as {KEY: VALUE} (the last one
        wins; guest_all keeps them all)."""
        return dict(self.guest_all(vm))

    def guest_all(self, vm):
        out = []
        for line in self.console(vm).splitlines():
            m = re.search(r"@@ (\S+) ?(.*?)\r?$", line)
            if m:
                out.append((m.group(1), m.group(2)))
        return out

    def metrics(self, vm):
        out = []
        for line in self.text(f"{vm}.metrics").splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def totals(self, vm, group):
        """The counters of one metrics group summed over every line (a line holds the
        increments since the previous one; stores, such as target_pages, keep the last)."""
        out = {}
        for m in self.metrics(vm):
            for k, v in m.get(group, {}).items():
                out[k] = v if k in STORED_METRICS else out.get(k, 0) + v
        return out

    def report(self, *vms, tail=4000):
        """What a failed assertion shows: the outer log, the outer kernel's messages and
        each VM's console and log."""
        parts = [f"scenario {self.name}: outer rc={self.rc} secs={self.secs}",
                 "--- outer.log", self.outer_log[-tail:],
                 "--- outer.dmesg", self.text("outer.dmesg")[-tail:]]
        for vm in vms:
            parts += [f"--- {vm}.console (rc={self.vm_rc(vm)})", self.console(vm)[-tail:],
                      f"--- {vm}.log", self.log(vm)[-tail:]]
        return "\n".join(parts)


# Metrics that are values, not counters (vmm/metrics.c: metrics_store).
STORED_METRICS = {"target_pages", "actual_pages"}


def fields(line):
    """KEY=VALUE words of a line (tbtool's summaries) as a dict."""
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


class Run:
    def __init__(self, results, scenarios, console, outer_ok, problem):
        self.results = results
        self.scenarios = scenarios  # name -> {"rc": int|str, "secs": float}
        self.console = console
        self.outer_ok = outer_ok
        self.problem = problem

    def result(self, name):
        return ScenarioResult(self, name)


# ---- the outer machine ------------------------------------------------------------------

class Testbed:
    """Builds everything the outer machine needs and runs it.

    vmm: the binary under test; jailer: the jailer beside it (default: the one in vmm's build
    directory, shipped as /bin/jailer when scenarios need "jailer"); extra_binaries: {dest
    path in the outer: host binary} (with their libraries); extra_files: {dest: host file};
    env: variables every scenario sees.
    """

    def __init__(self, work, vmm=None, jailer=None, extra_binaries=None, extra_files=None,
                 env=None, log=print):
        self.work = pathlib.Path(work)
        self.vmm = pathlib.Path(vmm or BUILD_DIR / "vmm")
        self.jailer = pathlib.Path(jailer or self.vmm.parent / "jailer")
        self.extra_binaries = dict(extra_binaries or {})
        self.extra_files = dict(extra_files or {})
        self.env = dict(env or {})
        self.log = log
        self.image = None
        self.generic = None  # the generic kernel's image (prepare, scenarios that need it)

    # -- preparation --

    def check_host(self):
        if not shutil.which(QEMU):
            raise TestbedError(f"{QEMU} is missing (apt-get install qemu-system-x86)")
        for tool in ("debugfs", "mke2fs", "e2fsck", "apt-get", "dpkg-deb", "depmod", "ldd"):
            if not shutil.which(tool):
                raise TestbedError(f"{tool} is missing (scripts/install-deps)")
        if not self.vmm.exists():
            raise TestbedError(f"{self.vmm} is not built")

    def prepare(self, scenarios):
        self.check_host()
        self.work.mkdir(parents=True, exist_ok=True)
        self.image = guest_image(self.log)
        self.rootfs = self.image / "rootfs.ext4"
        missing = [s.name for s in scenarios if "rootfs" in s.needs and not self.rootfs.exists()]
        if missing:
            raise TestbedError(f"scenarios {missing} need the root filesystem, which "
                               "scripts/guest-image builds only as root")
        if any("jailer" in s.needs for s in scenarios) and not self.jailer.exists():
            raise TestbedError(f"{self.jailer} is not built")
        # The generic kernel's image, only when a selected scenario needs it.
        self.generic = None
        if any("generic" in s.needs for s in scenarios):
            self.generic = guest_image(self.log, kernel="generic")
        moddir, modules = outer_modules(self.image, self.log)
        inner = self.work / "inner-initrd.img"
        self.build_inner_initrd(scenarios, inner)
        if self.generic:
            self.build_inner_initrd(scenarios, self.work / "generic-initrd.img", self.generic)
        self.inputs = self.build_inputs()
        self.outer_initrd = self.work / "outer.cpio"
        self.build_outer_initrd(scenarios, moddir, modules, inner, self.outer_initrd)
        self.results_img = self.work / "tb-out.img"
        self.make_results_disk(self.results_img)

    def build_inner_initrd(self, scenarios, out, image=None):
        """image (default the guest image): whose initramfs.cpio.gz comes first."""
        stage = self.work / "inner-stage"
        if stage.exists():
            shutil.rmtree(stage)
        tb = stage / "tb"
        (tb / "bin").mkdir(parents=True)
        shutil.copy(tbtool_path(), tb / "bin" / "tbtool")
        mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
        stage_binary(stage, mke2fs, "/tb/bin/mkfs.ext4")
        shutil.copy(HERE / "guest" / "lib.sh", tb / "lib.sh")
        for s in scenarios:
            d = tb / "guest" / s.name
            d.mkdir(parents=True)
            for name, script in s.guest.items():
                (d / name).write_text("#!/bin/sh\n. /tb/lib.sh\n" + dedent(script))
                os.chmod(d / name, 0o755)
        overlay = self.work / "inner-overlay.cpio"
        make_cpio(stage, overlay, "none")
        # The kernel unpacks concatenated archives in order; ours comes second. A plain
        # archive must start 4-byte aligned (the kernel skips NULs in between).
        first = ((image or self.image) / "initramfs.cpio.gz").read_bytes()
        with open(out, "wb") as f:
            f.write(first + b"\0" * (-len(first) % 4))
            f.write(overlay.read_bytes())

    def build_inputs(self):
        """tb-in: the guest's kernel files, and the generic kernel's in /generic when a
        scenario needs it (each variant cached while its images are the same)."""
        key = (self.image / "SHA256SUMS").read_text()
        img = NESTED_DIR / "tb-in.img"
        stamp = NESTED_DIR / "tb-in.key"
        if self.generic:
            key += "generic:\n" + (self.generic / "SHA256SUMS").read_text()
            img, stamp = NESTED_DIR / "tb-in-generic.img", NESTED_DIR / "tb-in-generic.key"
        if img.exists() and stamp.exists() and stamp.read_text() == key:
            return img
        NESTED_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tb-in.", dir=NESTED_DIR) as tmp:
            size = 64
            dirs = [("guest", self.image, ("vmlinux", "bzImage", "initramfs.cpio.gz",
                                           "kernel.config", "MANIFEST"))]
            if self.generic:
                dirs.append(("generic", self.generic, ("vmlinux", "kernel.config", "MANIFEST")))
            for name, image, files in dirs:
                d = pathlib.Path(tmp) / name
                d.mkdir()
                for f in files:
                    if _same_fs(image, d):
                        os.link(image / f, d / f)
                    else:
                        shutil.copy(image / f, d / f)
                size += sum(f.stat().st_size for f in d.iterdir()) // (1 << 20)
            tmp_img = img.with_suffix(".tmp")
            subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "tb-in", "-d", tmp,
                            str(tmp_img), f"{size}M"], check=True, capture_output=True)
            os.replace(tmp_img, img)
        stamp.write_text(key)
        return img

    def build_outer_initrd(self, scenarios, moddir, modules, inner, out):
        stage = self.work / "outer-stage"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
        for d in ("dev", "proc", "sys", "tmp", "run", "in", "out", "etc", "lib/modules", "tb"):
            (stage / d).mkdir(parents=True, exist_ok=True)
        os.chmod(stage / "tmp", 0o1777)
        stage_busybox(stage, find_busybox())
        stage_binary(stage, self.vmm, "/bin/vmm")
        if any("jailer" in s.needs for s in scenarios):
            stage_binary(stage, self.jailer, "/bin/jailer")
        curl = shutil.which("curl")
        if not curl:
            raise TestbedError("curl is missing (apt-get install curl)")
        stage_binary(stage, curl, "/bin/curl")
        shutil.copy(tbtool_path(), stage / "bin" / "tbtool")
        extra = dict(self.extra_binaries)
        if any("uffd" in s.needs for s in scenarios):
            extra["/bin/uffd_handler"] = BUILD_DIR / "examples" / "uffd_handler"
        if any("qemu" in s.needs for s in scenarios):
            extra.update(qemu_binaries())
            for rom in QEMU_ROMS:
                t = stage / QEMU_ROM_DIR.lstrip("/") / rom
                t.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(os.path.realpath(os.path.join(QEMU_ROM_DIR, rom)), t)
        if any("mke2fs" in s.needs for s in scenarios):
            # Filesystem images made in the outer (pmem: a host file the guest mounts). Not
            # in /bin: busybox's applets are symlinks there, and its sh runs them first.
            extra["/tb/bin/mkfs.ext4"] = shutil.which("mke2fs") or "/sbin/mke2fs"
        for dest, binary in extra.items():
            stage_binary(stage, binary, dest)
        for dest, f in self.extra_files.items():
            t = stage / dest.lstrip("/")
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, t)
        for m in modules:
            shutil.copy(moddir / m, stage / "lib" / "modules" / m)
        (stage / "etc" / "modules.order").write_text("\n".join(modules) + "\n")
        shutil.copy(HERE / "outer" / "init", stage / "init")
        os.chmod(stage / "init", 0o755)
        shutil.copy(HERE / "outer" / "lib.sh", stage / "tb" / "lib.sh")
        shutil.copy(inner, stage / "tb" / "guest-initrd.img")
        if self.generic:
            shutil.copy(self.work / "generic-initrd.img", stage / "tb" / "generic-initrd.img")
        names = []
        for s in scenarios:
            d = stage / "tb" / "scenarios" / s.name
            d.mkdir(parents=True)
            (d / "outer.sh").write_text(dedent(s.outer))
            (d / "timeout").write_text(f"{int(s.timeout * timeout_scale())}\n")
            names.append(s.name)
        (stage / "tb" / "scenarios.list").write_text("".join(n + "\n" for n in names))
        env = dict(self.env)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ and k not in env:
                env[k] = os.environ[k]
        (stage / "etc" / "tb.env").write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
        make_cpio(stage, out, "none")

    def make_results_disk(self, img):
        # The previous run's disk stays as tb-out.prev.img (a failure to look at again).
        if img.exists():
            os.replace(img, img.with_suffix(".prev.img"))
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "tb-out",
                        "-E", f"root_owner={os.getuid()}:{os.getgid()}", str(img), "8G"],
                       check=True, capture_output=True)

    # -- running --

    def qemu_command(self, interactive=False, cmdline_extra=""):
        cmd = [QEMU, "-accel", "tcg,thread=multi", "-cpu", OUTER_CPU,
               "-smp", str(OUTER_SMP), "-m", str(OUTER_MEM_MIB), "-no-reboot",
               "-kernel", str(self.image / "bzImage"), "-initrd", str(self.outer_initrd),
               "-append", f"{OUTER_CMDLINE} {cmdline_extra}".strip(), "-nic", "none",
               "-drive", f"file={self.inputs},format=raw,if=virtio,readonly=on",
               "-drive", f"file={self.results_img},format=raw,if=virtio,cache=unsafe"]
        if self.rootfs.exists():
            cmd += ["-drive", f"file={self.rootfs},format=raw,if=virtio,readonly=on"]
        if interactive:
            cmd += ["-nographic"]
        else:
            cmd += ["-display", "none", "-serial", "stdio", "-monitor", "none"]
        return cmd

    def run(self, scenarios, console_path, on_event=None, crash_retries=2):
        """Boots the outer, runs the scenarios in order, returns a Run. on_event(kind, name,
        info) hears "outer-up", "begin", "end" and "outer-lost" as they happen.

        The outer machine is TCG emulating SVM, and it is not perfectly reliable: seen here,
        its kernel panicking in interrupt entry in the middle of a scenario, and CI once
        waited out its whole hour on a machine that stopped talking. So the host watches
        every phase with its own deadline (the outer's boot, each scenario's limit plus a
        margin, the gaps between) and when the outer dies or stops talking it records why
        (the console's last lines), boots a fresh outer on the same results disk and goes on
        with the scenarios not yet run. The scenario that was running gets crash_retries more
        tries; its result then carries "retried" (each earlier try's reason), which the pytest
        summary prints: an infrastructure failure is never silently a pass, and one that
        outlasts the retries is a failure (rc "outer-crash"). A whole-run budget (VMM_LINUX_BUDGET
        seconds, default the sum of the limits) bounds it all."""
        scale = timeout_scale()
        limits = {s.name: s.timeout * scale for s in scenarios}
        budget = float(os.environ.get("VMM_LINUX_BUDGET", 0) or
                       OUTER_BOOT_LIMIT * scale + sum(limits[n] + 30 for n in limits))
        start = time.monotonic()
        deadline = start + budget
        info = {}
        pending = [s.name for s in scenarios]
        expects_tf = {s.name for s in scenarios if s.expect_triple_fault}
        lost_between = 0  # machines lost while no scenario ran
        problem = None
        boots = 0
        open(console_path, "wb").close()

        def again(name, why):
            """name runs again in the next boot, with why on its record."""
            info[name] = {"rc": "unfinished", "secs": None,
                          "retried": info.get(name, {}).get("retried", []) + [why]}
            if on_event:
                on_event("again", name, {"why": why, "secs": time.monotonic() - start})

        while pending:
            if boots > 0:
                # The disk of a machine that died: make it consistent before the next one
                # mounts it (no journal: fsck finds what the dead kernel left half done).
                subprocess.run(["e2fsck", "-fy", str(self.results_img)], capture_output=True)
                if time.monotonic() + OUTER_BOOT_LIMIT * scale > deadline or boots >= MAX_BOOTS:
                    problem = (f"{problem}; " if problem else "") + \
                        f"no outer boot left for {pending} (budget {budget:.0f}s, {boots} boots)"
                    break
            boots += 1
            outcome = self._boot(pending, boots, limits, console_path, deadline, info,
                                 on_event)
            ran = [n for n in pending if n in info and info[n]["rc"] != "unfinished"]
            pending = [n for n in pending if n not in ran]
            # An inner guest that triple-faulted where the scenario expects none: TCG's
            # nested SVM has been seen to do that to a healthy guest (docs/linux-testbed.md),
            # so the scenario runs once more and the second run is the one judged.
            # The same for an inner guest whose kernel reported a CPU stuck (soft lockup, RCU
            # stall): seen with 4 vCPUs on the outer's 2, a CPU whose timer stopped firing.
            for n in ran:
                if len(info[n].get("retried", [])) >= crash_retries:
                    continue
                if info[n].get("tf") and n not in expects_tf:
                    again(n, f"an inner guest triple-faulted ({info[n]['tf']} VM log(s) say "
                             f"so; outer rc={info[n]['rc']})")
                    pending.append(n)
                elif info[n].get("lk"):
                    again(n, f"an inner guest's kernel reported a stuck CPU ({info[n]['lk']} VM "
                             f"console(s) say so; outer rc={info[n]['rc']})")
                    pending.append(n)
            state, why, cur = outcome["state"], outcome["why"], outcome.get("current")
            if state == "done":
                if cur is not None or any(n not in info for n in pending):
                    problem = f"the outer machine said all-done without running {pending}"
                    break
                continue
            if state in ("fatal", "budget"):
                problem = why
                break
            if on_event:
                on_event("outer-lost", cur, {"why": why, "boot": boots,
                                             "secs": time.monotonic() - start})
            if cur is None:
                lost_between += 1
                if lost_between <= crash_retries:
                    continue
                problem = why
                break  # lost again and again outside any scenario: the outer is unusable
            # A scenario's earlier tries, whatever ended them, count against its retries
            # (the same rule as the reruns above).
            if len(info[cur].get("retried", [])) < crash_retries:
                again(cur, why)
                # First in the next boot; a scenario that reached its end never reruns.
                pending = [cur] + [n for n in pending if n != cur]
                continue
            problem = why
            info[cur].update(rc="outer-crash", why=why)
            pending.remove(cur)
        outer_ok = not pending and all(v.get("rc") != "outer-crash" for v in info.values())
        if not outer_ok and not problem:
            problem = "the outer machine did not come up"
        return Run(Results(self.results_img), info, console_path, outer_ok, problem)

    def _boot(self, names, boot, limits, console_path, deadline, info, on_event):
        """One outer machine running names in order; fills info as scenarios end. Returns
        {"state": "done" | "lost" | "fatal" | "budget", "why": text, "current": name}."""
        extra = "tb.only=" + ",".join(names)
        # VMM_LINUX_FAULT=crash:NAME or hang:NAME: the first outer machine panics, or stops
        # talking, in scenario NAME (outer/lib.sh), to prove the recovery above.
        fault = os.environ.get("VMM_LINUX_FAULT", "")
        if boot == 1 and re.fullmatch(r"(crash|hang):[A-Za-z0-9_]+", fault):
            extra += f" tb.fault={fault}"
        cmd = self.qemu_command(cmdline_extra=extra)
        scale = timeout_scale()
        t0 = time.monotonic()
        phase_end = t0 + OUTER_BOOT_LIMIT * scale
        phase = "booting"
        current = None
        state, why = None, None
        tail = []
        with open(console_path, "ab") as console:
            console.write(f"\n@@TB-HOST boot {boot}: {' '.join(names)}\n".encode())
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            buf = b""
            try:
                while state is None:
                    now = time.monotonic()
                    if now >= deadline:
                        state, why = "budget", (f"the real-Linux suite's budget ran out (in "
                                                f"scenario {current}; VMM_LINUX_BUDGET)")
                        break
                    if now >= phase_end:
                        state, why = "lost", (f"the outer machine said nothing for too long "
                                              f"({phase}); its console ended:\n" +
                                              "\n".join(tail[-25:]))
                        break
                    ready, _, _ = select.select([proc.stdout], [], [],
                                                min(deadline, phase_end) - now)
                    if not ready:
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        proc.wait()
                        state, why = "lost", (f"the outer machine ended (QEMU exit "
                                              f"{proc.returncode}) {phase}; its console ended:"
                                              "\n" + "\n".join(tail[-25:]))
                        break
                    console.write(chunk)
                    console.flush()
                    buf += chunk
                    while b"\n" in buf and state is None:
                        line, buf = buf.split(b"\n", 1)
                        text = line.decode(errors="replace").rstrip("\r")
                        if "TCG doesn't support requested feature" not in text:
                            tail = (tail + [text])[-60:]
                        # A CPU of the outer stuck that long in a scenario that takes
                        # seconds: its kernel is wedged (seen: both CPUs stuck in vmm's
                        # vCPU threads, inside KVM, until the host's deadline). Give up on
                        # it now rather than minutes later.
                        m = SOFT_LOCKUP.search(text)
                        if m and int(m.group(1)) >= LOCKUP_LIMIT:
                            state, why = "lost", (f"the outer kernel is stuck ({phase}): "
                                                  "its console ended:\n" +
                                                  "\n".join(tail[-25:]))
                            break
                        i = text.find(MARK)
                        words = text[i + len(MARK):].split() if i >= 0 else []
                        if not words:
                            continue
                        now = time.monotonic()
                        if words[0] == "outer-up":
                            phase, phase_end = "between scenarios", now + GAP_LIMIT * scale
                            if on_event:
                                on_event("outer-up", None, {"secs": now - t0, "boot": boot})
                        elif words[0] == "begin" and len(words) > 1:
                            current = words[1]
                            phase = f"in scenario {current}"
                            phase_end = now + limits.get(current, 300) + SCENARIO_MARGIN * scale
                            prev = info.get(current, {})
                            info[current] = {"rc": "unfinished", "secs": None}
                            if "retried" in prev:
                                info[current]["retried"] = prev["retried"]
                            if on_event:
                                on_event("begin", current, info[current])
                        elif words[0] == "end" and len(words) > 1:
                            f = dict(w.split("=", 1) for w in words[2:] if "=" in w)
                            rc = f.get("rc", "?")
                            entry = info.setdefault(words[1], {})
                            entry.update(rc=int(rc) if re.fullmatch(r"-?\d+", rc) else rc,
                                         secs=float(f.get("secs", "nan")),
                                         tf=int(f.get("tf", "0") or 0),
                                         lk=int(f.get("lk", "0") or 0))
                            if on_event:
                                on_event("end", words[1], entry)
                            current = None
                            phase, phase_end = "between scenarios", now + GAP_LIMIT * scale
                        elif words[0] == "fatal":
                            state, why = "fatal", ("the outer machine failed: " +
                                                   " ".join(words[1:]))
                        elif words[0] == "all-done":
                            state, why = "done", None
            finally:
                if proc.poll() is None:
                    try:
                        proc.wait(timeout=60 if state == "done" else 1)
                    except subprocess.TimeoutExpired:
                        pass
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return {"state": state, "why": why, "current": current}


# The host's own deadlines for the outer machine (seconds, times VMM_LINUX_TIMEOUT_SCALE):
# from QEMU's start to "outer-up" (about 5 s here, but TCG is at the mercy of the machine's
# load), beyond a scenario's own limit (the outer kills it at the limit, then cleans up and
# syncs), and between one scenario's end and the next one's begin.
OUTER_BOOT_LIMIT = 240
SCENARIO_MARGIN = 90
GAP_LIMIT = 90
# The outer kernel's soft-lockup report, and how long (seconds) a CPU may be stuck before the
# host gives the machine up.
SOFT_LOCKUP = re.compile(r"soft lockup - CPU#\d+ stuck for (\d+)s")
LOCKUP_LIMIT = 50
# Outer machines one run may boot (the first, and those after losses and reruns).
MAX_BOOTS = 6


def timeout_scale():
    """VMM_LINUX_TIMEOUT_SCALE stretches every scenario's time limit (a slower machine)."""
    try:
        return max(1.0, float(os.environ.get("VMM_LINUX_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def _same_fs(a, b):
    return os.stat(a).st_dev == os.stat(b).st_dev


def console_tail(path, n=60):
    try:
        lines = pathlib.Path(path).read_bytes().decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [l for l in lines if "TCG doesn't support requested feature" not in l]
    return "\n".join(lines[-n:])


# ---- pytest glue -------------------------------------------------------------------------

def scenario(outer, guest=None, timeout=240, needs=(), asan=False, expect_triple_fault=False):
    """Declares the scenario a test function asserts on: what the outer runs (outer), what
    the inner guests run (guest: {script name: text}), its time limit and needs ("rootfs";
    "generic": Debian's generic kernel for the guests, $GENERIC_KERNEL and $GENERIC_INITRD
    in the outer; "qemu": QEMU in the outer; "mke2fs": mkfs.ext4 in the outer; "uffd": examples/uffd_handler
    in the outer; "jailer": the jailer in the outer as /bin/jailer).
    The test's `linux` fixture is the ScenarioResult; every selected scenario runs in one
    outer boot. asan=True: also run with the ASan/UBSan build (ctest's -m asan).
    expect_triple_fault=True: a guest triple-faults on purpose (no rerun, Testbed.run)."""
    import pytest

    def deco(fn):
        name = fn.__name__[5:] if fn.__name__.startswith("test_") else fn.__name__
        fn.tb_scenario = Scenario(name, outer, guest, timeout, needs, expect_triple_fault)
        if asan:
            fn = pytest.mark.asan(fn)
        return fn
    return deco


def uses(other, asan=False):
    """Another test on the scenario of test function `other` (one run serves both)."""
    import pytest

    def deco(fn):
        fn.tb_scenario = other.tb_scenario
        if asan:
            fn = pytest.mark.asan(fn)
        return fn
    return deco

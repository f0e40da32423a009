"""The jailer (build/jailer, docs/jailer.md) as root, as CI runs it: build/vmm runs as the
given uid/gid inside <base>/vmm/<id>/root, its API socket appears there and the probe guest
boots through the API from a kernel linked into the jail; cgroup v2 settings are written and
the VMM sits in the cgroup; --netns, --new-pid-ns, --daemonize and --resource-limit do what
Firecracker's do; inherited descriptors and the environment do not reach the VMM; a link
planted in the jail is never followed; a second jailer with the same id is refused; and
every bad argument is refused with its message and exit code 153 (152 for bad files,
namespaces and cgroups) before anything is created.

The cgroup test uses the first controller of pids, memory, cpu, hugetlb that the host's
cgroup v2 hierarchy offers (a host whose controllers are all bound to cgroup v1 offers only
hugetlb, as the development machines do).

The module makes pytest a child subreaper, so VMMs that --daemonize or --new-pid-ns orphan
are reparented to it and their exit codes are checked.
"""
import ctypes
import json
import os
import re
import pathlib
import signal
import socket
import stat
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests_unixsocket

from conftest import BUILD_DIR, PROBES, VMM, require_kvm
from vmm_api import check

JAILER = BUILD_DIR / "jailer"
UID, GID = 12345, 12346  # no such user on the test machines: nothing else owns files as them
# An AddressSanitizer build (VMM_SANITIZE ON or address; its type in the cache is STRING, or
# BOOL when given as -DVMM_SANITIZE:BOOL=ON): its jailer mounts a /proc in the jail for the
# sanitizer runtimes (api/jailer/main.c, JAIL_SANITIZER_BUILD). ThreadSanitizer's does not.
SANITIZER = re.search(r"^VMM_SANITIZE:\w+=(ON|address)$",
                      (BUILD_DIR / "CMakeCache.txt").read_text(), re.M) is not None

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def jail_env():
    """The jailer's environment: the test's (a sanitizer build passes the sanitizers' options
    on to the VMM; every other variable is dropped)."""
    return dict(os.environ)


def require_root():
    if os.geteuid() == 0:
        return
    if os.environ.get("VMM_REQUIRE_KVM") == "1":
        pytest.fail("the jailer tests need root (pivot_root, mknod, setuid), as CI runs")
    pytest.skip("the jailer needs root")


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    assert LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def base(tmp_path):
    b = tmp_path / "jails"
    b.mkdir()
    return b


def reap(pid, timeout=30):
    """Waits for an orphan reparented to this process; its exit code (or -signal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"pid {pid} did not exit in {timeout}s")


def status_field(pid, name):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].split()
    return None


def run_jailer(base, jail_id, *opts, vmm_args=(), exec_file=VMM, timeout=30):
    """One jailer run that is expected to end by itself (refusals)."""
    args = [JAILER, "--id", jail_id, "--exec-file", exec_file, "--uid", UID, "--gid", GID,
            "--chroot-base-dir", base, *opts]
    if vmm_args:
        args += ["--", *vmm_args]
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=jail_env(), stdin=subprocess.DEVNULL)


class Jail:
    """A jailer started with build/vmm and an API socket /api.sock in the jail."""

    def __init__(self, base, jail_id, *opts, vmm_args=("--api-sock", "/api.sock"),
                 pass_fds=(), extra_groups=None, detaches=False, wait=True):
        self.id = jail_id
        self.root = base / "vmm" / jail_id / "root"
        self.sock = self.root / "api.sock"
        self.out_path = base / f"{jail_id}.out"
        self.err_path = base / f"{jail_id}.err"
        self.detaches = detaches  # the jailer process exits (0) and the VMM lives on
        args = [JAILER, "--id", jail_id, "--exec-file", VMM, "--uid", UID, "--gid", GID,
                "--chroot-base-dir", base, *opts, "--", *vmm_args]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.jailer = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, env=jail_env(),
                                           pass_fds=pass_fds, extra_groups=extra_groups)
        self.base_url = "http+unix://" + urllib.parse.quote(str(self.sock), safe="")
        self.session = requests_unixsocket.Session()
        self.pid = None
        self.rc = None
        if wait:
            self.wait_ready()

    def err(self):
        return self.err_path.read_text(errors="replace")

    def out(self):
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout=20):
        """Until the pid file names the VMM and its socket answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.jailer.poll()
            if rc is not None and (rc != 0 or not self.detaches):
                pytest.fail(f"the jailer exited with {rc}: {self.err()}")
            try:
                text = (self.root / "vmm.pid").read_text()
            except OSError:
                text = ""
            if text:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self.sock))
                    self.pid = int(text)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.01)
        pytest.fail(f"the jailed VMM never answered on {self.sock}: {self.err()}")

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        return self.session.request(method, self.base_url + path, data=data, timeout=30)

    def boot_probe(self, scenario="hello"):
        """Links the probe into the jail (the VMM's paths are the jail's) and boots it."""
        kernel = self.root / "probe.elf"
        try:
            os.link(PROBES["elf"], kernel)
        except OSError:
            kernel.write_bytes(PROBES["elf"].read_bytes())
        check(self.request("PUT", "/boot-source", {
            "kernel_image_path": "/probe.elf",
            "boot_args": f"console=ttyS0 probe={scenario}"}), 204)
        check(self.request("PUT", "/actions", {"action_type": "InstanceStart"}), 204)

    def wait_exit(self, timeout=30):
        if self.rc is None:
            if self.detaches:
                self.rc = reap(self.pid, timeout)
                assert self.jailer.wait(timeout=5) == 0, self.err()
            else:
                try:
                    self.rc = self.jailer.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
                    pytest.fail(f"the jailed VMM did not exit in {timeout}s: {self.err()}")
        return self.rc

    def stop(self):
        """SIGTERM: the VMM exits 0 and removes its socket."""
        self.session.close()
        os.kill(self.pid, signal.SIGTERM)
        assert self.wait_exit() == 0, self.err()
        assert not self.sock.exists()

    def kill(self):
        self.session.close()
        if self.pid is None:
            try:
                self.pid = int((self.root / "vmm.pid").read_text()) or None
            except (OSError, ValueError):
                pass
        if self.rc is None and self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.detaches:
                self.rc = reap(self.pid)
            else:
                self.rc = self.jailer.wait()
        if self.jailer.poll() is None:
            self.jailer.kill()
            self.jailer.wait()


@pytest.fixture
def jails():
    """Started jails, killed at the end of the test whatever happened."""
    started = []
    yield started
    for j in started:
        j.kill()


def start(jails, *args, **kw):
    j = Jail(*args, wait=False, **kw)
    jails.append(j)  # killed at the end even if it never answers
    j.wait_ready()
    return j


def assert_no_sanitizer_report(text):
    assert "Sanitizer" not in text, text


# ---- refusals ----

BAD_ARGS = [
    (["--exec-file", "X", "--uid", "1", "--gid", "1"], "--id is required"),
    (["--id", "a_b", "--exec-file", "X", "--uid", "1", "--gid", "1"],
     "--id: invalid character '_' (0x5f) at position 1 of 'a_b'"),
    (["--id", "a" * 65, "--exec-file", "X", "--uid", "1", "--gid", "1"],
     "has 65 characters; an id has 1 to 64"),
    (["--id", "a", "--exec-file", "X", "--uid", "4294967295", "--gid", "1"],
     "--uid: 4294967295 is out of range"),
    (["--id", "a", "--exec-file", "X", "--uid", "root", "--gid", "1"],
     "--uid: 'root' is not a decimal number"),
    (["--id", "a", "--id", "b", "--exec-file", "X", "--uid", "1", "--gid", "1"],
     "--id was given more than once"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--enable-pci"],
     "unknown option '--enable-pci'"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--cgroup-version", "2",
      "--cgroup", "pids.max"], "--cgroup 'pids.max': expected FILE=VALUE"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--cgroup-version", "2",
      "--cgroup", "../../pids.max=1"], "no paths"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--cgroup-version", "2",
      "--cgroup", "cgroup.procs=1"], "the cgroup core files (cgroup.*) are not settings"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--cgroup", "pids.max=1"],
     "only cgroup v2 is supported; give --cgroup-version 2"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--parent-cgroup", "../up"],
     "--parent-cgroup '../up': components may not be empty, '.' or '..'"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--resource-limit",
      "cpu=1"], "unknown resource 'cpu' (fsize, no-file)"),
    (["--id", "a", "--exec-file", "X", "--uid", "1", "--gid", "1", "--resource-limit",
      "no-file=lots"], "'lots' is not a decimal number"),
]


@pytest.mark.parametrize("args,message", BAD_ARGS, ids=[m for _, m in BAD_ARGS])
def test_bad_arguments_exit_153_before_anything(base, args, message):
    r = subprocess.run([str(JAILER), *args, "--chroot-base-dir", str(base)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 153, r
    assert r.stderr.startswith("jailer: ") and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # one line
    assert list(base.iterdir()) == []


def test_help_and_version():
    r = subprocess.run([str(JAILER), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--exec-file FILE" in r.stdout and "--new-pid-ns" in r.stdout
    r = subprocess.run([str(JAILER), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("jailer v"), r


def test_bad_files_and_namespaces_exit_152(base, tmp_path):
    require_root()
    (tmp_path / "plain").write_text("")
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "script").chmod(0o755)
    cases = [
        (dict(exec_file=tmp_path / "absent"), [], "--exec-file"),
        (dict(exec_file=tmp_path), [], "not a regular file"),
        (dict(exec_file=tmp_path / "plain"), [], "not executable (mode 0644)"),
        (dict(exec_file=tmp_path / "script"), [], "not an ELF executable"),
        (dict(), ["--netns", tmp_path / "absent"], "No such file or directory"),
        (dict(), ["--netns", tmp_path / "plain"], "not a network namespace"),
        (dict(), ["--resource-limit", "no-file=99999999999"], "--resource-limit no-file"),
    ]
    for kw, opts, message in cases:
        r = run_jailer(base, "bad-1", *opts, **kw)
        assert r.returncode == 152, (kw, opts, r)
        assert message in r.stderr and r.stderr.startswith("jailer: "), (kw, opts, r.stderr)
        # A refusal frees the id: the pid file the jailer created is gone.
        assert not (base / "vmm" / "bad-1" / "root" / "vmm.pid").exists()
    r = run_jailer(tmp_path / "plain", "bad-2")
    assert r.returncode == 152 and "--chroot-base-dir" in r.stderr and "not a directory" in \
        r.stderr, r


@pytest.mark.parametrize("where", ["vmm", "vmm/link-1", "vmm/link-1/root/lib",
                                   "vmm/link-1/root/dev"])
def test_links_in_the_jail_are_never_followed(base, tmp_path, where):
    """A link planted where the jail needs a directory (by an earlier tenant, who owns the
    jail's root) is refused; nothing is written where it points."""
    require_root()
    victim = tmp_path / "victim"
    victim.mkdir()
    link = base / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    r = run_jailer(base, "link-1", vmm_args=("--api-sock", "/api.sock"))
    assert r.returncode == 152, r
    assert "a symbolic link where the jail needs a real file or directory" in r.stderr, r.stderr
    assert list(victim.iterdir()) == []
    assert not (base / "vmm" / "link-1" / "root" / "vmm.pid").exists()


def test_planted_file_links_are_replaced_not_written(base, tmp_path, jails):
    require_root()
    victim = tmp_path / "victim"
    victim.write_text("host file")
    root = base / "vmm" / "plant-1" / "root"
    (root / "dev" / "net").mkdir(parents=True)
    os.link(victim, root / "vmm")                     # a hard link at the exec file's place
    (root / "dev" / "kvm").symlink_to(victim)         # links at the device nodes' places
    (root / "dev" / "net" / "tun").symlink_to("../kvm")
    j = start(jails, base, "plant-1")
    assert victim.read_text() == "host file"
    assert victim.stat().st_nlink == 1  # the planted link was replaced, not written through
    assert victim.stat().st_uid == 0
    assert stat.S_ISREG((root / "vmm").lstat().st_mode)
    assert (root / "vmm").stat().st_size == VMM.stat().st_size
    assert stat.S_ISCHR((root / "dev" / "kvm").lstat().st_mode)
    assert stat.S_ISCHR((root / "dev" / "net" / "tun").lstat().st_mode)
    j.stop()


# ---- the jailed VMM ----

def test_vmm_runs_jailed(base, tmp_path, jails):
    """uid/gid without the caller's groups, the jail as its root, the devices, no inherited
    descriptor, an empty environment, the default descriptor limit, the command line, the
    socket in the jail."""
    require_root()
    inherited = open(tmp_path / "inherited", "w")
    j = start(jails, base, "vm-1", pass_fds=(inherited.fileno(),), extra_groups=[4242])
    inherited.close()
    pid = j.pid
    assert j.jailer.pid == pid  # without --daemonize / --new-pid-ns the jailer became the VMM
    assert status_field(pid, "Uid") == [str(UID)] * 4
    assert status_field(pid, "Gid") == [str(GID)] * 4
    assert status_field(pid, "Groups") == []
    # Its root is the jail (same inode), and it sees nothing of the host's tree.
    assert os.stat(f"/proc/{pid}/root").st_ino == j.root.stat().st_ino
    assert os.stat(f"/proc/{pid}/root").st_dev == j.root.stat().st_dev
    seen = set(os.listdir(f"/proc/{pid}/root"))
    assert {"vmm", "vmm.pid", "dev", "run", "api.sock"} <= seen, seen
    assert not seen & {"etc", "sys", "home", "tmp", "root", "srv"}, seen
    # Only a sanitizer build mounts a /proc in the jail (its runtimes read it).
    assert ("proc" in seen) == SANITIZER, seen
    # The socket is the VMM's, in the jail.
    st = j.sock.lstat()
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == UID
    # The jail's root, /dev, /dev/net, /run: the VMM's, 0700; the exec file its own copy.
    for d in ("", "dev", "dev/net", "run"):
        st = (j.root / d).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700), d
    exe = (j.root / "vmm").stat()
    assert exe.st_ino != VMM.stat().st_ino and exe.st_nlink == 1 and exe.st_uid == UID
    devices = {"kvm": (10, 232), "net/tun": (10, 200), "urandom": (1, 9)}
    for line in pathlib.Path("/proc/misc").read_text().splitlines():
        minor, name = line.split()
        if name == "userfaultfd":
            devices["userfaultfd"] = (10, int(minor))
    for name, (major, minor) in devices.items():
        st = (j.root / "dev" / name).lstat()
        assert stat.S_ISCHR(st.st_mode), name
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor), name
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o600), name
    # Descriptors: none inherited beyond 0-2.
    mark = (tmp_path / "inherited").stat()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        assert (st.st_dev, st.st_ino) != (mark.st_dev, mark.st_ino), fd
    environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    if SANITIZER:
        assert all(v.split(b"=")[0].endswith(b"SAN_OPTIONS") for v in environ.split(b"\0")
                   if v), environ
    else:
        assert environ == b"", environ
    limits = pathlib.Path(f"/proc/{pid}/limits").read_text()
    assert any(l.split()[:5] == ["Max", "open", "files", "2048", "2048"]
               for l in limits.splitlines()), limits
    assert pathlib.Path(f"/proc/{pid}/cmdline").read_bytes() == \
        b"\0".join([b"/vmm", b"--id", b"vm-1", b"--api-sock", b"/api.sock"]) + b"\0"
    body = check(j.request("GET", "/"), 200)
    assert body["id"] == "vm-1"
    assert (j.root / "vmm.pid").read_text() == str(pid)
    j.stop()
    assert_no_sanitizer_report(j.err())


def test_probe_boots_through_the_api_in_the_jail(kvm, base, jails):
    require_root()
    j = start(jails, base, "vm-2")
    j.boot_probe("hello")
    assert j.wait_exit() == 0, j.err()
    lines = [l for l in j.out().splitlines() if l.startswith("probe: ")]
    assert lines == ["probe: start hello via pvh", "probe: hello from the probe guest",
                     "probe: ok hello"], j.out()
    assert "guest requested a reset through the i8042" in j.err()
    assert not j.sock.exists()
    assert_no_sanitizer_report(j.err())


def test_second_jailer_with_the_same_id_is_refused(base, jails):
    require_root()
    first = start(jails, base, "twin")
    r = run_jailer(base, "twin", vmm_args=("--api-sock", "/api.sock"))
    assert r.returncode == 152, r
    assert f"jailer: id 'twin' is in use: {first.root}/vmm.pid exists" in r.stderr, r.stderr
    # The first one is untouched and serves on.
    assert (first.root / "vmm.pid").read_text() == str(first.pid)
    assert check(first.request("GET", "/"), 200)["id"] == "twin"
    first.stop()


def test_resource_limits(base, jails):
    require_root()
    j = start(jails, base, "limits", "--resource-limit", "no-file=1024",
              "--resource-limit", "fsize=1048576")
    limits = pathlib.Path(f"/proc/{j.pid}/limits").read_text()

    def row(name):
        line = next(l for l in limits.splitlines() if l.startswith(name))
        return line[len(name):].split()[:2]
    assert row("Max open files") == ["1024", "1024"], limits
    assert row("Max file size") == ["1048576", "1048576"], limits
    j.stop()


# ---- cgroup v2 ----

def cgroup2_mount():
    for line in pathlib.Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return pathlib.Path(fields[1].replace("\\040", " "))
    return None


def cgroup_limit(mount):
    """(file, value written, value read back) for the first limit controller on offer."""
    offered = (mount / "cgroup.controllers").read_text().split()
    if "pids" in offered:
        return "pids.max", "64", "64"
    if "memory" in offered:
        return "memory.max", "268435456", "268435456"
    if "cpu" in offered:
        return "cpu.max", "50000 100000", "50000 100000"
    pages = pathlib.Path("/sys/kernel/mm/hugepages")
    if "hugetlb" in offered and pages.is_dir() and any(pages.iterdir()):
        kb = min(int(p.name.split("-")[1][:-2]) for p in pages.iterdir())  # hugepages-2048kB
        name = f"{kb // 1024}MB" if kb < 1024 * 1024 else f"{kb // (1024 * 1024)}GB"
        value = str(2 * kb * 1024)
        return f"hugetlb.{name}.max", value, value
    return None


@pytest.fixture
def cgroup2():
    """The v2 mount, a unique parent cgroup name, and the cgroups to remove afterwards."""
    require_root()
    mount = cgroup2_mount()
    problem = None
    if mount is None:
        problem = "no cgroup v2 hierarchy is mounted"
    elif cgroup_limit(mount) is None:
        problem = f"{mount}/cgroup.controllers offers none of pids, memory, cpu, hugetlb"
    if problem:
        if os.environ.get("VMM_REQUIRE_KVM") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    parent = f"jailer-test-{uuid.uuid4().hex[:8]}"
    made = []
    yield mount, parent, made
    for path in sorted(made, key=lambda p: -len(str(p))):
        for _ in range(100):  # a cgroup empties once its last process is reaped
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def test_cgroup_v2_settings_apply(base, jails, cgroup2):
    mount, parent, made = cgroup2
    file, value, shown = cgroup_limit(mount)
    cg = mount / parent / "cg-1"
    made += [mount / parent, cg]
    j = start(jails, base, "cg-1", "--cgroup-version", "2", "--cgroup", f"{file}={value}",
              "--parent-cgroup", parent)
    assert (cg / file).read_text().strip() == shown
    assert str(j.pid) in (cg / "cgroup.procs").read_text().split()
    assert f"0::/{parent}/cg-1" in pathlib.Path(f"/proc/{j.pid}/cgroup").read_text().splitlines()
    # The controller is handed down to the VM's cgroup.
    controller = file.split(".")[0]
    assert controller in (mount / parent / "cgroup.subtree_control").read_text().split()
    j.stop()


def test_cgroup_v2_existing_parent_is_joined(base, jails, cgroup2):
    """Without --cgroup, version 2 moves the VMM into --parent-cgroup if it exists
    (Firecracker's rule), and leaves it where it is if not."""
    mount, parent, made = cgroup2
    (mount / parent).mkdir()
    made.append(mount / parent)
    j = start(jails, base, "cg-2", "--cgroup-version", "2", "--parent-cgroup", parent)
    assert str(j.pid) in (mount / parent / "cgroup.procs").read_text().split()
    j.stop()
    own = pathlib.Path("/proc/self/cgroup").read_text().splitlines()
    j = start(jails, base, "cg-3", "--cgroup-version", "2", "--parent-cgroup", parent + "-absent")
    assert [l for l in pathlib.Path(f"/proc/{j.pid}/cgroup").read_text().splitlines()
            if l.startswith("0::")] == [l for l in own if l.startswith("0::")]
    assert not (mount / (parent + "-absent")).exists()
    j.stop()


def test_cgroup_v2_refusals(base, cgroup2):
    mount, parent, made = cgroup2
    made += [mount / parent, mount / parent / "cg-4"]
    r = run_jailer(base, "cg-4", "--cgroup-version", "2", "--cgroup", "nosuch.max=1",
                   "--parent-cgroup", parent)
    assert r.returncode == 152, r
    assert "controller 'nosuch' is not available in the cgroup v2 hierarchy" in r.stderr
    file = cgroup_limit(mount)[0]
    controller = file.split(".")[0]
    r = run_jailer(base, "cg-4", "--cgroup-version", "2", "--cgroup",
                   f"{controller}.nosuchfile=1", "--parent-cgroup", parent)
    assert r.returncode == 152, r
    assert f"cgroup file {mount}/{parent}/cg-4/{controller}.nosuchfile does not exist" in \
        r.stderr, r.stderr
    assert not (base / "vmm" / "cg-4" / "root" / "vmm.pid").exists()


# ---- namespaces and detaching ----

def test_netns_joins_the_namespace(kvm, base, jails):
    """The VMM is in the named namespace and attaches a TAP that exists only there (from the
    host's namespace, unprivileged, it could not: creating a TAP needs CAP_NET_ADMIN)."""
    require_root()
    name = f"jailer-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "tuntap", "add", "dev", "jt0", "mode", "tap"],
                       check=True)
        j = start(jails, base, "net-1", "--netns", f"/var/run/netns/{name}")
        ns = os.stat(f"/proc/{j.pid}/ns/net").st_ino
        assert ns == os.stat(f"/run/netns/{name}").st_ino
        assert ns != os.stat("/proc/self/ns/net").st_ino
        check(j.request("PUT", "/network-interfaces/eth0",
                        {"iface_id": "eth0", "host_dev_name": "jt0"}), 204)
        j.boot_probe("hello")
        assert j.wait_exit() == 0, j.err()
        assert "probe: ok hello" in j.out()
        assert_no_sanitizer_report(j.err())
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_new_pid_ns_makes_the_vmm_pid_1(kvm, base, jails):
    require_root()
    j = start(jails, base, "pidns-1", "--new-pid-ns", detaches=True)
    assert j.jailer.wait(timeout=10) == 0  # the jailer records the child's pid and exits
    nspid = status_field(j.pid, "NSpid")
    assert nspid == [str(j.pid), "1"], nspid
    assert status_field(j.pid, "Uid") == [str(UID)] * 4
    assert os.stat(f"/proc/{j.pid}/root").st_ino == j.root.stat().st_ino
    j.boot_probe("hello")
    assert j.wait_exit() == 0, j.err()
    assert "probe: ok hello" in j.out()
    assert_no_sanitizer_report(j.err())


def test_daemonize_detaches(kvm, base, jails):
    require_root()
    j = start(jails, base, "daemon-1", "--daemonize",
              vmm_args=("--api-sock", "/api.sock", "--serial-out", "/serial.out"),
              detaches=True)
    assert j.jailer.wait(timeout=10) == 0
    assert j.pid != j.jailer.pid
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{j.pid}/fd/{fd}") == "/dev/null", fd
    # A session of its own, without a controlling terminal.
    assert os.getsid(j.pid) not in (os.getsid(0), j.jailer.pid)
    fields = pathlib.Path(f"/proc/{j.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert fields[4] == "0"  # tty_nr
    assert j.err() == "" and j.out() == ""
    j.boot_probe("hello")
    assert j.wait_exit() == 0
    assert "probe: ok hello" in (j.root / "serial.out").read_text()


def test_daemonize_and_new_pid_ns(kvm, base, jails):
    require_root()
    j = start(jails, base, "both-1", "--daemonize", "--new-pid-ns", detaches=True)
    assert j.jailer.wait(timeout=10) == 0
    assert status_field(j.pid, "NSpid") == [str(j.pid), "1"]
    assert os.readlink(f"/proc/{j.pid}/fd/1") == "/dev/null"
    j.stop()

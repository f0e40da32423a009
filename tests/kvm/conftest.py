"""Shared fixtures for tests that run the vmm binary (KVM integration, CLI, API)."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

BUILD_DIR = pathlib.Path(os.environ.get("VMM_BUILD_DIR", "build")).resolve()
SOURCE_DIR = pathlib.Path(os.environ.get("VMM_SOURCE_DIR", pathlib.Path(__file__).parents[2])).resolve()
VMM = BUILD_DIR / "vmm"
GUEST_DIR = BUILD_DIR / "tests" / "guest"
PROBES = {
    "elf": GUEST_DIR / "probe.elf",
    "nopvh": GUEST_DIR / "probe-nopvh.elf",
    "bzimage": GUEST_DIR / "probe.bzImage",
}
# The entry path each probe format takes through the VMM.
PROBE_ENTRY = {"elf": "pvh", "nopvh": "linux64", "bzimage": "linux64"}


def build_cache():
    """The build tree's CMake cache: {name: value}."""
    text = (BUILD_DIR / "CMakeCache.txt").read_text()
    return dict(re.findall(r"^(\w+):\w+=(.*)$", text, re.M))


def build_sanitizer():
    """The sanitizers of the build tree (-DVMM_SANITIZE): "address,undefined", "thread" or
    ""."""
    value = build_cache().get("VMM_SANITIZE", "OFF").lower()
    if value == "thread":
        return "thread"
    return "address,undefined" if value in ("on", "address", "true", "yes", "y", "1") else ""


def kvm_problem():
    """Why /dev/kvm cannot be used, or None when it can."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm is unusable: {e.strerror}"
    os.close(fd)
    return None


def require_kvm():
    """Skips on a developer machine without KVM; fails when VMM_REQUIRE_KVM=1 (CI)."""
    problem = kvm_problem()
    if problem is None:
        return
    if os.environ.get("VMM_REQUIRE_KVM") == "1":
        pytest.fail(f"{problem} and VMM_REQUIRE_KVM=1: KVM tests must run here")
    pytest.skip(problem)


@pytest.fixture
def kvm():
    require_kvm()


class Run:
    def __init__(self, proc, out, err):
        self.rc = proc.returncode
        self.out = out
        self.err = err

    def lines(self, prefix="probe: "):
        return [l for l in self.out.splitlines() if l.startswith(prefix)]

    def __repr__(self):
        return f"<rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}>"


def run_vmm(args, timeout=120, stdin=subprocess.DEVNULL, env=None):
    """Runs build/vmm with args; fails the test (instead of hanging) past the timeout."""
    assert VMM.exists(), f"{VMM} is not built"
    proc = subprocess.Popen([str(VMM)] + [str(a) for a in args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"vmm {' '.join(map(str, args))} timed out after {timeout}s\n"
                    f"--- stdout\n{out}\n--- stderr\n{err}")
    return Run(proc, out, err)


def run_probe(fmt, scenario, *extra, cmdline_extra="", timeout=120, **kw):
    """Boots a probe format with `probe=scenario` and returns the Run."""
    cmdline = f"console=ttyS0 probe={scenario} {cmdline_extra}".strip()
    return run_vmm(["--kernel", PROBES[fmt], "--cmdline", cmdline, *extra],
                   timeout=timeout, **kw)


def assert_probe_ok(run, scenario, fmt=None):
    lines = run.lines()
    assert lines, f"no probe output: {run!r}"
    if fmt is not None:
        assert lines[0] == f"probe: start {scenario} via {PROBE_ENTRY[fmt]}", run
    assert f"probe: ok {scenario}" in lines, run
    assert not [l for l in lines if l.startswith("probe: fail")], run
    assert run.rc == 0, run
    assert "guest requested a reset through the i8042" in run.err, run


def netns_problem():
    """Why this process cannot run the VMM in a private network namespace with a TAP, or
    None."""
    if os.geteuid() != 0:
        return "needs root for a network namespace and a TAP"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"unshare -n failed: {r.stderr.strip()}"
    return None


def require_netns(what):
    """A skip on a developer machine that cannot (no root), a failure in CI
    (VMM_REQUIRE_KVM=1), which requires `what`."""
    problem = netns_problem()
    if problem:
        if os.environ.get("VMM_REQUIRE_KVM") == "1":
            pytest.fail(f"{problem}, and VMM_REQUIRE_KVM=1 requires {what}")
        pytest.skip(problem)


def loaded_libraries(exe=VMM):
    """The names of the shared objects the dynamic loader maps for exe (ldd, transitively)."""
    with open(exe, "rb") as f:
        if f.read(2) == b"#!":
            # scripts/leak-check's valgrind wrapper: the binary it runs.
            words = [w.strip('"') for w in pathlib.Path(exe).read_text().split()]
            exe = next(w for w in words if w.endswith("/vmm"))
    run = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True)
    return {l.split()[0].rsplit("/", 1)[-1] for l in run.stdout.splitlines() if l.strip()}

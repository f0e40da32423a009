"""Seccomp filters per thread role (vmm/sandbox.h).

Each role (the VMM thread, the API thread, every vCPU thread) is confined before the guest
runs; a forbidden system call ends the process with 148 and one line naming the call and the
role. The hidden test option --seccomp-test-violation ROLE makes that role's thread call
getpgid (allowed in no filter) right after it is confined. That every probe scenario runs
under the filters is what the other suites prove: the filters are on by default.
"""
import contextlib
import json
import pathlib

import pytest
import requests

from conftest import PROBES, build_sanitizer, loaded_libraries, run_vmm
from vmm_api import VmmProcess, check

ROLES = ["vmm", "api", "vcpu"]
GETPGID = 121  # x86_64


def fault_line(role):
    return (f'seccomp: thread role "{role}" made forbidden syscall {GETPGID} (getpgid); '
            f"exiting with 148")


def probe_args(scenario="hello", *extra):
    return ["--kernel", PROBES["elf"], "--cmdline", f"console=ttyS0 probe={scenario}", *extra]


@pytest.mark.parametrize("role", ROLES)
def test_violation_ends_the_process_with_148(kvm, tmp_path, role):
    """A kernel on the command line with an API socket: all three roles exist at once."""
    run = run_vmm(["--api-sock", tmp_path / "api.sock", *probe_args(),
                   "--seccomp-test-violation", role], timeout=60)
    assert run.rc == 148, run
    assert fault_line(role) in run.err.splitlines(), run
    # The role's thread made no guest progress past its filter: the guest never finished.
    assert "probe: ok hello" not in run.out, run


@pytest.mark.parametrize("role", ["api", "vcpu", "vmm"])
def test_violation_with_config_file_and_api(kvm, tmp_path, role):
    """--api-sock with --config-file: the guest starts without any API request, and the
    API thread is confined before it all the same."""
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(PROBES["elf"]),
                        "boot_args": "console=ttyS0 probe=hello"},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
    }))
    run = run_vmm(["--api-sock", tmp_path / "api.sock", "--config-file", cfg,
                   "--seccomp-test-violation", role], timeout=60)
    assert run.rc == 148, run
    assert fault_line(role) in run.err.splitlines(), run


def test_violation_of_a_vmm_waiting_for_instance_start(kvm, tmp_path):
    """Only --api-sock: the API thread is confined at once; the VMM and vCPU threads when
    InstanceStart builds the VM."""
    v = VmmProcess(tmp_path, "--seccomp-test-violation", "vcpu")
    try:
        check(v.put("/boot-source", {"kernel_image_path": str(PROBES["elf"]),
                                     "boot_args": "console=ttyS0 probe=hello"}), 204)
        # The process ends while it builds the VM: the request gets no answer.
        with contextlib.suppress(requests.exceptions.ConnectionError):
            v.put("/actions", {"action_type": "InstanceStart"})
        assert v.wait_exit() == 148, v.err()
        assert fault_line("vcpu") in v.err().splitlines(), v.err()
    finally:
        v.kill()


@pytest.mark.parametrize("role", ROLES)
def test_no_seccomp_disables_filtering(kvm, tmp_path, role):
    run = run_vmm(["--api-sock", tmp_path / "api.sock", *probe_args(), "--no-seccomp",
                   "--seccomp-test-violation", role], timeout=60)
    assert run.rc == 0, run
    assert "probe: ok hello" in run.out, run
    assert "seccomp filtering is disabled (--no-seccomp)" in run.err, run
    assert f'seccomp test: thread role "{role}" makes a forbidden system call' in run.err, run
    assert "the call went through (no filter)" in run.err, run
    assert "made forbidden syscall" not in run.err, run


def test_filters_are_on_by_default_and_count_no_fault(kvm, tmp_path):
    metrics = tmp_path / "metrics.json"
    run = run_vmm([*probe_args("hello", "--vcpus", "2"), "--metrics-path", metrics],
                  timeout=60)
    assert run.rc == 0, run
    assert "probe: ok hello" in run.out, run
    assert "seccomp" not in run.err, run
    lines = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert lines and all(l["seccomp"]["num_faults"] == 0 for l in lines), lines


def test_debug_level_paths_pass_the_filters(kvm, tmp_path):
    """--level Debug takes paths an Info run never does (the startup line reads
    /proc/self/statm and the guest RAM's residency with mincore; bench/startup relies on
    it): they were once refused with 148."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    run = run_vmm([*probe_args("hello", "--vcpus", "2", "--drive", f"path={disk}",
                               "--entropy"), "--level", "Debug"], timeout=60)
    assert run.rc == 0, run
    assert "probe: ok hello" in run.out, run
    assert "startup: first guest exit" in run.err, run
    assert "seccomp:" not in run.err, run


def thread_seccomp(pid):
    """{thread name: (seccomp mode, number of filters)} of a live process.

    ThreadSanitizer's background thread (a TSan build only) is left out: it is named like
    the process (as the VMM thread), is started by the process's first pthread_create,
    before the VMM thread confines itself, and runs only the runtime's own code."""
    out = {}
    tasks = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        status = dict(l.split(":\t", 1) for l in (task / "status").read_text().splitlines()
                      if ":\t" in l)
        tasks.append((status["Name"].strip(), (int(status["Seccomp"]),
                                               int(status.get("Seccomp_filters", "0")))))
    if build_sanitizer() == "thread":
        assert ("vmm", (0, 0)) in tasks, tasks
        tasks.remove(("vmm", (0, 0)))
    for name, mode in tasks:
        assert name not in out, f"two threads named {name}: {tasks}"
        out[name] = mode
    return out


def test_every_thread_has_exactly_its_own_filter(kvm, tmp_path):
    """Mode 2 (filter) with one filter each: no thread stacks another role's filter."""
    v = VmmProcess(tmp_path, "--kernel", PROBES["elf"], "--cmdline",
                   "console=ttyS0 probe=idle", "--vcpus", "2", "--mem", "32")
    try:
        v.wait_output("probe: idle ready")
        threads = thread_seccomp(v.proc.pid)
        assert threads.get("vmm") == (2, 1), threads
        assert threads.get("api") == (2, 1), threads
        assert threads.get("vcpu0") == (2, 1), threads
        assert threads.get("vcpu1") == (2, 1), threads
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit() == 0, v.err()
    finally:
        v.kill()


def test_api_thread_is_confined_before_any_start(kvm, tmp_path):
    v = VmmProcess(tmp_path)
    try:
        # The socket accepts connections as soon as it listens; an answer comes from the API
        # thread, which has confined itself by then (under TSan the first look came before).
        check(v.get("/"), 200)
        threads = thread_seccomp(v.proc.pid)
        assert threads.get("api") == (2, 1), threads
        # The VMM thread is confined once the VM is built (it still opens files until then).
        assert threads.get("vmm") == (0, 0), threads
        v.stop()
    finally:
        v.kill()


def test_bad_test_role_is_a_bad_argument(tmp_path):
    run = run_vmm([*probe_args(), "--seccomp-test-violation", "io"], timeout=30)
    assert run.rc == 153, run
    assert "--seccomp-test-violation: 'io' is not one of vmm, api, vcpu, uffd" in run.err, run


def test_help_describes_no_seccomp():
    run = run_vmm(["--help"], timeout=30)
    assert run.rc == 0
    assert "--no-seccomp" in run.out
    assert "--seccomp-test-violation" not in run.out


def test_filters_are_compiled_at_build_time():
    """The filters are BPF programs embedded in the executable (vmm/sandbox_gen.c compiles
    them with libseccomp while building): no exec loads libseccomp, and no start compiles."""
    libs = loaded_libraries()
    assert not [l for l in libs if l.startswith("libseccomp")], libs

"""Hostile and careless files and strings (issue 12): nothing the VMM opens may block it,
nothing it writes may destroy a user's data, a snapshot is only loaded with its own memory
file, guest memory behind a truncated memory file fails cleanly, user strings cannot forge
log lines, and a drive can be moved on a load.

- FIFOs (and other non-regular files) named by every path the VMM opens are refused at once
  with "not a regular file"; the VMM keeps answering and SIGTERM still ends it.
- JSON strings with an escaped NUL are refused (API 400, config file 152).
- A refused snapshot load is answered at once and then ends the process (Firecracker's
  documented behaviour, issue 18 item 12): each refused load below has a process of its own.
- Newlines in --id, a drive path or a snapshot's strings are escaped in logs, error messages
  and --describe-snapshot.
- Snapshot creates lose nothing: not the memory file the VM was restored from, not the
  previous snapshot when the disk is full or vmm is killed at a random point, not a device
  node named as a path; the state file and the memory file cannot be one file.
- A load takes only the snapshot's own memory file: another snapshot's (of the same size),
  an unmerged Diff, a directory, /dev/zero or /proc/self/mem are refused, saying what they are.
"""
import os
import random
import signal
import stat
import subprocess
import threading
import time

import pytest
import requests

from conftest import VMM, run_vmm
from test_api import boot_source, start
from test_snapshot import failed_load_ends_the_process, load, snapshot
from vmm_api import VmmProcess, check, probe_kernel

pytestmark = pytest.mark.usefixtures("kvm")

BAD_CONFIG = 152
NOT_REGULAR = "is not a regular file"


def fifo(tmp_path, name="fifo"):
    p = tmp_path / name
    os.mkfifo(p)
    return p


def one_error(run):
    errs = [l for l in run.err.splitlines() if ":ERROR:" in l or l.startswith("vmm: ")]
    assert len(errs) == 1, run
    return errs[0]


def subdir(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    return d


def still_serving(v):
    """The VMM answers and SIGTERM ends it cleanly: its thread never blocked."""
    check(v.get("/"), 200)
    v.stop()


# ---- FIFOs ----

CLI_CASES = {
    "kernel": lambda k, f, t: ["--kernel", f],
    "initrd": lambda k, f, t: ["--kernel", k, "--initrd", f],
    "drive": lambda k, f, t: ["--kernel", k, "--drive", f"path={f}"],
    "drive-ro": lambda k, f, t: ["--kernel", k, "--drive", f"path={f},ro"],
    "serial-out": lambda k, f, t: ["--kernel", k, "--serial-out", f],
    "config-file": lambda k, f, t: ["--config-file", f],
    "describe-snapshot": lambda k, f, t: ["--describe-snapshot", f],
    "base-file": lambda k, f, t: ["--base-file", f, "--diff-file", t / "diff"],
    "diff-file": lambda k, f, t: ["--base-file", t / "base", "--diff-file", f],
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_fifo_on_the_command_line(tmp_path, case):
    (tmp_path / "base").write_bytes(bytes(8192))
    (tmp_path / "diff").write_bytes(bytes(8192))
    args = CLI_CASES[case](probe_kernel(), fifo(tmp_path), tmp_path)
    run = run_vmm(args, timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert NOT_REGULAR in one_error(run) and "a FIFO" in one_error(run), run


def test_char_device_and_directory_say_what_they_are(tmp_path):
    for path, kind in [("/dev/zero", "a character device"), (tmp_path, "a directory")]:
        run = run_vmm(["--kernel", probe_kernel(), "--drive", f"path={path}"], timeout=30)
        assert run.rc == BAD_CONFIG, run
        assert f"is not a regular file or a block device: it is {kind}" in one_error(run), run


def api_fifo_cases():
    def boot_kernel(v, f, t):
        return v.put("/boot-source", {"kernel_image_path": str(f)})

    def boot_initrd(v, f, t):
        return v.put("/boot-source", {**boot_source(), "initrd_path": str(f)})

    def drive(ro):
        def put(v, f, t):
            return v.put("/drives/d", {"drive_id": "d", "path_on_host": str(f),
                                       "is_root_device": False, "is_read_only": ro})
        return put

    def serial(v, f, t):
        check(v.put("/serial", {"serial_out_path": str(f)}), 204)
        check(v.put("/boot-source", boot_source()), 204)
        return v.put("/actions", {"action_type": "InstanceStart"})

    def load_state(v, f, t):
        return load(v, f, t / "mem")

    return {"boot-kernel": boot_kernel, "boot-initrd": boot_initrd,
            "drive-rw": drive(False), "drive-ro": drive(True), "serial": serial,
            "load-state": load_state}


API_FIFO = api_fifo_cases()


@pytest.mark.parametrize("case", API_FIFO)
def test_fifo_through_the_api_before_boot(tmp_path, case):
    v = VmmProcess(tmp_path)
    try:
        if case == "load-state":
            # Answered at once (the FIFO did not block), then the process ends as
            # Firecracker's does after a failed load.
            failed_load_ends_the_process(v, {"snapshot_path": str(fifo(tmp_path)),
                                             "mem_file_path": str(tmp_path / "mem")},
                                         NOT_REGULAR)
        else:
            check(API_FIFO[case](v, fifo(tmp_path), tmp_path), 400, NOT_REGULAR)
            still_serving(v)
    finally:
        v.kill()


def refused_load(d, state, mem, fault, **extra):
    """A load of state and mem in a new process in d: refused with fault, then the process
    ends (Firecracker's behaviour after a failed load)."""
    d.mkdir()
    v = VmmProcess(d)
    try:
        failed_load_ends_the_process(v, {"snapshot_path": str(state), "mem_file_path": str(mem),
                                          **extra}, fault)
    finally:
        v.kill()


def snapshot_with_ro_drive(d, drive_id, disk):
    """d/state and d/mem: a Full snapshot of the idle probe (64 MiB) with disk as a read-only
    drive."""
    disk.write_bytes(bytes(1 << 20))
    v = VmmProcess(d)
    try:
        check(v.put(f"/drives/{drive_id}", {"drive_id": drive_id, "path_on_host": str(disk),
                                            "is_root_device": False, "is_read_only": True}), 204)
        start(v)
        check(v.patch("/vm", {"state": "Paused"}), 204)
        snapshot(v, d / "state", d / "mem")
    finally:
        v.kill()


@pytest.fixture(scope="module")
def ro_drive_snapshot(tmp_path_factory):
    d = tmp_path_factory.mktemp("rodrive")
    snapshot_with_ro_drive(d, "ro", d / "ro.img")
    return d / "state", d / "mem", d / "ro.img"


def test_fifo_at_runtime_and_in_a_state_file(tmp_path, ro_drive_snapshot):
    state, mem, disk = ro_drive_snapshot
    a = VmmProcess(subdir(tmp_path, "a"))
    try:
        check(load(a, state, mem), 204)
        f = fifo(tmp_path)
        # PATCH /drives, a memory dump, a snapshot's two files: refused, the VM untouched.
        check(a.patch("/drives/ro", {"drive_id": "ro", "path_on_host": str(f)}), 400,
              NOT_REGULAR)
        check(a.put("/vm/memory-dump", {"mem_file_path": str(f)}), 400, NOT_REGULAR)
        check(a.put("/snapshot/create", {"snapshot_path": str(f),
                                         "mem_file_path": str(tmp_path / "m")}), 400,
              NOT_REGULAR)
        check(a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s"),
                                         "mem_file_path": str(f)}), 400, NOT_REGULAR)
        assert f.exists() and not (tmp_path / "m").exists() and not (tmp_path / "s").exists()
        assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
        still_serving(a)
    finally:
        a.kill()
    # The memory file of a load, and the read-only drive a state file names: each refused at
    # once (the process then ends, as after any failed load).
    refused_load(tmp_path / "b", state, fifo(tmp_path, "mem-fifo"), NOT_REGULAR)
    saved = disk.read_bytes()
    disk.unlink()
    os.mkfifo(disk)
    try:
        refused_load(tmp_path / "c", state, mem, NOT_REGULAR)
    finally:
        disk.unlink()
        disk.write_bytes(saved)


# ---- escaped NULs ----

NUL_BODIES = [
    ("/drives/a", {"drive_id": "a\u0000xyz", "path_on_host": "/x", "is_root_device": False,
                   "is_read_only": True}),
    ("/drives/a", {"drive_id": "a", "path_on_host": "/tmp/disk.img\u0000.ro",
                   "is_root_device": False, "is_read_only": True}),
    ("/boot-source", {"kernel_image_path": "/k", "boot_args": "console=ttyS0\u0000 init=/x"}),
    ("/logger", {"log_path": "/tmp/l\u0000og"}),
]


@pytest.mark.parametrize("path,body", NUL_BODIES)
def test_escaped_nul_in_a_json_string_is_refused(tmp_path, path, body):
    v = VmmProcess(tmp_path)
    try:
        check(v.put(path, body), 400, "invalid value: a string with a NUL character, expected ")
        assert check(v.get("/vm/config"), 200)["drives"] == []
    finally:
        v.kill()


def test_escaped_nul_in_the_config_file(tmp_path):
    cfg = tmp_path / "vm.json"
    cfg.write_text('{"boot-source": {"kernel_image_path": "%s", "boot_args": "a\\u0000b"}}'
                   % probe_kernel())
    run = run_vmm(["--config-file", cfg], timeout=30)
    assert run.rc == BAD_CONFIG, run
    assert "NUL" in one_error(run), run


# ---- forged lines ----

def test_newlines_in_user_strings_cannot_forge_log_lines(tmp_path):
    forged = "2026-01-01T00:00:00.000000000 [x:main:ERROR:f.c:1] forged"
    path = tmp_path / f"disk\n{forged}"
    run = run_vmm(["--id", f"vm\n{forged}", "--kernel", probe_kernel(), "--drive",
                   f"path={path}"], timeout=30)
    assert run.rc == BAD_CONFIG, run
    lines = run.err.splitlines()
    assert not [l for l in lines if l.startswith("2026-01-01T00:00:00")], run.err
    assert "disk\\n2026-01-01T00:00:00" in run.err, run.err
    assert "[vm\\n2026-01-01T00:00:00" in run.err, run.err


def test_describe_snapshot_escapes_the_state_file_strings(tmp_path):
    """A drive path with a newline, saved in a snapshot, is one escaped line of the
    description."""
    snapshot_with_ro_drive(tmp_path, "d", tmp_path / "d\nstate file: forged")
    r = subprocess.run([str(VMM), "--describe-snapshot", str(tmp_path / "state")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r
    assert [l for l in r.stdout.splitlines() if l.startswith("state file:")] == \
        [f"state file: {tmp_path / 'state'}"], r.stdout
    assert "d\\nstate file: forged (read-only)" in r.stdout, r.stdout


# ---- snapshots: nothing lost ----

def idle_paused(d, **machine):
    """A VMM in d with the idle probe booted and paused."""
    v = VmmProcess(d)
    start(v, **machine)
    check(v.patch("/vm", {"state": "Paused"}), 204)
    return v


def loads_and_runs(d, state, mem):
    """A new VMM loads the snapshot, the guest runs on and ends cleanly."""
    v = VmmProcess(d)
    try:
        check(load(v, state, mem, resume_vm=True), 204)
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0 and "probe: ok idle" in v.out(), v.err()
        return v.err()
    finally:
        v.kill()


def snapshot_of_idle(d):
    """d/s and d/m: a Full snapshot of the idle probe (64 MiB), its VMM gone."""
    a = idle_paused(subdir(d, "a"))
    try:
        snapshot(a, d / "s", d / "m")
    finally:
        a.kill()


def leftovers(d):
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name or p.name.endswith(".keep"))


def test_snapshot_into_the_memory_file_the_vm_was_restored_from(tmp_path):
    """Item 1: refused, the file intact (it still backs the guest), the guest runs on."""
    snapshot_of_idle(tmp_path)
    before = (tmp_path / "m").read_bytes()
    b = VmmProcess(subdir(tmp_path, "b"))
    try:
        check(load(b, tmp_path / "s", tmp_path / "m"), 204)
        check(b.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s2"),
                                         "mem_file_path": str(tmp_path / "m")}), 400,
              "is the memory file this VM was restored from")
        assert (tmp_path / "m").read_bytes() == before
        assert not (tmp_path / "s2").exists() and not leftovers(tmp_path)
        check(b.patch("/vm", {"state": "Resumed"}), 204)
        check(b.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert b.wait_exit(30) == 0 and "probe: ok idle" in b.out(), b.err()
    finally:
        b.kill()


def test_snapshot_paths_that_are_one_file(tmp_path):
    """Item 2: the state and memory file at one path (or through a link) are refused."""
    (tmp_path / "link").symlink_to("one")
    v = idle_paused(tmp_path)
    try:
        for s in ("one", "link"):
            check(v.put("/snapshot/create", {"snapshot_path": str(tmp_path / s),
                                             "mem_file_path": str(tmp_path / "one")}), 400,
                  "name the same file")
        assert not (tmp_path / "one").exists() and not leftovers(tmp_path)
    finally:
        v.kill()


def test_failed_snapshot_keeps_the_previous_one(tmp_path):
    """Item 2: a create that runs out of space fails and the snapshot it would have replaced
    still loads; nothing of the new one is left."""
    from test_faults import fill, tmpfs
    with tmpfs(tmp_path / "fs", 4 << 20) as fs:
        v = idle_paused(subdir(tmp_path, "a"), mem=32)
        try:
            snapshot(v, fs / "a.state", fs / "b.mem")
            before = {p: (fs / p).read_bytes() for p in ("a.state", "b.mem")}
            fill(fs)
            check(v.put("/snapshot/create", {"snapshot_path": str(fs / "a.state"),
                                             "mem_file_path": str(fs / "b.mem")}), 400,
                  "No space left on device")
            assert {p: (fs / p).read_bytes() for p in before} == before
            assert not leftovers(fs)
        finally:
            v.kill()
        loads_and_runs(subdir(tmp_path, "b"), fs / "a.state", fs / "b.mem")


def create_until_killed(v, state, mem):
    try:
        v.put("/snapshot/create", {"snapshot_path": str(state), "mem_file_path": str(mem)})
    except requests.ConnectionError:
        pass  # killed before it answered


def test_sigkill_during_a_create_keeps_a_whole_snapshot(tmp_path):
    """Item 2: vmm killed at random points of a create over the previous snapshot: the
    snapshot at the paths always loads and runs, the previous one until the new state file
    is in place, the new one after. What an interrupted create leaves beside them are its
    temporary files and the kept old memory file."""
    rng = random.Random(12)
    state, mem = tmp_path / "vm.state", tmp_path / "vm.mem"
    v = idle_paused(subdir(tmp_path, "first"))
    try:
        t0 = time.monotonic()
        snapshot(v, state, mem)
        took = time.monotonic() - t0
    finally:
        v.kill()
    for i in range(8):
        v = idle_paused(subdir(tmp_path, f"r{i}"))
        try:
            t = threading.Thread(target=create_until_killed, args=(v, state, mem), daemon=True)
            t.start()
            time.sleep(rng.uniform(0, took * 1.5))
            v.proc.send_signal(signal.SIGKILL)
            v.proc.wait()
            t.join(10)
        finally:
            v.kill()
        loads_and_runs(subdir(tmp_path, f"l{i}"), state, mem)
        assert all(".tmp-" in n or n.endswith(".keep") for n in leftovers(tmp_path))


def test_failed_create_keeps_a_device_node(tmp_path):
    """Item 3: a device node as either path: refused, and the node is still there."""
    node = tmp_path / "null"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    v = idle_paused(subdir(tmp_path, "a"))
    try:
        for body in ({"snapshot_path": str(tmp_path / "s"), "mem_file_path": str(node)},
                     {"snapshot_path": str(node), "mem_file_path": str(tmp_path / "m")}):
            check(v.put("/snapshot/create", body), 400,
                  "is not a regular file: it is a character device")
            assert stat.S_ISCHR(os.stat(node).st_mode)
        assert not (tmp_path / "s").exists() and not (tmp_path / "m").exists()
        check(v.put("/vm/memory-dump", {"mem_file_path": str(node)}), 400,
              "is not a regular file: it is a character device")
        assert stat.S_ISCHR(os.stat(node).st_mode)
    finally:
        v.kill()


# ---- snapshots: only with their own memory file ----

def test_memory_file_identity(tmp_path):
    """Item 8: another snapshot's memory file of the same size, an unmerged Diff, and files
    that are no memory file are refused, each saying what it is."""
    a = idle_paused(subdir(tmp_path, "a"))
    try:
        check(a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s1"),
                                         "mem_file_path": str(tmp_path / "m1")}), 204)
        check(a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s2"),
                                         "mem_file_path": str(tmp_path / "m2")}), 204)
    finally:
        a.kill()
    t = VmmProcess(subdir(tmp_path, "t"))
    try:
        check(t.put("/boot-source", boot_source()), 204)
        check(t.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                        "track_dirty_pages": True}), 204)
        check(t.put("/actions", {"action_type": "InstanceStart"}), 204)
        t.wait_output("probe: idle ready")
        check(t.patch("/vm", {"state": "Paused"}), 204)
        snapshot(t, tmp_path / "full.state", tmp_path / "full.mem")
        check(t.patch("/vm", {"state": "Resumed"}), 204)
        check(t.patch("/vm", {"state": "Paused"}), 204)
        snapshot(t, tmp_path / "diff.state", tmp_path / "diff.mem", "Diff")
    finally:
        t.kill()
    assert (tmp_path / "m1").stat().st_size == (tmp_path / "m2").stat().st_size
    for i, (state, mem, fault) in enumerate([
            (tmp_path / "s1", tmp_path / "m2", "belongs to another snapshot"),
            (tmp_path / "s1", "/dev/zero", "is not a regular file: it is a character device"),
            (tmp_path / "s1", tmp_path, "is not a regular file: it is a directory"),
            (tmp_path / "s1", "/proc/self/mem", "is empty: not a snapshot memory file"),
            (tmp_path / "diff.state", tmp_path / "diff.mem", "is a Diff that was not merged"),
            (tmp_path / "diff.state", tmp_path / "full.mem", "belongs to another snapshot")]):
        refused_load(tmp_path / f"v{i}", state, mem, fault)
    loads_and_runs(subdir(tmp_path, "w"), tmp_path / "s1", tmp_path / "m1")


# ---- a memory file truncated under a restored VM ----

@pytest.fixture
def truncated_restore(tmp_path):
    """A VM restored (paused) from a snapshot whose memory file is then cut to nothing."""
    snapshot_of_idle(tmp_path)
    v = VmmProcess(subdir(tmp_path, "b"))
    check(load(v, tmp_path / "s", tmp_path / "m"), 204)
    os.truncate(tmp_path / "m", 0)
    yield v, tmp_path / "m"
    v.kill()


def test_host_reads_of_a_truncated_memory_file_fail_cleanly(truncated_restore, tmp_path):
    """Item 6: GET /vm/memory, a memory dump and a snapshot of the gone pages are refused,
    naming the memory file; the VMM stays up."""
    v, mem = truncated_restore
    gone = f"the snapshot memory file '{mem}' was truncated"
    check(v.get("/vm/memory/0x100000"), 400, gone)
    check(v.put("/vm/memory-dump", {"mem_file_path": str(tmp_path / "dump")}), 400, gone)
    check(v.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s2"),
                                     "mem_file_path": str(tmp_path / "m2")}), 400, gone)
    assert not (tmp_path / "dump").exists() and not (tmp_path / "m2").exists()
    assert check(v.get("/"), 200)["state"] == "Paused"
    v.stop()


def test_guest_touching_a_truncated_memory_file_is_an_error(truncated_restore):
    """Item 6: the guest runs into the gone pages: vmm ends with an error naming the file,
    not as if the guest had reset."""
    v, mem = truncated_restore
    check(v.patch("/vm", {"state": "Resumed"}), 204)
    check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
    assert v.wait_exit(30) == 1, v.err()
    assert f"the snapshot memory file '{mem}' was truncated" in v.err(), v.err()


# ---- a drive moved on a load ----

def test_drive_overrides_restore_a_snapshot_onto_other_paths(tmp_path, ro_drive_snapshot):
    """Item 10: the snapshot's drive is elsewhere where it is restored: drive_overrides names
    its new path (the device keeps its state and read-only flag); an unknown id is refused."""
    state, mem, disk = ro_drive_snapshot
    moved = tmp_path / "elsewhere.img"
    moved.write_bytes(disk.read_bytes())
    refused_load(tmp_path / "n", state, mem, "drive_overrides: the snapshot has no drive 'nope'",
                 drive_overrides=[{"drive_id": "nope", "path_on_host": str(moved)}])
    v = VmmProcess(subdir(tmp_path, "a"))
    try:
        check(load(v, state, mem, resume_vm=True,
                   drive_overrides=[{"drive_id": "ro", "path_on_host": str(moved)}]), 204)
        drive = check(v.get("/vm/config"), 200)["drives"][0]
        assert drive["path_on_host"] == str(moved) and drive["is_read_only"] is True
        fds = [os.readlink(f"/proc/{v.proc.pid}/fd/{fd}")
               for fd in os.listdir(f"/proc/{v.proc.pid}/fd")]
        assert str(moved) in fds and str(disk) not in fds, fds
        check(v.put("/actions", {"action_type": "SendCtrlAltDel"}), 204)
        assert v.wait_exit(30) == 0 and "probe: ok idle" in v.out(), v.err()
    finally:
        v.kill()

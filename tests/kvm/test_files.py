"""Hostile and careless files and strings (issue 12): nothing the VMM opens may block it,
nothing it writes may destroy a user's data, a snapshot is only loaded with its own memory
file, guest memory behind a truncated memory file fails cleanly, user strings cannot forge
log lines, and a drive can be moved on a load.

- FIFOs (and other non-regular files) named by every path the VMM opens are refused at once
  with "not a regular file"; the VMM keeps answering and SIGTERM still ends it.
- JSON strings with an escaped NUL are refused (API 400, config file 152).
"""
import os

import pytest

from conftest import run_vmm
from test_api import boot_source
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
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_fifo_on_the_command_line(tmp_path, case):
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

    return {"boot-kernel": boot_kernel, "boot-initrd": boot_initrd,
            "drive-rw": drive(False), "drive-ro": drive(True), "serial": serial}


API_FIFO = api_fifo_cases()


@pytest.mark.parametrize("case", API_FIFO)
def test_fifo_through_the_api_before_boot(tmp_path, case):
    v = VmmProcess(tmp_path)
    try:
        check(API_FIFO[case](v, fifo(tmp_path), tmp_path), 400, NOT_REGULAR)
        still_serving(v)
    finally:
        v.kill()


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
        check(v.put(path, body), 400, "an escaped NUL")
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

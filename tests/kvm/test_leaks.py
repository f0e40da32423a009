"""Resource bounds of a long-lived process: 200 create / start / run / destroy cycles of a VM
through libvmm in one process (tests/lib/test_cycles.c) leave no descriptor, no thread and
no memory behind. The program measures after each cycle and fails on any growth; under
the sanitizer build, LeakSanitizer checks the whole run at exit as well.

valgrind --leak-check=full over every probe scenario is scripts/leak-check (CI runs it on
the plain build): it runs the KVM suites with each vmm under memcheck."""
import re
import subprocess

import pytest

from conftest import BUILD_DIR, PROBES

pytestmark = pytest.mark.usefixtures("kvm")
CYCLES = 200


def test_start_stop_cycles_leave_nothing_behind(tmp_path):
    exe = BUILD_DIR / "tests" / "lib" / "test_cycles"
    r = subprocess.run([str(exe), str(PROBES["elf"]), str(tmp_path), str(CYCLES)],
                       capture_output=True, text=True, timeout=900)
    report = r.stdout + r.stderr
    assert r.returncode == 0, report
    assert "Sanitizer" not in r.stderr, report
    assert r.stdout.splitlines()[-1] == "ok", report
    fds = re.search(r"^fds (\d+) -> (\d+)$", r.stdout, re.M)
    threads = re.search(r"^threads (\d+) -> (\d+)$", r.stdout, re.M)
    assert fds and fds.group(1) == fds.group(2), report
    assert threads and threads.group(1) == threads.group(2), report
    print(r.stdout)

"""The README's curl walkthrough (api_curl_boot.sh) run as a test: curl alone drives the
Firecracker boot sequence, pause/resume, FlushMetrics and SendCtrlAltDel."""
import shutil
import subprocess

import pytest

from conftest import SOURCE_DIR, VMM
from vmm_api import probe_kernel


def test_curl_walkthrough(kvm, tmp_path):
    if not shutil.which("curl"):
        pytest.fail("curl is not installed (scripts/install-deps)")
    run = subprocess.run(["sh", str(SOURCE_DIR / "tests" / "kvm" / "api_curl_boot.sh"), str(VMM),
                          str(probe_kernel()), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "api_curl_boot: ok" in run.stdout
    assert "Sanitizer" not in (tmp_path / "err").read_text()

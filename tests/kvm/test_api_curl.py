"""The README's curl walkthrough (api_curl_boot.sh) run as a test: curl alone drives the
Firecracker boot sequence, pause/resume, FlushMetrics and SendCtrlAltDel, and every answer it
got is held to api/openapi.yaml."""
import shutil
import subprocess

import pytest

from conftest import SOURCE_DIR, VMM
from vmm_api import probe_kernel, validate_answer


def test_curl_walkthrough(kvm, tmp_path):
    if not shutil.which("curl"):
        pytest.fail("curl is not installed (scripts/install-deps)")
    run = subprocess.run(["sh", str(SOURCE_DIR / "tests" / "kvm" / "api_curl_boot.sh"), str(VMM),
                          str(probe_kernel()), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "api_curl_boot: ok" in run.stdout
    assert "Sanitizer" not in (tmp_path / "err").read_text()
    answers = (tmp_path / "answers").read_text().splitlines()
    script = (SOURCE_DIR / "tests" / "kvm" / "api_curl_boot.sh").read_text().splitlines()
    assert len(answers) == sum(line.startswith("api ") for line in script), answers
    for i, line in enumerate(answers, 1):
        method, path, status, content_type = (line.split(" ") + [""])[:4]
        validate_answer(method, path, int(status), (tmp_path / f"answer.{i}").read_bytes(),
                        content_type or None)

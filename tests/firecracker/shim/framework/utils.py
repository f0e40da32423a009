"""Shim of Firecracker's framework.utils for running its test_api.py against vmm."""
import subprocess


def check_output(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw)


def pvh_supported():
    return False  # the probe guest logs nothing of the kind


def get_firecracker_version_from_toml():
    import semver
    return semver.Version.parse("1.17.0-dev")

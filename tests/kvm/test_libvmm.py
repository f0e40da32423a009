"""The embeddable library with the probe guest: the C test programs of libvmm's public API
(tests/lib/test_libvmm*.c, linked against libvmm.so: the API, its threading contract, its
logger), the embedder example
(examples/embed.c: N VMs booted concurrently, one snapshotted and restored twice), and
`cmake --install` of the library (header, libvmm.so, libvmm.a, libvmm.pc) with the example
built against the installed copy through pkg-config, shared and static."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, PROBES, SOURCE_DIR, build_cache, build_sanitizer

pytestmark = pytest.mark.usefixtures("kvm")


def run(args, timeout=120, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       **kw)
    return r


@pytest.mark.parametrize("program", [
    "test_libvmm",          # the API
    "test_libvmm_threads",  # callbacks into VMs, the end of a VM, destroy beside calls
    "test_libvmm_log",      # the process's logger and each VM's
])
def test_library(tmp_path, program):
    exe = BUILD_DIR / "tests" / "lib" / program
    r = run([exe, PROBES["elf"], tmp_path], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Sanitizer" not in r.stderr, r.stderr


def check_embed_output(r, n):
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    boots = [l for l in lines if re.match(r"vm\d+ +boot +[\d.]+ +[\d.]+ +[\d.]+ +0$", l)]
    restores = [l for l in lines if re.match(r"restored\d +restore +[\d.]+ +- +- +0$", l)]
    assert len(boots) == n and len(restores) == 2, r.stdout
    assert lines[-1] == "ok", r.stdout


def test_example_embedder(tmp_path):
    r = run([BUILD_DIR / "examples" / "embed", PROBES["elf"], 4, tmp_path])
    check_embed_output(r, 4)
    assert not list(tmp_path.iterdir()), "the example left its snapshot behind"


@pytest.mark.parametrize("link", ["shared", "static"])
def test_install_and_build_against_pkg_config(tmp_path, link):
    prefix = tmp_path / "prefix"
    r = run(["cmake", "--install", BUILD_DIR, "--prefix", prefix])
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("include/libvmm.h", "lib/libvmm.so", "lib/libvmm.a", "lib/pkgconfig/libvmm.pc"):
        assert (prefix / f).exists(), f
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs"] + (["--static"] if link == "static" else [])
                + ["libvmm"], env=env)
    assert flags.returncode == 0, flags.stderr
    exe = tmp_path / "embed"
    cc = shutil.which("cc") or "gcc"
    # A sanitizer build's library needs the sanitizer runtimes in the program too, the same
    # compiler's (clang's and GCC's runtimes differ).
    sanitize = build_sanitizer()
    if sanitize:
        cc = build_cache()["CMAKE_C_COMPILER"]
    args = [cc, "-o", exe, SOURCE_DIR / "examples" / "embed.c"] + flags.stdout.split()
    if link == "static":
        args = [a if a != "-lvmm" else str(prefix / "lib" / "libvmm.a") for a in args]
    if sanitize:
        args.insert(1, f"-fsanitize={sanitize}")
    r = run(args + ["-lpthread"])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([exe, PROBES["elf"], 2, tmp_path],
            env=dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib")))
    check_embed_output(r, 2)

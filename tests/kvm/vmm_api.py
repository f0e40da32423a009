"""A REST API client for build/vmm, and response validation against Firecracker's spec.

`VmmProcess` starts `vmm --api-sock PATH ...`, waits for the socket and talks to it with
requests-unixsocket (the client Firecracker's Python users use). `validate()` checks a
response body against the definitions of ../shared/reference/firecracker-api.yaml with
python3-jsonschema.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.parse

import jsonschema
import pytest
import requests_unixsocket
import yaml

from conftest import BUILD_DIR, SOURCE_DIR, VMM

SPEC = pathlib.Path(os.environ.get(
    "VMM_API_SPEC", SOURCE_DIR.parent / "shared" / "reference" / "firecracker-api.yaml"))


def load_spec():
    if not SPEC.exists():
        raise RuntimeError(f"Firecracker's API spec is not at {SPEC}: check out ../shared next to "
                           "the repository or set VMM_API_SPEC to the yaml")
    with open(SPEC) as f:
        spec = yaml.safe_load(f)
    defs = spec["definitions"]
    # Firecracker serialises the absent optional sections of GET /vm/config as null (its
    # Option fields); Swagger 2.0 cannot say "nullable", so the objects there may be null.
    full = defs["FullVmConfiguration"]["properties"]
    for name, prop in list(full.items()):
        if "$ref" in prop:
            full[name] = {"anyOf": [prop, {"type": "null"}]}
    return spec, defs


SPEC_DOC, DEFINITIONS = load_spec()


def validate(body, definition):
    """Validates a decoded body against #/definitions/<definition> of the spec."""
    schema = {"definitions": DEFINITIONS, "$ref": f"#/definitions/{definition}"}
    jsonschema.Draft4Validator(schema).validate(body)


# The 200 responses of the spec: (method, path) -> definition.
RESPONSE_SCHEMA = {
    ("GET", "/"): "InstanceInfo",
    ("GET", "/version"): "FirecrackerVersion",
    ("GET", "/machine-config"): "MachineConfiguration",
    ("GET", "/vm/config"): "FullVmConfiguration",
    ("GET", "/balloon"): "Balloon",
    ("GET", "/balloon/statistics"): "BalloonStats",
}


# Our extensions' 200 responses (not in Firecracker's document): (method, path prefix) ->
# JSON schema.
EXTENSION_SCHEMA = {
    ("GET", "/vm/memory/"): {
        "type": "object",
        "required": ["address", "length", "data"],
        "additionalProperties": False,
        "properties": {"address": {"type": "integer", "minimum": 0},
                       "length": {"type": "integer", "minimum": 1},
                       "data": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}},
    },
}


def check(resp, status, fault=None):
    """Asserts the status, validates the body against the spec, returns the decoded body.

    fault: a substring the fault message must contain (400 answers)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    if status == 204:
        assert resp.content == b"", resp.content
        return None
    body = resp.json()
    if status >= 400:
        validate(body, "Error")
        assert isinstance(body.get("fault_message"), str) and body["fault_message"], body
        if fault is not None:
            assert fault in body["fault_message"], body
        return body
    assert resp.headers.get("Content-Type") == "application/json", resp.headers
    path = urllib.parse.urlparse(resp.request.url).path
    for (method, prefix), schema in EXTENSION_SCHEMA.items():
        if resp.request.method == method and path.startswith(prefix):
            jsonschema.Draft4Validator(schema).validate(body)
            return body
    definition = RESPONSE_SCHEMA.get((resp.request.method, path))
    assert definition, f"no schema for {resp.request.method} {path}"
    validate(body, definition)
    return body


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid, timeout=5):
    """The fd count once closed connections have been reaped (stable for 200 ms)."""
    deadline = time.monotonic() + timeout
    last = fd_count(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


class VmmProcess:
    """build/vmm with an API socket; stdout/stderr go to files in workdir."""

    def __init__(self, workdir, *extra, sock=None, wrap=(), wait=True, instance_id="api-test",
                 stdin=subprocess.DEVNULL):
        self.dir = pathlib.Path(workdir)
        self.sock = str(sock or self.dir / "api.sock")
        self.out_path = self.dir / "vmm.out"
        self.err_path = self.dir / "vmm.err"
        args = [*wrap, str(VMM), "--api-sock", self.sock, "--id", instance_id, *map(str, extra)]
        assert VMM.exists(), f"{VMM} is not built"
        self.proc = subprocess.Popen(args, stdin=stdin,
                                     stdout=open(self.out_path, "w"),
                                     stderr=open(self.err_path, "w"))
        self.base = "http+unix://" + urllib.parse.quote(self.sock, safe="")
        self.session = requests_unixsocket.Session()
        if wait:
            self.wait_socket()

    def wait_socket(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vmm exited early with {self.proc.returncode}: {self.err()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return
            except OSError:
                time.sleep(0.01)
            finally:
                s.close()
        pytest.fail(f"the API socket never answered: {self.err()}")

    def url(self, path):
        return self.base + path

    def request(self, method, path, body=None, data=None, **kw):
        if body is not None:
            data = json.dumps(body)
        return self.session.request(method, self.url(path), data=data, timeout=30, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def out(self):
        return self.out_path.read_text(errors="replace")

    def err(self):
        return self.err_path.read_text(errors="replace")

    def probe_lines(self):
        return [l for l in self.out().splitlines() if l.startswith("probe: ")]

    def wait_output(self, needle, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.out():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        pytest.fail(f"no {needle!r} in the guest output:\n{self.out()}\n--- stderr\n{self.err()}")

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"vmm did not exit in {timeout}s\n{self.err()}")

    def stop(self):
        """SIGTERM; asserts a clean exit (0, no sanitizer report) and the socket removed."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit()
        err = self.err()
        assert rc == 0, f"rc={rc}\n{err}"
        assert "Sanitizer" not in err, err
        assert not os.path.exists(self.sock), "the API socket was left behind"
        return rc

    def kill(self):
        self.session.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def raw_request(sock_path, data, read=True, timeout=10):
    """Sends raw bytes on a fresh connection; returns what the server sent back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    try:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            chunks.append(c)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) >= length:
                    break
        return b"".join(chunks)
    finally:
        s.close()


def probe_kernel():
    return BUILD_DIR / "tests" / "guest" / "probe.elf"


def netns_available():
    """Whether this process may create a network namespace with a TAP in it."""
    try:
        r = subprocess.run(["unshare", "--net", "--", "ip", "tuntap", "add", "dev", "vmtap0",
                            "mode", "tap"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# Runs the VMM in a private network namespace holding a TAP "vmtap0" (exec keeps the pid).
NETNS_WRAP = ("unshare", "--net", "--", "sh", "-c",
              "ip tuntap add dev vmtap0 mode tap && ip link set vmtap0 up && exec \"$@\"", "sh")

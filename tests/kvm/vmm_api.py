"""A REST API client for build/vmm, and the check of every answer against api/openapi.yaml.

`VmmProcess` starts `vmm --api-sock PATH ...`, waits for the socket and talks to it with
requests-unixsocket (the client Firecracker's Python users use). `check()` asserts an
answer's status and validates it against the project's own description of its API
(api/openapi.yaml, python3-jsonschema): the status must be one the operation declares and
the body must match its schema, with every object closed (a field the document does not
name fails).
"""
import json
import os
import pathlib
import re
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

SPEC_PATH = SOURCE_DIR / "api" / "openapi.yaml"
METHODS = ("get", "put", "patch", "post", "delete")


class SpecLoader(yaml.SafeLoader):
    """YAML with only true/false as booleans (YAML 1.2): an enum value Off or None stays a
    string, as in the JSON on the wire."""


SpecLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
for _first in "tTfF":
    SpecLoader.yaml_implicit_resolvers.setdefault(_first, []).append(
        ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")))


def load_spec(path):
    """An OpenAPI 2.0 document, with the responses' status codes as strings."""
    with open(path) as f:
        spec = yaml.load(f, Loader=SpecLoader)
    for item in spec.get("paths", {}).values():
        for method in METHODS:
            if method in item:
                item[method]["responses"] = {str(k): v for k, v in
                                             item[method]["responses"].items()}
    return spec


SPEC = load_spec(SPEC_PATH)

# A schema's shape keywords, as opposed to its annotations (description, x-...).
SHAPE = ("type", "$ref", "enum", "properties", "items", "additionalProperties", "format",
         "minimum", "maximum", "pattern", "required", "default")


def has_shape(schema):
    return any(k in schema for k in SHAPE)


def json_schema(node):
    """Our schema as the JSON schema the answers are validated with: x-nullable admits
    null, a not-implemented field without a shape admits only null or an empty list (GET
    /vm/config's pmem), and an object with named properties is closed unless it says
    otherwise."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "x-vmm-not-implemented" in node and not has_shape(node):
        return {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}
    out = {k: json_schema(v) for k, v in node.items()
           if not k.startswith("x-") and k != "properties"}
    if "properties" in node:
        out["properties"] = {name: json_schema(p) for name, p in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    if node.get("x-nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


DEFINITIONS = {name: json_schema(d) for name, d in SPEC["definitions"].items()}


def validate(body, schema):
    """Validates a decoded body against a schema of api/openapi.yaml (often a $ref)."""
    full = dict(json_schema(schema), definitions=DEFINITIONS)
    jsonschema.Draft4Validator(full).validate(body)


def deref(spec, node):
    """Follows a local $ref (#/responses/..., #/parameters/...)."""
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        if target is node:
            break
        node = target
    return node


def operations(spec=SPEC):
    """(template, method, operation) of every operation of the document."""
    for template, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield template, method, item[method]


def find_operation(method, path, spec=SPEC):
    """(template, operation) of the document that serves METHOD path, or None. A template's
    {name} matches one non-empty segment; a trailing '/' is ignored, as the router does."""
    segs = path.rstrip("/").split("/")[1:] if path != "/" else []
    matches = []
    for template, m, op in operations(spec):
        if m != method.lower():
            continue
        tsegs = template.rstrip("/").split("/")[1:] if template != "/" else []
        if len(tsegs) == len(segs) and all(
                t == s or (t.startswith("{") and t.endswith("}") and s)
                for t, s in zip(tsegs, segs)):
            matches.append((template.count("{"), template, op))
    if not matches:
        return None
    _, template, op = min(matches)
    return template, op


def validate_answer(method, path, status, body, content_type):
    """Holds one answer (raw body bytes) to api/openapi.yaml; returns the decoded body.

    A 2xx status must be declared by the operation; an error status may fall to `default`.
    A path or method the document does not have may only be refused (400 with an Error)."""
    found = find_operation(method, path)
    if found is None:
        assert status == 400, (f"{method} {path} answered {status}, but api/openapi.yaml "
                               "has no such operation")
        response = deref(SPEC, SPEC["responses"]["Refused"])
    else:
        template, op = found
        response = op["responses"].get(str(status))
        if response is None and status >= 400:
            response = op["responses"].get("default")
        assert response is not None, (f"{method} {template} answered {status}, which "
                                      "api/openapi.yaml does not declare for it")
        response = deref(SPEC, response)
    if "schema" not in response:
        assert body == b"", (method, path, status, body)
        return None
    assert content_type == "application/json", (method, path, status, content_type)
    decoded = json.loads(body)
    validate(decoded, response["schema"])
    return decoded


def check(resp, status, fault=None):
    """Asserts the status, validates the answer against api/openapi.yaml, returns the
    decoded body.

    fault: a substring the fault message must contain (400 answers)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    path = urllib.parse.urlparse(resp.request.url).path
    body = validate_answer(resp.request.method, path, status, resp.content,
                           resp.headers.get("Content-Type"))
    if status >= 400:
        assert isinstance(body.get("fault_message"), str) and body["fault_message"], body
        if fault is not None:
            assert fault in body["fault_message"], body
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

"""api/openapi.yaml, the project's own description of its REST API, against the server that
serves it. Nothing boots, so no KVM is needed.

- The document is valid OpenAPI 2.0 (python3-swagger-spec-validator) and every x-vmm-...
  marker in it is a known one and says why.
- The server routes exactly the document's operations: each served one reaches its handler
  (never "Invalid request method and/or path"), each marked x-vmm-not-implemented answers
  "... not implemented yet" (or, if it is runtime-only, the phase error Firecracker gives
  first), and every other method on the document's paths is refused as an invalid path.
  Every answer is held to the document (vmm_api.validate_answer).
- The document's version is the server's.

Firecracker's own document is compared with ours in test_api_firecracker.py.
"""
import warnings

import pytest
from swagger_spec_validator import validator20
from swagger_spec_validator.common import SwaggerValidationWarning

from vmm_api import (METHODS, SPEC, SPEC_PATH, VmmProcess, check, load_spec, operations,
                     validate_answer)

MARKERS = ("x-vmm-extension", "x-vmm-not-implemented", "x-vmm-differs")
INVALID = "Invalid request method and/or path"
# Firecracker's own words for a few unknown sub-paths (/balloon/..., /mmds/..., /snapshot).
UNKNOWN_SUB_PATH = ("Unrecognized GET request path", "Unrecognized PUT request path",
                    "Missing snapshot operation type.")
NOT_IMPLEMENTED = "not implemented yet"
BEFORE_START = "The requested operation is not supported before starting the microVM."

# A value for each path parameter the document uses.
PATH_VALUES = {"drive_id": "t0", "iface_id": "t0", "id": "t0", "address": "0x1000"}


def test_the_document_is_valid_openapi_2():
    # Our markers and x-nullable sit next to a $ref on purpose (they annotate the field,
    # not the definition it refers to): the validator's warning about that is expected,
    # any other warning is not.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validator20.validate_spec(load_spec(SPEC_PATH))
    others = [str(w.message) for w in caught
              if not (issubclass(w.category, SwaggerValidationWarning)
                      and "with siblings that will be overwritten" in str(w.message))]
    assert not others, others


def walk(node, where=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield where, k, v
            yield from walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def test_every_marker_is_known_and_says_why():
    for where, key, value in walk(SPEC):
        if isinstance(key, str) and key.startswith("x-vmm"):
            assert key in MARKERS, f"{where}: unknown marker {key} (one of {MARKERS})"
            assert isinstance(value, str) and value.strip(), f"{where}/{key}: say why"
        if key == "x-nullable":
            assert value is True, f"{where}/x-nullable: true or nothing"


def concrete(template):
    path = template
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"add a value for the parameter of {template} to PATH_VALUES"
    return path


def test_the_server_routes_exactly_the_documented_operations(tmp_path):
    vmm = VmmProcess(tmp_path)
    served = {(t, m): op for t, m, op in operations()}
    try:
        for template in SPEC["paths"]:
            path = concrete(template)
            for method in METHODS:
                # PUT and PATCH with an empty object: Firecracker's router answers a bodiless
                # one "Empty PUT request." whatever its path.
                r = vmm.request(method.upper(), path,
                                data="{}" if method in ("put", "patch") else None)
                body = validate_answer(method.upper(), path, r.status_code, r.content,
                                       r.headers.get("Content-Type"))
                fault = (body or {}).get("fault_message", "")
                what = f"{method.upper()} {template} answered {r.status_code} {fault!r}"
                op = served.get((template, method))
                if op is None:
                    assert r.status_code == 400 and (
                        INVALID in fault or any(u in fault for u in UNKNOWN_SUB_PATH)), \
                        f"{what}: the server routes an operation api/openapi.yaml lacks"
                elif "x-vmm-not-implemented" in op:
                    # Firecracker's order: a runtime-only operation is refused before the
                    # start first (the server here is not started).
                    assert r.status_code == 400 and (NOT_IMPLEMENTED in fault or
                                                     fault == BEFORE_START), \
                        f"{what}: marked x-vmm-not-implemented in api/openapi.yaml"
                    if NOT_IMPLEMENTED in fault:
                        assert op["x-vmm-not-implemented"] in fault, what
                else:
                    assert INVALID not in fault and NOT_IMPLEMENTED not in fault and \
                        not any(u in fault for u in UNKNOWN_SUB_PATH), \
                        f"{what}: api/openapi.yaml says it is served"
        vmm.stop()
    finally:
        vmm.kill()


def test_the_document_describes_this_version(tmp_path):
    vmm = VmmProcess(tmp_path)
    try:
        version = check(vmm.get("/version"), 200)["firecracker_version"]
        assert SPEC["info"]["version"] == version, \
            "api/openapi.yaml's info.version must be the version it describes"
        vmm.stop()
    finally:
        vmm.kill()


@pytest.mark.parametrize("method,path,status,body,problem", [
    ("GET", "/version", 200, b'{"firecracker_version":"1","extra":1}', "extra"),
    ("GET", "/machine-config", 200, b'{"vcpu_count":"1","mem_size_mib":1}', "'1'"),
    ("PUT", "/vsock", 200, b'{}', "does not declare"),
    ("PUT", "/nothing", 204, b'', "no such operation"),
    ("GET", "/vm/config", 200, b'{"mmds-config":{}}', "'null'"),
])
def test_the_check_refuses_what_the_document_does_not_say(method, path, status, body,
                                                           problem):
    """The validation every API test relies on can fail: a field the document does not name,
    a wrong type, an undeclared status, an unknown operation, a not-implemented section
    that is not null."""
    with pytest.raises(Exception) as e:
        validate_answer(method, path, status, body, "application/json")
    assert problem in str(e.value)

"""api/openapi.yaml against Firecracker's published OpenAPI document, when one is given:
VMM_API_SPEC=/path/to/firecracker-api.yaml (.ci/run sets it when the team's copy lies next to
the repository). Without it this module does not run and says so: pytest reports it skipped
with the reason, and ctest lists api.firecracker as "Skipped", never as passed.

What "matches" means (docs/api.md, "Changing the API"):
- Paths and operations: every one of Firecracker's is in ours, served or marked
  x-vmm-not-implemented; one only we have is marked x-vmm-extension.
- A shared operation we serve takes the same path parameters and body (required or not,
  same schema) and declares every answer Firecracker declares, with the same schema; the
  answers it adds are errors (an Error body).
- Definitions of the same name, and the schemas above, have the same shape: type, format,
  enum, required, minimum, maximum, pattern, default, items, additionalProperties, the same
  $ref names and, recursively, the same properties. A property only we have is marked
  x-vmm-extension; a schema that differs on purpose is marked x-vmm-differs and must really
  differ; a not-implemented field without a shape is compared by name only. Descriptions
  and other annotations are ours and not compared.
"""
import copy
import os
import pathlib

import pytest

from vmm_api import METHODS, SPEC, deref, load_spec

if not os.environ.get("VMM_API_SPEC"):
    pytest.skip("VMM_API_SPEC is not set: api/openapi.yaml was NOT compared with Firecracker's "
                "OpenAPI document (set VMM_API_SPEC=/path/to/firecracker-api.yaml to run it)",
                allow_module_level=True)

FC_PATH = pathlib.Path(os.environ["VMM_API_SPEC"])
# Keywords that make a schema's shape; the rest (description, example, readOnly, x-...)
# annotate it.
SHAPE = ("type", "format", "enum", "required", "minimum", "maximum", "pattern", "default")
STRUCTURE = ("$ref", "properties", "items", "additionalProperties")


@pytest.fixture(scope="module")
def fc():
    assert FC_PATH.is_file(), f"VMM_API_SPEC={FC_PATH} is not a file"
    doc = load_spec(FC_PATH)
    assert doc.get("swagger") == "2.0" and "paths" in doc and "definitions" in doc, \
        f"{FC_PATH} is not an OpenAPI 2.0 document"
    return doc


class Comparison:
    """Walks both documents; `problems` are mismatches, `notes` the deliberate differences."""

    def __init__(self, ours, theirs):
        self.ours, self.theirs = ours, theirs
        self.problems, self.notes = [], []

    def problem(self, where, what):
        self.problems.append(f"{where}: {what}")

    def ours_only(self, where, node):
        """Something Firecracker's document lacks: it must be marked as ours."""
        if "x-vmm-extension" in node:
            self.notes.append(f"{where}: extension: {node['x-vmm-extension']}")
        else:
            self.problem(where, "not in Firecracker's document: mark it x-vmm-extension")

    # ---- schemas ----

    def schema(self, ours, theirs, where):
        if "x-vmm-extension" in ours:
            self.problem(where, "marked x-vmm-extension, but Firecracker has it")
        if "x-vmm-differs" in ours:
            probe = Comparison(self.ours, self.theirs)
            probe.shape(ours, theirs, where)
            if not probe.problems:
                self.problem(where, "marked x-vmm-differs, but it matches Firecracker's")
            self.notes.append(f"{where}: differs: {ours['x-vmm-differs']}")
            return
        if "x-vmm-not-implemented" in ours:
            self.notes.append(f"{where}: not implemented: {ours['x-vmm-not-implemented']}")
            if not any(k in ours for k in SHAPE + STRUCTURE):
                return
        self.shape(ours, theirs, where)

    def shape(self, ours, theirs, where):
        if ("$ref" in ours) != ("$ref" in theirs):
            self.problem(where, f"ours is {ours.get('$ref', 'inline')}, Firecracker's is "
                                f"{theirs.get('$ref', 'inline')}")
            return
        if "$ref" in ours:
            # Same name: the definitions are compared once, by name.
            if ours["$ref"] != theirs["$ref"]:
                self.problem(where, f"ours refers to {ours['$ref']}, Firecracker's to "
                                    f"{theirs['$ref']}")
            return
        for key in SHAPE:
            a, b = ours.get(key), theirs.get(key)
            if key in ("enum", "required") and a is not None and b is not None:
                a, b = sorted(map(repr, a)), sorted(map(repr, b))
            if a != b:
                self.problem(where, f"{key}: ours {ours.get(key)!r}, Firecracker's "
                                    f"{theirs.get(key)!r}")
        for key in ("items", "additionalProperties"):
            a, b = ours.get(key), theirs.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                self.schema(a, b, f"{where}/{key}")
            elif a != b:
                self.problem(where, f"{key}: ours {a!r}, Firecracker's {b!r}")
        self.properties(ours.get("properties", {}), theirs.get("properties", {}), where)

    def properties(self, ours, theirs, where):
        for name in theirs:
            if name not in ours:
                self.problem(f"{where}/properties/{name}", "Firecracker's field is missing "
                             "(describe it, with x-vmm-not-implemented if it is refused)")
        self.named(ours, theirs, f"{where}/properties/")

    def named(self, ours, theirs, prefix):
        """Our schemas by name: compared with Firecracker's of the same name, or ours only."""
        for name, node in ours.items():
            if name in theirs:
                self.schema(node, theirs[name], prefix + name)
            else:
                self.ours_only(prefix + name, node)

    def definitions(self):
        self.named(self.ours["definitions"], self.theirs["definitions"], "definitions/")

    # ---- paths ----

    def parameters(self, doc, item, op):
        """{(in, name): parameter} of an operation, its path's included."""
        params = {}
        for p in item.get("parameters", []) + op.get("parameters", []):
            p = deref(doc, p)
            params[(p["in"], p["name"] if p["in"] != "body" else "")] = p
        return params

    def operation(self, template, method):
        where = f"{method.upper()} {template}"
        o_item, t_item = self.ours["paths"][template], self.theirs["paths"][template]
        ours, theirs = o_item[method], t_item[method]
        if "x-vmm-extension" in ours:
            self.problem(where, "marked x-vmm-extension, but Firecracker has it")
        if "x-vmm-not-implemented" in ours:
            self.notes.append(f"{where}: not implemented: {ours['x-vmm-not-implemented']}")
            return
        op_params = self.parameters(self.ours, o_item, ours)
        fc_params = self.parameters(self.theirs, t_item, theirs)
        if set(op_params) != set(fc_params):
            self.problem(where, f"parameters: ours {sorted(op_params)}, Firecracker's "
                                f"{sorted(fc_params)}")
        for key in set(op_params) & set(fc_params):
            a, b = op_params[key], fc_params[key]
            if bool(a.get("required")) != bool(b.get("required")):
                self.problem(f"{where} {key}", "required differs")
            if key[0] == "body":
                self.schema(a["schema"], b["schema"], f"{where} body")
            elif a.get("type") != b.get("type"):
                self.problem(f"{where} {key}", f"type: ours {a.get('type')}, Firecracker's "
                                               f"{b.get('type')}")
        o_resp, t_resp = ours["responses"], theirs["responses"]
        for code, tr in t_resp.items():
            if code not in o_resp:
                self.problem(where, f"Firecracker declares the answer {code}; ours does not")
                continue
            a, b = deref(self.ours, o_resp[code]), deref(self.theirs, tr)
            if ("schema" in a) != ("schema" in b):
                self.problem(f"{where} {code}", "one answer has a body, the other not")
            elif "schema" in a:
                self.schema(a["schema"], b["schema"], f"{where} {code}")
        for code in set(o_resp) - set(t_resp):
            schema = deref(self.ours, o_resp[code]).get("schema", {})
            if code == "default" or int(code) < 400 or \
                    schema.get("$ref") != "#/definitions/Error":
                self.problem(f"{where} {code}", "an answer Firecracker does not declare "
                                                "(only added errors are allowed)")

    def paths(self):
        ours, theirs = self.ours["paths"], self.theirs["paths"]
        for template in theirs:
            if template not in ours:
                self.problem(template, "Firecracker's path is missing (serve it or list its "
                                       "operations with x-vmm-not-implemented)")
        for template, item in ours.items():
            if template not in theirs:
                self.ours_only(template, item)
                continue
            if "x-vmm-extension" in item:
                self.problem(template, "marked x-vmm-extension, but Firecracker has it")
            for method in METHODS:
                if method in theirs[template] and method not in item:
                    self.problem(f"{method.upper()} {template}", "Firecracker's operation is "
                                 "missing (serve it or mark it x-vmm-not-implemented)")
                elif method in item and method not in theirs[template]:
                    self.ours_only(f"{method.upper()} {template}", item[method])
                elif method in item:
                    self.operation(template, method)

    def run(self):
        for key in ("basePath", "consumes", "produces"):
            if self.ours.get(key) != self.theirs.get(key):
                self.problem(key, f"ours {self.ours.get(key)!r}, Firecracker's "
                                  f"{self.theirs.get(key)!r}")
        self.paths()
        self.definitions()
        return self


def compare(ours, theirs):
    return Comparison(ours, theirs).run()


def test_every_shared_path_and_schema_matches_firecracker(fc):
    result = compare(SPEC, fc)
    print(f"api/openapi.yaml against {FC_PATH} (Firecracker {fc['info'].get('version')}):")
    print("\n".join(f"  {n}" for n in result.notes))
    assert not result.problems, "\n".join(result.problems)


# ---- the comparison can fail: each deliberate mistake below is reported ----

def mutated(change):
    ours = copy.deepcopy(SPEC)
    change(ours)
    return ours


def retype(o):
    o["definitions"]["Drive"]["properties"]["is_root_device"]["type"] = "string"


def unmarked_field(o):
    o["definitions"]["BootSource"]["properties"]["kernel_args"] = {"type": "string"}


def unmarked_difference(o):
    del o["definitions"]["MachineConfiguration"]["properties"]["vcpu_count"]["x-vmm-differs"]


def stale_difference(o):
    o["definitions"]["Drive"]["properties"]["drive_id"]["x-vmm-differs"] = "it does not"


def missing_path(o):
    del o["paths"]["/vsock"]


def other_body(o):
    o["paths"]["/vsock"]["put"]["parameters"][0]["schema"] = {"$ref": "#/definitions/Drive"}


def missing_field(o):
    del o["definitions"]["Vsock"]["properties"]["vsock_id"]


def lost_answer(o):
    del o["paths"]["/balloon"]["get"]["responses"]["400"]


@pytest.mark.parametrize("change,where", [
    (retype, "definitions/Drive/properties/is_root_device: type"),
    (unmarked_field, "definitions/BootSource/properties/kernel_args: not in Firecracker's"),
    (unmarked_difference, "definitions/MachineConfiguration/properties/vcpu_count: maximum"),
    (stale_difference, "definitions/Drive/properties/drive_id: marked x-vmm-differs"),
    (missing_path, "/vsock: Firecracker's path is missing"),
    (other_body, "PUT /vsock body: ours refers to #/definitions/Drive"),
    (missing_field, "definitions/Vsock/properties/vsock_id: Firecracker's field is missing"),
    (lost_answer, "GET /balloon: Firecracker declares the answer 400"),
])
def test_the_comparison_reports_a_mismatch(fc, change, where):
    problems = compare(mutated(change), fc).problems
    assert any(p.startswith(where) for p in problems), problems

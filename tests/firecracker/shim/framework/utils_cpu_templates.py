import pytest

# This host's static templates: none are supported by vmm (CPU templates are not built).
SUPPORTED_CPU_TEMPLATES = []
CUSTOM_CPU_TEMPLATES = [{"name": "C3", "template": {"cpuid_modifiers": []}},
                        {"name": "T2", "template": {"cpuid_modifiers": []}}]


def pin_cpu_template(templates):
    return pytest.mark.parametrize("cpu_template", templates, ids=[t["name"] for t in templates])

"""CPU templates seen by Linux: the same kernel booted twice through the API, once plainly and
once after PUT /cpu-config with a custom template that clears bmi1, bmi2 and adx (leaf 7
ebx bits 3, 8, 19) and movbe and popcnt (leaf 1 ecx bits 22, 23). Linux's /proc/cpuinfo
under the template lacks every masked flag the plain boot had and keeps every other flag;
GET /vm/config shows the template. (The probe guest cannot show this on the PVM KVM of the
build machines: docs/platform-notes.md.)
"""
import json

from testbed import scenario

MASKED = {"bmi1": ("0x7", "ebx", 3), "bmi2": ("0x7", "ebx", 8), "adx": ("0x7", "ebx", 19),
          "movbe": ("0x1", "ecx", 22), "popcnt": ("0x1", "ecx", 23)}


def bitmap(bits):
    return "0b" + "".join("0" if b in bits else "x" for b in range(31, -1, -1))


TEMPLATE = {"cpuid_modifiers": [
    {"leaf": "0x1", "subleaf": "0x0", "flags": 0,
     "modifiers": [{"register": "ecx", "bitmap": bitmap({22, 23})}]},
    {"leaf": "0x7", "subleaf": "0x0", "flags": 1,
     "modifiers": [{"register": "ebx", "bitmap": bitmap({3, 8, 19})}]}]}

OUTER = """
    for name in plain tmpl; do
        vm_start $name --api-sock $T/$name.sock
        wait_for $T/$name.sock 60
        api $name PUT /boot-source '{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
            "boot_args": "'"$CMDLINE vmm.run=/tb/guest/$S/flags"'"}' || exit 1
        api $name PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}' || exit 1
        [ $name = tmpl ] && { api $name PUT /cpu-config '%s' || exit 1; }
        api $name PUT /actions '{"action_type": "InstanceStart"}' || exit 1
        api $name GET /vm/config >$R/$name-config.json
        vm_wait $name 300
    done
""" % json.dumps(TEMPLATE)

GUEST = """
    put flags "$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
"""


@scenario(outer=OUTER, guest={"flags": GUEST}, timeout=240)
def test_custom_template_flags_in_proc_cpuinfo(linux):
    report = linux.report("plain", "tmpl")
    plain = set(linux.guest("plain").get("flags", "").split())
    tmpl = set(linux.guest("tmpl").get("flags", "").split())
    assert plain and tmpl, report
    seen = set(MASKED) & plain
    # The outer's (QEMU TCG) CPU offers these; without them the check would prove nothing.
    assert len(seen) >= 3, (sorted(plain), report)
    assert not seen & tmpl, (sorted(seen & tmpl), report)
    assert tmpl == plain - set(MASKED), (sorted(plain ^ tmpl), report)
    cfg = json.loads(linux.text("tmpl-config.json"))
    assert [m["leaf"] for m in cfg["cpu-config"]["cpuid_modifiers"]] == ["0x1", "0x7"], cfg

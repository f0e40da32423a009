#!/bin/sh
# Fails when the probe uses an instruction this project's test platform cannot run: its KVM
# emulates guest code and rejects SSE/AVX arithmetic, popcnt, cmpxchg16b, xsave/xrstor and
# int3 (docs/platform-notes.md). Any x87/MMX/SSE/AVX instruction or register, and the common
# post-x86-64 extensions (BMI, LZCNT/TZCNT, MOVBE, CRC32, RDRAND), count as forbidden: the
# probe is meant to be base x86-64 general-register code only.
#
# usage: check_disasm.sh OBJDUMP FILE.elf...
set -u
if [ $# -lt 2 ]; then
        echo "usage: check_disasm.sh OBJDUMP FILE.elf..." >&2
        exit 2
fi
objdump=$1
shift
forbidden='%([xyz]mm[0-9]+|mm[0-7]|st(\([0-7]\))?)([^0-9]|$)'
forbidden="$forbidden"'|[[:space:]](popcnt|cmpxchg16b|xsave[a-z0-9]*|xrstor[a-z0-9]*|fxsave[a-z0-9]*|fxrstor[a-z0-9]*|int3|lzcnt|tzcnt|movbe|crc32[a-z]*|rdrand|rdseed|andn|bextr|blsi|blsr|blsmsk|bzhi|pdep|pext|rorx|sarx|shlx|shrx|adcx|adox|vzeroupper|ldmxcsr|stmxcsr)([[:space:]]|$)'
forbidden="$forbidden"'|[[:space:]]int[[:space:]]+\$0x3([^0-9a-f]|$)'
# x87: no general-purpose mnemonic starts with "f"; MMX state: emms.
forbidden="$forbidden"'|:[[:space:]]+(f[a-z0-9]+|emms)([[:space:]]|$)'
status=0
for elf in "$@"; do
        if ! dis=$("$objdump" -d --no-show-raw-insn "$elf"); then
                echo "check_disasm: $objdump failed on $elf" >&2
                status=1
                continue
        fi
        # Instruction lines only ("  100200:<tab>mov ..."), not headers or labels, and not
        # the image header (boot/entry.S): data whose size fields can decode as anything.
        insns=$(printf '%s\n' "$dis" |
                awk '/^[0-9a-f]+ <.*>:$/ { skip = ($2 == "<probe_image_header>:") } !skip' |
                grep '^[[:space:]]*[0-9a-f]\+:')
        count=$(printf '%s\n' "$insns" | grep -c .)
        if [ "$count" -lt 100 ]; then
                echo "check_disasm: $elf: only $count instructions disassembled" >&2
                status=1
        fi
        bad=$(printf '%s\n' "$insns" | grep -E "$forbidden")
        if [ -n "$bad" ]; then
                echo "check_disasm: $elf uses instructions the test platform cannot run:" >&2
                printf '%s\n' "$bad" >&2
                status=1
        else
                echo "check_disasm: $elf: $count instructions, none forbidden"
        fi
done
exit $status

# Helpers for a scenario's guest part, sourced before it (busybox sh in the guest image's
# initramfs, started by its vmm.run= hook after the virtio modules are loaded and the network
# from ip= is configured). The host reads the guest's reports from the console:
#
#   put KEY VALUE     a line "@@ KEY VALUE" (ScenarioResult.guest() in testbed.py)
#   run KEY CMD...    runs CMD, reports its output's last line as KEY and its status as
#                     KEY.rc
#   dmesg_problems    the kernel log lines that mean trouble (WARN, BUG, Oops, ...), reported
#                     as "dmesg.problem" lines and a "dmesg.problems N" count
#   hb_start [SECS]   a heartbeat: "@@ hb N" every SECS (default 1) in the background
#
# The guest's tools: busybox, tbtool (tests/linux/guest-tools), mkfs.ext4 (e2fsprogs' mke2fs:
# busybox runs its own applets before PATH, and its mke2fs makes only ext2).
export PATH=/tb/bin:/bin:/sbin

put() {
        echo "@@ $1 $2"
}

run() {
        local key=$1 out rc
        shift
        out=$("$@" 2>&1)
        rc=$?
        put "$key" "$(echo "$out" | tail -n 1)"
        put "$key.rc" "$rc"
        return $rc
}

dmesg_problems() {
        local n=0
        dmesg >/tmp/dmesg.txt
        while read -r line; do
                [ -n "$line" ] || continue
                put dmesg.problem "$line"
                n=$((n + 1))
        done <<EOF
$(grep -E 'WARNING: CPU:|cut here|BUG:|Oops|Call Trace|general protection|segfault|XSAVE consistency|Unhandled|unknown NMI|soft lockup|hung task|Kernel panic|invalid opcode|ACPI (Error|Exception|BIOS Error|Warning)' /tmp/dmesg.txt)
EOF
        put dmesg.problems "$n"
}

hb_start() {
        (
                i=0
                while :; do
                        echo "@@ hb $i"
                        i=$((i + 1))
                        sleep "${1:-1}"
                done
        ) &
}

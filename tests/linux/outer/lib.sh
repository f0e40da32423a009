# Helpers for a scenario's outer part (busybox sh), sourced before it. A scenario runs with
#
#   $S        its name
#   $R        /out/$S: files the host reads after the run (tb-out disk)
#   $T        /tmp/tb/$S: scratch space in the outer's RAM (sockets, FIFOs, big temporaries)
#   $KERNEL, $BZIMAGE   the guest's PVH vmlinux and bzImage
#   $INITRD   the guest image's initramfs plus the test bed's archive (tbtool, mke2fs, the
#             scenarios' guest scripts under /tb/guest/$S)
#   $ROOTFS_DEV  the guest image's root filesystem as a read-only block device ('' if none)
#   $GENERIC_KERNEL, $GENERIC_INITRD  the same with Debian's generic kernel (its vmgenid
#             driver): its PVH vmlinux and its initramfs plus the same archive; present only
#             when a selected scenario needs "generic"
#   $CMDLINE  the guest command line every helper starts from (quiet, reboot=k, ...)
#   $VM_CMDLINE  appended to it by vm_boot (the scenario sets it, e.g. to $GUEST_IP)
#   $GUEST_IP  ip= for a guest at 172.16.0.2/24 behind the outer's 172.16.0.1 (tap_add)
#
# and these helpers (NAME names a VM; its files are $R/NAME.*):
#
#   vm_start NAME VMM-ARGS...     vmm in the background: console $R/NAME.console, log (stderr)
#                                 $R/NAME.log, stdin the FIFO $T/NAME.in (vm_send)
#   vm_boot NAME SCRIPT [VMM-ARGS...]  vm_start with $KERNEL, $INITRD and the command line
#                                 that runs guest script SCRIPT (vmm.run=/tb/guest/$S/SCRIPT)
#   vm_wait NAME [SECS]           waits for the VM's end, writes its exit code to $R/NAME.rc;
#                                 returns it (124 when SECS passed: the VM still runs)
#   vm_kill NAME [SIG]            signals the VM (default KILL)
#   vm_send NAME TEXT             a line on the guest's console input
#   console_wait NAME ERE [SECS]  until the console matches (1: timeout or the VM ended)
#   vm_until NAME SECS CMD...     runs CMD every second until it succeeds (0); 1 as soon as
#                                 the VM has ended (a dead VM's API never answers), 124
#                                 after SECS
#   api NAME METHOD PATH [BODY]   a request on $T/NAME.sock; the body is printed, the status
#                                 and body are logged in $R/NAME.api; fails unless 2xx
#   tap_add TAP ADDR/PREFIX       a TAP in the outer with that address (removed afterwards)
#   put KEY VALUE                 a line KEY=VALUE in $R/values
#   now                           seconds since the outer booted (two decimals)
#   say TEXT                      a line in outer.log
#
# Nothing here fails the scenario by itself: the host-side assertions read what happened.

tb_vms=
INITRD=/tb/guest-initrd.img
KERNEL=/in/guest/vmlinux
BZIMAGE=/in/guest/bzImage
GENERIC_KERNEL=/in/generic/vmlinux
GENERIC_INITRD=/tb/generic-initrd.img
CMDLINE="console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd quiet"
ROOTFS_DEV=$(findfs LABEL=rootfs 2>/dev/null)
GUEST_IP="ip=172.16.0.2::172.16.0.1:255.255.255.0::eth0:off"
VM_CMDLINE=
export INITRD KERNEL BZIMAGE GENERIC_KERNEL GENERIC_INITRD CMDLINE ROOTFS_DEV GUEST_IP

now() {
        cut -d' ' -f1 /proc/uptime
}

say() {
        echo "[$(now)] $*"
}

put() {
        echo "$1=$2" >>"$R/values"
}

vm_start() {
        local name=$1
        shift
        rm -f "$T/$name.in" "$R/$name.rc"
        mkfifo "$T/$name.in"
        # A writer that never goes away: vmm never sees the end of its input, and vm_send
        # can open the FIFO at any time without blocking.
        sleep 2147483647 <>"$T/$name.in" &
        echo $! >>"$T/pids"
        say "vm $name: vmm $*"
        vmm "$@" <"$T/$name.in" >>"$R/$name.console" 2>>"$R/$name.log" &
        echo $! >"$T/$name.pid"
        echo $! >>"$T/pids"
}

vm_boot() {
        local name=$1 script=$2
        shift 2
        vm_start "$name" --kernel "$KERNEL" --initrd "$INITRD" \
                --cmdline "$CMDLINE $VM_CMDLINE vmm.run=/tb/guest/$S/$script" "$@"
}

vm_pid() {
        cat "$T/$1.pid" 2>/dev/null
}

# True while the process runs (a zombie has ended).
alive() {
        [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

vm_wait() {
        local name=$1 secs=${2:-300} pid rc t
        pid=$(vm_pid "$name")
        t=0
        while alive "$pid" && [ "$t" -lt $((secs * 5)) ]; do
                usleep 200000
                t=$((t + 1))
        done
        if alive "$pid"; then
                say "vm $name: still running after ${secs}s"
                return 124
        fi
        wait "$pid"
        rc=$?
        echo "$rc" >"$R/$name.rc"
        say "vm $name: exited with $rc"
        return "$rc"
}

vm_kill() {
        local pid
        pid=$(vm_pid "$1")
        [ -n "$pid" ] && kill "-${2:-KILL}" "$pid" 2>/dev/null
        say "vm $1: sent SIG${2:-KILL}"
}

vm_send() {
        printf '%s\n' "$2" >"$T/$1.in"
}

console_wait() {
        local name=$1 re=$2 secs=${3:-120} t=0 pid
        pid=$(vm_pid "$name")
        while [ "$t" -lt $((secs * 5)) ]; do
                if grep -Eq "$re" "$R/$name.console" 2>/dev/null; then
                        say "vm $name: /$re/ seen"
                        return 0
                fi
                if [ -n "$pid" ] && ! alive "$pid"; then
                        grep -Eq "$re" "$R/$name.console" 2>/dev/null && return 0
                        say "vm $name: ended while waiting for /$re/"
                        return 1
                fi
                usleep 200000
                t=$((t + 1))
        done
        say "vm $name: /$re/ not seen within ${secs}s"
        return 1
}

vm_until() {
        local name=$1 secs=$2 pid t=0
        shift 2
        pid=$(vm_pid "$name")
        while [ "$t" -lt "$secs" ]; do
                "$@" && return 0
                if ! alive "$pid"; then
                        say "vm $name: ended while waiting for: $*"
                        return 1
                fi
                sleep 1
                t=$((t + 1))
        done
        say "vm $name: not true within ${secs}s: $*"
        return 124
}

api() {
        local name=$1 method=$2 path=$3 body=$4 code
        if [ -n "$body" ]; then
                code=$(curl -sS --max-time 60 --unix-socket "$T/$name.sock" -X "$method" \
                        -H 'Content-Type: application/json' -d "$body" -o "$T/api.body" \
                        -w '%{http_code}' "http://localhost$path" 2>"$T/api.err")
        else
                code=$(curl -sS --max-time 60 --unix-socket "$T/$name.sock" -X "$method" \
                        -o "$T/api.body" -w '%{http_code}' "http://localhost$path" 2>"$T/api.err")
        fi
        echo "$method $path $body -> ${code:-none} $(cat "$T/api.body" 2>/dev/null) $(cat "$T/api.err")" \
                >>"$R/$name.api"
        cat "$T/api.body" 2>/dev/null
        rm -f "$T/api.body"
        case "$code" in
        2??) return 0 ;;
        esac
        return 1
}

tap_add() {
        tunctl -t "$1" >/dev/null || return 1
        echo "$1" >>"$T/taps"
        ip addr add "$2" dev "$1" && ip link set "$1" up
}

# Waits up to SECS for a file to exist (a socket, a listener's port file).
wait_for() {
        local f=$1 secs=${2:-60} t=0
        while [ ! -e "$f" ] && [ "$t" -lt $((secs * 5)) ]; do
                usleep 200000
                t=$((t + 1))
        done
        [ -e "$f" ]
}

# ---- run by /init ----

tb_run_scenario() {
        local name=$1 limit start rc secs pid n tf lk
        limit=$(cat "/tb/scenarios/$name/timeout")
        # A try that an earlier outer machine did not live through: its files stay beside
        # the new ones (NAME.lost-N), for whoever looks at why.
        if [ -d "/out/$name" ]; then
                n=1
                while [ -e "/out/$name.lost-$n" ]; do n=$((n + 1)); done
                mv "/out/$name" "/out/$name.lost-$n"
        fi
        mkdir -p "/out/$name" "/tmp/tb/$name"
        dmesg -c >/dev/null 2>&1 # the outer's boot messages are not the scenario's
        echo "@@TB begin $name"
        start=$(now)
        # The host's test of its own recovery (VMM_LINUX_FAULT, testbed.py): this machine
        # dies, or goes silent, in the middle of the scenario.
        case " $(cat /proc/cmdline) " in
        *" tb.fault=crash:$name "*) sync; echo c >/proc/sysrq-trigger ;;
        *" tb.fault=hang:$name "*) while :; do sleep 1000; done ;;
        esac
        # The script's own exit status, or "timeout" when the limit killed it.
        S=$name R=/out/$name T=/tmp/tb/$name timeout -s KILL "$limit" \
                sh -c '. /tb/lib.sh; cd "$T"; (. "/tb/scenarios/$S/outer.sh"); echo $? >"$T/.rc"' \
                >"/out/$name/outer.log" 2>&1
        rc=$(cat "/tmp/tb/$name/.rc" 2>/dev/null || echo timeout)
        [ "$rc" = timeout ] && echo "[$(now)] scenario killed after ${limit}s" >>"/out/$name/outer.log"
        # What the scenario left running or created.
        for pid in $(cat "/tmp/tb/$name/pids" 2>/dev/null); do
                kill -KILL "$pid" 2>/dev/null
        done
        for tap in $(cat "/tmp/tb/$name/taps" 2>/dev/null); do
                tunctl -d "$tap" >/dev/null 2>&1
        done
        rm -rf "/tmp/tb/$name"
        # The outer kernel's messages during the scenario (kvm's complaints about a nested
        # guest that died), cleared for the next one.
        dmesg -c >"/out/$name/outer.dmesg" 2>&1
        secs=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
        # How many of its VMs triple-faulted (vmm logs each; the host reruns such a
        # scenario once unless it expects it: testbed.py, Testbed.run).
        tf=$(grep -l 'triple fault (KVM_EXIT_SHUTDOWN)' "/out/$name"/*.log 2>/dev/null | wc -l)
        # And how many guest kernels reported a stuck CPU (the same rule).
        lk=$(grep -lE 'soft lockup - CPU#|rcu_preempt (self-)?detected stall' \
                "/out/$name"/*.console 2>/dev/null | wc -l)
        sync
        echo "@@TB end $name rc=$rc secs=$secs tf=$tf lk=$lk"
}

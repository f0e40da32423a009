"""virtio-pmem under Debian's kernel (virtio_pmem, nd_pmem, dax_pmem from the guest image).

The outer makes two ext4 images (4 KiB blocks, which DAX needs): p0 (64 MiB, writable, with a
known file) and ro (32 MiB, read-only, with another file), and boots one guest with
`--pmem path=p0.img,id=p0 --pmem path=ro.img,ro`. The guest mounts /dev/pmem0 with
`-o dax` (without it if the kernel refuses, and says which), checks the known file, writes a
new one and syncs (a FLUSH: an fsync of the host file); it mounts the read-only device
read-only and checks its file, then writes 4 KiB raw to it (stores into a KVM_MEM_READONLY
window: the VMM drops them). After vmm ends the outer finds the new file in p0.img, and
ro.img's sha256 is what it was before the boot. vmm's pmem metrics count the flushes.
"""
from test_boot import unexplained_problems
from testbed import fields, scenario

MIB = 1 << 20
KNOWN = 1 * MIB   # tbtool gen 1M --seed 5, put into p0.img by the outer
RO_DATA = 2 * MIB  # tbtool gen 2M --seed 6, in ro.img
NEW = 4 * MIB     # tbtool gen 4M --seed 8, written by the guest

OUTER = f"""
    MKFS="/tb/bin/mkfs.ext4 -q -F -t ext4 -b 4096"
    mkdir -p $T/p0 $T/ro $T/mnt
    tbtool gen {KNOWN} --seed 5 >$T/p0/known 2>/dev/null
    tbtool gen {RO_DATA} --seed 6 >$T/ro/data 2>/dev/null
    $MKFS -L p0 -d $T/p0 $T/p0.img 64M >$R/mkfs.log 2>&1; put mkfs.p0.rc $?
    $MKFS -O ^has_journal -L ro -d $T/ro $T/ro.img 32M >>$R/mkfs.log 2>&1; put mkfs.ro.rc $?
    sha256sum <$T/ro.img >$R/ro.before
    vm_boot g pmem --mem 256 --metrics-path $R/g.metrics \\
        --pmem path=$T/p0.img,id=p0 --pmem path=$T/ro.img,ro
    vm_wait g 600
    sha256sum <$T/ro.img >$R/ro.after
    # What the guest synced, as the outer sees it now.
    if mount -o ro,loop $T/p0.img $T/mnt; then
        ls $T/mnt >$R/p0.files
        tbtool check {NEW} --seed 8 <$T/mnt/new >$R/p0.new 2>&1
        tbtool check {KNOWN} --seed 5 <$T/mnt/known >$R/p0.known 2>&1
        umount $T/mnt
    fi
"""

GUEST = f"""
    i=0
    while [ ! -b /dev/pmem1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    # Which is which: by size (64 MiB is p0, 32 MiB the read-only one), not by probe order.
    p0= ro=
    for d in /sys/block/pmem*; do
        [ -e "$d" ] || continue
        case "$(cat $d/size)" in
        131072) p0=/dev/${{d##*/}} ;;
        65536) ro=/dev/${{d##*/}} ;;
        esac
    done
    put devices "$(ls /sys/block | grep pmem | tr '\\n' ' ')"
    put p0.dev "$p0"
    put ro.dev "$ro"
    put dax.sysfs "$(cat /sys/block/${{p0#/dev/}}/queue/dax 2>/dev/null)"

    mkdir -p /mnt/p0 /mnt/ro
    if mount -t ext4 -o dax "$p0" /mnt/p0 2>/tmp/mount.err; then
        put p0.dax 1
    else
        put p0.dax 0
        put p0.dax.err "$(cat /tmp/mount.err)"
        mount -t ext4 "$p0" /mnt/p0; put p0.mount.rc $?
    fi
    put p0.mounts "$(grep /mnt/p0 /proc/mounts)"
    put p0.known "$(tbtool check {KNOWN} --seed 5 </mnt/p0/known 2>&1)"
    put p0.gen "$(tbtool gen {NEW} --seed 8 2>&1 >/mnt/p0/new)"
    sync
    umount /mnt/p0; put p0.umount.rc $?

    if mount -t ext4 -o ro,dax "$ro" /mnt/ro 2>/tmp/mount.err; then
        put ro.dax 1
    else
        put ro.dax 0
        put ro.dax.err "$(cat /tmp/mount.err)"
        mount -t ext4 -o ro "$ro" /mnt/ro; put ro.mount.rc $?
    fi
    put ro.mounts "$(grep /mnt/ro /proc/mounts)"
    put ro.data "$(tbtool check {RO_DATA} --seed 6 </mnt/ro/data 2>&1)"
    umount /mnt/ro
    # Raw stores into the read-only window: the VMM drops them, the file never changes.
    dd if=/dev/zero of="$ro" bs=4096 count=1 seek=16 2>/dev/null; put ro.dd.rc $?
    dmesg_problems
"""


@scenario(outer=OUTER, guest={"pmem": GUEST}, timeout=240, needs={"mke2fs"})
def test_pmem(linux):
    g, v = linux.guest("g"), linux.values()
    report = linux.report("g")
    assert v["mkfs.p0.rc"] == "0" and v["mkfs.ro.rc"] == "0", linux.text("mkfs.log")
    assert linux.vm_rc("g") == 0, report
    assert g["p0.dev"] and g["ro.dev"], report

    # DAX: the guest mounted p0 with it (the report says so if it fell back).
    assert g["p0.dax"] == "1", (g.get("p0.dax.err"), report)
    assert "dax" in g["p0.mounts"], report
    assert g["ro.dax"] == "1", (g.get("ro.dax.err"), report)

    # The outer's file, read by the guest through the window.
    assert fields(g["p0.known"])["ok"] == "1", report
    assert g["p0.umount.rc"] == "0", report
    # The guest's new file is in the host file after vmm ended.
    assert linux.text("p0.files").split() == ["known", "lost+found", "new"], linux.outer_log
    new = fields(linux.text("p0.new"))
    assert new["ok"] == "1" and new["fnv"] == fields(g["p0.gen"])["fnv"], (new, report)
    assert fields(linux.text("p0.known"))["ok"] == "1", linux.outer_log

    # The read-only image: readable, and unchanged even after the guest's raw write.
    assert fields(g["ro.data"])["ok"] == "1", report
    assert linux.text("ro.before") == linux.text("ro.after") != "", linux.outer_log
    problems = [val for k, val in linux.guest_all("g") if k == "dmesg.problem"]
    assert unexplained_problems(problems) == [], report

    # The syncs reached vmm as FLUSH requests, each answered by an fsync that worked.
    p0 = linux.totals("g", "pmem_p0")
    assert p0["flush_count"] > 0 and p0["flush_fails"] == 0 and p0["event_fails"] == 0, p0
    assert linux.totals("g", "vmm")["unhandled_mmio_count"] > 0, linux.totals("g", "vmm")

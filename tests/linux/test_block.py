"""Scenario 3, block: five virtio-blk drives on one guest.

  vda  sync engine      mkfs.ext4, BIG bytes written, synced, remounted, read back and checked;
                        deleted and fstrim'ed: the host file's allocated blocks shrink
                        (DISCARD punches holes); a last file synced before the guest ends
  vdb  io_uring engine  the same
  vdc  read-only        the guest's writes are refused and the host file is unchanged
  vdd  swapped          PATCH /drives/swap points it at another file while the guest runs:
                        the guest reads the old data, then the new
  vde  rate limited     bps=2 MiB/s: the guest's measured throughput within 20% of it

After vmm ends, the outer mounts vda's and vdb's images and finds exactly what the guest
synced. Both sides: the guest's reports, the host files, vmm's per-drive metrics.
"""
from testbed import fields, scenario, vmm_sanitized

MIB = 1 << 20
BIG = 16 * MIB if vmm_sanitized() else 64 * MIB
RATE = 2 * MIB   # vde's bps: a 1 s burst, then RATE a second
LIMITED = 16 * MIB

OUTER = f"""
    for d in a b; do truncate -s 256M $T/$d.img; done
    tbtool gen 4M --seed 3 >$T/ro.img 2>/dev/null
    sha256sum <$T/ro.img >$R/ro.before
    tbtool gen 4M --seed 1 >$T/old.img 2>/dev/null
    tbtool gen 4M --seed 2 >$T/new.img 2>/dev/null
    truncate -s 32M $T/limited.img
    vm_boot g blk --mem 256 --api-sock $T/g.sock --metrics-path $R/g.metrics \\
        --drive path=$T/a.img,id=a --drive path=$T/b.img,id=b,engine=io_uring \\
        --drive path=$T/ro.img,id=ro,ro --drive path=$T/old.img,id=swap \\
        --drive path=$T/limited.img,id=lim,bps={RATE}
    for d in a b; do
        console_wait g "@@ $d.written" 900 || break
        put $d.kib.written "$(du -k $T/$d.img | cut -f1)"
        vm_send g go
        console_wait g "@@ $d.trimmed" 300 || break
        put $d.kib.trimmed "$(du -k $T/$d.img | cut -f1)"
        vm_send g go
    done
    console_wait g '@@ swap.before' 300
    api g PATCH /drives/swap '{{"drive_id": "swap", "path_on_host": "'$T/new.img'"}}'
    put patch.rc $?
    vm_send g go
    vm_wait g 600
    sha256sum <$T/ro.img >$R/ro.after
    # What the guest synced, as the host sees it now.
    mkdir -p $T/mnt
    for d in a b; do
        mount -o ro,loop $T/$d.img $T/mnt || continue
        ls $T/mnt >$R/$d.files
        tbtool check 1M --seed 9 <$T/mnt/keep >$R/$d.keep 2>&1
        umount $T/mnt
    done
"""

GUEST = f"""
    fs_test() {{   # DEV NAME
        mkfs.ext4 -q -F $1 >/tmp/mkfs.log 2>&1; put $2.mkfs.rc $?
        [ -s /tmp/mkfs.log ] && put $2.mkfs.log "$(cat /tmp/mkfs.log)"
        mkdir -p /mnt/$2
        if ! mount $1 /mnt/$2; then   # keep the outer's handshake going
            put $2.written 0; read -r go; put $2.trimmed 0; read -r go; return
        fi
        put $2.gen "$(tbtool gen {BIG} --seed 7 2>&1 >/mnt/$2/data)"
        sync
        umount /mnt/$2 && mount $1 /mnt/$2
        echo 3 >/proc/sys/vm/drop_caches
        put $2.check "$(tbtool check {BIG} --seed 7 </mnt/$2/data)"
        put $2.written 1; read -r go
        rm /mnt/$2/data && sync
        put $2.fstrim "$(fstrim -v /mnt/$2 2>&1)"
        put $2.trimmed 1; read -r go
        put $2.keep "$(tbtool gen 1M --seed 9 2>&1 >/mnt/$2/keep)"
        umount /mnt/$2
    }}
    fs_test /dev/vda a
    fs_test /dev/vdb b

    put ro.getro "$(blockdev --getro /dev/vdc)"
    dd if=/dev/zero of=/dev/vdc bs=4k count=1 oflag=direct 2>/dev/null; put ro.dd.rc $?
    put ro.check "$(dd if=/dev/vdc bs=1M count=4 iflag=direct 2>/dev/null | tbtool check 4M --seed 3)"

    put swap.old "$(dd if=/dev/vdd bs=1M count=1 iflag=direct 2>/dev/null | tbtool check 1M --seed 1)"
    put swap.before 1; read -r go
    blockdev --flushbufs /dev/vdd
    put swap.new "$(dd if=/dev/vdd bs=1M count=1 iflag=direct 2>/dev/null | tbtool check 1M --seed 2)"

    t0=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/vde of=/dev/null bs=1M count={LIMITED // MIB} iflag=direct 2>/dev/null
    t1=$(cut -d' ' -f1 /proc/uptime)
    put lim.secs "$(awk -v a=$t0 -v b=$t1 'BEGIN {{ print b - a }}')"
"""




@scenario(outer=OUTER, guest={"blk": GUEST}, timeout=300, asan=True)
def test_block(linux):
    g, v = linux.guest("g"), linux.values()
    report = linux.report("g")
    assert linux.vm_rc("g") == 0, report

    for d in ("a", "b"):
        assert g[f"{d}.mkfs.rc"] == "0", report
        written, check = fields(g[f"{d}.gen"]), fields(g[f"{d}.check"])
        assert int(written["bytes"]) == BIG, report
        assert check["ok"] == "1" and check["fnv"] == written["fnv"], report
        # fstrim reached the host file: its allocated size shrank by most of BIG.
        assert "bytes trimmed" in g[f"{d}.fstrim"] or "trimmed" in g[f"{d}.fstrim"], report
        kib_w, kib_t = int(v[f"{d}.kib.written"]), int(v[f"{d}.kib.trimmed"])
        assert kib_w - kib_t >= (BIG // 1024) * 3 // 4, (d, kib_w, kib_t)
        m = linux.totals("g", f"block_{d}")
        assert m["discard_count"] > 0 and m["write_bytes"] >= BIG, (d, m)
        assert m["execute_fails"] == 0 and m["invalid_reqs_count"] == 0, (d, m)
        # After vmm ended the host sees exactly the guest's synced file, and not the deleted.
        assert linux.text(f"{d}.files").split() == ["keep", "lost+found"], linux.outer_log
        keep = fields(linux.text(f"{d}.keep"))
        assert keep["ok"] == "1" and keep["fnv"] == fields(g[f"{d}.keep"])["fnv"], report

    # The read-only drive: the guest sees it read-only, its write fails, the file is intact.
    assert g["ro.getro"] == "1" and g["ro.dd.rc"] != "0", report
    assert fields(g["ro.check"])["ok"] == "1", report
    assert linux.text("ro.before") == linux.text("ro.after") != "", linux.outer_log
    assert linux.totals("g", "block_ro")["write_count"] == 0, linux.totals("g", "block_ro")

    # PATCH /drives/swap: old contents before, new after.
    assert v["patch.rc"] == "0", linux.text("g.api")
    assert fields(g["swap.old"])["ok"] == "1" and fields(g["swap.new"])["ok"] == "1", report

    # The rate limiter: throughput within 20% of bps (the first second is a burst).
    measured = LIMITED / float(g["lim.secs"])
    assert 0.8 * RATE <= measured <= 1.2 * RATE, (measured, RATE, report)
    assert linux.totals("g", "block_lim")["rate_limiter_throttled_events"] > 0, report

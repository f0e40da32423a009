"""Scenario 2, root filesystem: scripts/guest-image's Debian root filesystem (sysvinit) on a
virtio-blk drive boots to a login prompt on the serial console; root logs in through vmm's
stdin, runs commands, leaves a file behind, and `poweroff` powers the machine off through the
ACPI sleep control register (FADT + \\_S5), which ends vmm with exit code 0. Both sides: the
console dialogue, vmm's exit code and log, and the file in the image after vmm ended.
"""
from testbed import scenario

OUTER = """
    cp $ROOTFS_DEV $T/rootfs.ext4
    vm_start r --kernel $KERNEL --initrd $INITRD --mem 256 --vcpus 1 \\
        --drive path=$T/rootfs.ext4,root --cmdline "$CMDLINE"
    console_wait r 'microvm login:' 400 || exit 1
    vm_send r root
    console_wait r 'root@microvm:~#' 120 || exit 1
    vm_send r 'echo MARK-$((6 * 7)) $(cat /etc/debian_version) $(id -un)'
    console_wait r 'MARK-42 ' 60
    vm_send r 'echo written-by-the-guest >/root/was-here && sync && echo SYNCED-$((6 * 7))'
    console_wait r 'SYNCED-42' 60
    vm_send r 'poweroff'
    vm_wait r 300
    # The guest's file, as the host sees the image now that vmm has ended.
    mkdir -p $T/mnt && mount -o ro,loop $T/rootfs.ext4 $T/mnt &&
        cp $T/mnt/root/was-here $R/was-here; umount $T/mnt
"""


@scenario(outer=OUTER, timeout=300, needs={"rootfs"})
def test_rootfs_login_and_poweroff(linux):
    console, log = linux.console("r"), linux.log("r")
    report = linux.report("r")
    assert "Debian GNU/Linux 12 microvm ttyS0" in console, report
    assert "MARK-42 12." in console and " root" in console, report
    # poweroff: sysvinit's halt scripts, then the ACPI power-off (not merely a halt).
    assert "Power down" in console or "reboot: Power down" in console, report
    assert linux.vm_rc("r") == 0, report
    assert "guest powered off through ACPI (S5)" in log, report
    assert linux.text("was-here") == "written-by-the-guest\n", report

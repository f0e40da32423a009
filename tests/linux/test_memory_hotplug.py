"""virtio-mem under Debian's kernel (virtio_mem from the guest image), through the API.

The outer configures a 256 MiB guest with PUT /hotplug/memory (512 MiB) before
InstanceStart, the command line asking Linux to online hotplugged memory as movable
(memhp_default_state=online_movable: what lets it give the memory back). PATCH
requested_size_mib 256: GET shows 256 plugged and the guest's MemTotal grows by 256 MiB; the
guest fills and frees 192 MiB of page cache (vmm's RSS grows), then PATCH 0: every block is
unplugged, MemTotal is back and vmm's RSS falls (the VMM discards unplugged blocks). Last,
the guest unbinds its virtio_mem driver and the outer asks for 256 MiB again: nobody plugs,
GET answers at once with plugged 0 < requested 256 (reported, nothing waits).
"""
import json

from testbed import scenario

MEM = 256
TOTAL = 512
PLUG = 256
FILL = 192

OUTER = f"""
    rss() {{ awk '/^VmRSS:/ {{ print $2 }}' /proc/$(vm_pid g)/status; }}
    # GET /hotplug/memory until plugged_size_mib is $1 (or 300 s passed).
    plugged_wait() {{
        local i=0
        while [ $i -lt 300 ]; do
            api g GET /hotplug/memory >$T/hp.json &&
                grep -q '"plugged_size_mib": *'$1'[,}}]' $T/hp.json && return 0
            sleep 1
            i=$((i + 1))
        done
        return 1
    }}
    vm_start g --api-sock $T/g.sock
    wait_for $T/g.sock 60
    api g PUT /metrics '{{"metrics_path": "'$R/g.metrics'"}}' || exit 1
    api g PUT /boot-source '{{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE memhp_default_state=online_movable vmm.run=/tb/guest/$S/mem"'"}}' || exit 1
    api g PUT /machine-config '{{"vcpu_count": 1, "mem_size_mib": {MEM}}}' || exit 1
    api g PUT /hotplug/memory '{{"total_size_mib": {TOTAL}}}'; put put.rc $?
    api g PUT /actions '{{"action_type": "InstanceStart"}}' || exit 1
    console_wait g '@@ mem.boot' 300 || exit 1
    api g GET /hotplug/memory >$R/hp.boot.json
    put rss.boot "$(rss)"

    api g PATCH /hotplug/memory '{{"requested_size_mib": {PLUG}}}'; put plug.rc $?
    plugged_wait {PLUG}; put plugged.rc $?
    api g GET /hotplug/memory >$R/hp.plugged.json
    put rss.plugged "$(rss)"
    vm_send g go
    console_wait g '@@ filled' 300 || exit 1
    put rss.filled "$(rss)"

    api g PATCH /hotplug/memory '{{"requested_size_mib": 0}}'; put unplug.rc $?
    plugged_wait 0; put unplugged.rc $?
    api g GET /hotplug/memory >$R/hp.unplugged.json
    put rss.unplugged "$(rss)"
    vm_send g go
    console_wait g '@@ unbound' 300 || exit 1

    api g PATCH /hotplug/memory '{{"requested_size_mib": {PLUG}}}'; put nobody.rc $?
    sleep 10
    api g GET /hotplug/memory >$R/hp.nobody.json; put nobody.get.rc $?
    vm_send g go
    vm_wait g 300
"""

GUEST = f"""
    memtotal() {{ awk '/^MemTotal:/ {{ print $2 }}' /proc/meminfo; }}
    put mem.boot "$(memtotal)"
    read -r go
    put mem.plugged "$(memtotal)"
    put zones "$(grep -c '^Node 0, zone *Movable' /proc/zoneinfo)"
    tbtool gen {FILL << 20} --seed 4 >/tmp/fill 2>/dev/null
    rm /tmp/fill
    put filled 1
    read -r go
    put mem.unplugged "$(memtotal)"
    dev=$(basename "$(readlink -f /sys/bus/virtio/drivers/virtio_mem/virtio* 2>/dev/null)")
    echo "$dev" >/sys/bus/virtio/drivers/virtio_mem/unbind; put unbind.rc $?
    put unbound 1
    read -r go
    put mem.end "$(memtotal)"
"""


@scenario(outer=OUTER, guest={"mem": GUEST}, timeout=240)
def test_memory_hotplug(linux):
    g, v = linux.guest("g"), linux.values()
    report = linux.report("g")
    assert v["put.rc"] == "0", linux.text("g.api")
    assert linux.vm_rc("g") == 0, report

    boot = json.loads(linux.text("hp.boot.json"))
    assert boot["total_size_mib"] == TOTAL and boot["plugged_size_mib"] == 0, boot

    # PATCH 256: plugged, and the guest's MemTotal grew by it (in ZONE_MOVABLE).
    assert v["plug.rc"] == "0" and v["plugged.rc"] == "0", linux.text("g.api")
    plugged = json.loads(linux.text("hp.plugged.json"))
    assert plugged["plugged_size_mib"] == PLUG == plugged["requested_size_mib"], plugged
    grew = int(g["mem.plugged"]) - int(g["mem.boot"])
    assert grew == PLUG * 1024, (g["mem.boot"], g["mem.plugged"], report)

    # PATCH 0: all unplugged, MemTotal back, and vmm gave the memory back to the host.
    assert v["unplug.rc"] == "0" and v["unplugged.rc"] == "0", linux.text("g.api")
    assert json.loads(linux.text("hp.unplugged.json"))["plugged_size_mib"] == 0
    assert g["mem.unplugged"] == g["mem.boot"], report
    # The guest puts part of its fill in boot memory (measured: 96 of 192 MiB landed in the
    # plugged blocks, whose discard is what the RSS loses); a quarter of it is far above noise.
    rss = {k: int(v[f"rss.{k}"]) for k in ("boot", "plugged", "filled", "unplugged")}
    assert rss["filled"] - rss["unplugged"] >= FILL * 1024 // 4, rss

    # A request nobody fulfils: the PATCH is accepted, GET answers plugged < requested.
    assert g["unbind.rc"] == "0", report
    assert v["nobody.rc"] == "0" and v["nobody.get.rc"] == "0", linux.text("g.api")
    nobody = json.loads(linux.text("hp.nobody.json"))
    assert nobody["requested_size_mib"] == PLUG and nobody["plugged_size_mib"] == 0, nobody

    m = linux.totals("g", "memory_hotplug")
    assert m["plug_count"] > 0 and m["unplug_count"] + m["unplug_all_count"] > 0, m
    assert m["error_count"] == 0 and m["event_fails"] == 0, m

"""Balloon free page reporting and hinting with a real Linux guest, without inflation: the
guest touches 300 MiB and frees it (vmm's RSS grows and stays up: the guest kernel keeps
the freed pages); with free page reporting its driver reports the free 2 MiB blocks by
itself and vmm discards them; with free page hinting the host starts a run through the
API (PATCH /balloon/hinting/start), the guest hints its free blocks, stops, and the device
answers DONE. Both sides: the API's answers, vmm's RSS and balloon metrics.
"""
import json

from testbed import scenario

MEM = 512
HOG = 300
MIB = 1024  # KiB

COMMON = f"""
    rss() {{ awk '/^VmRSS:/ {{ print $2 }}' /proc/$(vm_pid g)/status; }}
    # Whether vmm's RSS is at most $1 KiB.
    rss_below() {{ [ "$(rss)" -le "$1" ]; }}
    # A VM with the balloon feature $1 whose guest touched {HOG} MiB and freed it.
    touched_and_freed() {{
        vm_boot g free --mem {MEM} --balloon 0,$1 --api-sock $T/g.sock \\
            --metrics-path $R/g.metrics
        console_wait g '@@ touched' 300 || return 1
        RSS_TOUCHED=$(rss)
        put rss.touched "$RSS_TOUCHED"
        vm_send g go
        console_wait g '@@ freed' 120
    }}
"""

GUEST = f"""
    # Touch 300 MiB, then give it back to the guest kernel: vmm's RSS keeps the pages
    # until the balloon device releases them.
    tbtool hog {HOG} >/tmp/hog &
    while ! grep -q mib /tmp/hog; do sleep 1; done
    put touched 1; read -r go
    kill $! && wait
    put freed 1; read -r go
"""

REPORT_OUTER = COMMON + f"""
    touched_and_freed free-page-reporting || exit 1
    # Linux reports a free 2 MiB block about 2 s after it was freed.
    vm_until g 120 rss_below $((RSS_TOUCHED - 200 * {MIB})); put reported.rc $?
    put rss.reported "$(rss)"
    api g GET /balloon/statistics >$R/stats.json
    vm_send g go
    vm_wait g 120
"""

HINT_OUTER = COMMON + f"""
    hint_done() {{
        api g GET /balloon/hinting/status >$T/status.json &&
            grep -q '"host_cmd": *1[,}}]' $T/status.json
    }}
    touched_and_freed free-page-hinting || exit 1
    sleep 3
    put rss.freed "$(rss)"
    api g PATCH /balloon/hinting/start '{{}}'; put start.rc $?
    api g GET /balloon/hinting/status >$R/status-started.json
    # acknowledge_on_stop (the default): the guest's STOP makes the device write DONE.
    vm_until g 120 hint_done; put done.rc $?
    cp $T/status.json $R/status-done.json
    put rss.hinted "$(rss)"
    api g PATCH /balloon/hinting/stop; put stop.rc $?
    vm_send g go
    vm_wait g 120
"""


def check_common(linux, freed_key):
    report = linux.report("g")
    v = linux.values()
    assert linux.vm_rc("g") == 0, report
    b = linux.totals("g", "balloon")
    # No inflation: the memory came back through the free page path alone.
    assert b["inflate_count"] == 0 and b["actual_pages"] == 0, b
    assert b[freed_key] >= 200 << 20, (b, report)
    return v, b


@scenario(outer=REPORT_OUTER, guest={"free": GUEST}, timeout=240)
def test_balloon_free_page_reporting(linux):
    v, b = check_common(linux, "free_page_report_freed")
    assert v.get("reported.rc") == "0", (v, linux.report("g"))
    assert int(v["rss.touched"]) - int(v["rss.reported"]) >= 200 * MIB, v
    assert b["free_page_report_count"] > 0 and b["free_page_report_fails"] == 0, b


@scenario(outer=HINT_OUTER, guest={"free": GUEST}, timeout=240)
def test_balloon_free_page_hinting(linux):
    v, b = check_common(linux, "free_page_hint_freed")
    for k in ("start.rc", "done.rc", "stop.rc"):
        assert v.get(k) == "0", (k, v, linux.text("g.api")[-3000:])
    started = json.loads(linux.text("status-started.json"))
    assert started["host_cmd"] >= 2, started
    # The guest sent the run's id, then STOP (0); the device answered DONE (1).
    done = json.loads(linux.text("status-done.json"))
    assert done["host_cmd"] == 1 and done["guest_cmd"] == 0, done
    # Freed pages stayed resident until the run; the hinted ones went back to the host.
    assert int(v["rss.freed"]) - int(v["rss.hinted"]) >= 200 * MIB, v
    assert b["free_page_hint_fails"] == 0, b

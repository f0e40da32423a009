"""Scenario: the metadata service (docs/mmds.md) and the serial console's rate limiter, with
Linux. Two boots configured through the API as an orchestrator does: the service V1 on g1,
V2 on g2, at 169.254.169.254 on eth0 beside ordinary traffic to the outer's TAP. The guest
speaks raw HTTP with busybox nc (busybox wget cannot PUT): V1 answers without a token; V2
gives a token to a PUT, answers a GET that carries it, refuses a GET without one, with a
wrong one and with an expired one. Both count in vmm's "mmds" metrics. Then g2 floods its
console with FLOOD bytes through a BUCKET-byte bucket (refilled every second): vmm drops and
counts the excess (uart.rate_limiter_dropped_bytes): every byte is on the console or
counted, and the reports written after the bucket refilled arrive whole.
"""
from testbed import scenario

FLOOD = 64 * 1024
# Below what the guest can print: a nested guest on this machine printed 128 KiB through an
# 8 KiB/s bucket without a byte dropped (each byte is an exit through two levels of KVM).
BUCKET = 512
DATA = '{"latest": {"meta-data": {"ami-id": "ami-12345678", "reservation-id": "r-1"}}}'


def boot(vm, version, serial_limit):
    serial = (f"""
    api {vm} PUT /serial '{{"rate_limiter": {{"size": {BUCKET}, "refill_time": 1000}}}}'
    put {vm}.serial.rc $?""" if serial_limit else "")
    return f"""
    vm_start {vm} --api-sock $T/{vm}.sock
    wait_for $T/{vm}.sock 60
    api {vm} PUT /metrics '{{"metrics_path": "'$R/{vm}.metrics'"}}' || exit 1
    api {vm} PUT /boot-source '{{"kernel_image_path": "'$KERNEL'", "initrd_path": "'$INITRD'",
        "boot_args": "'"$CMDLINE $GUEST_IP vmm.run=/tb/guest/$S/mmds"'"}}' || exit 1
    api {vm} PUT /machine-config '{{"vcpu_count": 2, "mem_size_mib": 256}}' || exit 1
    api {vm} PUT /network-interfaces/eth0 '{{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02",
        "host_dev_name": "tb0"}}' || exit 1
    api {vm} PUT /mmds/config '{{"network_interfaces": ["eth0"], "version": "{version}"}}'
    put {vm}.config.rc $?
    api {vm} PUT /mmds '{DATA}'; put {vm}.data.rc $?{serial}
    api {vm} PUT /actions '{{"action_type": "InstanceStart"}}' || exit 1
    console_wait {vm} '@@ flood.done' 600
    api {vm} PUT /actions '{{"action_type": "FlushMetrics"}}'; put {vm}.flush.rc $?
    vm_wait {vm} 300
"""


OUTER = f"""
    tap_add tb0 172.16.0.1/24
    {boot("g1", "V1", False)}
    {boot("g2", "V2", True)}
"""

# http METHOD PATH [HEADER]: the answer's status line and its body's last line, on one line.
GUEST = f"""
    http() {{
        {{ printf '%s %s HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n' "$1" "$2"
          [ -n "$3" ] && printf '%s\\r\\n' "$3"
          printf '\\r\\n'; }} | nc -w 3 169.254.169.254 80 | tr -d '\\r' | sed -n '1p;$p' \\
            | tr '\\n' ' ' | tr -s ' '
    }}
    ip route add 169.254.169.254/32 dev eth0; put route.rc $?
    ping -c 3 -W 10 172.16.0.1 >/dev/null; put ping.rc $?
    put get.none "$(http GET /latest/meta-data/ami-id)"
    tok=$(http PUT /latest/api/token 'X-metadata-token-ttl-seconds: 60' | cut -d' ' -f3)
    put token.len "${{#tok}}"
    put get.token "$(http GET /latest/meta-data/ami-id "X-metadata-token: $tok")"
    put get.list "$(http GET /latest/meta-data/ "X-metadata-token: $tok")"
    put get.wrong "$(http GET /latest/meta-data/ami-id 'X-metadata-token: AAAA')"
    short=$(http PUT /latest/api/token 'X-metadata-token-ttl-seconds: 1' | cut -d' ' -f3)
    sleep 3
    put get.expired "$(http GET /latest/meta-data/ami-id "X-metadata-token: $short")"
    dd if=/dev/zero bs=1024 count={FLOOD // 1024} 2>/dev/null | tr '\\0' 'x'
    sleep 3
    echo
    put flood.done 1
    sleep 10
"""


@scenario(outer=OUTER, guest={"mmds": GUEST}, timeout=300, asan=True)
def test_mmds(linux):
    for vm, v2 in (("g1", False), ("g2", True)):
        g, report = linux.guest(vm), linux.report(vm)
        assert linux.vm_rc(vm) == 0, report
        assert linux.value(f"{vm}.config.rc") == "0", linux.text(f"{vm}.api")
        assert linux.value(f"{vm}.data.rc") == "0", linux.text(f"{vm}.api")
        assert g["route.rc"] == "0" and g["ping.rc"] == "0", report  # the TAP still works
        if v2:
            assert g["get.none"].startswith("HTTP/1.1 401 No MMDS token provided."), report
        else:
            assert g["get.none"] == "HTTP/1.1 200 ami-12345678 ", report
        assert g["token.len"] == "48", report
        assert g["get.token"] == "HTTP/1.1 200 ami-12345678 ", report
        assert g["get.list"] == "HTTP/1.1 200 reservation-id ", report
        if v2:
            assert g["get.wrong"] == "HTTP/1.1 401 MMDS token not valid. ", report
            assert g["get.expired"] == "HTTP/1.1 401 MMDS token not valid. ", report
        else:
            assert g["get.wrong"] == "HTTP/1.1 200 ami-12345678 ", report
        # Both versions count the GETs without a token and with a bad one (V1 answers them:
        # the counts tell whether the guests are ready for V2).
        mmds = linux.totals(vm, "mmds")
        assert (mmds["rx_no_token"], mmds["rx_invalid_token"]) == (1, 2), mmds
        assert mmds["connections_created"] >= 7 and mmds["tx_errors"] == 0, mmds
        assert linux.totals(vm, "net")["tx_packets_count"] > 0  # the ping went to the TAP

    # The flood: g2's bucket dropped and counted it, the console holds no more than the rest.
    uart = linux.totals("g2", "uart")
    assert linux.value("g2.serial.rc") == "0", linux.text("g2.api")
    dropped, shown = uart["rate_limiter_dropped_bytes"], linux.console("g2").count("x")
    assert dropped > 0 and shown < FLOOD, uart
    assert shown + dropped >= FLOOD, (shown, uart)  # every x is on the console or counted
    assert uart["write_count"] >= FLOOD, uart
    assert linux.totals("g1", "uart")["rate_limiter_dropped_bytes"] == 0
    assert linux.console("g1").count("x" * 1024) >= FLOOD // 1024 - 1, "g1 has no limit"

#!/bin/sh
# The README's curl walkthrough as a test: boots the probe guest (scenario idle) through the
# REST API with curl alone, pauses and resumes it, and ends it with Ctrl+Alt+Del.
# usage: api_curl_boot.sh VMM KERNEL WORKDIR     (exit 0 = pass)
set -eu
VMM=$1
KERNEL=$2
DIR=$3
SOCK=$DIR/api.sock

"$VMM" --api-sock "$SOCK" --id curl-test >"$DIR/out" 2>"$DIR/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

fail() {
        echo "api_curl_boot: $*" >&2
        echo "--- guest" >&2; cat "$DIR/out" >&2
        echo "--- vmm" >&2; cat "$DIR/err" >&2
        exit 1
}

# api METHOD PATH BODY EXPECTED_STATUS: one request; the answer lands in $DIR/body, and is
# kept as $DIR/answer.N with a line "METHOD PATH STATUS CONTENT-TYPE" in $DIR/answers for
# the caller to check against api/openapi.yaml.
n=0
api() {
        if [ -n "$3" ]; then
                out=$(curl -sS -o "$DIR/body" -w '%{http_code} %{content_type}' \
                        --unix-socket "$SOCK" -X "$1" "http://localhost$2" \
                        -H 'Accept: application/json' -H 'Content-Type: application/json' \
                        -d "$3")
        else
                out=$(curl -sS -o "$DIR/body" -w '%{http_code} %{content_type}' \
                        --unix-socket "$SOCK" -X "$1" "http://localhost$2" \
                        -H 'Accept: application/json')
        fi
        code=${out%% *}
        n=$((n + 1))
        cp "$DIR/body" "$DIR/answer.$n"
        echo "$1 $2 $out" >>"$DIR/answers"
        [ "$code" = "$4" ] || fail "$1 $2 answered $code, expected $4: $(cat "$DIR/body")"
}

# wait_for TEXT FILE: up to 10 s.
wait_for() {
        i=0
        until grep -q "$1" "$2" 2>/dev/null; do
                i=$((i + 1))
                [ "$i" -lt 200 ] || fail "no '$1' in $2"
                sleep 0.05
        done
}

i=0
until [ -S "$SOCK" ] && curl -s --unix-socket "$SOCK" http://localhost/ >/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 200 ] || fail "the API socket never answered"
        sleep 0.05
done

dd if=/dev/zero of="$DIR/rootfs.img" bs=1024 count=1024 2>/dev/null

api GET / "" 200
grep -q '"state":"Not started"' "$DIR/body" || fail "not 'Not started': $(cat "$DIR/body")"
api PUT /boot-source "{\"kernel_image_path\": \"$KERNEL\", \"boot_args\": \"console=ttyS0 probe=idle\"}" 204
api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$DIR/rootfs.img\", \"is_root_device\": true, \"is_read_only\": false}" 204
api PUT /mmds '{"latest": {"meta-data": {"ami-id": "ami-12345678"}}}' 204
api PATCH /mmds '{"latest": {"meta-data": {"ami-id": "ami-87654321"}}}' 204
api GET /mmds "" 200
[ "$(cat "$DIR/body")" = '{"latest":{"meta-data":{"ami-id":"ami-87654321"}}}' ] ||
        fail "GET /mmds: $(cat "$DIR/body")"
api PUT /serial '{"rate_limiter": {"size": 4096, "refill_time": 1000}}' 204
api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 64}' 204
api PUT /metrics "{\"metrics_path\": \"$DIR/metrics.json\"}" 204
api PUT /actions '{"action_type": "InstanceStart"}' 204
wait_for "probe: idle ready" "$DIR/out"

api GET / "" 200
grep -q '"state":"Running"' "$DIR/body" || fail "not Running: $(cat "$DIR/body")"
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}' 400
grep -q 'not supported after starting' "$DIR/body" || fail "$(cat "$DIR/body")"
api PATCH /vm '{"state": "Paused"}' 204
api GET / "" 200
grep -q '"state":"Paused"' "$DIR/body" || fail "not Paused: $(cat "$DIR/body")"
api PATCH /vm '{"state": "Resumed"}' 204
api PUT /actions '{"action_type": "FlushMetrics"}' 204
grep -q '"vcpu":{"exit_io_in"' "$DIR/metrics.json" || fail "no metrics line"
api GET /vm/config "" 200
grep -q '"drive_id":"rootfs"' "$DIR/body" || fail "$(cat "$DIR/body")"
api PUT /actions '{"action_type": "SendCtrlAltDel"}' 204

rc=0
wait "$pid" || rc=$?
trap - EXIT
[ "$rc" = 0 ] || fail "vmm exited with $rc"
grep -q "probe: ok idle" "$DIR/out" || fail "the guest did not end cleanly"
[ ! -e "$SOCK" ] || fail "the API socket was left behind"
echo "api_curl_boot: ok"

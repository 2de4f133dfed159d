#!/usr/bin/env bash
# What nginx's request accounting for metrics costs (berth.lua's log phase: three shared
# dictionary increments per request): wrk through berth's nginx to a Go net/http app
# (bench-apps/go-http), keep-alive (2 threads, 16 connections, LOAD_SECS each), with the
# accounting on and off (berth.toml `nginx_metrics = false`, the daemon restarted: nginx
# reloads), alternating, ROUNDS of each. The table: requests/s (median) and p99 each way,
# and the cost (goal ≤ 3% of throughput; rounds alternate which goes first). Then one scrape: the `metrics` command's time
# and size with the app counted.
# Usage: scripts/bench-metrics.sh [ROUNDS]   (default 3; BERTH=/path/to/berth uses that binary)
#   LOAD_SECS=15
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ROUNDS=${1:-3}
LOAD_SECS=${LOAD_SECS:-15}
APPS=$PWD/scripts/bench-apps

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static wrk python3 debootstrap
ensure_docker
bench_berth
bench_daemon

"$BERTH" --root "$ROOT" apps:create benchm >/dev/null
"$BERTH" --root "$ROOT" domains:add benchm m.example.com >/dev/null
bench_app_repo benchm
cp -r "$APPS/go-http/." .
git add -A && git commit -qm v1
git push -q deploy main 2>"$WORK/first.log" || { cat "$WORK/first.log"; die "the first push failed"; }

# The accounting on or off: berth.toml, then the daemon again (nginx reloads its config).
counting() {
    bench_daemon_stop
    touch "$ROOT/berth.toml"
    sed -i '/^nginx_metrics/d' "$ROOT/berth.toml"
    if [ "$1" = off ]; then
        printf 'nginx_metrics = false\n%s\n' "$(cat "$ROOT/berth.toml")" >"$ROOT/berth.toml"
    fi
    bench_daemon_start
    sleep 2
}

load() { # NAME
    wrk -t2 -c16 -d"${LOAD_SECS}s" --latency -H 'Host: m.example.com' "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-$1.log" 2>&1
}

wrk -t2 -c16 -d3s -H 'Host: m.example.com' "http://127.0.0.1:$HTTP_PORT/" >/dev/null 2>&1
# Alternating which goes first (on, off; off, on; …): neither always runs after the other.
for round in $(seq 1 "$ROUNDS"); do
    printf -- '-----> round %s of %s\n' "$round" "$ROUNDS" >&2
    if [ $((round % 2)) = 1 ]; then order="on off"; else order="off on"; fi
    for way in $order; do
        counting "$way"
        load "$way-$round"
    done
done
counting on
load warm
start=$(date +%s.%N)
"$BERTH" --root "$ROOT" metrics >"$WORK/metrics.txt"
end=$(date +%s.%N)

python3 - "$WORK" "$ROUNDS" "$start" "$end" <<'PY'
import re, statistics, sys
work, rounds, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def read(name):
    text = open(f"{work}/wrk-{name}.log").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    non2xx = int(n.group(1)) if (n := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    return rps, p99, non2xx
on = [read(f"on-{i}") for i in range(1, rounds + 1)]
off = [read(f"off-{i}") for i in range(1, rounds + 1)]
print(f"| {'nginx accounting':<18} | {'rounds':>6} | {'requests/s (median)':>19} | {'p99 ms (median)':>15} | {'non-2xx':>7} |")
print(f"|{'-'*20}|{'-'*8}|{'-'*21}|{'-'*17}|{'-'*9}|")
for label, rows in (("off", off), ("on", on)):
    print(f"| {label:<18} | {len(rows):>6} | {statistics.median(r[0] for r in rows):>19.0f} | {statistics.median(r[1] for r in rows):>15.2f} | {sum(r[2] for r in rows):>7} |")
cost = 1 - statistics.median(r[0] for r in on) / statistics.median(r[0] for r in off)
print()
print(f"throughput cost of the accounting: {cost*100:.1f}% (goal <= 3%)")
text = open(f"{work}/metrics.txt").read()
count = re.search(r'berth_http_request_duration_seconds_count\{app="benchm"\} (\d+)', text)
print(f"one `metrics` scrape: {(end-start)*1000:.0f} ms, {len(text)} bytes, {count.group(1) if count else 0} requests counted for the app")
PY

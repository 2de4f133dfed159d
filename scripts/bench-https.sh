#!/usr/bin/env bash
# HTTPS through berth, against a real ACME server (Debian's pebble) on loopback:
#  1. `letsencrypt:enable` until the first https answer, median of RUNS (each run disables
#     first, so every run orders, validates HTTP-01 through berth's nginx, and installs).
#  2. Requests per second over http and over https through berth's nginx to the same small
#     app (Go net/http from the go buildpack: a real listen backlog), keep-alive clients,
#     wrk -t2 -c16 -d15s, plus p99 latency.
# Usage: scripts/bench-https.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-5}

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static debootstrap wrk python3 pebble openssl curl
ensure_docker
bench_build_berth

bench_pebble_ca
export SSL_CERT_FILE=$WORK_CA/ca.pem
bench_daemon
unset SSL_CERT_FILE
bench_pebble
B() { "$BERTH" --root "$ROOT" "$@"; }
B stack:build >/dev/null
B apps:create benchapp >/dev/null
# pebble resolves every name to 127.0.0.1, and `localhost` lets wrk send the right SNI.
B domains:add benchapp localhost >/dev/null
B letsencrypt:set --global email bench@example.com >/dev/null
B letsencrypt:set --global server "$PEBBLE_DIR" >/dev/null

bench_app_repo benchapp
cat >main.go <<'GO'
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
GO
printf 'module example.com/bench\n\ngo 1.19\n' >go.mod
git add . && git commit -qm v1
git push -q deploy main 2>"$WORK/first.log" || { cat "$WORK/first.log"; die "the first push failed"; }

wrk_run() { # NAME URL
    wrk -t2 -c16 -d15s --latency "$2" >"$WORK/wrk-$1.log" 2>&1
}
wrk_run http "http://localhost:$HTTP_PORT/"

: >"$WORK/enable"
for i in $(seq 1 "$RUNS"); do
    [ "$i" = 1 ] || B letsencrypt:disable benchapp >/dev/null
    start=$(date +%s.%N)
    B letsencrypt:enable benchapp >"$WORK/enable.log" 2>&1 || { cat "$WORK/enable.log"; die "letsencrypt:enable failed"; }
    until curl -sf --cacert "$PEBBLE_ROOT" "https://localhost:$HTTPS_PORT/" >/dev/null; do sleep 0.01; done
    end=$(date +%s.%N)
    echo "$start $end" >>"$WORK/enable"
done
wrk_run https "https://localhost:$HTTPS_PORT/"

python3 - "$WORK/enable" "$WORK/wrk-http.log" "$WORK/wrk-https.log" <<'PY'
import re, statistics, sys
runs = [e - s for s, e in (map(float, l.split()) for l in open(sys.argv[1]) if l.strip())]
print(f"letsencrypt:enable against pebble until the first https answer, {len(runs)} runs")
print(f"| {'':<28} | {'seconds':>8} |")
print(f"|{'-'*30}|{'-'*10}|")
print(f"| {'median':<28} | {statistics.median(runs):>8.2f} |")
print(f"| {'max':<28} | {max(runs):>8.2f} |")
print()
print("wrk through berth's nginx to a Go net/http app (2 threads, 16 keep-alive connections, 15 s)")
print(f"| {'scheme':<8} | {'requests/s':>10} | {'p50':>9} | {'p99':>9} | {'errors':>6} |")
print(f"|{'-'*10}|{'-'*12}|{'-'*11}|{'-'*11}|{'-'*8}|")
for label, path in (("http", sys.argv[2]), ("https", sys.argv[3])):
    wrk = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
    p50 = re.search(r"50%\s+(\S+)", wrk).group(1)
    p99 = re.search(r"99%\s+(\S+)", wrk).group(1)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
    errors = sum(map(int, m.groups())) if m else 0
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)) else 0
    print(f"| {label:<8} | {rps:>10.0f} | {p50:>9} | {p99:>9} | {errors + non2xx:>6} |")
PY

#!/usr/bin/env bash
# Deploy speed and zero downtime, for a small Dockerfile app (busybox httpd, FROM scratch).
#  1. `git push` wall time of a redeploy whose image build is fully cached (an empty
#     commit), median of RUNS, split into the Docker build, the app's start-up until its
#     checks pass, and berth's own overhead (everything else: SSH, git, hook, release,
#     nginx render/check/reload).
#  2. wrk load through berth's nginx across 10 consecutive redeploys: served and failed,
#     once with keep-alive clients (wrk's default) and once with a new connection per
#     request. Each deploy reloads nginx; old workers then close idle keep-alive client
#     connections, and a request sent on one at that instant is reset (browsers and curl
#     retry it, wrk counts it). New connections are never affected.
# Usage: scripts/bench-deploy.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-5}

apt_install docker.io nginx git openssh-client busybox-static wrk python3
ensure_docker
bench_build_berth

bench_daemon
"$BERTH" --root "$ROOT" apps:create benchapp >/dev/null
"$BERTH" --root "$ROOT" domains:add benchapp bench.example.com >/dev/null

bench_base_image

bench_app_repo benchapp
printf 'FROM berth-test/busybox\nRUN mkdir /www && echo hello > /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n' >Dockerfile
git add . && git commit -qm v1
git push -q deploy main 2>"$WORK/first.log" || { cat "$WORK/first.log"; die "the first push failed"; }

# 1. Cached redeploys.
: >"$WORK/timings"
for i in $(seq 1 "$RUNS"); do
    git commit -q --allow-empty -m "redeploy $i"
    start=$(date +%s.%N)
    git push deploy main 2>"$WORK/push.log" || { cat "$WORK/push.log"; die "redeploy $i failed"; }
    end=$(date +%s.%N)
    build=$(sed -n 's/.*Build done in \([0-9.]*\)s.*/\1/p' "$WORK/push.log")
    ready=$(sed -n 's/.*checks passed in \([0-9.]*\)s.*/\1/p' "$WORK/push.log")
    echo "$start $end $build $ready" >>"$WORK/timings"
done

# 2. Ten redeploys under load, for each kind of client.
load() { # NAME [wrk header args…]
    local name=$1
    shift
    wrk -t2 -c16 -d40s --latency -H 'Host: bench.example.com' "$@" "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-$name.log" 2>&1 &
    local wrk_pid=$!
    sleep 1
    for i in $(seq 1 10); do
        git commit -q --allow-empty -m "under load ($name) $i"
        git push -q deploy main 2>"$WORK/load-push.log" || { cat "$WORK/load-push.log"; die "redeploy $i under load failed"; }
    done
    wait "$wrk_pid"
}
load keepalive
load close -H 'Connection: close'

python3 - "$WORK/timings" "$WORK/wrk-keepalive.log" "$WORK/wrk-close.log" <<'PY'
import re, statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
wall = [e - s for s, e, _, _ in rows]
build = [b for _, _, b, _ in rows]
ready = [r for _, _, _, r in rows]
over = [w - b - r for w, b, r in zip(wall, build, ready)]
med = statistics.median

def wrk_stats(path):
    wrk = open(path).read()
    total = int(re.search(r"(\d+) requests in", wrk).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)) else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
    sock = list(map(int, m.groups())) if m else [0, 0, 0, 0]
    p99 = m.group(1) if (m := re.search(r"99%\s+(\S+)", wrk)) else "?"
    return total, non2xx, sock, p99
print(f"Redeploy of a small Dockerfile app with a cached build, {len(rows)} runs (median)")
print(f"| {'phase':<46} | {'seconds':>8} |")
print(f"|{'-'*48}|{'-'*10}|")
print(f"| {'git push wall time':<46} | {med(wall):>8.2f} |")
print(f"| {'  Docker build (cached)':<46} | {med(build):>8.2f} |")
print(f"| {'  container start + app start-up + checks':<46} | {med(ready):>8.2f} |")
print(f"| {'  berth overhead (goal < 1 s)':<46} | {med(over):>8.2f} |")
print()
print("wrk through berth's nginx (2 threads, 16 connections, 40 s) while 10 consecutive redeploys run")
print(f"| {'clients':<26} | {'served':>8} | {'non-2xx':>7} | {'conn/read/write/timeout errors':>30} | {'p99':>9} |")
print(f"|{'-'*28}|{'-'*10}|{'-'*9}|{'-'*32}|{'-'*11}|")
for label, path in (("keep-alive (wrk default)", sys.argv[2]), ("new connection per request", sys.argv[3])):
    total, non2xx, sock, p99 = wrk_stats(path)
    print(f"| {label:<26} | {total:>8} | {non2xx:>7} | {'/'.join(map(str, sock)):>30} | {p99:>9} |")
print("goal: 0 failed requests")
PY

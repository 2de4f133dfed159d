#!/usr/bin/env bash
# Process management speed, for a small Dockerfile app (busybox httpd web + a worker):
#  1. `ps:scale` up (web=3 worker=2) and down (web=1 worker=0): wall time of the ssh
#     command, median of RUNS each. Every scale change is a full zero-downtime release.
#  2. `run APP true` (a one-off container: create, attach, start, wait, remove) and
#     `enter APP web.1 true` (docker exec): wall time of the ssh command, median of 10.
#     `ps:restart APP` (web=1): until the new container serves, median of 10.
#  3. wrk through berth's nginx with a new connection per request while the scale
#     changes of 1. run: served and failed requests.
# Usage: scripts/bench-ps.sh [RUNS]   (default 3; BERTH=/path/to/berth uses that binary instead of a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-3}

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static wrk python3
ensure_docker
bench_berth

bench_daemon
bench_base_image
"$BERTH" --root "$ROOT" apps:create benchps >/dev/null
"$BERTH" --root "$ROOT" domains:add benchps ps.example.com >/dev/null

bench_app_repo benchps
printf 'FROM berth-test/busybox\nRUN mkdir /www && echo hello > /www/index.html\n' >Dockerfile
printf '%s\n' "web: sh -c 'exec httpd -f -p \$PORT -h /www'" "worker: sh -c 'while true; do sleep 1; done'" >Procfile
git add . && git commit -qm v1
git push -q deploy main 2>"$WORK/first.log" || { cat "$WORK/first.log"; die "the first push failed"; }

SSH="$GIT_SSH_COMMAND -p $SSH_PORT berth@127.0.0.1"
timed() { # FILE COMMAND…: appends the wall time of COMMAND
    local file=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$@" >"$WORK/cmd.log" 2>&1 || { cat "$WORK/cmd.log"; die "$* failed"; }
    end=$(date +%s.%N)
    echo "$start $end" >>"$file"
}

wrk -t2 -c8 -d600s --latency -H 'Host: ps.example.com' -H 'Connection: close' "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk.log" 2>&1 &
WRK_PID=$!
sleep 1
: >"$WORK/up"
: >"$WORK/down"
for _ in $(seq 1 "$RUNS"); do
    timed "$WORK/up" $SSH ps:scale benchps web=3 worker=2
    timed "$WORK/down" $SSH ps:scale benchps web=1 worker=0
done
$SSH ps:scale benchps web=3 worker=2 >"$WORK/scale-up.log" 2>&1
$SSH ps:scale benchps web=1 worker=0 >/dev/null 2>&1
sleep 1
kill -INT "$WRK_PID"
wait "$WRK_PID" || true

: >"$WORK/run"
: >"$WORK/enter"
: >"$WORK/restart"
for _ in $(seq 1 10); do
    timed "$WORK/run" $SSH run benchps true
    timed "$WORK/enter" $SSH enter benchps web.1 true
    timed "$WORK/restart" $SSH ps:restart benchps
done

echo "The output of one scale-up:"
sed 's/^/    /' "$WORK/scale-up.log"
python3 - "$WORK" <<'PY'
import re, statistics, sys
work = sys.argv[1]
def med(name):
    rows = [list(map(float, l.split())) for l in open(f"{work}/{name}") if l.strip()]
    return statistics.median(e - s for s, e in rows), len(rows)
print(f"| {'command (ssh wall time, median)':<46} | {'runs':>4} | {'seconds':>7} |")
print(f"|{'-'*48}|{'-'*6}|{'-'*9}|")
for label, name in (("ps:scale web=3 worker=2 (from web=1)", "up"), ("ps:scale web=1 worker=0 (from web=3 worker=2)", "down"),
                    ("run APP true", "run"), ("enter APP web.1 true", "enter"),
                    ("ps:restart web=1 (goal <= 0.5)", "restart")):
    m, n = med(name)
    print(f"| {label:<46} | {n:>4} | {m:>7.2f} |")
wrk = open(f"{work}/wrk.log").read()
total = int(re.search(r"(\d+) requests in", wrk).group(1))
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)) else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
sock = "/".join(m.groups()) if m else "0/0/0/0"
print()
print(f"wrk (new connection per request) during the scale changes: {total} requests, {non2xx} non-2xx, socket errors connect/read/write/timeout {sock}")
print("goal: 0 failed requests")
PY

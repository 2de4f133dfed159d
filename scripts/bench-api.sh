#!/usr/bin/env bash
# The HTTP API and the dashboard, measured on a daemon with many apps:
#  1. GET /api/v1/apps with APPS apps (default 200): wrk, one connection, keep-alive; p50/p99
#     (goal p99 ≤ 10 ms).
#  2. The dashboard's app page (/dashboard/apps/APP, rendered on the server): same; p50/p99
#     (goal ≤ 20 ms).
#  3. The daemon's resident memory when idle with the API on, after the daemon starts and
#     after the load above (goal ≤ 25 MB).
#  4. A deploy of the same image through the API (POST /deploys) and over ssh
#     (git:from-image), alternating, RUNS each: median seconds and the ratio (goal ~1×).
# Usage: scripts/bench-api.sh [APPS] [RUNS]   (defaults 200, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
APPS=${1:-200}
RUNS=${2:-5}
progress() { printf -- '-----> %s\n' "$*" >&2; }

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static wrk python3 curl
ensure_docker
bench_build_berth

bench_daemon
bench_base_image
API=$(cat "$ROOT/api-address")
rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$BERTH_PID/status"; }
sleep 1
RSS_START=$(rss)

progress "$APPS apps"
for n in $(seq 1 "$APPS"); do "$BERTH" --root "$ROOT" apps:create "app$n" >/dev/null; done
TOKEN=$("$BERTH" --root "$ROOT" tokens:create bench --scope admin | tail -1)

# wrk's latency table: p50 and p99 of a run.
percentiles() { # LOG
    awk '$1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } END { print p50, p99 }' "$1"
}

progress "1. GET /api/v1/apps"
curl -sf -H "Authorization: Bearer $TOKEN" "http://$API/api/v1/apps" | python3 -c "import json,sys; n=len(json.load(sys.stdin)); assert n == $APPS, n"
wrk -t1 -c1 -d10s --latency -H "Authorization: Bearer $TOKEN" "http://$API/api/v1/apps" >"$WORK/wrk-api.log"
read -r API_P50 API_P99 < <(percentiles "$WORK/wrk-api.log")

progress "2. The dashboard's app page"
LOGIN=$("$BERTH" --root "$ROOT" dashboard:login | tail -1)
curl -s -c "$WORK/jar" -o /dev/null "$LOGIN"
SESSION=$(awk '$6 == "berth_session" { print $7 }' "$WORK/jar")
[ -n "$SESSION" ] || die "the dashboard login gave no session"
curl -sf -H "Cookie: berth_session=$SESSION" "http://$API/dashboard/apps/app1" | grep -q 'id="app">app1<' || die "the app page did not render"
wrk -t1 -c1 -d10s --latency -H "Cookie: berth_session=$SESSION" "http://$API/dashboard/apps/app1" >"$WORK/wrk-page.log"
read -r PAGE_P50 PAGE_P99 < <(percentiles "$WORK/wrk-page.log")
sleep 2
RSS_AFTER=$(rss)

progress "4. Deploys of one image: the API and ssh, alternating"
mkdir -p "$WORK/img"
printf 'FROM berth-test/busybox\nRUN mkdir /www && echo hi > /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n' >"$WORK/img/Dockerfile"
docker build -q -t berth-bench/api-image "$WORK/img" >/dev/null
SSH="$GIT_SSH_COMMAND -p $SSH_PORT berth@127.0.0.1"
: >"$WORK/t-api"
: >"$WORK/t-ssh"
for _ in $(seq 1 "$RUNS"); do
    start=$(date +%s.%N)
    code=$(curl -s -o "$WORK/deploy.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" -d '{"image":"berth-bench/api-image"}' "http://$API/api/v1/apps/app1/deploys")
    end=$(date +%s.%N)
    [ "$code" = 201 ] || die "the API deploy answered $code: $(cat "$WORK/deploy.json")"
    echo "$end - $start" | bc -l >>"$WORK/t-api"
    start=$(date +%s.%N)
    $SSH git:from-image app2 berth-bench/api-image >"$WORK/ssh.log" 2>&1 || die "git:from-image failed: $(cat "$WORK/ssh.log")"
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l >>"$WORK/t-ssh"
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { printf "%.3f", a[int((NR + 1) / 2)] }'; }
T_API=$(median "$WORK/t-api")
T_SSH=$(median "$WORK/t-ssh")
docker rmi -f berth-bench/api-image >/dev/null 2>&1 || true

printf '\n| %s apps | p50 | p99 | goal |\n|---|---|---|---|\n' "$APPS"
printf '| GET /api/v1/apps | %s | %s | p99 ≤ 10 ms |\n' "$API_P50" "$API_P99"
printf '| dashboard app page | %s | %s | ≤ 20 ms |\n' "$PAGE_P50" "$PAGE_P99"
printf '\n| daemon RSS (MB) | at start | after the load |\n|---|---|---|\n| API on | %s | %s |\n' "$RSS_START" "$RSS_AFTER"
printf '\n| deploy of one image (median of %s) | seconds |\n|---|---|\n| POST /api/v1/apps/APP/deploys | %s |\n| ssh git:from-image | %s |\n' "$RUNS" "$T_API" "$T_SSH"
printf '| ratio API / ssh | %s× |\n' "$(echo "$T_API / $T_SSH" | bc -l | xargs printf '%.2f')"

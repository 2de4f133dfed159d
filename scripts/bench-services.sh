#!/usr/bin/env bash
# Database services and scheduled jobs: how long a service takes to accept connections,
# how long a link takes (the app restarted with DATABASE_URL, no downtime), and the daemon's
# idle memory with 5 services and 5 cron jobs.
#  1. postgres:create to "accepts clients": the first create on this machine builds
#     berth/postgres:15 (reported once, if the image was missing), then RUNS creates with
#     the image present (median).
#  2. postgres:link to a deployed app: the new release serves with DATABASE_URL (median).
#  3. The daemon's resident memory (VmRSS) idle, then idle with 5 services (3 postgres,
#     2 redis) and an app with 5 cron jobs (scheduled yearly, so none runs).
# Usage: scripts/bench-services.sh [RUNS]   (default 3; BERTH=path skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-3}

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static debootstrap python3 bc
ensure_docker
if [ -z "${BERTH:-}" ]; then bench_build_berth; else BERTH=$(realpath "$BERTH"); fi
bench_daemon
B() { "$BERTH" --root "$ROOT" "$@"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$BERTH_PID/status"; }
now() { date +%s.%N; }

bench_base_image
B stack:build >/dev/null
sleep 3
RSS_IDLE=$(rss)

# 1. Create to accepting connections.
FIRST=""
if ! docker image inspect berth/postgres:15 >/dev/null 2>&1; then
    start=$(now); B postgres:create first >/dev/null; end=$(now)
    FIRST=$(echo "$end - $start" | bc)
    B postgres:destroy first --force >/dev/null
fi
: >"$WORK/create"
for i in $(seq 1 "$RUNS"); do
    start=$(now); B postgres:create "db$i" >/dev/null; end=$(now)
    echo "$end - $start" | bc >>"$WORK/create"
done

# 2. Link to a deployed app.
B apps:create linked >/dev/null
B domains:add linked linked.example.com >/dev/null
bench_app_repo linked
printf 'FROM berth-test/busybox\nRUN mkdir /www && echo hello > /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n' >Dockerfile
git add . && git commit -qm v1 && git push -q deploy main 2>/dev/null
: >"$WORK/link"
for i in $(seq 1 "$RUNS"); do
    start=$(now); B postgres:link "db$i" linked >/dev/null; end=$(now)
    echo "$end - $start" | bc >>"$WORK/link"
    B postgres:unlink "db$i" linked >/dev/null
done

# 3. Idle with 5 services and 5 cron jobs.
for i in $(seq $((RUNS + 1)) 3); do B postgres:create "db$i" >/dev/null; done
B redis:create cache1 >/dev/null
B redis:create cache2 >/dev/null
printf '{"cron": [%s]}\n' "$(for i in 1 2 3 4 5; do printf '{"command": "echo %s", "schedule": "0 0 1 1 *"}' "$i"; [ "$i" = 5 ] || printf ','; done)" >app.json
git add . && git commit -qm cron && git push -q deploy main 2>/dev/null
sleep 5
RSS_LOADED=$(rss)
SERVICES=$(( $(B postgres:list --format json | grep -o '"name"' | wc -l) + $(B redis:list --format json | grep -o '"name"' | wc -l) ))
JOBS=$(B cron:report linked --cron-task-count)

python3 - "$WORK/create" "$WORK/link" "$FIRST" "$RSS_IDLE" "$RSS_LOADED" "$SERVICES" "$JOBS" <<'PY'
import statistics, sys
create = [float(l) for l in open(sys.argv[1]) if l.strip()]
link = [float(l) for l in open(sys.argv[2]) if l.strip()]
first, idle, loaded, services, jobs = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
print(f"Services and scheduled jobs ({len(create)} runs, median)")
print(f"| {'what':<58} | {'value':>10} |")
print(f"|{'-'*60}|{'-'*12}|")
if first:
    print(f"| {'first postgres:create (builds berth/postgres:15), s':<58} | {float(first):>10.1f} |")
print(f"| {'postgres:create to accepting connections, s':<58} | {statistics.median(create):>10.2f} |")
print(f"| {'postgres:link: the app restarted with DATABASE_URL, s':<58} | {statistics.median(link):>10.2f} |")
print(f"| {'daemon RSS idle, MiB':<58} | {idle/1024:>10.1f} |")
print(f"| {f'daemon RSS with {services} services and {jobs} cron jobs, MiB':<58} | {loaded/1024:>10.1f} |")
PY

# Services outlive the daemon: destroy them (and their volumes) before the cleanup.
for s in $(B postgres:list --format json | grep -o '"name":"[^"]*"' | cut -d'"' -f4); do B postgres:unlink "$s" linked >/dev/null 2>&1 || true; B postgres:destroy "$s" --force >/dev/null; done
for s in cache1 cache2; do B redis:destroy "$s" --force >/dev/null; done

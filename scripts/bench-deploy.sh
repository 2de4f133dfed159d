#!/usr/bin/env bash
# Deploy speed and invisible deploys. The fixture apps are in scripts/bench-apps/.
#  1. `git push` wall time of a redeploy whose image build is fully cached (an empty
#     commit to a busybox httpd Dockerfile app), median of RUNS, split into the Docker
#     build, the app's start-up until its checks pass, and berth's own overhead
#     (everything else: SSH, git, hook, release, routing); beside it, alternating, the
#     by-hand floor: the same swap with docker, curl and nginx alone, and the ratio.
# 1c. The same with a changed source, as a real push has: each run commits a new
#     `version.txt` that the Dockerfile COPYs (its own app, bench-apps/busybox-copy), and
#     the by-hand floor builds the same change; the build is cached up to that step.
#  2. A Go net/http app (go buildpack, standard library; listens with the kernel's full
#     backlog, unlike busybox httpd's 9 whose dropped SYNs came back 1 s later) under wrk
#     through berth's nginx (2 threads, 16 connections), keep-alive and with a new
#     connection per request: once with no deploy (the baseline), once across REDEPLOYS
#     consecutive redeploys. Failed requests (non-2xx + socket errors; goal 0), p50/p99
#     (goal: p99 with redeploys ≤ 1.5× without), the median push under load, and the
#     listen-queue overflows (TcpExtListenOverflows/ListenDrops read with nstat inside
#     every web container's network namespace; goal 0, else wrk measures the app). The
#     same across REDEPLOYS `ps:restart`s: the swap alone, without the build. And with a
#     paced keep-alive load (each connection waits PACE_MS between requests, as in 4.), no
#     deploy and across REDEPLOYS redeploys: p99 when the load leaves the machine room.
#     And paired: REDEPLOYS rounds of PAIR_SECS of keep-alive load with no deploy, then the
#     same load across one redeploy; each redeploy's p99 against the idle run just before
#     it (the median of the ratios), so a machine that drifts during the long runs above
#     does not decide the ratio.
# 2c. What a redeploy costs the machine beside its build: REDEPLOYS redeploys of the Go app
#     with no load, each followed by CPU_SETTLE seconds (its old container retires, the next
#     rollout's namespaces are made: the deploy's work too). Per redeploy: the machine's CPU
#     time (/proc/stat: user, nice, system, irq, softirq) and, of it, the build's (berth's
#     idle-priority cgroup, berth-builds). The rest (the engine, the kernel, berth, the new
#     container's start) runs at the apps' priority: what competes with them during a deploy.
#  3. A WebSocket client (bench-apps/ws-probe.py) connected to a Node `ws` echo app
#     (checks wait-to-retire 5) across one redeploy: messages lost (goal 0), how the
#     connection ended (close frame, EOF, error) and when, and whether it reconnects.
#  4. p99 of the Go app under a steady load (wrk paced: each connection waits PACE_MS
#     between requests) with no build, then while a CPU-heavy Docker build of another app
#     runs (a RUN step burning both cores for 30 s); without build limits (build-cpu-shares
#     1024, the apps' weight; build-memory 0, none) and with them (256; build-memory
#     BUILD_MEMORY, or berth's default when empty). Goal, with limits: ≤ 2× the p99 with
#     no build.
# Settings this berth does not have yet are reported as "(not available)" and the run goes
# on, so the figures before and after a change come from the same script.
# Usage: scripts/bench-deploy.sh [RUNS]   (default 5)
#   BERTH=/path/to/berth   use this binary instead of building one (cargo build --release)
#   REDEPLOYS=20 BASE_SECS=30 LOAD_SECS=20 PACE_MS=20 PAIR_SECS=10 BUILD_MEMORY= (e.g. 1g)
#   CPU_SETTLE=4 seconds after each redeploy of 2c
#   SWAP_EVERY=2 seconds between swaps in 2b (berth's and the by-hand ones alike)
#   BUILD_PRIORITY=normal  builds at the apps' CPU priority, not the idle one
#   SECTIONS=1,2b  only these parts (of 1, 1c, 2, 2b, 2c, 3, 4; default all): 1 is the cached
#                redeploys beside the by-hand floor, 1c the same with a changed source,
#                2b the swaps under load beside by hand
# Progress goes to stderr, the tables to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-5}
REDEPLOYS=${REDEPLOYS:-20}
BASE_SECS=${BASE_SECS:-30}
LOAD_SECS=${LOAD_SECS:-20}
PACE_MS=${PACE_MS:-20}
PAIR_SECS=${PAIR_SECS:-10}
BUILD_MEMORY=${BUILD_MEMORY:-}
SWAP_EVERY=${SWAP_EVERY:-2}
APPS=$PWD/scripts/bench-apps

progress() { printf -- '-----> %s\n' "$*" >&2; }
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static wrk python3 debootstrap iproute2 util-linux procps
ensure_docker
bench_berth

bench_daemon
# The images of this run's apps go too (bench_cleanup removes their containers first).
# Images this run made: labelled with its root (buildpack builds) or tagged berth/APP for
# its apps (Dockerfile builds carry no label).
trap 'bench_cleanup; { docker images -q --filter "label=berth.root=$ROOT"; for a in benchapp benchcopy benchgo benchws benchburn; do docker images -q "berth/$a"; done; } | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true' EXIT
bench_base_image
progress "The stack image (built once per machine: debootstrap when no registry answers, ~5-10 minutes)"
"$BERTH" --root "$ROOT" stack:build >"$WORK/stack.log" 2>&1 || { cat "$WORK/stack.log"; die "stack:build failed"; }

# A setting this berth may not have yet: recorded under TAG as taken or "(not available)"
# with berth's refusal, never fatal. Lines: "TAG|STATUS|COMMAND|REFUSAL".
: >"$WORK/settings"
setting() { # TAG COMMAND ARGS…
    local tag=$1
    shift
    if "$BERTH" --root "$ROOT" "$@" >"$WORK/setting.log" 2>&1; then
        echo "$tag|ok|$*|" >>"$WORK/settings"
    else
        echo "$tag|(not available)|$*|$(head -n1 "$WORK/setting.log" | sed 's/^ !  *//')" >>"$WORK/settings"
    fi
}

# An app APP from fixture FIXTURE (a directory of bench-apps/) at HOST, pushed once; the
# current directory is its repository afterwards.
first_push() { # APP FIXTURE HOST
    progress "First push of $1 ($2)"
    "$BERTH" --root "$ROOT" apps:create "$1" >/dev/null
    "$BERTH" --root "$ROOT" domains:add "$1" "$3" >/dev/null
    bench_app_repo "$1"
    cp -r "$APPS/$2/." .
    git add -A && git commit -qm v1
    git push -q deploy main 2>"$WORK/$1-first.log" || { cat "$WORK/$1-first.log"; die "the first push of $1 failed"; }
}

# An empty commit pushed; "START END ok|failed" appended to TIMINGS. A failed push is kept
# for the report and the run goes on.
redeploy() { # TIMINGS MESSAGE
    git commit -q --allow-empty -m "$2"
    local start end status=ok
    start=$(date +%s.%N)
    git push deploy main 2>"$WORK/push.log" || status=failed
    end=$(date +%s.%N)
    echo "$start $end $status" >>"$1"
    if [ $status = failed ]; then
        cp "$WORK/push.log" "$WORK/failed-push-$(date +%s%N).log"
        progress "a push failed ($2): $(tail -n1 "$WORK/push.log")"
    fi
    return 0
}

# The by-hand floor: the same swap of the same app done with the bare tools, as a script
# would: `docker build` (cached), `docker run`, poll until HTTP answers, write an nginx
# upstream, `nginx -s reload`, remove the old container. Its own nginx, on FLOOR_PORT.
floor_setup() { # FIXTURE
    rm -rf "$WORK/floor"
    mkdir -p "$WORK/floor/app" "$WORK/floor/nginx/logs"
    cp -r "$APPS/$1/." "$WORK/floor/app/"
    FLOOR_PORT=$(free_port)
    cat >"$WORK/floor/nginx/nginx.conf" <<EOF
pid $WORK/floor/nginx/nginx.pid;
error_log $WORK/floor/nginx/logs/error.log;
events {}
http {
    access_log off;
    include $WORK/floor/nginx/upstream.conf;
    server { listen 127.0.0.1:$FLOOR_PORT; location / { proxy_pass http://app; } }
}
EOF
    FLOOR_OLD=""
    floor_swap >/dev/null
    nginx -p "$WORK/floor/nginx" -c "$WORK/floor/nginx/nginx.conf"
    BENCH_PIDS="${BENCH_PIDS:-} $(cat "$WORK/floor/nginx/nginx.pid")"
}
floor_swap() { # prints START END
    local start id ip
    start=$(date +%s.%N)
    docker build -q -t "berth-floor-$$:bench" "$WORK/floor/app" >/dev/null
    id=$(docker run -d -e PORT=5000 --label "berth.root=$ROOT" "berth-floor-$$:bench")
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
    until curl -s -o /dev/null --max-time 1 "http://$ip:5000/"; do sleep 0.01; done
    echo "upstream app { server $ip:5000; keepalive 8; }" >"$WORK/floor/nginx/upstream.conf"
    if [ -f "$WORK/floor/nginx/nginx.pid" ]; then nginx -p "$WORK/floor/nginx" -c "$WORK/floor/nginx/nginx.conf" -s reload; fi
    if [ -n "$FLOOR_OLD" ]; then docker rm -f "$FLOOR_OLD" >/dev/null; fi
    FLOOR_OLD=$id
    echo "$start $(date +%s.%N)"
}

# SECTIONS (comma-separated: 1,1c,2,2b,3,4; default all) picks what runs.
want() { [ "${SECTIONS:-all}" = all ] || [[ ",$SECTIONS," == *",$1,"* ]]; }
export SECTIONS=${SECTIONS:-all} SWAP_EVERY

# BUILD_PRIORITY=normal: builds at the apps' CPU priority (berth's default is
# idle), to measure what the idle priority buys with the same binary.
[ -n "${BUILD_PRIORITY:-}" ] && setting priority builder:set --global build-cpu-priority "$BUILD_PRIORITY"

# 1. Cached redeploys, each beside a by-hand swap (alternating: the same load for both);
# 1c. the same with a changed source. Lines "START END BUILD READY" in SUFFIX's timings.
redeploys_beside_floor() { # APP FIXTURE HOST SUFFIX CHANGE(empty|file)
    local app=$1 fixture=$2 host=$3 suffix=$4 change=$5
    first_push "$app" "$fixture" "$host"
    floor_setup "$fixture"
    progress "1$suffix. $RUNS redeploys ($app) and $RUNS by-hand swaps"
    : >"$WORK/timings$suffix"
    : >"$WORK/floor-timings$suffix"
    for i in $(seq 1 "$RUNS"); do
        if [ "$change" = file ]; then
            # Not the same text: the floor's build would take berth's layer from the cache.
            echo "run $i $(date +%s%N)" >version.txt
            echo "by hand, run $i $(date +%s%N)" >"$WORK/floor/app/version.txt"
            git add version.txt
            git commit -q -m "redeploy $i"
        else
            git commit -q --allow-empty -m "redeploy $i"
        fi
        start=$(date +%s.%N)
        git push deploy main 2>"$WORK/push.log" || { cat "$WORK/push.log"; die "redeploy $i of $app failed"; }
        end=$(date +%s.%N)
        build=$(sed -n 's/.*Build done in \([0-9.]*\)s.*/\1/p' "$WORK/push.log")
        ready=$(sed -n 's/.*checks passed in \([0-9.]*\)s.*/\1/p' "$WORK/push.log")
        echo "$start $end $build $ready" >>"$WORK/timings$suffix"
        sleep 1
        floor_swap >>"$WORK/floor-timings$suffix"
        [ "$(curl -s "http://127.0.0.1:$FLOOR_PORT/")" = hello ] || die "the by-hand swap $i does not serve"
        sleep 1
    done
    docker rm -f "$FLOOR_OLD" >/dev/null
    docker rmi -f "berth-floor-$$:bench" >/dev/null 2>&1 || true
    nginx -p "$WORK/floor/nginx" -c "$WORK/floor/nginx/nginx.conf" -s stop
    cd "$WORK"
}
if want 1; then
    redeploys_beside_floor benchapp busybox-httpd bench.example.com "" empty
fi
if want 1c; then
    redeploys_beside_floor benchcopy busybox-copy copy.example.com c file
fi

if want 2 || want 2b || want 2c; then
# 2. The Go app: baseline, then redeploys under load.
first_push benchgo go-http go.example.com

# 2c first, on a machine with nothing else to do.
machine_cpu() { awk '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8) * 10 }' /proc/stat; } # ms
builds_cpu() { # ms of berth's idle build cgroup (cgroup v1 cpuacct, or v2 cpu.stat); 0 without one
    local v1=/sys/fs/cgroup/cpuacct/berth-builds/cpuacct.usage v2
    v2=$(find /sys/fs/cgroup -maxdepth 3 -type d -name 'berth-builds*' 2>/dev/null | head -n1)
    if [ -r "$v1" ]; then echo $(($(cat "$v1") / 1000000))
    elif [ -n "$v2" ] && [ -r "$v2/cpu.stat" ]; then awk '$1 == "usage_usec" { print int($2 / 1000) }' "$v2/cpu.stat"
    else echo 0; fi
}
if want 2c; then
    progress "2c. CPU of $REDEPLOYS redeploys of the Go app with no load"
    : >"$WORK/cpu-redeploys"
    sleep "${CPU_SETTLE:-4}"
    for i in $(seq 1 "$REDEPLOYS"); do
        before="$(machine_cpu) $(builds_cpu)"
        redeploy "$WORK/pushes-cpu" "cpu $i"
        sleep "${CPU_SETTLE:-4}"
        echo "$before $(machine_cpu) $(builds_cpu)" >>"$WORK/cpu-redeploys"
    done
fi

# Listen-queue overflows. A container's counters live in its network namespace and go
# with it, so every web container of the app (listed after each push) is read every 0.5 s
# by pid, checked against the namespace it had when listed (a pid can be reused, and so can
# a namespace's inode number), and its last reading counts. Lines: "PID NETNS OVERFLOWS DROPS".
: >"$WORK/watch-pids"
watch_list() { # APP: adds its running web containers to the watch list (one retired in between is not)
    docker ps -q --filter "label=berth.root=$ROOT" --filter "label=berth.app=$1" --filter label=berth.process=web \
        | xargs -r docker inspect -f '{{.State.Pid}}' 2>/dev/null | while read -r pid; do
            [ "$pid" -gt 0 ] && echo "$pid $(readlink "/proc/$pid/ns/net")"
        done >>"$WORK/watch-pids" || true
}
overflow_watch() {
    while :; do
        sort -u "$WORK/watch-pids" | while read -r pid ns; do
            [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$ns" ] || continue
            nsenter -t "$pid" -n nstat -asz TcpExtListenOverflows TcpExtListenDrops 2>/dev/null \
                | awk -v c="$pid $ns" '$1 == "TcpExtListenOverflows" { o = $2 } $1 == "TcpExtListenDrops" { d = $2 } END { if (o != "") print c, o, d }' || true
        done
        sleep 0.5
    done >>"$WORK/overflows"
}
: >"$WORK/overflows"
# nginx's listen queue is the host's: its counters before section 2 and after it.
host_overflows() { nstat -asz TcpExtListenOverflows TcpExtListenDrops 2>/dev/null | awk -v w="$1" '$1 == "TcpExtListenOverflows" { o = $2 } $1 == "TcpExtListenDrops" { d = $2 } END { print w, o + 0, d + 0 }'; }
host_overflows start >"$WORK/host-overflows"
watch_list benchgo
overflow_watch &
WATCH_PID=$!
BENCH_PIDS="${BENCH_PIDS:-} $WATCH_PID"

wrk_run() { # NAME SECONDS [wrk args…]: wrk through berth's nginx to the Go app, in the foreground
    local name=$1 secs=$2
    shift 2
    wrk -t2 -c16 -d"${secs}s" --latency -H 'Host: go.example.com' "$@" "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-$name.log" 2>&1
}
if want 2 || want 2b; then
progress "2. wrk with no deploy, ${BASE_SECS}s keep-alive and ${BASE_SECS}s a new connection per request"
wrk_run base-keepalive "$BASE_SECS"
want 2 && wrk_run base-close "$BASE_SECS" -H 'Connection: close'
fi

# `ps:restart` of the Go app: "START END ok|failed" appended to TIMINGS, as `redeploy` does.
restart() { # TIMINGS
    local start end status=ok
    start=$(date +%s.%N)
    "$BERTH" --root "$ROOT" ps:restart benchgo >"$WORK/restart.log" 2>&1 || status=failed
    end=$(date +%s.%N)
    echo "$start $end $status" >>"$1"
}
# wrk across REDEPLOYS swaps of the Go app: KIND `deploys` (an empty commit pushed: build and
# swap) or `restarts` (ps:restart: the swap alone, no build, to tell what the swap costs the
# app's latency from what the build beside it costs).
under_load() { # KIND NAME [wrk args…]
    local kind=$1 name=$2
    shift 2
    local timings=$WORK/pushes-$name
    [ "$kind" = restarts ] && timings=$WORK/pushes-restart-$name
    progress "2. wrk ($name) across $REDEPLOYS $kind"
    wrk -t2 -c16 -d3600s --latency -H 'Host: go.example.com' "$@" "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-$kind-$name.log" 2>&1 &
    local wrk_pid=$!
    sleep 1
    : >"$timings"
    for i in $(seq 1 "$REDEPLOYS"); do
        case $kind in
            deploys) redeploy "$timings" "under load ($name) $i" ;;
            restarts) restart "$timings" ;;
        esac
        watch_list benchgo
    done
    sleep 1
    kill -INT "$wrk_pid"
    wait "$wrk_pid" || true
}
if want 2; then
under_load deploys keepalive
under_load restarts keepalive
under_load deploys close -H 'Connection: close'
under_load restarts close -H 'Connection: close'
# Paired: each redeploy under keep-alive load right after PAIR_SECS of the same load with none.
progress "2. wrk (keep-alive) paired: $REDEPLOYS rounds of ${PAIR_SECS}s with no deploy, then across one redeploy"
: >"$WORK/pushes-paired"
for i in $(seq 1 "$REDEPLOYS"); do
    wrk_run "paired-idle-$i" "$PAIR_SECS"
    wrk -t2 -c16 -d3600s --latency -H 'Host: go.example.com' "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-paired-deploy-$i.log" 2>&1 &
    PAIRED_WRK=$!
    sleep 0.5
    redeploy "$WORK/pushes-paired" "paired $i"
    watch_list benchgo
    sleep 0.5
    kill -INT "$PAIRED_WRK"
    wait "$PAIRED_WRK" || true
done
fi

if want 2b; then
# 2b. The by-hand swap of the same Go image under the same keep-alive load, through an nginx
# of its own (upstream keepalive, a reload per swap): what a swap costs the latency with the
# bare tools, to compare berth's inflation with. The container is made as berth made its web
# container (image, command, env), then: run the new one, poll, upstream, reload, and the old
# one removed a second later.
go_floor_run() { # prints the new container's id
    docker run -d --label "berth.root=$ROOT" --env-file "$WORK/gofloor/env" "$GO_IMAGE" "${GO_CMD[@]}"
}
go_floor_swap() { # OLD: swaps to a new container, prints its id
    local id ip
    id=$(go_floor_run)
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
    until curl -s -o /dev/null --max-time 1 "http://$ip:5000/"; do sleep 0.01; done
    echo "upstream goapp { server $ip:5000; keepalive 32; }" >"$WORK/gofloor/upstream.conf"
    if [ -f "$WORK/gofloor/nginx.pid" ]; then nginx -p "$WORK/gofloor" -c "$WORK/gofloor/nginx.conf" -s reload 2>/dev/null; fi
    if [ -n "$1" ]; then (sleep 1; docker rm -f "$1" >/dev/null 2>&1) & fi
    echo "$id"
}
progress "2b. The by-hand swap of the Go app's image under keep-alive load"
mkdir -p "$WORK/gofloor/logs"
GO_WEB=$(docker ps -q --filter "label=berth.root=$ROOT" --filter label=berth.app=benchgo --filter label=berth.process=web | head -n1)
GO_IMAGE=$(docker inspect -f '{{.Config.Image}}' "$GO_WEB")
mapfile -t GO_CMD < <(docker inspect -f '{{json .Config.Cmd}}' "$GO_WEB" | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin) or []))')
docker inspect -f '{{json .Config.Env}}' "$GO_WEB" | python3 -c 'import json, sys; print("\n".join(e for e in json.load(sys.stdin) if not e.startswith("PATH=")))' >"$WORK/gofloor/env"
GO_FLOOR_PORT=$(free_port)
cat >"$WORK/gofloor/nginx.conf" <<EOF
pid $WORK/gofloor/nginx.pid;
error_log $WORK/gofloor/logs/error.log;
worker_processes auto;
events { worker_connections 4096; }
http {
    access_log off;
    include $WORK/gofloor/upstream.conf;
    server {
        listen 127.0.0.1:$GO_FLOOR_PORT;
        location / { proxy_pass http://goapp; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
GO_OLD=$(go_floor_swap "")
nginx -p "$WORK/gofloor" -c "$WORK/gofloor/nginx.conf"
BENCH_PIDS="${BENCH_PIDS:-} $(cat "$WORK/gofloor/nginx.pid")"
wrk -t2 -c16 -d"${BASE_SECS}s" --latency "http://127.0.0.1:$GO_FLOOR_PORT/" >"$WORK/wrk-floor-base.log" 2>&1
wrk -t2 -c16 -d3600s --latency "http://127.0.0.1:$GO_FLOOR_PORT/" >"$WORK/wrk-floor-swaps.log" 2>&1 &
FLOOR_WRK=$!
sleep 1
: >"$WORK/pushes-floor"
# Both sides swap at the same rate: one swap every SWAP_EVERY seconds (or as soon as the
# previous one ends, if it took longer), so each pays the same engine work per second.
pace() { # START: sleeps until START + SWAP_EVERY
    local left
    left=$(python3 -c "import time, sys; print(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))" "$1" "$SWAP_EVERY")
    sleep "$left"
}
for _ in $(seq 1 "$REDEPLOYS"); do
    start=$(date +%s.%N)
    GO_OLD=$(go_floor_swap "$GO_OLD")
    echo "$start $(date +%s.%N) ok" >>"$WORK/pushes-floor"
    pace "$start"
done
sleep 1
kill -INT "$FLOOR_WRK"
wait "$FLOOR_WRK" || true
progress "2b. berth's ps:restart at the same rate under the same keep-alive load"
wrk -t2 -c16 -d3600s --latency -H 'Host: go.example.com' "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-restarts-paced.log" 2>&1 &
PACED_WRK=$!
sleep 1
: >"$WORK/pushes-restart-paced"
for _ in $(seq 1 "$REDEPLOYS"); do
    start=$(date +%s.%N)
    restart "$WORK/pushes-restart-paced"
    pace "$start"
done
sleep 1
kill -INT "$PACED_WRK"
wait "$PACED_WRK" || true
sleep 1
docker ps -aq --filter "label=berth.root=$ROOT" --filter "ancestor=$GO_IMAGE" | while read -r id; do
    docker inspect -f '{{index .Config.Labels "berth.app"}}' "$id" | grep -q . || docker rm -f "$id" >/dev/null
done
fi

if want 2; then
# The same with a steady load that leaves the machine room (each connection waits PACE_MS
# between requests, as in 4.), closer to what an app's users send than wrk flat out.
printf 'function delay()\n  return %s\nend\n' "$PACE_MS" >"$WORK/pace.lua"
progress "2. paced wrk with no deploy, ${BASE_SECS}s"
wrk_run base-paced "$BASE_SECS" -s "$WORK/pace.lua"
under_load deploys paced -s "$WORK/pace.lua"
fi
sleep 1
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
host_overflows end >>"$WORK/host-overflows"
fi

if want 3; then
# 3. A WebSocket connection across a redeploy.
first_push benchws ws-echo ws.example.com
setting ws checks:set benchws wait-to-retire 5
progress "3. A WebSocket client across a redeploy"
rm -f "$WORK/ws-ready"
python3 "$APPS/ws-probe.py" "$HTTP_PORT" ws.example.com "$WORK/ws-ready" "$WORK/ws-result.json" 90 2>"$WORK/ws-probe.log" &
PROBE_PID=$!
BENCH_PIDS="$BENCH_PIDS $PROBE_PID"
for _ in $(seq 1 100); do [ -e "$WORK/ws-ready" ] && break; sleep 0.1; done
[ -e "$WORK/ws-ready" ] || progress "the WebSocket client did not connect: $(cat "$WORK/ws-probe.log")"
sleep 1
: >"$WORK/ws-push"
redeploy "$WORK/ws-push" "websocket redeploy"
wait "$PROBE_PID" || true

fi

if want 4; then
# 4. A steady load on the Go app while another app's CPU-heavy build runs.
if ! want 2 && ! want 2b; then first_push benchgo go-http go.example.com; fi
printf 'function delay()\n  return %s\nend\n' "$PACE_MS" >"$WORK/pace.lua"
"$BERTH" --root "$ROOT" apps:create benchburn >/dev/null
bench_app_repo benchburn
cp -r "$APPS/cpu-burn/." .
paced() { # NAME: the paced wrk for LOAD_SECS
    wrk -t2 -c16 -d"${LOAD_SECS}s" --latency -s "$WORK/pace.lua" -H 'Host: go.example.com' "http://127.0.0.1:$HTTP_PORT/" >"$WORK/wrk-build-$1.log" 2>&1
}
# What the engine gave the build's container: its cgroup's CPU weight and memory limit
# (cgroup v1 or v2), read from a burning process. Shows whether the limits were applied.
build_cgroup() { # PID
    local v1cpu v1mem v2
    v1cpu=$(sed -n 's/^[0-9]*:[^:]*\bcpu\b[^:]*:\(.*\)/\1/p' "/proc/$1/cgroup" | head -n1)
    v1mem=$(sed -n 's/^[0-9]*:memory:\(.*\)/\1/p' "/proc/$1/cgroup" | head -n1)
    v2=$(sed -n 's/^0::\(.*\)/\1/p' "/proc/$1/cgroup")
    if [ -n "$v1cpu" ] && [ -r "/sys/fs/cgroup/cpu$v1cpu/cpu.shares" ]; then
        local mem
        mem=$(cat "/sys/fs/cgroup/memory$v1mem/memory.limit_in_bytes" 2>/dev/null || echo "?")
        case $mem in ?) ;; ???????????????????*) mem=max ;; *) mem=$(numfmt --to=iec "$mem") ;; esac
        local idle=""
        [ "$(cat "/sys/fs/cgroup/cpu$(dirname "$v1cpu")/cpu.idle" 2>/dev/null)" = 1 ] && idle=", idle"
        echo "cpu.shares $(cat "/sys/fs/cgroup/cpu$v1cpu/cpu.shares"), memory $mem$idle"
    elif [ -r "/sys/fs/cgroup$v2/cpu.weight" ]; then
        local idle=""
        [ "$(cat "/sys/fs/cgroup$(dirname "$v2")/cpu.idle" 2>/dev/null)" = 1 ] && idle=", idle"
        echo "cpu.weight $(cat "/sys/fs/cgroup$v2/cpu.weight"), memory.max $(cat "/sys/fs/cgroup$v2/memory.max" 2>/dev/null)$idle"
    else
        echo "?"
    fi
}
burn_build() { # NAME: a push whose build burns both cores, with the paced wrk while it burns
    local stamp burner
    stamp=$(date +%s%N)
    echo "$stamp" >stamp
    git add -A && git commit -qm "burn $1"
    git push deploy main 2>"$WORK/burn-$1.log" &
    local push_pid=$!
    for _ in $(seq 1 600); do pgrep -f "burn-$stamp" >/dev/null && break; sleep 0.1; done
    burner=$(pgrep -f "burn-$stamp" | head -n1) || true
    if [ -n "$burner" ]; then
        build_cgroup "$burner" >"$WORK/burn-$1.cgroup" 2>/dev/null || true
    else
        progress "the CPU-heavy build of $1 did not start in 60 s"
    fi
    sleep 1
    paced "$1"
    wait "$push_pid" || { progress "the CPU-heavy push ($1) failed: $(tail -n1 "$WORK/burn-$1.log")"; cp "$WORK/burn-$1.log" "$WORK/failed-push-burn-$1.log"; }
}
# Each build run is compared with an idle run just before it: the machine may be busy with
# something else for a while, and the build is all that should differ.
sleep 5
progress "4. Paced wrk with no build, then during a CPU-heavy build without build limits (build-cpu-shares 1024)"
setting nolimits builder:set --global build-cpu-shares 1024
setting nolimits builder:set --global build-memory 0
paced idle-nolimits
burn_build nolimits
sleep 5
progress "4. Paced wrk with no build, then during a CPU-heavy build with build limits (build-cpu-shares 256, build-memory ${BUILD_MEMORY:-default})"
setting limits builder:set --global build-cpu-shares 256
setting limits builder:set --global build-memory ${BUILD_MEMORY:+"$BUILD_MEMORY"}
paced idle-limits
burn_build limits

fi

VERSION="$("$BERTH" --root "$ROOT" version 2>&1 | head -n1), $(nproc) cores, Linux $(uname -r), load average at start $LOAD_AT_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK" "$VERSION" "$BUILD_MEMORY" "$RUNS" "$REDEPLOYS" "$BASE_SECS" "$LOAD_SECS" "$PACE_MS" <<'PY'
import glob, json, os, re, statistics, sys
work, version, build_memory = sys.argv[1:4]
runs, redeploys, base_secs, load_secs, pace_ms = map(int, sys.argv[4:])
med = statistics.median
print(f"bench-deploy: {version}")
print()

def table(headers, rows, widths, left=(0,)):
    """Columns in `left` are text (left-aligned), the others numbers."""
    line = lambda cells: "| " + " | ".join(f"{c:<{w}}" if i in left else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line([str(c) for c in r]))

# 1. and 1c.
for suffix, what in (("", "with a cached build"), ("c", "whose source changed (a new version.txt COPYd; cached up to that step)")):
    if not os.path.exists(f"{work}/timings{suffix}"):
        continue
    rows = [list(map(float, l.split())) for l in open(f"{work}/timings{suffix}") if l.strip()]
    wall = [e - s for s, e, _, _ in rows]
    build = [b for _, _, b, _ in rows]
    ready = [r for _, _, _, r in rows]
    over = [w - b - r for w, b, r in zip(wall, build, ready)]
    floor = [e - s for s, e in (map(float, l.split()) for l in open(f"{work}/floor-timings{suffix}") if l.strip())]
    print(f"1{suffix}. Redeploy of a small Dockerfile app (busybox httpd) {what}, {len(rows)} runs (median)")
    table(["phase", "seconds"], [
        ["git push wall time", f"{med(wall):.2f}"],
        ["by-hand floor (build, run, poll, upstream, reload, rm)", f"{med(floor):.2f}"],
        ["berth / floor (goal <= 0.8x)", f"{med(wall) / med(floor):.2f}x"],
        ["  Docker build", f"{med(build):.2f}"],
        ["  container start + app start-up + checks", f"{med(ready):.2f}"],
        ["  berth overhead (goal < 1 s)", f"{med(over):.2f}"],
    ], [56, 8])
    print()
sections = os.environ.get("SECTIONS", "all")
want = lambda part: sections == "all" or part in sections.split(",")

# 2.
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

def wrk(name):
    try:
        text = open(f"{work}/wrk-{name}.log").read()
    except FileNotFoundError:
        return None
    if not (m := re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)):
        return None
    total = int(m.group(1))
    secs = ms(m.group(2) + m.group(3)) / 1000
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock = list(map(int, m.groups())) if m else [0, 0, 0, 0]
    pct = {p: ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
    return dict(total=total, secs=secs, non2xx=non2xx, sock=sock, failed=non2xx + sum(sock), p50=pct.get("50", float("nan")), p99=pct.get("99", float("nan")))

def fmt_ms(v):
    return "?" if v != v else (f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}")

def pushes(name):
    try:
        rows = [l.split() for l in open(f"{work}/pushes-{name}") if l.strip()]
    except FileNotFoundError:
        return [], 0
    return [float(e) - float(s) for s, e, st in rows], sum(st == "failed" for _, _, st in rows)

if os.path.exists(f"{work}/wrk-deploys-keepalive.log"):
    print(f"2. Go net/http app (go buildpack) through berth's nginx, wrk -t2 -c16: no deploy ({base_secs} s) and across {redeploys} consecutive redeploys")
    rows = []
    for label, base, load, push in (("keep-alive (wrk default)", "base-keepalive", "keepalive", "keepalive"),
                                    ("new connection per request", "base-close", "close", "close"),
                                    (f"keep-alive, paced {pace_ms} ms", "base-paced", "paced", "paced")):
        b = wrk(base)
        for when, name, timings in (("none", base, None), (f"{redeploys} redeploys", f"deploys-{load}", push), (f"{redeploys} restarts", f"restarts-{load}", f"restart-{push}")):
            if load == "paced" and when.endswith("restarts"):
                continue
            r = wrk(name)
            if r is None:
                rows.append([label, when, "(no wrk output)", "", "", "", "", "", "", "", ""])
                continue
            times, failed_pushes = pushes(timings) if timings else ([], 0)
            ratio = f"{r['p99'] / b['p99']:.2f}x" if b and timings and b["p99"] > 0 else ""
            rows.append([label, when, f"{r['secs']:.0f}", r["total"], r["non2xx"], "/".join(map(str, r["sock"])), r["failed"],
                         fmt_ms(r["p50"]), fmt_ms(r["p99"]), ratio,
                         (f"{med(times):.2f}" if times else "") + (f" ({failed_pushes} failed)" if failed_pushes else "")])
    pairs = [(wrk(f"paired-idle-{i}"), wrk(f"paired-deploy-{i}")) for i in range(1, redeploys + 1)]
    pairs = [(b, r) for b, r in pairs if b and r and b["p99"] > 0]
    ratios = []
    if pairs:
        ratios = sorted(r["p99"] / b["p99"] for b, r in pairs)
        times, failed_pushes = pushes("paired")
        label = f"keep-alive, paired ({len(pairs)})"
        rows.append([label, "none", f"{sum(b['secs'] for b, _ in pairs):.0f}", sum(b["total"] for b, _ in pairs), sum(b["non2xx"] for b, _ in pairs),
                     "/".join(str(sum(b["sock"][k] for b, _ in pairs)) for k in range(4)), sum(b["failed"] for b, _ in pairs),
                     fmt_ms(med([b["p50"] for b, _ in pairs])), fmt_ms(med([b["p99"] for b, _ in pairs])), "", ""])
        rows.append([label, "1 redeploy", f"{sum(r['secs'] for _, r in pairs):.0f}", sum(r["total"] for _, r in pairs), sum(r["non2xx"] for _, r in pairs),
                     "/".join(str(sum(r["sock"][k] for _, r in pairs)) for k in range(4)), sum(r["failed"] for _, r in pairs),
                     fmt_ms(med([r["p50"] for _, r in pairs])), fmt_ms(med([r["p99"] for _, r in pairs])), f"{med(ratios):.2f}x",
                     (f"{med(times):.2f}" if times else "") + (f" ({failed_pushes} failed)" if failed_pushes else "")])
    table(["clients", "deploys", "s", "requests", "non-2xx", "conn/read/write/timeout", "failed", "p50 ms", "p99 ms", "p99 vs none", "push/restart s (median)"],
          rows, [26, 12, 4, 9, 7, 23, 6, 7, 7, 11, 22], left=(0, 1))
    print("goal: 0 failed requests; p99 with redeploys ≤ 1.5x without (restarts: the swap alone, no build)")
    if ratios:
        print(f"paired: p50/p99 are the medians over the rounds, \"p99 vs none\" the median of each redeploy's p99 against the idle run just before it; "
              f"the ratios: {', '.join(f'{x:.2f}' for x in ratios)}")
# 2c.
if os.path.exists(f"{work}/cpu-redeploys"):
    runs = [list(map(int, l.split())) for l in open(f"{work}/cpu-redeploys") if len(l.split()) == 4]
    if runs:
        total = [(m1 - m0) / 1000 for m0, b0, m1, b1 in runs]
        build = [(b1 - b0) / 1000 for m0, b0, m1, b1 in runs]
        rest = [t - b for t, b in zip(total, build)]
        times, failed_pushes = pushes("cpu")
        settle = os.environ.get("CPU_SETTLE", "4")
        print()
        print(f"2c. CPU of a redeploy of the Go app with no load ({len(runs)} redeploys, each with the {settle} s after it; median)")
        table(["", "CPU-seconds"], [
            ["the machine", f"{med(total):.2f}"],
            ["  the build (idle priority, CPU 1)", f"{med(build):.2f}"],
            ["  the rest, at the apps' priority (engine, kernel, berth, the start)", f"{med(rest):.2f}"],
            ["push wall time (s)" + (f", {failed_pushes} failed" if failed_pushes else ""), f"{med(times):.2f}" if times else ""],
        ], [68, 11])
fb, fs = wrk("floor-base"), wrk("floor-swaps")
if fb and fs and fb["p99"] > 0:
    floor_inflation = fs["p99"] / fb["p99"]
    swaps, _ = pushes("floor")
    print()
    print(f"2b. The by-hand swap of the same image under the same keep-alive load ({redeploys} swaps, one every {os.environ.get('SWAP_EVERY', '2')} s; own nginx: upstream + reload)")
    rows = [["by hand: none", fb["total"], fb["failed"], fmt_ms(fb["p50"]), fmt_ms(fb["p99"]), "", ""],
            [f"by hand: {redeploys} swaps", fs["total"], fs["failed"], fmt_ms(fs["p50"]), fmt_ms(fs["p99"]), f"{floor_inflation:.2f}x", f"{med(swaps):.2f}" if swaps else ""]]
    bk = wrk("base-keepalive")
    for label, name in (("berth: restarts, same rate", "restarts-paced"), ("berth: restarts, back to back", "restarts-keepalive"), ("berth: redeploys, b. to b.", "deploys-keepalive")):
        r = wrk(name)
        if r and bk and bk["p99"] > 0:
            inflation = r["p99"] / bk["p99"]
            rows.append([label, r["total"], r["failed"], fmt_ms(r["p50"]), fmt_ms(r["p99"]), f"{inflation:.2f}x", f"{inflation / floor_inflation:.2f}x of by hand"])
    table(["keep-alive clients", "requests", "failed", "p50 ms", "p99 ms", "p99 vs none", "swap s / vs by hand"], rows, [29, 9, 6, 7, 7, 11, 20])
    print("goal: berth's inflation (restarts at the same rate) ≤ 1.1x the by-hand one")
if os.path.exists(f"{work}/overflows"):
    overflow = {}
    for line in open(f"{work}/overflows"):
        parts = line.split()
        if len(parts) == 4:
            overflow[parts[0], parts[1]] = (int(parts[2]), int(parts[3]))
    print(f"Listen queue of the Go app (nstat in each web container's network namespace, {len(overflow)} containers): "
          f"TcpExtListenOverflows {sum(o for o, _ in overflow.values())}, TcpExtListenDrops {sum(d for _, d in overflow.values())} (goal 0)")
    host = {w: (int(o), int(d)) for w, o, d in (l.split() for l in open(f"{work}/host-overflows") if len(l.split()) == 3)} if os.path.exists(f"{work}/host-overflows") else {}
    if "start" in host and "end" in host:
        print(f"Listen queue of nginx (the host's namespace, across section 2): TcpExtListenOverflows {host['end'][0] - host['start'][0]}, "
              f"TcpExtListenDrops {host['end'][1] - host['start'][1]} (goal 0)")
    print()

# 3.
if want("3"):
    print("3. A WebSocket client (a message every 50 ms) connected to a Node `ws` echo app across one redeploy (wait-to-retire 5)")
    try:
        ws = json.load(open(f"{work}/ws-result.json"))
        start, end, status = [l.split() for l in open(f"{work}/ws-push") if l.strip()][0]
        after = f"{ws['ended_at'] - float(end):+.1f}" if ws.get("ended_at") else "?"
        push = f"{float(end) - float(start):.2f}" + ("" if status == "ok" else " (failed)")
        lost = f"{ws['lost']} ({ws['in_flight']} in flight)"
        table(["sent", "echoed", "lost", "how it ended", "s after the push returned", "push s", "max echo ms", "a new connection"],
              [[ws["sent"], ws["echoed"], lost, ws["end"], after, push, f"{ws['max_rtt_ms']:.0f}", ws.get("reconnect", "?")]],
              [6, 6, 16, 34, 25, 6, 11, 26], left=(3, 7))
    except (FileNotFoundError, IndexError, KeyError, ValueError) as e:
        print(f"(no result: {e}; see ws-probe.log)")
    print("goal: 0 lost. \"In flight\": sent after the last echo arrived, so still on its way when the connection ended")
    print("(a message crossing the app's own close frame is one; the app closes with 1001 on SIGTERM, bench-apps/ws-echo)")
    print()

# 4.
settings = [l.rstrip("\n").split("|", 3) for l in open(f"{work}/settings") if l.strip()]
def limits_note(tag):
    mine = [s for s in settings if s[0] == tag]
    return "" if mine and all(s[1] == "ok" for s in mine) else " (not available)"
def build_cgroup(name):
    try:
        return open(f"{work}/burn-{name}.cgroup").read().strip() or "?"
    except FileNotFoundError:
        return "?"
def build_secs(name):
    try:
        text = open(f"{work}/burn-{name}.log").read()
    except FileNotFoundError:
        return "?"
    m = re.search(r"Build done in ([\d.]+)s", text)
    return m.group(1) if m else "(failed)"
if want("4"):
    print(f"4. The Go app under a steady load (wrk -t2 -c16, each connection waits {pace_ms} ms between requests, {load_secs} s) while another app's Docker build burns both cores")
    rows = []
    for tag, limits in (("nolimits", "without: build-cpu-shares 1024, build-memory 0"),
                        ("limits", f"with: build-cpu-shares 256, build-memory {build_memory or 'default'}")):
        limits += limits_note(tag)
        idle = wrk(f"build-idle-{tag}")
        for label, r, secs, cgroup in (("no build", idle, "", ""), ("CPU-heavy build", wrk(f"build-{tag}"), build_secs(tag), build_cgroup(tag))):
            if r is None:
                rows.append([limits, label, cgroup, secs, "(no wrk output)"])
                continue
            ratio = f"{r['p99'] / idle['p99']:.2f}x" if idle and idle["p99"] > 0 and r is not idle else ""
            rows.append([limits, label, cgroup, secs, r["total"], r["failed"], fmt_ms(r["p50"]), fmt_ms(r["p99"]), ratio])
    table(["build limits", "", "build container's cgroup", "build s", "requests", "failed", "p50 ms", "p99 ms", "p99 vs no build"],
          rows, [68, 15, 30, 8, 9, 6, 7, 7, 15], left=(0, 1, 2))
    print("goal: p99 during the build ≤ 2x without (with limits)")
    print()
print("Settings")
for tag, status, command, why in settings:
    print(f"  {command}: {status}" + (f" ({why})" if why else ""))
failed = sorted(glob.glob(f"{work}/failed-push-*.log"))
if failed:
    print(f"{len(failed)} push(es) failed; the last lines of the first:")
    print("".join("    " + l for l in open(failed[0]).readlines()[-5:]))
PY

#!/usr/bin/env bash
# berth on a cluster: a real three-node Docker Swarm on this machine (scripts/swarm-lab.sh),
# measured beside docker-local in one run. Prints a table:
#  1. push → new version served (through berth's nginx), median of RUNS redeploys of the same
#     small app: on docker-local (this machine's engine) and on swarm (web=1, the image
#     pushed to the cluster's registry and pulled by the node), and the ratio (goal ≤ 2×).
#  2. A Go net/http app with web=3 (one task per server) under wrk through berth's nginx, 2
#     threads, 16 connections, keep-alive and then a new connection per request, each across
#     REDEPLOYS redeploys: failed requests (non-2xx + socket errors; goal 0), p50/p99.
#  3. The same load while the third server is lost (its link cut): seconds until berth's
#     nginx no longer routes to it (goal ≤ 5), until its task runs on another server (goal
#     ≤ 15), and failed requests (goal 0).
# The app is a static Go binary built here (golang-go) in a FROM scratch image, so nothing
# needs the stack image on the nodes.
# Usage: scripts/bench-swarm.sh [RUNS]   (default 5)
#   BERTH=/path/to/berth   use this binary instead of building one (cargo build --release)
#   REDEPLOYS=5
# Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-5}
REDEPLOYS=${REDEPLOYS:-5}
progress() { printf -- '-----> %s\n' "$*" >&2; }

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static wrk python3 golang-go curl
ensure_docker
bench_berth

WORK=$(mktemp -d)
PIDS=""
cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for root in "$WORK/local" "$WORK/swarm"; do
        [ -f "$root/nginx/nginx.pid" ] && kill "$(cat "$root/nginx/nginx.pid")" 2>/dev/null || true
    done
    docker ps -aq --filter "label=berth.root=$WORK/local" | xargs -r docker rm -f >/dev/null 2>&1 || true
    scripts/swarm-lab.sh down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

progress "The lab: three servers, one registry"
eval "$(scripts/swarm-lab.sh up 3)"
# The lab makes its swarm itself: servers report as often as berth's cluster:init has them.
docker -H "$BERTHLAB_NODE1" swarm update --dispatcher-heartbeat 1s >/dev/null

ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -F /dev/null"

# A daemon: NAME [DOCKER_HOST]. Sets NAME_HTTP and NAME_SSH.
daemon() {
    local name=$1 engine=${2:-} http https
    http=$(free_port); https=$(free_port)
    (
        [ -z "$engine" ] || export DOCKER_HOST=$engine
        exec "$BERTH" --root "$WORK/$name" daemon --ssh-listen 127.0.0.1:0 --http-listen "127.0.0.1:$http" --https-listen "127.0.0.1:$https" --api-listen 127.0.0.1:0
    ) >"$WORK/$name.log" 2>&1 &
    PIDS="$PIDS $!"
    for _ in $(seq 1 100); do [ -s "$WORK/$name/ssh-address" ] && break; sleep 0.05; done
    [ -s "$WORK/$name/ssh-address" ] || die "the $name daemon did not start: $(cat "$WORK/$name.log")"
    "$BERTH" --root "$WORK/$name" ssh-keys:add bench <"$WORK/key.pub" >/dev/null
    printf -v "${name}_HTTP" '%s' "$http"
    printf -v "${name}_SSH" '%s' "$(sed 's/.*://' "$WORK/$name/ssh-address")"
}
berth_ssh() { # NAME COMMAND…
    local port_var="${1}_SSH"
    shift
    $GIT_SSH_COMMAND -p "${!port_var}" berth@127.0.0.1 "$@" >/dev/null
}

progress "Two daemons: docker-local on this machine's engine, swarm on the lab's manager"
daemon local
daemon swarm "$BERTHLAB_NODE1"
berth_ssh swarm cluster:registry --serve "$BERTHLAB_HOST:5000"   # berth's own: TLS, a password
berth_ssh swarm scheduler:set --global selected swarm

progress "The app: a static Go server (FROM scratch), serving /version"
mkdir -p "$WORK/app"
cat >"$WORK/app/main.go" <<'GO'
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	version, err := os.ReadFile("/version")
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(version) })
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
GO
(cd "$WORK/app" && printf 'module bench\n\ngo 1.19\n' >go.mod && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o server . ) || die "cannot build the Go server"

# A repository for NAME's app on DAEMON: REPO DAEMON.
repo() {
    mkdir -p "$WORK/repos/$1"
    cp "$WORK/app/server" "$WORK/repos/$1/server"
    (
        cd "$WORK/repos/$1"
        git init -q -b main
        git config user.email bench@example.com
        git config user.name bench
        printf 'FROM scratch\nCOPY server /server\nCOPY version /version\nCMD ["/server"]\n' >Dockerfile
        echo v0 >version
        git add -A && git commit -qm v0
        local port_var="${2}_SSH"
        git remote add deploy "ssh://berth@127.0.0.1:${!port_var}/$1"
    )
}

# Pushes version N of APP on DAEMON and waits until nginx serves it: the seconds it took.
push_served() { # DAEMON APP N
    local http_var="${1}_HTTP" start
    (cd "$WORK/repos/$2" && echo "v$3" >version && git commit -qam "v$3")
    start=$(date +%s.%N)
    (cd "$WORK/repos/$2" && git push -q deploy main 2>"$WORK/push.log") || die "the push of $2 v$3 failed: $(tail -5 "$WORK/push.log")"
    for _ in $(seq 1 600); do
        [ "$(curl -s -m 2 -H "Host: $2.bench.test" "http://127.0.0.1:${!http_var}/")" = "v$3" ] && break
        sleep 0.01
    done
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$start" "$(date +%s.%N)"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for name in local swarm; do
    repo "app-$name" "$name"
    (cd "$WORK/repos/app-$name" && git push -q deploy main 2>"$WORK/push.log") || die "the first push on $name failed: $(tail -5 "$WORK/push.log")"
    berth_ssh "$name" domains:add "app-$name" "app-$name.bench.test"
done

progress "1. push → served, $RUNS redeploys each, alternating"
: >"$WORK/t-local"; : >"$WORK/t-swarm"
for n in $(seq 1 "$RUNS"); do
    push_served local app-local "$n" >>"$WORK/t-local"
    push_served swarm app-swarm "$n" >>"$WORK/t-swarm"
done
LOCAL=$(median <"$WORK/t-local"); SWARM=$(median <"$WORK/t-swarm")

progress "2. web=3 on three servers under wrk, $REDEPLOYS redeploys each run"
berth_ssh swarm ps:scale app-swarm web=3
under_load() { # LABEL FIRST-VERSION [wrk args…]
    local label=$1 first=$2
    shift 2
    wrk -t2 -c16 -d600s --latency "$@" -H "Host: app-swarm.bench.test" "http://127.0.0.1:$swarm_HTTP/" >"$WORK/wrk-$label" 2>&1 &
    local wrk=$!
    sleep 2
    for n in $(seq "$first" $((first + REDEPLOYS - 1))); do push_served swarm app-swarm "$n" >/dev/null; done
    sleep 2
    kill -INT "$wrk" 2>/dev/null || true
    wait "$wrk" 2>/dev/null || true
    local non2xx errors p50 p99 total
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-$label"); non2xx=${non2xx:-0}
    errors=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "$WORK/wrk-$label"); errors=${errors:-0}
    total=$(awk '/requests in/ {print $1}' "$WORK/wrk-$label")
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk-$label"); p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$label")
    printf '| %s | %s | %s | %s | %s |\n' "$label" "${total:-?}" "$((non2xx + errors))" "${p50:-?}" "${p99:-?}" >>"$WORK/table2"
}
: >"$WORK/table2"
under_load keep-alive $((RUNS + 1))
under_load new-connection $((RUNS + REDEPLOYS + 1)) -H "Connection: close"

progress "3. the third server lost under load"
lost_server() {
    wrk -t2 -c16 -d600s --latency -H "Host: app-swarm.bench.test" "http://127.0.0.1:$swarm_HTTP/" >"$WORK/wrk-lost" 2>&1 &
    local wrk=$! start left="" back=""
    sleep 2
    start=$(date +%s.%N)
    ip -n berthlab-lan link set node3 down
    for _ in $(seq 1 600); do
        if [ -z "$left" ] && ! grep '^app-swarm ' "$WORK/swarm/nginx/peers" | grep -q ' 10\.231\.0\.13:'; then
            left=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
        fi
        if [ -n "$left" ] && [ "$(docker -H "$BERTHLAB_NODE1" service ps -q --filter desired-state=running --filter node=berthlab-node1 --filter node=berthlab-node2 "$(docker -H "$BERTHLAB_NODE1" service ls -q --filter label=berth.app=app-swarm | head -1)" 2>/dev/null | wc -l)" -ge 3 ]; then
            back=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
            break
        fi
        sleep 0.1
    done
    sleep 3
    kill -INT "$wrk" 2>/dev/null || true
    wait "$wrk" 2>/dev/null || true
    local non2xx errors total p99
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-lost"); non2xx=${non2xx:-0}
    errors=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "$WORK/wrk-lost"); errors=${errors:-0}
    total=$(awk '/requests in/ {print $1}' "$WORK/wrk-lost"); p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-lost")
    printf '| %s | %s | %s | %s | %s |\n' "${left:-not within 60 s}" "${back:-not within 60 s}" "${total:-?}" "$((non2xx + errors))" "${p99:-?}" >"$WORK/table3"
}
lost_server

printf '\n| push → served (median of %s) | seconds |\n|---|---|\n' "$RUNS"
printf '| docker-local | %s |\n| swarm (3 servers, registry) | %s |\n' "$LOCAL" "$SWARM"
printf '| ratio swarm / docker-local | %s |\n' "$(python3 -c "print(f'{$SWARM / $LOCAL:.2f}×')")"
printf '\n| web=3 on 3 servers, %s redeploys | requests | failed | p50 | p99 |\n|---|---|---|---|---|\n' "$REDEPLOYS"
cat "$WORK/table2"
printf '\n| a server lost under load | routed away after (s) | its task elsewhere after (s) | requests | failed | p99 |\n|---|---|---|---|---|---|\n'
sed 's/^| /| keep-alive, web=3 | /' "$WORK/table3"
printf '\nload at start: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

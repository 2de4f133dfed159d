#!/usr/bin/env bash
# Wildcard certificates over DNS-01, against real parts on loopback: Debian's BIND9 serving
# the zone bench.test (TSIG-signed RFC 2136 updates) and pebble resolving through it.
#  1. `letsencrypt:wildcard bench.test` until every covered app (3) answers https with it,
#     median of RUNS (each run removes the apps' certificates first, so every run orders,
#     validates DNS-01 through BIND, and installs).
#  2. A new preview under `*.APP.bench.test`: from `git push` of a new branch, when http
#     answers and when https answers (the extra is what https costs a preview), RUNS times.
# Usage: scripts/bench-wildcard.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
RUNS=${1:-5}
ZONE=bench.test

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static python3 pebble bind9 bind9-dnsutils openssl curl
ensure_docker
bench_berth

bench_pebble_ca
export SSL_CERT_FILE=$WORK_CA/ca.pem
bench_daemon
unset SSL_CERT_FILE
bench_bind "$ZONE"
bench_pebble "$BIND_PORT"
bench_base_image
B() { "$BERTH" --root "$ROOT" "$@"; }
B domains:set-global "$ZONE" >/dev/null
B letsencrypt:set --global email bench@example.com >/dev/null
B letsencrypt:set --global server "$PEBBLE_DIR" >/dev/null
B letsencrypt:set --global dns-provider rfc2136 >/dev/null
B letsencrypt:set --global dns-rfc2136-server "127.0.0.1:$BIND_PORT" >/dev/null
B letsencrypt:set --global dns-rfc2136-key-name "$BIND_KEY" >/dev/null
B letsencrypt:set --global dns-rfc2136-key-secret "$BIND_SECRET" >/dev/null

APPS="one two three"
for app in $APPS; do
    bench_app_repo "$app"
    printf 'FROM berth-test/busybox\nRUN mkdir /www && echo %s > /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n' "$app" >Dockerfile
    git add . && git commit -qm v1
    git push -q deploy main 2>"$WORK/push-$app.log" || { cat "$WORK/push-$app.log"; die "the push of $app failed"; }
done

# https answers for HOST with pebble's chain.
https_ok() {
    curl -sf --max-time 2 --cacert "$PEBBLE_ROOT" --resolve "$1:$HTTPS_PORT:127.0.0.1" "https://$1:$HTTPS_PORT/" >/dev/null
}

: >"$WORK/wildcard"
for i in $(seq 1 "$RUNS"); do
    for app in $APPS; do B certs:remove "$app" >/dev/null 2>&1 || true; done
    start=$(date +%s.%N)
    B letsencrypt:wildcard "$ZONE" >"$WORK/wildcard.log" 2>&1 || { cat "$WORK/wildcard.log"; die "letsencrypt:wildcard failed"; }
    for app in $APPS; do until https_ok "$app.$ZONE"; do sleep 0.01; done; done
    end=$(date +%s.%N)
    echo "$start $end" >>"$WORK/wildcard"
done

B previews:enable one >"$WORK/previews.log" 2>&1 || { cat "$WORK/previews.log"; die "previews:enable failed"; }
cd "$WORK/one"
: >"$WORK/preview"
for i in $(seq 1 "$RUNS"); do
    branch=feature$i
    git checkout -q -b "$branch" main
    echo "$branch" >note && git add note && git commit -qm "$branch"
    host=$branch.one.$ZONE
    start=$(date +%s.%N)
    git push -q deploy "$branch" 2>"$WORK/push-$branch.log" &
    pushed=$!
    http="" tls=""
    while [ -z "$http" ] || [ -z "$tls" ]; do
        [ -z "$http" ] && curl -sf --max-time 2 -H "Host: $host" "http://127.0.0.1:$HTTP_PORT/" >/dev/null && http=$(date +%s.%N)
        [ -z "$tls" ] && https_ok "$host" && tls=$(date +%s.%N)
        sleep 0.01
    done
    wait "$pushed" || { cat "$WORK/push-$branch.log"; die "the push of $branch failed"; }
    echo "$start $http $tls" >>"$WORK/preview"
done

python3 - "$WORK/wildcard" "$WORK/preview" <<'PY'
import statistics, sys
runs = [e - s for s, e in (map(float, l.split()) for l in open(sys.argv[1]) if l.strip())]
print(f"letsencrypt:wildcard (DNS-01 through BIND, pebble) until 3 apps answer https, {len(runs)} runs")
print(f"| {'':<28} | {'seconds':>8} |")
print(f"|{'-'*30}|{'-'*10}|")
print(f"| {'median':<28} | {statistics.median(runs):>8.2f} |")
print(f"| {'max':<28} | {max(runs):>8.2f} |")
print()
rows = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
print(f"a new preview under *.one.bench.test, from git push, {len(rows)} runs")
print(f"| {'':<28} | {'http':>8} | {'https':>8} | {'extra':>8} |")
print(f"|{'-'*30}|{'-'*10}|{'-'*10}|{'-'*10}|")
http = [h - s for s, h, t in rows]
tls = [t - s for s, h, t in rows]
extra = [max(0.0, t - h) for s, h, t in rows]
print(f"| {'median (s)':<28} | {statistics.median(http):>8.2f} | {statistics.median(tls):>8.2f} | {statistics.median(extra):>8.2f} |")
print(f"| {'max (s)':<28} | {max(http):>8.2f} | {max(tls):>8.2f} | {max(extra):>8.2f} |")
PY

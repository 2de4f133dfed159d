#!/usr/bin/env bash
# Crash safety, measured: ROUNDS pushes into a daemon that SIGKILLs itself at a random point
# of the deploy (BERTH_CRASHPOINT: built, checks, release-saved, peers-written, routed,
# retire), each followed by a restart without the crash point. Per round:
#   - whether the push landed (git moved the branch) or the previous release serves again;
#   - two probers (the app and a second app on the same daemon) GET through berth's nginx
#     every 100 ms, a new connection each, from the push until the round's checks are over:
#     the longest run of failed probes (not a 200 with the app's own text) and the longest
#     time without one;
#   - the time from the restart until the active release, the branch head and what nginx
#     serves agree (given up after 60 s);
#   - whether containers of other releases or images no kept release uses are still there
#     30 s after that, and whether the next push (no crash point) deploys and serves.
# "rolled back": the push did not land and the release before it serves again (for crashes
# before anything served, nothing new was ever routed).
# Old containers retire at once (wait-to-retire 0), so a crash at `retire` races the push's
# own ending: both outcomes are counted, not assumed. The table groups rounds by crash point.
# Usage: scripts/bench-crash.sh [ROUNDS]   (default 20)
#        BERTH=target/debug/berth scripts/bench-crash.sh …   (that binary, no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ROUNDS=${1:-20}
POINTS=(built checks release-saved peers-written routed retire)

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static curl python3
ensure_docker
bench_berth

bench_daemon
bench_base_image
export BERTH ROOT WORK HTTP_PORT

# The daemon again on the same root and ports, with BERTH_CRASHPOINT=$1 when given. Disowned:
# the shell then reaps it without a "Killed" line when it kills itself.
start_daemon() {
    rm -f "$ROOT/ssh-address"
    if [ -n "${1:-}" ]; then
        BERTH_CRASHPOINT=$1 "$BERTH" --root "$ROOT" daemon --ssh-listen 127.0.0.1:0 --http-listen "127.0.0.1:$HTTP_PORT" --https-listen "127.0.0.1:$HTTPS_PORT" --api-listen 127.0.0.1:0 >>"$WORK/berth.log" 2>&1 &
    else
        "$BERTH" --root "$ROOT" daemon --ssh-listen 127.0.0.1:0 --http-listen "127.0.0.1:$HTTP_PORT" --https-listen "127.0.0.1:$HTTPS_PORT" --api-listen 127.0.0.1:0 >>"$WORK/berth.log" 2>&1 &
    fi
    BERTH_PID=$!
    disown "$BERTH_PID"
    for _ in $(seq 1 200); do [ -s "$ROOT/ssh-address" ] && break; sleep 0.05; done
    [ -s "$ROOT/ssh-address" ] || die "the berth daemon did not start: $(tail -n 20 "$WORK/berth.log")"
    SSH_PORT=$(sed 's/.*://' "$ROOT/ssh-address")
    for app in crashbench crashother; do
        git -C "$WORK/$app" remote set-url deploy "ssh://berth@127.0.0.1:$SSH_PORT/$app"
    done
}

# True once the daemon process has ended (a zombie counts).
daemon_dead() {
    local state
    state=$(awk '{print $3}' "/proc/$BERTH_PID/stat" 2>/dev/null || true)
    [ -z "$state" ] || [ "$state" = Z ]
}

# Waits up to SECONDS for the daemon to end; false if it still runs.
await_daemon() {
    local tries=$(($1 * 10))
    for _ in $(seq 1 "$tries"); do daemon_dead && break; sleep 0.1; done
    daemon_dead || return 1
    wait "$BERTH_PID" 2>/dev/null || true
    BERTH_PID=""
}

# SIGTERM and wait: the graceful stop.
stop_daemon() {
    kill -TERM "$BERTH_PID"
    await_daemon 120 || die "the daemon did not stop within 120 s of SIGTERM"
}

# Writes a Dockerfile serving TEXT, commits it, and records which commit serves what.
commit_version() { # APP TEXT
    (
        cd "$WORK/$1"
        printf 'FROM berth-test/busybox\nRUN mkdir /www && echo %s > /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n' "'$2'" >Dockerfile
        git add -A && git commit -qm "$2"
        echo "$(git rev-parse HEAD) $2" >>"$WORK/texts-$1"
    )
}

push() { # APP: git push with a time limit; its exit code
    (cd "$WORK/$1" && timeout 300 git push deploy main >>"$WORK/push.log" 2>&1)
}

# GETs APP's domain every 100 ms until killed: "seconds status body" lines in FILE.
probe() { # APP FILE
    local out
    while :; do
        out=$(curl -s -m 2 -H "Host: $1.example.com" -w '\n%{http_code}' "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null || true)
        printf '%s %s %s\n' "$(date +%s.%N)" "${out##*$'\n'}" "$(printf '%s' "${out%$'\n'*}" | head -n 1)" >>"$2"
        sleep 0.1
    done
}

cat >"$WORK/check.py" <<'PY'
# agree APP | leftovers APP KEEP | probes FILE APP | table RESULTS
import http.client, json, os, statistics, subprocess, sys

root, berth, work, port = os.environ["ROOT"], os.environ["BERTH"], os.environ["WORK"], int(os.environ["HTTP_PORT"])

def run(*args):
    return subprocess.run(args, capture_output=True, text=True)

def get(app):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/", headers={"Host": f"{app}.example.com", "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace").strip()
    except OSError as e:
        return 0, str(e)

def releases(app):
    return json.loads(run(berth, "--root", root, "releases", app, "--format", "json").stdout or "[]")

def agree(app):
    head = run("git", "--git-dir", f"{root}/apps/{app}/repo.git", "rev-parse", "-q", "--verify", "refs/heads/main").stdout.strip()
    texts = dict(line.rstrip("\n").split(" ", 1) for line in open(f"{work}/texts-{app}"))
    active = [r for r in releases(app) if r["status"] == "active"]
    served = get(app)
    if len(active) == 1 and active[0]["git_sha"] == head and served == (200, texts.get(head)):
        print(texts[head])
        return 0
    print(f"active {[(r['version'], r['git_sha'][:7]) for r in active]}, branch {head[:7]}, served {served}")
    return 1

def leftovers(app, keep):
    rels = releases(app)
    active = [r for r in rels if r["status"] == "active"]
    if len(active) != 1:
        print(f"{len(active)} active releases")
        return 1
    kept = []
    for r in rels:  # newest first
        if (r["status"] == "active" or (r["status"] == "superseded" and len(kept) < max(keep, 1))) and r["image_tag"] not in kept:
            kept.append(r["image_tag"])
    # Its containers but the holders of network namespaces (web slots', builds').
    ps = run("docker", "ps", "-a", "--filter", f"label=berth.root={root}", "--filter", f"label=berth.app={app}", "--format", '{{.Names}}|{{.Label "berth.release"}}|{{.Label "berth.holder"}}{{.Label "berth.build-holder"}}').stdout.split("\n")
    stray = [line.split("|")[0] for line in ps if line.count("|") == 2 and not line.split("|")[2] and line.split("|")[1] != str(active[0]["version"])]
    tags = [t for t in run("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"berth/{app}").stdout.split() if t not in kept]
    dangling = run("docker", "images", "-q", "-f", "dangling=true", "-f", f"label=berth.app={app}", "-f", f"label=berth.root={root}").stdout.split()
    if stray or tags or dangling:
        print(f"containers {stray}, images {tags}, dangling {dangling}")
        return 1
    return 0

def probes(path, app):
    rows = []
    for line in open(path):
        parts = line.rstrip("\n").split(" ", 2)
        if len(parts) >= 2:
            rows.append((float(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
    in_a_row = worst = 0
    since, outage = None, 0.0
    for at, status, body in rows:
        good = status == "200" and body.startswith(f"{app} v") and body[len(app) + 2:].isdigit()
        if good:
            if since is not None:
                outage = max(outage, at - since)
            since, in_a_row = None, 0
        else:
            since = at if since is None else since
            in_a_row += 1
            worst = max(worst, in_a_row)
    if since is not None and rows:
        outage = max(outage, rows[-1][0] - since)
    print(worst, f"{outage:.2f}", len(rows))
    return 0

def table(path):
    # point reached landed agreed secs maxfail outage other_maxfail other_outage leftovers next_ok
    rounds = [line.split() for line in open(path) if line.strip()]
    points = ["built", "checks", "release-saved", "peers-written", "routed", "retire"]
    cols = ["crash point", "rounds", "not reached", "push landed", "rolled back", "never agreed", "failed probes in a row (max)", "longest outage s", "other app: in a row", "time to agree s (median/max)", "leftovers after 30 s", "next push failed"]
    lines = []
    for p in points:
        rs = [r for r in rounds if r[0] == p]
        if not rs:
            continue
        reached = [r for r in rs if r[1] == "1"]
        agreed = [r for r in reached if r[3] == "1"]
        secs = [float(r[4]) for r in agreed]
        time = f"{statistics.median(secs):.2f}/{max(secs):.2f}" if secs else "-"
        cells = [
            p, len(rs), len(rs) - len(reached),
            sum(r[2] == "1" for r in reached),
            sum(r[2] == "0" and r[3] == "1" for r in reached),
            len(reached) - len(agreed),
            max((int(r[5]) for r in reached), default=0),
            f"{max((float(r[6]) for r in reached), default=0):.2f}",
            max((int(r[7]) for r in reached), default=0),
            time,
            sum(r[9] == "1" for r in reached),
            sum(r[10] == "0" for r in reached),
        ]
        lines.append([str(c) for c in cells])
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(cols)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) + " |")
    print("goal: not reached 0, never agreed 0, at most 1 failed probe in a row, leftovers 0, next push failed 0")
    return 0

command = sys.argv[1]
sys.exit({"agree": lambda: agree(sys.argv[2]), "leftovers": lambda: leftovers(sys.argv[2], int(sys.argv[3])),
          "probes": lambda: probes(sys.argv[2], sys.argv[3]), "table": lambda: table(sys.argv[2])}[command]())
PY
check() { python3 "$WORK/check.py" "$@"; }

# Images are the engine's: what an earlier (interrupted) run left under these app names
# would be counted as this run's leftovers.
for app in crashbench crashother; do
    docker images -q "berth/$app" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    docker images -q -f "label=berth.app=$app" | xargs -r docker rmi -f >/dev/null 2>&1 || true
done

# Two apps, each served at APP.example.com, old containers retired at once, 2 images kept.
for app in crashbench crashother; do
    "$BERTH" --root "$ROOT" apps:create "$app" >/dev/null
    "$BERTH" --root "$ROOT" domains:add "$app" "$app.example.com" >/dev/null
    "$BERTH" --root "$ROOT" checks:set "$app" wait-to-retire 0 >/dev/null
    "$BERTH" --root "$ROOT" releases:set "$app" keep 2 >/dev/null
    (bench_app_repo "$app")
    : >"$WORK/texts-$app"
    commit_version "$app" "$app v1"
    push "$app" || { cat "$WORK/push.log"; die "the first push of $app failed"; }
done
N=1

: >"$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
    point=${POINTS[RANDOM % ${#POINTS[@]}]}
    stop_daemon
    log_start=$(($(wc -l <"$WORK/berth.log") + 1))
    start_daemon "$point"
    before=$(git --git-dir "$ROOT/apps/crashbench/repo.git" rev-parse refs/heads/main)
    N=$((N + 1))
    commit_version crashbench "crashbench v$N"
    pushed=$(git -C "$WORK/crashbench" rev-parse HEAD)
    : >"$WORK/probe-app"
    : >"$WORK/probe-other"
    probe crashbench "$WORK/probe-app" &
    PROBE_APP=$!
    probe crashother "$WORK/probe-other" &
    PROBE_OTHER=$!
    BENCH_PIDS="${BENCH_PIDS:-} $PROBE_APP $PROBE_OTHER"
    push crashbench || true

    # Reached: the daemon ended by itself and says it was the crash point (not a panic).
    reached=1
    if ! await_daemon 30; then
        reached=0
        stop_daemon
    fi
    tail -n +"$log_start" "$WORK/berth.log" | grep -q "crash point $point" || reached=0
    head=$(git --git-dir "$ROOT/apps/crashbench/repo.git" rev-parse refs/heads/main)
    landed=0
    [ "$head" = "$pushed" ] && landed=1
    [ "$head" = "$pushed" ] || [ "$head" = "$before" ] || die "round $round: the branch is at $head, neither $before nor $pushed"

    restarted=$(date +%s.%N)
    start_daemon
    agreed=0
    for _ in $(seq 1 300); do
        if check agree crashbench >"$WORK/agree.log"; then agreed=1; break; fi
        sleep 0.2
    done
    secs=$(python3 -c "import time; print(f'{time.time() - $restarted:.2f}')")
    leftovers=1
    for _ in $(seq 1 150); do
        if check leftovers crashbench 2 >"$WORK/leftovers.log"; then leftovers=0; break; fi
        sleep 0.2
    done
    kill "$PROBE_APP" "$PROBE_OTHER" 2>/dev/null || true
    wait "$PROBE_APP" "$PROBE_OTHER" 2>/dev/null || true
    read -r maxfail outage _ < <(check probes "$WORK/probe-app" crashbench)
    read -r other_maxfail other_outage _ < <(check probes "$WORK/probe-other" crashother)

    N=$((N + 1))
    commit_version crashbench "crashbench v$N"
    next_ok=0
    if push crashbench && check agree crashbench >/dev/null; then next_ok=1; fi
    for _ in $(seq 1 150); do check leftovers crashbench 2 >/dev/null && break; sleep 0.2; done

    echo "$point $reached $landed $agreed $secs $maxfail $outage $other_maxfail $other_outage $leftovers $next_ok" >>"$WORK/results"
    printf -- '-----> round %d/%d: crash at %s: %s, %s in %ss; %s failed probes in a row; next push %s\n' "$round" "$ROUNDS" "$point" \
        "$([ "$reached" = 1 ] && { [ "$landed" = 1 ] && echo "push landed" || echo "push rejected"; } || echo "NOT REACHED")" \
        "$([ "$agreed" = 1 ] && echo agreed || echo "NEVER AGREED ($(cat "$WORK/agree.log"))")" "$secs" "$maxfail" \
        "$([ "$next_ok" = 1 ] && echo ok || echo FAILED)"
    [ "$leftovers" = 0 ] || echo "       leftovers: $(cat "$WORK/leftovers.log")"
done

echo
echo "Crash safety: $ROUNDS pushes, each into a daemon killed at a random crash point, then restarted"
check table "$WORK/results"

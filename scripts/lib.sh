# Shared by berth's scripts: package installs and the Docker engine. Sourced, not run.
# shellcheck shell=bash

log() { printf -- '-----> %s\n' "$*"; }
die() { printf ' !     %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "run this as root (sudo $0)"
}

# apt-get install what is missing; `apt-get update` once, and only when something is missing.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "Installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# True when process $1 runs. A zombie (it exited, and no init reaps it: a container started
# without --init) has stopped: `kill -0` alone would call it alive forever.
pid_alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

have_systemd() {
    [ -d /run/systemd/system ]
}

# A Rust toolchain new enough for russh (1.89+), with clippy: the one on PATH, ~/.cargo's,
# or rustup's (whose minimal profile has no clippy: the component is added).
ensure_rust() {
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v cargo >/dev/null 2>&1; then
        log "Installing Rust with rustup"
        apt_install curl ca-certificates
        # rustup-init itself, run from $HOME: sh.rustup.rs runs it from /tmp, which a hardened
        # machine mounts noexec.
        local init=$HOME/.rustup-init
        curl -sSf -o "$init" "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init" && chmod +x "$init" \
            && "$init" -y --profile minimal --component clippy >/dev/null \
            || die "cannot install Rust: install rustup (https://rustup.rs) and run this again"
        rm -f "$init"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    local version
    version=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.89.0\n' "$version" | sort -V | head -n1)" != "1.89.0" ]; then
        die "Rust $version is too old: berth needs 1.89 or newer (rustup update stable)"
    fi
    if ! cargo clippy --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            log "Adding clippy to the Rust toolchain"
            rustup component add clippy >/dev/null 2>&1 || die "cannot add clippy: rustup component add clippy"
        else
            die "cargo clippy is missing and there is no rustup to add it: install clippy for Rust $version"
        fi
    fi
}

# cargo-fuzz (libFuzzer for Rust), for scripts/fuzz.sh.
ensure_cargo_fuzz() {
    command -v cargo-fuzz >/dev/null 2>&1 && return 0
    log "Installing cargo-fuzz"
    # Built under target/, not /tmp: its build scripts must run, and /tmp may be noexec.
    CARGO_TARGET_DIR="$PWD/target/cargo-install" cargo install --locked --quiet cargo-fuzz || die "cannot install cargo-fuzz (cargo install cargo-fuzz)"
}

# Starts the Docker engine if it does not answer: systemd where it runs, dockerd otherwise.
ensure_docker() {
    docker info >/dev/null 2>&1 && return 0
    if have_systemd; then
        systemctl enable --now docker >/dev/null 2>&1 || true
    fi
    if ! docker info >/dev/null 2>&1; then
        log "Starting dockerd"
        # A pid file left by an engine that died with its machine (no systemd to clean it
        # up) stops the next one from starting.
        local pidfile
        for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
            if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
                rm -f "$pidfile"
            fi
        done
        nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "the Docker engine did not start; see /var/log/dockerd.log"
}

# For benchmarks: the release build of berth, as $BERTH.
bench_build_berth() {
    ensure_rust
    cargo build --release --locked --quiet
    BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
}

# For benchmarks: $BERTH when given (an executable, made absolute: the scripts change
# directory), else the release build.
bench_berth() {
    if [ -n "${BERTH:-}" ]; then
        [ -x "$BERTH" ] || die "BERTH=$BERTH is not an executable file"
        BERTH=$(realpath "$BERTH")
    else
        bench_build_berth
    fi
}

# For benchmarks: a new git repository in $WORK/APP (the current directory afterwards)
# whose remote `deploy` is app APP on the bench daemon.
bench_app_repo() {
    mkdir -p "$WORK/$1"
    cd "$WORK/$1"
    git init -q -b main
    git config user.email bench@example.com
    git config user.name bench
    git remote add deploy "ssh://berth@127.0.0.1:$SSH_PORT/$1"
}

# A free loopback port below the ephemeral range, so a later bind(0) cannot take it.
free_port() {
    python3 -c '
import random, socket
while True:
    p = random.randrange(20000, 32000)
    try:
        socket.socket().bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}

# For benchmarks: a CA of our own for pebble's listener, made before the daemon starts so the
# daemon can trust it (export SSL_CERT_FILE=$WORK_CA/ca.pem). Sets WORK_CA.
bench_pebble_ca() {
    WORK_CA=$(mktemp -d)
    (
        cd "$WORK_CA"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout key.pem -out req.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext
        openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out cert.pem 2>/dev/null
    )
}

# For benchmarks: Debian's pebble (a real ACME server) validating HTTP-01 on $HTTP_PORT, with
# pebble-challtestsrv as its DNS (every name is 127.0.0.1), or the DNS server on port
# DNS_PORT when given (a BIND of bench_bind's; then every order validates anew). Needs WORK,
# WORK_CA, HTTP_PORT. Sets PEBBLE_DIR (the directory URL) and PEBBLE_ROOT (the issuing root,
# for curl --cacert).
bench_pebble() {
    local acme mgmt dns reuse=50
    acme=$(free_port); mgmt=$(free_port); dns=${1:-}
    if [ -z "$dns" ]; then
        dns=$(free_port)
        pebble-challtestsrv -dns01 "127.0.0.1:$dns" -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$(free_port)" -defaultIPv6 "" >"$WORK/challtestsrv.log" 2>&1 &
        BENCH_PIDS="${BENCH_PIDS:-} $!"
    else
        reuse=0
    fi
    cat >"$WORK/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$acme", "managementListenAddress": "127.0.0.1:$mgmt",
  "certificate": "$WORK_CA/cert.pem", "privateKey": "$WORK_CA/key.pem", "httpPort": $HTTP_PORT,
  "tlsPort": $(free_port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=$reuse pebble -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$dns" >"$WORK/pebble.log" 2>&1 &
    BENCH_PIDS="$BENCH_PIDS $!"
    PEBBLE_DIR="https://localhost:$acme/dir"
    for _ in $(seq 1 100); do curl -sf --cacert "$WORK_CA/ca.pem" "$PEBBLE_DIR" >/dev/null && break; sleep 0.1; done
    PEBBLE_ROOT=$WORK/pebble-root.pem
    curl -sfk "https://127.0.0.1:$mgmt/roots/0" >"$PEBBLE_ROOT" || die "pebble did not start: $(cat "$WORK/pebble.log")"
}

# For benchmarks: Debian's BIND9 serving the zone $1 (every name 127.0.0.1) on a free
# loopback port, updatable with a TSIG key. Needs WORK. Sets BIND_PORT, BIND_KEY (its name)
# and BIND_SECRET.
bench_bind() {
    local zone=$1 dir=$WORK/bind
    mkdir -p "$dir"
    BIND_PORT=$(free_port)
    BIND_KEY=bench-key
    BIND_SECRET=$(head -c 32 /dev/urandom | base64)
    cat >"$dir/named.conf" <<CONF
options { directory "$dir"; listen-on port $BIND_PORT { 127.0.0.1; }; listen-on-v6 { none; }; pid-file "$dir/named.pid"; recursion no; dnssec-validation no; notify no; };
controls { };
key "$BIND_KEY" { algorithm hmac-sha256; secret "$BIND_SECRET"; };
zone "$zone" { type primary; file "$dir/$zone.zone"; allow-update { key "$BIND_KEY"; }; };
CONF
    printf '$TTL 60\n@ IN SOA ns.%s. admin.%s. 1 60 60 600 60\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n' "$zone" "$zone" "$zone" >"$dir/$zone.zone"
    named -g -c "$dir/named.conf" >/dev/null 2>"$dir/named.log" &
    BENCH_PIDS="${BENCH_PIDS:-} $!"
    for _ in $(seq 1 100); do dig +short +time=1 +tries=1 -p "$BIND_PORT" @127.0.0.1 SOA "$zone" | grep -q . && return 0; sleep 0.1; done
    die "named did not start: $(cat "$dir/named.log")"
}

# For benchmarks: the berth binary $BERTH as a daemon on a new temporary root, with its own
# nginx on free loopback ports (HTTP_PORT, HTTPS_PORT) and a client key ($WORK/key) added as admin. Sets WORK,
# ROOT, HTTP_PORT, SSH_PORT, BERTH_PID and GIT_SSH_COMMAND, and stops it all on exit.
bench_daemon() {
    WORK=$(mktemp -d)
    ROOT=$WORK/root
    BERTH_PID=""
    trap bench_cleanup EXIT
    HTTP_PORT=$(free_port)
    HTTPS_PORT=$(free_port)
    SSH_PORT=0
    bench_daemon_start
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
    "$BERTH" --root "$ROOT" ssh-keys:add bench <"$WORK/key.pub" >/dev/null
    export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -F /dev/null"
}

# For benchmarks: starts bench_daemon's daemon (again, after bench_daemon_stop: same root,
# listeners and SSH port). Sets BERTH_PID and SSH_PORT.
bench_daemon_start() {
    rm -f "$ROOT/ssh-address"
    "$BERTH" --root "$ROOT" daemon --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT" --https-listen "127.0.0.1:$HTTPS_PORT" --api-listen 127.0.0.1:0 >>"$WORK/berth.log" 2>&1 &
    BERTH_PID=$!
    for _ in $(seq 1 200); do [ -s "$ROOT/ssh-address" ] && break; sleep 0.05; done
    [ -s "$ROOT/ssh-address" ] || die "the berth daemon did not start: $(cat "$WORK/berth.log")"
    SSH_PORT=$(sed 's/.*://' "$ROOT/ssh-address")
}

# For benchmarks: stops bench_daemon's daemon (nginx and the apps go on serving).
bench_daemon_stop() {
    kill "$BERTH_PID"
    while kill -0 "$BERTH_PID" 2>/dev/null; do sleep 0.05; done
    BERTH_PID=""
}

# The test base image berth-test/busybox: FROM scratch + Debian's busybox-static (no
# registry is reachable). Needs WORK.
bench_base_image() {
    mkdir -p "$WORK/base"
    cp /bin/busybox "$WORK/base/"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$WORK/base/Dockerfile"
    docker build -q -t berth-test/busybox "$WORK/base" >/dev/null
}

bench_cleanup() {
    [ -n "$BERTH_PID" ] && kill "$BERTH_PID" 2>/dev/null || true
    for pid in ${BENCH_PIDS:-}; do kill "$pid" 2>/dev/null || true; done
    [ -n "${WORK_CA:-}" ] && rm -rf "$WORK_CA"
    [ -f "$ROOT/nginx/nginx.pid" ] && kill "$(cat "$ROOT/nginx/nginx.pid")" 2>/dev/null || true
    docker ps -aq --filter "label=berth.root=$ROOT" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=berth.root=$ROOT" | xargs -r docker network rm >/dev/null 2>&1 || true
    # KEEP=1: the work directory stays (logs, outputs), and says where it is.
    if [ -n "${KEEP:-}" ]; then
        echo "kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

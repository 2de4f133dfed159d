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
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

have_systemd() {
    [ -d /run/systemd/system ]
}

# A Rust toolchain new enough for russh (1.89+): the one on PATH, ~/.cargo's, or rustup's.
ensure_rust() {
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v cargo >/dev/null 2>&1; then
        log "Installing Rust with rustup"
        apt_install curl ca-certificates
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null \
            || die "cannot install Rust: install rustup (https://rustup.rs) and run this again"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    local version
    version=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.89.0\n' "$version" | sort -V | head -n1)" != "1.89.0" ]; then
        die "Rust $version is too old: berth needs 1.89 or newer (rustup update stable)"
    fi
}

# Starts the Docker engine if it does not answer: systemd where it runs, dockerd otherwise.
ensure_docker() {
    docker info >/dev/null 2>&1 && return 0
    if have_systemd; then
        systemctl enable --now docker >/dev/null 2>&1 || true
    fi
    if ! docker info >/dev/null 2>&1; then
        log "Starting dockerd"
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
    BERTH=$PWD/target/release/berth
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

# For benchmarks: the berth binary $BERTH as a daemon on a new temporary root, with its own
# nginx on a free loopback port and a client key ($WORK/key) added as admin. Sets WORK,
# ROOT, HTTP_PORT, SSH_PORT, BERTH_PID and GIT_SSH_COMMAND, and stops it all on exit.
bench_daemon() {
    WORK=$(mktemp -d)
    ROOT=$WORK/root
    BERTH_PID=""
    trap bench_cleanup EXIT
    HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$BERTH" --root "$ROOT" daemon --ssh-listen 127.0.0.1:0 --http-listen "127.0.0.1:$HTTP_PORT" >"$WORK/berth.log" 2>&1 &
    BERTH_PID=$!
    for _ in $(seq 1 100); do [ -s "$ROOT/ssh-address" ] && break; sleep 0.05; done
    [ -s "$ROOT/ssh-address" ] || die "the berth daemon did not start: $(cat "$WORK/berth.log")"
    SSH_PORT=$(sed 's/.*://' "$ROOT/ssh-address")
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
    "$BERTH" --root "$ROOT" ssh-keys:add bench <"$WORK/key.pub" >/dev/null
    export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -F /dev/null"
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
    [ -f "$ROOT/nginx/nginx.pid" ] && kill "$(cat "$ROOT/nginx/nginx.pid")" 2>/dev/null || true
    docker ps -aq --filter "label=berth.root=$ROOT" | xargs -r docker rm -f >/dev/null 2>&1 || true
    rm -rf "$WORK"
}

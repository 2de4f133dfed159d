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

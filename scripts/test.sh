#!/usr/bin/env bash
# Runs berth's whole test suite on a fresh Debian 12 machine as root: installs and starts
# what the tests use (Docker engine, nginx, git, OpenSSH, pebble as the ACME server), then
# lints and tests, then fuzzes the parsers briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client openssh-server busybox-static ca-certificates build-essential pkg-config debootstrap pebble openssl curl iproute2
ensure_docker
ensure_rust

log "cargo clippy"
cargo clippy --locked --all-targets --quiet -- -D warnings
log "cargo test"
cargo test --locked 2>&1
log "cargo test: tests that restart the Docker engine, alone"
cargo test --locked --test integration -- --ignored --test-threads=1 2>&1
log "fuzzing the parsers (10 s each)"
scripts/fuzz.sh 10

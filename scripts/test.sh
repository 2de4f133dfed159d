#!/usr/bin/env bash
# Runs berth's whole test suite on a fresh Debian 12 machine as root: installs and starts
# what the tests use (Docker engine, nginx, git, OpenSSH, pebble as the ACME server, and the
# tools the tests call: python3, curl, procps), then lints and tests, then fuzzes the parsers
# briefly. Every stage runs even when an earlier one fails; the failures are listed at the
# end and the exit status is non-zero when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client openssh-server busybox-static ca-certificates build-essential pkg-config debootstrap pebble bind9 bind9-utils bind9-dnsutils openssl curl iproute2 python3 procps chromium chromium-driver python3-selenium python3-venv docker-registry prometheus rsyslog rsyslog-openssl
ensure_docker
ensure_rust
# schemathesis (PyPI, pinned) checks the API's OpenAPI document against the live daemon.
if [ ! -x target/schemathesis/bin/st ]; then
    log "Installing schemathesis in target/schemathesis"
    rm -rf target/schemathesis
    /usr/bin/python3 -m venv target/schemathesis
    target/schemathesis/bin/pip install -q --disable-pip-version-check schemathesis==4.32.5
fi
# moto (PyPI, pinned) is the S3-compatible server the off-machine backup test uploads to.
if [ ! -x target/moto/bin/moto_server ]; then
    log "Installing moto in target/moto"
    rm -rf target/moto
    /usr/bin/python3 -m venv target/moto
    target/moto/bin/pip install -q --disable-pip-version-check "moto[server]==5.1.18"
fi

# One build of a fresh tree: incremental data would only fill the disk (it doubles target/).
export CARGO_INCREMENTAL=0

failed=()
# Runs one stage; a failure is recorded, not fatal.
stage() {
    local name=$1
    shift
    log "$name"
    local started=$SECONDS
    if "$@"; then
        log "$name: passed in $((SECONDS - started)) s"
    else
        local rc=$?
        printf ' !     %s: failed (exit %s) after %s s\n' "$name" "$rc" "$((SECONDS - started))" >&2
        failed+=("$name")
    fi
}

stage "cargo clippy" cargo clippy --locked --all-targets --quiet -- -D warnings
# --no-fail-fast: a failing unit test does not keep the integration tests from running.
stage "cargo test" cargo test --locked --no-fail-fast
stage "cargo test: tests that restart the Docker engine, alone" \
    cargo test --locked --test integration -- --ignored --test-threads=1
stage "fuzzing the parsers (10 s each)" scripts/fuzz.sh 10

if [ ${#failed[@]} -gt 0 ]; then
    printf ' !     %s stage(s) failed:\n' "${#failed[@]}" >&2
    printf ' !       %s\n' "${failed[@]}" >&2
    exit 1
fi
log "every stage passed"

#!/usr/bin/env bash
# Sets up berth on this machine and starts it. Idempotent: run it again to upgrade.
#   installs Debian's docker.io, nginx, git; starts the Docker engine; builds and installs
#   /usr/local/bin/berth; runs `berth daemon` (a systemd unit where systemd runs, a
#   background process otherwise) with its state in $BERTH_ROOT (default /var/lib/berth).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

BERTH_ROOT=${BERTH_ROOT:-/var/lib/berth}
BIN=/usr/local/bin/berth

apt_install docker.io nginx git openssh-client ca-certificates build-essential pkg-config debootstrap
ensure_docker
ensure_rust

log "Building berth"
cargo build --release --locked --quiet
install -m 0755 target/release/berth "$BIN.new"
mv -f "$BIN.new" "$BIN"

mkdir -p "$BERTH_ROOT"
# berth runs its own nginx (its own config under $BERTH_ROOT/nginx) on port 80. Debian's
# nginx service, freshly installed with only its default site, would hold that port.
if have_systemd && systemctl is-active --quiet nginx; then
    if [ "$(ls /etc/nginx/sites-enabled 2>/dev/null)" = "default" ]; then
        log "Stopping Debian's default nginx service (berth runs its own nginx on port 80)"
        systemctl disable --now nginx >/dev/null 2>&1
    else
        printf ' !     nginx.service serves other sites: move it off port 80 or start berth with --http-listen\n' >&2
    fi
fi
if have_systemd; then
    cat >/etc/systemd/system/berth.service <<UNIT
[Unit]
Description=berth: git push deploys on this server
After=network-online.target docker.service
Wants=docker.service

[Service]
Environment=BERTH_ROOT=$BERTH_ROOT
ExecStart=$BIN daemon
Restart=on-failure
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable berth >/dev/null 2>&1
    systemctl restart berth
else
    # No systemd (containers, CI): stop the daemon we started before, start the new binary.
    if [ -f "$BERTH_ROOT/berth.pid" ] && kill -0 "$(cat "$BERTH_ROOT/berth.pid")" 2>/dev/null; then
        log "Stopping the running daemon"
        pid=$(cat "$BERTH_ROOT/berth.pid")
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    BERTH_ROOT=$BERTH_ROOT nohup "$BIN" daemon >>/var/log/berth.log 2>&1 </dev/null &
fi

for _ in $(seq 1 100); do
    BERTH_ROOT=$BERTH_ROOT "$BIN" version >/dev/null 2>&1 && break
    sleep 0.1
done
BERTH_ROOT=$BERTH_ROOT "$BIN" version >/dev/null 2>&1 || die "berth daemon did not start; see /var/log/berth.log or journalctl -u berth"

# The image buildpack builds run in (a few minutes, once; `stack:build --force` redoes it).
BERTH_ROOT=$BERTH_ROOT "$BIN" stack:build

log "berth $("$BIN" version | awk '{print $2}') is running (SSH on $(cat "$BERTH_ROOT/ssh-address"))"
cat <<NEXT
       Next: add your SSH public key, then use berth from your laptop:
         berth ssh-keys:add me < ~/.ssh/id_ed25519.pub
         ssh -p 2222 berth@this-host apps:create myapp
NEXT

#!/usr/bin/env bash
# Sets up berth on this machine and starts it. Idempotent: run it again to upgrade (the
# daemon restarts; containers and berth's nginx keep serving).
#   installs Debian's docker.io, nginx, git; starts the Docker engine; builds and installs
#   the berth binary; runs `berth daemon` (a systemd unit where systemd runs, a background
#   process otherwise); builds the buildpack stack image; on a first install, sets a default
#   global domain (an upgrade keeps the global domains as they are).
# Prints one line per step; everything the steps print goes to $BERTH_INSTALL_LOG.
#
# Environment (all optional):
#   BERTH_ROOT          state directory                 (/var/lib/berth)
#   BERTH_BIN           where the binary goes           (/usr/local/bin/berth)
#   BERTH_DOMAIN        global domain for new installs  (<this host's IPv4>.sslip.io)
#   BERTH_SSH_LISTEN, BERTH_HTTP_LISTEN, BERTH_HTTPS_LISTEN   ADDR:PORT (0.0.0.0:2222, :80, :443)
#   BERTH_INSTALL_LOG   the install's full log          (/var/log/berth-install.log)
#   BERTH_DAEMON_LOG    the daemon's log without systemd (/var/log/berth.log)
#   BERTH_PREBUILT      use this binary instead of building one (tests)
#   BERTH_NO_SYSTEMD=1  run the daemon in the background even where systemd runs (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

export BERTH_ROOT=${BERTH_ROOT:-/var/lib/berth}
BIN=${BERTH_BIN:-/usr/local/bin/berth}
LOG=${BERTH_INSTALL_LOG:-/var/log/berth-install.log}
DAEMON_LOG=${BERTH_DAEMON_LOG:-/var/log/berth.log}
export PATH="$HOME/.cargo/bin:$PATH"
started_at=$SECONDS
# berth writes berth.toml at the first global setting it is given, the default global domain
# below included: without one, this is a first install (or one that stopped before that step).
first_install=false
[ -e "$BERTH_ROOT/berth.toml" ] || first_install=true

mkdir -p "$(dirname "$LOG")"
printf 'berth install, %s\n' "$(date -u)" >"$LOG"

# One line per step: "-----> What … done (Ns)". The step's own output goes to the log; on
# failure its last lines are shown and the install stops.
step() {
    local what=$1 start=$SECONDS rc=0
    shift
    printf -- '-----> %s … ' "$what"
    printf '\n=== %s\n' "$what" >>"$LOG"
    # In the background, so that `set -e` holds inside the step (it would not in an `if`).
    ("$@") >>"$LOG" 2>&1 </dev/null &
    wait $! || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "failed"
        tail -n 15 "$LOG" | sed 's/^/       /' >&2
        die "$what failed (exit $rc); the whole log is $LOG"
    fi
    echo "done ($((SECONDS - start))s)"
}

use_systemd() {
    have_systemd && [ "${BERTH_NO_SYSTEMD:-}" != 1 ]
}

install_binary() {
    if [ -n "${BERTH_PREBUILT:-}" ]; then
        install -m 0755 "$BERTH_PREBUILT" "$BIN.new"
    else
        ensure_rust
        cargo build --release --locked
        install -m 0755 target/release/berth "$BIN.new"
    fi
    mv -f "$BIN.new" "$BIN"
}

# berth runs its own nginx (its own config under $BERTH_ROOT/nginx) on ports 80 and 443.
# Debian's nginx service, freshly installed with only its default site, would hold them.
free_web_ports() {
    if [ "$(ls /etc/nginx/sites-enabled 2>/dev/null)" = "default" ]; then
        systemctl disable --now nginx
    else
        echo "nginx.service serves other sites: move it off ports 80/443 or set BERTH_HTTP_LISTEN/BERTH_HTTPS_LISTEN" >&2
        return 1
    fi
}

start_daemon() {
    mkdir -p "$BERTH_ROOT"
    rm -f "$BERTH_ROOT/ssh-address"
    if use_systemd; then
        local env_lines="Environment=BERTH_ROOT=$BERTH_ROOT"
        for var in BERTH_SSH_LISTEN BERTH_HTTP_LISTEN BERTH_HTTPS_LISTEN; do
            [ -n "${!var:-}" ] && env_lines+=$'\n'"Environment=$var=${!var}"
        done
        cat >/etc/systemd/system/berth.service <<UNIT
[Unit]
Description=berth: git push deploys on this server
After=network-online.target docker.service
Wants=docker.service

[Service]
$env_lines
ExecStart=$BIN daemon
Restart=on-failure
KillMode=process
# A stop waits for deploys in progress (up to 300 s, see daemon.rs).
TimeoutStopSec=330

[Install]
WantedBy=multi-user.target
UNIT
        systemctl daemon-reload
        systemctl enable berth
        systemctl restart berth
    else
        # No systemd (containers, CI): stop the daemon started before, start the new binary.
        if [ -f "$BERTH_ROOT/berth.pid" ] && pid_alive "$(cat "$BERTH_ROOT/berth.pid")"; then
            local pid
            pid=$(cat "$BERTH_ROOT/berth.pid")
            echo "Stopping the running daemon ($pid)"
            kill -TERM "$pid"
            for _ in $(seq 1 3300); do pid_alive "$pid" || break; sleep 0.1; done
        fi
        nohup "$BIN" daemon >>"$DAEMON_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 100); do
        [ -s "$BERTH_ROOT/ssh-address" ] && "$BIN" version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the berth daemon did not start; see $(use_systemd && echo 'journalctl -u berth' || echo "$DAEMON_LOG")" >&2
    return 1
}

# This host's IPv4 address as the world sees it, as far as this host knows: the source
# address of its default route (behind NAT that is a private one; then set BERTH_DOMAIN).
host_ipv4() {
    ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit }}'
}

# True for an IPv4 address the internet cannot reach: private (RFC 1918), shared (CGNAT),
# loopback or link-local. NAT clouds give a server such an address on its default route.
is_private_ipv4() {
    local a b
    IFS=. read -r a b _ <<<"$1"
    [ "$a" = 10 ] || [ "$a" = 127 ] || { [ "$a" = 172 ] && [ "$b" -ge 16 ] && [ "$b" -le 31 ]; } ||
        { [ "$a" = 192 ] && [ "$b" = 168 ]; } || { [ "$a" = 169 ] && [ "$b" = 254 ]; } ||
        { [ "$a" = 100 ] && [ "$b" -ge 64 ] && [ "$b" -le 127 ]; }
}

step "Installing Debian packages (docker.io, nginx, git, debootstrap…)" \
    apt_install docker.io nginx libnginx-mod-http-lua git openssh-client ca-certificates build-essential pkg-config debootstrap iproute2 curl
step "Starting the Docker engine" ensure_docker
if [ -n "${BERTH_PREBUILT:-}" ]; then
    step "Installing berth from $BERTH_PREBUILT" install_binary
else
    step "Building berth (the first build takes a few minutes)" install_binary
fi
if use_systemd && systemctl is-active --quiet nginx; then
    step "Stopping Debian's nginx service (berth runs its own on ports 80 and 443)" free_web_ports
fi
step "Starting the berth daemon" start_daemon
step "Building the buildpack stack image (first time: a few minutes)" "$BIN" stack:build

# A new install answers at APP.<ip>.sslip.io at once (wildcard DNS, no setup). An upgrade
# leaves the global domains as they are, however many, and none when they were cleared.
ip=$(host_ipv4)
domain=${BERTH_DOMAIN:-${ip:+$ip.sslip.io}}
if $first_install && [ -n "$domain" ]; then
    step "Setting the global domain ($domain)" "$BIN" domains:set-global "$domain"
fi

ssh_address=$(cat "$BERTH_ROOT/ssh-address")
ssh_port=${ssh_address##*:}
host=${ip:-this-host}
fingerprint=$(ssh-keygen -lf "$BERTH_ROOT/keys/host_ed25519.pub" 2>/dev/null | awk '{print $2}')
# berth says what its global domains are (space-separated), rather than its file being read.
globals=$("$BIN" domains:report --global --domains-global-vhosts) || die "berth did not say what its global domains are"
if use_systemd; then daemon_log="journalctl -u berth"; else daemon_log=$DAEMON_LOG; fi
apps=""
for global in $globals; do apps+="${apps:+, }http://APP.$global"; done
[ -n "$apps" ] || apps="no global domain yet: domains:set-global DOMAIN"
ssh_opt=""
[ "$ssh_port" = 22 ] || ssh_opt="-p $ssh_port "
# The local CLI finds its root in BERTH_ROOT (or --root): say so when it is not the default.
berth_cmd=berth
[ "$BIN" = /usr/local/bin/berth ] || berth_cmd=$(printf '%q' "$BIN")
[ "$BERTH_ROOT" = /var/lib/berth ] || berth_cmd="BERTH_ROOT=$(printf '%q' "$BERTH_ROOT") $berth_cmd"

cat <<DONE
=====> berth $("$BIN" version | awk '{print $2}') is running (installed in $((SECONDS - started_at))s)
       SSH:       berth@$host port $ssh_port, host key $fingerprint
       Apps:      $apps
       Logs:      daemon: $daemon_log; nginx: $BERTH_ROOT/nginx/logs; this install: $LOG

=====> Next steps, from your laptop
       1. Let your SSH key in (berth asks no password; the key is read from stdin), from your
          laptop where root logs in over ssh on port 22:
          ssh root@$host $berth_cmd ssh-keys:add me < ~/.ssh/id_ed25519.pub
          or here on the server, with your public key copied over:
          $berth_cmd ssh-keys:add me < id_ed25519.pub
       2. Deploy an app (on first connection, check ssh shows the host key above):
          git remote add deploy ssh://berth@$host:$ssh_port/myapp
          git push deploy main
       3. Check the server at any time:
          ssh ${ssh_opt}berth@$host doctor
DONE

# The address chosen for sslip.io names is one the internet cannot reach (a NAT cloud):
# say so, and what to do, rather than print names that work only on this network.
if [ -n "$ip" ] && is_private_ipv4 "$ip" && [[ " $globals " == *" $ip.sslip.io "* ]]; then
    cat <<NAT

=====> Note: $ip is a private address (this server is behind NAT)
       APP.$ip.sslip.io reaches the apps only from this server's own network. Give berth
       the public name, with this server's public IPv4 or a domain of your own:
          $berth_cmd domains:set-global <public IPv4>.sslip.io
       or install with BERTH_DOMAIN=apps.example.com (a wildcard A record *.apps.example.com).
       From outside, use the public address for ssh and the git remote too, in place of $ip.
NAT
fi

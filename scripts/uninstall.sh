#!/usr/bin/env bash
# Removes berth from this machine: what scripts/install.sh set up, and what berth made since.
#   scripts/uninstall.sh           stops and removes the daemon (systemd unit or background
#                                  process), berth's own nginx, the containers of the apps
#                                  and databases, the apps' images, the stack image, the
#                                  `berth` network, the binary. The state in $BERTH_ROOT (apps,
#                                  repositories, keys, certificates) and the databases' data
#                                  (their Docker volumes) are kept.
#   scripts/uninstall.sh --purge   also deletes $BERTH_ROOT, its ACME challenge directory, the
#                                  databases' volumes and the database images berth built
#                                  (berth/postgres, berth/redis).
# The stack image, the database images and the network serve every berth root on this Docker
# engine: they stay while another root has containers (BERTH_KEEP_SHARED=1 keeps them: tests).
# Honours BERTH_ROOT (default /var/lib/berth) and BERTH_BIN (default /usr/local/bin/berth),
# as install.sh does. Idempotent: what is already gone is skipped.
# Debian's packages stay installed (docker.io, nginx, git and the build tools), and so does
# Debian's nginx service, which berth never uses; the logs /var/log/berth*.log stay too.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

purge=false
for arg in "$@"; do
    case $arg in
        --purge) purge=true ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg': usage: scripts/uninstall.sh [--purge]" ;;
    esac
done
require_root

BERTH_ROOT=${BERTH_ROOT:-/var/lib/berth}
BERTH_BIN=${BERTH_BIN:-/usr/local/bin/berth}
[ "$BERTH_ROOT" = / ] || BERTH_ROOT=${BERTH_ROOT%/}
UNIT=/etc/systemd/system/berth.service

detail() { printf '       %s\n' "$*"; }

# The pid in file $1 if that process runs and its command line contains $2 (a pid file left
# from before a reboot may name some other process now).
live_pid() {
    local pid cmdline
    [ -f "$1" ] || return 1
    pid=$(tr -d '[:space:]' <"$1")
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$2"* ]] || return 1
    echo "$pid"
}

# Sends signal $2 to pid $1 and waits up to $3 seconds for it to exit.
stop_pid() {
    local pid=$1 signal=$2 seconds=$3
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((seconds * 10))); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

# 1. The daemon first, so that it does not start again what the next steps remove.
unit_stopped=false
if have_systemd && [ -f "$UNIT" ]; then
    log "Stopping and removing the systemd unit berth.service"
    unit_stopped=true
    systemctl disable --now berth >/dev/null 2>&1 || true
    rm -f "$UNIT"
    systemctl daemon-reload
    systemctl reset-failed berth >/dev/null 2>&1 || true
elif [ -f "$UNIT" ]; then
    log "Removing $UNIT (systemd does not run here)"
    rm -f "$UNIT"
fi
if pid=$(live_pid "$BERTH_ROOT/berth.pid" berth); then
    log "Stopping the berth daemon (pid $pid)"
    if ! stop_pid "$pid" TERM 10; then
        detail "it did not stop within 10 s: killing it"
        stop_pid "$pid" KILL 5 || die "cannot stop the berth daemon (pid $pid)"
    fi
elif ! $unit_stopped; then
    log "No berth daemon runs for $BERTH_ROOT"
fi

# 2. berth's own nginx (never Debian's nginx service): it outlives the daemon by design.
if pid=$(live_pid "$BERTH_ROOT/nginx/nginx.pid" "$BERTH_ROOT"); then
    log "Stopping berth's nginx (pid $pid)"
    if ! stop_pid "$pid" QUIT 10; then
        detail "it did not finish its requests within 10 s: stopping it at once"
        stop_pid "$pid" TERM 5 || stop_pid "$pid" KILL 5 || die "cannot stop berth's nginx (pid $pid)"
    fi
else
    log "berth's nginx does not run for $BERTH_ROOT"
fi

# 3. Docker: containers labelled with this root (apps' and databases'), the images of this
#    root's apps (berth/APP:vN), the databases' volumes (--purge), then what every root
#    shares: the stack image, the database images (--purge) and the network `berth`.
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    log "The Docker engine does not answer: berth's containers and images are left"
    detail "start it (systemctl start docker, or dockerd) and run this again to remove them"
else
    # A database keeps its data in a named volume, which has no label: it is found through
    # its container, or in the list an uninstall without --purge left in the root.
    volumes_file=$BERTH_ROOT/service-volumes
    mapfile -t volumes < <({
        docker ps -aq --filter "label=berth.root=$BERTH_ROOT" --filter label=berth.service \
            | xargs -r docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{println .Name}}{{end}}{{end}}'
        cat "$volumes_file" 2>/dev/null || true
    } | sed '/^$/d' | sort -u)

    mapfile -t containers < <(docker ps -aq --filter "label=berth.root=$BERTH_ROOT")
    if [ ${#containers[@]} -gt 0 ]; then
        log "Removing ${#containers[@]} container(s) of $BERTH_ROOT"
        docker rm -f -v "${containers[@]}" >/dev/null
    else
        log "No containers of $BERTH_ROOT"
    fi

    if $purge; then
        removed=0
        for volume in "${volumes[@]}"; do
            docker volume inspect "$volume" >/dev/null 2>&1 || continue
            if docker volume rm "$volume" >/dev/null 2>&1; then
                removed=$((removed + 1))
            else
                detail "the volume $volume is in use by another container and stays"
            fi
        done
        log "Removing $removed database volume(s) (their data)"
    elif [ ${#volumes[@]} -gt 0 ]; then
        [ ! -d "$BERTH_ROOT" ] || printf '%s\n' "${volumes[@]}" >"$volumes_file"
        log "The databases' data stays in ${#volumes[@]} Docker volume(s)"
        detail "to delete it too: scripts/uninstall.sh --purge"
    fi

    images=()
    if [ -d "$BERTH_ROOT/apps" ]; then
        for dir in "$BERTH_ROOT"/apps/*/; do
            [ -d "$dir" ] || continue
            app=$(basename "$dir")
            # Only the tags naming an image this root made: its releases' (or its last build's,
            # if no release records it). Another root on the engine may have an app of the
            # same name, whose images have the same tags.
            ids=$(sed -n 's/^image = "\(sha256:[0-9a-f]*\)"$/\1/p' "$dir/releases.toml" 2>/dev/null | sort -u)
            leftover=$(cat "$dir/build-tag" 2>/dev/null || true)
            while read -r id image; do
                if [[ $image =~ :v[0-9]+$ ]] && { grep -qxF "$id" <<<"$ids" || [ "$image" = "$leftover" ]; }; then
                    images+=("$image")
                fi
            done < <(docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' "berth/$app")
        done
    fi
    # Shared by every berth root on this engine (tests, benchmarks): they go only when no
    # other root has containers. The database images are built from the stack image: first.
    others=$(docker ps -aq --filter label=berth.root | wc -l)
    shared=false
    [ "$others" -eq 0 ] && [ "${BERTH_KEEP_SHARED:-}" != 1 ] && shared=true
    if $shared && $purge; then
        for kind in postgres redis; do
            while read -r image; do images+=("$image"); done < <(docker image ls --format '{{.Repository}}:{{.Tag}}' "berth/$kind")
        done
    fi
    if $shared && docker image inspect berth/stack:bookworm >/dev/null 2>&1; then
        images+=(berth/stack:bookworm)
    fi
    log "Removing ${#images[@]} image(s)"
    kept=0
    for image in "${images[@]}"; do
        docker rmi "$image" >/dev/null 2>&1 || kept=$((kept + 1))
    done
    [ "$kept" -eq 0 ] || detail "$kept image(s) are still used by other containers and stay"
    if [ "$others" -ne 0 ]; then
        detail "berth/stack:bookworm and the database images stay: $others container(s) of other berth roots remain"
    elif ! $shared; then
        detail "BERTH_KEEP_SHARED=1: berth/stack:bookworm, the database images and the network stay"
    fi

    # The root's own networks (one per app, and those network:create made).
    networks=$(docker network ls -q --filter "label=berth.root=$BERTH_ROOT")
    if [ -n "$networks" ]; then
        log "Removing $(echo "$networks" | wc -l) network(s) of the apps"
        for network in $networks; do
            docker network rm "$network" >/dev/null 2>&1 || detail "the network $network is still in use and stays"
        done
    fi
    if $shared && docker network inspect berth-build >/dev/null 2>&1; then
        log "Removing the build network berth-build and its firewall rule"
        docker network rm berth-build >/dev/null 2>&1 || detail "cannot remove it; left as it is"
        while iptables -w -D INPUT -i berth-build -j DROP 2>/dev/null; do :; done
    fi
    if $shared && $purge; then
        rm -f /var/lib/berth-service-images.toml
    fi
    if $shared && docker network inspect berth >/dev/null 2>&1; then
        if [ -z "$(docker ps -aq --filter network=berth)" ]; then
            log "Removing the Docker network berth"
            docker network rm berth >/dev/null 2>&1 || detail "cannot remove it; left as it is"
        else
            log "The Docker network berth stays: other containers use it"
        fi
    fi
fi

# 4. The binary.
if [ -e "$BERTH_BIN" ]; then
    log "Removing $BERTH_BIN"
    rm -f "$BERTH_BIN"
else
    log "$BERTH_BIN is already gone"
fi

# 5. The state, only when asked.
if $purge; then
    acme=/run/berth-acme/${BERTH_ROOT//[^A-Za-z0-9]/_}
    if [ -d "$BERTH_ROOT" ]; then
        # Refuse to delete a directory that is not a berth root (BERTH_ROOT=/ or a typo).
        case $BERTH_ROOT in /*) ;; *) die "BERTH_ROOT must be an absolute path, not '$BERTH_ROOT'" ;; esac
        [ "$BERTH_ROOT" != / ] || die "refusing to delete /"
        if [ -n "$(ls -A "$BERTH_ROOT")" ] && ! [ -e "$BERTH_ROOT/berth.toml" ] && ! [ -d "$BERTH_ROOT/keys" ] \
            && ! [ -d "$BERTH_ROOT/apps" ] && ! [ -d "$BERTH_ROOT/nginx" ] && ! [ -e "$BERTH_ROOT/daemon.lock" ]; then
            die "$BERTH_ROOT does not look like a berth root (no berth.toml, keys, apps or nginx): not deleting it"
        fi
        log "Deleting $BERTH_ROOT (apps, git repositories, keys, certificates)"
        rm -rf "$BERTH_ROOT"
    else
        log "$BERTH_ROOT is already gone"
    fi
    rm -rf "$acme"
    rmdir /run/berth-acme 2>/dev/null || true
    log "berth is uninstalled"
else
    log "berth is uninstalled; its state is kept in $BERTH_ROOT"
    detail "to delete it too (apps, git repositories, keys, certificates): scripts/uninstall.sh --purge"
fi
if have_systemd && systemctl list-unit-files nginx.service >/dev/null 2>&1 \
    && [ "$(systemctl is-enabled nginx 2>/dev/null)" = disabled ]; then
    detail "Debian's nginx service is disabled (install.sh stops it for port 80): systemctl enable --now nginx"
fi

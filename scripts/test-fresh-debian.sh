#!/usr/bin/env bash
# Runs the README's test command, scripts/test.sh, on a fresh minimal Debian 12 machine: a
# container of `debootstrap --variant=minbase bookworm` (no registry needed) with a clean
# clone of this repository's HEAD in /root/berth (uncommitted changes are not in it), run as
# root with CI=true. Its output goes to the terminal and to a log file; the exit status is
# test.sh's. The machine is a harsh fresh one on purpose:
#   - no init and no systemd: PID 1 is the test script itself (bash), not a reaping init;
#   - /tmp is a noexec tmpfs (8 GB);
#   - IPv6 is off, and /etc/hosts still maps localhost to ::1 (unreachable) too;
#   - nothing installed beyond minbase: test.sh installs what it needs with apt-get, starts
#     the Docker engine itself (dockerd, no systemd), its data in the volume berth-fresh-docker.
# Not --privileged (refused on berth's build machine): all capabilities but SYS_RESOURCE, no
# seccomp or AppArmor profile, and the container's cgroup mounts made writable inside, which
# is what the inner Docker engine needs to run containers.
#
# RUST IS NOT FRESH BY DEFAULT. rustup's servers are not reachable from every machine (berth's
# build machine reaches Debian, crates.io, PyPI and npm only), so with FRESH_RUST=host (the
# default when ~/.rustup exists) the host's toolchains are lent to the container, read-only:
# ~/.rustup at the same path, ~/.cargo/bin at /opt/host-cargo/bin, on PATH after the
# container's own writable CARGO_HOME=/root/.cargo (where `cargo install cargo-fuzz` goes;
# crates come from crates.io). FRESH_RUST=rustup lends nothing: test.sh then installs Rust
# with rustup-init from static.rust-lang.org as on a real fresh machine (the newest stable).
#
# Usage: scripts/test-fresh-debian.sh [test|install|shell|image]
#   test     (default) scripts/test.sh </dev/null, the README's test command
#   install  scripts/install.sh </dev/null, then `berth doctor`
#   shell    an interactive bash on the same machine (the clone in /root/berth)
#   image    only build the base image berth-fresh/bookworm-minbase
# Environment (all optional):
#   FRESH=1           rebuild the base image (it is kept between runs otherwise)
#   KEEP=1            keep the volume berth-fresh-docker (the inner engine's data: images,
#                     the stack image) at the end, and start from it when a run left it: quicker,
#                     not fresh. Without KEEP=1, a volume left over is removed before the run.
#   FRESH_RUST=host|rustup   see above
#   FRESH_LOG=FILE    the run's log (default: a new file in ${TMPDIR:-/tmp})
# Needs a Docker engine, and root to build the base image (debootstrap). At the end the
# container and the clone are removed; the base image is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODE=${1:-test}
case $MODE in test | install | shell | image) ;; *) die "usage: $0 [test|install|shell|image]" ;; esac
IMAGE=berth-fresh/bookworm-minbase
VOLUME=berth-fresh-docker
MIRROR=http://deb.debian.org/debian
HOST_CA=/etc/ssl/certs/ca-certificates.crt
REPO=$(git rev-parse --show-toplevel)
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin

WORK=""
CID=""
cleanup() {
    local rc=$?
    if [ -n "$CID" ]; then
        docker rm -f "$CID" >/dev/null 2>&1 || true
        if [ "${KEEP:-}" != 1 ]; then
            docker volume rm "$VOLUME" >/dev/null 2>&1 || printf ' !     could not remove the volume %s\n' "$VOLUME" >&2
        fi
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d)

# The base image: debootstrap's minbase with apt sources for bookworm, its updates and its
# security updates, and the host's CA certificates (the network may intercept TLS). These
# are also left in /usr/local/share/ca-certificates, so that installing Debian's
# ca-certificates (update-ca-certificates) keeps them in the bundle.
build_image() {
    require_root
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    local rootfs=$WORK/rootfs
    log "Building $IMAGE: debootstrap --variant=minbase bookworm"
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    printf '%s\n' \
        "deb $MIRROR bookworm main" \
        "deb $MIRROR bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" >"$rootfs/etc/apt/sources.list"
    if [ -s "$HOST_CA" ]; then
        if [ ! -s "$rootfs$HOST_CA" ]; then
            mkdir -p "$rootfs/etc/ssl/certs"
            cp "$HOST_CA" "$rootfs$HOST_CA"
        fi
        mkdir -p "$rootfs/usr/local/share/ca-certificates/host"
        awk -v dir="$rootfs/usr/local/share/ca-certificates/host" '
            /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/host-%03d.crt", dir, n) }
            file { print > file }
            /-----END CERTIFICATE-----/ { close(file); file = "" }' "$HOST_CA"
    fi
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "Built $IMAGE"
}

if [ "${FRESH:-}" = 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    build_image
else
    log "Using the base image $IMAGE (FRESH=1 rebuilds it)"
fi
[ "$MODE" = image ] && exit 0

if [ -n "$(docker ps -aq --filter "volume=$VOLUME")" ]; then
    die "a container uses the volume $VOLUME (another run?): docker ps -a --filter volume=$VOLUME"
fi
if docker volume inspect "$VOLUME" >/dev/null 2>&1; then
    if [ "${KEEP:-}" = 1 ]; then
        log "Reusing the volume $VOLUME (KEEP=1): the inner engine starts with an earlier run's data"
    else
        docker volume rm "$VOLUME" >/dev/null
    fi
fi

log "Cloning $REPO at $(git -C "$REPO" rev-parse --short HEAD)"
git clone -q "$REPO" "$WORK/berth"

# shellcheck disable=SC2054 # commas in --tmpfs's options
args=(
    --hostname berth-fresh
    --label berth-fresh=1
    --tmpfs /tmp:rw,noexec,nosuid,size=8g
    --sysctl net.ipv6.conf.all.disable_ipv6=1
    --sysctl net.ipv6.conf.default.disable_ipv6=1
    --cap-add ALL --cap-drop SYS_RESOURCE
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
    -v "$VOLUME:/var/lib/docker"
    -e CI=true
    -w /root/berth
)
# cgroup v2: a namespace of its own, whose root the container's processes then leave (below).
[ -f /sys/fs/cgroup/cgroup.controllers ] && args+=(--cgroupns=private)

FRESH_RUST=${FRESH_RUST:-$([ -d "$RUSTUP_DIR/toolchains" ] && echo host || echo rustup)}
case $FRESH_RUST in
    host)
        if [ ! -d "$RUSTUP_DIR/toolchains" ] || [ ! -x "$CARGO_BIN/cargo" ]; then
            die "FRESH_RUST=host: no toolchain in $RUSTUP_DIR with $CARGO_BIN/cargo (FRESH_RUST=rustup installs one)"
        fi
        args+=(
            -v "$RUSTUP_DIR:$RUSTUP_DIR:ro" -e "RUSTUP_HOME=$RUSTUP_DIR"
            -v "$CARGO_BIN:/opt/host-cargo/bin:ro" -e CARGO_HOME=/root/.cargo
            -e PATH=/root/.cargo/bin:/opt/host-cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        )
        ;;
    rustup) ;;
    *) die "FRESH_RUST is host or rustup, not $FRESH_RUST" ;;
esac

# Run by the container's PID 1 (bash), which then execs the mode's command.
# shellcheck disable=SC2016
inner='
set -euo pipefail
log() { printf -- "-----> %s\n" "$*"; }
die() { printf " !     %s\n" "$*" >&2; exit 1; }
# Docker mounts the cgroup hierarchies read-only in a container that is not privileged: these
# mounts of them (only these, in this container) made writable, for the inner engine.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,bind,rw /sys/fs/cgroup
    # cgroup v2 (untested: berth build machine has v1), as in moby hack/dind: no process may
    # stay in the root of a cgroup tree whose controllers are delegated.
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e "s/ / +/g" -e "s/^/+/" </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control
else
    for m in $(awk "\$3 == \"cgroup\" { print \$2 }" /proc/mounts); do mount -o remount,bind,rw "$m"; done
fi
grep -Eq "^::1[[:space:]]+localhost([[:space:]]|\$)" /etc/hosts || echo "::1 localhost ip6-localhost ip6-loopback" >>/etc/hosts

tmp="$(findmnt -no FSTYPE /tmp) $(findmnt -no OPTIONS /tmp)"
case ,$(findmnt -no OPTIONS /tmp), in *,noexec,*) ;; *) die "/tmp is not noexec: $tmp" ;; esac
[ $$ = 1 ] || die "this script is not PID 1"

[ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6)" = 1 ] || die "IPv6 is not disabled"
[ ! -d /run/systemd/system ] || die "systemd runs"
. /etc/os-release
log "The machine: $PRETTY_NAME $(cat /etc/debian_version) (debootstrap minbase), kernel $(uname -r), $(nproc) CPUs"
printf "       %-9s %s\n" \
    "/tmp:" "$tmp" \
    "IPv6:" "off (net.ipv6.conf.all.disable_ipv6=1); /etc/hosts: $(awk "\$2 == \"localhost\" { printf \"%s \", \$1 }" /etc/hosts)" \
    "PID 1:" "$(cat /proc/1/comm): this script, then the command it execs (no init)" \
    "systemd:" "none (no /run/systemd/system$(command -v systemctl >/dev/null || echo ", no systemctl"))" \
    "Rust:" "$(command -v cargo >/dev/null && echo "lent by the host, read-only: $(rustc --version)" || echo "none (ensure_rust in lib.sh installs it with rustup)")" \
    "Docker:" "$(command -v dockerd >/dev/null && echo installed || echo "not installed (the run installs docker.io and starts dockerd)"); /var/lib/docker: volume"
case $1 in
    test) log "scripts/test.sh"; exec scripts/test.sh </dev/null ;;
    install) log "scripts/install.sh"; scripts/install.sh </dev/null; log "berth doctor"; exec berth doctor </dev/null ;;
    shell) exec bash -i ;;
esac
'

# The clone into the created container (Debian's docker client has no `cp --quiet`).
copy_clone() {
    docker cp "$WORK/berth/." "$CID:/root/berth" >"$WORK/cp.log" 2>&1 || die "docker cp failed: $(cat "$WORK/cp.log")"
}

if [ "$MODE" = shell ]; then
    tty=()
    [ -t 0 ] && tty=(-t)
    CID=$(docker create -i "${tty[@]}" "${args[@]}" "$IMAGE" bash -c "$inner" bash shell)
    copy_clone
    log "Container ${CID:0:12}: a shell in /root/berth (exit to end and remove it)"
    docker start -ai "$CID" || true
    exit "$(docker wait "$CID")"
fi

LOG=${FRESH_LOG:-$(mktemp --suffix=.log "${TMPDIR:-/tmp}/berth-fresh-debian-$MODE.XXXXXX")}
CID=$(docker create "${args[@]}" "$IMAGE" bash -c "$inner" bash "$MODE")
copy_clone
log "Container ${CID:0:12} (FRESH_RUST=$FRESH_RUST); the log: $LOG"
# In the background, so that a signal to this script ends the run at once (see cleanup).
docker start -a "$CID" 2>&1 | tee "$LOG" &
wait $! || true
rc=$(docker wait "$CID")
log "$MODE exited with status $rc; the log: $LOG"
exit "$rc"

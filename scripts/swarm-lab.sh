#!/usr/bin/env bash
# A real multi-node Docker Swarm on this one machine, for berth's integration tests and
# benchmarks (DESIGN.md, "Schedulers": several nodes on one machine).
#
# Usage (as root):
#   scripts/swarm-lab.sh up [N]   N nodes (default 3): node1 the manager, the others workers,
#                                 and a registry; prints `export BERTHLAB_…` lines, so a test
#                                 can run   eval "$(scripts/swarm-lab.sh up 3)"
#                                 Already up: says so (on stderr) and prints them again.
#   scripts/swarm-lab.sh down     leaves the swarm, stops all it started, removes the
#                                 namespaces, links and state; safe to run at any time.
#   scripts/swarm-lab.sh status   the nodes as the manager lists them, and the services.
#
# The layout (BERTHLAB_NET=a.b.c picks another /24 than 10.231.0):
#   root namespace   berthlab0 10.231.0.1/24  (berth and its nginx reach the tasks from here)
#        | veth
#   berthlab-lan     bridge br0 10.231.0.2/24, the registry on 10.231.0.2:5000
#        | veth eth0, one per node
#   berthlab-nodeK   eth0 10.231.0.(10+K)/24: containerd + dockerd of their own,
#                    socket /run/berthlab/nodeK/docker.sock, data /var/lib/berthlab/nodeK,
#                    log /var/log/berthlab-nodeK.log (+ -containerd.log), hostname berthlab-nodeK;
#                    the dockerd runs as `berthlab-docker`, so `pgrep -x dockerd` finds only
#                    the machine's own engine
# The nodes sit on a bridge in a namespace of its own, not in the root namespace: once a
# dockerd runs there, the root namespace's FORWARD policy is DROP, and with br_netfilter that
# drops bridged traffic too. Traffic between the root namespace and the lab (berthlab0) goes
# through the root's OUTPUT and INPUT chains only, which Docker leaves alone.
#
# Images for services: build (or `docker load`) on a node, push to $BERTHLAB_REGISTRY, create
# the service from there (the manager pins the digest; workers pull by it). The registry
# speaks plain HTTP: good enough for a lab on a private bridge, and every node's dockerd lists
# it in --insecure-registry. The machine's own Docker engine does not, so push from a node.
# Logs stay in /var/log/berthlab-* after `down` (the place to look when a run failed); `up`
# starts them afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SELF=$PWD/scripts/swarm-lab.sh

# Progress on stderr: stdout carries only the exports, for eval.
log() { printf -- '-----> %s\n' "$*" >&2; }

NET=${BERTHLAB_NET:-10.231.0}
HOST_IP=$NET.1
LAN_IP=$NET.2
REGISTRY=$LAN_IP:5000
LAN=berthlab-lan
HOST_LINK=berthlab0
STATE=/var/lib/berthlab
RUN=/run/berthlab

ns() { echo "berthlab-node$1"; }
sock() { echo "$RUN/node$1/docker.sock"; }
node_ip() { echo "$NET.$((10 + $1))"; }
D() { local k=$1; shift; docker -H "unix://$(sock "$k")" "$@"; }

# The node numbers of whatever exists of a lab: namespaces, run and state directories (so a
# half-built or half-removed lab is found too).
lab_nodes() {
    {
        ip netns list 2>/dev/null | sed -n 's/^berthlab-node\([0-9][0-9]*\)\b.*/\1/p'
        for d in "$RUN"/node* "$STATE"/node*; do
            if [ -d "$d" ]; then basename "$d" | sed -n 's/^node\([0-9][0-9]*\)$/\1/p'; fi
        done
    } | sort -nu
}

exports() {
    local k
    for k in $(seq 1 "$1"); do echo "export BERTHLAB_NODE$k=unix://$(sock "$k")"; done
    echo "export BERTHLAB_REGISTRY=$REGISTRY"
    echo "export BERTHLAB_HOST=$HOST_IP"
    echo "export BERTHLAB_NODES=$1"
}

# Stops the process in PIDFILE if it still runs and its command line contains MARKER: /run
# may outlive a reboot (it is a plain directory on some machines), and a stale pid file
# could name someone else's process by then.
stop_pid() {
    local pidfile=$1 marker=$2 timeout=$3 pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [ -n "$pid" ] && pid_alive "$pid" || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((timeout * 10))); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid ($marker) did not stop in ${timeout}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# SIGKILL to PID and everything under it (children first get no chance to be reparented).
kill_tree() {
    local child
    kill -STOP "$1" 2>/dev/null || return 0
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
    kill -KILL "$1" 2>/dev/null || true
}

lab_is_up() {
    local n=$1 k ready
    [ -f "$RUN/lab.env" ] || return 1
    for k in $(seq 1 "$n"); do
        D "$k" version >/dev/null 2>&1 || return 1
    done
    pid_alive "$(cat "$RUN/registry.pid" 2>/dev/null || echo none)" || return 1
    ready=$(D 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$') || return 1
    [ "$ready" = "$n" ]
}

# Fails if the lab's /24 overlaps a route of the root namespace (other than its own link and
# the default route).
check_subnet() {
    local routes
    routes=$({ ip -4 route show match "$NET.0/24"; ip -4 route show root "$NET.0/24"; } | grep -v "^default" | grep -v "dev $HOST_LINK " || true)
    [ -z "$routes" ] || die "$NET.0/24 overlaps routes of this machine ($(echo "$routes" | head -n1)): pick another /24 with BERTHLAB_NET=a.b.c"
}

# Inside berthlab-nodeK (`ip netns exec` + `unshare --uts`): this node's containerd, then its
# dockerd in place of this shell.
node_main() {
    local k=$1 dir=$RUN/node$1
    unset NOTIFY_SOCKET # not systemd's to hear about
    hostname "berthlab-node$k" # else every node has the machine's name in `docker node ls`
    # `ip netns exec` gave this process a mount namespace of its own (slave to the root's, so
    # nothing mounted here shows outside: dockerd's overlay mounts and netns files vanish
    # with it) and a fresh sysfs on /sys that describes this network namespace. That sysfs
    # hides the machine's mounts under /sys, the cgroup hierarchies above all: without them
    # dockerd finds no cgroups and runc cannot start a container. Mount them again, as the
    # machine has them.
    local src mnt fstype opts rest
    while read -r src mnt fstype opts rest; do
        [ -d "$mnt" ] || mkdir -p "$mnt" 2>/dev/null || true
        mount -t "$fstype" -o "$opts" "$src" "$mnt" 2>/dev/null || log "node$k: cannot mount $fstype on $mnt"
    done <"$RUN/sys-mounts"
    # A containerd of its own, in this mount namespace: dockerd mounts each container's root
    # file system itself and hands containerd the path, so both must see the same mounts.
    # (A dockerd uses the machine's containerd whenever /run/containerd/containerd.sock
    # exists, as on a Debian with systemd, and that one lives in the root mount namespace.)
    containerd --config "$dir/containerd.toml" </dev/null >>"/var/log/berthlab-node$k-containerd.log" 2>&1 &
    echo $! >"$dir/containerd.pid"
    for _ in $(seq 1 100); do
        [ -S "$dir/containerd/containerd.sock" ] && break
        sleep 0.1
    done
    # Run as berthlab-docker (a link to dockerd), not dockerd: whatever looks for "the" Docker
    # engine by name (`pgrep -x dockerd`, `pidof dockerd`; berth's engine-restart test does)
    # must not find a lab node instead.
    # --config-file: not the machine engine's /etc/docker/daemon.json. deprecated-key-path
    # (settable only there): not /etc/docker/key.json, whose key would give every node, and
    # the machine's engine, the same engine ID. --cgroup-parent: the node's containers under
    # a cgroup of its own, where `down` finds any that a dead shim left behind.
    exec "$STATE/bin/berthlab-docker" \
        --config-file "$dir/daemon.json" \
        --data-root "$STATE/node$k/docker" \
        --exec-root "$dir/exec" \
        --pidfile "$dir/docker.pid" \
        -H "unix://$dir/docker.sock" \
        --containerd "$dir/containerd/containerd.sock" \
        --containerd-namespace "berthlab-node$k" \
        --containerd-plugins-namespace "berthlab-node$k-plugins" \
        --exec-opt native.cgroupdriver=cgroupfs \
        --cgroup-parent "/berthlab-node$k" \
        --insecure-registry "$REGISTRY"
}

up() {
    local n=${1:-3} k pid started
    [[ $n =~ ^[1-9][0-9]?$ ]] && [ "$n" -le 89 ] || die "usage: $0 up [N]  (N from 1 to 89)"
    require_root
    # ip, unshare/setsid (util-linux, essential), iptables (dockerd's rules in each node).
    # (On a machine with systemd, docker-registry's package also enables and starts its own
    # docker-registry.service on port 5000 of the host. The lab neither uses nor touches it.)
    apt_install docker.io containerd docker-registry iproute2 iptables
    if lab_is_up "$n"; then
        log "the lab is already up with $n nodes"
        cat "$RUN/lab.env"
        return 0
    fi
    # Another size, whole and working: some other test may be using it.
    local m
    m=$(sed -n 's/^export BERTHLAB_NODES=//p' "$RUN/lab.env" 2>/dev/null || true)
    if [ -n "$m" ] && [ "$m" != "$n" ] && lab_is_up "$m"; then
        die "the lab is up with $m nodes, not $n: run $0 down first"
    fi
    if [ -n "$(lab_nodes)" ] || [ -e "$RUN" ] || [ -e "$STATE" ] || [ -e "/run/netns/$LAN" ] || ip link show "$HOST_LINK" >/dev/null 2>&1; then
        log "Taking down what is left of an earlier lab"
        down
    fi
    check_subnet
    started=$(date +%s)
    mkdir -p "$RUN" "$STATE/registry"
    grep -E '^[^ ]+ /sys/[^ ]+ ' /proc/self/mounts >"$RUN/sys-mounts" || true

    log "Network: $LAN (bridge, registry $REGISTRY), $HOST_LINK $HOST_IP/24 in the root namespace"
    ip netns add "$LAN"
    ip -n "$LAN" link set lo up
    ip -n "$LAN" link add br0 type bridge
    ip -n "$LAN" addr add "$LAN_IP/24" dev br0
    ip -n "$LAN" link set br0 up
    ip link add "$HOST_LINK" type veth peer name host netns "$LAN"
    ip -n "$LAN" link set host master br0 up
    ip addr add "$HOST_IP/24" dev "$HOST_LINK"
    ip link set "$HOST_LINK" up
    for k in $(seq 1 "$n"); do
        ip netns add "$(ns "$k")"
        ip -n "$(ns "$k")" link set lo up
        # Both ends made where they belong: no name taken in the root namespace, even briefly.
        ip -n "$LAN" link add "node$k" type veth peer name eth0 netns "$(ns "$k")"
        ip -n "$LAN" link set "node$k" master br0 up
        ip -n "$(ns "$k")" addr add "$(node_ip "$k")/24" dev eth0
        ip -n "$(ns "$k")" link set eth0 up
    done

    log "Registry on $REGISTRY"
    cat >"$RUN/registry.yml" <<YAML
version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
    # The `sh -c` writes the pid of what it execs into (ip netns exec and setsid exec too).
    setsid ip netns exec "$LAN" sh -c 'echo $$ >"$0"; exec "$@"' "$RUN/registry.pid" \
        docker-registry serve "$RUN/registry.yml" </dev/null >/var/log/berthlab-registry.log 2>&1 9<&- &

    log "Starting $n dockerds"
    # A hard link where it can be (pidof also matches /proc/PID/exe, which a symbolic link
    # resolves to dockerd), a symbolic one otherwise (enough for pgrep's process name).
    mkdir -p "$STATE/bin"
    ln -f "$(command -v dockerd)" "$STATE/bin/berthlab-docker" 2>/dev/null || ln -sf "$(command -v dockerd)" "$STATE/bin/berthlab-docker"
    for k in $(seq 1 "$n"); do
        mkdir -p "$RUN/node$k" "$STATE/node$k"
        printf '{"deprecated-key-path": "%s"}\n' "$STATE/node$k/key.json" >"$RUN/node$k/daemon.json"
        cat >"$RUN/node$k/containerd.toml" <<TOML
version = 2
root = "$STATE/node$k/containerd"
state = "$RUN/node$k/containerd"
# The CRI plugin is Kubernetes'; dockerd does not use it.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$RUN/node$k/containerd/containerd.sock"
[debug]
  address = ""
[metrics]
  address = ""
TOML
        : >"/var/log/berthlab-node$k.log"
        : >"/var/log/berthlab-node$k-containerd.log"
        # setsid: no terminal's hangup or Ctrl-C reaches the daemons once `up` is done.
        setsid ip netns exec "$(ns "$k")" unshare --uts "$SELF" _node "$k" </dev/null >>"/var/log/berthlab-node$k.log" 2>&1 9<&- &
    done
    for k in $(seq 1 "$n"); do
        for _ in $(seq 1 300); do
            D "$k" info >/dev/null 2>&1 && break
            sleep 0.2
        done
        D "$k" info >/dev/null 2>&1 || die "node$k's dockerd did not answer in 60s; see /var/log/berthlab-node$k.log"
    done
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/$LAN_IP/5000") 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/$LAN_IP/5000") 2>/dev/null || die "the registry did not start; see /var/log/berthlab-registry.log"

    log "Swarm: node1 the manager, $((n - 1)) workers"
    D 1 swarm init --advertise-addr "$(node_ip 1)" >/dev/null
    local token joins=()
    token=$(D 1 swarm join-token -q worker)
    for k in $(seq 2 "$n"); do
        D "$k" swarm join --token "$token" --advertise-addr "$(node_ip "$k")" "$(node_ip 1):2377" >/dev/null &
        joins+=("$!")
    done
    # Not a bare `wait`: the daemons started above are this shell's background jobs too.
    for pid in "${joins[@]}"; do
        wait "$pid" || die "a node could not join the swarm; see /var/log/berthlab-node*.log"
    done
    for _ in $(seq 1 150); do
        [ "$(D 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$n" ] && break
        sleep 0.2
    done
    [ "$(D 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$n" ] || die "not all $n nodes are ready: $(D 1 node ls)"

    exports "$n" >"$RUN/lab.env"
    log "The lab is up ($n nodes, $(($(date +%s) - started))s)"
    cat "$RUN/lab.env"
}

down() {
    require_root
    local nodes k pid d
    nodes=$(lab_nodes)
    # Leave the swarm (which removes the node's task containers), workers first, the manager
    # last; then kill any other container, so that no dockerd waits out a stop timeout on
    # its way down (busybox's httpd as PID 1 ignores SIGTERM).
    for k in $(echo "$nodes" | sort -nr); do
        [ -S "$(sock "$k")" ] && D "$k" version >/dev/null 2>&1 || continue
        timeout 20 docker -H "unix://$(sock "$k")" swarm leave --force >/dev/null 2>&1 || true
    done
    for k in $nodes; do
        [ -S "$(sock "$k")" ] || continue
        (D "$k" ps -q 2>/dev/null | xargs -r timeout 20 docker -H "unix://$(sock "$k")" kill >/dev/null 2>&1 || true) &
    done
    wait
    for k in $nodes; do
        stop_pid "$RUN/node$k/docker.pid" "$(sock "$k")" 30 &
    done
    wait
    for k in $nodes; do
        stop_pid "$RUN/node$k/containerd.pid" "$RUN/node$k/containerd.toml" 10 &
    done
    stop_pid "$RUN/registry.pid" "$RUN/registry.yml" 10 &
    wait
    # Whatever still runs: in a lab namespace (a shim, a docker-proxy), or in a node's cgroup
    # (a container whose shim died), with all it started.
    for d in $(ip netns list 2>/dev/null | awk '$1 ~ /^berthlab-/ { print $1 }'); do
        for pid in $(ip netns pids "$d" 2>/dev/null); do kill_tree "$pid"; done
    done
    for d in $(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'berthlab-node*' 2>/dev/null); do
        for pid in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill_tree "$pid"; done
    done
    sleep 0.2
    for d in $(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'berthlab-node*' 2>/dev/null); do
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "cannot remove cgroup $d"
    done

    ip link del "$HOST_LINK" 2>/dev/null || true
    # A registry served on the root namespace's end of the lab (berth's, in a test) had its
    # CA installed for the engines here.
    rm -rf "/etc/docker/certs.d/$HOST_IP:"*
    for d in $(ip netns list 2>/dev/null | awk '$1 ~ /^berthlab-/ { print $1 }'); do
        ip netns del "$d" 2>/dev/null || log "cannot remove namespace $d"
    done
    # The daemons mounted in mount namespaces of their own, gone with them; anything left
    # here (a namespace file ip could not remove, a mount from some other way in) goes now,
    # deepest first.
    local mnt
    for mnt in $(awk '$5 ~ /berthlab/ { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$mnt" 2>/dev/null || log "cannot unmount $mnt"
    done
    rm -rf "$STATE" "$RUN"
    rm -f /run/netns/berthlab-*
    log "The lab is down"
}

status() {
    if ! [ -S "$(sock 1)" ] || ! D 1 version >/dev/null 2>&1; then
        log "the lab is not up"
        return 1
    fi
    D 1 node ls
    echo
    D 1 service ls
}

# One `up` or `down` at a time (tests running in parallel may all call `up`): a lock on this
# script's own file, so that no lock file is left behind. The daemons get fd 9 closed (9<&-),
# or they would hold the lock for as long as they run.
lock() {
    exec 9<"$SELF"
    flock 9
}

case "${1:-}" in
    up) lock; up "${2:-3}" ;;
    down) lock; down ;;
    status) status ;;
    _node) node_main "$2" ;; # internal: run by `up` inside a node's namespaces
    *) die "usage: $0 up [N] | down | status" ;;
esac

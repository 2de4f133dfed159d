#!/usr/bin/env bash
# dokku's own unit tests against berth: the tests of `tests/unit/*.bats` in a checkout of
# the public dokku/dokku repository that neither deploy dokku's test apps nor need what
# berth does not have (a plugin, dokku's files on disk, another proxy or builder), run
# unmodified by bats through a `dokku` shim that sends each command line over berth's ssh.
# Prints passed/failed per file and the total. Nothing of dokku's is copied into berth:
# the tests are read from the checkout given, at the commit pinned here.
#
# Usage: scripts/dokku-compat.sh DOKKU_CHECKOUT [FILE.bats…]
#   DOKKU_CHECKOUT  a clone of https://github.com/dokku/dokku (its tests/unit at DOKKU_COMMIT
#                   are read with git archive; the clone is not changed)
#   BERTH=/path/to/berth   use this binary instead of building one (cargo build --release)
#   KEEP=1          keep the work directory (bats output per file) and print where it is
# Needs root (it runs a berth daemon with nginx and Docker, as the tests' apps need).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

# The dokku commit whose tests are the measure (README quotes the figure for it).
DOKKU_COMMIT=33896f5d7efc3b03d0ea94934d8413cddbce07fd

CHECKOUT=${1:?usage: scripts/dokku-compat.sh DOKKU_CHECKOUT [FILE.bats…]}
shift
[ -d "$CHECKOUT" ] || die "$CHECKOUT is not a directory (git clone https://github.com/dokku/dokku)"
git -C "$CHECKOUT" cat-file -e "$DOKKU_COMMIT^{commit}" 2>/dev/null || die "$CHECKOUT has no commit $DOKKU_COMMIT: git -C $CHECKOUT fetch origin"

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client busybox-static bats uuid-runtime jq python3 procps
ensure_docker
bench_berth

bench_daemon
# dokku's tests use dokku.me as the global domain.
"$BERTH" --root "$ROOT" domains:set-global dokku.me >/dev/null

TESTS=$WORK/dokku
mkdir -p "$TESTS" "$WORK/dokku-root" "$WORK/dokku-lib"
git -C "$CHECKOUT" archive "$DOKKU_COMMIT" tests/unit | tar -x -C "$TESTS"

# The shims the tests find first on PATH.
#  dokku: the command line over berth's ssh, each word quoted for the server's splitting.
#  docker: as it is, but the tests' clean-up (which removes every container of the engine)
#  sees only this berth's containers.
SHIMS=$WORK/shims
mkdir -p "$SHIMS"
cat >"$SHIMS/dokku" <<EOF
#!/usr/bin/env bash
line=""
[ \$# -gt 0 ] && line=\$(printf '%q ' "\$@")
exec $GIT_SSH_COMMAND -p $SSH_PORT -- berth@127.0.0.1 "\$line"
EOF
cat >"$SHIMS/docker" <<EOF
#!/usr/bin/env bash
case "\$1 \${2:-}" in
    "container ls"|"ps "*|"ps") exec /usr/bin/docker "\$@" --filter label=berth.root=$ROOT ;;
esac
exec /usr/bin/docker "\$@"
EOF
# `ssh dokku@dokku.me CMD…`, as dokku's tests reach dokku over ssh: berth's ssh, the same way.
cat >"$SHIMS/ssh" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = "dokku@dokku.me" ]; then
    shift
    exec $GIT_SSH_COMMAND -p $SSH_PORT -- berth@127.0.0.1 "\$@"
fi
exec /usr/bin/ssh "\$@"
EOF
chmod +x "$SHIMS/dokku" "$SHIMS/docker" "$SHIMS/ssh"
[ "$(PATH=$SHIMS:$PATH dokku apps:list --format json)" = "[]" ] || die "the dokku shim does not reach berth"

# Which tests run: per file, the names of the tests that can (see `runnable` below).
python3 - "$TESTS/tests/unit" "$WORK/selection" "$@" <<'PY'
import os, re, sys
unit, out, only = sys.argv[1], sys.argv[2], sys.argv[3:]
# Files about what berth does not have: other proxies, builders and schedulers, dokku's own
# install, its plugin manager and client.
SKIP_FILES = re.compile(r"^(caddy|haproxy|openresty|traefik|k3s|scheduler-k3s|builder-(lambda|nixpacks|pack|railpack|herokuish)|"
                        r"nginx-vhosts_|init|plugin|client|ssh-keys|registry|archive-security|ps-herokuish|build-env)")
# A test that needs any of these in its body (or its file's setup) cannot run here: it
# deploys dokku's test apps, reads dokku's files or user, drives a plugin by path or by
# dokku's internal triggers, pulls an image from Docker Hub (no registry is reachable),
# selects or reports another proxy, builder or scheduler, or ships logs with vector (berth
# runs no vector).
NEEDS = re.compile(r"deploy_app|git push|git clone|DOKKU_ROOT|DOKKU_LIB|PLUGIN_|plugn|sudo |dokku-|plugin:trigger|chown [^\n]*dokku|"
                   r"git:from-image \S+ [a-z0-9.-]+/|/var/log/dokku|/etc/\S*dokku|"
                   r"\b(caddy|haproxy|traefik|openresty|k3s|nixpacks|railpack|lambda|vector)\b|"
                   r"run_plugin_script|install_pack|setup_test_tls|custom_.*template|move_.*dockerfile|"
                   r"add_requirements|convert_to_dockerfile|/home/dokku|/var/lib/dokku|assert_http|check_urls|"
                   r"docker (exec|run|inspect|image)|\bcurl\b")
def blocks(text):
    """(name, body) of each @test, and the text outside them (setup, helpers)."""
    tests, rest, pos = [], [], 0
    for m in re.finditer(r'^@test "([^\n]*)" \{\n(.*?)^\}$', text, re.S | re.M):
        rest.append(text[pos:m.start()])
        tests.append((m.group(1), m.group(2)))
        pos = m.end()
    rest.append(text[pos:])
    return tests, "".join(rest)
with open(out, "w") as f:
    for name in sorted(os.listdir(unit)):
        if not name.endswith(".bats") or (only and name not in only) or (not only and SKIP_FILES.match(name)):
            continue
        tests, outside = blocks(open(os.path.join(unit, name)).read())
        # The setup's backup of dokku's VHOST file is a no-op here (DOKKU_ROOT is empty).
        outside = "\n".join(l for l in outside.splitlines() if not re.match(r'\s*\[\[ -f "?\$DOKKU_ROOT/VHOST', l))
        if NEEDS.search(outside):
            continue
        runnable = [t for t, body in tests if not NEEDS.search(body)]
        if runnable:
            f.write(name + "\t" + "\t".join(runnable) + "\n")
PY

progress() { printf -- '-----> %s\n' "$*" >&2; }
: >"$WORK/results"
while IFS=$'\t' read -r file names; do
    IFS=$'\t' read -r -a tests <<<"$names"
    filter=$(python3 -c 'import re, sys; print("^(" + "|".join(re.escape(t) for t in sys.argv[1:]) + ")$")' "${tests[@]}")
    progress "$file: ${#tests[@]} test(s)"
    (cd "$TESTS/tests/unit" && PATH=$SHIMS:$PATH DOKKU_DOMAIN=dokku.me DOKKU_ROOT=$WORK/dokku-root DOKKU_LIB_PATH=$WORK/dokku-lib timeout 900 bats --tap --filter "$filter" "$file" </dev/null) >"$WORK/$file.tap" 2>&1 || true
    passed=$(grep -c '^ok ' "$WORK/$file.tap" || true)
    failed=$(grep -c '^not ok ' "$WORK/$file.tap" || true)
    echo "$file $passed $failed" >>"$WORK/results"
    grep '^not ok ' "$WORK/$file.tap" | sed "s/^not ok [0-9]* /$file: /" >>"$WORK/failures" || true
done <"$WORK/selection"

printf '| %-28s | %6s | %6s |\n' "dokku test file" passed failed
printf '|%s|%s|%s|\n' ------------------------------ -------- --------
awk '{ printf "| %-28s | %6d | %6d |\n", $1, $2, $3; p += $2; f += $3 } END { printf "| %-28s | %6d | %6d |\n", "total", p, f; printf "\ndokku compatibility: %d of %d of dokku'"'"'s runnable unit tests pass (dokku %s)\n", p, p + f, "'"${DOKKU_COMMIT:0:12}"'" }' "$WORK/results"
if [ -s "$WORK/failures" ]; then
    echo
    echo "Failing:"
    sed 's/^/  /' "$WORK/failures"
fi

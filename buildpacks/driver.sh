#!/bin/bash
# berth's buildpack driver, run inside the build container: BUILD=/app CACHE=/cache ENV=/env.
# Arguments: buildpack directories. With --detect, the first one whose bin/detect passes
# builds the app; without, every one runs in order (an explicit list, as Heroku does).
# Each leading `--default 'TYPE: COMMAND'` is a default process type berth chose (after the
# Procfile's and the buildpacks' own).
set -eo pipefail
BUILD=/app CACHE=/cache ENV=/env
berth_defaults=()
while [ "$1" = "--default" ]; do berth_defaults+=("$2"); shift 2; done
mode=all
if [ "$1" = "--detect" ]; then mode=detect; shift; fi

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

chosen=()
start=$(now)
for bp in "$@"; do
    if name=$("$bp/bin/detect" "$BUILD" 2>/dev/null); then
        chosen+=("$bp")
        [ "$mode" = detect ] && break
    elif [ "$mode" = all ]; then
        echo "-----> Buildpack $(basename "$bp") does not apply to this app (bin/detect failed)"
        exit 101
    fi
done
if [ ${#chosen[@]} -eq 0 ]; then
    exit 100
fi

mkdir -p "$BUILD/.berth" "$BUILD/.profile.d" "$CACHE"
: >"$BUILD/.berth/defaults"
for bp in "${chosen[@]}"; do
    name=$("$bp/bin/detect" "$BUILD" 2>/dev/null | head -n1)
    echo "-----> Building with buildpack ${name:-$(basename "$bp")} (detected in $(took "$start"))"
    start=$(now)
    "$bp/bin/compile" "$BUILD" "$CACHE" "$ENV"
    echo "-----> Compiled in $(took "$start")"
    start=$(now)
    if [ -x "$bp/bin/release" ]; then
        # default_process_types from the release YAML: "  type: command" lines.
        "$bp/bin/release" "$BUILD" | sed -n '/^default_process_types:/,/^[^ ]/{s/^  \([a-zA-Z0-9_-]*\):[[:space:]]*\(.*\)$/\1: \2/p}' >>"$BUILD/.berth/defaults"
    fi
done

for line in "${berth_defaults[@]}"; do echo "$line" >>"$BUILD/.berth/defaults"; done

# Process types: the Procfile's, then buildpack defaults for types it does not name.
: >"$BUILD/.berth/processes"
if [ -f "$BUILD/Procfile" ]; then
    grep -E '^[a-zA-Z0-9_-]+:' "$BUILD/Procfile" | sed 's/:[[:space:]]*/: /' >>"$BUILD/.berth/processes" || true
fi
while IFS= read -r line; do
    type=${line%%:*}
    grep -q "^$type:" "$BUILD/.berth/processes" || echo "$line" >>"$BUILD/.berth/processes"
done <"$BUILD/.berth/defaults"

cat >/usr/local/bin/berth-launch <<'LAUNCH'
#!/bin/bash
# Runs one process type of the app: sources .profile.d/*, then execs its command.
cd /app
export HOME=/app
for f in /app/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done
# `berth run`: a one-off command with the app's environment.
if [ "$1" = "--run" ]; then
    shift
    exec "$@"
fi
type=${1:-web}
command=$(sed -n "s/^${type}: //p" /app/.berth/processes | head -n1)
if [ -z "$command" ]; then
    echo "berth: no '$type' process: add '$type: COMMAND' to the Procfile" >&2
    exit 64
fi
exec bash -c "$command"
LAUNCH
chmod 755 /usr/local/bin/berth-launch
echo "-----> Process types: $(cut -d: -f1 "$BUILD/.berth/processes" | tr '\n' ' ')"

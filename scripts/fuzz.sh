#!/usr/bin/env bash
# Fuzzes berth's parsers of untrusted input (fuzz/fuzz_targets: command lines, Procfiles,
# app.json, validators, public keys, socket frames, state files, certificates) with
# libFuzzer through cargo-fuzz, SECONDS each (default 10: the CI run), and prints a table.
# A crash stops the run and leaves the input under fuzz/artifacts/TARGET/.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SECONDS_EACH=${1:-10}
ensure_rust
ensure_cargo_fuzz

cd fuzz
# Short runs (CI) build unoptimized: 5 minutes instead of 10 on 2 cores, for ~25x fewer runs
# per second. Runs of 30 s and more build optimized.
profile=()
[ "$SECONDS_EACH" -lt 30 ] && profile=(--dev)
log "Building the fuzz targets ${profile[*]:-(release)}"
# No sanitizer: the stable toolchain has none; libFuzzer's coverage guidance still applies.
cargo fuzz build -s none "${profile[@]}" >/dev/null 2>&1 || cargo fuzz build -s none "${profile[@]}"
failed=0
rows=()
for target in $(cargo fuzz list); do
    out=$(cargo fuzz run "$target" -s none "${profile[@]}" -- -max_total_time="$SECONDS_EACH" 2>&1) && result=ok || { result=CRASH; failed=1; }
    runs=$(printf '%s\n' "$out" | sed -n 's/^Done \([0-9]*\) runs.*/\1/p' | tail -n1)
    rows+=("$(printf '| %-14s | %12s | %-6s |' "$target" "${runs:-?}" "$result")")
    if [ "$result" = CRASH ]; then
        printf '%s\n' "$out" | grep -E 'panicked|SUMMARY|Test unit written' | head -n 5 >&2
    fi
done
printf '| %-14s | %12s | %-6s |\n' target runs result
printf '|%s|%s|%s|\n' "----------------" "--------------" "--------"
printf '%s\n' "${rows[@]}"
exit "$failed"

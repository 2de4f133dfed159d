#!/usr/bin/env bash
# Fuzzes berth's parsers of untrusted input (fuzz/fuzz_targets: command lines, Procfiles,
# app.json, validators, public keys, socket frames, state files, certificates) with
# libFuzzer through cargo-fuzz, SECONDS each (default 5: the CI run), and prints a table.
# A crash stops the run and leaves the input under fuzz/artifacts/TARGET/.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SECONDS_EACH=${1:-5}
ensure_rust
ensure_cargo_fuzz

cd fuzz
log "Building the fuzz targets"
# No sanitizer: the stable toolchain has none; libFuzzer's coverage guidance still applies.
cargo fuzz build -s none >/dev/null 2>&1 || cargo fuzz build -s none
failed=0
rows=()
for target in $(cargo fuzz list); do
    out=$(cargo fuzz run "$target" -s none -- -max_total_time="$SECONDS_EACH" 2>&1) && result=ok || { result=CRASH; failed=1; }
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

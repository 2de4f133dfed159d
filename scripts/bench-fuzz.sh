#!/usr/bin/env bash
# A longer fuzzing run than CI's: SECONDS per target (default 60). Prints the same table as
# scripts/fuzz.sh. Usage: scripts/bench-fuzz.sh [SECONDS]
set -euo pipefail
exec "$(dirname "$0")/fuzz.sh" "${1:-60}"

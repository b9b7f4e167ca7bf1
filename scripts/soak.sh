#!/usr/bin/env bash
# Soak test: builds the release binaries, starts `trustgate serve` on a throwaway data directory
# (SQLite, loopback) and runs `trustgate-load soak` against it (scripts/load.sh does both): a
# dataset, a client_credentials client and a few users are provisioned; the maximum rate of the
# mix (checks, tuple write + delete, client_credentials grants, introspection, with logins at a
# small fixed rate beside it) is measured closed-loop for 20 s; then the mix runs paced at 80% of
# it for MINUTES, the server's RSS sampled every 10 s. Prints a row per minute and a verdict
# (0 errors, RSS flat, p99 stable); exits non-zero when a criterion fails. The whole run is
# bounded: the load generator is stopped 10 minutes after the planned end at the latest, and
# the server is always stopped.
#
# Usage: scripts/soak.sh [MINUTES] [trustgate-load soak flags...]
#   e.g. scripts/soak.sh            # 30 minutes
#        scripts/soak.sh 3          # a quick try: the compared windows shrink and it says so
#        scripts/soak.sh 30 --login-rate 4 --load 0.7
# Environment: as scripts/load.sh (CARGO_TARGET_DIR, TRUSTGATE_LOAD_KEEP,
# TRUSTGATE_LOAD_LOG_LEVEL).
set -euo pipefail
minutes=30
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  minutes="$1"
  shift
fi
if (( minutes < 1 || minutes > 24 * 60 )); then
  echo "MINUTES must be between 1 and 1440" >&2
  exit 2
fi
export TRUSTGATE_LOAD_TIMEOUT=$(( minutes * 60 + 600 ))
exec "$(dirname "$0")/load.sh" soak --duration "${minutes}m" "$@"

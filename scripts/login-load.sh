#!/usr/bin/env bash
# Login-flood benchmark: builds the release binaries, starts `trustgate serve` on a throwaway data
# directory (SQLite) with a bootstrap admin token, runs `trustgate-load login` against it (creates
# a user; /healthz idle; N clients doing GET + POST /login with the right password while a light
# probe keeps measuring /healthz; then a short wrong-password run), stops the server and prints
# logins/s and p99(/healthz during the flood) / p99(/healthz idle).
#
# Usage: scripts/login-load.sh [trustgate-load login flags...]
#   e.g. scripts/login-load.sh --concurrency 32 --duration 20
# Environment: CARGO_TARGET_DIR (default ./target); TRUSTGATE_LOAD_KEEP=1 keeps the data dir;
# TRUSTGATE_LOAD_LOG_LEVEL sets the server's log filter (default: the server's own, `info`).
set -euo pipefail
exec "$(dirname "$0")/load.sh" login "$@"

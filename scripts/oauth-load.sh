#!/usr/bin/env bash
# Token-endpoint benchmark: builds the release binaries, starts `trustgate serve` on a throwaway
# data directory (SQLite) with a bootstrap admin token, runs `trustgate-load oauth` against it
# (registers a client_credentials client; measures GET /healthz, POST /oauth2/token with the
# client_credentials grant, and POST /oauth2/introspect of one of its tokens, in interleaved
# rounds), stops the server and prints grants/s and introspections/s, per core and as a ratio of
# /healthz in the same run.
#
# Usage: scripts/oauth-load.sh [trustgate-load oauth flags...]
#   e.g. scripts/oauth-load.sh --connections 32 --duration 20
# Environment: CARGO_TARGET_DIR (default ./target); TRUSTGATE_LOAD_KEEP=1 keeps the data dir;
# TRUSTGATE_LOAD_LOG_LEVEL sets the server's log filter (default: the server's own, `info`).
set -euo pipefail
exec "$(dirname "$0")/load.sh" oauth "$@"

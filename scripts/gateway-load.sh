#!/usr/bin/env bash
# Gateway benchmark (issue #12's must-show "gateway vs calling the upstream directly"): builds the
# release binaries, starts `trustgate serve` on a throwaway data directory (SQLite) with a
# bootstrap admin token, runs `trustgate-load gateway` against it — which provisions a store, a
# tuple, a caller client and the gateway's token-exchange client, then runs a small upstream and
# `trustgate-gateway` in its own process and measures GET on the upstream directly and through
# the gateway (JWT verified locally, one PDP check over HTTP per request, the exchanged token
# from the cache) in interleaved rounds — and prints req/s, p50, p99, the added p50 and the
# throughput ratio.
#
# Usage: scripts/gateway-load.sh [trustgate-load gateway flags...]
#   e.g. scripts/gateway-load.sh --connections 32 --duration 20
# Environment: as scripts/load.sh.
set -euo pipefail
exec "$(dirname "$0")/load.sh" gateway "$@"

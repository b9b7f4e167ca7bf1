#!/usr/bin/env bash
# Gateway benchmark (issue #12's must-show "gateway vs calling the upstream directly"): builds the
# release binaries, starts `trustgate serve` on a throwaway data directory (SQLite) with a
# bootstrap admin token, runs `trustgate-load gateway` against it — which provisions a store, a
# tuple, a caller client and the gateway's token-exchange client, runs a small upstream inside
# the load generator and starts `trustgate gateway --config` as a child process (as operators run it),
# then measures GET on the upstream directly and through the gateway (JWT verified locally and
# remembered, the decision from pep's decision cache, the exchanged token from the cache) in
# interleaved rounds: one connection (added p50), then every connection with all processes on
# all cores, then with the gateway pinned to a core of its own (as deployed) — and prints req/s,
# p50, p99, the added p50, the throughput ratios and the gateway's CPU time per request.
#
# Usage: scripts/gateway-load.sh [trustgate-load gateway flags...]
#   e.g. scripts/gateway-load.sh --connections 32 --duration 20
# Environment: as scripts/load.sh.
set -euo pipefail
exec "$(dirname "$0")/load.sh" gateway "$@"

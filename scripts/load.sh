#!/usr/bin/env bash
# HTTP load benchmarks: builds the release binaries, starts `trustgate serve` on a throwaway data
# directory (SQLite) with a bootstrap admin token, runs a `trustgate-load` scenario against it,
# stops the server and prints the figures. Scenarios (first argument, default `check`):
#   check  10k-tuple Drive-like dataset; check vs /healthz vs /admin/v1/whoami vs the same
#          questions over AuthZEN (POST /stores/{id}/access/v1/evaluation) in the same run
#   login  login flood; logins/s and /healthz p99 during the flood vs idle (scripts/login-load.sh)
#   oauth  client_credentials grants/s and introspections/s vs /healthz (scripts/oauth-load.sh)
#   gateway  an upstream directly vs through trustgate-gateway (scripts/gateway-load.sh)
#   tls    /healthz over plain HTTP vs over TLS (a second server with a generated certificate),
#          kept-alive and with a handshake per request
#   soak   long mixed load at 80% of the measured maximum, RSS sampled (scripts/soak.sh); gets
#          the server's pid as --server-pid
#
# Usage: scripts/load.sh [check|login|oauth|gateway|tls|soak] [trustgate-load flags...]
#   e.g. scripts/load.sh --connections 32 --duration 20
#        scripts/load.sh oauth --connections 32
# Environment: CARGO_TARGET_DIR (default ./target); TRUSTGATE_LOAD_KEEP=1 keeps the data dir;
# TRUSTGATE_LOAD_TIMEOUT=SECONDS stops the load generator (and so the run) after that long;
# TRUSTGATE_LOAD_LOG_LEVEL sets the server's log filter (default: the server's own, `info`). Every
# check decision and token issuance is written to the audit table by the batched audit writer,
# as in production.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
scenario=check
case "${1:-}" in
  check|login|oauth|gateway|tls|soak) scenario="$1"; shift ;;
esac
target="${CARGO_TARGET_DIR:-$root/target}"

echo "== building release binaries (trustgate, trustgate-load)" >&2
cargo build --manifest-path "$root/Cargo.toml" --release --locked \
  -p trustgate --bin trustgate -p trustgate-bench --bin trustgate-load >&2

data="$(mktemp -d "${TMPDIR:-/tmp}/trustgate-$scenario-load.XXXXXX")"
token="tg_load_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""

cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ "${TRUSTGATE_LOAD_KEEP:-0}" != 1 ]]; then
    rm -rf "$data"
  else
    echo "data dir kept: $data" >&2
  fi
}
trap cleanup EXIT

# Keep the caller's TRUSTGATE_* settings away from the server; pass only what we mean.
env -u TRUSTGATE_DATABASE_URL -u TRUSTGATE_CONFIG \
  TRUSTGATE_BOOTSTRAP_TOKEN="$token" \
  ${TRUSTGATE_LOAD_LOG_LEVEL:+TRUSTGATE_LOG_LEVEL="$TRUSTGATE_LOAD_LOG_LEVEL"} \
  "$target/release/trustgate" serve --listen 127.0.0.1:0 --data-dir "$data" \
  >"$data/server.log" 2>&1 &
server_pid=$!

base=""
for _ in $(seq 1 300); do
  base="$(grep -o 'listening on http://[^ ]*' "$data/server.log" 2>/dev/null | head -n1 | sed 's/^listening on //' || true)"
  [[ -n "$base" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "trustgate serve exited:" >&2
    cat "$data/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$base" ]]; then
  echo "trustgate serve did not report its address within 30 s:" >&2
  cat "$data/server.log" >&2
  exit 1
fi
echo "== server $base (pid $server_pid, data $data)" >&2

load=("$target/release/trustgate-load")
if [[ -n "${TRUSTGATE_LOAD_TIMEOUT:-}" ]]; then
  load=(timeout --signal=TERM --kill-after=10 "$TRUSTGATE_LOAD_TIMEOUT" "${load[@]}")
fi
case "$scenario" in
  check) args=() ;;
  soak) args=(soak --server-pid "$server_pid") ;;
  *) args=("$scenario") ;;
esac
TRUSTGATE_LOAD_TOKEN="$token" "${load[@]}" "${args[@]}" --url "$base" "$@"

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

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

echo "== building release binaries (trustgate, trustgate-load)" >&2
cargo build --manifest-path "$root/Cargo.toml" --release --locked \
  -p trustgate --bin trustgate -p trustgate-bench --bin trustgate-load >&2

data="$(mktemp -d "${TMPDIR:-/tmp}/trustgate-oauth-load.XXXXXX")"
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

TRUSTGATE_LOAD_TOKEN="$token" "$target/release/trustgate-load" oauth --url "$base" "$@"

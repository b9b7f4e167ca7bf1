#!/usr/bin/env bash
# client_credentials issuance: trustgate against node oidc-provider on the same machine, the same
# algorithm (ES256 JWT access tokens) and the same load. Builds the release binaries, starts
# `trustgate serve` (SQLite in a throwaway data directory, production defaults: every issuance is
# written to the audit table by the batched, hash-chained writer) and the node oidc-provider of
# crates/bench/node-oidc-provider (installed by scripts/ci-setup.sh, or here with `npm ci` when
# missing), runs `trustgate-load oauth-vs-node` (interleaved rounds, the ratio), stops both, and
# checks that the audit table holds one `oauth_token_issued` event for every grant trustgate
# answered and that none was dropped.
#
# Usage: scripts/oauth-vs-node.sh [trustgate-load oauth-vs-node flags...]
#   e.g. scripts/oauth-vs-node.sh --connections 16 --duration 12 --rounds 3
# Environment: CARGO_TARGET_DIR (default ./target); TRUSTGATE_BIN runs another trustgate binary
# (e.g. an earlier release, to compare builds against the same node baseline);
# TRUSTGATE_LOAD_KEEP=1 keeps the data dir;
# TRUSTGATE_LOAD_TIMEOUT=SECONDS stops the load generator (and so the run) after that long.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
node_dir="$root/crates/bench/node-oidc-provider"

echo "== building release binaries (trustgate, trustgate-load)" >&2
cargo build --manifest-path "$root/Cargo.toml" --release --locked \
  -p trustgate --bin trustgate -p trustgate-bench --bin trustgate-load >&2
if [[ ! -d "$node_dir/node_modules/oidc-provider" ]]; then
  echo "== npm ci (node oidc-provider)" >&2
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >&2
fi

data="$(mktemp -d "${TMPDIR:-/tmp}/trustgate-vs-node.XXXXXX")"
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
token="tg_load_$(random)"
node_client_id="bench-$(random | cut -c1-12)"
node_client_secret="$(random)$(random)"
server_pid=""
node_pid=""

stop() {
  local pid="$1"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$node_pid"
  stop "$server_pid"
  if [[ "${TRUSTGATE_LOAD_KEEP:-0}" != 1 ]]; then
    rm -rf "$data"
  else
    echo "data dir kept: $data" >&2
  fi
}
trap cleanup EXIT

# Waits for "listening on URL" in log $1 of process $2; prints the URL.
wait_listening() {
  local log="$1" pid="$2" name="$3" url=""
  for _ in $(seq 1 300); do
    url="$(grep -o 'listening on http://[^ ]*' "$log" 2>/dev/null | head -n1 | sed 's/^listening on //' || true)"
    if [[ -n "$url" ]]; then
      echo "$url"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name did not report its address within 30 s:" >&2
  cat "$log" >&2
  return 1
}

# Keep the caller's TRUSTGATE_* settings away from the server; pass only what we mean.
env -u TRUSTGATE_DATABASE_URL -u TRUSTGATE_CONFIG \
  TRUSTGATE_BOOTSTRAP_TOKEN="$token" \
  TRUSTGATE_OAUTH__ACCESS_TOKEN_ALGORITHM=ES256 \
  "${TRUSTGATE_BIN:-$target/release/trustgate}" serve --listen 127.0.0.1:0 --data-dir "$data" \
  >"$data/server.log" 2>&1 &
server_pid=$!
base="$(wait_listening "$data/server.log" "$server_pid" "trustgate serve")"
echo "== trustgate $base (pid $server_pid, data $data)" >&2

NODE_ENV=production NODE_OIDC_CLIENT_ID="$node_client_id" NODE_OIDC_CLIENT_SECRET="$node_client_secret" \
  node "$node_dir/server.mjs" >"$data/node.log" 2>&1 &
node_pid=$!
node_base="$(wait_listening "$data/node.log" "$node_pid" "node oidc-provider")"
echo "== node oidc-provider $(node -p "require('$node_dir/node_modules/oidc-provider/package.json').version") on node $(node --version): $node_base (pid $node_pid)" >&2

load=("$target/release/trustgate-load")
if [[ -n "${TRUSTGATE_LOAD_TIMEOUT:-}" ]]; then
  load=(timeout --signal=TERM --kill-after=10 "$TRUSTGATE_LOAD_TIMEOUT" "${load[@]}")
fi
TRUSTGATE_LOAD_TOKEN="$token" NODE_OIDC_CLIENT_ID="$node_client_id" \
  NODE_OIDC_CLIENT_SECRET="$node_client_secret" \
  "${load[@]}" oauth-vs-node --url "$base" --node-url "$node_base" "$@" | tee "$data/load.txt"

# A graceful stop writes what is still queued; then the database must hold every issuance.
stop "$node_pid"
stop "$server_pid"
answered="$(sed -n 's/^trustgate_grants_answered=//p' "$data/load.txt")"
stored="$(sqlite3 "$data/trustgate.db" \
  "SELECT count(*) FROM audit_events WHERE kind = 'oauth_token_issued' AND seq IS NOT NULL")"
echo "audit trail: $stored oauth_token_issued events in the hash chain for $answered grants answered"
if [[ "$stored" != "$answered" ]]; then
  echo "error: the audit trail does not hold every issuance" >&2
  exit 1
fi

#!/usr/bin/env bash
# Measures, for the release binary on a fresh data directory: time from process start to the
# first 200 from /healthz (first start, with migrations and bootstrap, and a restart), and the
# resident memory after it has been idle for a few seconds.
# Usage: scripts/startup-and-rss.sh [runs]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build --release --locked -p trustgate >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/trustgate"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

measure() { # data_dir -> sets $ms (milliseconds to ready) and $pid (no subshell: $pid must survive)
    local start end
    start=$(date +%s%N)
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$1" >/dev/null 2>&1 &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.005; done
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
}

for i in $(seq 1 "$runs"); do
    dir=$(mktemp -d)
    measure "$dir"; first=$ms
    kill "$pid"; wait "$pid" 2>/dev/null || true
    measure "$dir"; again=$ms
    sleep 3
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    echo "run $i: first start ready in ${first} ms, restart ready in ${again} ms, idle RSS $((rss / 1024)) MiB"
done

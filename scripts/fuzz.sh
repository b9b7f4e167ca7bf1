#!/usr/bin/env bash
# Runs one fuzz target of crates/fuzz coverage-guided (libFuzzer through cargo-bolero) for a
# bounded time, and fails on a crash, a panic, an out-of-memory or an input slower than the
# threshold: a super-linear input is reported as a libFuzzer timeout with the input saved.
#
# usage: scripts/fuzz.sh TARGET SECONDS [SLOW_SECONDS]
#   TARGET        a test path of crates/fuzz/tests/it, e.g. dsl::bytes (scripts/fuzz.sh --list)
#   SECONDS       how long to fuzz
#   SLOW_SECONDS  an input running longer than this fails the run (default 2; the parsers take
#                 microseconds to milliseconds)
#
# Stable toolchain only: no sanitizer (the crates forbid unsafe code; instrumentation is
# SanitizerCoverage through stable -C flags), so no RUSTC_BOOTSTRAP. The corpus is kept between
# runs in crates/fuzz/tests/it/__fuzz__/<module>__<test>/corpus (ignored by git); a failing input lands in
# .../crashes (commit it: `cargo test` replays it). Build artifacts go to
# $CARGO_TARGET_DIR/fuzz (default target/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(
    dsl::bytes dsl::token_soup model_json::bytes model_json::structured condition::expression
    jwt::bytes jwt::structured oauth::form oauth::authorize_request oauth::client_assertion
    webauthn::registration webauthn::assertion tuples::strings tuples::write
    authzen::bytes authzen::structured
)

if [[ "${1:-}" == "--list" ]]; then
    printf '%s\n' "${TARGETS[@]}"
    exit 0
fi
if [[ $# -lt 2 ]]; then
    echo "usage: $0 TARGET SECONDS [SLOW_SECONDS]  (targets: $0 --list)" >&2
    exit 2
fi
target="$1" seconds="$2" slow="${3:-2}"
if ! printf '%s\n' "${TARGETS[@]}" | grep -qxF -- "$target"; then
    echo "error: unknown target '$target' (see $0 --list)" >&2
    exit 2
fi
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ && "$slow" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: SECONDS and SLOW_SECONDS must be positive integers" >&2
    exit 2
fi

# Longest input per target: a little above the budget of the parser it feeds (token 16 KiB,
# assertion 16 KiB, CEL expression 16 KiB, client data 4 KiB + authenticator data 16 KiB,
# tuple strings 512 bytes, form: 64 parameters of 4 KiB); the structured targets need a few KiB
# of generator input.
case "$target" in
    dsl::bytes) max_len=66560 ;;
    model_json::bytes) max_len=131072 ;;
    jwt::*|oauth::client_assertion|condition::*) max_len=17408 ;;
    oauth::*) max_len=9216 ;;
    webauthn::*) max_len=21504 ;;
    tuples::*) max_len=1200 ;;
    authzen::*) max_len=4096 ;;
    *) max_len=8192 ;;
esac

# The tool, pinned, built once into ~/.cargo/bin (only the libFuzzer engine).
BOLERO_VERSION=0.13.5
if ! cargo bolero --version 2>/dev/null | grep -qxF "cargo-bolero $BOLERO_VERSION"; then
    cargo install --locked --quiet cargo-bolero --version "$BOLERO_VERSION" \
        --no-default-features --features libfuzzer
fi

target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
log="$(mktemp -t "fuzz-${target//::/-}.XXXXXX.log")"
echo "== fuzzing $target for ${seconds}s (inputs up to $max_len bytes, slow input: >${slow}s); log: $log"
set +e
cargo bolero test "$target" \
    --package trustgate-fuzz \
    --sanitizer NONE \
    --target-dir "$target_dir" \
    --max-input-length "$max_len" \
    --timeout "${slow}s" \
    -T "${seconds}s" \
    --engine-args="-report_slow_units=1 -print_final_stats=1 -rss_limit_mb=2048 -malloc_limit_mb=1024" \
    >"$log" 2>&1
status=$?
set -e
grep -E "^(#[0-9]+ +(INITED|DONE)|Done |==[0-9]+== ERROR|.*panicked at|SUMMARY|stat::|Slowest unit|error)" "$log" || true

dir="crates/fuzz/tests/it/__fuzz__/${target//::/__}"
corpus=$(find "$dir/corpus" -type f 2>/dev/null | wc -l || true)
execs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+$" || echo "?")
slowest=$(grep -oE "Slowest unit: [0-9]+ s" "$log" | grep -oE "[0-9]+" | sort -n | tail -1 || true)
echo "== $target: status $status, execs ${execs}, corpus $corpus files, slowest unit ${slowest:-0} s (threshold ${slow} s)"
if [[ "$status" != 0 ]]; then
    if grep -q "libFuzzer: timeout" "$log"; then
        echo "error: an input ran longer than ${slow}s (super-linear?): see $log and the crashes directory" >&2
    else
        echo "error: $target failed: see $log and $dir/crashes" >&2
    fi
    exit 1
fi

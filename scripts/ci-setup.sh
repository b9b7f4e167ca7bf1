#!/usr/bin/env bash
# What a fresh machine needs before the test suite: the real protocol clients the tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r crates/cli/tests/sdk/requirements.txt

# Browser tests (crates/cli/tests/it/browser.rs): Debian's Chromium, driven by playwright-core from
# the committed package-lock.json. Playwright never downloads a browser of its own here.
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver
fi
# The systemd unit in packaging/ is checked with systemd-analyze (verify, offline security score).
if ! command -v systemd-analyze >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq systemd
fi
npm ci --prefix crates/cli/tests/e2e --no-audit --no-fund --loglevel=error
# The node oidc-provider baseline of scripts/oauth-vs-node.sh, from its committed package-lock.json.
npm ci --prefix crates/bench/node-oidc-provider --no-audit --no-fund --loglevel=error

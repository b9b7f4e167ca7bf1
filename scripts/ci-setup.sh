#!/usr/bin/env bash
# What a fresh machine needs before the test suite: the real protocol clients the tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r crates/cli/tests/sdk/requirements.txt

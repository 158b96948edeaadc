#!/usr/bin/env bash
# Runs the whole test suite: starts the local services if needed, builds every target once,
# then runs unit tests, crate integration tests and the fleet tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/services.sh >/dev/null
# The Snowflake connector is tested against fakesnow's server, kept in its own virtualenv.
venv=target/fakesnow
if ! "$venv/bin/python" -c 'import fakesnow.server' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r tests/snowflake/requirements.txt
fi
cargo build --workspace --all-targets
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2

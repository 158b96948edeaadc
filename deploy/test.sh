#!/usr/bin/env bash
# Runs the whole test suite: starts the local services if needed, builds every target once,
# then runs unit tests, crate integration tests and the fleet tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/services.sh >/dev/null
cargo build --workspace --all-targets
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2

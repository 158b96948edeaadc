#!/usr/bin/env bash
# Runs the whole test suite: starts the local services if needed, checks formatting and lints,
# builds every target once, then runs unit tests, crate integration tests and the fleet tests
# in tests/, then the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/services.sh >/dev/null
# The Snowflake, BigQuery, Databricks and S3 connectors are tested against stand-ins (fakesnow,
# DuckDB-backed servers and moto, tests/warehouses/), kept in their own virtualenv.
venv=target/stand-ins
if ! "$venv/bin/python" -c 'import fakesnow.server, moto.server, openapi_spec_validator' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet -r tests/warehouses/requirements.txt
fi
# The web page is tested in headless Chromium, driven through chromedriver.
if ! command -v chromedriver >/dev/null || ! [ -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# Formatting and lints first: a change that fails them fails the suite.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# --lib --tests rather than --all-targets: the fuzz targets are libFuzzer programs (built above,
# run by fuzz.sh), not test harnesses; their checks run here through fuzz/tests/corpus.rs.
cargo test --workspace --lib --tests --no-fail-fast -- --test-threads=2
# The fuzz targets, each for a bounded time from the checked-in seeds.
./deploy/fuzz.sh

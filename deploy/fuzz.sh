#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (FUZZ_SECONDS, 60 by default) from its checked-in
# seed corpus, with cargo-fuzz and libFuzzer. A failing input is copied to
# fuzz/regressions/<target>/, where the ordinary test suite replays it, and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes unstable compiler flags; the stable toolchain accepts them with this set.
export RUSTC_BOOTSTRAP=1
# The targets are safe Rust: libFuzzer looks for panics, so no sanitizer is built in.
flags=(--sanitizer none --dev --target-dir target/fuzz)
cargo fuzz build "${flags[@]}"
status=0
for target in spec date_format payload; do
  work=target/fuzz/corpus/$target
  rm -rf "target/fuzz/artifacts/$target"
  mkdir -p "$work" "target/fuzz/artifacts/$target"
  cp fuzz/corpus/$target/* "$work/"
  if ! cargo fuzz run "${flags[@]}" "$target" "$work" -- \
      -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="target/fuzz/artifacts/$target/"; then
    cp target/fuzz/artifacts/$target/* "fuzz/regressions/$target/" 2>/dev/null || true
    echo "fuzz target $target failed; the input is in fuzz/regressions/$target/" >&2
    status=1
  fi
done
exit $status

//! `cargo bench --bench e2e`: builds the release binary, then runs `benches/e2e.sh` with it,
//! which generates the source tables, runs the baselines and Sluice in the same run and prints
//! the ratio table. `ROWS`, `EVENTS`, `PROCS` and `CHUNK_ROWS` pass through from the
//! environment.

use std::process::{exit, Command};

fn main() {
    // `cargo bench` passes libtest flags such as `--bench`; this entry takes none.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/e2e.sh");
    let status = Command::new("bash")
        .arg(script)
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .status()
        .unwrap_or_else(|e| {
            eprintln!("running {script}: {e}");
            exit(2)
        });
    exit(status.code().unwrap_or(1));
}

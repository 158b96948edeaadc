//! Warehouse stand-ins written in Python (fakesnow for Snowflake, DuckDB-backed servers for
//! BigQuery and Databricks SQL, moto for S3), run from the virtualenv `deploy/test.sh` prepares, each on a
//! port the system picks and prints, and stopped when the test drops them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running stand-in, stopped on drop.
pub struct StandIn {
    pub port: u16,
    /// The first line the stand-in printed: its port, or a JSON object with `port` and
    /// whatever else the test needs (credentials it made).
    pub announced: serde_json::Value,
    child: Child,
}

/// The virtualenv's Python, where the stand-ins and test tools are installed.
pub fn python() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("SLUICE_STAND_IN_PYTHON")
        .unwrap_or_else(|_| format!("{root}/target/stand-ins/bin/python"));
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: deploy/test.sh installs it (tests/warehouses/requirements.txt)"
    );
    python
}

impl StandIn {
    /// Starts `script` (relative to the repository) with `args` and waits until it listens.
    pub fn start(script: &str, args: &[&str]) -> StandIn {
        Self::start_on(None, script, args)
    }

    /// Starts `script` on `host` (inside its namespace; it is given `--host ADDRESS` and
    /// must listen there), or on 127.0.0.1 without one.
    pub fn start_on(host: Option<&super::hosts::Host>, script: &str, args: &[&str]) -> StandIn {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut command = match host {
            Some(host) => {
                let mut command = host.command(&python());
                command.args([&format!("{root}/{script}"), "--host", &host.addr]);
                command
            }
            None => {
                let mut command = Command::new(python());
                command.arg(format!("{root}/{script}"));
                command
            }
        };
        let addr = host.map_or("127.0.0.1", |h| h.addr.as_str());
        let mut child = command
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let announced: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|_| panic!("{script} printed {line:?}, not its port"));
        let port = announced
            .as_u64()
            .or_else(|| announced["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{script} printed {line:?}, not its port"));
        let started = Instant::now();
        while std::net::TcpStream::connect((addr, port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{script} exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{script} did not listen"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        StandIn {
            port,
            announced,
            child,
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

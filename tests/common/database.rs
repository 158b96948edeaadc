//! A PostgreSQL server of a test's own (the machine's PostgreSQL binaries, a fresh cluster in
//! a temporary directory, trust authentication), so the test can restart the database under a
//! running fleet without disturbing other tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A private PostgreSQL cluster; stopped and removed on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// Runs a PostgreSQL program as the user the cluster belongs to: `postgres` when the test
/// runs as root (the server refuses root), the test's own user otherwise.
fn as_owner(program: &PathBuf) -> Command {
    if root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// True when the test runs as root.
fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    pub fn start() -> PrivatePostgres {
        let versions = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed by deploy/services.sh");
        let mut bins: Vec<PathBuf> = versions
            .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        bins.sort();
        let bin = bins.pop().expect("a PostgreSQL version with initdb");
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let dir = std::env::temp_dir().join(format!("sluice-pg-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        if root() {
            let owned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let db = PrivatePostgres {
            port: super::free_port(),
            bin,
            dir,
        };
        let initdb = as_owner(&db.bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(db.dir.join("data"))
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        db.pg_ctl(&["start"]);
        db
    }

    /// `postgres://postgres@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = as_owner(&self.bin.join("pg_ctl"))
            .args(action)
            .args(["-w", "-t", "60", "-D"])
            .arg(self.dir.join("data"))
            .args(["-l"])
            .arg(self.dir.join("server.log"))
            .args(["-o", &options])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (open transactions are lost), as a crash would.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
    }

    /// Starts the server again and waits until it accepts connections.
    pub fn restart(&self) {
        self.pg_ctl(&["start"]);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not come back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

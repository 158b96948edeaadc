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
    /// The address it listens on.
    pub addr: String,
    /// The host (network namespace) it runs on; `None` for the test's own.
    netns: Option<String>,
}

/// Runs a PostgreSQL program as the user the cluster belongs to: `postgres` when the test
/// runs as root (the server refuses root), the test's own user otherwise; inside `netns` when
/// given.
fn as_owner(program: &PathBuf, netns: Option<&str>) -> Command {
    let mut words: Vec<std::ffi::OsString> = Vec::new();
    if let Some(netns) = netns {
        words.extend(["ip", "netns", "exec", netns].map(Into::into));
    }
    if root() {
        words.extend(["runuser", "-u", "postgres", "--"].map(Into::into));
    }
    words.push(program.into());
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

/// True when the test runs as root.
fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

impl PrivatePostgres {
    /// Creates the cluster and starts it on 127.0.0.1.
    pub fn start() -> PrivatePostgres {
        Self::start_on(None)
    }

    /// Creates the cluster and starts it on `host`'s address, inside its namespace, or on
    /// 127.0.0.1 without one.
    pub fn start_on(host: Option<&super::hosts::Host>) -> PrivatePostgres {
        Self::start_at(
            host.map(|h| h.netns.as_str()),
            host.map_or("127.0.0.1", |h| h.addr.as_str()),
        )
    }

    /// Creates the cluster and starts it on 127.0.0.1 inside `host`'s namespace: only
    /// programs on that host reach it over TCP (the test reaches it by its socket,
    /// [`PrivatePostgres::socket_config`]).
    pub fn start_hidden_on(host: &super::hosts::Host) -> PrivatePostgres {
        Self::start_at(Some(&host.netns), "127.0.0.1")
    }

    /// A client configuration for the server's Unix socket, which any namespace reaches.
    pub fn socket_config(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    fn start_at(netns: Option<&str>, addr: &str) -> PrivatePostgres {
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
            addr: addr.to_string(),
            netns: netns.map(str::to_string),
        };
        let initdb = as_owner(&db.bin.join("initdb"), None)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(db.dir.join("data"))
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        if db.netns.is_some() && addr != "127.0.0.1" {
            // The other hosts of the test's network connect by address.
            let hba = db.dir.join("data").join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).unwrap();
            rules.push_str("host all all samenet trust\n");
            std::fs::write(&hba, rules).unwrap();
        }
        db.pg_ctl(&["start"]);
        db
    }

    /// `postgres://postgres@ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}:{}", self.addr, self.port)
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display(),
            self.addr
        );
        let out = as_owner(&self.bin.join("pg_ctl"), self.netns.as_deref())
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
        while std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_err() {
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
        let _ = as_owner(&self.bin.join("pg_ctl"), self.netns.as_deref())
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

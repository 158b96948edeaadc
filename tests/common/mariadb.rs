//! A MariaDB server of a test's own (the machine's MariaDB binaries, a fresh data directory in
//! a temporary directory, no grant checks), listening on 127.0.0.1 inside a host's namespace:
//! only programs on that host reach it over TCP; the test reaches it by its socket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private MariaDB server; killed and removed on drop.
pub struct PrivateMariadb {
    dir: PathBuf,
    /// Its TCP port on the host's 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl PrivateMariadb {
    /// Creates the data directory and starts the server inside `host`'s namespace.
    pub fn start_hidden_on(host: &super::hosts::Host) -> PrivateMariadb {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let dir = std::env::temp_dir().join(format!("sluice-mariadb-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .output()
            .expect("mariadb-install-db (mariadb-server, installed by deploy/services.sh)");
        assert!(
            install.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let port = super::free_port();
        let child = host
            .command("/usr/sbin/mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-grant-tables",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let db = PrivateMariadb { dir, port, child };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(db.socket()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "MariaDB did not start: {}",
                std::fs::read_to_string(db.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    /// The server's Unix socket, which any namespace reaches.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// A session on `database` by the socket.
    pub async fn connect(&self, database: Option<&str>) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .user(Some("root"))
            .socket(Some(self.socket().display().to_string()))
            .db_name(database);
        mysql_async::Conn::new(opts).await.unwrap()
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! An OpenSSH server of a test's own (the bastion): a configuration and host key in a
//! temporary directory, public-key authentication only, accepting the keys the test
//! authorizes, listening on 127.0.0.1 or on a host of the test's network (inside its
//! namespace). Shared by the connectors' tunnel tests and the fleet's.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running OpenSSH server; killed with its sessions and removed on drop.
pub struct Sshd {
    dir: PathBuf,
    /// The address it listens on.
    pub addr: String,
    /// Its port.
    pub port: u16,
    netns: Option<String>,
    child: Option<Child>,
}

/// A TCP port free right now on 127.0.0.1 (the namespaces' ports are as free as the test's).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Sshd {
    /// A server on 127.0.0.1 accepting `authorized` (public key lines) for every user.
    pub fn start(authorized: &[&str]) -> Sshd {
        Self::start_on(None, "127.0.0.1", authorized)
    }

    /// A server on `addr` inside `netns` (the test's own namespace when `None`).
    pub fn start_on(netns: Option<&str>, addr: &str, authorized: &[&str]) -> Sshd {
        let dir = std::env::temp_dir().join(format!("sshd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a directory for sshd");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nStrictModes no\nUsePAM no\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
        // Privilege separation wants its directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut sshd = Sshd {
            dir,
            addr: addr.to_string(),
            port,
            netns: netns.map(str::to_string),
            child: None,
        };
        sshd.new_host_key();
        sshd.authorize(authorized);
        sshd.restart();
        sshd
    }

    /// Replaces the host key (takes effect when the server starts again).
    pub fn new_host_key(&self) {
        let key = self.dir.join("host_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(self.dir.join("host_key.pub"));
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&key)
            .status()
            .expect("ssh-keygen (openssh-client, installed by deploy/services.sh)");
        assert!(keygen.success());
    }

    /// Accepts exactly these public key lines from now on.
    pub fn authorize(&self, authorized: &[&str]) {
        let lines: String = authorized.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.dir.join("authorized_keys"), lines).expect("authorized_keys");
    }

    /// The user a bastion session logs in as: the one the test runs as.
    pub fn user(&self) -> String {
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    }

    /// Starts the server and waits until it listens.
    pub fn restart(&mut self) {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "/usr/sbin/sshd"]);
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server, installed by deploy/services.sh)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {}:{}",
                self.addr,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and every session it serves (each session's process runs in a
    /// session of its own, so it is found as a descendant).
    pub fn stop(&mut self) {
        fn descendants(pid: u32) -> Vec<u32> {
            let out = Command::new("pgrep")
                .args(["-P", &pid.to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let children: Vec<u32> = out
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            let mut all = children.clone();
            for child in children {
                all.extend(descendants(child));
            }
            all
        }
        if let Some(mut child) = self.child.take() {
            for pid in descendants(child.id()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The host key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn host_key(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("host_key.pub"))
            .output()
            .expect("ssh-keygen");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

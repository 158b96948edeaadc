//! SSH tunnels against a real OpenSSH server started by the test on a loopback port (the
//! bastion), accepting only the key Sluice generated: a PostgreSQL session through the tunnel
//! works and the bastion's host key is learnt; a key the bastion does not know, a stopped
//! bastion and a changed host key each fail with their own class; a bastion restarted after
//! the tunnel closed is reached again by a new tunnel.

use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::tunnel::{generate_key, Bastion, Tunnel, TunnelError};
use sluice_connectors::Connector;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An OpenSSH server on 127.0.0.1 with a configuration and host key of its own.
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// A server accepting `authorized` (a public key line) for the current user.
    fn start(authorized: &str) -> Sshd {
        let dir = std::env::temp_dir().join(format!("sshd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(dir.join("host_key"))
            .status()
            .expect("ssh-keygen (openssh-client)");
        assert!(keygen.success());
        std::fs::write(dir.join("authorized_keys"), format!("{authorized}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nStrictModes no\nUsePAM no\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        // Privilege separation wants its directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut sshd = Sshd {
            dir,
            port,
            child: None,
        };
        sshd.restart();
        sshd
    }

    fn restart(&mut self) {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server, installed by deploy/services.sh)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and every session it serves (each session's process runs in a
    /// session of its own, so it is found as a descendant).
    fn stop(&mut self) {
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
    fn host_key(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("host_key.pub"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    fn bastion(&self) -> Bastion {
        Bastion {
            host: "127.0.0.1".into(),
            port: self.port,
            user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Checks that PostgreSQL answers through the tunnel's local port.
async fn reaches_postgres(tunnel: &Tunnel) {
    let url = format!("postgres://postgres@{}/postgres", tunnel.local);
    PostgresSource::connect(&url)
        .await
        .unwrap()
        .test()
        .await
        .unwrap();
}

/// Waits until the bastion's session of `tunnel` has closed.
async fn closed(tunnel: &Tunnel) {
    let started = Instant::now();
    while tunnel.is_open() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the session stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_database_is_reached_through_the_bastion_with_the_generated_key() {
    let (private, public) = generate_key("sluice:test").unwrap();
    let mut sshd = Sshd::start(&public);
    let tunnel = Tunnel::open(&sshd.bastion(), &private, None, ("127.0.0.1", 5432))
        .await
        .unwrap();
    assert_eq!(
        tunnel.host_key,
        sshd.host_key(),
        "the bastion's key is learnt"
    );
    reaches_postgres(&tunnel).await;
    // The pinned key is accepted again.
    let pinned = Tunnel::open(
        &sshd.bastion(),
        &private,
        Some(&tunnel.host_key),
        ("127.0.0.1", 5432),
    )
    .await
    .unwrap();
    drop(pinned);

    // The bastion is killed: the session closes; started again, a new tunnel reaches it.
    sshd.stop();
    closed(&tunnel).await;
    let err = Tunnel::open(&sshd.bastion(), &private, None, ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::Unreachable(..)), "{err}");
    sshd.restart();
    let again = Tunnel::open(&sshd.bastion(), &private, None, ("127.0.0.1", 5432))
        .await
        .unwrap();
    reaches_postgres(&again).await;
}

#[tokio::test]
async fn a_wrong_key_and_a_changed_host_key_have_their_own_classes() {
    let (_, public) = generate_key("sluice:authorized").unwrap();
    let (other, _) = generate_key("sluice:other").unwrap();
    let sshd = Sshd::start(&public);
    let err = Tunnel::open(&sshd.bastion(), &other, None, ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::Authentication(..)), "{err}");
    assert!(err.to_string().contains("authorized_keys"), "{err}");

    let pinned = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let err = Tunnel::open(&sshd.bastion(), &other, Some(pinned), ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    match &err {
        TunnelError::HostKeyChanged { presented, .. } => assert_eq!(*presented, sshd.host_key()),
        other => panic!("not a changed host key: {other}"),
    }
}

#[tokio::test]
async fn a_process_shares_one_tunnel_per_database_and_reopens_a_closed_one() {
    use sluice_connectors::tunnel::Tunnels;
    let (private, public) = generate_key("sluice:shared").unwrap();
    let mut sshd = Sshd::start(&public);
    let tunnels = Tunnels::default();
    let target = ("127.0.0.1", 5432);
    let first = tunnels
        .get(&sshd.bastion(), &private, None, target)
        .await
        .unwrap();
    let again = tunnels
        .get(&sshd.bastion(), &private, None, target)
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "one tunnel per database"
    );
    sshd.stop();
    closed(&first).await;
    sshd.restart();
    let reopened = tunnels
        .get(&sshd.bastion(), &private, None, target)
        .await
        .unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &reopened),
        "a closed tunnel is opened again"
    );
    reaches_postgres(&reopened).await;
    let err = sluice_connectors::SourceError::from(
        Tunnel::open(&sshd.bastion(), &generate_key("x").unwrap().0, None, target)
            .await
            .err()
            .unwrap(),
    );
    assert_eq!(err.code().as_str(), "tunnel_authentication");
    assert!(!err.retryable());
}

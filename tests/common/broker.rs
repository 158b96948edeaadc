//! A RabbitMQ node of a test's own (the machine's `rabbitmq-server` on ports nobody else
//! uses), so the test can stop and restart the broker without disturbing other tests.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private RabbitMQ node; stopped and its files removed on drop.
pub struct PrivateBroker {
    node: String,
    /// The address it listens on.
    addr: String,
    /// The host (network namespace) it runs on; `None` for the test's own.
    netns: Option<String>,
    port: u16,
    dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts a node on 127.0.0.1 and waits until it accepts AMQP connections.
    pub fn start() -> PrivateBroker {
        Self::start_on(None)
    }

    /// Starts a node on `host`'s address, inside its namespace (or on 127.0.0.1 without one),
    /// and waits until it accepts AMQP connections.
    pub fn start_on(host: Option<&super::hosts::Host>) -> PrivateBroker {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let dir = std::env::temp_dir().join(format!("sluice-broker-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        // guest may connect from other hosts: a spread-over-hosts fleet reaches it by address.
        std::fs::write(dir.join("rabbitmq.conf"), "loopback_users = none\n").unwrap();
        let mut broker = PrivateBroker {
            node: format!("sluice_{id}@localhost"),
            addr: host.map_or_else(|| "127.0.0.1".to_string(), |h| h.addr.clone()),
            netns: host.map(|h| h.netns.clone()),
            port: super::free_port(),
            dist_port: super::free_port(),
            dir,
            child: None,
        };
        broker.restart();
        broker
    }

    /// The node's AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}:{}/%2f", self.addr, self.port)
    }

    /// Kills the node at once, as a crash or a lost host would.
    pub fn stop(&mut self) {
        self.kill();
        let started = Instant::now();
        while std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the broker did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the node's whole process group: the Erlang VM outlives the script that
    /// started it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the node (again, with the queues it had) and waits until it listens.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        // The packaged script itself: the wrapper on PATH would switch to the rabbitmq user,
        // who cannot write this test's directory.
        let server = ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("rabbitmq-server");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, server]);
                command
            }
            None => Command::new(server),
        };
        let child = command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", &self.addr)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("HOME", &self.dir)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server is installed by deploy/services.sh");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the private broker did not listen; see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

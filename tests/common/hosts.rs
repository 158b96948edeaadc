//! Hosts of a test's own: network namespaces, each joined by a veth pair to a bridge in a
//! namespace of its own, with addresses on a /24 the test picks. The test itself reaches the
//! network through one more pair whose end stays in its namespace. Everything is removed on
//! drop; a machine where namespaces cannot be made fails the test, naming why.

use std::process::Command;

/// A private network and the hosts on it.
pub struct Network {
    tag: String,
    /// The first three octets of the network's addresses (`10.x.y`).
    pub prefix: String,
    hosts: Vec<String>,
}

/// One host: a network namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub netns: String,
    /// Its address.
    pub addr: String,
}

impl Host {
    /// `program` run inside the host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command
    }
}

/// Runs `ip` with `args`; panics naming the command and what it printed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "ip {}: {e} (deploy/services.sh installs iproute2)",
            args.join(" ")
        )
    });
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root and iproute2; this test cannot run without them)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Network {
    /// A network with its bridge, and the test's own address `PREFIX.254` on it.
    pub fn create() -> Network {
        let id = uuid::Uuid::new_v4();
        let bytes = id.as_bytes();
        let tag = id.simple().to_string()[..6].to_string();
        let prefix = format!("10.{}.{}", 200 + bytes[6] % 50, bytes[7]);
        let network = Network {
            tag: tag.clone(),
            prefix,
            hosts: Vec::new(),
        };
        let switch = network.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        // The test's own end: deleting the switch deletes the pair.
        let (mine, theirs) = (format!("sh{tag}"), format!("sb{tag}"));
        ip(&[
            "link", "add", &mine, "type", "veth", "peer", "name", &theirs,
        ]);
        ip(&["link", "set", &theirs, "netns", &switch]);
        ip(&["-n", &switch, "link", "set", &theirs, "master", "br0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", network.prefix),
            "dev",
            &mine,
        ]);
        ip(&["link", "set", &mine, "up"]);
        network
    }

    /// The tag in the names of the network's namespaces (`sluice-TAG-HOST`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn switch(&self) -> String {
        format!("sluice-{}-switch", self.tag)
    }

    /// A new host named `name` with the next address.
    pub fn host(&mut self, name: &str) -> Host {
        let n = self.hosts.len() + 1;
        let netns = format!("sluice-{}-{name}", self.tag);
        let (inside, outside) = (format!("s{}{n}a", self.tag), format!("s{}{n}b", self.tag));
        let addr = format!("{}.{n}", self.prefix);
        ip(&["netns", "add", &netns]);
        self.hosts.push(netns.clone());
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "link", "add", &inside, "type", "veth", "peer", "name", &outside,
        ]);
        ip(&["link", "set", &inside, "netns", &netns]);
        ip(&["link", "set", &outside, "netns", &self.switch()]);
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &outside,
            "master",
            "br0",
            "up",
        ]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inside,
        ]);
        ip(&["-n", &netns, "link", "set", &inside, "up"]);
        Host { netns, addr }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for netns in self.hosts.iter().chain([&self.switch()]) {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

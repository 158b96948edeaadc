//! SSH tunnels to databases in private networks: a connection through a bastion host
//! authenticates with an Ed25519 key Sluice generated (never a password), checks the
//! bastion's host key against the one pinned for the connection, and forwards a local port on
//! 127.0.0.1 to the database's host and port through `direct-tcpip` channels, one per
//! connection made to it. A connector is then opened on the local port as if the database
//! were there.

use russh::client;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How many database connections one tunnel carries at once; more wait for one to close.
const MAX_CHANNELS: usize = 16;

/// How long opening the bastion's session may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The bastion a connection goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bastion {
    /// Its host name or address.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// The user the key is authorized for.
    pub user: String,
}

impl std::fmt::Display for Bastion {
    /// `user@host:port`, as operators write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Why a tunnel could not be opened, in the classes a connection test reports.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TunnelError {
    /// The bastion could not be reached (refused, no route, timed out, not SSH).
    #[error("the SSH bastion {0} cannot be reached: {1}")]
    Unreachable(String, String),
    /// The bastion refused the connection's key.
    #[error("the SSH bastion {0} refused the key for user {1}: add the connection's public key (sluice connections keygen --ssh) to that user's authorized_keys")]
    Authentication(String, String),
    /// The bastion presented another host key than the one pinned.
    #[error("the SSH bastion {host} presented host key {presented}, not the pinned {pinned}: if the bastion's key was changed on purpose, pin the new one (sluice connections test --repin-ssh-host-key)")]
    HostKeyChanged {
        /// The bastion.
        host: String,
        /// The key it presented (SHA-256 fingerprint).
        presented: String,
        /// The key pinned for the connection.
        pinned: String,
    },
    /// The connection goes through a bastion but has no key yet.
    #[error("the connection goes through the SSH bastion {0} but has no key yet: generate one (sluice connections keygen NAME --ssh) and add its public key to the bastion user's authorized_keys")]
    NoKey(String),
    /// The bastion's host key has not been pinned by a successful test yet.
    #[error("the SSH bastion {0}'s host key is not pinned yet: test the connection (sluice connections test NAME), which pins the key the bastion presents")]
    Unpinned(String),
    /// The key kept for the connection cannot be read.
    #[error("the connection's SSH key cannot be read: {0}")]
    Key(String),
    /// The bastion would not forward to the database.
    #[error("the SSH bastion {0} would not forward to {1}: {2}")]
    Forward(String, String, String),
}

impl TunnelError {
    /// The class a connection test and a failed run report.
    pub fn code(&self) -> sluice_proto::ErrorCode {
        use sluice_proto::ErrorCode;
        match self {
            TunnelError::Unreachable(..) | TunnelError::Forward(..) => ErrorCode::TunnelUnreachable,
            TunnelError::Authentication(..) | TunnelError::NoKey(_) => {
                ErrorCode::TunnelAuthentication
            }
            TunnelError::Unpinned(_) => ErrorCode::TunnelHostKeyUnpinned,
            TunnelError::HostKeyChanged { .. } => ErrorCode::TunnelHostKeyChanged,
            TunnelError::Key(_) => ErrorCode::Internal,
        }
    }
}

/// The tunnels a process holds, one per bastion, key and database: opened on first use,
/// shared by every session to that database, opened again when the bastion closed it.
#[derive(Default)]
pub struct Tunnels {
    /// Each tunnel's slot, locked while it is opened, so opening one (which may wait for an
    /// unreachable bastion) never holds up the others.
    open: Mutex<std::collections::HashMap<String, Slot>>,
}

/// One tunnel's place in [`Tunnels`].
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Tunnel>>>>;

impl Tunnels {
    /// The process's tunnels.
    pub fn global() -> &'static Tunnels {
        static TUNNELS: std::sync::OnceLock<Tunnels> = std::sync::OnceLock::new();
        TUNNELS.get_or_init(Tunnels::default)
    }

    /// The open tunnel to `target` through `bastion` with `private_key`, or a new one.
    pub async fn get(
        &self,
        bastion: &Bastion,
        private_key: &str,
        pinned: Option<&str>,
        target: (&str, u16),
    ) -> Result<Arc<Tunnel>, TunnelError> {
        use sha2::Digest;
        let key_digest = hex_digest(sha2::Sha256::digest(private_key.as_bytes()).as_slice());
        let name = format!("{bastion}/{key_digest}/{}:{}", target.0, target.1);
        let slot = {
            let mut open = self
                .open
                .lock()
                .map_err(|_| TunnelError::Key("the tunnels' registry is poisoned".into()))?;
            open.entry(name).or_default().clone()
        };
        let mut held = slot.lock().await;
        // A tunnel learnt under another pin is not this caller's: opening again checks it.
        let reusable = |t: &&Arc<Tunnel>| t.is_open() && pinned.is_none_or(|p| p == t.host_key);
        if let Some(tunnel) = held.as_ref().filter(reusable) {
            return Ok(tunnel.clone());
        }
        // A closed tunnel stops listening now, whether or not a new one opens.
        *held = None;
        let tunnel = Arc::new(Tunnel::open(bastion, private_key, pinned, target).await?);
        *held = Some(tunnel.clone());
        Ok(tunnel)
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new Ed25519 key pair for a connection: the private key in OpenSSH's format (to seal) and
/// the public key line for the bastion's `authorized_keys`.
pub fn generate_key(comment: &str) -> Result<(String, String), TunnelError> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let private = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| TunnelError::Key(e.to_string()))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| TunnelError::Key(e.to_string()))?;
    Ok((private, public))
}

/// What the session learns of the bastion's host key.
struct Checker {
    /// The fingerprint pinned for the connection; any key is accepted (and recorded) when
    /// none is pinned yet.
    pinned: Option<String>,
    /// The fingerprint the bastion presented.
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(cert) => {
                cert.public_key().fingerprint(HashAlg::Sha256)
            }
        }
        .to_string();
        let accepted = self.pinned.as_ref().is_none_or(|p| *p == fingerprint);
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some(fingerprint);
        }
        Ok(accepted)
    }
}

/// An open tunnel: a local port forwarding to the database through the bastion, until
/// dropped.
pub struct Tunnel {
    /// The local address a connector connects to instead of the database's.
    pub local: std::net::SocketAddr,
    /// The bastion's host key (SHA-256 fingerprint), to pin on the first successful test.
    pub host_key: String,
    session: Arc<client::Handle<Checker>>,
    stop: CancellationToken,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tunnel {
    /// Whether the bastion's session is still open.
    pub fn is_open(&self) -> bool {
        !self.session.is_closed()
    }

    /// Opens a session on `bastion` with `private_key` (OpenSSH format), checks its host key
    /// against `pinned`, and forwards a new local port to `target` (`host`, `port`).
    pub async fn open(
        bastion: &Bastion,
        private_key: &str,
        pinned: Option<&str>,
        target: (&str, u16),
    ) -> Result<Tunnel, TunnelError> {
        let at = format!("{}:{}", bastion.host, bastion.port);
        let key = PrivateKey::from_openssh(private_key.as_bytes())
            .map_err(|e| TunnelError::Key(e.to_string()))?;
        let presented = Arc::new(Mutex::new(None));
        let checker = Checker {
            pinned: pinned.map(str::to_string),
            presented: presented.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let connecting = client::connect(config, (bastion.host.as_str(), bastion.port), checker);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await;
        let presented = presented.lock().ok().and_then(|p| p.clone());
        let mut session = match connected {
            Err(_) => {
                return Err(TunnelError::Unreachable(
                    at,
                    format!("no answer within {CONNECT_TIMEOUT:?}"),
                ))
            }
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                return Err(match (&presented, pinned) {
                    (Some(presented), Some(pinned)) if presented != pinned => {
                        TunnelError::HostKeyChanged {
                            host: at,
                            presented: presented.clone(),
                            pinned: pinned.to_string(),
                        }
                    }
                    _ => TunnelError::Unreachable(at, e.to_string()),
                })
            }
        };
        let auth = session
            .authenticate_publickey(
                bastion.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), None),
            )
            .await
            .map_err(|e| TunnelError::Unreachable(at.clone(), e.to_string()))?;
        if !auth.success() {
            return Err(TunnelError::Authentication(at, bastion.user.clone()));
        }
        let session = Arc::new(session);
        let (host, port) = (target.0.to_string(), target.1);
        // One channel is opened at once, so a bastion that will not forward says so here.
        let probe = session
            .channel_open_direct_tcpip(host.clone(), u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| {
                TunnelError::Forward(at.clone(), format!("{host}:{port}"), e.to_string())
            })?;
        drop(probe);
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| TunnelError::Unreachable(at.clone(), e.to_string()))?;
        let local = listener
            .local_addr()
            .map_err(|e| TunnelError::Unreachable(at.clone(), e.to_string()))?;
        let stop = CancellationToken::new();
        tokio::spawn(forward(
            listener,
            session.clone(),
            (host, port),
            stop.clone(),
        ));
        Ok(Tunnel {
            local,
            host_key: presented.unwrap_or_default(),
            session,
            stop,
        })
    }
}

/// Accepts connections on the local port until `stop`, each carried by its own channel, at
/// most [`MAX_CHANNELS`] at once.
async fn forward(
    listener: TcpListener,
    session: Arc<client::Handle<Checker>>,
    (host, port): (String, u16),
    stop: CancellationToken,
) {
    let channels = Arc::new(tokio::sync::Semaphore::new(MAX_CHANNELS));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            permit = channels.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut socket, peer)) = accepted else {
            continue;
        };
        let session = session.clone();
        let host = host.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let channel = session
                .channel_open_direct_tcpip(
                    host,
                    u32::from(port),
                    peer.ip().to_string(),
                    u32::from(peer.port()),
                )
                .await;
            let Ok(channel) = channel else {
                tracing::warn!(
                    "the SSH bastion would not open a channel; the connection is dropped"
                );
                return;
            };
            let _permit = permit;
            let mut stream = channel.into_stream();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut socket, &mut stream) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_its_public_line_is_for_authorized_keys() {
        let (private, public) = generate_key("sluice:acme/crm").unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(public.starts_with("ssh-ed25519 ") && public.ends_with(" sluice:acme/crm"));
        let key = PrivateKey::from_openssh(private.as_bytes()).unwrap();
        assert_eq!(key.public_key().to_openssh().unwrap(), public);
        assert_ne!(generate_key("x").unwrap().0, generate_key("x").unwrap().0);
    }
}

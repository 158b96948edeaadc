//! What a connection's sealed credentials hold: the source's URL and, for a database in a
//! private network, the SSH bastion it is reached through with the connection's own key and
//! the bastion's pinned host key. A connection without a bastion seals its URL alone, as it
//! always has.

use crate::error::SourceError;
use crate::registry::Kind;
use crate::tunnel::{Bastion, TunnelError, Tunnels};
use serde::{Deserialize, Serialize};

/// A connection's sealed credentials, opened.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The source's URL, as declared (credentials included).
    pub url: String,
    /// The bastion the source is reached through, when it is in a private network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshRoute>,
}

/// The way to a database through an SSH bastion.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshRoute {
    /// The bastion's host name or address.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// The user the connection's key is authorized for.
    pub user: String,
    /// The connection's private key (OpenSSH format); none until one is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// A newly generated key, used once a test sees the bastion accept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_key: Option<String>,
    /// The bastion's host key (SHA-256 fingerprint), pinned by the first successful test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &sluice_proto::bus::redact_url(&self.url))
            .field("ssh", &self.ssh)
            .finish()
    }
}

impl std::fmt::Debug for SshRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRoute")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<sealed>"),
            )
            .field(
                "pending_key",
                &self.pending_key.as_ref().map(|_| "<sealed>"),
            )
            .field("host_key", &self.host_key)
            .finish()
    }
}

impl SshRoute {
    /// The bastion this route goes through.
    pub fn bastion(&self) -> Bastion {
        Bastion {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

/// How a tunnel checks the bastion's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// Only the pinned key is accepted, and a bastion without one is refused: how runs,
    /// planning and previews connect.
    Pinned,
    /// The pinned key is checked; with none pinned yet, the key presented is learnt: how a
    /// connection test and `apply` connect.
    Learn,
    /// Any key is accepted and learnt, replacing the pinned one: re-pinning on purpose.
    Repin,
}

impl Endpoint {
    /// A source reached directly.
    pub fn direct(url: impl Into<String>) -> Self {
        Endpoint {
            url: url.into(),
            ssh: None,
        }
    }

    /// Reads sealed credentials: a document with the URL and its bastion, or the URL alone.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        if !text.starts_with('{') {
            return Ok(Endpoint::direct(text));
        }
        serde_json::from_str(text)
            .map_err(|e| SourceError::Secret(format!("connection credentials: {e}")))
    }

    /// Whether the source can be connected to: a bastion needs the connection's key first.
    pub fn keyed(&self) -> bool {
        self.ssh
            .as_ref()
            .is_none_or(|ssh| ssh.private_key.is_some())
    }

    /// The text to seal: the URL alone when there is no bastion.
    pub fn to_text(&self) -> String {
        match &self.ssh {
            None => self.url.clone(),
            Some(_) => serde_json::to_string(self).unwrap_or_else(|_| self.url.clone()),
        }
    }

    /// The URL a connector opens: the source's own, or the local end of a tunnel through the
    /// bastion (opened now, or the process's open one), with the host key the bastion
    /// presented.
    pub(crate) async fn route(
        &self,
        kind: &Kind,
        check: HostKeyCheck,
    ) -> Result<(String, Option<String>), SourceError> {
        let Some(ssh) = &self.ssh else {
            return Ok((self.url.clone(), None));
        };
        let Some(default_port) = kind.tunnel_port else {
            return Err(SourceError::InvalidSpec(format!(
                "a {} connection cannot go through an SSH bastion; postgres, redshift and mysql connections can",
                kind.name
            )));
        };
        let at = format!("{}:{}", ssh.host, ssh.port);
        let private_key = ssh
            .private_key
            .as_deref()
            .ok_or_else(|| TunnelError::NoKey(at.clone()))?;
        let pinned = match check {
            HostKeyCheck::Pinned => Some(
                ssh.host_key
                    .as_deref()
                    .ok_or_else(|| TunnelError::Unpinned(at.clone()))?,
            ),
            HostKeyCheck::Learn => ssh.host_key.as_deref(),
            HostKeyCheck::Repin => None,
        };
        let mut url = url::Url::parse(&self.url)
            .map_err(|e| SourceError::InvalidSpec(format!("connection url: {e}")))?;
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                SourceError::InvalidSpec(
                    "connection url: names no database host for the bastion to forward to".into(),
                )
            })?;
        let port = url.port().unwrap_or(default_port);
        let tunnel = Tunnels::global()
            .get(&ssh.bastion(), private_key, pinned, (&host, port))
            .await?;
        let local = tunnel.local;
        let rewritten = url
            .set_host(Some(&local.ip().to_string()))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                url.set_port(Some(local.port()))
                    .map_err(|()| "takes no port".to_string())
            });
        rewritten.map_err(|e| SourceError::InvalidSpec(format!("connection url: {e}")))?;
        Ok((url.to_string(), Some(tunnel.host_key.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_alone_reads_as_a_direct_endpoint_and_is_sealed_as_it_was() {
        let plain = "postgres://u:secret@db:5432/crm";
        let endpoint = Endpoint::parse(plain).unwrap();
        assert_eq!(endpoint, Endpoint::direct(plain));
        assert_eq!(endpoint.to_text(), plain);
    }

    #[test]
    fn a_bastion_travels_with_its_key_and_pin_and_never_shows_them() {
        let endpoint = Endpoint {
            url: "mysql://u:secret@10.0.0.5/crm".into(),
            ssh: Some(SshRoute {
                host: "bastion.example.com".into(),
                port: 22,
                user: "sluice".into(),
                private_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----".into()),
                pending_key: None,
                host_key: Some("SHA256:abc".into()),
            }),
        };
        let text = endpoint.to_text();
        assert_eq!(Endpoint::parse(&text).unwrap(), endpoint);
        let shown = format!("{endpoint:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(shown.contains("bastion.example.com") && shown.contains("SHA256:abc"));
    }
}

//! Connection lifecycle beyond `apply`: listing, testing (which promotes a Snowflake or SSH
//! key being rotated in once it logs in, and pins an SSH bastion's host key), generating key
//! pairs, and deleting only when no import uses the connection.

use sluice_connectors::snowflake::PendingKey;
use sluice_connectors::{Endpoint, HostKeyCheck, Source, SourceError, SshRoute};
use tokio_postgres::GenericClient;

/// Why a connection could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No connection of that name in the workspace.
    #[error("connection {name:?} not found in workspace {workspace:?}")]
    NotFound {
        /// The workspace.
        workspace: String,
        /// The connection.
        name: String,
    },
    /// Imports still read through the connection.
    #[error("connection {name:?} is used by {}; delete or move those imports first", .imports.join(", "))]
    InUse {
        /// The connection.
        name: String,
        /// The imports that use it.
        imports: Vec<String>,
    },
    /// The connection failed its test.
    #[error("connection {name:?}: {error}")]
    Test {
        /// The connection.
        name: String,
        /// What failed.
        error: sluice_connectors::SourceError,
    },
    /// Key pairs are for Snowflake connections.
    #[error("connection {name:?} is a {kind} connection; key pairs are for snowflake connections")]
    NotSnowflake {
        /// The connection.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// SSH keys are for connections that declare a bastion.
    #[error("connection {name:?} declares no SSH bastion; add `ssh: {{ host, port, user }}` to it first")]
    NoBastion {
        /// The connection.
        name: String,
    },
    /// The stored credentials could not be opened or sealed.
    #[error("{0}")]
    Sealed(String),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// What a connection test found besides "it works".
#[derive(Debug, Default)]
pub struct Tested {
    /// A pending key logged in and replaced the old credentials; the statement retires the
    /// old key's slot, when there was one.
    pub promoted: Option<Option<String>>,
    /// A pending key was refused; the old credentials stay in use.
    pub pending_refused: Option<sluice_connectors::SourceError>,
    /// The host key (SHA-256 fingerprint) of the SSH bastion the connection goes through.
    pub host_key: Option<String>,
    /// This test pinned that host key (the first test, or a re-pin).
    pub pinned: bool,
}

/// A declared connection's credentials as apply seals them: the URL (a Snowflake
/// connection's stored key pair carried over) and its bastion, with the key generated for it
/// and, while the bastion stays the same, the host key pinned.
pub fn declared(
    c: &crate::spec::ConnectionDecl,
    stored: Option<(sluice_proto::ConnectionKind, String)>,
) -> Endpoint {
    use sluice_proto::ConnectionKind;
    let old = stored.map(|(kind, text)| {
        let endpoint = Endpoint::parse(&text).unwrap_or_else(|_| Endpoint::direct(text));
        (kind, endpoint)
    });
    let url = match &old {
        Some((kind, old))
            if *kind == ConnectionKind::SNOWFLAKE && c.kind == ConnectionKind::SNOWFLAKE =>
        {
            sluice_connectors::snowflake::keep_stored_key(&c.url, &old.url)
        }
        _ => c.url.clone(),
    };
    let kept = old.as_ref().and_then(|(_, e)| e.ssh.as_ref());
    let ssh = c.ssh.as_ref().map(|d| SshRoute {
        host: d.host.clone(),
        port: d.port,
        user: d.user.clone(),
        private_key: kept.and_then(|k| k.private_key.clone()),
        pending_key: kept.and_then(|k| k.pending_key.clone()),
        host_key: kept
            .filter(|k| k.host == d.host && k.port == d.port)
            .and_then(|k| k.host_key.clone()),
    });
    Endpoint { url, ssh }
}

async fn stored(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    workspace: &str,
    name: &str,
) -> Result<(i64, sluice_proto::ConnectionKind, String), ConnectionError> {
    let row = client
        .query_opt(
            "SELECT c.id, c.credentials, c.kind FROM control.connections c JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 AND c.name = $2",
            &[&workspace, &name],
        )
        .await?
        .ok_or_else(|| ConnectionError::NotFound {
            workspace: workspace.to_string(),
            name: name.to_string(),
        })?;
    let url = crate::apply::open_credentials(key, name, &row.get(1))
        .map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    let kind = sluice_proto::ConnectionKind::new(row.get::<_, String>(2));
    Ok((row.get(0), kind, url))
}

async fn store_url(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    id: i64,
    url: &str,
) -> Result<(), ConnectionError> {
    let sealed = serde_json::to_value(key.seal(url.as_bytes()))
        .map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    client
        .execute(
            "UPDATE control.connections SET credentials = $2, updated_at = now() WHERE id = $1",
            &[&id, &sealed],
        )
        .await?;
    Ok(())
}

/// Connects to a stored connection's warehouse the way the extractor does (read-only session,
/// UTC, statement timeout); the error says what failed: the tunnel, unreachable,
/// authentication, permission or a missing object. A Snowflake or SSH key waiting to be
/// rotated in is tried too, and replaces the old one once it logs in. A bastion's host key
/// is pinned by the first successful test, and again when `repin` says so.
pub async fn test(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    workspace: &str,
    name: &str,
    repin: bool,
) -> Result<Tested, ConnectionError> {
    let (id, kind, url) = stored(client, key, workspace, name).await?;
    let failed = |error| ConnectionError::Test {
        name: name.to_string(),
        error,
    };
    let mut tested = Tested::default();
    if kind == sluice_proto::ConnectionKind::SNOWFLAKE {
        match sluice_connectors::snowflake::try_pending_key(&url)
            .await
            .map_err(failed)?
        {
            PendingKey::None => {}
            PendingKey::Promoted { url, retire } => {
                store_url(client, key, id, &url).await?;
                tested.promoted = Some(retire);
                return Ok(tested);
            }
            PendingKey::Refused(e) => tested.pending_refused = Some(e),
        }
    }
    let mut endpoint = Endpoint::parse(&url).map_err(failed)?;
    let check = if repin {
        HostKeyCheck::Repin
    } else {
        HostKeyCheck::Learn
    };
    let pending = endpoint
        .ssh
        .as_ref()
        .and_then(|ssh| ssh.pending_key.clone());
    if let Some(pending) = pending {
        let mut trial = endpoint.clone();
        if let Some(ssh) = trial.ssh.as_mut() {
            ssh.private_key = Some(pending);
            ssh.pending_key = None;
        }
        match try_open(&kind, &trial, check).await {
            Ok(source) => {
                tested.promoted = Some(None);
                endpoint = trial;
                return pin(client, key, id, endpoint, &source, tested).await;
            }
            Err(e @ SourceError::Tunnel(_))
                if e.code() == sluice_proto::ErrorCode::TunnelAuthentication =>
            {
                tested.pending_refused = Some(e);
            }
            Err(e) => return Err(failed(e)),
        }
    }
    let source = try_open(&kind, &endpoint, check).await.map_err(failed)?;
    pin(client, key, id, endpoint, &source, tested).await
}

/// Opens and tests a source.
async fn try_open(
    kind: &sluice_proto::ConnectionKind,
    endpoint: &Endpoint,
    check: HostKeyCheck,
) -> Result<Source, SourceError> {
    let source = Source::open_checking(kind, &endpoint.to_text(), check).await?;
    source.test().await?;
    Ok(source)
}

/// Keeps what a successful test learnt: the bastion's host key, and a promoted key.
async fn pin(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    id: i64,
    mut endpoint: Endpoint,
    source: &Source,
    mut tested: Tested,
) -> Result<Tested, ConnectionError> {
    let presented = source.host_key().map(str::to_string);
    let mut changed = tested.promoted.is_some();
    if let (Some(ssh), Some(presented)) = (endpoint.ssh.as_mut(), &presented) {
        if ssh.host_key.as_ref() != Some(presented) {
            ssh.host_key = Some(presented.clone());
            tested.pinned = true;
            changed = true;
        }
    }
    tested.host_key = presented;
    if changed {
        store_url(client, key, id, &endpoint.to_text()).await?;
    }
    Ok(tested)
}

/// Generates an Ed25519 key pair for a connection that goes through an SSH bastion and
/// returns the public key line for the bastion's `authorized_keys`. The first key is used at
/// once; a later one waits as the pending key until a test sees the bastion accept it, so a
/// rotation never stops the imports.
pub async fn keygen_ssh(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    workspace: &str,
    name: &str,
) -> Result<(String, SshRoute), ConnectionError> {
    let (id, _, url) = stored(client, key, workspace, name).await?;
    let mut endpoint = Endpoint::parse(&url).map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    let Some(ssh) = endpoint.ssh.as_mut() else {
        return Err(ConnectionError::NoBastion {
            name: name.to_string(),
        });
    };
    let (private, public) =
        sluice_connectors::tunnel::generate_key(&format!("sluice:{workspace}/{name}"))
            .map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    if ssh.private_key.is_none() {
        ssh.private_key = Some(private);
    } else {
        ssh.pending_key = Some(private);
    }
    let route = ssh.clone();
    store_url(client, key, id, &endpoint.to_text()).await?;
    Ok((public, route))
}

/// Generates a key pair for a Snowflake connection and keeps its private key sealed as the
/// pending key; the old credentials stay in use until `test` sees the new key log in.
pub async fn keygen(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    workspace: &str,
    name: &str,
) -> Result<sluice_connectors::snowflake::Rotation, ConnectionError> {
    let (id, kind, url) = stored(client, key, workspace, name).await?;
    if kind != sluice_proto::ConnectionKind::SNOWFLAKE {
        return Err(ConnectionError::NotSnowflake {
            name: name.to_string(),
            kind: kind.as_str().to_string(),
        });
    }
    let rotation =
        sluice_connectors::snowflake::keygen(&url).map_err(|error| ConnectionError::Test {
            name: name.to_string(),
            error,
        })?;
    store_url(client, key, id, rotation.url.expose()).await?;
    Ok(rotation)
}

/// A listed connection: never its credentials.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// How many imports read from it.
    pub imports: i64,
    /// The SSH bastion it goes through, when it declares one (opened with `key`).
    pub ssh: Option<SshRoute>,
}

/// A workspace's connections; with the master key, the bastion each goes through.
pub async fn list(
    client: &impl GenericClient,
    key: Option<&sluice_proto::secrets::MasterKey>,
    workspace: &str,
) -> Result<Vec<Listed>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT c.name, c.kind, (SELECT count(*) FROM control.imports i WHERE i.connection_id = c.id),
                    c.credentials
               FROM control.connections c JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 ORDER BY c.name",
            &[&workspace],
        )
        .await?
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let ssh = key
                .and_then(|key| crate::apply::open_credentials(key, &name, &r.get(3)).ok())
                .and_then(|text| Endpoint::parse(&text).ok())
                .and_then(|e| e.ssh);
            Listed {
                name,
                kind: r.get(1),
                imports: r.get(2),
                ssh,
            }
        })
        .collect())
}

/// Deletes a connection no import uses; otherwise names the imports (with their state, and
/// `running` when a run is active) and deletes nothing.
pub async fn delete(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    name: &str,
) -> Result<(), ConnectionError> {
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_opt(
            "SELECT c.id FROM control.connections c JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 AND c.name = $2 FOR UPDATE OF c",
            &[&workspace, &name],
        )
        .await?
        .ok_or_else(|| ConnectionError::NotFound {
            workspace: workspace.to_string(),
            name: name.to_string(),
        })?
        .get(0);
    let users: Vec<String> = tx
        .query(
            "SELECT i.name || ' (' || CASE WHEN EXISTS (SELECT 1 FROM control.runs r WHERE r.import_id = i.id
                                                     AND r.status IN ('queued', 'planning', 'running'))
                                           THEN 'running' ELSE i.state END || ')'
               FROM control.imports i WHERE i.connection_id = $1 ORDER BY i.name",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !users.is_empty() {
        return Err(ConnectionError::InUse {
            name: name.to_string(),
            imports: users,
        });
    }
    tx.execute("DELETE FROM control.connections WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::ConnectionKind;

    fn decl(host: &str, port: u16) -> crate::spec::ConnectionDecl {
        crate::spec::ConnectionDecl {
            name: "crm".into(),
            kind: ConnectionKind::POSTGRES,
            url: "postgres://u@10.0.0.5/crm".into(),
            ssh: Some(crate::spec::SshDecl {
                host: host.into(),
                port,
                user: "sluice".into(),
            }),
        }
    }

    #[test]
    fn a_reapplied_bastion_keeps_its_key_and_its_pin_while_it_stays_the_same_host() {
        let first = declared(&decl("bastion", 22), None);
        let ssh = first.ssh.clone().unwrap();
        assert_eq!((ssh.private_key, ssh.host_key), (None, None));
        let mut stored = first;
        if let Some(ssh) = stored.ssh.as_mut() {
            ssh.private_key = Some("KEY".into());
            ssh.host_key = Some("SHA256:pin".into());
        }
        let stored = Some((ConnectionKind::POSTGRES, stored.to_text()));
        let same = declared(&decl("bastion", 22), stored.clone()).ssh.unwrap();
        assert_eq!(same.private_key.as_deref(), Some("KEY"));
        assert_eq!(same.host_key.as_deref(), Some("SHA256:pin"));
        let moved = declared(&decl("bastion", 2222), stored.clone())
            .ssh
            .unwrap();
        assert_eq!(moved.private_key.as_deref(), Some("KEY"));
        assert_eq!(moved.host_key, None, "another bastion is pinned again");
        let mut direct = decl("bastion", 22);
        direct.ssh = None;
        let direct = declared(&direct, stored);
        assert_eq!(direct.to_text(), "postgres://u@10.0.0.5/crm");
        assert!(direct.keyed());
        assert!(!declared(&decl("b", 22), None).keyed());
    }
}

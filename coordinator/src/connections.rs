//! Connection lifecycle beyond `apply`: listing, testing (which promotes a Snowflake key
//! being rotated in once it logs in), generating key pairs, and deleting only when no import
//! uses the connection.

use sluice_connectors::snowflake::PendingKey;
use sluice_connectors::Source;
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
/// UTC, statement timeout); the error says what failed: unreachable, authentication,
/// permission or a missing object. A Snowflake key waiting to be rotated in is tried too, and
/// replaces the old credentials once it logs in.
pub async fn test(
    client: &impl GenericClient,
    key: &sluice_proto::secrets::MasterKey,
    workspace: &str,
    name: &str,
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
    let source = Source::open(&kind, &url).await.map_err(failed)?;
    source.test().await.map_err(failed)?;
    Ok(tested)
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

/// A workspace's connections: (name, kind, imports using it).
pub async fn list(
    client: &impl GenericClient,
    workspace: &str,
) -> Result<Vec<(String, String, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT c.name, c.kind, (SELECT count(*) FROM control.imports i WHERE i.connection_id = c.id)
               FROM control.connections c JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 ORDER BY c.name",
            &[&workspace],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
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

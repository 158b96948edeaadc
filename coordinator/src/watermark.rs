//! Every move of a watermark: the advance when a run's last chunk loads, and the operations
//! outside runs, each audited with who, when, from and to: a full resync (the next run reads
//! everything), a rewind to a time (the next run reads every row from that time on) and a
//! replay (a window read again, the watermark left where it is). Upserts and event dedup keys
//! make the re-read rows harmless.

use crate::apply::{open_credentials, source_spec};
use crate::spec::ImportDecl;
use chrono::{DateTime, Utc};
use sluice_connectors::Source;
use sluice_proto::secrets::MasterKey;
use sluice_proto::Bound;

/// Why a watermark operation was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    /// No import of that name in the workspace.
    #[error("import {import:?} not found in workspace {workspace:?}")]
    NotFound {
        /// The workspace.
        workspace: String,
        /// The import.
        import: String,
    },
    /// A run is active; the watermark moves only between runs.
    #[error("run {0} of this import is active; wait for it to end (or stop the import) first")]
    RunActive(uuid::Uuid),
    /// A rewind moves the watermark back, never forward.
    #[error("the watermark is at {current}; a rewind moves it back, not forward to {to}")]
    Forward {
        /// Where it is.
        current: String,
        /// Where it was asked to go.
        to: String,
    },
    /// The source failed while finding the position.
    #[error("{0}")]
    Source(#[from] sluice_connectors::SourceError),
    /// The import as stored cannot be read.
    #[error("stored import spec: {0}")]
    Stored(#[from] serde_json::Error),
    /// The connection's credentials could not be opened.
    #[error("{0}")]
    Credentials(#[source] crate::apply::ApplyError),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// The import, its id, current position, and any active run, locked for the change.
struct Locked {
    id: i64,
    import: ImportDecl,
    kind: sluice_proto::ConnectionKind,
    credentials: serde_json::Value,
    current: Option<Bound>,
}

async fn lock(
    tx: &tokio_postgres::Transaction<'_>,
    workspace: &str,
    import: &str,
) -> Result<Locked, WatermarkError> {
    let row = tx
        .query_opt(
            "SELECT i.id, i.spec, c.credentials, wm.position, c.kind
               FROM control.imports i
               JOIN control.workspaces w ON w.id = i.workspace_id
               JOIN control.connections c ON c.id = i.connection_id
               LEFT JOIN control.watermarks wm ON wm.import_id = i.id
              WHERE w.name = $1 AND i.name = $2
              FOR UPDATE OF i",
            &[&workspace, &import],
        )
        .await?
        .ok_or_else(|| WatermarkError::NotFound {
            workspace: workspace.to_string(),
            import: import.to_string(),
        })?;
    let id: i64 = row.get(0);
    if let Some(active) = tx
        .query_opt(
            "SELECT id FROM control.runs WHERE import_id = $1 AND status IN ('queued', 'planning', 'running')",
            &[&id],
        )
        .await?
    {
        return Err(WatermarkError::RunActive(active.get(0)));
    }
    let import: ImportDecl = serde_json::from_value(row.get(1))?;
    let current = row
        .get::<_, Option<serde_json::Value>>(3)
        .and_then(|v| serde_json::from_value(v).ok());
    let kind = sluice_proto::ConnectionKind::new(row.get::<_, String>(4));
    Ok(Locked {
        id,
        import,
        kind,
        credentials: row.get(2),
        current,
    })
}

async fn set(
    tx: &tokio_postgres::Transaction<'_>,
    locked: &Locked,
    to: Option<&Bound>,
    operation: &str,
    actor: &str,
) -> Result<(), tokio_postgres::Error> {
    let json = |b: Option<&Bound>| b.map(|b| serde_json::to_value(b).expect("bound serializes"));
    match to {
        None => {
            tx.execute(
                "DELETE FROM control.watermarks WHERE import_id = $1",
                &[&locked.id],
            )
            .await?;
        }
        Some(bound) => {
            tx.execute(
                "UPDATE control.watermarks SET position = $2, updated_at = now() WHERE import_id = $1",
                &[&locked.id, &json(Some(bound))],
            )
            .await?;
        }
    }
    tx.execute(
        "INSERT INTO control.watermark_changes (import_id, operation, actor, from_position, to_position)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &locked.id,
            &operation,
            &actor,
            &json(locked.current.as_ref()),
            &json(to),
        ],
    )
    .await?;
    Ok(())
}

/// Resets the watermark: the next run reads every row.
pub async fn resync(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    actor: &str,
) -> Result<Option<Bound>, WatermarkError> {
    let tx = client.transaction().await?;
    let locked = lock(&tx, workspace, import).await?;
    set(&tx, &locked, None, "resync", actor).await?;
    tx.commit().await?;
    Ok(locked.current)
}

/// Moves the watermark back to just before the first row at or after `to`; returns (from,
/// to). Refused when it would move forward.
pub async fn rewind(
    client: &mut tokio_postgres::Client,
    key: &MasterKey,
    workspace: &str,
    import: &str,
    to: DateTime<Utc>,
    actor: &str,
) -> Result<(Option<Bound>, Option<Bound>), WatermarkError> {
    let tx = client.transaction().await?;
    let locked = lock(&tx, workspace, import).await?;
    if let Some(current) = &locked.current {
        if to > current.watermark {
            return Err(WatermarkError::Forward {
                current: current.to_string(),
                to: to.to_rfc3339(),
            });
        }
    }
    let url = open_credentials(key, &locked.import.connection, &locked.credentials)
        .map_err(WatermarkError::Credentials)?;
    let source = Source::open(&locked.kind, &url).await?;
    let shape = source.describe(&source_spec(&locked.import)).await?;
    let position = source.position_before(&shape, to).await?;
    match (&locked.current, &position) {
        (None, _) => {}
        (Some(_), None) => set(&tx, &locked, None, "rewind", actor).await?,
        (Some(_), Some(p)) => set(&tx, &locked, Some(p), "rewind", actor).await?,
    }
    tx.commit().await?;
    Ok((locked.current, position))
}

/// Moves an import's watermark to `hi`, the upper bound of `run_id`, whose every chunk loaded.
pub async fn advance(
    client: &impl tokio_postgres::GenericClient,
    import_id: i64,
    hi: &serde_json::Value,
    run_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.watermarks (import_id, position, run_id) VALUES ($1, $2, $3)
             ON CONFLICT (import_id) DO UPDATE
                SET position = EXCLUDED.position, run_id = EXCLUDED.run_id, updated_at = now()",
            &[&import_id, hi, &run_id],
        )
        .await?;
    Ok(())
}

/// Audits a replay run of `window` requested by `actor`, once however often it is recorded.
pub async fn record_replay(
    client: &impl tokio_postgres::GenericClient,
    import_id: i64,
    actor: &str,
    window: &sluice_proto::ReplayWindow,
    run_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.watermark_changes (import_id, operation, actor, from_position, to_position)
             SELECT $1, 'replay', $2, jsonb_build_object('watermark', $3::timestamptz),
                    jsonb_build_object('watermark', $4::timestamptz, 'run_id', $5::text)
              WHERE NOT EXISTS (SELECT 1 FROM control.watermark_changes
                                 WHERE operation = 'replay' AND to_position->>'run_id' = $5::text)",
            &[&import_id, &actor, &window.from, &window.until, &run_id.to_string()],
        )
        .await?;
    Ok(())
}

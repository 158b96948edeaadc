//! Previewing an import: its source's first rows, read the way the extractor reads them, with
//! the schema a chunk has — so a mapping can be checked before any run.

use crate::apply::{open_credentials, source_spec, stored_kind};
use crate::spec::ImportDecl;
use arrow::record_batch::RecordBatch;
use sluice_extractor::{Connector, Source};
use sluice_proto::secrets::MasterKey;
use tokio_postgres::GenericClient;

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("import {import:?} not found in workspace {workspace:?}")]
    NotFound { workspace: String, import: String },
    #[error("{0}")]
    Source(String),
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// The first `rows` rows of an import's source.
pub async fn preview(
    client: &impl GenericClient,
    key: &MasterKey,
    workspace: &str,
    import: &str,
    rows: usize,
) -> Result<RecordBatch, PreviewError> {
    let row = client
        .query_opt(
            "SELECT i.spec, c.credentials, c.kind FROM control.imports i
               JOIN control.workspaces w ON w.id = i.workspace_id
               JOIN control.connections c ON c.id = i.connection_id
              WHERE w.name = $1 AND i.name = $2",
            &[&workspace, &import],
        )
        .await?
        .ok_or_else(|| PreviewError::NotFound {
            workspace: workspace.to_string(),
            import: import.to_string(),
        })?;
    let source_error = |e: &dyn std::fmt::Display| PreviewError::Source(e.to_string());
    let decl: ImportDecl = serde_json::from_value(row.get(0)).map_err(|e| source_error(&e))?;
    let kind =
        stored_kind(&decl.connection, &row.get::<_, String>(2)).map_err(|e| source_error(&e))?;
    let url = open_credentials(key, &decl.connection, &row.get(1)).map_err(|e| source_error(&e))?;
    let source = Source::open(kind, &url)
        .await
        .map_err(|e| source_error(&e))?;
    let shape = source
        .describe(&source_spec(&decl))
        .await
        .map_err(|e| source_error(&e))?;
    source
        .preview(&shape, rows)
        .await
        .map_err(|e| source_error(&e))
}

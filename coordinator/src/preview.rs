//! Previewing an import, or a table or query of a connection before an import reads it: the
//! source's first rows, read the way the extractor reads them, with the schema a chunk has —
//! so a mapping can be checked before any run.

use crate::apply::{open_credentials, source_spec};
use crate::spec::ImportDecl;
use arrow::array::AsArray;
use arrow::record_batch::RecordBatch;
use sluice_connectors::source::SourceSpec;
use sluice_connectors::Source;
use sluice_proto::format_hint::{FormatCensus, FormatHint};
use sluice_proto::secrets::MasterKey;
use sluice_proto::ConnectionKind;
use tokio_postgres::GenericClient;

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// No import of that name in the workspace.
    #[error("import {import:?} not found in workspace {workspace:?}")]
    NotFound {
        /// The workspace.
        workspace: String,
        /// The import.
        import: String,
    },
    /// No connection of that name in the workspace.
    #[error("connection {connection:?} not found in workspace {workspace:?}")]
    NoConnection {
        /// The workspace.
        workspace: String,
        /// The connection.
        connection: String,
    },
    /// The source failed.
    #[error("{0}")]
    Source(String),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// The first `rows` rows of an import's source, and the date-format advice they give.
pub async fn preview(
    client: &impl GenericClient,
    key: &MasterKey,
    workspace: &str,
    import: &str,
    rows: usize,
) -> Result<(RecordBatch, Vec<FormatHint>), PreviewError> {
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
    let decl: ImportDecl = serde_json::from_value(row.get(0)).map_err(|e| source_error(&e))?;
    let kind = ConnectionKind::new(row.get::<_, String>(2));
    let url = open_credentials(key, &decl.connection, &row.get(1)).map_err(|e| source_error(&e))?;
    let batch = read(kind, &url, &source_spec(&decl), rows).await?;
    let hints = format_hints(&decl, &batch);
    Ok((batch, hints))
}

/// The date properties whose declared pattern rejects previewed values that another order
/// of year, month and day reads, every one of them (the check a dry run makes on every row).
pub fn format_hints(decl: &ImportDecl, batch: &RecordBatch) -> Vec<FormatHint> {
    let mut hints = Vec::new();
    for (name, property) in &decl.properties {
        let Some(mut census) = FormatCensus::of_property(property, decl.timezone.as_deref()) else {
            continue;
        };
        let Some(column) = batch.column_by_name(&property.column) else {
            continue;
        };
        let Ok(texts) = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8) else {
            continue;
        };
        for value in texts.as_string::<i32>().iter().flatten() {
            census.observe(value);
        }
        hints.extend(census.finish().hint(name));
    }
    hints
}

/// The first `rows` rows of a table or query of a connection, in `(watermark, key)` order.
pub async fn preview_connection(
    client: &impl GenericClient,
    key: &MasterKey,
    workspace: &str,
    connection: &str,
    spec: &SourceSpec,
    rows: usize,
) -> Result<RecordBatch, PreviewError> {
    let row = client
        .query_opt(
            "SELECT c.credentials, c.kind FROM control.connections c
               JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 AND c.name = $2",
            &[&workspace, &connection],
        )
        .await?
        .ok_or_else(|| PreviewError::NoConnection {
            workspace: workspace.to_string(),
            connection: connection.to_string(),
        })?;
    let kind = ConnectionKind::new(row.get::<_, String>(1));
    let url = open_credentials(key, connection, &row.get(0)).map_err(|e| source_error(&e))?;
    read(kind, &url, spec, rows).await
}

fn source_error(e: &dyn std::fmt::Display) -> PreviewError {
    PreviewError::Source(e.to_string())
}

async fn read(
    kind: ConnectionKind,
    url: &str,
    spec: &SourceSpec,
    rows: usize,
) -> Result<RecordBatch, PreviewError> {
    let source = Source::open(&kind, url)
        .await
        .map_err(|e| source_error(&e))?;
    let shape = source.describe(spec).await.map_err(|e| source_error(&e))?;
    source
        .preview(&shape, rows)
        .await
        .map_err(|e| source_error(&e))
}

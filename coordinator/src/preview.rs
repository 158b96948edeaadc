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
    let (kind, url) = connection_url(client, key, workspace, connection).await?;
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

/// What the import builder learns of a table or query before an import reads it: every
/// column, the key and watermark it was read by (those asked for, or guessed from the
/// columns' names), the first rows in their order with their types, and whether the source
/// has the `(watermark, key)` index that keeps chunk reads cheap.
pub struct Exploration {
    /// Every column of the table or query.
    pub columns: Vec<String>,
    /// The key column the rows were read by.
    pub key: String,
    /// The watermark column the rows were read by.
    pub watermark: String,
    /// The first rows, or why they could not be read by this key and watermark.
    pub rows: Result<RecordBatch, String>,
    /// Whether a table has the ordering index; `None` when the source cannot tell.
    pub index: Option<sluice_connectors::source::OrderingIndex>,
}

/// Reads the columns and first `rows` rows of a table or query of a connection, by the key
/// and watermark given, or guessed where not given (or not a column).
pub async fn explore(
    client: &impl GenericClient,
    master_key: &MasterKey,
    workspace: &str,
    connection: &str,
    relation: sluice_proto::SourceRelation,
    wanted: (&str, &str),
    rows: usize,
) -> Result<Exploration, PreviewError> {
    let (kind, url) = connection_url(client, master_key, workspace, connection).await?;
    let source = Source::open(&kind, &url)
        .await
        .map_err(|e| source_error(&e))?;
    let mut spec = SourceSpec {
        relation,
        key_column: wanted.0.to_string(),
        watermark_column: wanted.1.to_string(),
        columns: Vec::new(),
    };
    let mut columns = source.columns(&spec).await.map_err(|e| source_error(&e))?;
    columns.retain(|c| c != sluice_connectors::files::MODIFIED);
    if columns.is_empty() && (wanted.0.is_empty() || wanted.1.is_empty()) {
        return Err(PreviewError::Source(
            "this kind of source does not list its columns: name the key and watermark".into(),
        ));
    }
    let known = |c: &str| columns.is_empty() || columns.iter().any(|k| k == c);
    if wanted.0.is_empty() || !known(wanted.0) {
        spec.key_column = guess_key(&columns);
    }
    if wanted.1.is_empty() || !known(wanted.1) {
        spec.watermark_column = guess_watermark(&columns);
    }
    spec.columns = columns.clone();
    let rows = match source.describe(&spec).await {
        Ok(shape) => source
            .preview(&shape, rows)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let index = source.ordering_index(&spec).await.ok().flatten();
    Ok(Exploration {
        columns,
        key: spec.key_column,
        watermark: spec.watermark_column,
        rows,
        index,
    })
}

/// The column most likely the unique key: `id`, else one ending in `id`, else the first.
fn guess_key(columns: &[String]) -> String {
    let lower = |c: &&String| c.to_ascii_lowercase();
    columns
        .iter()
        .find(|c| lower(c) == "id")
        .or_else(|| columns.iter().find(|c| lower(c).ends_with("id")))
        .or(columns.first())
        .cloned()
        .unwrap_or_default()
}

/// The column most likely the "updated on" one, by its name.
fn guess_watermark(columns: &[String]) -> String {
    let lower = |c: &&String| c.to_ascii_lowercase();
    let named = |words: &[&str]| {
        columns
            .iter()
            .find(|c| words.iter().any(|w| lower(c).contains(w)))
    };
    named(&["updated", "modified", "changed"])
        .or_else(|| named(&["_at", "time", "date", "created"]))
        .or(columns.get(1))
        .or(columns.first())
        .cloned()
        .unwrap_or_default()
}

/// A connection's kind and opened URL.
async fn connection_url(
    client: &impl GenericClient,
    master_key: &MasterKey,
    workspace: &str,
    connection: &str,
) -> Result<(ConnectionKind, String), PreviewError> {
    crate::apply::stored_connection_url(client, master_key, workspace, connection)
        .await
        .map_err(|e| match e {
            crate::apply::ApplyError::Database(e) => PreviewError::Store(e),
            e => source_error(&e),
        })?
        .ok_or_else(|| PreviewError::NoConnection {
            workspace: workspace.to_string(),
            connection: connection.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_watermark_are_guessed_from_column_names() {
        let columns = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let users = columns(&["customer_id", "email", "created_at", "Updated_On"]);
        assert_eq!(guess_key(&users), "customer_id");
        assert_eq!(guess_watermark(&users), "Updated_On");
        let plain = columns(&["email", "ID", "signup"]);
        assert_eq!(guess_key(&plain), "ID");
        assert_eq!(guess_watermark(&plain), "ID");
    }
}

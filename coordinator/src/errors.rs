//! The run's error stream: rejected rows recorded from the stages' rejection objects (every
//! row, not a sample), listed page by page, and written as CSV with the source row's mapped
//! columns and the reason in the last column, like CleverTap's failure report.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use sluice_proto::rejection::{self, RowRejection};
use sluice_proto::{Mapping, StageName};
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Why the error stream could not be recorded or read.
#[derive(Debug, thiserror::Error)]
pub enum ErrorStreamError {
    /// A chunk's rejected rows could not be read.
    #[error("reading rejected rows from {key}: {message}")]
    Object {
        /// The object's key.
        key: String,
        /// Why.
        message: String,
    },
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
    /// The CSV report could not be written.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The report could not be written out.
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

/// Reads the rejections a stage wrote for a chunk.
pub async fn read_rejections(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Vec<RowRejection>, ErrorStreamError> {
    let fail = |message: String| ErrorStreamError::Object {
        key: key.to_string(),
        message,
    };
    let bytes = store
        .get(&Path::from(key))
        .await
        .map_err(|e| fail(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| fail(e.to_string()))?;
    rejection::from_json_lines(&bytes).map_err(|e| fail(e.to_string()))
}

const CLEAR: &str =
    "DELETE FROM control.run_errors WHERE run_id = $1 AND chunk_seq = $2 AND stage = $3";

const INSERT: &str = "INSERT INTO control.run_errors
    (run_id, chunk_seq, stage, row_key, column_name, value, reason_code, message, row_values)
SELECT $1, $2, $3, k, c, v, r, m, j
  FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[])
    AS x(k, c, v, r, m, j)
ON CONFLICT DO NOTHING";

/// Replaces a chunk's recorded rejections from one stage, in one statement (redelivered
/// results record the same rows again, never twice).
pub async fn record(
    client: &impl GenericClient,
    run_id: Uuid,
    seq: u32,
    stage: StageName,
    rows: &[RowRejection],
) -> Result<(), tokio_postgres::Error> {
    replace(client, run_id, seq as i32, stage.as_str(), rows).await
}

/// The chunk number and stage of the rows planning found no run can read.
pub const PLANNING: (i32, &str) = (-1, "plan");

/// Records the rows planning found no run can read (no watermark, no key), once per run.
pub async fn record_planning(
    client: &impl GenericClient,
    run_id: Uuid,
    rows: &[RowRejection],
) -> Result<(), tokio_postgres::Error> {
    replace(client, run_id, PLANNING.0, PLANNING.1, rows).await
}

async fn replace(
    client: &impl GenericClient,
    run_id: Uuid,
    seq: i32,
    stage: &str,
    rows: &[RowRejection],
) -> Result<(), tokio_postgres::Error> {
    client.execute(CLEAR, &[&run_id, &seq, &stage]).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.row_key.as_str()).collect();
    let columns: Vec<&str> = rows.iter().map(|r| r.column.as_str()).collect();
    let values: Vec<Option<&str>> = rows.iter().map(|r| r.value.as_deref()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    let messages: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
    let row_values: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(&r.row).expect("row values serialize"))
        .collect();
    client
        .execute(
            INSERT,
            &[
                &run_id,
                &seq,
                &stage,
                &keys,
                &columns,
                &values,
                &reasons,
                &messages,
                &row_values,
            ],
        )
        .await?;
    Ok(())
}

/// One rejected row as listed.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RunError {
    /// The chunk the row was in.
    pub chunk: i32,
    /// The stage that rejected it: `transform` or `load`.
    pub stage: String,
    /// The source row's key.
    pub row_key: String,
    /// The column at fault.
    pub column: String,
    /// The value at fault, as the source gave it; `None` when NULL.
    pub value: Option<String>,
    /// The reason code (`invalid_email`, `type_conflict`, ...).
    pub reason: String,
    /// What was wrong, for people.
    pub message: String,
    /// The row's mapped columns, as the source gave them.
    pub row: BTreeMap<String, Option<String>>,
}

const LIST: &str =
    "SELECT chunk_seq, stage, row_key, column_name, value, reason_code, message, row_values
  FROM control.run_errors WHERE run_id = $1
 ORDER BY chunk_seq, stage DESC, row_key
 LIMIT $2 OFFSET $3";

/// A page of a run's rejected rows, in chunk and key order.
pub async fn list(
    client: &impl GenericClient,
    run_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<RunError>, tokio_postgres::Error> {
    Ok(client
        .query(LIST, &[&run_id, &limit, &offset])
        .await?
        .iter()
        .map(|r| RunError {
            chunk: r.get(0),
            stage: r.get(1),
            row_key: r.get(2),
            column: r.get(3),
            value: r.get(4),
            reason: r.get(5),
            message: r.get(6),
            row: serde_json::from_value(r.get(7)).unwrap_or_default(),
        })
        .collect())
}

/// The import's mapping and key column, for a run.
async fn run_mapping(
    client: &impl GenericClient,
    run_id: Uuid,
) -> Result<Option<(String, Mapping)>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT i.spec FROM control.runs r JOIN control.imports i ON i.id = r.import_id
              WHERE r.id = $1",
            &[&run_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let spec: serde_json::Value = row.get(0);
    let Ok(import) = serde_json::from_value::<crate::spec::ImportDecl>(spec) else {
        return Ok(None);
    };
    Ok(Some((import.key.clone(), import.mapping())))
}

/// Writes every rejected row of a run as CSV: the source key, the mapped source columns,
/// the column at fault, the message, and the reason code last.
pub async fn write_csv(
    client: &impl GenericClient,
    run_id: Uuid,
    out: impl std::io::Write,
) -> Result<(), ErrorStreamError> {
    let (key, mapping) = run_mapping(client, run_id)
        .await?
        .unwrap_or_else(|| ("key".to_string(), empty_mapping()));
    let columns = mapping.columns();
    let mut writer = csv::Writer::from_writer(out);
    let csv_error = ErrorStreamError::Csv;
    let mut header = vec![key.as_str()];
    header.extend(columns.iter().map(String::as_str));
    header.extend(["rejected_column", "message", "reason"]);
    writer.write_record(&header).map_err(csv_error)?;
    const PAGE: i64 = 10_000;
    let mut offset = 0;
    loop {
        let page = list(client, run_id, PAGE, offset).await?;
        for error in &page {
            let mut record = vec![error.row_key.clone()];
            for column in &columns {
                record.push(source_value(&mapping, error, column).unwrap_or_default());
            }
            record.push(error.column.clone());
            record.push(error.message.clone());
            record.push(error.reason.clone());
            writer.write_record(&record).map_err(csv_error)?;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    Ok(writer.flush()?)
}

/// A source column's value in a rejected row: as read (transformer rejections), or the
/// normalized value of the property mapped from it (loader rejections).
fn source_value(mapping: &Mapping, error: &RunError, column: &str) -> Option<String> {
    if let Some(value) = error.row.get(column) {
        return value.clone();
    }
    mapping
        .properties
        .iter()
        .find(|(_, p)| p.column == column)
        .and_then(|(name, _)| error.row.get(name).cloned().flatten())
}

fn empty_mapping() -> Mapping {
    Mapping {
        identity: Default::default(),
        precedence: Vec::new(),
        mode: Default::default(),
        properties: BTreeMap::new(),
        constants: BTreeMap::new(),
        payload: None,
        timezone: None,
        records: Default::default(),
        subscriptions: None,
    }
}

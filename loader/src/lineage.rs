//! A chunk's lineage: what happened to each of its rows, read from the staging table once the
//! chunk is applied and before its transaction ends (so a dry run has it too), with the rows
//! the transformer and the loader rejected, written as one Parquet object under the run's
//! lineage prefix (`sluice_proto::lineage`).

use crate::load::{store_error, LoadError};
use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use sluice_proto::lineage::{self, column, LineageRow, Outcome};
use sluice_proto::{chunk_file, ChunkRef, Records, RowRejection};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Transaction;

/// Profile rows: a row matching nothing is skipped; a created profile's row it was created
/// from is `created`, its older rows `superseded`; of an existing profile's rows the newest
/// is applied (`updated` when the upsert changed the profile, else `unchanged`) and the older
/// ones are `superseded`. Stale values: the upsert's count for the applied row, every name of
/// a superseded row.
const PROFILES: &str = "WITH pick AS (
    SELECT DISTINCT ON (profile_id) profile_id, key FROM sluice_stage
     WHERE profile_id IS NOT NULL AND NOT created
     ORDER BY profile_id, updated_at DESC, key DESC
)
SELECT s.key, coalesce(s.matched_kind, s.create_kind), coalesce(s.matched_value, s.create_value),
       s.profile_id,
       CASE WHEN s.profile_id IS NULL THEN 'skipped'
            WHEN s.created AND NOT s.superseded THEN 'created'
            WHEN s.created OR p.key IS NULL THEN 'superseded'
            WHEN o.changed THEN 'updated'
            ELSE 'unchanged' END,
       CASE WHEN s.profile_id IS NULL OR (s.created AND NOT s.superseded) THEN 0
            WHEN s.created OR p.key IS NULL THEN cardinality(s.names)
            ELSE coalesce(o.stale, 0) END::int8
  FROM sluice_stage s
  LEFT JOIN pick p ON p.profile_id = s.profile_id AND p.key = s.key
  LEFT JOIN sluice_outcome o ON p.key IS NOT NULL AND o.profile_id = s.profile_id";

/// Event rows with a profile (the others are rejected): the first row of each dedup key is
/// `inserted` when its key was stored now, every other row `duplicate`.
const EVENTS: &str = "WITH pick AS (
    SELECT DISTINCT ON (dedup_key) key, dedup_key FROM sluice_stage
     WHERE profile_id IS NOT NULL ORDER BY dedup_key, key
)
SELECT s.key, s.matched_kind, s.matched_value, s.profile_id,
       CASE WHEN EXISTS (SELECT 1 FROM sluice_outcome o WHERE o.dedup_key = p.dedup_key)
            THEN 'inserted' ELSE 'duplicate' END,
       0::int8
  FROM sluice_stage s
  LEFT JOIN pick p ON p.key = s.key
 WHERE s.profile_id IS NOT NULL";

/// Delete rows: the first row naming a profile deleted it, the others are `duplicate`; a row
/// naming none is `not_found`.
const DELETES: &str = "WITH pick AS (
    SELECT DISTINCT ON (profile_id) key FROM sluice_stage
     WHERE profile_id IS NOT NULL ORDER BY profile_id, key
)
SELECT s.key, coalesce(s.matched_kind, s.create_kind), coalesce(s.matched_value, s.create_value),
       s.profile_id,
       CASE WHEN s.profile_id IS NULL THEN 'not_found'
            WHEN p.key IS NOT NULL THEN 'deleted' ELSE 'duplicate' END,
       0::int8
  FROM sluice_stage s
  LEFT JOIN pick p ON p.key = s.key";

/// The outcomes of the chunk's staged rows, once applied.
pub async fn applied(
    tx: &Transaction<'_>,
    records: &Records,
    seq: u32,
) -> Result<Vec<LineageRow>, LoadError> {
    let sql = match records {
        Records::Profiles => PROFILES,
        Records::Events(_) => EVENTS,
        Records::UserDeletes { .. } => DELETES,
    };
    let rows = tx.query(sql, &[]).await.map_err(store_error)?;
    rows.iter()
        .map(|r| {
            let outcome: &str = r.get(4);
            Ok(LineageRow {
                chunk: seq,
                row_key: r.get(0),
                identity_kind: r.get(1),
                identity_value: r.get(2),
                profile_id: r.get(3),
                outcome: Outcome::parse(outcome)
                    .ok_or_else(|| LoadError::Store(format!("unknown outcome {outcome}")))?,
                reason: None,
                properties_stale: r.get(5),
            })
        })
        .collect()
}

/// Rejected rows as lineage.
pub fn rejected(seq: u32, rows: &[RowRejection]) -> impl Iterator<Item = LineageRow> + '_ {
    rows.iter().map(move |r| LineageRow {
        chunk: seq,
        row_key: r.row_key.clone(),
        identity_kind: None,
        identity_value: None,
        profile_id: None,
        outcome: Outcome::Rejected,
        reason: Some(r.reason.as_str().to_string()),
        properties_stale: 0,
    })
}

/// Marks the applied rows whose unique identities named another profile with that reason.
pub fn note_conflicts(rows: &mut [LineageRow], conflicts: &[RowRejection]) {
    if conflicts.is_empty() {
        return;
    }
    let reasons: HashMap<&str, &str> = conflicts
        .iter()
        .map(|c| (c.row_key.as_str(), c.reason.as_str()))
        .collect();
    for row in rows {
        if let Some(reason) = reasons.get(row.row_key.as_str()) {
            row.reason = Some(reason.to_string());
        }
    }
}

/// The columns of a lineage object.
fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(column::RUN_ID, DataType::Utf8, false),
        Field::new(column::CHUNK, DataType::Int32, false),
        Field::new(column::DRY_RUN, DataType::Boolean, false),
        Field::new(column::ROW_KEY, DataType::Utf8, false),
        Field::new(column::IDENTITY_KIND, DataType::Utf8, true),
        Field::new(column::IDENTITY_VALUE, DataType::Utf8, true),
        Field::new(column::PROFILE_ID, DataType::Int64, true),
        Field::new(column::OUTCOME, DataType::Utf8, false),
        Field::new(column::REASON, DataType::Utf8, true),
        Field::new(column::PROPERTIES_STALE, DataType::Int64, false),
    ]))
}

/// The rows as one Arrow batch, by row key.
fn batch(chunk: &ChunkRef, dry_run: bool, rows: &mut [LineageRow]) -> RecordBatch {
    rows.sort_by(|a, b| a.row_key.cmp(&b.row_key));
    let n = rows.len();
    let run = chunk.run_id.to_string();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run.as_str(); n])),
        Arc::new(Int32Array::from(vec![chunk.seq as i32; n])),
        Arc::new(BooleanArray::from(vec![dry_run; n])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.row_key.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.identity_kind.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.identity_value.as_deref()),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.profile_id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.outcome.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.reason.as_deref()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.properties_stale),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("lineage columns match their schema")
}

/// Writes the chunk's lineage object (replacing an earlier attempt's).
pub async fn write(
    store: &dyn ObjectStore,
    chunk: &ChunkRef,
    dry_run: bool,
    rows: &mut [LineageRow],
) -> Result<(), LoadError> {
    let batch = batch(chunk, dry_run, rows);
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut bytes,
        batch.schema(),
        Some(chunk_file::writer_properties()),
    )
    .map_err(|e| LoadError::Storage(format!("writing lineage: {e}")))?;
    writer
        .write(&batch)
        .and_then(|_| writer.close().map(|_| ()))
        .map_err(|e| LoadError::Storage(format!("writing lineage: {e}")))?;
    store
        .put(&Path::from(lineage::object(chunk)), bytes.into())
        .await
        .map_err(|e| LoadError::Storage(format!("writing lineage: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn a_lineage_batch_is_sorted_by_key_and_round_trips_through_parquet() {
        let chunk = ChunkRef {
            run_id: uuid::Uuid::nil(),
            workspace_id: 1,
            import_id: 2,
            seq: 3,
        };
        let row = |key: &str, outcome| LineageRow {
            chunk: 3,
            row_key: key.into(),
            identity_kind: Some("external_id".into()),
            identity_value: Some(format!("user-{key}")),
            profile_id: Some(7),
            outcome,
            reason: None,
            properties_stale: 1,
        };
        let mut rows = vec![row("b", Outcome::Updated), row("a", Outcome::Created)];
        let batch = batch(&chunk, true, &mut rows);
        assert_eq!(rows[0].row_key, "a");
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(back, vec![batch]);
    }
}

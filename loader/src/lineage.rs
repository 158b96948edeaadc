//! A chunk's lineage: what happened to each of its rows, read from the staging table once the
//! chunk is applied and before its transaction ends (so a dry run has it too), with the rows
//! the transformer and the loader rejected, written as one Parquet object under the run's
//! lineage prefix (`sluice_proto::lineage`).

use crate::load::{store_error, LoadError};
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanArray, Int32Array, Int64Builder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use sluice_proto::lineage::{self, column, Outcome};
use sluice_proto::{chunk_file, ChunkRef, Records, RowRejection};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Transaction;

/// Profile rows: a row matching nothing is skipped; a created profile's row it was created
/// from is `created`, its older rows `superseded`; of an existing profile's rows the upsert
/// applied the newest (kept in `sluice_outcome`: `updated` when it changed the profile, else
/// `unchanged`) and the older ones are `superseded`. Stale values: the upsert's count for the
/// applied row, every name of a superseded row.
const PROFILES: &str = "SELECT s.key, coalesce(s.matched_kind, s.create_kind),
       coalesce(s.matched_value, s.create_value), s.profile_id,
       CASE WHEN s.profile_id IS NULL THEN 'skipped'
            WHEN s.created AND NOT s.superseded THEN 'created'
            WHEN s.created OR o.key IS NULL THEN 'superseded'
            WHEN o.changed THEN 'updated'
            ELSE 'unchanged' END,
       CASE WHEN s.profile_id IS NULL OR (s.created AND NOT s.superseded) THEN 0
            WHEN s.created OR o.key IS NULL THEN cardinality(s.names)
            ELSE o.stale END::int8
  FROM sluice_stage s
  LEFT JOIN sluice_outcome o ON o.key = s.key AND NOT s.created";

/// Event rows with a profile (the others are rejected): a row the apply statement kept in
/// `sluice_outcome` (the first row of its dedup key, the key stored now) is `inserted`, every
/// other row `duplicate`.
const EVENTS: &str = "SELECT s.key, s.matched_kind, s.matched_value, s.profile_id,
       CASE WHEN o.key IS NOT NULL THEN 'inserted' ELSE 'duplicate' END,
       0::int8
  FROM sluice_stage s
  LEFT JOIN sluice_outcome o ON o.key = s.key
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

/// A chunk's lineage as it is read: its columns built row by row, straight from the store's
/// answer (nothing held per row besides the columns themselves).
pub struct Lineage {
    chunk: ChunkRef,
    dry_run: bool,
    row_key: StringBuilder,
    identity_kind: StringBuilder,
    identity_value: StringBuilder,
    profile_id: Int64Builder,
    outcome: StringBuilder,
    reason: StringBuilder,
    properties_stale: Int64Builder,
}

impl Lineage {
    /// An empty lineage for a chunk of a run (a dry run's or not).
    pub fn new(chunk: &ChunkRef, dry_run: bool) -> Lineage {
        Lineage {
            chunk: chunk.clone(),
            dry_run,
            row_key: StringBuilder::new(),
            identity_kind: StringBuilder::new(),
            identity_value: StringBuilder::new(),
            profile_id: Int64Builder::new(),
            outcome: StringBuilder::new(),
            reason: StringBuilder::new(),
            properties_stale: Int64Builder::new(),
        }
    }

    /// Adds the outcomes of the chunk's staged rows, once applied; a row whose unique
    /// identities named another profile (`conflicts`) carries that as its reason.
    pub async fn add_applied(
        &mut self,
        tx: &Transaction<'_>,
        records: &Records,
        conflicts: &[RowRejection],
    ) -> Result<(), LoadError> {
        let sql = match records {
            Records::Profiles => PROFILES,
            Records::Events(_) => EVENTS,
            Records::UserDeletes { .. } => DELETES,
        };
        let conflicts: HashMap<&str, &str> = conflicts
            .iter()
            .map(|c| (c.row_key.as_str(), c.reason.as_str()))
            .collect();
        let rows = tx
            .query_raw(sql, std::iter::empty::<i32>())
            .await
            .map_err(store_error)?;
        futures::pin_mut!(rows);
        while let Some(r) = rows.try_next().await.map_err(store_error)? {
            let key: &str = r.get(0);
            self.row_key.append_value(key);
            self.identity_kind
                .append_option(r.get::<_, Option<&str>>(1));
            self.identity_value
                .append_option(r.get::<_, Option<&str>>(2));
            self.profile_id.append_option(r.get::<_, Option<i64>>(3));
            self.outcome.append_value(r.get::<_, &str>(4));
            self.reason.append_option(conflicts.get(key).copied());
            self.properties_stale.append_value(r.get(5));
        }
        Ok(())
    }

    /// Adds rejected rows.
    pub fn add_rejected(&mut self, rows: &[RowRejection]) {
        for r in rows {
            self.row_key.append_value(&r.row_key);
            self.identity_kind.append_null();
            self.identity_value.append_null();
            self.profile_id.append_null();
            self.outcome.append_value(Outcome::Rejected.as_str());
            self.reason.append_value(r.reason.as_str());
            self.properties_stale.append_value(0);
        }
    }

    /// The lineage as one Arrow batch.
    fn finish(mut self) -> RecordBatch {
        let n = self.row_key.len();
        let run = self.chunk.run_id.to_string();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![run.as_str(); n])),
            Arc::new(Int32Array::from(vec![self.chunk.seq as i32; n])),
            Arc::new(BooleanArray::from(vec![self.dry_run; n])),
            Arc::new(self.row_key.finish()),
            Arc::new(self.identity_kind.finish()),
            Arc::new(self.identity_value.finish()),
            Arc::new(self.profile_id.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.properties_stale.finish()),
        ];
        RecordBatch::try_new(schema(), columns).expect("lineage columns match their schema")
    }

    /// Writes the chunk's lineage object (replacing an earlier attempt's).
    pub async fn write(self, store: &dyn ObjectStore) -> Result<(), LoadError> {
        let key = lineage::object(&self.chunk);
        let batch = self.finish();
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
            .put(&Path::from(key), bytes.into())
            .await
            .map_err(|e| LoadError::Storage(format!("writing lineage: {e}")))?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sluice_proto::Reason;

    #[test]
    fn rejected_rows_become_a_batch_that_round_trips_through_parquet() {
        let chunk = ChunkRef {
            run_id: uuid::Uuid::nil(),
            workspace_id: 1,
            import_id: 2,
            seq: 3,
        };
        let mut lineage = Lineage::new(&chunk, true);
        lineage.add_rejected(&[RowRejection {
            row_key: "7".into(),
            column: "email".into(),
            value: None,
            reason: Reason::InvalidEmail,
            message: "bad".into(),
            row: Default::default(),
        }]);
        let batch = lineage.finish();
        assert_eq!(batch.num_rows(), 1);
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

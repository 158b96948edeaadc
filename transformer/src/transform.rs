//! The transform stage: reads a chunk's extracted Parquet with DataFusion, applies the mapping,
//! and writes accepted rows as Parquet and rejected rows (with reasons and their mapped
//! columns) as JSON lines.

use crate::mapping::plan;
use arrow::array::{Array, AsArray, StringArray};
use arrow::compute::{and, filter_record_batch, is_null, not};
use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_writer::AsyncArrowWriter;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{chunk_file, rejection};
use sluice_proto::{
    columns, ChunkExtracted, ChunkTransformed, ChunkWork, ErrorCode, Reason, RowRejection,
    StageError, StageName,
};
use std::sync::Arc;
use url::Url;

/// The URL the object store is registered under in DataFusion.
const STORE_URL: &str = "sluice://objects";

/// Why a chunk could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The extracted chunk lacks a column the mapping reads, or holds it in another type.
    #[error("the chunk does not match its mapping: {0}")]
    Mapping(String),
    /// A chunk object could not be read or written.
    #[error("reading or writing chunk objects: {0}")]
    Storage(String),
    /// DataFusion failed to plan or run the mapping.
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Arrow failed to build a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A mirror import's key names several source rows, so removals cannot be told apart.
    #[error("removals need a key that names one row: key {key} names {rows} rows of the source")]
    DuplicateKey {
        /// The key, as text.
        key: String,
        /// How many source rows it names.
        rows: i64,
    },
}

impl From<TransformError> for StageError {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::Mapping(m) => StageError::permanent(ErrorCode::InvalidData, m),
            e @ TransformError::DuplicateKey { .. } => {
                StageError::permanent(ErrorCode::InvalidData, e.to_string())
            }
            TransformError::Storage(m) => StageError::retryable(ErrorCode::Storage, m),
            TransformError::Engine(e) => StageError::retryable(ErrorCode::Internal, e.to_string()),
            TransformError::Arrow(e) => StageError::retryable(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// What the transform stage needs besides its message.
pub struct Transformer {
    /// Where chunks are read from and written to.
    pub store: Arc<dyn ObjectStore>,
}

/// A Parquet writer of chunk objects, with the chunk files' properties.
pub(crate) fn writer(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    schema: arrow::datatypes::SchemaRef,
) -> Result<AsyncArrowWriter<BufWriter>, TransformError> {
    AsyncArrowWriter::try_new(
        BufWriter::new(store.clone(), Path::from(key)),
        schema,
        Some(chunk_file::writer_properties()),
    )
    .map_err(|e| TransformError::Storage(e.to_string()))
}

/// A query session reading and writing the chunk objects of `store`. Without
/// `statistics`, plans ignore the files' column statistics: this version of the engine
/// carries an integer key's range through its cast to text unchanged, an upside-down text
/// range ("1001" to "10000") that fails a join's planning, as the key sets' anti-join has.
pub(crate) fn session(store: &Arc<dyn ObjectStore>, statistics: bool) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().execution.collect_statistics = statistics;
    // Plain Utf8 keeps the normalized schema the loader reads stable.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_object_store(&Url::parse(STORE_URL).expect("static url"), store.clone());
    ctx
}

/// Reads a chunk object as a table.
pub(crate) async fn read_object(
    ctx: &SessionContext,
    key: &str,
) -> Result<datafusion::dataframe::DataFrame, TransformError> {
    Ok(ctx
        .read_parquet(format!("{STORE_URL}/{key}"), ParquetReadOptions::default())
        .await?)
}

/// Applies the chunk's mapping and writes its accepted and rejected rows; a mirror import's
/// key chunk is compared with the previous key set instead.
pub async fn transform(
    work: &ChunkWork,
    deps: &Transformer,
) -> Result<ChunkTransformed, TransformError> {
    if let Some(keys) = &work.key_set {
        return crate::key_set::transform_keys(work, keys, deps).await;
    }
    let ctx = session(&deps.store, true);
    let source = read_object(&ctx, &work.objects.extracted).await?;
    let plan = plan(
        &work.mapping,
        source.schema().as_arrow(),
        work.run_started_at,
    )
    .map_err(TransformError::Mapping)?;
    let frame = source
        .select(plan.texts)?
        .select(plan.normalize)?
        .select(plan.classify)?;
    let schema = frame.schema().as_arrow().clone();
    let index = |name: &str| schema.index_of(name).expect("projected column");
    let accepted_columns: Vec<usize> = plan.accepted.iter().map(|c| index(c)).collect();
    let accepted_schema = Arc::new(schema.project(&accepted_columns).expect("valid projection"));
    let report = RejectColumns {
        key: index(columns::KEY),
        column: index(columns::REJECT_COLUMN),
        value: index(columns::REJECT_VALUE),
        reason: index(columns::REJECT_REASON),
        source: plan
            .source_text
            .iter()
            .map(|(column, text)| (column.clone(), index(text)))
            .collect(),
    };

    let mut accepted = writer(&deps.store, &work.objects.transformed, accepted_schema)?;
    let mut rows_accepted = 0u64;
    let mut events_time_imputed = 0u64;
    let imputed = plan.time_imputed.as_deref().map(index);
    let mut rejections = Vec::new();
    let mut censuses = match work.dry_run {
        true => crate::format_census::censuses(&work.mapping, &schema),
        false => Vec::new(),
    };
    let mut stream = frame.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        crate::format_census::observe(&mut censuses, &batch);
        let ok = is_null(batch.column(report.reason))?;
        let good_rows = filter_record_batch(&batch.project(&accepted_columns)?, &ok)?;
        rows_accepted += good_rows.num_rows() as u64;
        if let Some(column) = imputed {
            let stamped = and(batch.column(column).as_boolean(), &ok)?;
            events_time_imputed += stamped.true_count() as u64;
        }
        if good_rows.num_rows() < batch.num_rows() {
            let bad_rows = filter_record_batch(&batch, &not(&ok)?)?;
            report.collect(&bad_rows, &mut rejections);
        }
        accepted
            .write(&good_rows)
            .await
            .map_err(|e| TransformError::Storage(e.to_string()))?;
    }
    accepted
        .finish()
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    deps.store
        .put(
            &Path::from(work.objects.rejected.as_str()),
            rejection::to_json_lines(&rejections).into(),
        )
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    Ok(ChunkTransformed {
        work: work.clone(),
        rows_accepted,
        rows_rejected: rejections.len() as u64,
        rejected_by_reason: rejection::count_by_reason(rejections.iter().map(|r| &r.reason)),
        events_time_imputed,
        date_formats: crate::format_census::finish(censuses),
    })
}

/// Where a classified batch keeps what a rejection reports.
struct RejectColumns {
    key: usize,
    column: usize,
    value: usize,
    reason: usize,
    /// (source column, index of its text).
    source: Vec<(String, usize)>,
}

impl RejectColumns {
    /// Turns rejected rows into rejection records.
    fn collect(&self, rows: &RecordBatch, out: &mut Vec<RowRejection>) {
        let text = |i: usize| rows.column(i).as_string::<i32>().clone();
        let (keys, columns, values, reasons) = (
            text(self.key),
            text(self.column),
            text(self.value),
            text(self.reason),
        );
        let sources: Vec<(&String, StringArray)> =
            self.source.iter().map(|(c, i)| (c, text(*i))).collect();
        for row in 0..rows.num_rows() {
            let (code, message) = reasons
                .value(row)
                .split_once(columns::REASON_SEPARATOR)
                .unwrap_or(("invalid_value", reasons.value(row)));
            out.push(RowRejection {
                row_key: keys.value(row).to_string(),
                column: columns.value(row).to_string(),
                value: (!values.is_null(row)).then(|| rejection::truncate(values.value(row))),
                reason: Reason::parse(code).unwrap_or(Reason::InvalidValue),
                message: message.to_string(),
                row: sources
                    .iter()
                    .map(|(c, a)| {
                        (
                            (*c).clone(),
                            (!a.is_null(row)).then(|| rejection::truncate(a.value(row))),
                        )
                    })
                    .collect(),
            });
        }
    }
}

impl Stage for Transformer {
    type Input = ChunkExtracted;
    const NAME: &'static str = "transform";
    const QUEUE: QueueRole = QueueRole::Transform;

    fn chunk_of(input: &ChunkExtracted) -> Option<&sluice_proto::ChunkRef> {
        Some(&input.work.chunk)
    }

    async fn handle(
        &self,
        input: ChunkExtracted,
        _: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let chunk = &input.work.chunk;
        let transformed = transform(&input.work, self).await?;
        crate::metrics::record_chunk(
            chunk.workspace_id,
            transformed.rows_accepted,
            transformed.rows_rejected,
        );
        tracing::info!(
            run = %chunk.run_id,
            chunk = chunk.seq,
            accepted = transformed.rows_accepted,
            rejected = transformed.rows_rejected,
            "chunk transformed"
        );
        Ok(vec![Outgoing::message(&transformed)?])
    }

    fn on_give_up(
        &self,
        input: &ChunkExtracted,
        attempts: u32,
        error: &StageError,
    ) -> Vec<Outgoing> {
        sluice_proto::stage::report_failure(
            &input.work.chunk,
            StageName::Transform,
            attempts,
            error,
        )
    }
}

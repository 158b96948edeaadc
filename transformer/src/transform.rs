//! The transform stage: reads a chunk's extracted Parquet with DataFusion, applies the mapping,
//! and writes accepted rows and rejected rows (with reasons) as two Parquet objects.

use crate::mapping::plan;
use arrow::array::{Array, AsArray};
use arrow::compute::{filter_record_batch, is_null, not};
use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{
    ChunkExtracted, ChunkTransformed, ChunkWork, ErrorCode, RowRejection, StageError, StageName,
    MAX_INLINE_REJECTIONS,
};
use std::sync::Arc;
use url::Url;

/// The URL the object store is registered under in DataFusion.
const STORE_URL: &str = "sluice://objects";

/// Why a chunk could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("the chunk does not match its mapping: {0}")]
    Mapping(String),
    #[error("reading or writing chunk objects: {0}")]
    Storage(String),
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<TransformError> for StageError {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::Mapping(m) => StageError::permanent(ErrorCode::InvalidData, m),
            TransformError::Storage(m) => StageError::retryable(ErrorCode::Storage, m),
            TransformError::Engine(e) => StageError::retryable(ErrorCode::Internal, e.to_string()),
            TransformError::Arrow(e) => StageError::retryable(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// What the transform stage needs besides its message.
pub struct Transformer {
    pub store: Arc<dyn ObjectStore>,
}

fn writer(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    schema: arrow::datatypes::SchemaRef,
) -> Result<AsyncArrowWriter<BufWriter>, TransformError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    AsyncArrowWriter::try_new(
        BufWriter::new(store.clone(), Path::from(key)),
        schema,
        Some(props),
    )
    .map_err(|e| TransformError::Storage(e.to_string()))
}

/// Applies the chunk's mapping and writes its accepted and rejected rows.
pub async fn transform(
    work: &ChunkWork,
    deps: &Transformer,
) -> Result<ChunkTransformed, TransformError> {
    let mut config = SessionConfig::new().with_target_partitions(1);
    // Plain Utf8 keeps the normalized schema the loader reads stable.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_object_store(
        &Url::parse(STORE_URL).expect("static url"),
        deps.store.clone(),
    );
    let source = ctx
        .read_parquet(
            format!("{STORE_URL}/{}", work.objects.extracted),
            ParquetReadOptions::default(),
        )
        .await?;
    let plan = plan(&work.mapping, source.schema().as_arrow()).map_err(TransformError::Mapping)?;
    let frame = source.select(plan.normalize)?.select(plan.classify)?;
    let schema = frame.schema().as_arrow().clone();
    let index = |name: &String| schema.index_of(name).expect("projected column");
    let accepted_columns: Vec<usize> = plan.accepted.iter().map(index).collect();
    let rejected_columns: Vec<usize> = plan.rejected.iter().map(index).collect();
    let accepted_schema = Arc::new(schema.project(&accepted_columns).expect("valid projection"));
    let rejected_schema = Arc::new(schema.project(&rejected_columns).expect("valid projection"));
    let reason_column = index(&sluice_proto::columns::REJECT_REASON.to_string());

    let mut accepted = writer(&deps.store, &work.objects.transformed, accepted_schema)?;
    let mut rejected = writer(&deps.store, &work.objects.rejected, rejected_schema)?;
    let (mut rows_accepted, mut rows_rejected) = (0u64, 0u64);
    let mut rejections = Vec::new();
    let mut stream = frame.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let ok = is_null(batch.column(reason_column))?;
        let bad = not(&ok)?;
        let good_rows = filter_record_batch(&batch.project(&accepted_columns)?, &ok)?;
        let bad_rows = filter_record_batch(&batch.project(&rejected_columns)?, &bad)?;
        rows_accepted += good_rows.num_rows() as u64;
        rows_rejected += bad_rows.num_rows() as u64;
        collect_rejections(&bad_rows, &mut rejections);
        accepted
            .write(&good_rows)
            .await
            .map_err(|e| TransformError::Storage(e.to_string()))?;
        rejected
            .write(&bad_rows)
            .await
            .map_err(|e| TransformError::Storage(e.to_string()))?;
    }
    accepted
        .finish()
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    rejected
        .finish()
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    Ok(ChunkTransformed {
        work: work.clone(),
        rows_accepted,
        rows_rejected,
        rejections,
    })
}

/// Copies rejected rows into the inline report, up to `MAX_INLINE_REJECTIONS`.
fn collect_rejections(rows: &RecordBatch, out: &mut Vec<RowRejection>) {
    let text = |i: usize| rows.column(i).as_string::<i32>().clone();
    let (keys, columns, values, reasons) = (text(0), text(1), text(2), text(3));
    for row in 0..rows.num_rows() {
        if out.len() >= MAX_INLINE_REJECTIONS {
            return;
        }
        out.push(RowRejection {
            row_key: keys.value(row).to_string(),
            column: columns.value(row).to_string(),
            value: (!values.is_null(row)).then(|| values.value(row).to_string()),
            reason: reasons.value(row).to_string(),
        });
    }
}

impl Stage for Transformer {
    type Input = ChunkExtracted;
    const NAME: &'static str = "transform";
    const QUEUE: QueueRole = QueueRole::Transform;

    async fn handle(
        &self,
        input: ChunkExtracted,
        _: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let chunk = &input.work.chunk;
        let span = tracing::info_span!("transform", run = %chunk.run_id, chunk = chunk.seq, workspace = chunk.workspace_id);
        let transformed =
            tracing::Instrument::instrument(transform(&input.work, self), span).await?;
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

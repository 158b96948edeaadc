//! The load stage: stages a chunk's accepted rows with binary COPY, creates profiles for unknown
//! identities and applies the upsert, all in one transaction; a dry run rolls it back and
//! reports what it would have done.

use crate::rate::RowRateLimiter;
use crate::staging::stage_rows;
use crate::upsert::{
    ANALYZE_STAGE, ANALYZE_STORE, COPY_STAGE, CREATE_PROFILES, CREATE_STAGE, STORE_STATS_STALE,
    UPSERT_PROFILES,
};
use deadpool_postgres::Pool;
use futures::pin_mut;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{
    ChunkLoaded, ChunkTransformed, ChunkWork, ErrorCode, LoadStats, StageError, StageName,
};
use std::sync::Arc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// Rows per batch read from the normalized Parquet.
const BATCH_ROWS: usize = 8192;
/// Times a load is retried in place when it loses a race with another loader.
const CONFLICT_RETRIES: u32 = 5;

/// What the load stage needs besides its message.
pub struct Loader {
    pub store: Arc<dyn ObjectStore>,
    pub pool: Pool,
    pub limiter: RowRateLimiter,
}

/// Why a chunk could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the normalized chunk: {0}")]
    Storage(String),
    #[error("profile store: {0}")]
    Store(String),
    #[error("{0}")]
    Staging(#[from] crate::staging::StagingError),
    #[error("lost a race on identity {0}; retrying")]
    Conflict(String),
}

impl From<LoadError> for StageError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Staging(e) => StageError::permanent(ErrorCode::InvalidData, e.to_string()),
            LoadError::Storage(m) => StageError::retryable(ErrorCode::Storage, m),
            other => StageError::retryable(ErrorCode::Store, other.to_string()),
        }
    }
}

fn store_error(e: tokio_postgres::Error) -> LoadError {
    match e.code() {
        Some(code)
            if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            LoadError::Conflict(e.to_string())
        }
        _ => LoadError::Store(e.to_string()),
    }
}

/// Loads a chunk, retrying in place when a concurrent load created the same identity first.
pub async fn load(work: &ChunkWork, deps: &Loader) -> Result<LoadStats, LoadError> {
    let mut attempt = 0;
    loop {
        match load_once(work, deps).await {
            Err(LoadError::Conflict(m)) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                tracing::debug!(error = %m, attempt, "identity race; loading again");
            }
            other => return other,
        }
    }
}

async fn load_once(work: &ChunkWork, deps: &Loader) -> Result<LoadStats, LoadError> {
    let workspace = work.chunk.workspace_id;
    // The normalized chunk is compressed and bounded by chunk_rows; it is read whole.
    let bytes = deps
        .store
        .get(&Path::from(work.objects.transformed.as_str()))
        .await
        .map_err(|e| LoadError::Storage(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| LoadError::Storage(e.to_string()))?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| LoadError::Storage(e.to_string()))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| LoadError::Storage(e.to_string()))?;

    let mut client = deps
        .pool
        .get()
        .await
        .map_err(|e| LoadError::Store(e.to_string()))?;
    let tx = client.transaction().await.map_err(store_error)?;
    tx.batch_execute(CREATE_STAGE).await.map_err(store_error)?;
    let sink = tx.copy_in(COPY_STAGE).await.map_err(store_error)?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::JSONB,
            Type::TEXT_ARRAY,
        ],
    );
    pin_mut!(writer);
    let mut rows_loaded = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| LoadError::Storage(e.to_string()))?;
        let rows = stage_rows(&batch, &work.mapping)?;
        if !work.dry_run {
            deps.limiter.acquire(workspace, rows.len()).await;
        }
        for row in &rows {
            writer
                .as_mut()
                .write(&[
                    &row.key,
                    &row.updated_at,
                    &row.external_id,
                    &row.props,
                    &row.unset,
                ])
                .await
                .map_err(store_error)?;
        }
        rows_loaded += rows.len() as u64;
    }
    writer.finish().await.map_err(store_error)?;
    tx.batch_execute(ANALYZE_STAGE).await.map_err(store_error)?;

    let created = tx
        .execute(CREATE_PROFILES, &[&workspace])
        .await
        .map_err(store_error)?;
    let counts = tx
        .query_one(UPSERT_PROFILES, &[&workspace])
        .await
        .map_err(store_error)?;
    let updated: i64 = counts.get(0);
    let distinct: i64 = counts.get(1);
    if work.dry_run {
        tx.rollback().await.map_err(store_error)?;
    } else {
        tx.commit().await.map_err(store_error)?;
        let stale: bool = client
            .query_one(STORE_STATS_STALE, &[])
            .await
            .map_err(store_error)?
            .get(0);
        if stale {
            client
                .batch_execute(ANALYZE_STORE)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(LoadStats {
        rows_loaded,
        profiles_created: created,
        profiles_updated: updated as u64,
        profiles_unchanged: (distinct as u64).saturating_sub(created + updated as u64),
    })
}

impl Stage for Loader {
    type Input = ChunkTransformed;
    const NAME: &'static str = "load";
    const QUEUE: QueueRole = QueueRole::Load;

    async fn handle(
        &self,
        input: ChunkTransformed,
        _: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let chunk = &input.work.chunk;
        let span = tracing::info_span!("load", run = %chunk.run_id, chunk = chunk.seq, workspace = chunk.workspace_id);
        let stats = tracing::Instrument::instrument(load(&input.work, self), span).await?;
        tracing::info!(run = %chunk.run_id, chunk = chunk.seq, created = stats.profiles_created, updated = stats.profiles_updated, "chunk loaded");
        Ok(vec![Outgoing::message(&ChunkLoaded {
            chunk: chunk.clone(),
            dry_run: input.work.dry_run,
            stats,
        })?])
    }

    fn on_give_up(
        &self,
        input: &ChunkTransformed,
        attempts: u32,
        error: &StageError,
    ) -> Vec<Outgoing> {
        sluice_proto::stage::report_failure(&input.work.chunk, StageName::Load, attempts, error)
    }
}

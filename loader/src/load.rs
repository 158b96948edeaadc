//! The load stage: checks a chunk's accepted rows against the schema registry, stages them
//! with binary COPY, resolves their identities, creates profiles for unknown ones and applies
//! the upsert, all in one transaction; a dry run rolls it back and reports what it would have
//! done, with a sample of rows.

use crate::rate::RowRateLimiter;
use crate::registry::Registry;
use crate::resolve::{
    resolve_statement, ANALYZE_STAGE, ATTACH_IDENTITIES, COPY_STAGE, CREATE_PROFILES, CREATE_STAGE,
    RESOLUTION_COUNTS, SAMPLE,
};
use crate::staging::stage_rows;
use crate::upsert::{ANALYZE_STORE, STORE_STATS_STALE, UPSERT_PROFILES};
use deadpool_postgres::Pool;
use futures::pin_mut;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_proto::rejection;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{
    ChunkLoaded, ChunkTransformed, ChunkWork, ErrorCode, ImportMode, LoadStats, SampleRow,
    StageError, StageName, MAX_SAMPLE_ROWS,
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
        _ => LoadError::Store(match e.as_db_error() {
            Some(db) => db.to_string(),
            None => e.to_string(),
        }),
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
    let mapping = &work.mapping;
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
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::TEXT_ARRAY,
        ],
    );
    pin_mut!(writer);
    let mut registry = Registry::default();
    let mut rejections = Vec::new();
    let mut rows_loaded = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| LoadError::Storage(e.to_string()))?;
        let rows = stage_rows(&batch, mapping)?;
        registry
            .learn(
                &deps.pool,
                workspace,
                work.chunk.import_id,
                mapping,
                &rows,
                work.dry_run,
            )
            .await
            .map_err(|e| LoadError::Store(e.to_string()))?;
        let (rows, rejected) = registry.check(mapping, rows);
        rejections.extend(rejected);
        if !work.dry_run {
            deps.limiter.acquire(workspace, rows.len()).await;
        }
        for row in &rows {
            let props = serde_json::Value::Object(row.props.clone());
            writer
                .as_mut()
                .write(&[
                    &row.key,
                    &row.updated_at,
                    &row.identity,
                    &row.external_id,
                    &row.alias_kind,
                    &row.alias_name,
                    &row.email,
                    &row.phone,
                    &row.profile_ref,
                    &row.create_kind,
                    &row.create_value,
                    &props,
                    &row.unset,
                ])
                .await
                .map_err(store_error)?;
        }
        rows_loaded += rows.len() as u64;
    }
    writer.finish().await.map_err(store_error)?;
    tx.batch_execute(ANALYZE_STAGE).await.map_err(store_error)?;

    tx.execute(&resolve_statement(&mapping.precedence()), &[&workspace])
        .await
        .map_err(store_error)?;
    let created = match mapping.mode {
        ImportMode::Upsert => {
            let count: i64 = tx
                .query_one(CREATE_PROFILES, &[&workspace])
                .await
                .map_err(store_error)?
                .get(0);
            count as u64
        }
        ImportMode::UpdateOnly => 0,
    };
    tx.execute(ATTACH_IDENTITIES, &[&workspace])
        .await
        .map_err(store_error)?;
    let counts = tx
        .query_one(RESOLUTION_COUNTS, &[])
        .await
        .map_err(store_error)?;
    let (skipped, ambiguous, existing): (i64, i64, i64) =
        (counts.get(0), counts.get(1), counts.get(2));
    let sample = if work.dry_run {
        sample(&tx, workspace).await?
    } else {
        Vec::new()
    };
    let updated: i64 = tx
        .query_one(UPSERT_PROFILES, &[&workspace])
        .await
        .map_err(store_error)?
        .get(0);
    if !rejections.is_empty() {
        deps.store
            .put(
                &Path::from(work.objects.load_rejected.as_str()),
                rejection::to_json_lines(&rejections).into(),
            )
            .await
            .map_err(|e| LoadError::Storage(e.to_string()))?;
    }
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
        profiles_unchanged: (existing - updated).max(0) as u64,
        rows_skipped: skipped as u64,
        identities_ambiguous: ambiguous as u64,
        rows_rejected: rejections.len() as u64,
        rejected_by_reason: rejection::count_by_reason(rejections.iter().map(|r| &r.reason)),
        sample,
    })
}

/// The dry run's sample rows, read from the staging table before the upsert.
async fn sample(
    tx: &tokio_postgres::Transaction<'_>,
    workspace: i64,
) -> Result<Vec<SampleRow>, LoadError> {
    let rows = tx
        .query(SAMPLE, &[&workspace, &(MAX_SAMPLE_ROWS as i64)])
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|r| SampleRow {
            row_key: r.get(0),
            identity_kind: r.get(1),
            identity_value: r.get(2),
            profile_id: r.get(3),
            outcome: r.get(4),
            properties: r.get(5),
        })
        .collect())
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

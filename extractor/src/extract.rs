//! The extract stage: opens the chunk's source, reads exactly its `(lo, hi]` rows (or, for a
//! retry chunk, the rows of its keys up to `hi`) and streams them into one Parquet object at
//! the chunk's deterministic key.

use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::async_writer::AsyncArrowWriter;
use sluice_connectors::SourceError;
use sluice_connectors::SourceSpec;
use sluice_connectors::{BatchSink, Rows, Source};
use sluice_proto::chunk_file;
use sluice_proto::health::Readiness;
use sluice_proto::key_probe::{self, KeyCheck};
use sluice_proto::secrets::{MasterKey, SecretError};
use sluice_proto::stage::MASTER_KEY_CHECK;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{ChunkExtracted, ChunkTask, StageError, StageName};
use std::sync::Arc;

/// Rows per Arrow batch while reading.
pub const BATCH_ROWS: usize = 8192;

/// What the extract stage needs besides its message.
pub struct Extractor {
    /// Where chunk objects are written.
    pub store: Arc<dyn ObjectStore>,
    /// Opens the credentials a chunk carries sealed.
    pub master_key: MasterKey,
    /// Whether the key this process holds opens the fleet's probe, as last checked.
    pub key_check: Arc<std::sync::Mutex<KeyCheck>>,
}

impl Extractor {
    /// Checks the fleet's master key probe, keeping `key_check` and the process's readiness up
    /// to date: a process that cannot open what the fleet seals is not ready.
    pub async fn check_key(&self, readiness: &Readiness) {
        match key_probe::check(self.store.as_ref(), &self.master_key).await {
            Ok(found) => {
                if found == KeyCheck::Differs {
                    tracing::error!(
                        key = self.master_key.id(),
                        "this process holds another master key than the fleet's; it is not ready"
                    );
                }
                *self.key_check.lock().expect("key check lock") = found;
                readiness.set(MASTER_KEY_CHECK, found != KeyCheck::Differs);
            }
            Err(e) => tracing::warn!(error = %e, "checking the master key"),
        }
    }
}

/// Reads one chunk into Parquet and says so.
pub async fn extract(task: &ChunkTask, deps: &Extractor) -> Result<ChunkExtracted, SourceError> {
    let source = &task.source;
    let url = deps.master_key.open(&source.credentials).map_err(|e| {
        let message = format!("connection credentials: {e}");
        match (&e, *deps.key_check.lock().expect("key check lock")) {
            // This process holds the fleet's key: the message itself is at fault.
            (SecretError::WrongKey { .. }, KeyCheck::Matches) => SourceError::Secret(message),
            (SecretError::WrongKey { .. }, _) => SourceError::WrongKey(message),
            _ => SourceError::Secret(message),
        }
    })?;
    let url = String::from_utf8(url)
        .map_err(|_| SourceError::Secret("connection credentials are not UTF-8".into()))?;
    let connector = Source::open(&source.kind, &url).await?;
    let shape = connector
        .describe(&SourceSpec {
            relation: source.relation.clone(),
            key_column: source.key_column.clone(),
            watermark_column: source.watermark_column.clone(),
            columns: source.columns.clone(),
        })
        .await?;

    let schema = connector.chunk_schema(&shape);
    let path = Path::from(task.work.objects.extracted.as_str());
    let sink = BufWriter::new(deps.store.clone(), path);
    let writer = AsyncArrowWriter::try_new(sink, schema, Some(chunk_file::writer_properties()))
        .map_err(|e| SourceError::Storage(e.to_string()))?;
    let mut sink = ParquetSink(writer);
    let rows = match &source.keys {
        Some(keys) => Rows::Keys {
            keys,
            upto: &source.hi,
        },
        None => Rows::Range {
            lo: source.lo.as_ref(),
            hi: &source.hi,
        },
    };
    let rows_read = connector.read(&shape, rows, BATCH_ROWS, &mut sink).await?;
    let mut writer = sink.0;
    writer
        .finish()
        .await
        .map_err(|e| SourceError::Storage(e.to_string()))?;
    let bytes = writer.bytes_written() as u64;
    Ok(ChunkExtracted {
        work: task.work.clone(),
        rows_read,
        bytes,
    })
}

/// The chunk's Parquet object, written batch by batch as the source hands them over.
struct ParquetSink(AsyncArrowWriter<BufWriter>);

#[async_trait::async_trait]
impl BatchSink for ParquetSink {
    async fn put(&mut self, batch: arrow::record_batch::RecordBatch) -> Result<(), SourceError> {
        self.0
            .write(&batch)
            .await
            .map_err(|e| SourceError::Storage(e.to_string()))
    }
}

impl Stage for Extractor {
    type Input = ChunkTask;
    const NAME: &'static str = "extract";
    const QUEUE: QueueRole = QueueRole::Extract;

    fn chunk_of(input: &ChunkTask) -> Option<&sluice_proto::ChunkRef> {
        Some(&input.work.chunk)
    }

    async fn handle(&self, task: ChunkTask, _: &Delivered) -> Result<Vec<Outgoing>, StageError> {
        let chunk = &task.work.chunk;
        let extracted = extract(&task, self).await?;
        crate::metrics::record_chunk(chunk.workspace_id, extracted.rows_read, extracted.bytes);
        tracing::info!(run = %chunk.run_id, chunk = chunk.seq, rows = extracted.rows_read, "chunk extracted");
        Ok(vec![Outgoing::message(&extracted)?])
    }

    fn on_give_up(&self, task: &ChunkTask, attempts: u32, error: &StageError) -> Vec<Outgoing> {
        sluice_proto::stage::report_failure(&task.work.chunk, StageName::Extract, attempts, error)
    }
}

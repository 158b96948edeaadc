//! The load stage: checks a chunk's accepted rows against the schema registry, stages them
//! with binary COPY, resolves their identities, and applies them as profiles, events or
//! deletes, all in one transaction, writing what happened to each row as the chunk's lineage;
//! a dry run rolls it back and reports what it would have done.

use crate::copy::Stager;
use crate::events::{ensure_partitions, month_of};
use crate::guessed::NewProfiles;
use crate::profiles;
use crate::rate::RowRateLimiter;
use crate::registry::Registry;
use crate::resolve::{resolve, Probes, Unmatched, CREATE_STAGE};
use crate::staging::{stage_rows, StagedRow};
use crate::stores::StorePools;
use crate::{deletes, events, guesses, lineage, removals, statistics, subscriptions};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use sluice_proto::rejection;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{
    ChunkLoaded, ChunkTransformed, ChunkWork, ErrorCode, ImportMode, LoadStats, Mapping, Records,
    RowRejection, StageError, StageName, UnknownIdentity,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio_postgres::error::SqlState;

/// Rows per batch read from the normalized Parquet: each batch's rows are staged before they
/// are copied, so on wide rows this bounds the loader's memory; with properties staged as JSON
/// maps, 8192 took a loader to 181 MiB on 13-property rows, 2048 to 87, at the same speed.
const BATCH_ROWS: usize = 2048;
/// Times a load is retried in place when it loses a race with another loader.
const CONFLICT_RETRIES: u32 = 5;

/// What the load stage needs besides its message.
pub struct Loader {
    /// Where the transformer left the chunk's normalized rows.
    pub store: Arc<dyn ObjectStore>,
    /// The profile and event stores: the default one and those chunks are routed to.
    pub stores: StorePools,
    /// Each workspace's rows per second, and the number of loaders sharing fleet-wide rates.
    pub limiter: Arc<RowRateLimiter>,
    /// The destinations chunks have been delivered to, each with its request rate.
    pub senders: crate::destinations::route::Senders,
}

/// What a chunk's load writes to the run's error stream: rows it rejected, and rows it applied
/// despite a conflict of identities (recorded, not counted as rejected).
#[derive(Debug, Default)]
pub struct ChunkErrors {
    /// Rows not applied, with why.
    pub rejected: Vec<RowRejection>,
    /// Rows applied whose unique identities name another profile.
    pub conflicts: Vec<RowRejection>,
}

/// Why a chunk could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The chunk's normalized rows could not be read from the object store.
    #[error("reading the normalized chunk: {0}")]
    Storage(String),
    /// A statement on the stores failed.
    #[error("profile store: {0}")]
    Store(String),
    /// A row could not be staged (a value the store's schema refuses).
    #[error("{0}")]
    Staging(#[from] crate::staging::StagingError),
    /// Another loader created a profile for the same identity first; the load is retried.
    #[error("lost a race on identity {0}; retrying")]
    Conflict(String),
    /// The chunk's destination refused it, or could not be reached.
    #[error("{message}")]
    Destination {
        /// Whether sending again may succeed.
        retryable: bool,
        /// What the destination said.
        message: String,
    },
}

impl From<LoadError> for StageError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Staging(e) => StageError::permanent(ErrorCode::InvalidData, e.to_string()),
            LoadError::Storage(m) => StageError::retryable(ErrorCode::Storage, m),
            LoadError::Destination {
                retryable: true,
                message,
            } => StageError::retryable(ErrorCode::DestinationUnavailable, message),
            LoadError::Destination { message, .. } => {
                StageError::permanent(ErrorCode::DestinationRefused, message)
            }
            other => StageError::retryable(ErrorCode::Store, other.to_string()),
        }
    }
}

/// Classifies a store error: lost races are retried in place, the rest reported with the
/// server's message.
pub fn store_error(e: tokio_postgres::Error) -> LoadError {
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

/// The advisory lock namespace of a workspace's profiles: loads hold the lock shared, deletes
/// exclusively, so an identity is never linked to a profile a concurrent delete removes.
const PROFILE_LOCK: i32 = 0x736c_7063;

/// The statements opening a load's transaction: memory for its sorts and hashes, no JIT
/// compilation (the planner's estimates over the unanalyzed staging tables run to millions of
/// rows, which had each chunk's statements compiled at up to 0.4 s apiece, more than they then
/// took to run), the workspace's profile lock, and the staging table.
fn begin_load(workspace: i64, records: &Records) -> String {
    let lock = match records {
        Records::UserDeletes { .. } => "pg_advisory_xact_lock",
        _ => "pg_advisory_xact_lock_shared",
    };
    // Both values are integers, never input text.
    let key = workspace.rem_euclid(i32::MAX as i64);
    format!(
        "SET LOCAL work_mem = '{WORK_MEM}'; SET LOCAL jit = off; SELECT {lock}({PROFILE_LOCK}, {key}); {CREATE_STAGE}"
    )
}

/// What resolution does with rows naming no profile: profile loads create whole profiles
/// unless `update_only`; event loads create empty ones unless unknown identities are
/// rejected; deletes never create.
fn unmatched(mapping: &Mapping) -> Unmatched {
    match &mapping.records {
        Records::Profiles if mapping.mode == ImportMode::Upsert => Unmatched::CreateWhole,
        Records::Events(events) if events.unknown_identity == UnknownIdentity::Create => {
            Unmatched::CreateEmpty
        }
        _ => Unmatched::Skip,
    }
}

/// Whether a chunk of `mapping` may be staged on the guess that it matches nothing, when an
/// earlier chunk of its run matched nothing (see [`Probes::may_guess`]). Not with
/// subscriptions: a row subscribing a channel it carries no address for creates no profile
/// of its own, which only resolution sorts out.
fn guessable(mapping: &Mapping) -> bool {
    mapping.subscriptions.is_none() && Probes::may_guess(&mapping.precedence(), unmatched(mapping))
}

/// Whether a guessable chunk is staged on the guess that it matches nothing: when an earlier
/// chunk of its run matched nothing, or its workspace holds no profile yet (the first chunks
/// of an initial load; a concurrent load creating the same identities makes the guess wrong,
/// which the identities' key catches), and none of a sample of its `first` rows' identities
/// names a profile (so a run's chunk of updates is not guessed after its chunk of new rows).
async fn guess_fresh(
    tx: &tokio_postgres::Transaction<'_>,
    work: &ChunkWork,
    first: &[StagedRow],
) -> Result<bool, LoadError> {
    let (kinds, values): (Vec<&str>, Vec<&str>) = first
        .iter()
        .step_by((first.len() / GUESS_SAMPLE).max(1))
        .filter_map(|r| Some((r.create_kind.as_deref()?, r.create_value.as_deref()?)))
        .unzip();
    let expected = guesses::expect_fresh(work.chunk.run_id);
    let guess = tx
        .query_one(
            GUESS_FRESH,
            &[&work.chunk.workspace_id, &expected, &kinds, &values],
        )
        .await
        .map_err(store_error)?;
    Ok(guess.get(0))
}

/// Rows of a chunk's first batch whose identities are looked up before it is guessed fresh.
const GUESS_SAMPLE: usize = 16;

/// Whether to guess that a chunk of workspace `$1` matches nothing: its run expects it (`$2`)
/// or the workspace holds no profile, and no identity of the sample (kinds `$3`, values `$4`)
/// names one.
const GUESS_FRESH: &str =
    "SELECT ($2 OR NOT EXISTS (SELECT 1 FROM profile_store.profiles WHERE workspace_id = $1))
        AND NOT EXISTS (SELECT 1 FROM profile_store.identities i
                         WHERE i.workspace_id = $1
                           AND (i.kind, i.value) IN (SELECT * FROM unnest($3::text[], $4::text[])))";

/// Resolves the staged rows: a chunk staged on a guess creates its profiles, unless the
/// identities' key proves the guess wrong and its rows are resolved after all; any other
/// chunk with the probes it needs. After probing, records for the run's next chunks whether
/// this one matched nothing.
async fn resolve_rows(
    tx: &tokio_postgres::Transaction<'_>,
    work: &ChunkWork,
    mapping: &Mapping,
    guessed: Option<NewProfiles>,
) -> Result<(), LoadError> {
    let (workspace, import_id, run) = (
        work.chunk.workspace_id,
        work.chunk.import_id,
        work.chunk.run_id,
    );
    let creating = unmatched(mapping);
    if let Some(new) = guessed {
        let whole = creating == Unmatched::CreateWhole;
        let held = new.create(tx, (workspace, import_id), whole).await?;
        crate::metrics::record_guess(held);
        if held {
            guesses::record(run, true);
            return Ok(());
        }
        guesses::record(run, false);
    }
    resolve(
        tx,
        workspace,
        import_id,
        &mapping.precedence(),
        creating,
        Probes::WhenNeeded,
    )
    .await?;
    if guessable(mapping) {
        let fresh: bool = tx
            .query_one(MATCHED_NOTHING, &[])
            .await
            .map_err(store_error)?
            .get(0);
        guesses::record(run, fresh);
    }
    Ok(())
}

/// Whether resolution matched no existing profile: what makes the run's next chunks worth
/// resolving on a guess.
const MATCHED_NOTHING: &str =
    "SELECT NOT EXISTS (SELECT 1 FROM sluice_stage WHERE profile_id IS NOT NULL AND NOT created)";

/// Memory a load's statements sort and hash a chunk in before spilling to disk.
const WORK_MEM: &str = "64MB";

/// An object a stage before the loader wrote, whole.
async fn read_object(store: &dyn ObjectStore, key: &str) -> Result<bytes::Bytes, LoadError> {
    store
        .get(&Path::from(key))
        .await
        .map_err(|e| LoadError::Storage(format!("{key}: {e}")))?
        .bytes()
        .await
        .map_err(|e| LoadError::Storage(format!("{key}: {e}")))
}

/// Loads a chunk, retrying in place when a concurrent load created the same identity first.
/// `earlier` are the rows the transformer rejected, which the chunk's lineage lists too.
pub async fn load(
    work: &ChunkWork,
    deps: &Loader,
    earlier: &[RowRejection],
) -> Result<LoadStats, LoadError> {
    let mut attempt = 0;
    loop {
        match load_once(work, deps, earlier).await {
            Err(LoadError::Conflict(m)) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                tracing::debug!(error = %m, attempt, "identity race; loading again");
            }
            other => return other,
        }
    }
}

/// The chunk's normalized rows, in batches of [`BATCH_ROWS`], and how many there are.
pub(crate) async fn normalized_batches(
    deps: &Loader,
    work: &ChunkWork,
) -> Result<(ParquetRecordBatchReader, usize), LoadError> {
    // The normalized chunk is compressed and bounded by chunk_rows; it is read whole.
    let bytes = read_object(deps.store.as_ref(), &work.objects.transformed).await?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| LoadError::Storage(e.to_string()))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| LoadError::Storage(e.to_string()))?;
    Ok((reader, rows))
}

async fn load_once(
    work: &ChunkWork,
    deps: &Loader,
    earlier: &[RowRejection],
) -> Result<LoadStats, LoadError> {
    let workspace = work.chunk.workspace_id;
    let import_id = work.chunk.import_id;
    // A mirror import's key chunk holds the rows gone from the source, staged by their
    // identities alone; they unset what they had set instead of being applied.
    let removals = work.key_set.is_some();
    let reduced;
    let mapping = match removals {
        true => {
            reduced = work.mapping.identities_only();
            &reduced
        }
        false => &work.mapping,
    };
    let (batches, chunk_rows) = normalized_batches(deps, work).await?;

    let pool = deps.stores.pool(work.store.as_ref()).await?;
    let mut client = pool
        .get()
        .await
        .map_err(|e| LoadError::Store(e.to_string()))?;
    let tx = client.transaction().await.map_err(store_error)?;
    tx.batch_execute(&begin_load(workspace, &mapping.records))
        .await
        .map_err(store_error)?;
    // The first batch is staged before the copy opens: its identities tell whether to guess.
    let mut staged = batches.map(|batch| -> Result<Vec<StagedRow>, LoadError> {
        let batch = batch.map_err(|e| LoadError::Storage(e.to_string()))?;
        Ok(stage_rows(&batch, mapping, import_id)?)
    });
    let first = staged.next().transpose()?;
    let sample = first.as_deref().unwrap_or_default();
    let new = match guessable(mapping) && guess_fresh(&tx, work, sample).await? {
        true => Some(NewProfiles::reserve(&tx, chunk_rows).await?),
        false => None,
    };
    let mut stager = Stager::open(&tx, &mapping.records, new).await?;
    let mut registry = Registry::default();
    let mut errors = ChunkErrors::default();
    let mut months = BTreeSet::new();
    let mut stats = LoadStats::default();
    for rows in first.into_iter().map(Ok).chain(staged) {
        let mut rows = rows?;
        if !matches!(mapping.records, Records::UserDeletes { .. }) {
            registry
                .learn(&pool, workspace, import_id, mapping, &rows, work.dry_run)
                .await
                .map_err(|e| LoadError::Store(e.to_string()))?;
            let (fit, rejected) = registry.check(mapping, rows);
            rows = fit;
            errors.rejected.extend(rejected);
        }
        months.extend(rows.iter().filter_map(|r| r.event_time).map(month_of));
        if !removals {
            stats.rows_loaded += rows.len() as u64;
        }
        for row in &rows {
            stager.write(row).await?;
        }
    }
    let new = stager.finish().await?;
    resolve_rows(&tx, work, mapping, new).await?;
    match &mapping.records {
        Records::Profiles if removals => {
            let names = work.mapping.own_properties();
            removals::apply(&tx, workspace, import_id, &names, &mut stats).await?
        }
        Records::Profiles => {
            let addressless = subscriptions::reject_addressless(
                &tx,
                workspace,
                mapping,
                unmatched(mapping) != Unmatched::Skip,
            )
            .await?;
            stats.rows_loaded = stats.rows_loaded.saturating_sub(addressless.len() as u64);
            errors.rejected.extend(addressless);
            profiles::apply(
                &tx,
                (workspace, import_id),
                mapping,
                (work.dry_run, work.lineage),
                &mut stats,
                &mut errors,
            )
            .await?;
            if mapping.subscriptions.is_some() {
                let consent =
                    subscriptions::apply(&tx, workspace, import_id, work.chunk.run_id).await?;
                stats.subscriptions_changed = consent.changed;
                stats.subscriptions_stale = consent.stale;
            }
        }
        Records::Events(_) => {
            if !work.dry_run {
                ensure_partitions(&pool, &months).await?;
            }
            events::apply(
                &tx,
                (workspace, import_id),
                mapping,
                (work.dry_run, work.lineage),
                &mut stats,
                &mut errors,
            )
            .await?
        }
        Records::UserDeletes { delete_events } => {
            deletes::apply(
                &tx,
                workspace,
                import_id,
                work.chunk.run_id,
                *delete_events,
                &mut stats,
            )
            .await?
        }
    }
    // A mirror import's key chunk holds keys, not rows of the run: it has no lineage.
    if work.lineage && !removals {
        let mut rows = lineage::Lineage::new(&work.chunk, work.dry_run);
        rows.add_applied(&tx, &mapping.records, &errors.conflicts)
            .await?;
        rows.add_rejected(&errors.rejected);
        rows.add_rejected(earlier);
        rows.write(deps.store.as_ref()).await?;
    }
    let mut rejections = errors.rejected;
    stats.rows_rejected = rejections.len() as u64;
    stats.rejected_by_reason = rejection::count_by_reason(rejections.iter().map(|r| &r.reason));
    rejections.extend(errors.conflicts);
    write_rejections(deps, work, &rejections).await?;
    if work.dry_run {
        tx.rollback().await.map_err(store_error)?;
    } else {
        tx.commit().await.map_err(store_error)?;
        statistics::refresh(client);
    }
    Ok(stats)
}

/// Writes the rows a chunk's load rejected (or recorded) for the coordinator's error stream.
async fn write_rejections(
    deps: &Loader,
    work: &ChunkWork,
    rejections: &[RowRejection],
) -> Result<(), LoadError> {
    if rejections.is_empty() {
        return Ok(());
    }
    deps.store
        .put(
            &Path::from(work.objects.load_rejected.as_str()),
            rejection::to_json_lines(rejections).into(),
        )
        .await
        .map_err(|e| LoadError::Storage(e.to_string()))?;
    Ok(())
}

/// Delivers a chunk to its destination instead of the stores.
async fn deliver_to(
    work: &ChunkWork,
    route: &sluice_proto::destination::DestinationRoute,
    deps: &Loader,
) -> Result<LoadStats, LoadError> {
    let (stats, refused) = crate::destinations::route::deliver_chunk(work, route, deps).await?;
    write_rejections(deps, work, &refused).await?;
    Ok(stats)
}

impl Loader {
    /// The rows the transformer rejected from the chunk, for its lineage.
    async fn transform_rejections(&self, work: &ChunkWork) -> Result<Vec<RowRejection>, LoadError> {
        let bytes = read_object(self.store.as_ref(), &work.objects.rejected).await?;
        rejection::from_json_lines(&bytes)
            .map_err(|e| LoadError::Storage(format!("reading rejected rows: {e}")))
    }
}

impl Stage for Loader {
    type Input = ChunkTransformed;
    const NAME: &'static str = "load";
    const QUEUE: QueueRole = QueueRole::Load;

    fn chunk_of(input: &ChunkTransformed) -> Option<&sluice_proto::ChunkRef> {
        Some(&input.work.chunk)
    }

    async fn handle(
        &self,
        input: ChunkTransformed,
        _: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let chunk = &input.work.chunk;
        if !input.work.dry_run {
            // Permits first, so a chunk waiting for its workspace's rate holds no connection.
            self.limiter
                .acquire(
                    chunk.workspace_id,
                    input.work.load_rows_per_second,
                    input.rows_accepted as usize,
                )
                .await;
        }
        let earlier = match input.rows_rejected > 0 && input.work.lineage {
            true => self.transform_rejections(&input.work).await?,
            false => Vec::new(),
        };
        let stats = match &input.work.destination {
            Some(route) => deliver_to(&input.work, route, self).await?,
            None => load(&input.work, self, &earlier).await?,
        };
        let store = match input.work.mapping.records {
            Records::Profiles => "profiles",
            Records::Events(_) => "events",
            Records::UserDeletes { .. } => "deletes",
        };
        crate::metrics::record_chunk(chunk.workspace_id, store, input.work.dry_run, &stats);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(extra: serde_json::Value) -> Mapping {
        let mut spec = serde_json::json!({"identity": {"external_id": "ext"}, "properties": {}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn deletes_hold_the_profile_lock_alone_and_loads_share_it() {
        let deletes = Records::UserDeletes {
            delete_events: false,
        };
        assert!(begin_load(7, &deletes).contains("pg_advisory_xact_lock(1936486499, 7)"));
        let profiles = begin_load(7, &Records::Profiles);
        assert!(profiles.contains("pg_advisory_xact_lock_shared(1936486499, 7)"));
        assert!(profiles.contains("CREATE TEMP TABLE sluice_rows"));
    }

    #[test]
    fn only_upserts_and_event_loads_that_create_make_profiles() {
        assert_eq!(
            unmatched(&mapping(serde_json::json!({}))),
            Unmatched::CreateWhole
        );
        assert_eq!(
            unmatched(&mapping(serde_json::json!({"mode": "update_only"}))),
            Unmatched::Skip
        );
        let events = |unknown: &str| {
            mapping(serde_json::json!({"records": {"events": {
                "name": {"value": "Opened"}, "time": {"column": "at"},
                "unknown_identity": unknown}}}))
        };
        assert_eq!(unmatched(&events("create")), Unmatched::CreateEmpty);
        assert_eq!(unmatched(&events("reject")), Unmatched::Skip);
        let deletes = serde_json::json!({"records": {"user_deletes": {"delete_events": true}}});
        assert_eq!(unmatched(&mapping(deletes)), Unmatched::Skip);
    }
}

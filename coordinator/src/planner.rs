//! Plans a run: fixes its upper bound below `now − settle_lag` (and any older open
//! transaction), cuts `(watermark, hi]` into chunks on the source's index, adds the chunks that
//! read rejected rows again by key (`retries.rs`) and a mirror import's key chunk (every key of
//! the source), records them, and builds each chunk's task.

use crate::apply::{open_credentials, source_spec, ApplyError};
use crate::run_state::{transition_if_allowed, RunEvent};
use crate::spec::ImportDecl;
use sluice_connectors::source::{KeyKind, Unreadable, UnreadableRow};
use sluice_connectors::{Source, SourceError};
use sluice_proto::destination::{DestinationKind, DestinationRoute};
use sluice_proto::secrets::{MasterKey, Sealed};
use sluice_proto::{
    Bound, ChunkObjects, ChunkRef, ChunkTask, ChunkWork, ConnectionKind, KeySetWork, KeyValue,
    Reason, Records, ReplayWindow, RowRejection, SourceTask, StoreRoute,
};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Why a run could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The source failed; the run fails with this error.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// The stored import cannot be planned.
    #[error("{0}")]
    Import(String),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl From<ApplyError> for PlanError {
    fn from(e: ApplyError) -> Self {
        PlanError::Import(e.to_string())
    }
}

/// A run's import, connection and position, as planning and task building need them.
pub struct RunContext {
    /// The run.
    pub run_id: Uuid,
    /// Its workspace.
    pub workspace_id: i64,
    /// Its import.
    pub import_id: i64,
    /// Whether it writes nothing and only reports.
    pub dry_run: bool,
    /// The import as applied.
    pub import: ImportDecl,
    /// The kind of source the import's connection is.
    pub kind: ConnectionKind,
    /// The connection's credentials, sealed.
    pub credentials: Sealed,
    /// Where the last run ended: the run reads after it.
    pub watermark: Option<Bound>,
    /// The workspace's event retention policy, in days.
    pub retention_days: Option<u32>,
    /// The rows per second the workspace's loads may write across the fleet, when limited.
    pub load_rows_per_second: Option<u32>,
    /// A replay run's window; it reads from there instead of from the watermark.
    pub replay: Option<ReplayWindow>,
    /// When the run was requested.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// A mirror import's key set from its last successful run.
    pub previous_key_set: Option<String>,
    /// The store the workspace lives in, when not the default one.
    pub store: Option<StoreRoute>,
    /// The platform the import delivers to instead of the stores.
    pub destination: Option<DestinationRoute>,
}

impl RunContext {
    /// Whether the run reads every key of the source too: a mirror import's runs do, but for
    /// replays, which read a window of the past.
    pub fn mirrors(&self) -> bool {
        self.import.removals.is_some() && self.replay.is_none()
    }
}

/// Loads what planning needs for a run.
pub async fn context(client: &impl GenericClient, run_id: Uuid) -> Result<RunContext, PlanError> {
    let row = client
        .query_one(
            "SELECT r.workspace_id, r.import_id, r.dry_run, i.spec, c.credentials, wm.position,
                    w.event_retention_days, r.replay_from, r.replay_until, c.kind,
                    w.load_rows_per_second, r.created_at, i.key_set, w.store, s.url,
                    d.name, d.kind, d.url, d.credentials, d.requests_per_second
               FROM control.runs r
               JOIN control.workspaces w ON w.id = r.workspace_id
               JOIN control.stores s ON s.name = w.store
               JOIN control.imports i ON i.id = r.import_id
               JOIN control.connections c ON c.id = i.connection_id
               LEFT JOIN control.watermarks wm ON wm.import_id = r.import_id
               LEFT JOIN control.destinations d
                 ON d.workspace_id = r.workspace_id AND d.name = i.spec->>'destination'
              WHERE r.id = $1",
            &[&run_id],
        )
        .await?;
    let import: ImportDecl = serde_json::from_value(row.get(3))
        .map_err(|e| PlanError::Import(format!("stored import spec: {e}")))?;
    let credentials: Sealed = serde_json::from_value(row.get(4))
        .map_err(|e| PlanError::Import(format!("stored credentials: {e}")))?;
    let watermark: Option<serde_json::Value> = row.get(5);
    let watermark = watermark
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| PlanError::Import(format!("stored watermark: {e}")))?;
    let store = match row.get::<_, Option<serde_json::Value>>(14) {
        None => None,
        Some(url) => Some(StoreRoute {
            name: row.get(13),
            url: serde_json::from_value(url)
                .map_err(|e| PlanError::Import(format!("stored store URL: {e}")))?,
        }),
    };
    let destination = match (&import.destination, row.get::<_, Option<String>>(15)) {
        (None, _) => None,
        (Some(name), None) => {
            return Err(PlanError::Import(format!(
                "the import delivers to destination {name:?}, which the workspace no longer has"
            )))
        }
        (Some(_), Some(name)) => Some(DestinationRoute {
            name,
            kind: DestinationKind::parse(row.get(16)).ok_or_else(|| {
                PlanError::Import(format!(
                    "stored destination kind {:?}",
                    row.get::<_, &str>(16)
                ))
            })?,
            url: row.get(17),
            credentials: serde_json::from_value(row.get(18))
                .map_err(|e| PlanError::Import(format!("stored destination credentials: {e}")))?,
            requests_per_second: row.get::<_, i32>(19).max(1) as u32,
        }),
    };
    Ok(RunContext {
        run_id,
        workspace_id: row.get(0),
        import_id: row.get(1),
        dry_run: row.get(2),
        import,
        credentials,
        watermark,
        retention_days: row.get::<_, Option<i32>>(6).map(|d| d.max(0) as u32),
        load_rows_per_second: row.get::<_, Option<i32>>(10).map(|r| r.max(1) as u32),
        kind: sluice_proto::ConnectionKind::new(row.get::<_, String>(9)),
        replay: match (row.get(7), row.get(8)) {
            (Some(from), Some(until)) => Some(ReplayWindow { from, until }),
            _ => None,
        },
        requested_at: row.get(11),
        previous_key_set: row.get(12),
        store,
        destination,
    })
}

/// The planned range of a run.
pub struct Plan {
    /// The run's upper bound; `None` when there is nothing to read.
    pub hi: Option<Bound>,
    /// Rows are read only below this instant.
    pub cap: chrono::DateTime<chrono::Utc>,
    /// Rows stamped in the future, held back.
    pub held_back_future: u64,
    /// Chunk ranges `(lo, hi]`.
    pub chunks: Vec<(Option<Bound>, Bound)>,
    /// A mirror run's key chunk: its upper bound, past every row the source can hold.
    pub keys: Option<Bound>,
    /// Rows no run can read: counted on the run and sampled into its error stream.
    pub unreadable: Unreadable,
}

/// The error stream's record of a row planning found no run can read; a row without a key is
/// named as the `keyless`th such row.
fn unreadable_row(import: &ImportDecl, keyless: usize, row: &UnreadableRow) -> RowRejection {
    let (key_column, watermark_column) = (&import.key, &import.watermark);
    let (column, value, message) = match row.reason {
        Reason::MissingKey => (
            key_column.clone(),
            None,
            format!(
                "the key column {key_column} is NULL: no run can place the row; give it a key, or select one with coalesce in a query source"
            ),
        ),
        _ => (
            watermark_column.clone(),
            row.watermark.clone(),
            format!(
                "the watermark column {watermark_column} is {}: no run reads the row until it has one; coalesce it to a time in a query source (coalesce({watermark_column}, created_at))",
                row.watermark.as_deref().unwrap_or("NULL")
            ),
        ),
    };
    let row_key = match &row.key {
        Some(key) => key.clone(),
        None => format!("(no key #{keyless})"),
    };
    let values = [
        (key_column.clone(), row.key.clone()),
        (watermark_column.clone(), row.watermark.clone()),
    ];
    RowRejection {
        row_key,
        column,
        value,
        reason: row.reason,
        message,
        row: values.into_iter().collect(),
    }
}

/// A bound past every row: the key chunk of a mirror run reads every key, including rows
/// changed since the run's own upper bound was fixed.
fn past_every_row(key: &KeyKind) -> Bound {
    Bound {
        watermark: chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .expect("a valid instant")
            .to_utc(),
        key: match key {
            KeyKind::Int => KeyValue::Int(i64::MAX),
            KeyKind::Text { .. } => KeyValue::Text(String::new()),
        },
    }
}

/// Opens the run's source with the credentials its connection sealed.
pub async fn open_source(key: &MasterKey, ctx: &RunContext) -> Result<Source, PlanError> {
    let url = open_credentials(
        key,
        &ctx.import.connection,
        &serde_json::to_value(&ctx.credentials).expect("serializes"),
    )?;
    Ok(Source::open(&ctx.kind, &url).await?)
}

/// Asks the source for the run's range and chunk boundaries.
pub async fn plan(source: &Source, ctx: &RunContext) -> Result<Plan, PlanError> {
    let shape = source.describe(&source_spec(&ctx.import)).await?;
    let start = match &ctx.replay {
        Some(window) => source.position_before(&shape, window.from).await?,
        None => ctx.watermark.clone(),
    };
    let range = source
        .plan_range(
            &shape,
            start.as_ref(),
            ctx.import.settle_lag,
            ctx.replay.map(|w| w.until),
        )
        .await?;
    let mut chunks = Vec::new();
    if let Some(hi) = &range.hi {
        let boundaries = source
            .chunk_boundaries(&shape, start.as_ref(), hi, ctx.import.chunk_rows)
            .await?;
        let mut lo = start.clone();
        for b in boundaries.into_iter().chain(std::iter::once(hi.clone())) {
            chunks.push((lo.clone(), b.clone()));
            lo = Some(b);
        }
    }
    Ok(Plan {
        hi: range.hi,
        cap: range.cap,
        held_back_future: range.held_back_future,
        unreadable: range.unreadable,
        chunks,
        keys: ctx.mirrors().then(|| past_every_row(&shape.key)),
    })
}

/// Records the plan: the chunks (its ranges, then the retry chunks that read the import's
/// rejected rows again, then a mirror run's key chunk) and the run's range, and releases the
/// first `window` chunks; a run with nothing to read succeeds now. Returns how many chunks the
/// run has, or `None` when it is no longer being planned (it was stopped meanwhile).
pub async fn record(
    client: &impl GenericClient,
    ctx: &RunContext,
    plan: &Plan,
    window: u32,
) -> Result<Option<usize>, tokio_postgres::Error> {
    let unreadable = &plan.unreadable;
    let retries = crate::retries::chunks(client, ctx).await?;
    let retry_batches = retries.as_ref().map_or(&[][..], |r| &r.batches[..]);
    let planned = RunEvent::Planned {
        chunks: plan.chunks.len() + retry_batches.len() + usize::from(plan.keys.is_some()),
        unreadable: unreadable.without_watermark + unreadable.without_key > 0,
    };
    // A run stopped while it was planned stays stopped: nothing of its plan is recorded.
    if transition_if_allowed(client, ctx.run_id, &planned)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    crate::retries::expire(client, ctx).await?;
    let json = |b: &Option<Bound>| {
        b.as_ref()
            .map(|b| serde_json::to_value(b).expect("serializes"))
    };
    let ranges = plan
        .chunks
        .iter()
        .map(|(lo, hi)| (lo.clone(), hi.clone(), "rows", None));
    let retry = retry_batches.iter().map(|keys| {
        let upto = retries
            .as_ref()
            .expect("batches come with a bound")
            .upto
            .clone();
        (None, upto, "retry", Some(keys))
    });
    let keys = plan.keys.iter().map(|hi| (None, hi.clone(), "keys", None));
    let chunks: Vec<(Option<Bound>, Bound, &str, Option<&serde_json::Value>)> =
        ranges.chain(retry).chain(keys).collect();
    for (seq, (lo, hi, kind, keys)) in chunks.iter().enumerate() {
        client
            .execute(
                "INSERT INTO control.chunks (run_id, seq, lo, hi, kind, keys)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (run_id, seq) DO NOTHING",
                &[
                    &ctx.run_id,
                    &(seq as i32),
                    &json(lo),
                    &serde_json::to_value(hi).expect("serializes"),
                    kind,
                    keys,
                ],
            )
            .await?;
    }
    client
        .execute(
            "UPDATE control.runs
                SET lo = $2, hi = $3, cap = $4, held_back_future = $5, chunk_count = $6,
                    rows_without_watermark = $7, rows_without_key = $8,
                    object_retention_seconds = $9, lineage_retention_seconds = $10,
                    started_at = coalesce(started_at, now())
              WHERE id = $1",
            &[
                &ctx.run_id,
                &json(&ctx.watermark),
                &json(&plan.hi),
                &plan.cap,
                &(plan.held_back_future as i64),
                &(chunks.len() as i32),
                &(unreadable.without_watermark as i64),
                &(unreadable.without_key as i64),
                &(ctx.import.object_retention.as_secs() as i64),
                &(ctx.import.lineage_retention.as_secs() as i64),
            ],
        )
        .await?;
    let mut keyless = 0;
    let rows: Vec<RowRejection> = unreadable
        .samples
        .iter()
        .map(|row| {
            if row.key.is_none() {
                keyless += 1;
            }
            unreadable_row(&ctx.import, keyless, row)
        })
        .collect();
    crate::errors::record_planning(client, ctx.run_id, &rows).await?;
    if !chunks.is_empty() {
        crate::window::release(client, ctx.run_id, window, None).await?;
    } else if ctx.dry_run {
        crate::dry_run::conclude(client, ctx.run_id).await?;
    }
    Ok(Some(chunks.len()))
}

/// Which released chunks to publish.
#[derive(Debug, Clone, Copy)]
pub enum Released {
    /// Every chunk of the run released and not yet extracted.
    All,
    /// Those the loaded chunk `seq` released.
    By(u32),
}

/// The tasks of a run's released chunks that are still pending.
pub async fn pending_tasks(
    client: &impl GenericClient,
    ctx: &RunContext,
    released: Released,
) -> Result<Vec<ChunkTask>, PlanError> {
    let by = match released {
        Released::All => None,
        Released::By(seq) => Some(seq as i32),
    };
    let rows = client
        .query(
            "SELECT seq, lo, hi, kind, keys FROM control.chunks
              WHERE run_id = $1 AND status = 'pending' AND released_at IS NOT NULL
                AND ($2::int4 IS NULL OR released_by = $2)
              ORDER BY seq",
            &[&ctx.run_id, &by],
        )
        .await?;
    let mut mapping = ctx.import.mapping();
    if let Records::Events(events) = &mut mapping.records {
        events.retention_days = ctx.retention_days;
    }
    let spec = source_spec(&ctx.import);
    rows.iter()
        .map(|row| {
            let seq: i32 = row.get(0);
            let lo: Option<serde_json::Value> = row.get(1);
            let bound = |v: serde_json::Value| {
                serde_json::from_value::<Bound>(v)
                    .map_err(|e| PlanError::Import(format!("stored chunk bound: {e}")))
            };
            let chunk = ChunkRef {
                run_id: ctx.run_id,
                workspace_id: ctx.workspace_id,
                import_id: ctx.import_id,
                seq: seq as u32,
            };
            // A key chunk reads the key and the identities of every row.
            let keys = row.get::<_, String>(3) == "keys";
            let key_set = keys.then(|| KeySetWork {
                current: ChunkObjects::key_set(&chunk),
                previous: ctx.previous_key_set.clone(),
            });
            let columns = match keys {
                true => mapping
                    .identity
                    .fields()
                    .iter()
                    .map(|(_, c)| c.to_string())
                    .collect(),
                false => spec.columns.clone(),
            };
            Ok(ChunkTask {
                work: ChunkWork {
                    objects: ChunkObjects::for_chunk(&chunk),
                    chunk,
                    dry_run: ctx.dry_run,
                    mapping: mapping.clone(),
                    load_rows_per_second: ctx.load_rows_per_second,
                    run_started_at: Some(ctx.requested_at),
                    key_set,
                    store: ctx.store.clone(),
                    // Lineage records what the stores did to each row; a destination's
                    // platform does not say.
                    lineage: !ctx.import.lineage_retention.is_zero() && ctx.destination.is_none(),
                    destination: ctx.destination.clone(),
                },
                source: SourceTask {
                    kind: ctx.kind.clone(),
                    credentials: ctx.credentials.clone(),
                    relation: spec.relation.clone(),
                    key_column: spec.key_column.clone(),
                    watermark_column: spec.watermark_column.clone(),
                    columns,
                    lo: lo.map(bound).transpose()?,
                    hi: bound(row.get(2))?,
                    keys: row
                        .get::<_, Option<serde_json::Value>>(4)
                        .map(serde_json::from_value::<Vec<KeyValue>>)
                        .transpose()
                        .map_err(|e| PlanError::Import(format!("stored retry keys: {e}")))?,
                },
            })
        })
        .collect()
}

//! The scheduler: fires scheduled imports. Any number of coordinators run it; one at a time
//! leads, holding a PostgreSQL advisory lock on a connection of its own, and another takes over
//! within seconds when the leader dies (its connection closes, the lock is freed). Each firing
//! is idempotent besides: the run id is derived from the import and the schedule slot, due
//! imports are claimed with `FOR UPDATE SKIP LOCKED`, and the slot moves on only after the run
//! is recorded and its request published — so no slot fires twice and none is lost. An import
//! declared `after` others fires a slot only once they have fired theirs and finished.

use crate::runs::{self, NewRun, Requested};
use crate::spec::ImportDecl;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sluice_proto::headers::TraceContext;
use sluice_proto::{Bus, RunRequested};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// The advisory lock the leading scheduler holds.
const LEADER_LOCK: i64 = 7_405_340_579;

/// How often the leader looks for due imports, and followers for a free lead.
const TICK: Duration = Duration::from_secs(1);
const FOLLOW: Duration = Duration::from_secs(2);

/// Due imports fired in one transaction.
const BATCH: usize = 100;

/// Run requests a batch has out at once, waiting for their confirms.
const PUBLISHING: usize = 64;

/// Where the scheduler reads the time; tests drive it by hand.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why a tick could not finish; the next tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// The control plane could not be reached.
    #[error("connecting to the control plane: {0}")]
    Connect(#[source] crate::database::DatabaseError),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
    /// The broker refused a message.
    #[error("publishing a run request: {0}")]
    Bus(#[from] sluice_proto::bus::BusError),
}

/// What one tick did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// Runs requested.
    pub started: u32,
    /// Slots that fired while a run of the import was active.
    pub skipped: u32,
    /// Due slots held back until the imports they run after have finished theirs.
    pub waiting: u32,
}

const DUE: &str = "SELECT i.id, i.workspace_id, w.name, i.name, i.spec, i.next_fire_at
   FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
  WHERE i.state = 'scheduled' AND i.next_fire_at <= $1 AND i.id <> ALL($2)
  ORDER BY i.next_fire_at
  LIMIT $3
  FOR UPDATE OF i SKIP LOCKED";

/// The predecessors (`after`) that hold a slot back: those that have not fired their own
/// slot at or before it yet, or whose run is still active.
const WAITING_FOR: &str = "SELECT p.name FROM control.imports p
  WHERE p.workspace_id = $1 AND p.name = ANY($2)
    AND ((p.state = 'scheduled' AND p.next_fire_at <= $3)
         OR EXISTS (SELECT 1 FROM control.runs r
                     WHERE r.import_id = p.id AND r.status IN ('queued', 'planning', 'running')))";

/// Fires every import whose next slot is due at `now`: records the run (or a skipped run when
/// one is active), publishes its request, and moves the import to its next slot after `now`
/// (slots missed while no scheduler ran are not caught up one by one). Many due imports go
/// in batches of `BATCH`, each committed once its requests are confirmed, so the first runs
/// of a large slot are planned while the scheduler fires the rest.
pub async fn tick(client: &mut Client, bus: &Bus, now: DateTime<Utc>) -> Result<Fired, TickError> {
    let mut fired = Fired::default();
    let mut held_back = Vec::new();
    while fire_batch(client, bus, now, &mut held_back, &mut fired).await? == BATCH {}
    Ok(fired)
}

/// A due slot that fires in this batch.
struct Firing {
    import_id: i64,
    workspace_id: i64,
    workspace: String,
    name: String,
    slot: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    run_id: uuid::Uuid,
    trace: TraceContext,
}

/// Records a batch's runs in one statement; those that conflict (a run of the import is
/// active, or the slot's run was recorded before) are left out and go through `runs::request`.
const RECORD: &str =
    "INSERT INTO control.runs (id, workspace_id, import_id, status, dry_run, requested_by,
                                   trace_id, scheduled_for)
SELECT f.id, f.workspace_id, f.import_id, 'queued', false, 'schedule', f.trace_id, f.slot
  FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::timestamptz[])
       AS f(id, workspace_id, import_id, trace_id, slot)
ON CONFLICT DO NOTHING
RETURNING id";

/// Moves a batch's imports to their next slots.
const MOVE_ON: &str = "UPDATE control.imports i SET next_fire_at = f.next
  FROM unnest($1::int8[], $2::timestamptz[]) AS f(id, next)
 WHERE i.id = f.id";

/// Fires up to `BATCH` due imports in one transaction, leaving out those `held_back` (already
/// waiting for the imports they run after) and adding the ones that wait now; returns how
/// many due imports it took.
async fn fire_batch(
    client: &mut Client,
    bus: &Bus,
    now: DateTime<Utc>,
    held_back: &mut Vec<i64>,
    fired: &mut Fired,
) -> Result<usize, TickError> {
    let tx = client.transaction().await?;
    let due = tx.query(DUE, &[&now, &*held_back, &(BATCH as i64)]).await?;
    let mut firings = Vec::with_capacity(due.len());
    for row in &due {
        let (import_id, workspace_id): (i64, i64) = (row.get(0), row.get(1));
        let (workspace, name): (String, String) = (row.get(2), row.get(3));
        let slot: DateTime<Utc> = row.get(5);
        let decl = serde_json::from_value::<ImportDecl>(row.get(4)).ok();
        let after: Vec<String> = decl.as_ref().map(|d| d.after.clone()).unwrap_or_default();
        if !after.is_empty() {
            let waiting = tx
                .query(WAITING_FOR, &[&workspace_id, &after, &slot])
                .await?;
            if !waiting.is_empty() {
                let names: Vec<String> = waiting.iter().map(|r| r.get(0)).collect();
                tracing::debug!(import = %name, %slot, waiting_for = ?names, "slot waits for the imports it runs after");
                fired.waiting += 1;
                held_back.push(import_id);
                continue;
            }
        }
        let next = decl
            .and_then(|i| i.schedule)
            .and_then(|s| s.compile().ok())
            .and_then(|s| s.next_after(now.max(slot)));
        let run_id =
            RunRequested::derived_run_id(&workspace, &name, &format!("slot:{}", slot.to_rfc3339()));
        firings.push(Firing {
            import_id,
            workspace_id,
            workspace,
            name,
            slot,
            next,
            run_id,
            trace: TraceContext::new_trace(),
        });
    }
    let recorded: std::collections::HashSet<uuid::Uuid> = tx
        .query(
            RECORD,
            &[
                &firings.iter().map(|f| f.run_id).collect::<Vec<_>>(),
                &firings.iter().map(|f| f.workspace_id).collect::<Vec<_>>(),
                &firings.iter().map(|f| f.import_id).collect::<Vec<_>>(),
                &firings
                    .iter()
                    .map(|f| f.trace.trace_id.as_str())
                    .collect::<Vec<_>>(),
                &firings.iter().map(|f| f.slot).collect::<Vec<_>>(),
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut requests = Vec::new();
    for firing in &firings {
        let requested = match recorded.contains(&firing.run_id) {
            true => Requested::Exists {
                run_id: firing.run_id,
                status: runs::status::QUEUED.to_string(),
            },
            false => {
                runs::request(
                    &tx,
                    &NewRun {
                        run_id: firing.run_id,
                        workspace_id: firing.workspace_id,
                        import_id: firing.import_id,
                        dry_run: false,
                        requested_by: "schedule",
                        trace_id: &firing.trace.trace_id,
                        scheduled_for: Some(firing.slot),
                        idempotency_key: None,
                        replay: None,
                    },
                )
                .await?
            }
        };
        let (name, slot, run_id) = (&firing.name, firing.slot, firing.run_id);
        match requested {
            Requested::Skipped { active } => {
                tracing::info!(import = %name, %slot, %active, "schedule fired while a run is active; recorded as skipped");
                fired.skipped += 1;
            }
            Requested::Exists { .. } => {
                let request = RunRequested {
                    run_id,
                    workspace: firing.workspace.clone(),
                    import: name.clone(),
                    dry_run: false,
                    requested_by: "schedule".to_string(),
                    requested_at: now,
                    scheduled_for: Some(slot),
                    idempotency_key: None,
                    replay: None,
                };
                tracing::info!(import = %name, %slot, run = %run_id, "schedule fired");
                requests.push((request, firing.trace.clone()));
                fired.started += 1;
            }
        }
    }
    let imports: Vec<i64> = firings.iter().map(|f| f.import_id).collect();
    let nexts: Vec<Option<DateTime<Utc>>> = firings.iter().map(|f| f.next).collect();
    tx.execute(MOVE_ON, &[&imports, &nexts]).await?;
    // The requests go out together, their confirms awaited side by side; the slots move on
    // only once every one is confirmed.
    futures::stream::iter(requests)
        .map(|(request, trace)| async move { bus.publish(&request, &trace).await })
        .buffer_unordered(PUBLISHING)
        .try_collect::<()>()
        .await?;
    tx.commit().await?;
    Ok(due.len())
}

/// Records which coordinator leads, for operators and tests.
const LEAD: &str = "INSERT INTO control.scheduler_lead (id, holder, since) VALUES (1, $1, now())
ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, since = EXCLUDED.since";

/// Runs the scheduler until `shutdown`: follows until it can lead, then ticks every second
/// and evaluates the imports' alert rules every `alert_every`.
pub async fn run(
    database_url: String,
    amqp_url: String,
    topology: sluice_proto::Topology,
    holder: String,
    clock: std::sync::Arc<dyn Clock>,
    alert_every: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(
            &database_url,
            &amqp_url,
            &topology,
            &holder,
            (&*clock, alert_every),
            &shutdown,
        )
        .await
        {
            tracing::warn!(error = %sluice_proto::error::chain(&e), "scheduler lost its connection; following again");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FOLLOW) => {}
        }
    }
}

/// Waits for the lead, then ticks while the connection holding it lives.
async fn lead(
    database_url: &str,
    amqp_url: &str,
    topology: &sluice_proto::Topology,
    holder: &str,
    (clock, alert_every): (&dyn Clock, Duration),
    shutdown: &CancellationToken,
) -> Result<(), TickError> {
    let mut client = crate::database::connect(database_url)
        .await
        .map_err(TickError::Connect)?;
    loop {
        let leads: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?
            .get(0);
        if leads {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(FOLLOW) => {}
        }
    }
    client.execute(LEAD, &[&holder]).await?;
    tracing::info!(holder, "leading the scheduler");
    let Some(bus) = Bus::connect_with_retry(amqp_url, topology, shutdown).await else {
        return Ok(());
    };
    let mut alerts_at: Option<DateTime<Utc>> = None;
    loop {
        let now = clock.now();
        let alerts_due =
            alerts_at.is_none_or(|at| (now - at).to_std().unwrap_or_default() >= alert_every);
        if alerts_due {
            alerts_at = Some(now);
            if let Err(e) = crate::alerts::evaluate(&mut client, now).await {
                tracing::warn!(error = %e, "evaluating alert rules; trying again");
            }
        }
        match tick(&mut client, &bus, now).await {
            Ok(_) => {}
            Err(TickError::Store(e)) if client.is_closed() => {
                bus.close().await;
                return Err(TickError::Store(e));
            }
            Err(e) => {
                tracing::warn!(error = %sluice_proto::error::chain(&e), "scheduler tick failed; trying again")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                bus.close().await;
                return Ok(());
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

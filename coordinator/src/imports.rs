//! Import lifecycle: states (`draft`, `ready`, `scheduled`, `paused`, `stopped`), their
//! transitions with who made them and when, and what `sluice imports list|show` prints.

use crate::schedule::Schedule;
use crate::spec::ImportDecl;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// Import states.
pub mod state {
    /// Created, not yet dry-run: it is not scheduled and only dry runs are allowed.
    pub const DRAFT: &str = "draft";
    /// Runs when triggered; no schedule.
    pub const READY: &str = "ready";
    /// Runs on its schedule.
    pub const SCHEDULED: &str = "scheduled";
    /// Its schedule does not fire until resumed.
    pub const PAUSED: &str = "paused";
    /// Stopped: no runs, scheduled or triggered, until resumed.
    pub const STOPPED: &str = "stopped";
}

/// Why a lifecycle operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No import of that name in the workspace.
    #[error("import {import:?} not found in workspace {workspace:?}")]
    NotFound {
        /// The workspace.
        workspace: String,
        /// The import.
        import: String,
    },
    /// The import's state does not allow the action.
    #[error("import {import:?} is {state}; {action} needs it {needs}")]
    Refused {
        /// The import.
        import: String,
        /// Its state.
        state: String,
        /// What was asked.
        action: &'static str,
        /// The state the action needs.
        needs: &'static str,
    },
    /// A run is active, and the action needs none.
    #[error("import {import:?} has run {run} active; stop the import or wait for the run to end before deleting it")]
    Active {
        /// The import.
        import: String,
        /// The active run.
        run: uuid::Uuid,
    },
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// Records a state change.
async fn transition(
    client: &impl GenericClient,
    import_id: i64,
    from: Option<&str>,
    to: &str,
    actor: &str,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.import_transitions (import_id, from_state, to_state, actor, reason)
             VALUES ($1, $2, $3, $4, $5)",
            &[&import_id, &from, &to, &actor, &reason],
        )
        .await?;
    Ok(())
}

/// After an import's schedule was set or changed: its next slot, and `scheduled` or `ready`
/// (a paused import stays paused).
pub async fn reschedule(
    client: &impl GenericClient,
    workspace_id: i64,
    import: &ImportDecl,
    actor: &str,
) -> Result<(), tokio_postgres::Error> {
    let schedule = import.schedule.as_ref().and_then(|s| s.compile().ok());
    let next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
    let row = client
        .query_one(
            "SELECT id, state FROM control.imports WHERE workspace_id = $1 AND name = $2 FOR UPDATE",
            &[&workspace_id, &import.name],
        )
        .await?;
    let (id, current): (i64, String) = (row.get(0), row.get(1));
    let target = match (&schedule, current.as_str()) {
        (_, state::DRAFT) => state::DRAFT,
        (_, state::PAUSED) => state::PAUSED,
        (_, state::STOPPED) => state::STOPPED,
        (Some(_), _) => state::SCHEDULED,
        (None, _) => state::READY,
    };
    client
        .execute(
            "UPDATE control.imports SET state = $2, next_fire_at = $3 WHERE id = $1",
            &[&id, &target, &next],
        )
        .await?;
    if current != target {
        transition(
            client,
            id,
            Some(&current),
            target,
            actor,
            "schedule changed",
        )
        .await?;
    }
    Ok(())
}

/// Makes an import active from now: `scheduled` with its next slot when its spec has a
/// schedule, else `ready`. Returns the state it is in.
async fn activate(
    client: &impl GenericClient,
    id: i64,
    spec: serde_json::Value,
) -> Result<&'static str, tokio_postgres::Error> {
    let schedule = serde_json::from_value::<ImportDecl>(spec)
        .ok()
        .and_then(|d| d.schedule)
        .and_then(|s| s.compile().ok());
    let next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
    let target = if schedule.is_some() {
        state::SCHEDULED
    } else {
        state::READY
    };
    client
        .execute(
            "UPDATE control.imports SET state = $2, next_fire_at = $3 WHERE id = $1",
            &[&id, &target, &next],
        )
        .await?;
    Ok(target)
}

/// Takes a draft import out of `draft`: `scheduled` with its next slot, or `ready`. Does
/// nothing to an import in another state.
pub async fn promote(
    client: &impl GenericClient,
    workspace_id: i64,
    name: &str,
    actor: &str,
) -> Result<(), tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT id, spec FROM control.imports
              WHERE workspace_id = $1 AND name = $2 AND state = 'draft' FOR UPDATE",
            &[&workspace_id, &name],
        )
        .await?
    else {
        return Ok(());
    };
    let id: i64 = row.get(0);
    let target = activate(client, id, row.get(1)).await?;
    transition(client, id, Some(state::DRAFT), target, actor, "tested").await
}

/// An import as `imports show` prints it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ImportView {
    /// The import's workspace.
    pub workspace: String,
    /// The import's name.
    pub name: String,
    /// What its rows become.
    pub data_type: String,
    /// Its lifecycle state.
    pub state: String,
    /// Its schedule, as declared.
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<serde_json::Value>,
    /// When the schedule fires next.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The next fire times, in UTC and in the schedule's timezone.
    pub upcoming: Vec<FireTime>,
    /// Its latest run.
    pub last_run: Option<LastRun>,
    /// Its state changes, newest first.
    pub transitions: Vec<Transition>,
    /// Where the next run starts reading: the last row read, `(watermark, key)`; `None`
    /// before the first run, and after a resync.
    #[serde(default)]
    pub watermark: Option<String>,
    /// When the watermark last moved.
    #[serde(default)]
    pub watermark_updated_at: Option<DateTime<Utc>>,
    /// Moves of its watermark outside runs (resync, rewind): who, when, from where to where.
    #[serde(default)]
    pub watermark_changes: Vec<WatermarkChange>,
    /// The import as declared: source, key, watermark, identity, properties and the rest.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// One fire time.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FireTime {
    /// The fire time in UTC.
    pub utc: String,
    /// The fire time in the schedule's timezone.
    pub local: String,
}

/// The latest run of an import.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LastRun {
    /// The run's id.
    pub run_id: uuid::Uuid,
    /// Where the run is.
    pub status: String,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// Whether it wrote nothing and only reported.
    #[serde(default)]
    pub dry_run: bool,
    /// Rows read from the source.
    #[serde(default)]
    pub rows_read: i64,
    /// Rows rejected.
    #[serde(default)]
    pub rows_rejected: i64,
    /// Rows that reached the stores.
    #[serde(default)]
    pub rows_loaded: i64,
    /// How long it ran, once it ended.
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

/// A recorded move of a watermark outside a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WatermarkChange {
    /// `resync` or `rewind`.
    pub operation: String,
    /// Who moved it.
    pub actor: String,
    /// The position before (`updated_at/key`); `None` at the start.
    pub from: Option<String>,
    /// The position after; `None`: the next run reads every row.
    pub to: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A recorded state change.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Transition {
    /// The state before; `None` when the import was created.
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// Who changed it.
    pub actor: String,
    /// Why, when a reason was given.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The next `n` fire times of a schedule after `now`.
pub fn upcoming(schedule: &Schedule, now: DateTime<Utc>, n: usize) -> Vec<FireTime> {
    let tz = schedule.timezone();
    schedule
        .upcoming(now, n)
        .into_iter()
        .map(|t| FireTime {
            utc: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            local: t
                .with_timezone(&tz)
                .format("%Y-%m-%dT%H:%M:%S%:z %Z")
                .to_string(),
        })
        .collect()
}

const IMPORT: &str = "SELECT i.id, w.name, i.name, i.data_type, i.state, i.spec, i.next_fire_at
   FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
  WHERE w.name = $1 AND i.name = $2";

/// Reads one import with its upcoming fire times, last run and transitions.
pub async fn show(
    client: &impl GenericClient,
    workspace: &str,
    import: &str,
    now: DateTime<Utc>,
) -> Result<ImportView, LifecycleError> {
    let row = client
        .query_opt(IMPORT, &[&workspace, &import])
        .await?
        .ok_or_else(|| LifecycleError::NotFound {
            workspace: workspace.to_string(),
            import: import.to_string(),
        })?;
    let id: i64 = row.get(0);
    let decl: Option<ImportDecl> = serde_json::from_value(row.get(5)).ok();
    let schedule = decl.as_ref().and_then(|d| d.schedule.clone());
    let upcoming = schedule
        .as_ref()
        .and_then(|s| s.compile().ok())
        .map(|s| upcoming(&s, now, 5))
        .unwrap_or_default();
    let last_run = client
        .query_opt(
            "SELECT id, created_at FROM control.runs WHERE import_id = $1
              ORDER BY created_at DESC LIMIT 1",
            &[&id],
        )
        .await?;
    let last_run = match last_run {
        None => None,
        Some(r) => crate::runs::summary(client, r.get(0))
            .await?
            .map(|s| LastRun {
                run_id: s.run_id,
                status: s.status,
                created_at: r.get(1),
                dry_run: s.dry_run,
                rows_read: s.rows_read,
                rows_rejected: s.rows_rejected,
                rows_loaded: s.rows_loaded,
                duration_ms: s.duration_ms,
            }),
    };
    let watermark = client
        .query_opt(
            "SELECT position, updated_at FROM control.watermarks WHERE import_id = $1",
            &[&id],
        )
        .await?;
    let (watermark, watermark_updated_at) = match watermark {
        Some(w) => (
            serde_json::from_value::<sluice_proto::Bound>(w.get(0))
                .ok()
                .map(|b| b.to_string()),
            Some(w.get(1)),
        ),
        None => (None, None),
    };
    let transitions = client
        .query(
            "SELECT from_state, to_state, actor, reason, at FROM control.import_transitions
              WHERE import_id = $1 ORDER BY at, id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Transition {
            from: r.get(0),
            to: r.get(1),
            actor: r.get(2),
            reason: r.get(3),
            at: r.get(4),
        })
        .collect();
    // A resync's or rewind's positions are bounds; a replay's, the window's ends.
    let position = |v: Option<serde_json::Value>| {
        v.map(
            |v| match serde_json::from_value::<sluice_proto::Bound>(v.clone()) {
                Ok(bound) => bound.to_string(),
                Err(_) => match v.get("watermark").and_then(|w| w.as_str()) {
                    Some(at) => at.to_string(),
                    None => v.to_string(),
                },
            },
        )
    };
    let watermark_changes = client
        .query(
            "SELECT operation, actor, from_position, to_position, at
               FROM control.watermark_changes WHERE import_id = $1 ORDER BY at, id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| WatermarkChange {
            operation: r.get(0),
            actor: r.get(1),
            from: position(r.get(2)),
            to: position(r.get(3)),
            at: r.get(4),
        })
        .collect();
    Ok(ImportView {
        watermark_changes,
        workspace: row.get(1),
        name: row.get(2),
        data_type: row.get(3),
        state: row.get(4),
        schedule: schedule.map(|s| serde_json::to_value(s).expect("schedule serializes")),
        next_fire_at: row.get(6),
        upcoming,
        last_run,
        transitions,
        watermark,
        watermark_updated_at,
        spec: row.get(5),
    })
}

/// One import in a workspace's listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The import's name.
    pub name: String,
    /// What its rows become.
    pub data_type: String,
    /// Its lifecycle state.
    pub state: String,
    /// When its schedule fires next.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Its latest run's status.
    pub last_run_status: Option<String>,
}

/// A workspace's imports with their state, next fire time and latest run's status.
pub async fn list(
    client: &impl GenericClient,
    workspace: &str,
) -> Result<Vec<Listed>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT i.name, i.data_type, i.state, i.next_fire_at,
                    (SELECT r.status FROM control.runs r WHERE r.import_id = i.id
                      ORDER BY r.created_at DESC LIMIT 1)
               FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
              WHERE w.name = $1 ORDER BY i.name",
            &[&workspace],
        )
        .await?
        .iter()
        .map(|r| Listed {
            name: r.get(0),
            data_type: r.get(1),
            state: r.get(2),
            next_fire_at: r.get(3),
            last_run_status: r.get(4),
        })
        .collect())
}

/// Pauses an import: its schedule stops; an active run finishes.
pub async fn pause(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    actor: &str,
) -> Result<(), LifecycleError> {
    let (tx, id, current) = begin(
        client,
        workspace,
        import,
        "pause",
        &[state::READY, state::SCHEDULED],
        "ready or scheduled",
    )
    .await?;
    tx.execute(
        "UPDATE control.imports SET state = 'paused' WHERE id = $1",
        &[&id],
    )
    .await?;
    transition(&tx, id, Some(&current), state::PAUSED, actor, "paused").await?;
    tx.commit().await?;
    Ok(())
}

/// Resumes a paused import: scheduled again from now (slots missed while paused do not fire).
pub async fn resume(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    actor: &str,
) -> Result<(), LifecycleError> {
    let (tx, id, current) = begin(
        client,
        workspace,
        import,
        "resume",
        &[state::PAUSED, state::STOPPED],
        "paused or stopped",
    )
    .await?;
    let spec: serde_json::Value = tx
        .query_one("SELECT spec FROM control.imports WHERE id = $1", &[&id])
        .await?
        .get(0);
    let target = activate(&tx, id, spec).await?;
    transition(&tx, id, Some(&current), target, actor, "resumed").await?;
    tx.commit().await?;
    Ok(())
}

/// Stops an import: its schedule stops and an active run is cancelled (its chunks not yet
/// loaded are marked cancelled; what it loaded and its stats stay). Returns the cancelled run,
/// whose remaining messages workers then discard.
pub async fn stop(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    actor: &str,
) -> Result<Option<uuid::Uuid>, LifecycleError> {
    let (tx, id, current) = begin(
        client,
        workspace,
        import,
        "stop",
        &[state::DRAFT, state::READY, state::SCHEDULED, state::PAUSED],
        "draft, ready, scheduled or paused",
    )
    .await?;
    tx.execute(
        "UPDATE control.imports SET state = 'stopped', next_fire_at = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    let active = tx
        .query_opt(
            "SELECT id FROM control.runs
              WHERE import_id = $1 AND status IN ('queued', 'planning', 'running')",
            &[&id],
        )
        .await?
        .map(|r| r.get::<_, uuid::Uuid>(0));
    let mut cancelled = None;
    if let Some(run) = active {
        if crate::runs::cancel_in(&tx, run, actor).await? {
            cancelled = Some(run);
        }
    }
    let reason = match cancelled {
        Some(run) => format!("stopped; run {run} cancelled"),
        None => "stopped".to_string(),
    };
    transition(&tx, id, Some(&current), state::STOPPED, actor, &reason).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// Deletes an import with its schedule, watermark, notification targets and run history
/// (runs, chunks, rejected rows), in one transaction; refused while a run is active. What it
/// loaded stays in the profile and event stores. Returns how many runs went with it.
pub async fn delete(
    client: &mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    actor: &str,
) -> Result<u64, LifecycleError> {
    let tx = client.transaction().await?;
    let (id, current) = locked(&tx, workspace, import).await?;
    if let Some(active) = tx
        .query_opt(
            "SELECT id FROM control.runs WHERE import_id = $1 AND status IN ('queued', 'planning', 'running')",
            &[&id],
        )
        .await?
    {
        return Err(LifecycleError::Active {
            import: import.to_string(),
            run: active.get(0),
        });
    }
    let runs = tx
        .execute("DELETE FROM control.runs WHERE import_id = $1", &[&id])
        .await?;
    tx.execute(
        "DELETE FROM control.watermarks WHERE import_id = $1",
        &[&id],
    )
    .await?;
    tx.execute("DELETE FROM control.imports WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    tracing::info!(workspace, import, state = %current, runs, actor, "import deleted");
    Ok(runs)
}

/// Opens a transaction and locks the import, refusing the action unless its state is one of
/// `allowed`.
async fn begin<'a>(
    client: &'a mut tokio_postgres::Client,
    workspace: &str,
    import: &str,
    action: &'static str,
    allowed: &[&str],
    needs: &'static str,
) -> Result<(tokio_postgres::Transaction<'a>, i64, String), LifecycleError> {
    let tx = client.transaction().await?;
    let (id, current) = locked(&tx, workspace, import).await?;
    if !allowed.contains(&current.as_str()) {
        return Err(LifecycleError::Refused {
            import: import.to_string(),
            state: current,
            action,
            needs,
        });
    }
    Ok((tx, id, current))
}

async fn locked(
    client: &impl GenericClient,
    workspace: &str,
    import: &str,
) -> Result<(i64, String), LifecycleError> {
    let row = client
        .query_opt(
            "SELECT i.id, i.state FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
              WHERE w.name = $1 AND i.name = $2 FOR UPDATE OF i",
            &[&workspace, &import],
        )
        .await?
        .ok_or_else(|| LifecycleError::NotFound {
            workspace: workspace.to_string(),
            import: import.to_string(),
        })?;
    Ok((row.get(0), row.get(1)))
}

/// Failed runs in a row that pause an import, unless its spec says otherwise.
pub const PAUSE_AFTER_FAILURES: i32 = 5;

/// After a failed run: pauses a scheduled or ready import whose last `pause_after_failures`
/// runs (dry runs aside) all failed and records why; the transition queues the
/// `import.paused` notification. A paused import keeps its watermark; `resume` schedules it again.
pub async fn pause_after_failures(
    client: &impl GenericClient,
    run_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT i.id, i.state, coalesce((i.spec->>'pause_after_failures')::int4, $2)
               FROM control.runs r JOIN control.imports i ON i.id = r.import_id
              WHERE r.id = $1 AND r.status = 'failed' AND NOT r.dry_run",
            &[&run_id, &PAUSE_AFTER_FAILURES],
        )
        .await?
    else {
        return Ok(());
    };
    let (import_id, current, limit): (i64, String, i32) = (row.get(0), row.get(1), row.get(2));
    if limit <= 0 || !(current == state::SCHEDULED || current == state::READY) {
        return Ok(());
    }
    let failed: i64 = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'failed') FROM (
                SELECT status FROM control.runs
                 WHERE import_id = $1 AND NOT dry_run AND finished_at IS NOT NULL
                 ORDER BY created_at DESC LIMIT $2) last",
            &[&import_id, &i64::from(limit)],
        )
        .await?
        .get(0);
    if failed < i64::from(limit) {
        return Ok(());
    }
    let paused = client
        .execute(
            "UPDATE control.imports SET state = 'paused', updated_at = now()
              WHERE id = $1 AND state = $2",
            &[&import_id, &current],
        )
        .await?;
    if paused == 0 {
        return Ok(());
    }
    transition(
        client,
        import_id,
        Some(&current),
        state::PAUSED,
        "sluice",
        &format!("paused after {limit} failed runs in a row"),
    )
    .await?;
    // The transition queues `import.paused` (a trigger on the transitions).
    tracing::warn!(import_id, %run_id, "import paused after {limit} failed runs in a row");
    Ok(())
}

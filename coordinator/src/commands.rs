//! The command consumer: turns a `RunRequested` into a run, plans it and publishes the tasks of
//! its first window of chunks (the results consumer releases the rest as chunks load). A
//! redelivered command finds the run already planned and republishes what is released and
//! pending.
//! A request that sets `reply_to` gets a `RunAccepted` with the run id and status there.

use crate::planner::{self, PlanError};
use crate::run_state::{transition_if_allowed, RunEvent};
use crate::runs::{self, status, NewRun, Requested};
use crate::sessions::{SessionKey, Sessions};
use crate::window::ChunkWindow;
use deadpool_postgres::Pool;
use sluice_connectors::SourceError;
use sluice_proto::headers::TraceContext;
use sluice_proto::secrets::MasterKey;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{trace, ChunkTask, ErrorCode, Message, RunAccepted, RunRequested, StageError};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What the command consumer needs.
pub struct Commands {
    /// The control plane.
    pub pool: Pool,
    /// Opens connection credentials for planning.
    pub master_key: MasterKey,
    /// How many chunks of a run go out at first.
    pub window: Arc<ChunkWindow>,
    /// Source sessions kept between runs' planning.
    pub sessions: Sessions,
}

/// A control-plane failure, retried, with the server's own message (the error's causes).
fn store_error<E: std::error::Error + 'static>(e: E) -> StageError {
    StageError::retryable(
        ErrorCode::Internal,
        format!("control plane: {}", sluice_proto::error::chain(&e)),
    )
}

impl Commands {
    async fn start(
        &self,
        request: &RunRequested,
        delivered: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let mut client = self.pool.get().await.map_err(store_error)?;
        let import = client
            .query_opt(
                "SELECT w.id, i.id, i.state FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
                  WHERE w.name = $1 AND i.name = $2",
                &[&request.workspace, &request.import],
            )
            .await
            .map_err(store_error)?;
        let Some(import) = import else {
            tracing::warn!(workspace = %request.workspace, import = %request.import, "run requested for an unknown import; ignored");
            return Ok(Vec::new());
        };
        let new_run = NewRun {
            run_id: request.run_id,
            workspace_id: import.get(0),
            import_id: import.get(1),
            dry_run: request.dry_run,
            requested_by: &request.requested_by,
            trace_id: &delivered.trace.trace_id,
            scheduled_for: request.scheduled_for,
            idempotency_key: request.idempotency_key.as_deref(),
            replay: request.replay,
        };
        let state: String = import.get(2);
        let refusal = match state.as_str() {
            "draft" if !request.dry_run => {
                Some("the import is a draft: a dry run must succeed first")
            }
            "stopped" => Some("the import is stopped: resume it first"),
            _ => None,
        };
        let (run_id, current) = match runs::request(&**client, &new_run)
            .await
            .map_err(store_error)?
        {
            Requested::Skipped { active } => {
                tracing::info!(run = %request.run_id, %active, "another run of this import is active; skipped");
                return Ok(Vec::new());
            }
            Requested::Exists { run_id, status } => (run_id, status),
        };
        if let (Some(reason), status::QUEUED) = (refusal, current.as_str()) {
            tracing::info!(run = %run_id, reason, "run refused");
            runs::fail(&**client, run_id, "import_state", reason)
                .await
                .map_err(store_error)?;
            return Ok(Vec::new());
        }
        if run_id != request.run_id {
            tracing::info!(requested = %request.run_id, run = %run_id, "idempotency key names an earlier run");
        }
        let run_span = tracing::info_span!(
            "run",
            otel.name = "run",
            sluice.workspace = %request.workspace,
            sluice.import = %request.import,
            sluice.run = %run_id,
            sluice.dry_run = request.dry_run,
            sluice.chunks = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let run_trace = trace::own(&run_span, &delivered.trace);
        self.plan(
            &mut client,
            request,
            run_id,
            &current,
            &run_span,
            &run_trace,
        )
        .instrument(run_span.clone())
        .await
    }

    /// Plans a queued run (or finds its plan) and publishes its pending chunk tasks, each
    /// from a `chunk` span of the run's.
    async fn plan(
        &self,
        client: &mut deadpool_postgres::Object,
        request: &RunRequested,
        run_id: uuid::Uuid,
        current: &str,
        run_span: &tracing::Span,
        run_trace: &TraceContext,
    ) -> Result<Vec<Outgoing>, StageError> {
        let ctx = planner::context(&***client, run_id)
            .await
            .map_err(plan_error)?;
        if let (Some(window), status::QUEUED) = (request.replay, current) {
            crate::watermark::record_replay(
                &***client,
                ctx.import_id,
                &request.requested_by,
                &window,
                run_id,
            )
            .await
            .map_err(store_error)?;
        }
        if current == status::QUEUED || current == status::PLANNING {
            let planning = transition_if_allowed(&***client, run_id, &RunEvent::PlanningStarted)
                .await
                .map_err(store_error)?;
            if planning.is_none() {
                tracing::info!(run = %run_id, "the run moved on before it was planned");
                return Ok(Vec::new());
            }
            let plan = match self.plan_unless_stopped(&ctx).await {
                Planned::Done(plan) => plan,
                Planned::Stopped => {
                    tracing::info!(run = %run_id, "the run was stopped while it was planned; the source's statement was cancelled");
                    return Ok(Vec::new());
                }
                Planned::Failed(e) => {
                    tracing::warn!(run = %run_id, error = %sluice_proto::error::chain(&e), "planning failed; the run fails");
                    runs::fail(&***client, run_id, e.code().as_str(), &e.to_string())
                        .await
                        .map_err(store_error)?;
                    return Ok(Vec::new());
                }
                Planned::Error(e) => return Err(plan_error(e)),
            };
            let tx = client.transaction().await.map_err(store_error)?;
            let recorded = planner::record(&*tx, &ctx, &plan, self.window.size())
                .await
                .map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
            let Some(chunks) = recorded else {
                tracing::info!(run = %run_id, "the run was stopped while it was planned; its plan is dropped");
                return Ok(Vec::new());
            };
            tracing::info!(run = %run_id, chunks, held_back_future = plan.held_back_future, "run planned");
            if chunks == 0 {
                return Ok(Vec::new());
            }
        } else if current != status::RUNNING {
            return Ok(Vec::new());
        }
        let tasks = planner::pending_tasks(&***client, &ctx, planner::Released::All)
            .await
            .map_err(plan_error)?;
        run_span.record("sluice.chunks", tasks.len());
        tasks
            .iter()
            .map(|task| {
                let chunk = tracing::info_span!(
                    parent: run_span,
                    "chunk",
                    otel.name = "chunk",
                    otel.kind = "producer",
                    messaging.system = "rabbitmq",
                    messaging.operation.type = "publish",
                    messaging.destination.name = ChunkTask::ROUTING_KEY,
                    sluice.run = %run_id,
                    sluice.chunk = task.work.chunk.seq,
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                );
                Ok(Outgoing::message(task)?.from_span(trace::own(&chunk, run_trace)))
            })
            .collect()
    }
}

/// How planning a run ended.
enum Planned {
    Done(planner::Plan),
    /// The run was stopped meanwhile; the source's statement was cancelled.
    Stopped,
    /// The source failed, or planning took longer than `PLANNING_LIMIT`: the run fails.
    Failed(SourceError),
    Error(PlanError),
}

/// The longest a run's planning may take, all its source statements together.
const PLANNING_LIMIT: Duration = Duration::from_secs(30 * 60);

/// How often planning looks whether its run was stopped.
const STOP_CHECK: Duration = Duration::from_secs(1);

impl Commands {
    /// Plans a run on its source, cancelling the source's statement when the run is stopped
    /// meanwhile or planning outlasts `PLANNING_LIMIT`. Plans on a kept session of the
    /// connection when there is one; a kept session that fails is dropped and planning tries
    /// once more on a new one (the server may have closed it while it sat idle).
    async fn plan_unless_stopped(&self, ctx: &planner::RunContext) -> Planned {
        let key = SessionKey::new(
            ctx.workspace_id,
            &ctx.import.connection,
            &hex::encode(&ctx.credentials.ciphertext),
        );
        if let Some(source) = self.sessions.take(&key) {
            match self.plan_on(source, ctx).await {
                (Planned::Failed(e), _) => {
                    tracing::debug!(run = %ctx.run_id, error = %e, "a kept source session failed; planning on a new one")
                }
                (planned, source) => {
                    if let Some(source) = source {
                        self.sessions.keep(key, source);
                    }
                    return planned;
                }
            }
        }
        let source = match planner::open_source(&self.master_key, ctx).await {
            Ok(source) => source,
            Err(PlanError::Source(e)) => return Planned::Failed(e),
            Err(e) => return Planned::Error(e),
        };
        let (planned, source) = self.plan_on(source, ctx).await;
        if let Some(source) = source {
            self.sessions.keep(key, source);
        }
        planned
    }

    /// Plans on `source`; hands the session back when planning finished on it.
    async fn plan_on(
        &self,
        source: sluice_connectors::Source,
        ctx: &planner::RunContext,
    ) -> (Planned, Option<sluice_connectors::Source>) {
        let canceller = source.canceller();
        let stopped = async {
            loop {
                tokio::time::sleep(STOP_CHECK).await;
                let status = match self.pool.get().await {
                    Ok(client) => client
                        .query_opt(
                            "SELECT status FROM control.runs WHERE id = $1",
                            &[&ctx.run_id],
                        )
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.get::<_, String>(0)),
                    Err(_) => None,
                };
                if status.is_some_and(|s| s != status::PLANNING) {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            planned = planner::plan(&source, ctx) => match planned {
                Ok(plan) => return (Planned::Done(plan), Some(source)),
                Err(PlanError::Source(e)) => return (Planned::Failed(e), None),
                Err(e) => return (Planned::Error(e), Some(source)),
            },
            _ = stopped => Planned::Stopped,
            _ = tokio::time::sleep(PLANNING_LIMIT) => Planned::Failed(SourceError::Timeout(format!(
                "planning took longer than {} minutes; its statements were cancelled",
                PLANNING_LIMIT.as_secs() / 60
            ))),
        };
        if let Some(canceller) = canceller {
            canceller.cancel().await;
        }
        (outcome, None)
    }

    /// The reply to a request: the run's status now, or why there is none.
    async fn accepted(&self, request: &RunRequested) -> Result<RunAccepted, StageError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let row = client
            .query_opt(
                "SELECT r.id, r.status, r.error_message FROM control.runs r
                   JOIN control.imports i ON i.id = r.import_id
                   JOIN control.workspaces w ON w.id = i.workspace_id
                  WHERE r.id = $1 OR (w.name = $2 AND i.name = $3 AND r.idempotency_key = $4)
                  ORDER BY r.id = $1 DESC LIMIT 1",
                &[
                    &request.run_id,
                    &request.workspace,
                    &request.import,
                    &request.idempotency_key,
                ],
            )
            .await
            .map_err(store_error)?;
        let (run_id, status, message) = match row {
            Some(row) => (row.get(0), row.get(1), row.get(2)),
            None => (
                request.run_id,
                "rejected".to_string(),
                Some(format!(
                    "import {:?} not found in workspace {:?}",
                    request.import, request.workspace
                )),
            ),
        };
        Ok(RunAccepted {
            run_id,
            workspace: request.workspace.clone(),
            import: request.import.clone(),
            status,
            message,
        })
    }
}

fn plan_error(e: PlanError) -> StageError {
    match e {
        PlanError::Database(e) => store_error(e),
        other => StageError::permanent(ErrorCode::InvalidSpec, other.to_string()),
    }
}

impl Stage for Commands {
    type Input = RunRequested;
    const NAME: &'static str = "commands";
    const QUEUE: QueueRole = QueueRole::Commands;

    async fn handle(
        &self,
        request: RunRequested,
        delivered: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let span = tracing::info_span!("run", run = %request.run_id, workspace = %request.workspace, import = %request.import);
        let mut out =
            tracing::Instrument::instrument(self.start(&request, delivered), span).await?;
        if delivered.reply.reply_to.is_some() {
            let reply = self.accepted(&request).await?;
            out.extend(Outgoing::reply_to(delivered, &reply)?);
        }
        Ok(out)
    }

    fn on_give_up(
        &self,
        request: &RunRequested,
        _attempts: u32,
        error: &StageError,
    ) -> Vec<Outgoing> {
        let pool = self.pool.clone();
        let (run_id, error) = (request.run_id, error.clone());
        tokio::spawn(async move {
            if let Ok(client) = pool.get().await {
                let _ = runs::fail(&**client, run_id, error.code.as_str(), &error.message).await;
            }
        });
        Vec::new()
    }
}

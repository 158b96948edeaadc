//! Requesting a run of an import, shared by the CLI and the HTTP API: the import must exist
//! and be runnable, an idempotency key always names the same run, and the request travels to
//! the coordinator as a `RunRequested` message.

use sluice_proto::headers::TraceContext;
use sluice_proto::{Bus, ReplayWindow, RunRequested, Topology};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What to run.
#[derive(Debug, Clone)]
pub struct Trigger<'a> {
    /// The import's workspace.
    pub workspace: &'a str,
    /// The import.
    pub import: &'a str,
    /// Whether the run writes nothing and only reports.
    pub dry_run: bool,
    /// Who asks: a user, `api:<token>` or `scheduler`.
    pub requested_by: &'a str,
    /// Names the run, so a repeated request finds it.
    pub idempotency_key: Option<&'a str>,
    /// Read this window of rows again without moving the watermark.
    pub replay: Option<ReplayWindow>,
}

/// Why a run could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "import {import:?} not found in workspace {workspace:?}; declare it in a spec and apply it"
    )]
    /// No import of that name in the workspace.
    NotFound {
        /// The workspace.
        workspace: String,
        /// The import.
        import: String,
    },
    #[error(
        "import {import:?} is a draft: dry-run it first; it becomes ready when a dry run succeeds"
    )]
    /// A draft runs only as a dry run.
    Draft {
        /// The import.
        import: String,
    },
    /// A stopped import does not run.
    #[error("import {import:?} is stopped; resume it first")]
    Stopped {
        /// The import.
        import: String,
    },
    /// The broker could not be reached.
    #[error("could not reach RabbitMQ: {0}")]
    Broker(#[from] sluice_proto::bus::BusError),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// Checks that the import can run and publishes the request; returns the run's id.
pub async fn request(
    client: &impl GenericClient,
    amqp_url: &str,
    topology: &Topology,
    trigger: &Trigger<'_>,
) -> Result<Uuid, TriggerError> {
    let state = client
        .query_opt(
            "SELECT i.state FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
              WHERE w.name = $1 AND i.name = $2",
            &[&trigger.workspace, &trigger.import],
        )
        .await?
        .map(|r| r.get::<_, String>(0));
    match state.as_deref() {
        None => {
            return Err(TriggerError::NotFound {
                workspace: trigger.workspace.to_string(),
                import: trigger.import.to_string(),
            })
        }
        Some(crate::imports::state::DRAFT) if !trigger.dry_run => {
            return Err(TriggerError::Draft {
                import: trigger.import.to_string(),
            })
        }
        Some(crate::imports::state::STOPPED) => {
            return Err(TriggerError::Stopped {
                import: trigger.import.to_string(),
            })
        }
        Some(_) => {}
    }
    let run_id = match trigger.idempotency_key {
        Some(key) => {
            RunRequested::derived_run_id(trigger.workspace, trigger.import, &format!("key:{key}"))
        }
        None => Uuid::new_v4(),
    };
    let bus = Bus::connect(amqp_url, topology)
        .await
        .map_err(TriggerError::Broker)?;
    let message = RunRequested {
        run_id,
        workspace: trigger.workspace.to_string(),
        import: trigger.import.to_string(),
        dry_run: trigger.dry_run,
        requested_by: trigger.requested_by.to_string(),
        requested_at: chrono::Utc::now(),
        scheduled_for: None,
        idempotency_key: trigger.idempotency_key.map(str::to_string),
        replay: trigger.replay,
    };
    let published = bus.publish(&message, &TraceContext::new_trace()).await;
    bus.close().await;
    published.map_err(TriggerError::Broker)?;
    Ok(run_id)
}

/// Tells the workers a run was cancelled, so they discard its remaining chunks. With no
/// worker running there is nothing to discard, and that is not an error.
pub async fn announce_cancel(
    amqp_url: &str,
    topology: &Topology,
    run_id: Uuid,
    actor: &str,
) -> Result<(), sluice_proto::bus::BusError> {
    let bus = Bus::connect(amqp_url, topology).await?;
    let message = sluice_proto::cancel::RunCancelled {
        run_id,
        reason: format!("import stopped by {actor}"),
    };
    let published = match bus.publish(&message, &TraceContext::new_trace()).await {
        Ok(()) | Err(sluice_proto::bus::BusError::Unroutable { .. }) => Ok(()),
        Err(e) => Err(e),
    };
    bus.close().await;
    published
}

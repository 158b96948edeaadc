//! Where an admin command runs: on the host, through the API's service functions with the
//! database's own access, or over `--server` through the HTTP API, whose handlers call those
//! same functions. Either way the command gets the same typed answers and prints them once.

use crate::remote::Remote;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_coordinator::api::apply::Applied;
use sluice_coordinator::api::connections::{ConnectionItem, KeyPair, SshKey, TestResult};
use sluice_coordinator::api::errors::{ErrorQuery, ErrorStreamPage};
use sluice_coordinator::api::imports::{ImportDeleted, ImportItem, RunAccepted};
use sluice_coordinator::api::runs::{RunFilter, RunPage};
use sluice_coordinator::api::service::Service;
use sluice_coordinator::api::steering::{Moved, Preview, Stopped};
use sluice_coordinator::errors::RunError;
use sluice_coordinator::imports::ImportView;
use sluice_coordinator::lineage::{LineageFilter, RunLineage};
use sluice_coordinator::runs::RunSummary;
use sluice_coordinator::tokens::Caller;
use uuid::Uuid;

/// What a command does with the control plane, so the host opens only what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// Writes: the control plane's migrations are applied first.
    pub writes: bool,
    /// Opens or seals connection credentials: the master key is loaded.
    pub secrets: bool,
}

impl Access {
    /// Reads only.
    pub const READ: Access = Access {
        writes: false,
        secrets: false,
    };
    /// Reads, opening credentials.
    pub const READ_SECRETS: Access = Access {
        writes: false,
        secrets: true,
    };
    /// Writes.
    pub const WRITE: Access = Access {
        writes: true,
        secrets: false,
    };
    /// Writes, opening credentials.
    pub const WRITE_SECRETS: Access = Access {
        writes: true,
        secrets: true,
    };
}

/// The one way a command reaches the service.
pub enum Backend {
    /// In this process, with the control plane's credentials.
    Host(Box<Service>),
    /// A coordinator's HTTP API, with a token of the workspace named.
    Api(Remote, String),
}

/// Who acts on the host, for the audit trail.
fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_string())
}

impl Backend {
    /// The backend acting in the command's workspace (`--workspace`, `SLUICE_WORKSPACE` or
    /// the saved one): the API when `--server` is set (its token must belong to the
    /// workspace; without one given, the token's own), else the host.
    pub async fn open(settings: &Settings, access: Access) -> anyhow::Result<Self> {
        if let Some(remote) = Remote::from_settings(settings)? {
            let workspace = match super::context::resolve(settings)? {
                Some((workspace, _)) => {
                    remote.check_workspace(&workspace).await?;
                    workspace
                }
                None => remote.workspace().await?,
            };
            return Ok(Backend::Api(remote, workspace));
        }
        let workspace = super::context::workspace(settings)?;
        Self::open_as(settings, &workspace, access, false).await
    }

    /// The workspace the backend acts in.
    pub fn workspace(&self) -> &str {
        match self {
            Backend::Host(s) => &s.caller.workspace,
            Backend::Api(_, workspace) => workspace,
        }
    }

    /// As [`Backend::open`]; with `declared` a workspace not made yet is acted in too: a
    /// spec declares it, and applying the spec creates it.
    pub async fn open_as(
        settings: &Settings,
        workspace: &str,
        access: Access,
        declared: bool,
    ) -> anyhow::Result<Self> {
        if let Some(remote) = Remote::from_settings(settings)? {
            remote.check_workspace(workspace).await?;
            return Ok(Backend::Api(remote, workspace.to_string()));
        }
        let client = match access.writes {
            true => settings.control_for_writes().await?,
            false => settings.control().await?,
        };
        let caller =
            match sluice_coordinator::tokens::host_caller(&client, workspace, &user()).await? {
                Some(caller) => caller,
                // Applying reads nothing by the workspace's id; it creates the workspace.
                None if declared => Caller::host(0, workspace, &user()),
                None => anyhow::bail!(
                    "no workspace {workspace:?}: declare it in a spec and `sluice apply -f` it"
                ),
            };
        let pool = sluice_coordinator::database::pool(&settings.database_url, 2)?;
        let master_key = access.secrets.then(|| settings.master_key()).transpose()?;
        let objects = sluice_proto::storage::open(&settings.object_store_url())?;
        Ok(Backend::Host(Box::new(
            Service::on_host(
                pool,
                &settings.amqp_url,
                settings.topology(),
                master_key,
                caller,
            )
            .with_objects(objects),
        )))
    }

    /// The backend for a run: over the API the token's workspace (the API refuses a run of
    /// another), on the host the run's own.
    pub async fn for_run(settings: &Settings, run_id: Uuid) -> anyhow::Result<Self> {
        if let Some(remote) = Remote::from_settings(settings)? {
            let workspace = remote.workspace().await?;
            return Ok(Backend::Api(remote, workspace));
        }
        let client = settings.control().await?;
        let workspace: String = client
            .query_opt(
                "SELECT w.name FROM control.runs r JOIN control.workspaces w ON w.id = r.workspace_id
                  WHERE r.id = $1",
                &[&run_id],
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("run {run_id} not found"))?
            .get(0);
        Self::open_as(settings, &workspace, Access::READ, false).await
    }

    /// Applies a spec's text, `${NAME}` already expanded.
    pub async fn apply(&self, text: &str, ready: bool) -> anyhow::Result<Applied> {
        match self {
            Backend::Host(s) => Ok(s.apply(text, ready).await?),
            Backend::Api(r, _) => r.post_text(&format!("/v1/apply?ready={ready}"), text).await,
        }
    }

    /// Requests a run, or a replay of a window.
    pub async fn trigger(
        &self,
        import: &str,
        dry_run: bool,
        idempotency_key: Option<&str>,
        replay: Option<sluice_proto::ReplayWindow>,
    ) -> anyhow::Result<RunAccepted> {
        match self {
            Backend::Host(s) => Ok(s.trigger(import, dry_run, idempotency_key, replay).await?),
            Backend::Api(r, _) => match replay {
                Some(w) => {
                    r.post(
                        &format!("/v1/imports/{import}/replay"),
                        Some(json!({ "from": w.from, "until": w.until })),
                    )
                    .await
                }
                None => r.trigger(import, dry_run, idempotency_key).await,
            },
        }
    }

    /// One run, or `None` while no coordinator has recorded it.
    pub async fn run(&self, run_id: Uuid) -> anyhow::Result<Option<RunSummary>> {
        match self {
            Backend::Host(s) => match s.show_run(run_id).await {
                Ok(summary) => Ok(Some(summary)),
                Err(e) if e.body.code == "not_found" => Ok(None),
                Err(e) => Err(e.into()),
            },
            Backend::Api(r, _) => r.get_found(&format!("/v1/runs/{run_id}")).await,
        }
    }

    /// The workspace's runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> anyhow::Result<RunPage> {
        match self {
            Backend::Host(s) => Ok(s.list_runs(filter).await?),
            Backend::Api(r, _) => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(import) = &filter.import {
                    query.append_pair("import", import);
                }
                if let Some(status) = &filter.status {
                    query.append_pair("status", status);
                }
                if let Some(per_page) = filter.per_page {
                    query.append_pair("per_page", &per_page.to_string());
                }
                r.get(&format!("/v1/runs?{}", query.finish())).await
            }
        }
    }

    /// Cancels an active run.
    pub async fn cancel_run(&self, run_id: Uuid) -> anyhow::Result<RunSummary> {
        match self {
            Backend::Host(s) => Ok(s.cancel_run(run_id).await?),
            Backend::Api(r, _) => r.post(&format!("/v1/runs/{run_id}/cancel"), None).await,
        }
    }

    /// A page of a run's rejected rows.
    pub async fn run_errors(&self, run_id: Uuid, limit: i64) -> anyhow::Result<Vec<RunError>> {
        match self {
            Backend::Host(s) => Ok(s.run_errors(run_id, limit, 0).await?),
            Backend::Api(r, _) => {
                r.get(&format!("/v1/runs/{run_id}/errors?per_page={limit}"))
                    .await
            }
        }
    }

    /// A page of the workspace's error stream.
    pub async fn error_stream(&self, query: &ErrorQuery) -> anyhow::Result<ErrorStreamPage> {
        match self {
            Backend::Host(s) => Ok(s.error_stream(query).await?),
            Backend::Api(r, _) => r.get(&format!("/v1/errors?{}", query.query_string())).await,
        }
    }

    /// A page of a run's lineage.
    pub async fn run_lineage(
        &self,
        run_id: Uuid,
        filter: &LineageFilter,
    ) -> anyhow::Result<RunLineage> {
        match self {
            Backend::Host(s) => Ok(s.run_lineage(run_id, filter).await?),
            Backend::Api(r, _) => {
                let query = filter.query_string();
                r.get(&format!("/v1/runs/{run_id}/lineage?{query}")).await
            }
        }
    }

    /// Every rejected row of a run as CSV.
    pub async fn run_errors_csv(&self, run_id: Uuid) -> anyhow::Result<Vec<u8>> {
        match self {
            Backend::Host(s) => Ok(s.run_errors_csv(run_id).await?),
            Backend::Api(r, _) => r.get_bytes(&format!("/v1/runs/{run_id}/errors.csv")).await,
        }
    }

    /// The workspace's imports.
    pub async fn imports(&self) -> anyhow::Result<Vec<ImportItem>> {
        match self {
            Backend::Host(s) => Ok(s.list_imports().await?),
            Backend::Api(r, _) => r.get("/v1/imports").await,
        }
    }

    /// One import.
    pub async fn import(&self, name: &str) -> anyhow::Result<ImportView> {
        match self {
            Backend::Host(s) => Ok(s.show_import(name).await?),
            Backend::Api(r, _) => r.get(&format!("/v1/imports/{name}")).await,
        }
    }

    /// The source's columns and first rows.
    pub async fn preview(&self, name: &str, rows: usize) -> anyhow::Result<Preview> {
        match self {
            Backend::Host(s) => Ok(s.preview(name, rows).await?),
            Backend::Api(r, _) => {
                r.get(&format!("/v1/imports/{name}/preview?rows={rows}"))
                    .await
            }
        }
    }

    /// Pauses (`true`) or resumes an import.
    pub async fn set_paused(&self, name: &str, paused: bool) -> anyhow::Result<ImportView> {
        match self {
            Backend::Host(s) => Ok(s.set_paused(name, paused).await?),
            Backend::Api(r, _) => {
                let action = if paused { "pause" } else { "resume" };
                r.post(&format!("/v1/imports/{name}/{action}"), None).await
            }
        }
    }

    /// Stops an import and cancels its active run.
    pub async fn stop(&self, name: &str) -> anyhow::Result<Stopped> {
        match self {
            Backend::Host(s) => Ok(s.stop(name).await?),
            Backend::Api(r, _) => r.post(&format!("/v1/imports/{name}/stop"), None).await,
        }
    }

    /// Deletes an import with its runs.
    pub async fn delete_import(&self, name: &str) -> anyhow::Result<ImportDeleted> {
        match self {
            Backend::Host(s) => Ok(s.delete_import(name).await?),
            Backend::Api(r, _) => r.delete(&format!("/v1/imports/{name}")).await,
        }
    }

    /// Resets the watermark.
    pub async fn resync(&self, name: &str) -> anyhow::Result<Moved> {
        match self {
            Backend::Host(s) => Ok(s.resync(name).await?),
            Backend::Api(r, _) => r.post(&format!("/v1/imports/{name}/resync"), None).await,
        }
    }

    /// Moves the watermark back to just before `to`.
    pub async fn rewind(&self, name: &str, to: DateTime<Utc>) -> anyhow::Result<Moved> {
        match self {
            Backend::Host(s) => Ok(s.rewind(name, to).await?),
            Backend::Api(r, _) => {
                r.post(
                    &format!("/v1/imports/{name}/rewind"),
                    Some(json!({ "to": to })),
                )
                .await
            }
        }
    }

    /// The workspace's destinations.
    pub async fn destinations(
        &self,
    ) -> anyhow::Result<Vec<sluice_coordinator::destinations::DestinationItem>> {
        match self {
            Backend::Host(s) => Ok(s.list_destinations().await?),
            Backend::Api(r, _) => r.get("/v1/destinations").await,
        }
    }

    /// The workspace's connections.
    pub async fn connections(&self) -> anyhow::Result<Vec<ConnectionItem>> {
        match self {
            Backend::Host(s) => Ok(s.list_connections().await?),
            Backend::Api(r, _) => r.get("/v1/connections").await,
        }
    }

    /// Tests a connection.
    pub async fn test_connection(&self, name: &str, repin: bool) -> anyhow::Result<TestResult> {
        match self {
            Backend::Host(s) => Ok(s.test_connection(name, repin).await?),
            Backend::Api(r, _) => {
                let body = repin.then(|| serde_json::json!({ "repin_ssh_host_key": true }));
                r.post(&format!("/v1/connections/{name}/test"), body).await
            }
        }
    }

    /// Generates an SSH key pair for a connection through a bastion.
    pub async fn keygen_ssh(&self, name: &str) -> anyhow::Result<SshKey> {
        match self {
            Backend::Host(s) => Ok(s.keygen_ssh(name).await?),
            Backend::Api(r, _) => {
                r.post(&format!("/v1/connections/{name}/ssh-keygen"), None)
                    .await
            }
        }
    }

    /// Generates a Snowflake key pair for a connection.
    pub async fn keygen(&self, name: &str) -> anyhow::Result<KeyPair> {
        match self {
            Backend::Host(s) => Ok(s.keygen(name).await?),
            Backend::Api(r, _) => {
                r.post(&format!("/v1/connections/{name}/keygen"), None)
                    .await
            }
        }
    }

    /// Deletes a connection no import uses.
    pub async fn delete_connection(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Backend::Host(s) => Ok(s.delete_connection(name).await?),
            Backend::Api(r, _) => r.delete_empty(&format!("/v1/connections/{name}")).await,
        }
    }
}

//! `/v1/imports`: list and show a workspace's imports, trigger runs (idempotently), and pause
//! or resume schedules.

use super::service::Service;
use super::{ApiError, ApiState, MaybeJson};
use crate::imports::{self, ImportView, LifecycleError};
use crate::tokens::{Caller, Role};
use crate::trigger::{self, Trigger, TriggerError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One import in a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportItem {
    /// The import's name.
    pub name: String,
    /// `profiles`, `events`, `purchases` or `user_deletes`.
    pub data_type: String,
    /// `draft`, `ready`, `scheduled`, `paused` or `stopped`.
    pub state: String,
    /// When its schedule fires next, if it has one and runs.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Its latest run's status; `None` before its first run.
    #[serde(default)]
    pub last_run_status: Option<String>,
}

/// A request to run an import now.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Go through every stage but write nothing; report what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// A run that was requested.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunAccepted {
    /// The run's id.
    pub run_id: uuid::Uuid,
    /// `queued` until the coordinator plans it.
    pub status: String,
}

/// An import that was deleted.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportDeleted {
    /// The import's name.
    pub name: String,
    /// Its runs, deleted with it.
    pub runs: u64,
}

/// A refused lifecycle change as an API error.
pub(super) fn lifecycle(e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::NotFound { import, .. } => {
            ApiError::not_found(format!("no import {import:?} in this workspace"))
        }
        e @ (LifecycleError::Refused { .. } | LifecycleError::Active { .. }) => {
            ApiError::conflict(e.to_string())
        }
        LifecycleError::Store(e) => e.into(),
    }
}

/// A refused run request as an API error.
pub(super) fn trigger_error(e: TriggerError) -> ApiError {
    match e {
        TriggerError::NotFound { import, .. } => {
            ApiError::not_found(format!("no import {import:?} in this workspace"))
        }
        e @ (TriggerError::Draft { .. } | TriggerError::Stopped { .. }) => {
            ApiError::conflict(e.to_string())
        }
        TriggerError::Broker(e) => ApiError::unavailable(format!("RabbitMQ: {e}")),
        TriggerError::Store(e) => e.into(),
    }
}

impl Service {
    /// The workspace's imports with their state and next scheduled run.
    pub async fn list_imports(&self) -> Result<Vec<ImportItem>, ApiError> {
        let client = self.client().await?;
        let rows = imports::list(&**client, &self.caller.workspace).await?;
        Ok(rows
            .into_iter()
            .map(|i| ImportItem {
                name: i.name,
                data_type: i.data_type,
                state: i.state,
                next_fire_at: i.next_fire_at,
                last_run_status: i.last_run_status,
            })
            .collect())
    }

    /// One import: state, schedule, upcoming fire times, last run and state changes.
    pub async fn show_import(&self, name: &str) -> Result<ImportView, ApiError> {
        let client = self.client().await?;
        imports::show(&**client, &self.caller.workspace, name, Utc::now())
            .await
            .map_err(lifecycle)
    }

    /// Requests a run ("sync now", a dry run, or a replay of a window); the same idempotency
    /// key always names the same run.
    pub async fn trigger(
        &self,
        name: &str,
        dry_run: bool,
        idempotency_key: Option<&str>,
        replay: Option<sluice_proto::ReplayWindow>,
    ) -> Result<RunAccepted, ApiError> {
        self.require(Role::Operator)?;
        if idempotency_key.is_some_and(|k| k.is_empty() || k.len() > 255) {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 characters",
            ));
        }
        if let Some(window) = &replay {
            if window.until <= window.from {
                return Err(ApiError::invalid("until", "must be after from"));
            }
        }
        let client = self.client().await?;
        let requested_by = self.caller.actor();
        let run_id = trigger::request(
            &**client,
            &self.amqp_url,
            &self.topology,
            &Trigger {
                workspace: &self.caller.workspace,
                import: name,
                dry_run,
                requested_by: &requested_by,
                idempotency_key,
                replay,
            },
        )
        .await
        .map_err(trigger_error)?;
        Ok(RunAccepted {
            run_id,
            status: crate::runs::status::QUEUED.to_string(),
        })
    }

    /// Pauses an import's schedule (an active run finishes), or resumes a paused or stopped
    /// import: scheduled again from now.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<ImportView, ApiError> {
        self.require(Role::Operator)?;
        let mut client = self.client().await?;
        let (workspace, actor) = (&self.caller.workspace, self.caller.actor());
        match paused {
            true => imports::pause(&mut client, workspace, name, &actor).await,
            false => imports::resume(&mut client, workspace, name, &actor).await,
        }
        .map_err(lifecycle)?;
        self.show_import(name).await
    }

    /// Deletes an import with its schedule, watermark and run history (admins); refused
    /// while a run is active.
    pub async fn delete_import(&self, name: &str) -> Result<ImportDeleted, ApiError> {
        self.require(Role::Admin)?;
        let mut client = self.client().await?;
        let runs = imports::delete(
            &mut client,
            &self.caller.workspace,
            name,
            &self.caller.actor(),
        )
        .await
        .map_err(lifecycle)?;
        Ok(ImportDeleted {
            name: name.to_string(),
            runs,
        })
    }
}

/// The workspace's imports with their state and next scheduled run.
#[utoipa::path(operation_id = "imports_list", get, path = "/v1/imports", tag = "imports",
    responses((status = 200, body = Vec<ImportItem>), (status = 401, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ImportItem>>, ApiError> {
    Service::new(&state, caller).list_imports().await.map(Json)
}

/// One import: state, schedule, upcoming fire times, last run and state changes.
#[utoipa::path(operation_id = "imports_show", get, path = "/v1/imports/{name}", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = ImportView), (status = 404, body = super::ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ImportView>, ApiError> {
    Service::new(&state, caller)
        .show_import(&name)
        .await
        .map(Json)
}

/// Runs an import now ("sync now": the schedule does not move). The same `Idempotency-Key`
/// always names the same run, so a retried request starts nothing twice.
#[utoipa::path(operation_id = "imports_trigger", post, path = "/v1/imports/{name}/runs", tag = "imports",
    params(("name" = String, Path, description = "The import's name"),
           ("Idempotency-Key" = Option<String>, Header, description = "Names the run; repeating it returns the same run")),
    request_body(content = RunBody, description = "Options; may be empty"),
    responses((status = 202, body = RunAccepted), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn trigger(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    MaybeJson(body): MaybeJson<RunBody>,
) -> Result<(StatusCode, Json<RunAccepted>), ApiError> {
    let body = body.unwrap_or_default();
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))
        })
        .transpose()?;
    let accepted = Service::new(&state, caller)
        .trigger(&name, body.dry_run, key, None)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Pauses an import's schedule; an active run finishes.
#[utoipa::path(operation_id = "imports_pause", post, path = "/v1/imports/{name}/pause", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = ImportView), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ImportView>, ApiError> {
    Service::new(&state, caller)
        .set_paused(&name, true)
        .await
        .map(Json)
}

/// Resumes a paused import: scheduled again from now.
#[utoipa::path(operation_id = "imports_resume", post, path = "/v1/imports/{name}/resume", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = ImportView), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ImportView>, ApiError> {
    Service::new(&state, caller)
        .set_paused(&name, false)
        .await
        .map(Json)
}

/// Deletes an import with its schedule, watermark and run history (admins); refused with 409
/// while a run is active. Data it loaded stays in the stores.
#[utoipa::path(operation_id = "imports_delete", delete, path = "/v1/imports/{name}", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = ImportDeleted), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ImportDeleted>, ApiError> {
    Service::new(&state, caller)
        .delete_import(&name)
        .await
        .map(Json)
}

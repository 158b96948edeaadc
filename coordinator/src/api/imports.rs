//! `/v1/imports`: list and show a workspace's imports, trigger runs (idempotently), and pause
//! or resume schedules.

use super::auth::require;
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportItem {
    pub name: String,
    pub data_type: String,
    pub state: String,
    pub next_fire_at: Option<DateTime<Utc>>,
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunAccepted {
    pub run_id: uuid::Uuid,
    /// `queued` until the coordinator plans it.
    pub status: &'static str,
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

/// The workspace's imports with their state and next scheduled run.
#[utoipa::path(operation_id = "imports_list", get, path = "/v1/imports", tag = "imports",
    responses((status = 200, body = Vec<ImportItem>), (status = 401, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ImportItem>>, ApiError> {
    let client = state.pool.get().await?;
    let rows = imports::list(&**client, &caller.workspace).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(name, data_type, state, next_fire_at)| ImportItem {
                name,
                data_type,
                state,
                next_fire_at,
            })
            .collect(),
    ))
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
    let client = state.pool.get().await?;
    imports::show(&**client, &caller.workspace, &name, Utc::now())
        .await
        .map(Json)
        .map_err(lifecycle)
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
    require(&caller, Role::Operator)?;
    let body = body.unwrap_or_default();
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))
        })
        .transpose()?;
    if key.is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 characters",
        ));
    }
    let client = state.pool.get().await?;
    let requested_by = caller.actor();
    let run_id = trigger::request(
        &**client,
        &state.amqp_url,
        &state.topology,
        &Trigger {
            workspace: &caller.workspace,
            import: &name,
            dry_run: body.dry_run,
            requested_by: &requested_by,
            idempotency_key: key,
            replay: None,
        },
    )
    .await
    .map_err(trigger_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunAccepted {
            run_id,
            status: crate::runs::status::QUEUED,
        }),
    ))
}

/// A change to an import's schedule.
enum Steer {
    Pause,
    Resume,
}

async fn steer(
    state: ApiState,
    caller: Caller,
    name: String,
    how: Steer,
) -> Result<Json<ImportView>, ApiError> {
    require(&caller, Role::Operator)?;
    let mut client = state.pool.get().await?;
    let actor = caller.actor();
    match how {
        Steer::Pause => imports::pause(&mut client, &caller.workspace, &name, &actor).await,
        Steer::Resume => imports::resume(&mut client, &caller.workspace, &name, &actor).await,
    }
    .map_err(lifecycle)?;
    show(State(state), caller, Path(name)).await
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
    steer(state, caller, name, Steer::Pause).await
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
    steer(state, caller, name, Steer::Resume).await
}

/// Deletes an import with its schedule, watermark and run history (admins); refused with 409
/// while a run is active. Data it loaded stays in the stores.
#[utoipa::path(operation_id = "imports_delete", delete, path = "/v1/imports/{name}", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 204), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Role::Admin)?;
    let mut client = state.pool.get().await?;
    imports::delete(&mut client, &caller.workspace, &name, &caller.actor())
        .await
        .map_err(lifecycle)?;
    Ok(StatusCode::NO_CONTENT)
}

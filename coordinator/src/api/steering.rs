//! `/v1/imports/{name}/…` operations beyond triggering: preview the source, stop the import
//! and cancel its run, and the audited watermark moves (resync, rewind) and replays.

use super::auth::require;
use super::imports::RunAccepted;
use super::{ApiError, ApiState, MaybeJson};
use crate::tokens::{Caller, Role};
use crate::trigger::{self, Trigger};
use crate::watermark::{self, WatermarkError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Refuses a name the caller's workspace has no import by (before a body is looked at, so
/// another workspace's import is a 404 whatever the request holds).
async fn known(state: &ApiState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    let client = state.pool.get().await?;
    let found = client
        .query_opt(
            "SELECT 1 FROM control.imports WHERE workspace_id = $1 AND name = $2",
            &[&caller.workspace_id, &name],
        )
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found(format!("no import {name:?} in this workspace")))
}

fn watermark_error(e: WatermarkError) -> ApiError {
    match e {
        WatermarkError::NotFound { import, .. } => {
            ApiError::not_found(format!("no import {import:?} in this workspace"))
        }
        e @ (WatermarkError::RunActive(_) | WatermarkError::Forward { .. }) => {
            ApiError::conflict(e.to_string())
        }
        WatermarkError::Source(e) => ApiError::conflict(format!("the source: {e}")),
        WatermarkError::Store(e) => e.into(),
    }
}

/// How many rows to preview.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// 1 to 100 (10 by default).
    pub rows: Option<usize>,
}

/// The first rows of a source, as the extractor reads them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// Each column's name and Arrow type.
    pub columns: Vec<PreviewColumn>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
}

/// One previewed column.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// The source's schema and first rows in `(watermark, key)` order.
#[utoipa::path(operation_id = "steering_preview", get, path = "/v1/imports/{name}/preview", tag = "imports",
    params(("name" = String, Path, description = "The import's name"), PreviewQuery),
    responses((status = 200, body = Preview), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn preview(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    super::ApiQuery(query): super::ApiQuery<PreviewQuery>,
) -> Result<Json<Preview>, ApiError> {
    known(&state, &caller, &name).await?;
    let rows = query.rows.unwrap_or(10);
    if !(1..=100).contains(&rows) {
        return Err(ApiError::invalid("rows", "must be 1 to 100"));
    }
    let client = state.pool.get().await?;
    let batch =
        crate::preview::preview(&**client, &state.master_key, &caller.workspace, &name, rows)
            .await
            .map_err(preview_error)?;
    Ok(Json(Preview::of(&batch)?))
}

/// The API's answer when a preview could not be made.
pub(super) fn preview_error(e: crate::preview::PreviewError) -> ApiError {
    use crate::preview::PreviewError;
    match e {
        PreviewError::NotFound { import, .. } => {
            ApiError::not_found(format!("no import {import:?} in this workspace"))
        }
        PreviewError::NoConnection { connection, .. } => {
            ApiError::not_found(format!("no connection {connection:?} in this workspace"))
        }
        PreviewError::Source(e) => ApiError::conflict(format!("the source: {e}")),
        PreviewError::Store(e) => e.into(),
    }
}

impl Preview {
    /// A previewed batch as columns and JSON rows.
    pub(super) fn of(batch: &arrow::record_batch::RecordBatch) -> Result<Preview, ApiError> {
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer.write(batch).map_err(ApiError::internal)?;
        writer.finish().map_err(ApiError::internal)?;
        let rows: Vec<serde_json::Value> = match writer.into_inner() {
            bytes if bytes.is_empty() => Vec::new(),
            bytes => serde_json::from_slice(&bytes).map_err(ApiError::internal)?,
        };
        Ok(Preview {
            columns: batch
                .schema()
                .fields()
                .iter()
                .map(|f| PreviewColumn {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                })
                .collect(),
            rows,
        })
    }
}

/// What stopping did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stopped {
    /// The run that was cancelled, if one was active.
    pub cancelled_run: Option<uuid::Uuid>,
}

/// Stops an import: its schedule ends and an active run is cancelled (what it loaded stays).
#[utoipa::path(operation_id = "steering_stop", post, path = "/v1/imports/{name}/stop", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = Stopped), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn stop(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Stopped>, ApiError> {
    require(&caller, Role::Operator)?;
    let mut client = state.pool.get().await?;
    let actor = caller.actor();
    let cancelled = crate::imports::stop(&mut client, &caller.workspace, &name, &actor)
        .await
        .map_err(super::imports::lifecycle)?;
    if let Some(run_id) = cancelled {
        crate::trigger::announce_cancel(&state.amqp_url, &state.topology, run_id, &actor)
            .await
            .map_err(|e| ApiError::unavailable(format!("RabbitMQ: {e}")))?;
    }
    Ok(Json(Stopped {
        cancelled_run: cancelled,
    }))
}

/// Where the watermark was and where it is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Moved {
    /// `updated_at/key` before, or null at the start.
    pub from: Option<String>,
    /// `updated_at/key` now, or null: the next run reads every row.
    pub to: Option<String>,
}

/// Resets the watermark: the next run reads every row (audited).
#[utoipa::path(operation_id = "steering_resync", post, path = "/v1/imports/{name}/resync", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = Moved), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn resync(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Moved>, ApiError> {
    require(&caller, Role::Admin)?;
    let mut client = state.pool.get().await?;
    let actor = caller.actor();
    let from = watermark::resync(&mut client, &caller.workspace, &name, &actor)
        .await
        .map_err(watermark_error)?;
    Ok(Json(Moved {
        from: from.map(|b| b.to_string()),
        to: None,
    }))
}

/// Where to move the watermark back to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindBody {
    /// The next run reads every row updated at or after this instant (RFC 3339).
    pub to: DateTime<Utc>,
}

/// Moves the watermark back to just before the first row at or after `to` (audited).
#[utoipa::path(operation_id = "steering_rewind", post, path = "/v1/imports/{name}/rewind", tag = "imports",
    params(("name" = String, Path, description = "The import's name")), request_body = RewindBody,
    responses((status = 200, body = Moved), (status = 404, body = super::ErrorBody),
              (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn rewind(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    MaybeJson(body): MaybeJson<RewindBody>,
) -> Result<Json<Moved>, ApiError> {
    require(&caller, Role::Admin)?;
    known(&state, &caller, &name).await?;
    let Some(body) = body else {
        return Err(ApiError::invalid(
            "to",
            "give {\"to\": \"<RFC 3339 instant>\"}",
        ));
    };
    let mut client = state.pool.get().await?;
    let actor = caller.actor();
    let (from, to) = watermark::rewind(
        &mut client,
        &state.master_key,
        &caller.workspace,
        &name,
        body.to,
        &actor,
    )
    .await
    .map_err(watermark_error)?;
    Ok(Json(Moved {
        from: from.map(|b| b.to_string()),
        to: to.map(|b| b.to_string()),
    }))
}

/// A window of rows to read again.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Rows updated after this instant (RFC 3339)...
    pub from: DateTime<Utc>,
    /// ...and up to this one.
    pub until: DateTime<Utc>,
}

/// Reads a window of rows again without moving the watermark (audited as a run).
#[utoipa::path(operation_id = "steering_replay", post, path = "/v1/imports/{name}/replay", tag = "imports",
    params(("name" = String, Path, description = "The import's name")), request_body = ReplayBody,
    responses((status = 202, body = RunAccepted), (status = 404, body = super::ErrorBody),
              (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn replay(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    MaybeJson(body): MaybeJson<ReplayBody>,
) -> Result<(StatusCode, Json<RunAccepted>), ApiError> {
    require(&caller, Role::Operator)?;
    known(&state, &caller, &name).await?;
    let Some(body) = body else {
        return Err(ApiError::invalid(
            "from",
            "give {\"from\": ..., \"until\": ...} as RFC 3339 instants",
        ));
    };
    if body.until <= body.from {
        return Err(ApiError::invalid("until", "must be after from"));
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
            dry_run: false,
            requested_by: &requested_by,
            idempotency_key: None,
            replay: Some(sluice_proto::ReplayWindow {
                from: body.from,
                until: body.until,
            }),
        },
    )
    .await
    .map_err(super::imports::trigger_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunAccepted {
            run_id,
            status: crate::runs::status::QUEUED,
        }),
    ))
}

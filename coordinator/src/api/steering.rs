//! `/v1/imports/{name}/…` operations beyond triggering: preview the source, stop the import
//! and cancel its run, and the audited watermark moves (resync, rewind) and replays.

use super::imports::RunAccepted;
use super::service::Service;
use super::{ApiError, ApiState, MaybeJson};
use crate::tokens::{Caller, Role};
use crate::watermark::{self, WatermarkError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Refuses a name the caller's workspace has no import by (before a body is looked at, so
/// another workspace's import is a 404 whatever the request holds).
async fn known(service: &Service, name: &str) -> Result<(), ApiError> {
    let client = service.client().await?;
    let found = client
        .query_opt(
            "SELECT 1 FROM control.imports WHERE workspace_id = $1 AND name = $2",
            &[&service.caller.workspace_id, &name],
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
        e @ (WatermarkError::Stored(_) | WatermarkError::Credentials(_)) => {
            ApiError::conflict(e.to_string())
        }
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preview {
    /// Each column's name and Arrow type.
    pub columns: Vec<PreviewColumn>,
    /// The first rows, one JSON object each.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    /// Date properties whose declared format rejects previewed values that another order of
    /// year, month and day reads, every one of them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub format_hints: Vec<sluice_proto::format_hint::FormatHint>,
}

/// One previewed column.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewColumn {
    /// The column's name.
    pub name: String,
    /// Its Arrow type, as a chunk holds it.
    #[serde(rename = "type")]
    pub data_type: String,
}

impl Service {
    /// The source's columns and first rows, as the extractor reads them.
    pub async fn preview(&self, name: &str, rows: usize) -> Result<Preview, ApiError> {
        known(self, name).await?;
        if !(1..=100).contains(&rows) {
            return Err(ApiError::invalid("rows", "must be 1 to 100"));
        }
        let client = self.client().await?;
        let (batch, hints) = crate::preview::preview(
            &**client,
            self.master_key()?,
            &self.caller.workspace,
            name,
            rows,
        )
        .await
        .map_err(preview_error)?;
        let mut preview = Preview::of(&batch)?;
        preview.format_hints = hints;
        Ok(preview)
    }

    /// Stops an import's schedule and cancels its active run; the workers are told to discard
    /// the run's remaining chunks.
    pub async fn stop(&self, name: &str) -> Result<Stopped, ApiError> {
        self.require(Role::Operator)?;
        let mut client = self.client().await?;
        let actor = self.caller.actor();
        let cancelled = crate::imports::stop(&mut client, &self.caller.workspace, name, &actor)
            .await
            .map_err(super::imports::lifecycle)?;
        if let Some(run_id) = cancelled {
            crate::trigger::announce_cancel(&self.amqp_url, &self.topology, run_id, &actor)
                .await
                .map_err(|e| ApiError::unavailable(format!("RabbitMQ: {e}")))?;
        }
        Ok(Stopped {
            cancelled_run: cancelled,
        })
    }

    /// Resets the watermark: the next run reads every row (audited).
    pub async fn resync(&self, name: &str) -> Result<Moved, ApiError> {
        self.require(Role::Admin)?;
        let mut client = self.client().await?;
        let from = watermark::resync(
            &mut client,
            &self.caller.workspace,
            name,
            &self.caller.actor(),
        )
        .await
        .map_err(watermark_error)?;
        Ok(Moved {
            from: from.map(|b| b.to_string()),
            to: None,
        })
    }

    /// Moves the watermark back to just before `to` (audited).
    pub async fn rewind(&self, name: &str, to: DateTime<Utc>) -> Result<Moved, ApiError> {
        self.require(Role::Admin)?;
        let mut client = self.client().await?;
        let (from, to) = watermark::rewind(
            &mut client,
            self.master_key()?,
            &self.caller.workspace,
            name,
            to,
            &self.caller.actor(),
        )
        .await
        .map_err(watermark_error)?;
        Ok(Moved {
            from: from.map(|b| b.to_string()),
            to: to.map(|b| b.to_string()),
        })
    }

    /// Reads the rows of `[from, until)` again without moving the watermark (audited as a
    /// run).
    pub async fn replay(
        &self,
        name: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<RunAccepted, ApiError> {
        self.require(Role::Operator)?;
        known(self, name).await?;
        self.trigger(
            name,
            false,
            None,
            Some(sluice_proto::ReplayWindow { from, until }),
        )
        .await
    }
}

/// The source's columns and first rows, as the extractor reads them.
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
    Service::new(&state, caller)
        .preview(&name, query.rows.unwrap_or(10))
        .await
        .map(Json)
}

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
            format_hints: Vec::new(),
        })
    }
}

/// What stopping did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stopped {
    /// The run that was cancelled, if one was active.
    pub cancelled_run: Option<uuid::Uuid>,
}

/// Stops an import: its schedule stops and its active run is cancelled.
#[utoipa::path(operation_id = "steering_stop", post, path = "/v1/imports/{name}/stop", tag = "imports",
    params(("name" = String, Path, description = "The import's name")),
    responses((status = 200, body = Stopped), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn stop(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Stopped>, ApiError> {
    Service::new(&state, caller).stop(&name).await.map(Json)
}

/// Where the watermark was and where it is now.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    Service::new(&state, caller).resync(&name).await.map(Json)
}

/// Where to move the watermark back to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindBody {
    /// The next run reads every row updated at or after this instant (RFC 3339).
    pub to: DateTime<Utc>,
}

/// Moves the watermark back: the next run reads every row from `to` on (audited).
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
    let service = Service::new(&state, caller);
    let Some(body) = body else {
        // A caller without the role, or naming no import, hears that before the body's fault.
        service.require(Role::Admin)?;
        known(&service, &name).await?;
        return Err(ApiError::invalid(
            "to",
            "give {\"to\": \"<RFC 3339 instant>\"}",
        ));
    };
    service.rewind(&name, body.to).await.map(Json)
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
    let service = Service::new(&state, caller);
    let Some(body) = body else {
        // A caller without the role, or naming no import, hears that before the body's fault.
        service.require(Role::Operator)?;
        known(&service, &name).await?;
        return Err(ApiError::invalid(
            "from",
            "give {\"from\": ..., \"until\": ...} as RFC 3339 instants",
        ));
    };
    let accepted = service.replay(&name, body.from, body.until).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

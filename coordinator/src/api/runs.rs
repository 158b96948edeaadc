//! `/v1/runs`: a workspace's runs, filtered and paged, and one run with its stats.

use super::service::Service;
use super::{ApiError, ApiState};
use crate::runs::{self, RunSummary};
use crate::tokens::Caller;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Filters and paging of the run listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    /// Only this import's runs.
    pub import: Option<String>,
    /// Only runs in this status (`queued`, `running`, `succeeded`, `failed`, ...).
    pub status: Option<String>,
    /// Only runs requested by this creator (`scheduler`, `api:<token id>`, a user name).
    pub created_by: Option<String>,
    /// Only runs created at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only runs created before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Runs per page, 1 to 200 (50 by default).
    pub per_page: Option<u32>,
}

/// One run in a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunItem {
    /// The run's id.
    pub run_id: Uuid,
    /// The import it ran.
    pub import: String,
    /// Where the run is: `queued` to `succeeded` or `failed`.
    pub status: String,
    /// Whether the run wrote nothing and only reported.
    pub dry_run: bool,
    /// Who requested it: a user, `api:<token>` or `scheduler`.
    pub created_by: String,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When a coordinator took it up and began planning it: the time since `created_at` is
    /// its wait in the queue.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPage {
    /// The page's runs, newest first.
    pub runs: Vec<RunItem>,
    /// The page's number, from 1.
    pub page: u32,
    /// Runs per page.
    pub per_page: u32,
    /// Runs matching the filters, over all pages.
    pub total: i64,
}

const LIST: &str =
    "SELECT r.id, i.name, r.status, r.dry_run, r.requested_by, r.created_at, r.finished_at,
        count(*) OVER (), r.started_at
   FROM control.runs r JOIN control.imports i ON i.id = r.import_id
  WHERE r.workspace_id = $1
    AND ($2::text IS NULL OR i.name = $2)
    AND ($3::text IS NULL OR r.status = $3)
    AND ($4::text IS NULL OR r.requested_by = $4)
    AND ($5::timestamptz IS NULL OR r.created_at >= $5)
    AND ($6::timestamptz IS NULL OR r.created_at < $6)
  ORDER BY r.created_at DESC, r.id
  LIMIT $7 OFFSET $8";

/// The workspace's runs, newest first, filtered by import, status, creator and date range.
#[utoipa::path(operation_id = "runs_list", get, path = "/v1/runs", tag = "runs", params(RunFilter),
    responses((status = 200, body = RunPage), (status = 400, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    super::ApiQuery(filter): super::ApiQuery<RunFilter>,
) -> Result<Json<RunPage>, ApiError> {
    Service::new(&state, caller)
        .list_runs(&filter)
        .await
        .map(Json)
}

/// Cancels an active run: its remaining chunks are discarded and the workers told to stop
/// them; the import's schedule is left as it is.
#[utoipa::path(operation_id = "runs_cancel", post, path = "/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, body = RunSummary), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<Uuid>,
) -> Result<Json<RunSummary>, ApiError> {
    Service::new(&state, caller)
        .cancel_run(run_id)
        .await
        .map(Json)
}

/// One run: status, stats summed over its chunks, chunk progress and the error that ended it.
#[utoipa::path(operation_id = "runs_show", get, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, body = RunSummary), (status = 404, body = super::ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<Uuid>,
) -> Result<Json<RunSummary>, ApiError> {
    Service::new(&state, caller)
        .show_run(run_id)
        .await
        .map(Json)
}

/// Paging of a run's rejected rows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErrorPage {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Rows per page, 1 to 1000 (100 by default).
    pub per_page: Option<u32>,
}

/// Resolves a run of the caller's workspace, or 404.
impl Service {
    /// The workspace's runs, newest first, filtered by import, status, creator and dates.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, ApiError> {
        let page = filter.page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid("page", "pages count from 1"));
        }
        let per_page = filter.per_page.unwrap_or(50);
        if !(1..=200).contains(&per_page) {
            return Err(ApiError::invalid("per_page", "must be 1 to 200"));
        }
        if let Some(wanted) = filter.status.as_deref() {
            if !crate::runs::status::ALL.contains(&wanted) {
                return Err(ApiError::invalid(
                    "status",
                    format!(
                        "{wanted:?} is not a run status: give one of {}",
                        crate::runs::status::ALL.join(", ")
                    ),
                ));
            }
        }
        let client = self.client().await?;
        let rows = client
            .query(
                LIST,
                &[
                    &self.caller.workspace_id,
                    &filter.import,
                    &filter.status,
                    &filter.created_by,
                    &filter.from,
                    &filter.to,
                    &i64::from(per_page),
                    &(i64::from(page - 1) * i64::from(per_page)),
                ],
            )
            .await?;
        let total = rows.first().map_or(0, |r| r.get(7));
        Ok(RunPage {
            runs: rows
                .iter()
                .map(|r| RunItem {
                    run_id: r.get(0),
                    import: r.get(1),
                    status: r.get(2),
                    dry_run: r.get(3),
                    created_by: r.get(4),
                    created_at: r.get(5),
                    started_at: r.get(8),
                    finished_at: r.get(6),
                })
                .collect(),
            page,
            per_page,
            total,
        })
    }

    /// Cancels an active run of the workspace (its import's schedule is left alone) and tells
    /// the workers; a run that already ended is refused with its status.
    pub async fn cancel_run(&self, run_id: Uuid) -> Result<RunSummary, ApiError> {
        self.require(crate::tokens::Role::Operator)?;
        self.own_run(run_id).await?;
        let actor = self.caller.actor();
        let mut client = self.client().await?;
        if !runs::cancel(&mut client, run_id, &actor).await? {
            let summary = self.show_run(run_id).await?;
            return Err(ApiError::conflict(format!(
                "run {run_id} is {}: only a queued, planning or running run can be cancelled",
                summary.status
            )));
        }
        crate::trigger::announce_cancel(&self.amqp_url, &self.topology, run_id, &actor)
            .await
            .map_err(|e| ApiError::unavailable(format!("RabbitMQ: {e}")))?;
        self.show_run(run_id).await
    }

    /// One run with its stats.
    pub async fn show_run(&self, run_id: Uuid) -> Result<RunSummary, ApiError> {
        let client = self.client().await?;
        runs::summary(&**client, run_id)
            .await?
            .filter(|s| s.workspace == self.caller.workspace)
            .ok_or_else(|| ApiError::not_found(format!("no run {run_id} in this workspace")))
    }

    async fn own_run(&self, run_id: Uuid) -> Result<(), ApiError> {
        let client = self.client().await?;
        client
            .query_opt(
                "SELECT 1 FROM control.runs WHERE id = $1 AND workspace_id = $2",
                &[&run_id, &self.caller.workspace_id],
            )
            .await?
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found(format!("no run {run_id} in this workspace")))
    }

    /// A page of a run's rejected rows.
    pub async fn run_errors(
        &self,
        run_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<crate::errors::RunError>, ApiError> {
        self.own_run(run_id).await?;
        let client = self.client().await?;
        Ok(crate::errors::list(&**client, run_id, limit, offset).await?)
    }

    /// A page of a run's lineage: what happened to each row, filtered, with the counts by
    /// outcome of every row the filter selects.
    pub async fn run_lineage(
        &self,
        run_id: Uuid,
        filter: &crate::lineage::LineageFilter,
    ) -> Result<crate::lineage::RunLineage, ApiError> {
        if let Some(problem) = filter
            .outcome
            .as_deref()
            .and_then(crate::lineage::outcome_problem)
        {
            return Err(ApiError::invalid("outcome", problem));
        }
        let (limit, offset) = super::profiles::paging(filter.page, filter.per_page, 100, 1000)?;
        let client = self.client().await?;
        let import_id: i64 = client
            .query_opt(
                "SELECT import_id FROM control.runs WHERE id = $1 AND workspace_id = $2",
                &[&run_id, &self.caller.workspace_id],
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no run {run_id} in this workspace")))?
            .get(0);
        crate::lineage::of_run(
            self.objects()?,
            (self.caller.workspace_id, import_id, run_id),
            filter,
            limit as usize,
            offset as usize,
        )
        .await
        .map_err(ApiError::internal)
    }

    /// Every rejected row of a run as the CSV failure report.
    pub async fn run_errors_csv(&self, run_id: Uuid) -> Result<Vec<u8>, ApiError> {
        self.own_run(run_id).await?;
        let client = self.client().await?;
        let mut csv = Vec::new();
        crate::errors::write_csv(&**client, run_id, &mut csv)
            .await
            .map_err(ApiError::internal)?;
        Ok(csv)
    }
}

/// A run's rejected rows with their reasons, page by page, in chunk and key order.
#[utoipa::path(operation_id = "runs_errors", get, path = "/v1/runs/{run_id}/errors", tag = "runs",
    params(("run_id" = Uuid, Path, description = "The run's id"), ErrorPage),
    responses((status = 200, body = Vec<crate::errors::RunError>), (status = 404, body = super::ErrorBody)))]
pub async fn errors(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<Uuid>,
    super::ApiQuery(page): super::ApiQuery<ErrorPage>,
) -> Result<Json<Vec<crate::errors::RunError>>, ApiError> {
    let (limit, offset) = super::profiles::paging(page.page, page.per_page, 100, 1000)?;
    Service::new(&state, caller)
        .run_errors(run_id, limit, offset)
        .await
        .map(Json)
}

/// Every rejected row of a run as CSV: the source key, the mapped columns, the column at
/// fault, the message, and the reason last.
#[utoipa::path(operation_id = "runs_errors_csv", get, path = "/v1/runs/{run_id}/errors.csv", tag = "runs",
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = super::ErrorBody)))]
pub async fn errors_csv(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<Uuid>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let csv = Service::new(&state, caller).run_errors_csv(run_id).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{run_id}-errors.csv\""),
            ),
        ],
        csv,
    ))
}

/// What happened to each row of a run: its source key, the identity and profile it matched,
/// its outcome and why, filtered by key, profile or outcome, page by page, with the counts by
/// outcome of the rows the filter selects. Empty once the import's `lineage_retention` has
/// passed.
#[utoipa::path(operation_id = "runs_lineage", get, path = "/v1/runs/{run_id}/lineage", tag = "runs",
    params(("run_id" = Uuid, Path, description = "The run's id"), crate::lineage::LineageFilter),
    responses((status = 200, body = crate::lineage::RunLineage), (status = 404, body = super::ErrorBody)))]
pub async fn lineage(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<Uuid>,
    super::ApiQuery(filter): super::ApiQuery<crate::lineage::LineageFilter>,
) -> Result<Json<crate::lineage::RunLineage>, ApiError> {
    Service::new(&state, caller)
        .run_lineage(run_id, &filter)
        .await
        .map(Json)
}

//! `/v1/errors`: the workspace's error stream, every rejected row across runs in a time
//! window, newest first, with counts by reason and by import over the window.

use super::service::Service;
use super::{ApiError, ApiState};
use crate::errors::RunError;
use crate::tokens::Caller;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_proto::Reason;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The window and filters of the error stream, and its paging.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErrorQuery {
    /// Rows recorded at or after this instant (RFC 3339); 24 hours before `to` by default.
    pub from: Option<DateTime<Utc>>,
    /// Rows recorded before this instant (RFC 3339); now by default.
    pub to: Option<DateTime<Utc>>,
    /// Only this import's rows.
    pub import: Option<String>,
    /// Only rows rejected for this reason code.
    pub reason: Option<String>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Rows per page, 1 to 1000 (100 by default).
    pub per_page: Option<u32>,
}

impl ErrorQuery {
    /// The query as a URL's query string, fields left out when unset.
    pub fn query_string(&self) -> String {
        super::query_string([
            ("from", self.from.map(|t| t.to_rfc3339())),
            ("to", self.to.map(|t| t.to_rfc3339())),
            ("import", self.import.clone()),
            ("reason", self.reason.clone()),
            ("page", self.page.map(|p| p.to_string())),
            ("per_page", self.per_page.map(|p| p.to_string())),
        ])
    }
}

/// One rejected row of the stream.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamError {
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The run that read it.
    pub run_id: Uuid,
    /// The run's import.
    pub import: String,
    /// The row, as the run's own error listing shows it.
    #[serde(flatten)]
    pub error: RunError,
}

/// A page of the error stream and the window's counts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorStreamPage {
    /// The window's start.
    pub from: DateTime<Utc>,
    /// The window's end.
    pub to: DateTime<Utc>,
    /// Rejected rows in the window (with the filters), over all pages.
    pub total: i64,
    /// Those rows by reason code.
    pub by_reason: BTreeMap<String, i64>,
    /// Those rows by import.
    pub by_import: BTreeMap<String, i64>,
    /// The page's rows, newest first.
    pub errors: Vec<StreamError>,
    /// The page's number, from 1.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
}

/// The rows' filter: workspace `$1`, recorded in [`$2`, `$3`), import `$4`, reason `$5`.
const WHERE: &str = "FROM control.run_errors e
   JOIN control.runs r ON r.id = e.run_id
   JOIN control.imports i ON i.id = r.import_id
  WHERE r.workspace_id = $1 AND e.created_at >= $2 AND e.created_at < $3
    AND ($4::text IS NULL OR i.name = $4)
    AND ($5::text IS NULL OR e.reason_code = $5)";

/// The default window: the last day.
const DEFAULT_WINDOW: chrono::Duration = chrono::Duration::hours(24);

impl Service {
    /// A page of the workspace's rejected rows in a window, newest first, with the window's
    /// counts by reason and import.
    pub async fn error_stream(&self, query: &ErrorQuery) -> Result<ErrorStreamPage, ApiError> {
        let page = query.page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid("page", "pages count from 1"));
        }
        let per_page = query.per_page.unwrap_or(100);
        if !(1..=1000).contains(&per_page) {
            return Err(ApiError::invalid("per_page", "must be 1 to 1000"));
        }
        if let Some(reason) = query.reason.as_deref() {
            if Reason::parse(reason).is_none() {
                let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                return Err(ApiError::invalid(
                    "reason",
                    format!(
                        "{reason:?} is not a reason code: give one of {}",
                        codes.join(", ")
                    ),
                ));
            }
        }
        let to = query.to.unwrap_or_else(Utc::now);
        let from = query.from.unwrap_or(to - DEFAULT_WINDOW);
        if from >= to {
            return Err(ApiError::invalid("from", "must be before to"));
        }
        let client = self.client().await?;
        let filter: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &self.caller.workspace_id,
            &from,
            &to,
            &query.import,
            &query.reason,
        ];
        let counts = client
            .query(
                &format!(
                    "SELECT i.name, e.reason_code, count(*) {WHERE} GROUP BY i.name, e.reason_code"
                ),
                &filter,
            )
            .await?;
        let (mut by_reason, mut by_import) = (BTreeMap::new(), BTreeMap::new());
        for row in &counts {
            let n: i64 = row.get(2);
            *by_import.entry(row.get::<_, String>(0)).or_insert(0) += n;
            *by_reason.entry(row.get::<_, String>(1)).or_insert(0) += n;
        }
        let (limit, offset) = (
            i64::from(per_page),
            i64::from(page - 1) * i64::from(per_page),
        );
        let mut params = filter.to_vec();
        params.extend([
            &limit as &(dyn tokio_postgres::types::ToSql + Sync),
            &offset,
        ]);
        let rows = client
            .query(
                &format!(
                    "SELECT e.created_at, e.run_id, i.name, e.chunk_seq, e.stage, e.row_key,
                            e.column_name, e.value, e.reason_code, e.message, e.row_values
                     {WHERE}
                     ORDER BY e.created_at DESC, e.run_id, e.chunk_seq, e.stage, e.row_key
                     LIMIT $6 OFFSET $7"
                ),
                &params,
            )
            .await?;
        Ok(ErrorStreamPage {
            from,
            to,
            total: by_reason.values().sum(),
            by_reason,
            by_import,
            errors: rows
                .iter()
                .map(|r| StreamError {
                    recorded_at: r.get(0),
                    run_id: r.get(1),
                    import: r.get(2),
                    error: RunError {
                        chunk: r.get(3),
                        stage: r.get(4),
                        row_key: r.get(5),
                        column: r.get(6),
                        value: r.get(7),
                        reason: r.get(8),
                        message: r.get(9),
                        row: serde_json::from_value(r.get(10)).unwrap_or_default(),
                    },
                })
                .collect(),
            page,
            per_page,
        })
    }
}

/// The workspace's rejected rows across runs in a window (the last day by default), newest
/// first, filtered by import and reason, with the window's counts by reason and by import.
#[utoipa::path(operation_id = "errors_list", get, path = "/v1/errors", tag = "runs", params(ErrorQuery),
    responses((status = 200, body = ErrorStreamPage), (status = 400, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    super::ApiQuery(query): super::ApiQuery<ErrorQuery>,
) -> Result<Json<ErrorStreamPage>, ApiError> {
    Service::new(&state, caller)
        .error_stream(&query)
        .await
        .map(Json)
}

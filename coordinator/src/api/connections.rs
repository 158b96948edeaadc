//! `/v1/connections`: a workspace's connections, shown without their credentials.

use super::service::Service;
use super::{ApiError, ApiState};
use crate::connections;
use crate::tokens::Caller;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_connectors::SourceSpec;
use sluice_proto::SourceRelation;

/// A connection as the API shows it: never its URL or credentials.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionItem {
    /// The connection's name.
    pub name: String,
    /// `postgres`, `redshift`, `mysql`, `files`, `delta`, `snowflake`, `bigquery`, `databricks`.
    pub kind: String,
    /// How many imports read from it.
    pub imports: i64,
}

impl Service {
    /// The workspace's connections, never their credentials.
    pub async fn list_connections(&self) -> Result<Vec<ConnectionItem>, ApiError> {
        let client = self.client().await?;
        Ok(connections::list(&**client, &self.caller.workspace)
            .await?
            .into_iter()
            .map(|(name, kind, imports)| ConnectionItem {
                name,
                kind,
                imports,
            })
            .collect())
    }

    /// Tests a connection: ok, or the classified failure. A Snowflake key waiting to be
    /// rotated in is tried too.
    pub async fn test_connection(&self, name: &str) -> Result<TestResult, ApiError> {
        self.require(crate::tokens::Role::Operator)?;
        let client = self.client().await?;
        match connections::test(&**client, self.master_key()?, &self.caller.workspace, name).await {
            Ok(tested) => Ok(TestResult {
                ok: true,
                key_promoted: tested.promoted.is_some(),
                retire: tested.promoted.flatten(),
                pending_key_refused: tested.pending_refused.map(|e| e.to_string()),
                ..TestResult::default()
            }),
            Err(connections::ConnectionError::Test { error, .. }) => Ok(TestResult {
                ok: false,
                code: Some(error.code().as_str().to_string()),
                message: Some(error.to_string()),
                ..TestResult::default()
            }),
            Err(e) => Err(connection_error(e)),
        }
    }

    /// Deletes a connection no import uses (admins).
    pub async fn delete_connection(&self, name: &str) -> Result<(), ApiError> {
        self.require(crate::tokens::Role::Admin)?;
        let mut client = self.client().await?;
        connections::delete(&mut client, &self.caller.workspace, name)
            .await
            .map_err(connection_error)
    }

    /// Generates a Snowflake key pair; the private key is kept sealed as the pending key.
    pub async fn keygen(&self, name: &str) -> Result<KeyPair, ApiError> {
        self.require(crate::tokens::Role::Admin)?;
        let client = self.client().await?;
        let rotation =
            connections::keygen(&**client, self.master_key()?, &self.caller.workspace, name)
                .await
                .map_err(connection_error)?;
        Ok(KeyPair {
            public_key: rotation.public_key,
            statement: rotation.statement,
        })
    }
}

async fn all(state: &ApiState, caller: Caller) -> Result<Vec<ConnectionItem>, ApiError> {
    Service::new(state, caller).list_connections().await
}

/// The workspace's connections.
#[utoipa::path(operation_id = "connections_list", get, path = "/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<ConnectionItem>), (status = 401, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ConnectionItem>>, ApiError> {
    all(&state, caller).await.map(Json)
}

/// One connection.
#[utoipa::path(operation_id = "connections_show", get, path = "/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses((status = 200, body = ConnectionItem), (status = 404, body = super::ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ConnectionItem>, ApiError> {
    all(&state, caller)
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no connection {name:?} in this workspace")))
}

/// What testing a connection found.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    /// Whether the connection works.
    pub ok: bool,
    /// Why it failed: `source_unreachable`, `authentication`, `permission_denied`,
    /// `missing_object`, `source_timeout`...
    pub code: Option<String>,
    /// What failed, when something did.
    pub message: Option<String>,
    /// Snowflake: a pending key logged in and now replaces the old credentials.
    pub key_promoted: bool,
    /// The statement that retires the old key's slot, once a new key took over.
    pub retire: Option<String>,
    /// Snowflake: why a pending key was refused (the old credentials stay in use).
    pub pending_key_refused: Option<String>,
}

/// Opens a session the way the extractor does and says what failed.
#[utoipa::path(operation_id = "connections_test", post, path = "/v1/connections/{name}/test", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses((status = 200, body = TestResult), (status = 404, body = super::ErrorBody)))]
pub async fn test(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    Service::new(&state, caller)
        .test_connection(&name)
        .await
        .map(Json)
}

fn connection_error(e: connections::ConnectionError) -> ApiError {
    match e {
        connections::ConnectionError::NotFound { name, .. } => {
            ApiError::not_found(format!("no connection {name:?} in this workspace"))
        }
        e @ (connections::ConnectionError::InUse { .. }
        | connections::ConnectionError::NotSnowflake { .. }) => ApiError::conflict(e.to_string()),
        connections::ConnectionError::Store(e) => e.into(),
        other => ApiError::internal(other),
    }
}

/// Deletes a connection no import uses; otherwise answers 409 naming the imports.
#[utoipa::path(operation_id = "connections_delete", delete, path = "/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses((status = 204), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    Service::new(&state, caller)
        .delete_connection(&name)
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A key pair made for a Snowflake connection.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyPair {
    /// The public key, base64 DER.
    pub public_key: String,
    /// `ALTER USER ... SET RSA_PUBLIC_KEY[_2] = '...'`: run it in Snowflake, then test the
    /// connection; the new key takes over once it logs in.
    pub statement: String,
}

/// Makes a key pair for a Snowflake connection; the private key is kept sealed as pending.
#[utoipa::path(operation_id = "connections_keygen", post, path = "/v1/connections/{name}/keygen", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses((status = 200, body = KeyPair), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn keygen(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<KeyPair>, ApiError> {
    Service::new(&state, caller).keygen(&name).await.map(Json)
}

/// A table or query to preview through a connection, before an import reads it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePreview {
    /// A table or view (`schema.table`); give this or `query`.
    pub table: Option<String>,
    /// A SQL query; give this or `table`.
    pub query: Option<String>,
    /// The unique key column.
    pub key: String,
    /// The watermark ("updated on") column.
    pub watermark: String,
    /// Further columns to show.
    #[serde(default)]
    pub columns: Vec<String>,
    /// 1 to 100 (10 by default).
    pub rows: Option<usize>,
}

/// The first rows of a table or query of the connection, in `(watermark, key)` order, with
/// their types as the extractor reads them (operators).
#[utoipa::path(operation_id = "connections_preview", post, path = "/v1/connections/{name}/preview", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")), request_body = SourcePreview,
    responses((status = 200, body = super::steering::Preview), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn preview(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    super::MaybeJson(body): super::MaybeJson<SourcePreview>,
) -> Result<Json<super::steering::Preview>, ApiError> {
    super::auth::require(&caller, crate::tokens::Role::Operator)?;
    let client = state.pool.get().await?;
    if connections::list(&**client, &caller.workspace)
        .await?
        .iter()
        .all(|(connection, _, _)| connection != &name)
    {
        return Err(ApiError::not_found(format!(
            "no connection {name:?} in this workspace"
        )));
    }
    let body =
        body.ok_or_else(|| ApiError::invalid("key", "give key, watermark and table or query"))?;
    let relation = match (body.table, body.query) {
        (Some(table), None) if !table.trim().is_empty() => SourceRelation::Table(table),
        (None, Some(query)) if !query.trim().is_empty() => SourceRelation::Query(query),
        _ => return Err(ApiError::invalid("table", "give either a table or a query")),
    };
    for (field, value) in [("key", &body.key), ("watermark", &body.watermark)] {
        if value.trim().is_empty() {
            return Err(ApiError::invalid(field, "must name a column"));
        }
    }
    let rows = body.rows.unwrap_or(10);
    if !(1..=100).contains(&rows) {
        return Err(ApiError::invalid("rows", "must be 1 to 100"));
    }
    let mut columns = body.columns;
    columns.retain(|c| c != &body.key && c != &body.watermark);
    let spec = SourceSpec {
        relation,
        key_column: body.key,
        watermark_column: body.watermark,
        columns,
    };
    let batch = crate::preview::preview_connection(
        &**client,
        &state.master_key,
        &caller.workspace,
        &name,
        &spec,
        rows,
    )
    .await
    .map_err(super::steering::preview_error)?;
    Ok(Json(super::steering::Preview::of(&batch)?))
}

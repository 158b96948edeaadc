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
    /// The SSH bastion it goes through (`user@host:port`), when it declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<String>,
    /// Whether a key for the bastion has been generated (connections through one only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssh_key: bool,
    /// The bastion's pinned host key (SHA-256 fingerprint), once a test pinned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
}

impl Service {
    /// The workspace's connections, never their credentials.
    pub async fn list_connections(&self) -> Result<Vec<ConnectionItem>, ApiError> {
        let client = self.client().await?;
        let key = self.master_key().ok();
        Ok(connections::list(&**client, key, &self.caller.workspace)
            .await?
            .into_iter()
            .map(|c| ConnectionItem {
                bastion: c.ssh.as_ref().map(|s| s.bastion().to_string()),
                ssh_key: c.ssh.as_ref().is_some_and(|s| s.private_key.is_some()),
                ssh_host_key: c.ssh.and_then(|s| s.host_key),
                name: c.name,
                kind: c.kind,
                imports: c.imports,
            })
            .collect())
    }

    /// Tests a connection: ok, or the classified failure. A Snowflake key waiting to be
    /// rotated in is tried too.
    /// `repin` accepts the host key an SSH bastion presents now in place of the pinned one.
    pub async fn test_connection(&self, name: &str, repin: bool) -> Result<TestResult, ApiError> {
        self.require(crate::tokens::Role::Operator)?;
        if repin {
            self.require(crate::tokens::Role::Admin)?;
        }
        let client = self.client().await?;
        let workspace = &self.caller.workspace;
        match connections::test(&**client, self.master_key()?, workspace, name, repin).await {
            Ok(tested) => Ok(TestResult {
                ok: true,
                key_promoted: tested.promoted.is_some(),
                retire: tested.promoted.flatten(),
                pending_key_refused: tested.pending_refused.map(|e| e.to_string()),
                ssh_host_key: tested.host_key,
                ssh_host_key_pinned: tested.pinned,
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

    /// Generates an SSH key pair for a connection through a bastion (admins); the private
    /// key is kept sealed.
    pub async fn keygen_ssh(&self, name: &str) -> Result<SshKey, ApiError> {
        self.require(crate::tokens::Role::Admin)?;
        let client = self.client().await?;
        let (public_key, route) =
            connections::keygen_ssh(&**client, self.master_key()?, &self.caller.workspace, name)
                .await
                .map_err(connection_error)?;
        Ok(SshKey {
            public_key,
            bastion: route.bastion().to_string(),
            pending: route.pending_key.is_some(),
        })
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
    /// A pending key (Snowflake or SSH) logged in and now replaces the old one.
    pub key_promoted: bool,
    /// The statement that retires the old key's slot, once a new key took over.
    pub retire: Option<String>,
    /// Why a pending key (Snowflake or SSH) was refused; the old one stays in use.
    pub pending_key_refused: Option<String>,
    /// The host key (SHA-256 fingerprint) of the SSH bastion the connection goes through.
    pub ssh_host_key: Option<String>,
    /// This test pinned that host key: the first successful test, or a re-pin.
    pub ssh_host_key_pinned: bool,
}

/// How to test a connection.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestOptions {
    /// Accept the host key the SSH bastion presents now in place of the pinned one, after it
    /// was changed on purpose (admins).
    #[serde(default)]
    pub repin_ssh_host_key: bool,
}

/// Opens a session the way the extractor does and says what failed.
#[utoipa::path(operation_id = "connections_test", post, path = "/v1/connections/{name}/test", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")), request_body = Option<TestOptions>,
    responses((status = 200, body = TestResult), (status = 404, body = super::ErrorBody)))]
pub async fn test(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    super::MaybeJson(options): super::MaybeJson<TestOptions>,
) -> Result<Json<TestResult>, ApiError> {
    let repin = options.is_some_and(|o| o.repin_ssh_host_key);
    Service::new(&state, caller)
        .test_connection(&name, repin)
        .await
        .map(Json)
}

fn connection_error(e: connections::ConnectionError) -> ApiError {
    match e {
        connections::ConnectionError::NotFound { name, .. } => {
            ApiError::not_found(format!("no connection {name:?} in this workspace"))
        }
        e @ (connections::ConnectionError::InUse { .. }
        | connections::ConnectionError::NotSnowflake { .. }
        | connections::ConnectionError::NoBastion { .. }) => ApiError::conflict(e.to_string()),
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

/// A key pair made for a connection through an SSH bastion.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshKey {
    /// The public key line (`ssh-ed25519 AAAA… sluice:WORKSPACE/NAME`) for the bastion
    /// user's `authorized_keys`.
    pub public_key: String,
    /// The bastion: `user@host:port`.
    pub bastion: String,
    /// The connection already had a key: the new one is pending, and replaces it once a test
    /// sees the bastion accept it.
    pub pending: bool,
}

/// Makes an Ed25519 key pair for a connection through an SSH bastion; the private key is
/// kept sealed (admins).
#[utoipa::path(operation_id = "connections_ssh_keygen", post, path = "/v1/connections/{name}/ssh-keygen", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses((status = 200, body = SshKey), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn ssh_keygen(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<SshKey>, ApiError> {
    Service::new(&state, caller)
        .keygen_ssh(&name)
        .await
        .map(Json)
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
    if connections::list(&**client, None, &caller.workspace)
        .await?
        .iter()
        .all(|c| c.name != name)
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

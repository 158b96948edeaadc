//! `POST /v1/apply`: creates or updates the connections and imports a spec declares, in the
//! caller's workspace, exactly as `sluice apply -f` does (tested first; a bad spec writes
//! nothing); and `PUT` of one connection or one import, applied the same way.

use super::auth::require;
use super::service::Service;
use super::{ApiError, ApiState, JsonBody};
use crate::apply::{self, ApplyError, ApplyOptions};
use crate::spec::SpecFile;
use crate::tokens::{Caller, Role};
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// How to apply.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// New imports are ready at once instead of drafts (for specs dry-run elsewhere).
    pub ready: Option<bool>,
}

/// What applying did, one line per object.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// One line per connection and import: what applying did to it.
    pub lines: Vec<String>,
}

/// Applies a spec (YAML or JSON text). `${NAME}` references must be expanded by the client:
/// the server's environment is never read.
#[utoipa::path(operation_id = "apply_apply", post, path = "/v1/apply", tag = "imports", params(ApplyQuery),
    request_body(content = String, content_type = "application/yaml", description = "The spec file's text"),
    responses((status = 200, body = Applied), (status = 400, body = super::ErrorBody),
              (status = 403, body = super::ErrorBody)))]
pub async fn apply(
    State(state): State<ApiState>,
    caller: Caller,
    super::ApiQuery(query): super::ApiQuery<ApplyQuery>,
    super::TextBody(text): super::TextBody,
) -> Result<Json<Applied>, ApiError> {
    Service::new(&state, caller)
        .apply(&text, query.ready.unwrap_or(false))
        .await
        .map(Json)
}

impl Service {
    /// Applies a spec's text in the caller's workspace (admins); `${NAME}` references must
    /// already be expanded: the server's environment is never read.
    pub async fn apply(&self, text: &str, ready: bool) -> Result<Applied, ApiError> {
        self.require(Role::Admin)?;
        let spec = crate::spec::parse_with(text, |_| None)
            .map_err(|e| ApiError::invalid(e.field, e.reason))?;
        if spec.workspace != self.caller.workspace {
            return Err(ApiError::invalid(
                "workspace",
                format!(
                    "the spec names workspace {:?}; this caller acts in {:?}",
                    spec.workspace, self.caller.workspace
                ),
            ));
        }
        self.write(spec, ready).await
    }

    /// Tests and writes a spec in the caller's workspace.
    async fn write(&self, spec: SpecFile, ready: bool) -> Result<Applied, ApiError> {
        let mut client = self.client().await?;
        write(&mut client, self.master_key()?, spec, ready).await
    }

    /// Creates or replaces one connection after testing it (admins); a field at fault is
    /// named as a one-connection request names it (`url`).
    pub async fn put_connection(
        &self,
        name: &str,
        kind: sluice_proto::ConnectionKind,
        url: String,
        ssh: Option<crate::spec::SshDecl>,
    ) -> Result<Applied, ApiError> {
        self.require(Role::Admin)?;
        let mut spec = one_object_spec(&self.pool, &self.caller).await?;
        spec.connections.push(crate::spec::ConnectionDecl {
            name: name.to_string(),
            kind,
            url,
            ssh,
        });
        self.write(spec, false)
            .await
            .map_err(|e| within(e, &["connections[0].", &format!("connections.{name}.")]))
    }
}

/// Tests and writes a spec in the caller's workspace.
async fn write(
    client: &mut tokio_postgres::Client,
    master_key: &sluice_proto::secrets::MasterKey,
    spec: SpecFile,
    ready: bool,
) -> Result<Applied, ApiError> {
    let report = apply::apply(client, master_key, &spec, &ApplyOptions { ready })
        .await
        .map_err(|e| match e {
            ApplyError::Spec(e) => ApiError::invalid(e.field, e.reason),
            ApplyError::Connection { field, name, error } => ApiError::invalid(
                field,
                format!("connection {name}: {error} [{}]", error.code().as_str()),
            ),
            ApplyError::Source { field, name, error } => {
                ApiError::invalid(field, format!("import {name}: {error}"))
            }
            ApplyError::Secret { .. } => ApiError::invalid("connections", e.to_string()),
            ApplyError::Database(e) => e.into(),
        })?;
    Ok(Applied {
        lines: report.lines,
    })
}

/// A spec holding one object of the caller's workspace, keeping its event retention.
async fn one_object_spec(
    pool: &deadpool_postgres::Pool,
    caller: &Caller,
) -> Result<SpecFile, ApiError> {
    let client = pool.get().await?;
    let days: Option<i32> = client
        .query_one(
            "SELECT event_retention_days FROM control.workspaces WHERE id = $1",
            &[&caller.workspace_id],
        )
        .await?
        .get(0);
    Ok(SpecFile {
        workspace: caller.workspace.clone(),
        event_retention: days.map(|d| std::time::Duration::from_secs(d.max(0) as u64 * 86_400)),
        connections: Vec::new(),
        imports: Vec::new(),
        destinations: Vec::new(),
    })
}

/// A connection to create or replace.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    /// `postgres`, `redshift`, `mysql`, `files`, `delta`, `snowflake`, `bigquery`, `databricks`.
    #[schema(value_type = String)]
    pub kind: sluice_proto::ConnectionKind,
    /// The connection URL with its credentials (sealed at rest, never shown again).
    pub url: String,
    /// The SSH bastion the database is reached through: `{ host, port (22), user }`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub ssh: Option<crate::spec::SshDecl>,
}

/// Creates or replaces a connection after testing it (admins).
#[utoipa::path(operation_id = "apply_put_connection", put, path = "/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")), request_body = ConnectionBody,
    responses((status = 200, body = Applied), (status = 400, body = super::ErrorBody),
              (status = 403, body = super::ErrorBody)))]
pub async fn put_connection(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> Result<Json<Applied>, ApiError> {
    Service::new(&state, caller)
        .put_connection(&name, body.kind, body.url, body.ssh)
        .await
        .map(Json)
}

/// An error whose field is named inside a one-object spec, renamed as the request body names
/// it (`connections[0].url` is the body's `url`).
fn within(mut error: ApiError, prefixes: &[&str]) -> ApiError {
    if let Some(field) = &error.body.field {
        if let Some(inner) = prefixes.iter().find_map(|p| field.strip_prefix(p)) {
            error.body.message = error.body.message.replacen(field.as_str(), inner, 1);
            error.body.field = Some(inner.to_string());
        }
    }
    error
}

/// Creates or replaces an import after testing its source (admins). The body is the import
/// as a spec file declares it, without its name; `?ready=true` skips the draft state.
#[utoipa::path(operation_id = "apply_put_import", put, path = "/v1/imports/{name}", tag = "imports",
    params(("name" = String, Path, description = "The import's name"), ApplyQuery),
    request_body(content = Object, description = "The import as a spec declares it"),
    responses((status = 200, body = Applied), (status = 400, body = super::ErrorBody),
              (status = 403, body = super::ErrorBody)))]
pub async fn put_import(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    super::ApiQuery(query): super::ApiQuery<ApplyQuery>,
    JsonBody(mut body): JsonBody<serde_json::Value>,
) -> Result<Json<Applied>, ApiError> {
    require(&caller, Role::Admin)?;
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::invalid(
            "import",
            "give the import as a JSON object",
        ));
    };
    match fields.get("name") {
        Some(given) if given != &serde_json::Value::String(name.clone()) => {
            return Err(ApiError::invalid(
                "name",
                "differs from the name in the path",
            ))
        }
        _ => {
            fields.insert("name".into(), serde_json::Value::String(name));
        }
    }
    let import: crate::spec::ImportDecl =
        serde_json::from_value(body).map_err(|e| ApiError::invalid("import", e.to_string()))?;
    Service::new(&state, caller)
        .put_import(import, query.ready.unwrap_or(false))
        .await
        .map(Json)
}

impl Service {
    /// Creates or replaces one import after testing its source (admins): a new one is a
    /// draft unless `ready`.
    pub async fn put_import(
        &self,
        import: crate::spec::ImportDecl,
        ready: bool,
    ) -> Result<Applied, ApiError> {
        self.require(Role::Admin)?;
        let mut spec = one_object_spec(&self.pool, &self.caller).await?;
        spec.imports.push(import);
        self.write(spec, ready).await
    }
}

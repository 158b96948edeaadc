//! `/v1/workspace` and `/v1/tokens`: who the caller is, and (admins) the workspace's tokens.

use super::auth::require;
use super::{ApiError, ApiState, JsonBody};
use crate::tokens::{self, Caller, Role, TokenView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The caller's workspace and role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    pub name: String,
    pub role: Role,
}

/// A token to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (a service's name, a person).
    pub name: String,
    pub role: Role,
}

/// A token just made: `token` is shown this once and kept nowhere.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: Uuid,
    pub token: String,
}

/// The caller's workspace and role.
#[utoipa::path(operation_id = "tokens_workspace", get, path = "/v1/workspace", tag = "workspace",
    responses((status = 200, body = WorkspaceView), (status = 401, body = super::ErrorBody)))]
pub async fn workspace(caller: Caller) -> Json<WorkspaceView> {
    Json(WorkspaceView {
        name: caller.workspace,
        role: caller.role,
    })
}

/// The workspace's tokens, never their secrets (admins).
#[utoipa::path(operation_id = "tokens_list", get, path = "/v1/tokens", tag = "workspace",
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    require(&caller, Role::Admin)?;
    let client = state.pool.get().await?;
    Ok(Json(tokens::list(&**client, caller.workspace_id).await?))
}

/// Makes a token for the workspace (admins).
#[utoipa::path(operation_id = "tokens_create", post, path = "/v1/tokens", tag = "workspace", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = super::ErrorBody),
              (status = 403, body = super::ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    require(&caller, Role::Admin)?;
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let client = state.pool.get().await?;
    let (id, token) = tokens::create(&**client, &caller.workspace, name, new.role, false)
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Revokes a token of the workspace (admins).
#[utoipa::path(operation_id = "tokens_revoke", delete, path = "/v1/tokens/{id}", tag = "workspace",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Role::Admin)?;
    let client = state.pool.get().await?;
    if tokens::revoke(&**client, caller.workspace_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no token {id} in this workspace"
        )))
    }
}

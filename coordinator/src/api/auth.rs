//! Bearer-token authentication: every request names its caller (a workspace and a role)
//! before a handler runs, and handlers say which role they need.

use super::{ApiError, ApiState};
use crate::tokens::{self, Caller, Role};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthenticated)?;
        let client = state.pool.get().await?;
        tokens::authenticate(&**client, token.trim())
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// Refuses callers whose role is below `needed`.
pub fn require(caller: &Caller, needed: Role) -> Result<(), ApiError> {
    if caller.role >= needed {
        Ok(())
    } else {
        Err(ApiError::forbidden(needed.as_str()))
    }
}

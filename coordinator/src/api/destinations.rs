//! `/v1/destinations`: the engagement platforms a workspace's imports deliver to, shown
//! without their credentials.

use super::service::Service;
use super::{ApiError, ApiState};
use crate::destinations::{self, DestinationItem};
use crate::tokens::Caller;
use axum::extract::State;
use axum::Json;

impl Service {
    /// The workspace's destinations, never their credentials.
    pub async fn list_destinations(&self) -> Result<Vec<DestinationItem>, ApiError> {
        let client = self.client().await?;
        Ok(destinations::list(&**client, self.caller.workspace_id).await?)
    }
}

/// The workspace's destinations, with the imports delivering to each.
#[utoipa::path(operation_id = "destinations_list", get, path = "/v1/destinations", tag = "destinations",
    responses((status = 200, body = Vec<DestinationItem>), (status = 401, body = super::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<DestinationItem>>, ApiError> {
    Service::new(&state, caller)
        .list_destinations()
        .await
        .map(Json)
}

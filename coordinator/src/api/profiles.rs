//! `/v1/profiles`: a profile looked up by any of its identities, and its events.

use super::{ApiError, ApiState};
use crate::consent::{self, SubscriptionChange, SubscriptionStatus};
use crate::tokens::Caller;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which identity to look a profile up by.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Lookup {
    /// `identity`, `external_id`, `email`, `phone`, `alias:<label>` or `profile_id`.
    pub kind: String,
    pub value: String,
}

/// One identity of a profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    pub kind: String,
    pub value: String,
}

/// A profile in the profile store.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub profile_id: i64,
    pub identities: Vec<Identity>,
    #[schema(value_type = Object)]
    pub properties: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub first_event_at: Option<DateTime<Utc>>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub event_count: i64,
    /// Consent: each channel's status by name, the groups' under `groups`.
    #[schema(value_type = Object)]
    pub subscriptions: serde_json::Value,
    /// Consent's history: the latest changes of status, newest first.
    pub subscription_history: Vec<SubscriptionChange>,
}

/// One stored event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub event_id: i64,
    pub name: String,
    pub time: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub properties: serde_json::Value,
    pub dedup_key: String,
}

/// Paging of a profile's events.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventPage {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Events per page, 1 to 500 (100 by default).
    pub per_page: Option<u32>,
}

/// `(limit, offset)` of a page, refusing pages out of range by field.
pub fn paging(
    page: Option<u32>,
    per_page: Option<u32>,
    default: u32,
    max: u32,
) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::invalid("page", "pages count from 1"));
    }
    let per_page = per_page.unwrap_or(default);
    if !(1..=max).contains(&per_page) {
        return Err(ApiError::invalid("per_page", format!("must be 1 to {max}")));
    }
    Ok((
        i64::from(per_page),
        i64::from(page - 1) * i64::from(per_page),
    ))
}

/// A connection to the store the workspace lives in.
async fn store(state: &ApiState, workspace_id: i64) -> Result<deadpool_postgres::Object, ApiError> {
    let pool = state.stores.for_workspace(workspace_id).await?;
    pool.get()
        .await
        .map_err(|e| ApiError::unavailable(format!("the workspace's store is unreachable: {e}")))
}

/// The changes of consent a profile look-up shows.
const HISTORY_SHOWN: i64 = 100;

async fn profile(
    state: &ApiState,
    workspace_id: i64,
    profile_id: i64,
) -> Result<Option<Profile>, ApiError> {
    let client = store(state, workspace_id).await?;
    let Some(row) = client
        .query_opt(
            "SELECT p.profile_id, p.properties, p.updated_at,
                    l.first_event_at, l.last_event_at, coalesce(l.event_count, 0)
               FROM profile_store.profiles p
               LEFT JOIN profile_store.event_lifecycle l USING (workspace_id, profile_id)
              WHERE p.workspace_id = $1 AND p.profile_id = $2",
            &[&workspace_id, &profile_id],
        )
        .await?
    else {
        return Ok(None);
    };
    // Email and phone live on the profile itself; the other identities in their own table.
    let identities = client
        .query(
            "SELECT kind, value FROM profile_store.identities
              WHERE workspace_id = $1 AND profile_id = $2
             UNION ALL
             SELECT v.kind, v.value FROM profile_store.profiles p
              CROSS JOIN LATERAL (VALUES ('email', p.email), ('phone', p.phone)) v(kind, value)
              WHERE p.workspace_id = $1 AND p.profile_id = $2 AND v.value IS NOT NULL
             ORDER BY 1, 2",
            &[&workspace_id, &profile_id],
        )
        .await?
        .iter()
        .map(|r| Identity {
            kind: r.get(0),
            value: r.get(1),
        })
        .collect();
    let statuses: BTreeMap<String, SubscriptionStatus> =
        consent::statuses(&**client, workspace_id, profile_id).await?;
    let subscription_history =
        consent::history(&**client, workspace_id, profile_id, HISTORY_SHOWN).await?;
    Ok(Some(Profile {
        subscriptions: consent::nested(&statuses),
        subscription_history,
        profile_id: row.get(0),
        identities,
        properties: row.get(1),
        updated_at: row.get(2),
        first_event_at: row.get(3),
        last_event_at: row.get(4),
        event_count: row.get(5),
    }))
}

/// The profile one identity names.
#[utoipa::path(operation_id = "profiles_lookup", get, path = "/v1/profiles", tag = "profiles", params(Lookup),
    responses((status = 200, body = Profile), (status = 404, body = super::ErrorBody)))]
pub async fn lookup(
    State(state): State<ApiState>,
    caller: Caller,
    super::ApiQuery(lookup): super::ApiQuery<Lookup>,
) -> Result<Json<Profile>, ApiError> {
    if let Some(problem) = consent::kind_problem(&lookup.kind) {
        return Err(ApiError::invalid("kind", problem));
    }
    let profile_id = {
        let client = store(&state, caller.workspace_id).await?;
        consent::profile_id(&**client, caller.workspace_id, &lookup.kind, &lookup.value).await?
    };
    let found = match profile_id {
        Some(id) => profile(&state, caller.workspace_id, id).await?,
        None => None,
    };
    found.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no profile with {} {:?} in this workspace",
            lookup.kind, lookup.value
        ))
    })
}

/// A profile's events, newest first.
#[utoipa::path(operation_id = "profiles_events", get, path = "/v1/profiles/{profile_id}/events", tag = "profiles",
    params(("profile_id" = i64, Path, description = "The profile's id"), EventPage),
    responses((status = 200, body = Vec<Event>), (status = 404, body = super::ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(profile_id): Path<i64>,
    super::ApiQuery(page): super::ApiQuery<EventPage>,
) -> Result<Json<Vec<Event>>, ApiError> {
    if profile(&state, caller.workspace_id, profile_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no profile {profile_id} in this workspace"
        )));
    }
    let (limit, offset) = paging(page.page, page.per_page, 100, 500)?;
    let client = store(&state, caller.workspace_id).await?;
    Ok(Json(
        client
            .query(
                "SELECT event_id, name, time, properties, dedup_key FROM profile_store.events
                  WHERE workspace_id = $1 AND profile_id = $2
                  ORDER BY time DESC, event_id DESC LIMIT $3 OFFSET $4",
                &[&caller.workspace_id, &profile_id, &limit, &offset],
            )
            .await?
            .iter()
            .map(|r| Event {
                event_id: r.get(0),
                name: r.get(1),
                time: r.get(2),
                properties: r.get(3),
                dedup_key: r.get(4),
            })
            .collect(),
    ))
}

/// The runs that touched the profile one identity names, within the lineage the imports keep
/// (`lineage_retention`), newest first, with each run's rows of it by outcome.
#[utoipa::path(operation_id = "profiles_history", get, path = "/v1/profiles/history", tag = "profiles", params(Lookup),
    responses((status = 200, body = crate::lineage::ProfileHistory), (status = 404, body = super::ErrorBody)))]
pub async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    super::ApiQuery(lookup): super::ApiQuery<Lookup>,
) -> Result<Json<crate::lineage::ProfileHistory>, ApiError> {
    let profile_id = {
        let client = store(&state, caller.workspace_id).await?;
        if let Some(problem) = consent::kind_problem(&lookup.kind) {
            return Err(ApiError::invalid("kind", problem));
        }
        crate::lineage::history_profile(&**client, caller.workspace_id, &lookup.kind, &lookup.value)
            .await
            .map_err(|e| match e {
                crate::lineage::HistoryError::Invalid(m) => ApiError::invalid("value", m),
                other => ApiError::internal(other),
            })?
    };
    let Some(profile_id) = profile_id else {
        return Err(ApiError::not_found(format!(
            "no profile with {} {:?} in this workspace",
            lookup.kind, lookup.value
        )));
    };
    let control = state.pool.get().await?;
    let runs = crate::lineage::profile_history(
        &**control,
        &state.objects,
        caller.workspace_id,
        profile_id,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(crate::lineage::ProfileHistory { profile_id, runs }))
}

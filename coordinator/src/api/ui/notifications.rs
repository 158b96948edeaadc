//! The page's in-app notifications (`/ui/notifications`): the alert rules firing now and the
//! workspace's latest events, those the signed-in token has not marked read in bold.

use super::html::time;
use super::{check_form, Viewer};
use crate::api::{ApiError, ApiState};
use askama::Template;
use axum::extract::{Form, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// Events the page lists.
const SHOWN: i64 = 50;

/// An event as the page lists it.
struct EntryRow {
    at: String,
    import: String,
    headline: String,
    run: Option<String>,
    unread: bool,
}

/// A firing alert as the page lists it.
struct FiringRow {
    import: String,
    rule: String,
    since: String,
    figures: String,
}

/// The notifications page.
#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage<'a> {
    title: &'a str,
    refresh: bool,
    workspace: &'a str,
    csrf: &'a str,
    firing: Vec<FiringRow>,
    entries: Vec<EntryRow>,
}

/// The firing alerts and the latest events.
pub async fn page(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
) -> Result<Html<String>, ApiError> {
    let client = state.pool.get().await?;
    let firing = crate::feed::firing(&**client, caller.workspace_id)
        .await?
        .into_iter()
        .map(|a| FiringRow {
            import: a.import,
            rule: a.rule,
            since: time(&a.since),
            figures: a.figures.to_string(),
        })
        .collect();
    let entries = crate::feed::recent(&**client, caller.workspace_id, caller.token_id, SHOWN)
        .await?
        .into_iter()
        .map(|e| EntryRow {
            at: time(&e.at),
            import: e.import.unwrap_or_default(),
            headline: e.headline,
            run: e.run_id.map(|r| r.to_string()),
            unread: e.unread,
        })
        .collect();
    Ok(Html(super::html::render(NotificationsPage {
        title: "Notifications",
        refresh: false,
        workspace: &caller.workspace,
        csrf: &csrf.0,
        firing,
        entries,
    })))
}

/// The mark-read form.
#[derive(Deserialize)]
pub struct MarkRead {
    csrf: String,
}

/// Marks every event so far read for the signed-in token.
pub async fn mark_read(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    headers: header::HeaderMap,
    Form(form): Form<MarkRead>,
) -> Result<Response, ApiError> {
    check_form(&headers, &csrf, &form.csrf)?;
    let client = state.pool.get().await?;
    crate::feed::mark_read(&**client, caller.workspace_id, caller.token_id).await?;
    Ok(Redirect::to("/ui/notifications").into_response())
}

//! The web page at `/ui`: server-rendered HTML, no script. Signing in with an API token opens
//! a server-side session whose id the browser keeps in an HttpOnly cookie (never the token);
//! every page is scoped to its workspace like the API. The listing shows each import's
//! status, schedule, health, last and next run, and the runs filtered by status, creator and
//! date; a run's page shows its stats, chunk progress and errors, and refreshes itself while
//! the run is active; each run's rejections by reason link to the workspace's error stream,
//! filtered to that import and reason. An import's page shows its state and changes and, to
//! operators, its actions, posted with the session's form token through the `/v1` service.

mod builder;
mod draft;
mod html;
mod notifications;

use super::{ApiError, ApiState};
use crate::tokens::{self, Caller};
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

const COOKIE: &str = "sluice_session";

/// A signed-in browser: the caller its cookie's token names, and the token its forms carry
/// against cross-site requests.
pub struct Viewer(Caller, Csrf);

/// The token a session's forms carry: derived from the session's secret (which only its
/// HttpOnly cookie holds), so a page of another site can neither read nor forge it.
pub struct Csrf(String);

impl Csrf {
    fn of(session: &str) -> Csrf {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(b"sluice-ui-form\0")
            .chain_update(session.as_bytes())
            .finalize();
        Csrf(hex::encode(digest))
    }

    /// Whether a form's token is this session's, compared in constant time.
    fn accepts(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == token.len() && bool::from(self.0.as_bytes().ct_eq(token.as_bytes()))
    }
}

impl FromRequestParts<ApiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let Some(session) = session_cookie(&parts.headers) else {
            return Err(Redirect::to("/ui/login").into_response());
        };
        let client = state
            .pool
            .get()
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        match tokens::session(&**client, &session).await {
            Ok(Some(caller)) => Ok(Viewer(caller, Csrf::of(&session))),
            Ok(None) => Err(Redirect::to("/ui/login").into_response()),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

/// The session id the browser's cookie holds, if any.
fn session_cookie(headers: &header::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The routes of the web page.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/ui", axum::routing::get(listing))
        .route("/ui/login", axum::routing::get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/runs/{run_id}", axum::routing::get(run_page))
        .route(
            "/ui/imports/new",
            axum::routing::get(builder::form).post(builder::post),
        )
        .route(
            "/ui/imports/{name}",
            axum::routing::get(import_page).post(import_action),
        )
        .route(
            "/ui/imports/{name}/spec.yaml",
            axum::routing::get(builder::download),
        )
        .route(
            "/ui/connections",
            axum::routing::get(connections_page).post(create_connection),
        )
        .route(
            "/ui/connections/{name}",
            axum::routing::post(connection_action),
        )
        .route(
            "/ui/notifications",
            axum::routing::get(notifications::page).post(notifications::mark_read),
        )
        .route("/ui/errors", axum::routing::get(error_stream))
        .route(
            "/ui/runs/{run_id}/errors.csv",
            axum::routing::get(errors_csv),
        )
        .layer(axum::middleware::from_fn(page_headers))
}

/// `; Secure` when the page was reached over HTTPS through a proxy that terminates TLS (it
/// says so in `X-Forwarded-Proto`), so the cookie never travels in clear; nothing on plain
/// HTTP, where a secure cookie would not be sent back.
fn secure_suffix(headers: &header::HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

async fn login_form() -> Html<String> {
    Html(html::login(None))
}

/// The sign-in form's field.
#[derive(Deserialize)]
struct Login {
    token: String,
}

/// True when a form post comes from a page of another site: its `Origin` (or, without one,
/// `Sec-Fetch-Site`) names another host than the one it was sent to. Such posts are refused,
/// so no other site can sign a browser in with a token of its choosing.
fn cross_site(headers: &header::HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !origin_host.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
        (None, _) => {
            text("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none")
        }
    }
}

async fn login(
    State(state): State<ApiState>,
    headers: header::HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            Html(html::login(Some(
                "Sign in from this page, not from another site.",
            ))),
        )
            .into_response();
    }
    let token = form.token.trim().to_string();
    let session = match state.pool.get().await {
        Ok(client) => match tokens::authenticate(&**client, &token).await {
            Ok(Some(caller)) => tokens::open_session(&**client, &caller).await.ok(),
            _ => None,
        },
        Err(_) => None,
    };
    let Some(session) = session else {
        return (
            StatusCode::UNAUTHORIZED,
            Html(html::login(Some("That token is not valid."))),
        )
            .into_response();
    };
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/ui{}",
                secure_suffix(&headers)
            ),
        )],
        Redirect::to("/ui"),
    )
        .into_response()
}

/// Headers every page carries: no script, no framing, no content sniffing, forms only to
/// this site.
async fn page_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

/// The listing's run filters, from the form on the page.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    pub status: Option<String>,
    pub creator: Option<String>,
    /// `YYYY-MM-DD`: runs created that day or later.
    pub from: Option<String>,
    /// `YYYY-MM-DD`: runs created that day or earlier.
    pub to: Option<String>,
    /// The page of runs, from 0.
    #[serde(default)]
    pub page: u32,
}

impl Filters {
    fn date(
        &self,
        value: &Option<String>,
        field: &str,
    ) -> Result<Option<chrono::NaiveDate>, ApiError> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    ApiError::invalid(field, format!("{v:?} is not a date like 2026-11-23"))
                }),
        }
    }

    fn text(value: &Option<String>) -> Option<String> {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
}

/// One import's line in the listing.
pub struct ImportLine {
    pub name: String,
    pub data_type: String,
    pub state: String,
    pub schedule: Option<String>,
    /// The last 10 finished runs' mean score: 1 for a success, the accepted share of its
    /// rows for a partial success, 0 for a failure.
    pub health: Option<f64>,
    /// Succeeded (or partially succeeded) share of the finished runs of the last 30 days.
    pub success_30d: Option<f64>,
    /// The last 20 finished runs, oldest first: (status, rows read, rows rejected).
    pub recent: Vec<(String, i64, i64)>,
    pub last_run: Option<(Uuid, String, chrono::DateTime<chrono::Utc>)>,
    pub next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One run's line in the listing.
pub struct RunLine {
    pub run_id: Uuid,
    pub import: String,
    pub status: String,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub dry_run: bool,
    /// Rejected rows by reason code.
    pub rejected: std::collections::BTreeMap<String, i64>,
    /// Rows read from the source.
    pub rows_read: i64,
    /// How long it ran, once it ended.
    pub duration_ms: Option<i64>,
}

/// Runs per page of the listing.
pub const RUNS_PER_PAGE: i64 = 50;

impl ImportLine {
    /// The mean score of the last 10 finished runs: a partial success counts for the share
    /// of its rows that were not rejected, so many rejections are not healthy.
    fn health_of(recent: &[(String, i64, i64)]) -> Option<f64> {
        let last: Vec<f64> = recent
            .iter()
            .rev()
            .take(10)
            .map(|(status, read, rejected)| match status.as_str() {
                "succeeded" => 1.0,
                "partially_succeeded" if *read > 0 => {
                    (1.0 - *rejected as f64 / *read as f64).clamp(0.0, 1.0)
                }
                "partially_succeeded" => 1.0,
                _ => 0.0,
            })
            .collect();
        (!last.is_empty()).then(|| last.iter().sum::<f64>() / last.len() as f64)
    }
}

const IMPORTS: &str = "SELECT i.name, i.data_type, i.state, i.spec->'schedule', i.next_fire_at,
        (SELECT avg(CASE WHEN r.status IN ('succeeded', 'partially_succeeded') THEN 1.0 ELSE 0.0 END)::float8
           FROM control.runs r
          WHERE r.import_id = i.id AND r.finished_at IS NOT NULL AND NOT r.dry_run
            AND r.created_at > now() - interval '30 days'),
        l.id, l.status, l.created_at,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(x.status, x.read, x.rejected) ORDER BY x.created_at), '[]')
           FROM (SELECT r.status, r.created_at,
                        (SELECT coalesce(sum(c.rows_read) FILTER (WHERE c.kind = 'rows'), 0)
                           FROM control.chunks c WHERE c.run_id = r.id) AS read,
                        (SELECT coalesce(sum(c.rows_rejected + c.rows_rejected_load), 0)
                           FROM control.chunks c WHERE c.run_id = r.id) + r.rows_without_key AS rejected
                   FROM control.runs r
                  WHERE r.import_id = i.id AND r.finished_at IS NOT NULL AND NOT r.dry_run
                  ORDER BY r.created_at DESC LIMIT 20) x)
   FROM control.imports i
   LEFT JOIN LATERAL (SELECT id, status, created_at FROM control.runs
                       WHERE import_id = i.id ORDER BY created_at DESC LIMIT 1) l ON true
  WHERE i.workspace_id = $1
  ORDER BY i.name";

const RUNS: &str = "SELECT r.id, i.name, r.status, r.requested_by, r.created_at, r.dry_run,
        (SELECT jsonb_object_agg(code, n) FROM (
            SELECT e.key AS code, sum(e.value::int8) AS n
              FROM control.chunks c
             CROSS JOIN LATERAL (SELECT * FROM jsonb_each_text(c.rejected_by_reason)
                                 UNION ALL
                                 SELECT * FROM jsonb_each_text(c.load_rejected_by_reason)) e
             WHERE c.run_id = r.id GROUP BY e.key) x),
        (SELECT coalesce(sum(c.rows_read) FILTER (WHERE c.kind = 'rows'), 0)::int8
           FROM control.chunks c WHERE c.run_id = r.id),
        (extract(epoch FROM (r.finished_at - r.created_at)) * 1000)::int8
   FROM control.runs r JOIN control.imports i ON i.id = r.import_id
  WHERE r.workspace_id = $1
    AND ($2::text IS NULL OR r.status = $2)
    AND ($3::text IS NULL OR r.requested_by = $3)
    AND ($4::date IS NULL OR r.created_at >= $4::date)
    AND ($5::date IS NULL OR r.created_at < $5::date + 1)
  ORDER BY r.created_at DESC
  LIMIT $6 OFFSET $7";

/// The sign-out form's field.
#[derive(Deserialize)]
struct SignOut {
    csrf: String,
}

/// Ends the browser's session and forgets its cookie.
async fn logout(
    State(state): State<ApiState>,
    Viewer(_, csrf): Viewer,
    headers: header::HeaderMap,
    Form(form): Form<SignOut>,
) -> Result<Response, ApiError> {
    check_form(&headers, &csrf, &form.csrf)?;
    if let Some(session) = session_cookie(&headers) {
        let client = state.pool.get().await?;
        tokens::close_session(&**client, &session).await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}",
                secure_suffix(&headers)
            ),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response())
}

async fn listing(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    Query(filters): Query<Filters>,
) -> Result<Html<String>, ApiError> {
    let from = filters.date(&filters.from, "from")?;
    let to = filters.date(&filters.to, "to")?;
    let client = state.pool.get().await?;
    let imports = client
        .query(IMPORTS, &[&caller.workspace_id])
        .await?
        .iter()
        .map(|r| ImportLine {
            name: r.get(0),
            data_type: r.get(1),
            state: r.get(2),
            schedule: r
                .get::<_, Option<serde_json::Value>>(3)
                .filter(|s| !s.is_null())
                .map(|s| html::schedule_text(&s)),
            next_fire_at: r.get(4),
            success_30d: r.get(5),
            last_run: r
                .get::<_, Option<Uuid>>(6)
                .map(|id| (id, r.get(7), r.get(8))),
            recent: serde_json::from_value(r.get(9)).unwrap_or_default(),
            health: None,
        })
        .map(|mut line| {
            line.health = ImportLine::health_of(&line.recent);
            line
        })
        .collect::<Vec<_>>();
    let runs = client
        .query(
            RUNS,
            &[
                &caller.workspace_id,
                &Filters::text(&filters.status),
                &Filters::text(&filters.creator),
                &from,
                &to,
                &(RUNS_PER_PAGE + 1),
                &(i64::from(filters.page) * RUNS_PER_PAGE),
            ],
        )
        .await?
        .iter()
        .map(|r| RunLine {
            run_id: r.get(0),
            import: r.get(1),
            status: r.get(2),
            created_by: r.get(3),
            created_at: r.get(4),
            dry_run: r.get(5),
            rejected: r
                .get::<_, Option<serde_json::Value>>(6)
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            rows_read: r.get(7),
            duration_ms: r.get(8),
        })
        .collect::<Vec<_>>();
    let unread = crate::feed::unread(&**client, caller.workspace_id, caller.token_id).await?;
    Ok(Html(html::listing(
        unread,
        &caller.workspace,
        &imports,
        &runs,
        &filters,
        &csrf.0,
        caller.role >= tokens::Role::Operator,
    )))
}

/// A run page's address after the page requested the run.
#[derive(Deserialize)]
struct RunPageQuery {
    /// Set when the page itself requested the run: until a coordinator records it, the page
    /// waits for it instead of answering that there is no such run.
    #[serde(default)]
    requested: bool,
}

async fn run_page(
    State(state): State<ApiState>,
    Viewer(caller, _): Viewer,
    Path(run_id): Path<Uuid>,
    Query(query): Query<RunPageQuery>,
) -> Result<Html<String>, ApiError> {
    let client = state.pool.get().await?;
    let found = crate::runs::summary(&**client, run_id).await?;
    let summary = match found {
        Some(s) if s.workspace == caller.workspace => s,
        None if query.requested => return Ok(Html(html::requested(run_id))),
        _ => {
            return Err(ApiError::not_found(format!(
                "no run {run_id} in this workspace"
            )))
        }
    };
    let errors = crate::errors::list(&**client, run_id, 100, 0).await?;
    Ok(Html(html::run(&summary, &errors)))
}

/// The workspace's error stream: a window's rejected rows across runs, with its counts.
async fn error_stream(
    State(state): State<ApiState>,
    Viewer(caller, _): Viewer,
    Query(query): Query<super::errors::ErrorQuery>,
) -> Result<Html<String>, ApiError> {
    let page = super::service::Service::new(&state, caller)
        .error_stream(&query)
        .await?;
    Ok(Html(html::error_stream(&page, &query)))
}

async fn errors_csv(
    State(state): State<ApiState>,
    Viewer(caller, _): Viewer,
    Path(run_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    super::runs::errors_csv(State(state), caller, Path(run_id))
        .await
        .map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_weighs_a_partial_success_by_its_rejected_share() {
        let run = |status: &str, read, rejected| (status.to_string(), read, rejected);
        assert_eq!(ImportLine::health_of(&[]), None);
        let clean = [run("succeeded", 100, 0), run("partially_succeeded", 100, 1)];
        assert!((ImportLine::health_of(&clean).unwrap() - 0.995).abs() < 1e-9);
        let mostly_rejected = [run("partially_succeeded", 100, 90), run("failed", 0, 0)];
        assert!((ImportLine::health_of(&mostly_rejected).unwrap() - 0.05).abs() < 1e-9);
        let mut many = vec![run("failed", 0, 0); 5];
        many.extend(vec![run("succeeded", 10, 0); 10]);
        assert_eq!(ImportLine::health_of(&many), Some(1.0), "the last 10 only");
    }

    #[test]
    fn a_database_connection_is_made_from_its_fields() {
        let form = |kind: &str, port: &str, password: &str| NewConnection {
            csrf: String::new(),
            name: "crm".into(),
            kind: kind.into(),
            url: String::new(),
            host: "db.example.com".into(),
            port: port.into(),
            database: "crm".into(),
            user: "loader".into(),
            password: password.into(),
            ssh_host: String::new(),
            ssh_port: String::new(),
            ssh_user: String::new(),
        };
        assert_eq!(
            form("postgres", "", "p@ss word/1").url().unwrap(),
            "postgres://loader:p%40ss%20word%2F1@db.example.com:5432/crm"
        );
        assert_eq!(
            form("redshift", "", "").url().unwrap(),
            "postgres://loader@db.example.com:5439/crm"
        );
        assert_eq!(
            form("mysql", "3307", "x").url().unwrap(),
            "mysql://loader:x@db.example.com:3307/crm"
        );
        assert_eq!(
            form("mysql", "many", "x")
                .url()
                .unwrap_err()
                .body
                .field
                .as_deref(),
            Some("port")
        );
        assert_eq!(
            form("snowflake", "", "x")
                .url()
                .unwrap_err()
                .body
                .field
                .as_deref(),
            Some("url")
        );
        let mut given = form("postgres", "", "x");
        given.url = "postgres://other@h/db".into();
        assert_eq!(given.url().unwrap(), "postgres://other@h/db");
        assert_eq!(given.ssh().unwrap(), None);
        given.ssh_host = "bastion.example.com".into();
        assert_eq!(given.ssh().unwrap_err().body.field.as_deref(), Some("ssh"));
        given.ssh_user = "sluice".into();
        let ssh = given.ssh().unwrap().unwrap();
        assert_eq!(
            (ssh.host.as_str(), ssh.port, ssh.user.as_str()),
            ("bastion.example.com", 22, "sluice")
        );
        given.ssh_port = "22x".into();
        assert_eq!(
            given.ssh().unwrap_err().body.field.as_deref(),
            Some("ssh.port")
        );
    }

    #[test]
    fn the_cookie_is_secure_only_behind_https() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(secure_suffix(&headers), "");
        headers.insert("x-forwarded-proto", "http".parse().unwrap());
        assert_eq!(secure_suffix(&headers), "");
        headers.insert("x-forwarded-proto", "HTTPS".parse().unwrap());
        assert_eq!(secure_suffix(&headers), "; Secure");
    }
}

/// An import's page.
async fn import_page(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let can_operate = caller.role >= tokens::Role::Operator;
    let service = crate::api::service::Service::new(&state, caller);
    let page = import_html(&service, &name, &csrf, can_operate, None, None).await?;
    Ok(Html(page))
}

/// An import's page with its last 10 runs (who requested each and when), the refusal of
/// the last action and a confirmation waiting, if any.
async fn import_html(
    service: &crate::api::service::Service,
    name: &str,
    csrf: &Csrf,
    can_operate: bool,
    problem: Option<&str>,
    confirm: Option<(&str, Option<chrono::DateTime<chrono::Utc>>)>,
) -> Result<String, ApiError> {
    let view = service.show_import(name).await?;
    let filter = super::runs::RunFilter {
        import: Some(name.to_string()),
        page: Some(1),
        per_page: Some(10),
        ..Default::default()
    };
    let runs = service.list_runs(&filter).await?.runs;
    let confirm = confirm.map(|(action, to)| confirmation(&view, action, to));
    Ok(html::import(
        &view,
        &runs,
        &csrf.0,
        can_operate,
        problem,
        confirm,
    ))
}

/// An action's form on an import's page.
#[derive(Deserialize)]
struct Action {
    action: String,
    csrf: String,
    /// A replay's window start.
    #[serde(default)]
    from: String,
    /// A replay's window end.
    #[serde(default)]
    until: String,
    /// A rewind's instant.
    #[serde(default)]
    to: String,
    /// `yes` once a resync or rewind has been confirmed.
    #[serde(default)]
    confirm: String,
}

/// An instant typed in a form: RFC 3339, or a date-time (a date alone) read in UTC.
fn instant(field: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("{text:?} is not a time like 2026-12-01T06:00:00Z"),
        )),
    }
}

/// What a resync or rewind will make the next run read again, in words.
fn confirmation(
    view: &crate::imports::ImportView,
    action: &str,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> html::Confirm {
    let spec: Option<crate::spec::ImportDecl> = serde_json::from_value(view.spec.clone()).ok();
    let source = spec.as_ref().map_or_else(
        || "the source".to_string(),
        |s| match &s.source {
            sluice_proto::SourceRelation::Table(t) => format!("table {t}"),
            sluice_proto::SourceRelation::Query(_) => "the source query".to_string(),
        },
    );
    let column = spec.as_ref().map_or("watermark", |s| s.watermark.as_str());
    let now = view.watermark.as_deref().unwrap_or("the start");
    match (action, to) {
        ("rewind", Some(to)) => {
            let to = to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            html::Confirm {
                action: "rewind",
                text: format!(
                    "Rewind moves the watermark of {} from {now} back to just before {to}: the next run reads again every row of {source} whose {column} is at or after {to}.",
                    view.name
                ),
                to,
            }
        }
        _ => html::Confirm {
            action: "resync",
            text: format!(
                "Resync forgets the watermark of {} ({now}): the next run reads every row of {source} from its start; profiles merge as usual and events already imported are not imported twice.",
                view.name
            ),
            to: String::new(),
        },
    }
}

/// Runs an action of an import's page through the same service as `/v1` (which refuses what
/// the caller's role does not allow): a run or dry run opens its run's page, the others come
/// back to the import's page; a refused action shows why there.
async fn import_action(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    Path(name): Path<String>,
    headers: header::HeaderMap,
    Form(form): Form<Action>,
) -> Result<Response, ApiError> {
    check_form(&headers, &csrf, &form.csrf)?;
    let can_operate = caller.role >= tokens::Role::Operator;
    let service = crate::api::service::Service::new(&state, caller);
    let done = match form.action.as_str() {
        "run" | "dry_run" => service
            .trigger(&name, form.action == "dry_run", None, None)
            .await
            .map(|run| Some(format!("/ui/runs/{}?requested=true", run.run_id))),
        "pause" | "resume" => service
            .set_paused(&name, form.action == "pause")
            .await
            .map(|_| None),
        "stop" => service.stop(&name).await.map(|_| None),
        "replay" => match (instant("from", &form.from), instant("until", &form.until)) {
            (Ok(from), Ok(until)) => service
                .replay(&name, from, until)
                .await
                .map(|run| Some(format!("/ui/runs/{}?requested=true", run.run_id))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "resync" | "rewind" => {
            let to = match form.action.as_str() {
                "rewind" => match instant("to", &form.to) {
                    Ok(to) => Some(to),
                    Err(e) => return refused(&service, &name, &csrf, can_operate, e).await,
                },
                _ => None,
            };
            if form.confirm != "yes" {
                service.require(tokens::Role::Admin)?;
                let confirm = Some((form.action.as_str(), to));
                let page = import_html(&service, &name, &csrf, can_operate, None, confirm).await?;
                return Ok(Html(page).into_response());
            }
            match to {
                Some(to) => service.rewind(&name, to).await.map(|_| None),
                None => service.resync(&name).await.map(|_| None),
            }
        }
        other => Err(ApiError::invalid(
            "action",
            format!("unknown action {other:?}; one of run, dry_run, pause, resume, stop, replay, resync, rewind"),
        )),
    };
    match done {
        Ok(Some(to)) => Ok(Redirect::to(&to).into_response()),
        Ok(None) => Ok(Redirect::to(&format!("/ui/imports/{name}")).into_response()),
        Err(e) => refused(&service, &name, &csrf, can_operate, e).await,
    }
}

/// An import's page showing why an action was refused; a refusal of the caller's role is
/// the API's own answer.
async fn refused(
    service: &crate::api::service::Service,
    name: &str,
    csrf: &Csrf,
    can_operate: bool,
    e: ApiError,
) -> Result<Response, ApiError> {
    if e.status == StatusCode::FORBIDDEN {
        return Err(e);
    }
    let problem = Some(e.body.message.as_str());
    let page = import_html(service, name, csrf, can_operate, problem, None).await?;
    Ok((e.status, Html(page)).into_response())
}

/// Refuses a form posted from another site or without the session's token.
fn check_form(headers: &header::HeaderMap, csrf: &Csrf, token: &str) -> Result<(), ApiError> {
    match cross_site(headers) || !csrf.accepts(token) {
        true => Err(ApiError::forged_form()),
        false => Ok(()),
    }
}

/// The connections page with `tested` (a connection's name and its test) and `notice`.
async fn render_connections(
    service: &crate::api::service::Service,
    csrf: &Csrf,
    tested: Option<(&str, html::TestShown)>,
    notice: html::ConnectionsNotice<'_>,
) -> Result<String, ApiError> {
    let mut tested = tested;
    let rows = service
        .list_connections()
        .await?
        .iter()
        .map(|c| {
            let test = match &tested {
                Some((name, _)) if *name == c.name => tested.take().map(|(_, t)| t),
                _ => None,
            };
            html::ConnectionRow::new(c, test)
        })
        .collect();
    Ok(html::connections(
        &service.caller.workspace,
        rows,
        service.caller.role,
        &csrf.0,
        notice,
    ))
}

/// The workspace's connections.
async fn connections_page(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
) -> Result<Html<String>, ApiError> {
    let service = crate::api::service::Service::new(&state, caller);
    let page = render_connections(&service, &csrf, None, Default::default()).await?;
    Ok(Html(page))
}

/// The new-connection form: a URL, or (for database kinds) its parts.
#[derive(Deserialize)]
struct NewConnection {
    csrf: String,
    name: String,
    kind: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    database: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    ssh_host: String,
    #[serde(default)]
    ssh_port: String,
    #[serde(default)]
    ssh_user: String,
}

impl NewConnection {
    /// The bastion the form names, when it names one.
    fn ssh(&self) -> Result<Option<crate::spec::SshDecl>, ApiError> {
        let (host, user) = (self.ssh_host.trim(), self.ssh_user.trim());
        if host.is_empty() && user.is_empty() {
            return Ok(None);
        }
        if host.is_empty() || user.is_empty() {
            return Err(ApiError::invalid(
                "ssh",
                "give the bastion's host and the user its key is for",
            ));
        }
        let port = match self.ssh_port.trim() {
            "" => 22,
            given => given.parse::<u16>().map_err(|_| {
                ApiError::invalid("ssh.port", format!("{given:?} is not a port number"))
            })?,
        };
        Ok(Some(crate::spec::SshDecl {
            host: host.to_string(),
            port,
            user: user.to_string(),
        }))
    }

    /// The URL given, or the one the database fields make (user and password
    /// percent-encoded; the kind's default port when none is given).
    fn url(&self) -> Result<String, ApiError> {
        if !self.url.trim().is_empty() || self.host.trim().is_empty() {
            return Ok(self.url.trim().to_string());
        }
        let (scheme, port) = match self.kind.trim() {
            "postgres" => ("postgres", "5432"),
            "redshift" => ("postgres", "5439"),
            "mysql" => ("mysql", "3306"),
            other => {
                return Err(ApiError::invalid(
                    "url",
                    format!("a {other} connection is given by its URL"),
                ))
            }
        };
        let port = match self.port.trim() {
            "" => port,
            given if given.parse::<u16>().is_ok() => given,
            given => {
                return Err(ApiError::invalid(
                    "port",
                    format!("{given:?} is not a port number"),
                ))
            }
        };
        if self.database.trim().is_empty() || self.user.trim().is_empty() {
            return Err(ApiError::invalid(
                "database",
                "give the database and the user with the host",
            ));
        }
        let encode = |text: &str| {
            url::form_urlencoded::byte_serialize(text.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        };
        let password = match self.password.is_empty() {
            true => String::new(),
            false => format!(":{}", encode(&self.password)),
        };
        Ok(format!(
            "{scheme}://{}{password}@{}:{port}/{}",
            encode(self.user.trim()),
            self.host.trim(),
            encode(self.database.trim())
        ))
    }
}

/// Tests and saves a connection from the page (admins), as `PUT /v1/connections/{name}`; a
/// refused one is shown with why, its name and kind kept and its URL never sent back.
async fn create_connection(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    headers: header::HeaderMap,
    Form(form): Form<NewConnection>,
) -> Result<Response, ApiError> {
    check_form(&headers, &csrf, &form.csrf)?;
    let service = crate::api::service::Service::new(&state, caller);
    let kind = sluice_proto::ConnectionKind::new(form.kind.trim());
    let put = match (form.url(), form.ssh()) {
        (Ok(url), Ok(ssh)) => {
            service
                .put_connection(form.name.trim(), kind, url, ssh)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match put {
        Ok(_) => Ok(Redirect::to("/ui/connections").into_response()),
        Err(e) if e.status == StatusCode::FORBIDDEN => Err(e),
        Err(e) => {
            let problem = match &e.body.field {
                Some(field) => format!("{field}: {}", e.body.message),
                None => e.body.message.clone(),
            };
            let notice = html::ConnectionsNotice {
                problem: Some(&problem),
                draft: (form.name.trim(), form.kind.trim()),
                draft_fields: [
                    form.host.trim(),
                    form.port.trim(),
                    form.database.trim(),
                    form.user.trim(),
                ],
                draft_ssh: [
                    form.ssh_host.trim(),
                    form.ssh_port.trim(),
                    form.ssh_user.trim(),
                ],
                ..Default::default()
            };
            let page = render_connections(&service, &csrf, None, notice).await?;
            Ok((e.status, Html(page)).into_response())
        }
    }
}

/// Tests a connection (operators), makes a Snowflake or SSH key pair or deletes one (admins), and
/// shows the page with the outcome.
async fn connection_action(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    Path(name): Path<String>,
    headers: header::HeaderMap,
    Form(form): Form<Action>,
) -> Result<Response, ApiError> {
    check_form(&headers, &csrf, &form.csrf)?;
    let service = crate::api::service::Service::new(&state, caller);
    let (status, page) = match form.action.as_str() {
        "test" => {
            let result = service.test_connection(&name, false).await?;
            let shown = html::TestShown::of(&result);
            let page =
                render_connections(&service, &csrf, Some((&name, shown)), Default::default())
                    .await?;
            (StatusCode::OK, page)
        }
        "keygen" => {
            let pair = service.keygen(&name).await?;
            let notice = html::ConnectionsNotice {
                statement: Some(&pair.statement),
                ..Default::default()
            };
            (
                StatusCode::OK,
                render_connections(&service, &csrf, None, notice).await?,
            )
        }
        "ssh-keygen" => {
            let key = service.keygen_ssh(&name).await?;
            let notice = html::ConnectionsNotice {
                ssh_key: Some((&key.public_key, &key.bastion)),
                ..Default::default()
            };
            (
                StatusCode::OK,
                render_connections(&service, &csrf, None, notice).await?,
            )
        }
        "delete" => match service.delete_connection(&name).await {
            Ok(()) => {
                let note = format!("connection {name} deleted");
                let notice = html::ConnectionsNotice {
                    note: Some(&note),
                    ..Default::default()
                };
                (
                    StatusCode::OK,
                    render_connections(&service, &csrf, None, notice).await?,
                )
            }
            Err(e) if e.status == StatusCode::FORBIDDEN => return Err(e),
            Err(e) => {
                let notice = html::ConnectionsNotice {
                    problem: Some(&e.body.message),
                    ..Default::default()
                };
                (
                    e.status,
                    render_connections(&service, &csrf, None, notice).await?,
                )
            }
        },
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("unknown action {other:?}; one of test, keygen, ssh-keygen, delete"),
            ))
        }
    };
    Ok((status, Html(page)).into_response())
}

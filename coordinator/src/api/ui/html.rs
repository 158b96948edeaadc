//! The pages' HTML: askama templates (`coordinator/templates/`), checked when the crate is
//! compiled and escaping every value; this module gives each page its values, formatted.

use super::{Filters, ImportLine, RunLine};
use crate::api::errors::{ErrorQuery, ErrorStreamPage};
use crate::errors::RunError;
use crate::runs::RunSummary;
use askama::Template;

/// A page as served: its template rendered, or a line saying it could not be (never expected:
/// the templates are checked when the crate is compiled).
pub(super) fn render(page: impl Template) -> String {
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering a page");
        "the page could not be rendered; the coordinator's log says why".to_string()
    })
}

/// A schedule as people read it: its cron expression or interval, and timezone.
pub fn schedule_text(schedule: &serde_json::Value) -> String {
    let what = ["cron", "every", "interval"]
        .iter()
        .find_map(|k| {
            schedule
                .get(k)
                .and_then(|v| v.as_str())
                .map(|v| format!("{k} {v}"))
        })
        .unwrap_or_else(|| schedule.to_string());
    match schedule.get("timezone").and_then(|v| v.as_str()) {
        Some(tz) => format!("{what} ({tz})"),
        None => what,
    }
}

/// A time as the pages show it: ISO-8601 in UTC, with its zone.
pub(super) fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The sign-in form.
#[derive(Template)]
#[template(path = "login.html")]
struct Login<'a> {
    title: &'a str,
    refresh: bool,
    problem: Option<&'a str>,
}

/// The sign-in form, with why the last attempt failed.
pub fn login(problem: Option<&str>) -> String {
    render(Login {
        title: "Sign in",
        refresh: false,
        problem,
    })
}

/// A run an import's line links to.
struct LastRun {
    run_id: String,
    status: String,
    at: String,
}

/// An import's line in the listing, formatted.
struct ImportRow {
    name: String,
    data_type: String,
    state: String,
    schedule: String,
    health: String,
    success_30d: String,
    chart: Option<Chart>,
    last_run: Option<LastRun>,
    next_run: String,
}

/// Rows read per run as bars, drawn on the server as SVG.
struct Chart {
    width: usize,
    height: usize,
    bars: Vec<Bar>,
}

/// One run's bar.
struct Bar {
    x: usize,
    y: usize,
    height: usize,
    status: String,
    title: String,
}

/// Bar width and chart height, in pixels.
const BAR: usize = 6;
const CHART_HEIGHT: usize = 24;

/// The rows each run read, oldest first, one bar per run coloured by its status.
fn chart(recent: &[(String, i64, i64)]) -> Option<Chart> {
    let most = recent.iter().map(|(_, read, _)| *read).max()?.max(1);
    let bars = recent
        .iter()
        .enumerate()
        .map(|(i, (status, read, rejected))| {
            let height = ((*read as f64 / most as f64) * CHART_HEIGHT as f64).ceil() as usize;
            let height = height.max(1);
            Bar {
                x: i * BAR,
                y: CHART_HEIGHT - height,
                height,
                status: status.clone(),
                title: format!("{read} rows read, {rejected} rejected: {status}"),
            }
        })
        .collect();
    Some(Chart {
        width: recent.len() * BAR,
        height: CHART_HEIGHT,
        bars,
    })
}

fn share(value: Option<f64>) -> String {
    value
        .map(|h| format!("{:.0}%", h * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// A rejected-rows count linking to the error stream.
struct ReasonLink {
    reason: String,
    rows: i64,
    /// The error stream's query string for the run's import and reason.
    query: String,
}

/// A run's line in the listing, formatted.
struct RunRow {
    run_id: String,
    dry_run: bool,
    import: String,
    status: String,
    created_by: String,
    created: String,
    rows_read: i64,
    duration: String,
    rejected: Vec<ReasonLink>,
}

/// The import listing and the filtered runs.
#[derive(Template)]
#[template(path = "listing.html")]
struct Listing<'a> {
    title: &'a str,
    refresh: bool,
    workspace: &'a str,
    imports: Vec<ImportRow>,
    statuses: Vec<String>,
    status: Option<&'a str>,
    creator: &'a str,
    from: &'a str,
    to: &'a str,
    runs: Vec<RunRow>,
    csrf: &'a str,
    /// Whether the caller may open the import builder.
    can_build: bool,
    /// Events the signed-in token has not marked read.
    unread: i64,
    /// The query strings of the previous and next pages of runs.
    previous_page: Option<String>,
    next_page: Option<String>,
}

fn import_row(i: &ImportLine) -> ImportRow {
    ImportRow {
        name: i.name.clone(),
        data_type: i.data_type.clone(),
        state: i.state.clone(),
        schedule: i.schedule.clone().unwrap_or_else(|| "manual".into()),
        health: share(i.health),
        success_30d: share(i.success_30d),
        chart: chart(&i.recent),
        last_run: i.last_run.as_ref().map(|(id, status, at)| LastRun {
            run_id: id.to_string(),
            status: status.clone(),
            at: time(at),
        }),
        next_run: i
            .next_fire_at
            .as_ref()
            .map(time)
            .unwrap_or_else(|| "–".into()),
    }
}

fn run_row(r: &RunLine) -> RunRow {
    let since = r
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    RunRow {
        run_id: r.run_id.to_string(),
        dry_run: r.dry_run,
        import: r.import.clone(),
        status: r.status.clone(),
        created_by: r.created_by.clone(),
        created: time(&r.created_at),
        rows_read: r.rows_read,
        duration: r
            .duration_ms
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "–".into()),
        rejected: r
            .rejected
            .iter()
            .map(|(reason, n)| ReasonLink {
                reason: reason.clone(),
                rows: *n,
                query: url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("import", &r.import)
                    .append_pair("reason", reason)
                    .append_pair("from", &since)
                    .finish(),
            })
            .collect(),
    }
}

/// The import listing and the filtered runs.
pub fn listing(
    unread: i64,
    workspace: &str,
    imports: &[ImportLine],
    runs: &[RunLine],
    filters: &Filters,
    csrf: &str,
    can_build: bool,
) -> String {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (creator, from, to) = (
        text(&filters.creator),
        text(&filters.from),
        text(&filters.to),
    );
    let page_query = |page: u32| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &filters.status),
            ("creator", &filters.creator),
            ("from", &filters.from),
            ("to", &filters.to),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(name, value);
            }
        }
        query.append_pair("page", &page.to_string());
        query.finish()
    };
    let more = runs.len() as i64 > super::RUNS_PER_PAGE;
    let runs = &runs[..runs.len().min(super::RUNS_PER_PAGE as usize)];
    render(Listing {
        can_build,
        unread,
        previous_page: (filters.page > 0).then(|| page_query(filters.page - 1)),
        next_page: more.then(|| page_query(filters.page + 1)),
        title: "Imports",
        refresh: false,
        workspace,
        imports: imports.iter().map(import_row).collect(),
        statuses: crate::runs::status::ALL
            .iter()
            .map(|s| s.to_string())
            .collect(),
        status: filters.status.as_deref().filter(|s| !s.is_empty()),
        creator: &creator,
        from: &from,
        to: &to,
        runs: runs.iter().map(run_row).collect(),
        csrf,
    })
}

/// One run: stats, chunk progress, errors with their reasons and the CSV link.
#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    title: String,
    refresh: bool,
    s: &'a RunSummary,
    chunks_max: i32,
    error_code: &'a str,
    stats: Vec<(&'static str, i64)>,
    duration: Option<String>,
    errors: &'a [RunError],
    hint: &'static str,
    sample: Vec<SampleShown>,
    created: String,
    finished: String,
}

/// A dry run's sample row, formatted.
struct SampleShown {
    row_key: String,
    outcome: String,
    identity: String,
    profile: String,
    properties: String,
    stale: String,
}

/// A dry run's sample rows as the run page lists them, properties cut to 160 characters.
fn sample_rows(s: &RunSummary) -> Vec<SampleShown> {
    s.sample
        .iter()
        .map(|r| {
            let mut properties = r.properties.to_string();
            if properties.chars().count() > 160 {
                properties = properties.chars().take(159).collect::<String>() + "…";
            }
            SampleShown {
                row_key: r.row_key.clone(),
                outcome: r.outcome.clone(),
                identity: match (&r.identity_kind, &r.identity_value) {
                    (Some(k), Some(v)) => format!("{k} {v}"),
                    _ => "–".into(),
                },
                profile: r.profile_id.map_or("–".into(), |p| p.to_string()),
                properties,
                stale: r.stale_properties.join(", "),
            }
        })
        .collect()
}

/// The run's counts as the page lists them.
fn run_stats(s: &RunSummary) -> Vec<(&'static str, i64)> {
    let applies = |name: &str| match s.data_type.as_str() {
        "profiles" => !matches!(
            name,
            "events inserted"
                | "duplicate events"
                | "events stamped with the run's start"
                | "profiles deleted"
                | "profiles not found"
        ),
        "events" | "purchases" => !matches!(
            name,
            "profiles updated"
                | "profiles unchanged"
                | "stale values"
                | "profiles deleted"
                | "profiles not found"
                | "profiles removed from the source"
                | "subscription changes"
                | "stale subscription statuses"
        ),
        "user_deletes" => !matches!(
            name,
            "profiles created"
                | "profiles updated"
                | "profiles unchanged"
                | "stale values"
                | "conflicting identities"
                | "events inserted"
                | "duplicate events"
                | "events stamped with the run's start"
                | "profiles removed from the source"
                | "subscription changes"
                | "stale subscription statuses"
                | "rejected rows read again"
                | "rejected rows recovered"
                | "rejected rows dropped (retried too long)"
        ),
        _ => true,
    };
    // A run to a destination counts what the platform accepted; the stores' counts are
    // not its own, and a run to the stores delivers nothing.
    let delivered = |name: &str| match s.destination.is_some() {
        true => !matches!(
            name,
            "profiles created"
                | "profiles updated"
                | "profiles unchanged"
                | "stale values"
                | "conflicting identities"
                | "rows skipped"
                | "events inserted"
                | "profiles deleted"
                | "profiles not found"
        ),
        false => !matches!(name, "records delivered" | "requests sent"),
    };
    let mut stats = all_stats(s);
    stats.retain(|(name, _)| applies(name) && delivered(name));
    stats
}

/// Every stat a run has, by the name the page shows.
fn all_stats(s: &RunSummary) -> Vec<(&'static str, i64)> {
    vec![
        ("rows read", s.rows_read),
        ("rows rejected", s.rows_rejected),
        ("rows loaded", s.rows_loaded),
        ("records delivered", s.records_delivered),
        ("requests sent", s.delivery_requests),
        ("rejected rows read again", s.rows_retried),
        ("rejected rows recovered", s.rows_recovered),
        (
            "rejected rows dropped (retried too long)",
            s.rows_retry_expired,
        ),
        ("profiles created", s.profiles_created),
        ("profiles updated", s.profiles_updated),
        ("profiles unchanged", s.profiles_unchanged),
        ("stale values", s.properties_stale),
        ("conflicting identities", s.identities_conflicting),
        ("rows skipped", s.rows_skipped),
        ("events inserted", s.events_inserted),
        ("duplicate events", s.events_duplicate),
        ("events stamped with the run's start", s.events_time_imputed),
        ("profiles deleted", s.profiles_deleted),
        ("profiles not found", s.deletes_not_found),
        (
            "profiles removed from the source",
            s.profiles_removed_from_source,
        ),
        ("rows held back (future)", s.rows_held_back_future),
        ("rows without a watermark", s.rows_without_watermark),
        ("rows without a key", s.rows_without_key),
        (
            "subscription changes",
            s.subscriptions_changed
                .values()
                .flat_map(|m| m.values())
                .sum(),
        ),
        ("stale subscription statuses", s.subscriptions_stale),
    ]
}

/// One run's page; it refreshes itself while the run is active.
pub fn run(s: &RunSummary, errors: &[RunError]) -> String {
    render(RunPage {
        title: format!("Run {}", s.run_id),
        refresh: matches!(s.status.as_str(), "queued" | "planning" | "running"),
        s,
        chunks_max: s.chunks.max(1),
        error_code: s.error_code.as_deref().unwrap_or("error"),
        stats: run_stats(s),
        duration: s.duration_ms.map(|ms| format!("{:.1}", ms as f64 / 1000.0)),
        errors,
        hint: s.error_code.as_deref().map(error_hint).unwrap_or(""),
        sample: sample_rows(s),
        created: s.created_at.as_ref().map(time).unwrap_or_default(),
        finished: s
            .finished_at
            .as_ref()
            .map(time)
            .unwrap_or_else(|| "–".into()),
    })
}

/// A run just requested from the page, before a coordinator has recorded it.
#[derive(Template)]
#[template(path = "requested.html")]
struct Requested<'a> {
    title: &'a str,
    refresh: bool,
    run_id: uuid::Uuid,
}

/// The page of a run requested but not yet recorded; it refreshes itself until it is.
pub fn requested(run_id: uuid::Uuid) -> String {
    render(Requested {
        title: "Run requested",
        refresh: true,
        run_id,
    })
}

/// A connection test's result as its row shows it.
pub struct TestShown {
    class: &'static str,
    outcome: String,
    message: String,
    hint: &'static str,
}

/// What to check for each class of error, a failed connection test's or a failed run's.
fn error_hint(code: &str) -> &'static str {
    match code {
        "source_unreachable" => {
            "Check the host and port, and that the fleet's network reaches them (firewall, VPC, allow-list)."
        }
        "authentication" => "Check the user and password (or key) in the connection's URL.",
        "permission_denied" => {
            "Grant the connection's user SELECT on the table and USAGE on its schema (or the warehouse's equivalent)."
        }
        "missing_object" => {
            "Check that the import's table (or its query's tables and columns) exists under that name, and that the connection's user can see it (SELECT on the table, USAGE on its schema)."
        }
        "source_timeout" => {
            "The source did not answer in time: check that it is running and not overloaded."
        }
        "source_query" => "The source refused the statement: the message above is its own.",
        "storage" => "The object store could not be read or written: check SLUICE_OBJECT_STORE_URL and its credentials.",
        "store" => "The profile and event store could not be written: check the database's health and space.",
        "wrong_key" => "A worker holds another master key than the fleet: give every process the same SLUICE_MASTER_KEY.",
        "tunnel_unreachable" => "Check the SSH bastion's host and port, that sshd runs there, and that it may forward to the database (AllowTcpForwarding).",
        "tunnel_authentication" => "Add the connection's public key (sluice connections keygen --ssh) to the bastion user's authorized_keys.",
        "tunnel_host_key_changed" => "The bastion presented another host key than the pinned one: if it was changed on purpose, pin the new key; otherwise someone may be in between.",
        "destination_refused" => "The destination refused the request as a whole: check its url and credentials in the spec (the message above is the platform's).",
        "destination_unavailable" => "The destination could not be reached or kept failing: check the platform's status and the destination's url; the run can be retried.",
        "tunnel_host_key_unpinned" => "Test the connection once: the test pins the host key the bastion presents, and runs accept only that key.",
        _ => "",
    }
}

impl TestShown {
    /// How a test's result is shown.
    pub fn of(result: &crate::api::connections::TestResult) -> TestShown {
        match (&result.code, result.ok) {
            (_, true) => TestShown {
                class: "succeeded",
                outcome: "ok".into(),
                message: [
                    result.key_promoted.then(|| {
                        "the new key logged in and replaces the old credentials".to_string()
                    }),
                    result.ssh_host_key.as_ref().map(|key| {
                        if result.ssh_host_key_pinned {
                            format!("the SSH bastion's host key {key} is now pinned")
                        } else {
                            format!("the SSH bastion presented its pinned host key {key}")
                        }
                    }),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
                hint: "",
            },
            (code, false) => {
                let code = code.clone().unwrap_or_else(|| "failed".into());
                TestShown {
                    class: "failed",
                    hint: error_hint(&code),
                    outcome: code,
                    message: result.message.clone().unwrap_or_default(),
                }
            }
        }
    }
}

/// A connection's row.
pub struct ConnectionRow {
    name: String,
    kind: String,
    imports: i64,
    bastion: Option<String>,
    ssh_key: bool,
    ssh_host_key: Option<String>,
    test: Option<TestShown>,
}

impl ConnectionRow {
    /// A listed connection, with a test's result when it was just tested.
    pub fn new(item: &crate::api::connections::ConnectionItem, test: Option<TestShown>) -> Self {
        ConnectionRow {
            name: item.name.clone(),
            kind: item.kind.clone(),
            imports: item.imports,
            bastion: item.bastion.clone(),
            ssh_key: item.ssh_key,
            ssh_host_key: item.ssh_host_key.clone(),
            test,
        }
    }
}

/// The workspace's connections, and (to admins) the form making one.
#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionsPage<'a> {
    title: &'a str,
    refresh: bool,
    workspace: &'a str,
    connections: Vec<ConnectionRow>,
    kinds: Vec<String>,
    can_operate: bool,
    can_admin: bool,
    csrf: &'a str,
    problem: Option<&'a str>,
    note: Option<&'a str>,
    statement: Option<&'a str>,
    ssh_key: Option<(&'a str, &'a str)>,
    draft_ssh: [&'a str; 3],
    draft_name: &'a str,
    draft_kind: &'a str,
    /// The refused form's host, port, database and user.
    draft_fields: [&'a str; 4],
    /// Each kind and the URL it takes.
    formats: Vec<(&'static str, &'static str)>,
}

/// The URL each kind of connection takes, as the form shows it.
const URL_FORMATS: [(&str, &str); 8] = [
    ("postgres", "postgres://user:password@host:5432/database"),
    (
        "redshift",
        "postgres://user:password@cluster.region.redshift.amazonaws.com:5439/database",
    ),
    ("mysql", "mysql://user:password@host:3306/database"),
    (
        "snowflake",
        "snowflake://USER:password@account/DATABASE/SCHEMA?warehouse=WH&role=ROLE",
    ),
    (
        "bigquery",
        "bigquery://project/dataset?location=EU&credentials=BASE64_KEY",
    ),
    (
        "databricks",
        "databricks://token:TOKEN@host/sql/1.0/warehouses/ID?catalog=main&schema=crm",
    ),
    (
        "files",
        "s3://bucket/prefix, gs://…, az://…, or file:///path",
    ),
    (
        "delta",
        "s3://bucket/tables?aws_region=…&aws_access_key_id=…&aws_secret_access_key=…",
    ),
];

/// What the connections page shows besides the list.
#[derive(Default)]
pub struct ConnectionsNotice<'a> {
    /// Why the last action was refused.
    pub problem: Option<&'a str>,
    /// What the last action did.
    pub note: Option<&'a str>,
    /// A Snowflake key pair's `ALTER USER` statement.
    pub statement: Option<&'a str>,
    /// An SSH key's public line, and the bastion whose `authorized_keys` takes it.
    pub ssh_key: Option<(&'a str, &'a str)>,
    /// The refused form's bastion host, port and user.
    pub draft_ssh: [&'a str; 3],
    /// The refused form's name and kind, shown again (never its URL).
    pub draft: (&'a str, &'a str),
    /// The refused form's host, port, database and user (never its password).
    pub draft_fields: [&'a str; 4],
}

/// The connections page.
pub fn connections(
    workspace: &str,
    connections: Vec<ConnectionRow>,
    role: crate::tokens::Role,
    csrf: &str,
    notice: ConnectionsNotice<'_>,
) -> String {
    use crate::tokens::Role;
    render(ConnectionsPage {
        title: "Connections",
        refresh: false,
        workspace,
        connections,
        kinds: sluice_connectors::registry::Registry::builtin()
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
        can_operate: role >= Role::Operator,
        can_admin: role >= Role::Admin,
        csrf,
        problem: notice.problem,
        note: notice.note,
        statement: notice.statement,
        ssh_key: notice.ssh_key,
        draft_ssh: notice.draft_ssh,
        draft_name: notice.draft.0,
        draft_kind: if notice.draft.1.is_empty() {
            "postgres"
        } else {
            notice.draft.1
        },
        draft_fields: notice.draft_fields,
        formats: URL_FORMATS.to_vec(),
    })
}

/// A change of an import's state, formatted.
struct TransitionRow {
    at: String,
    actor: String,
    from: String,
    to: String,
    reason: String,
}

/// An import: its state, schedule, watermark and changes (who, when), and the actions the
/// caller's role allows.
#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage<'a> {
    title: String,
    refresh: bool,
    view: &'a crate::imports::ImportView,
    schedule: String,
    watermark: String,
    transitions: Vec<TransitionRow>,
    can_operate: bool,
    csrf: &'a str,
    actions: Vec<(&'static str, &'static str)>,
    problem: Option<&'a str>,
    confirm: Option<Confirm>,
    runs: Vec<RecentRun>,
    watermark_changes: Vec<TransitionRow>,
}

/// One of an import's recent runs: who requested it and when.
struct RecentRun {
    run_id: String,
    status: String,
    dry_run: bool,
    created_by: String,
    created: String,
    finished: String,
}

/// A watermark move waiting for its confirmation: what will be read again, in words, and the
/// fields the confirming form posts again.
pub struct Confirm {
    /// `resync` or `rewind`.
    pub action: &'static str,
    /// What the next run will read again.
    pub text: String,
    /// A rewind's instant.
    pub to: String,
}

/// The actions an import's state offers: (the form's action, the button's label).
fn actions(state: &str) -> Vec<(&'static str, &'static str)> {
    use crate::imports::state;
    let mut actions = Vec::new();
    if state != state::DRAFT && state != state::STOPPED {
        actions.push(("run", "Sync now"));
    }
    actions.push(("dry_run", "Dry run"));
    match state {
        state::SCHEDULED => actions.push(("pause", "Pause")),
        state::PAUSED | state::STOPPED => actions.push(("resume", "Resume")),
        _ => {}
    }
    if state != state::STOPPED && state != state::DRAFT {
        actions.push(("stop", "Stop"));
    }
    actions
}

/// An import's page: `csrf` goes in its forms; the action buttons only for `can_operate`.
pub fn import(
    view: &crate::imports::ImportView,
    runs: &[crate::api::runs::RunItem],
    csrf: &str,
    can_operate: bool,
    problem: Option<&str>,
    confirm: Option<Confirm>,
) -> String {
    render(ImportPage {
        title: format!("Import {}", view.name),
        refresh: false,
        view,
        schedule: view
            .schedule
            .as_ref()
            .map(schedule_text)
            .unwrap_or_else(|| "manual".into()),
        watermark: view.watermark.clone().unwrap_or_else(|| "–".into()),
        transitions: view
            .transitions
            .iter()
            .map(|t| TransitionRow {
                at: time(&t.at),
                actor: t.actor.clone(),
                from: t.from.clone().unwrap_or_else(|| "–".into()),
                to: t.to.clone(),
                reason: t.reason.clone().unwrap_or_default(),
            })
            .collect(),
        can_operate,
        csrf,
        actions: actions(&view.state),
        problem,
        confirm,
        runs: runs
            .iter()
            .map(|r| RecentRun {
                run_id: r.run_id.to_string(),
                status: r.status.clone(),
                dry_run: r.dry_run,
                created_by: r.created_by.clone(),
                created: time(&r.created_at),
                finished: r
                    .finished_at
                    .as_ref()
                    .map(time)
                    .unwrap_or_else(|| "–".into()),
            })
            .collect(),
        watermark_changes: view
            .watermark_changes
            .iter()
            .map(|c| TransitionRow {
                at: time(&c.at),
                actor: c.actor.clone(),
                from: c.from.clone().unwrap_or_else(|| "the start".into()),
                to: c.to.clone().unwrap_or_else(|| "the start".into()),
                reason: c.operation.clone(),
            })
            .collect(),
    })
}

/// A row of the error stream, formatted.
struct StreamRow {
    recorded: String,
    import: String,
    run_id: String,
    row_key: String,
    column: String,
    value: String,
    reason: String,
    message: String,
}

/// The workspace's error stream: the window's counts by reason and import, and a page of
/// its rows, newest first.
#[derive(Template)]
#[template(path = "errors.html")]
struct ErrorsPage<'a> {
    title: &'a str,
    refresh: bool,
    stream: &'a ErrorStreamPage,
    query: &'a ErrorQuery,
    from: String,
    to: String,
    rows: Vec<StreamRow>,
    next_page: Option<String>,
}

/// The error stream's page.
pub fn error_stream(stream: &ErrorStreamPage, query: &ErrorQuery) -> String {
    let shown =
        i64::from(stream.page - 1) * i64::from(stream.per_page) + stream.errors.len() as i64;
    let next_page = (shown < stream.total).then(|| {
        let mut next = query.clone();
        next.from = Some(stream.from);
        next.to = Some(stream.to);
        next.page = Some(stream.page + 1);
        next.query_string()
    });
    render(ErrorsPage {
        title: "Rejected rows",
        refresh: false,
        stream,
        query,
        from: time(&stream.from),
        to: time(&stream.to),
        rows: stream
            .errors
            .iter()
            .map(|e| StreamRow {
                recorded: time(&e.recorded_at),
                import: e.import.clone(),
                run_id: e.run_id.to_string(),
                row_key: e.error.row_key.clone(),
                column: e.error.column.clone(),
                value: e.error.value.clone().unwrap_or_default(),
                reason: e.error.reason.clone(),
                message: e.error.message.clone(),
            })
            .collect(),
        next_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        let page = login(Some("<b a=\"1\">&'"));
        assert!(
            page.contains("&#60;b a=&#34;1&#34;&#62;&#38;&#39;")
                || page.contains("&lt;b a=&quot;1&quot;&gt;&amp;&#39;"),
            "{page}"
        );
        assert!(!page.contains("<b a="));
    }

    #[test]
    fn a_run_to_a_destination_shows_what_was_delivered_and_not_the_stores_counts() {
        let names =
            |s: &RunSummary| -> Vec<&str> { run_stats(s).iter().map(|(n, _)| *n).collect() };
        let stored = RunSummary {
            data_type: "events".into(),
            ..RunSummary::default()
        };
        assert!(names(&stored).contains(&"events inserted"));
        assert!(!names(&stored).contains(&"records delivered"));
        let delivered = RunSummary {
            destination: Some("braze".into()),
            ..stored
        };
        let shown = names(&delivered);
        assert!(shown.contains(&"records delivered") && shown.contains(&"requests sent"));
        assert!(
            shown.contains(&"duplicate events"),
            "the ledger's skips: {shown:?}"
        );
        assert!(!shown.contains(&"events inserted"), "{shown:?}");
    }
}

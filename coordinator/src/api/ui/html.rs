//! The pages' HTML: one small stylesheet, every value escaped.

use super::{Filters, ImportLine, RunLine};
use crate::api::errors::{ErrorQuery, ErrorStreamPage};
use crate::errors::RunError;
use crate::runs::RunSummary;
use std::fmt::Write;

/// Text safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0 24px}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.succeeded{color:#176f2c}.partially_succeeded{color:#8a6d00}.failed{color:#b3261e}
.running,.planning,.queued{color:#1a56b8}form{margin:8px 0}label{margin-right:10px}
progress{width:320px;height:16px}.muted{color:#777}";

fn page(title: &str, refresh: bool, body: &str) -> String {
    let refresh = if refresh {
        "<meta http-equiv=\"refresh\" content=\"2\">"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{refresh}<title>{} · Sluice</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
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

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The sign-in form.
pub fn login(problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p class=\"failed\">{}</p>", escape(p)))
        .unwrap_or_default();
    page(
        "Sign in",
        false,
        &format!(
            "<h1>Sluice</h1>{problem}<form method=\"post\" action=\"/ui/login\">\
             <label>API token <input name=\"token\" type=\"password\" size=\"60\" autocomplete=\"off\"></label>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
             <p class=\"muted\">Make a token with <code>sluice tokens create --workspace W --name N --role viewer</code>.</p>"
        ),
    )
}

fn option(value: &str, selected: Option<&str>) -> String {
    let mark = if selected == Some(value) {
        " selected"
    } else {
        ""
    };
    format!("<option value=\"{0}\"{mark}>{0}</option>", escape(value))
}

/// The import listing and the filtered runs.
pub fn listing(
    workspace: &str,
    imports: &[ImportLine],
    runs: &[RunLine],
    filters: &Filters,
) -> String {
    let mut body = format!("<h1>Imports of {}</h1>", escape(workspace));
    body.push_str("<table id=\"imports\"><tr><th>import</th><th>type</th><th>status</th><th>schedule</th><th>health</th><th>last run</th><th>next run</th></tr>");
    for i in imports {
        let health = i
            .health
            .map(|h| format!("{:.0}%", h * 100.0))
            .unwrap_or_else(|| "–".into());
        let last = i
            .last_run
            .as_ref()
            .map(|(id, status, at)| {
                format!(
                    "<a href=\"/ui/runs/{id}\" class=\"{0}\">{0}</a> <span class=\"muted\">{1}</span>",
                    escape(status),
                    time(at)
                )
            })
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{health}</td><td>{last}</td><td>{}</td></tr>",
            escape(&i.name),
            escape(&i.data_type),
            escape(&i.state),
            i.schedule.as_deref().map(escape).unwrap_or_else(|| "manual".into()),
            i.next_fire_at.as_ref().map(time).unwrap_or_else(|| "–".into()),
        );
    }
    body.push_str("</table><h2>Runs</h2><form method=\"get\" action=\"/ui\" id=\"filters\">");
    let status = filters.status.as_deref().filter(|s| !s.is_empty());
    let _ = write!(
        body,
        "<label>status <select name=\"status\" id=\"status\"><option value=\"\">any</option>{}</select></label>",
        crate::runs::status::ALL
            .iter()
            .map(|s| option(s, status))
            .collect::<String>()
    );
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let _ = write!(
        body,
        "<label>creator <input name=\"creator\" id=\"creator\" value=\"{}\"></label>\
         <label>from <input name=\"from\" type=\"date\" value=\"{}\"></label>\
         <label>to <input name=\"to\" type=\"date\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"apply-filters\">Filter</button></form>",
        value(&filters.creator),
        value(&filters.from),
        value(&filters.to)
    );
    body.push_str("<table id=\"runs\"><tr><th>run</th><th>import</th><th>status</th><th>created by</th><th>created</th><th>rejected</th></tr>");
    for r in runs {
        let dry = if r.dry_run { " (dry run)" } else { "" };
        let since = r
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let rejected = r
            .rejected
            .iter()
            .map(|(reason, n)| {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("import", &r.import)
                    .append_pair("reason", reason)
                    .append_pair("from", &since)
                    .finish();
                format!(
                    "<a class=\"reason-link\" href=\"/ui/errors?{}\">{} {n}</a>",
                    escape(&query),
                    escape(reason)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/runs/{0}\" class=\"run-link\">{0}</a>{dry}</td><td>{1}</td><td class=\"{2}\">{2}</td><td>{3}</td><td>{4}</td><td>{rejected}</td></tr>",
            r.run_id,
            escape(&r.import),
            escape(&r.status),
            escape(&r.created_by),
            time(&r.created_at)
        );
    }
    if runs.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"muted\">no run matches</td></tr>");
    }
    body.push_str("</table>");
    page("Imports", false, &body)
}

/// One run: stats, chunk progress, errors with their reasons and the CSV link.
pub fn run(s: &RunSummary, errors: &[RunError]) -> String {
    let active = matches!(s.status.as_str(), "queued" | "planning" | "running");
    let mut body = format!(
        "<p><a href=\"/ui\">← imports</a></p><h1>Run of {}</h1><p id=\"status\" class=\"{1}\">{1}{2}</p>",
        escape(&s.import),
        escape(&s.status),
        if s.dry_run { " (dry run)" } else { "" }
    );
    let _ = write!(
        body,
        "<p><progress id=\"progress\" value=\"{}\" max=\"{}\"></progress> {} of {} chunks loaded</p>",
        s.chunks_loaded,
        s.chunks.max(1),
        s.chunks_loaded,
        s.chunks
    );
    if let Some(error) = &s.error {
        let _ = write!(
            body,
            "<p class=\"failed\" id=\"run-error\">{}: {}</p>",
            escape(s.error_code.as_deref().unwrap_or("error")),
            escape(error)
        );
    }
    body.push_str("<table id=\"stats\">");
    let stats = [
        ("rows read", s.rows_read),
        ("rows rejected", s.rows_rejected),
        ("rows loaded", s.rows_loaded),
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
    ];
    for (name, value) in stats {
        let _ = write!(body, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    if let Some(ms) = s.duration_ms {
        let _ = write!(
            body,
            "<tr><th>duration</th><td>{:.1} s</td></tr>",
            ms as f64 / 1000.0
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<h2>Errors</h2><p><a id=\"errors-csv\" href=\"/ui/runs/{}/errors.csv\">all rejected rows as CSV</a></p>",
        s.run_id
    );
    body.push_str("<table id=\"errors\"><tr><th>row</th><th>column</th><th>value</th><th>reason</th><th>message</th></tr>");
    for e in errors {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.row_key),
            escape(&e.column),
            escape(e.value.as_deref().unwrap_or("")),
            escape(&e.reason),
            escape(&e.message)
        );
    }
    if errors.is_empty() {
        body.push_str("<tr><td colspan=\"5\" class=\"muted\">no rejected rows</td></tr>");
    }
    body.push_str("</table>");
    page(&format!("Run {}", s.run_id), active, &body)
}

/// The workspace's error stream: the window's counts by reason and import, and a page of
/// its rows, newest first.
pub fn error_stream(stream: &ErrorStreamPage, query: &ErrorQuery) -> String {
    let mut body = format!(
        "<p><a href=\"/ui\">← imports</a></p><h1>Rejected rows</h1><p id=\"window\">{} rows from {} to {}{}{}</p>",
        stream.total,
        time(&stream.from),
        time(&stream.to),
        query
            .import
            .as_deref()
            .map(|i| format!(", import {}", escape(i)))
            .unwrap_or_default(),
        query
            .reason
            .as_deref()
            .map(|r| format!(", reason {}", escape(r)))
            .unwrap_or_default(),
    );
    body.push_str("<table id=\"counts\"><tr><th>by reason</th><th>rows</th></tr>");
    for (reason, n) in &stream.by_reason {
        let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", escape(reason));
    }
    body.push_str("<tr><th>by import</th><th>rows</th></tr>");
    for (import, n) in &stream.by_import {
        let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", escape(import));
    }
    body.push_str("</table><table id=\"stream\"><tr><th>recorded</th><th>import</th><th>run</th><th>row</th><th>column</th><th>value</th><th>reason</th><th>message</th></tr>");
    for e in &stream.errors {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><a href=\"/ui/runs/{run}\">{run}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(&e.recorded_at),
            escape(&e.import),
            escape(&e.error.row_key),
            escape(&e.error.column),
            escape(e.error.value.as_deref().unwrap_or("")),
            escape(&e.error.reason),
            escape(&e.error.message),
            run = e.run_id,
        );
    }
    if stream.errors.is_empty() {
        body.push_str(
            "<tr><td colspan=\"8\" class=\"muted\">no rejected rows in this window</td></tr>",
        );
    }
    body.push_str("</table>");
    let shown =
        i64::from(stream.page - 1) * i64::from(stream.per_page) + stream.errors.len() as i64;
    if shown < stream.total {
        let mut next = query.clone();
        next.from = Some(stream.from);
        next.to = Some(stream.to);
        next.page = Some(stream.page + 1);
        let _ = write!(
            body,
            "<p><a id=\"next-page\" href=\"/ui/errors?{}\">next page</a></p>",
            escape(&next.query_string())
        );
    }
    page("Rejected rows", false, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}

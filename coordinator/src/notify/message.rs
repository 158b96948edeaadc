//! What a notification says, for each channel: the webhook's JSON event, the email's subject
//! and text (with the run page's link), and the Slack message in Block Kit (a `text`
//! fallback and `section` and `context` blocks of `mrkdwn` text, within Slack's documented
//! limits: 3,000 characters a section, 10 fields of 2,000).

use crate::runs::RunSummary;
use serde_json::{json, Value};

/// One event about to be sent, with what it is about.
pub struct Event<'a> {
    /// The event's id (the `Sluice-Event-Id`).
    pub id: uuid::Uuid,
    /// `run.failed`, `alert.firing`, ...
    pub kind: &'a str,
    /// The workspace.
    pub workspace: &'a str,
    /// The import.
    pub import: &'a str,
    /// The run it is about, if any (an alert's or a pause's is the import's latest run).
    pub run: Option<&'a RunSummary>,
    /// What the event says besides the run: an alert's rule and figures, a pause's actor.
    pub detail: &'a Value,
    /// The page to open: the run's, or the import's.
    pub url: String,
}

/// An event in words, from its type and detail: "run failed", "import paused by api:…",
/// "alert firing: no_rows_for".
pub fn headline(kind: &str, detail: &Value) -> String {
    let rule = detail.get("rule").and_then(Value::as_str).unwrap_or("");
    match kind {
        "import.paused" => match detail.get("actor").and_then(Value::as_str) {
            Some("sluice") | None => "import paused after repeated failed runs".to_string(),
            Some(actor) => format!("import paused by {actor}"),
        },
        "alert.firing" => format!("alert firing: {rule}"),
        "alert.resolved" => format!("alert resolved: {rule}"),
        kind => format!("run {}", kind.trim_start_matches("run.").replace('_', " ")),
    }
}

impl Event<'_> {
    /// The event in words: "run failed", "alert firing: no_rows_for".
    pub fn headline(&self) -> String {
        headline(self.kind, self.detail)
    }

    /// The figures that matter, as (name, value) lines.
    pub fn figures(&self) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        if let Some(Value::Object(figures)) = self.detail.get("figures") {
            for (name, value) in figures {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => "–".to_string(),
                    v => v.to_string(),
                };
                lines.push((name.replace('_', " "), value));
            }
        }
        if let Some(run) = self.run {
            for (name, value) in [
                ("rows read", run.rows_read),
                ("rows rejected", run.rows_rejected),
                ("rows loaded", run.rows_loaded),
                ("profiles created", run.profiles_created),
                ("profiles updated", run.profiles_updated),
                ("events inserted", run.events_inserted),
            ] {
                lines.push((name.to_string(), value.to_string()));
            }
        }
        lines
    }

    /// The run's error, if it ended in one.
    fn error(&self) -> Option<String> {
        let run = self.run?;
        let error = run.error.as_ref()?;
        Some(format!(
            "{}: {error}",
            run.error_code.as_deref().unwrap_or("error")
        ))
    }

    /// The webhook's JSON body.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "created_at": chrono::Utc::now(),
            "workspace": self.workspace,
            "import": self.import,
            "run": self.run,
            "detail": self.detail,
            "url": self.url,
        })
    }

    /// The email's subject.
    pub fn subject(&self) -> String {
        format!(
            "[Sluice] {}/{}: {}",
            self.workspace,
            self.import,
            self.headline()
        )
    }

    /// The email's text.
    pub fn text(&self) -> String {
        let mut body = match self.run {
            Some(run) => format!(
                "Import {} in workspace {}: {} (run {}).\n\n",
                self.import,
                self.workspace,
                self.headline(),
                run.run_id
            ),
            None => format!(
                "Import {} in workspace {}: {}.\n\n",
                self.import,
                self.workspace,
                self.headline()
            ),
        };
        for (name, value) in self.figures() {
            body.push_str(&format!("{name}: {value}\n"));
        }
        if let Some(error) = self.error() {
            body.push_str(&format!("\n{error}\n"));
        }
        body.push_str(&format!("\nOpen it: {}\n", self.url));
        body
    }

    /// The email's HTML: the same text, and the page as a link.
    pub fn html(&self) -> String {
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut html = format!(
            "<p>Import <b>{}</b> in workspace <b>{}</b>: {}.</p><table>",
            escape(self.import),
            escape(self.workspace),
            escape(&self.headline())
        );
        for (name, value) in self.figures() {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(&name),
                escape(&value)
            ));
        }
        html.push_str("</table>");
        if let Some(error) = self.error() {
            html.push_str(&format!("<p>{}</p>", escape(&error)));
        }
        html.push_str(&format!(
            "<p><a href=\"{0}\">{0}</a></p>",
            escape(&self.url)
        ));
        html
    }

    /// The Slack message: a fallback `text`, a headline section linking to the page, the
    /// figures as fields, and the error as context.
    pub fn slack(&self) -> Value {
        let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let title = format!("{}/{}", self.workspace, self.import);
        let headline = format!(
            "*<{}|{}>*: {}",
            self.url,
            escape(&title),
            escape(&self.headline())
        );
        let mut blocks = vec![json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": cut(&headline, 3000) },
        })];
        let fields: Vec<Value> = self
            .figures()
            .into_iter()
            .take(10)
            .map(|(name, value)| {
                json!({ "type": "mrkdwn", "text": cut(&format!("*{}*\n{}", escape(&name), escape(&value)), 2000) })
            })
            .collect();
        if !fields.is_empty() {
            blocks.push(json!({ "type": "section", "fields": fields }));
        }
        if let Some(error) = self.error() {
            blocks.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": cut(&escape(&error), 3000) }],
            }));
        }
        json!({
            "text": format!("{title}: {}", self.headline()),
            "blocks": blocks,
        })
    }
}

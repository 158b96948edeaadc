//! The workspace's feed: every event its imports raised (runs, pauses, alerts), whether or
//! not a target listens, and how far each token has read it; the web page's in-app
//! notifications, with the alert rules firing now.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// One event of the feed.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its place in the feed: later events have larger ids.
    pub id: i64,
    /// The import it is about.
    pub import: Option<String>,
    /// The run it is about.
    pub run_id: Option<Uuid>,
    /// `run.failed`, `alert.firing`, ...
    pub event: String,
    /// The event in words.
    pub headline: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Whether the reader has not marked it read.
    pub unread: bool,
}

/// An alert rule firing now.
#[derive(Debug, Clone)]
pub struct Firing {
    /// The import.
    pub import: String,
    /// The rule.
    pub rule: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// What made it fire.
    pub figures: serde_json::Value,
}

const READ_UP_TO: &str = "coalesce((SELECT read_up_to FROM control.feed_reads
                                      WHERE token_id = $2 AND workspace_id = $1), 0)";

/// The workspace's latest `limit` events, newest first, marked unread for `token`.
pub async fn recent(
    client: &impl GenericClient,
    workspace_id: i64,
    token: Uuid,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT f.id, i.name, f.run_id, f.event, f.detail, f.created_at, f.id > {READ_UP_TO}
           FROM control.feed f LEFT JOIN control.imports i ON i.id = f.import_id
          WHERE f.workspace_id = $1
          ORDER BY f.id DESC LIMIT $3"
    );
    Ok(client
        .query(&sql, &[&workspace_id, &token, &limit])
        .await?
        .iter()
        .map(|r| {
            let event: String = r.get(3);
            Entry {
                id: r.get(0),
                import: r.get(1),
                run_id: r.get(2),
                headline: crate::notify::headline(&event, &r.get(4)),
                event,
                at: r.get(5),
                unread: r.get(6),
            }
        })
        .collect())
}

/// How many of the workspace's events `token` has not marked read.
pub async fn unread(
    client: &impl GenericClient,
    workspace_id: i64,
    token: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "SELECT count(*) FROM control.feed f WHERE f.workspace_id = $1 AND f.id > {READ_UP_TO}"
    );
    Ok(client
        .query_one(&sql, &[&workspace_id, &token])
        .await?
        .get(0))
}

/// Marks every event of the workspace so far read for `token`.
pub async fn mark_read(
    client: &impl GenericClient,
    workspace_id: i64,
    token: Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.feed_reads (token_id, workspace_id, read_up_to)
             SELECT $2, $1, coalesce(max(id), 0) FROM control.feed WHERE workspace_id = $1
             ON CONFLICT (token_id, workspace_id) DO UPDATE SET read_up_to = EXCLUDED.read_up_to",
            &[&workspace_id, &token],
        )
        .await?;
    Ok(())
}

/// The alert rules firing now in the workspace, oldest first.
pub async fn firing(
    client: &impl GenericClient,
    workspace_id: i64,
) -> Result<Vec<Firing>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT i.name, a.rule, a.since, a.figures
               FROM control.alert_states a JOIN control.imports i ON i.id = a.import_id
              WHERE i.workspace_id = $1 ORDER BY a.since, i.name, a.rule",
            &[&workspace_id],
        )
        .await?
        .iter()
        .map(|r| Firing {
            import: r.get(0),
            rule: r.get(1),
            since: r.get(2),
            figures: r.get(3),
        })
        .collect())
}

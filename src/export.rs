//! `sluice profiles export` and `sluice events export`: every profile or event of a workspace
//! as one JSON line, streamed.

use crate::settings::Settings;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{pin_mut, TryStreamExt};
use std::collections::BTreeMap;
use std::io::Write;
use tokio_postgres::Row;

/// Every profile of a workspace with its identities, event lifecycle and consent. A profile
/// no profile row has been applied to yet (one an event created) is stamped `-infinity`,
/// which it exports as `null`.
const PROFILES_SQL: &str = "SELECT p.profile_id, p.properties, nullif(p.source_updated_at, '-infinity'),
        l.first_event_at, l.last_event_at, coalesce(l.event_count, 0),
        coalesce(jsonb_object_agg(i.kind, i.value) FILTER (WHERE i.kind IS NOT NULL), '{}'::jsonb)
          || jsonb_strip_nulls(jsonb_build_object('email', p.email, 'phone', p.phone)),
        (SELECT jsonb_object_agg(s.topic, jsonb_build_object('status', s.status,
                                                           'changed_at', s.changed_at))
           FROM profile_store.subscriptions s
          WHERE s.workspace_id = p.workspace_id AND s.profile_id = p.profile_id)
   FROM profile_store.profiles p
   LEFT JOIN profile_store.identities i ON i.workspace_id = p.workspace_id AND i.profile_id = p.profile_id
   LEFT JOIN profile_store.event_lifecycle l ON l.workspace_id = p.workspace_id AND l.profile_id = p.profile_id
  WHERE p.workspace_id = $1
  GROUP BY p.workspace_id, p.profile_id, l.first_event_at, l.last_event_at, l.event_count
  ORDER BY p.profile_id";

const EVENTS_SQL: &str =
    "SELECT e.event_id, e.profile_id, e.name, e.time, e.properties, e.dedup_key
   FROM profile_store.events e
  WHERE e.workspace_id = $1
  ORDER BY e.time, e.event_id";

fn time(value: Option<DateTime<Utc>>) -> Option<String> {
    value.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// A profile's line; `subscriptions` (channels by name, groups under `groups`) only when it
/// holds a status.
fn profile(row: &Row) -> serde_json::Value {
    let mut line = serde_json::json!({
        "profile_id": row.get::<_, i64>(0),
        "identities": row.get::<_, serde_json::Value>(6),
        "properties": row.get::<_, serde_json::Value>(1),
        "updated_at": time(row.get(2)),
        "first_event_at": time(row.get(3)),
        "last_event_at": time(row.get(4)),
        "event_count": row.get::<_, i64>(5),
    });
    let statuses: Option<BTreeMap<String, serde_json::Value>> = row
        .get::<_, Option<serde_json::Value>>(7)
        .and_then(|v| serde_json::from_value(v).ok());
    if let Some(statuses) = statuses {
        line["subscriptions"] = sluice_coordinator::consent::nested(&statuses);
    }
    line
}

fn event(row: &Row) -> serde_json::Value {
    serde_json::json!({
        "event_id": row.get::<_, i64>(0),
        "profile_id": row.get::<_, i64>(1),
        "name": row.get::<_, String>(2),
        "time": time(row.get(3)),
        "properties": row.get::<_, serde_json::Value>(4),
        "dedup_key": row.get::<_, String>(5),
    })
}

/// Writes the workspace's profiles to stdout, by profile id.
pub async fn profiles(settings: &Settings, workspace: &str) -> anyhow::Result<()> {
    export(settings, workspace, PROFILES_SQL, profile).await
}

/// Writes the workspace's events to stdout, oldest first.
pub async fn events(settings: &Settings, workspace: &str) -> anyhow::Result<()> {
    export(settings, workspace, EVENTS_SQL, event).await
}

/// Streams the rows of `sql` (which takes the workspace's id) from the workspace's store to
/// stdout as JSON lines.
async fn export(
    settings: &Settings,
    workspace: &str,
    sql: &str,
    line: fn(&Row) -> serde_json::Value,
) -> anyhow::Result<()> {
    let found = WorkspaceStore::open(settings, workspace).await?;
    let rows = found.store.query_raw(sql, [&found.workspace_id]).await?;
    pin_mut!(rows);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(row) = rows.try_next().await? {
        if let Err(e) = writeln!(out, "{}", line(&row)) {
            return quiet_on_closed_pipe(e);
        }
    }
    out.flush().or_else(quiet_on_closed_pipe)
}

/// A workspace's id with connections to the control plane and to the store it lives in.
pub struct WorkspaceStore {
    /// The control plane.
    pub control: tokio_postgres::Client,
    /// The workspace's id.
    pub workspace_id: i64,
    /// The store the workspace lives in.
    pub store: tokio_postgres::Client,
}

impl WorkspaceStore {
    /// Connects to the control plane and to the store of `workspace`, which must exist.
    pub async fn open(settings: &Settings, workspace: &str) -> anyhow::Result<Self> {
        let control = settings.control().await?;
        let Some(workspace_id) =
            sluice_coordinator::apply::workspace_id(&control, workspace).await?
        else {
            anyhow::bail!("workspace {workspace:?} does not exist");
        };
        let name = sluice_coordinator::stores::workspace_store(&control, workspace).await?;
        let store = settings.store_named(&control, &name).await?;
        Ok(WorkspaceStore {
            control,
            workspace_id,
            store,
        })
    }
}

/// A reader that stopped reading (`| head`) is not an error.
fn quiet_on_closed_pipe(e: std::io::Error) -> anyhow::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e.into())
    }
}

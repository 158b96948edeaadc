//! `sluice events export`: every event of a workspace as one JSON line.

use crate::export::quiet_on_closed_pipe;
use crate::settings::Settings;
use futures::{pin_mut, TryStreamExt};
use std::io::Write;

const EXPORT_SQL: &str =
    "SELECT e.event_id, e.profile_id, e.name, e.time, e.properties, e.dedup_key
   FROM profile_store.events e
  WHERE e.workspace_id = (SELECT id FROM control.workspaces WHERE name = $1)
  ORDER BY e.time, e.event_id";

/// Writes the workspace's events to stdout, oldest first.
pub async fn export(settings: &Settings, workspace: &str) -> anyhow::Result<()> {
    settings.migrate().await?;
    let client = sluice_coordinator::database::connect(&settings.database_url).await?;
    if sluice_coordinator::apply::workspace_id(&client, workspace)
        .await?
        .is_none()
    {
        anyhow::bail!("workspace {workspace:?} does not exist");
    }
    let rows = client.query_raw(EXPORT_SQL, [&workspace]).await?;
    pin_mut!(rows);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(row) = rows.try_next().await? {
        let time: chrono::DateTime<chrono::Utc> = row.get(3);
        let line = serde_json::json!({
            "event_id": row.get::<_, i64>(0),
            "profile_id": row.get::<_, i64>(1),
            "name": row.get::<_, String>(2),
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "properties": row.get::<_, serde_json::Value>(4),
            "dedup_key": row.get::<_, String>(5),
        });
        if let Err(e) = writeln!(out, "{line}") {
            return quiet_on_closed_pipe(e);
        }
    }
    out.flush().or_else(quiet_on_closed_pipe)
}

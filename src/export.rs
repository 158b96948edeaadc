//! `sluice profiles export`: every profile of a workspace as one JSON line.

use crate::settings::Settings;
use futures::{pin_mut, TryStreamExt};
use std::io::Write;

const EXPORT_SQL: &str = "SELECT p.profile_id, p.properties, p.source_updated_at,
        p.first_event_at, p.last_event_at, p.event_count,
        coalesce(jsonb_object_agg(i.kind, i.value) FILTER (WHERE i.kind IS NOT NULL), '{}'::jsonb)
          || jsonb_strip_nulls(jsonb_build_object('email', p.email, 'phone', p.phone))
   FROM profile_store.profiles p
   LEFT JOIN profile_store.identities i ON i.workspace_id = p.workspace_id AND i.profile_id = p.profile_id
  WHERE p.workspace_id = (SELECT id FROM control.workspaces WHERE name = $1)
  GROUP BY p.workspace_id, p.profile_id
  ORDER BY p.profile_id";

/// Writes the workspace's profiles to stdout.
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
        let updated_at: chrono::DateTime<chrono::Utc> = row.get(2);
        let line = serde_json::json!({
            "profile_id": row.get::<_, i64>(0),
            "identities": row.get::<_, serde_json::Value>(6),
            "properties": row.get::<_, serde_json::Value>(1),
            "updated_at": updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "first_event_at": time(row.get(3)),
            "last_event_at": time(row.get(4)),
            "event_count": row.get::<_, i64>(5),
        });
        if let Err(e) = writeln!(out, "{line}") {
            return quiet_on_closed_pipe(e);
        }
    }
    out.flush().or_else(quiet_on_closed_pipe)
}

fn time(value: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    value.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// A reader that stopped reading (`| head`) is not an error.
pub fn quiet_on_closed_pipe(e: std::io::Error) -> anyhow::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e.into())
    }
}

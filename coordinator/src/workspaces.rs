//! Workspaces as the fleet's operator sees them: each one's share of the stores. A limit is set
//! here, on the host, never through a workspace's own API tokens.

use serde::Serialize;
use tokio_postgres::GenericClient;

/// A workspace and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceLimits {
    /// The workspace's name.
    pub name: String,
    /// Rows per second its loads may write across the fleet; `None` leaves each loader's
    /// `--load-rows-per-second` in force.
    pub load_rows_per_second: Option<u32>,
    /// How many imports it has.
    pub imports: i64,
    /// The store its profiles and events live in.
    pub store: String,
}

/// Sets (or with `None` removes) a workspace's load limit, creating the workspace if new. It
/// applies to the chunks of runs planned from now on.
pub async fn set_load_limit(
    client: &impl GenericClient,
    workspace: &str,
    rows_per_second: Option<u32>,
) -> Result<(), tokio_postgres::Error> {
    let limit = rows_per_second.map(|r| r.min(i32::MAX as u32) as i32);
    client
        .execute(
            "INSERT INTO control.workspaces (name, load_rows_per_second) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET load_rows_per_second = EXCLUDED.load_rows_per_second",
            &[&workspace, &limit],
        )
        .await?;
    Ok(())
}

/// Every workspace with its limit and number of imports, by name.
pub async fn list(
    client: &impl GenericClient,
) -> Result<Vec<WorkspaceLimits>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT w.name, w.load_rows_per_second,
                    (SELECT count(*) FROM control.imports i WHERE i.workspace_id = w.id), w.store
               FROM control.workspaces w ORDER BY w.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorkspaceLimits {
            name: r.get(0),
            load_rows_per_second: r.get::<_, Option<i32>>(1).map(|v| v as u32),
            imports: r.get(2),
            store: r.get(3),
        })
        .collect())
}

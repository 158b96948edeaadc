//! A workspace's destinations as stored: written by `apply` with their credentials sealed,
//! looked up when an import names one, and listed (never with their credentials) by the API
//! and the CLI.

use crate::spec::destinations::DestinationDecl;
use serde::Serialize;
use sluice_proto::destination::DestinationKind;
use sluice_proto::secrets::MasterKey;
use tokio_postgres::GenericClient;

/// A destination as listed.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DestinationItem {
    /// Its name.
    pub name: String,
    /// Its platform: `braze`, `clevertap` or `klaviyo`.
    pub kind: String,
    /// The API's base URL.
    pub url: String,
    /// Requests per second, shared by every loader.
    pub requests_per_second: i32,
    /// The imports delivering to it.
    pub imports: Vec<String>,
}

/// The kind of a destination stored in a workspace (by the workspace's name), if there is one.
pub async fn stored_kind(
    client: &impl GenericClient,
    workspace: &str,
    name: &str,
) -> Result<Option<DestinationKind>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT d.kind FROM control.destinations d
               JOIN control.workspaces w ON w.id = d.workspace_id
              WHERE w.name = $1 AND d.name = $2",
            &[&workspace, &name],
        )
        .await?
        .and_then(|r| DestinationKind::parse(r.get(0))))
}

/// Creates or replaces a destination, its credentials sealed; whether it was created.
pub async fn upsert(
    client: &impl GenericClient,
    key: &MasterKey,
    workspace: i64,
    d: &DestinationDecl,
) -> Result<bool, tokio_postgres::Error> {
    let credentials = serde_json::to_vec(&d.credentials).expect("credentials serialize");
    let sealed = serde_json::to_value(key.seal(&credentials)).expect("sealed value serializes");
    let rate = d.rate().min(i32::MAX as u32) as i32;
    Ok(client
        .query_one(
            "INSERT INTO control.destinations
                    (workspace_id, name, kind, url, credentials, requests_per_second)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (workspace_id, name) DO UPDATE
                SET kind = EXCLUDED.kind, url = EXCLUDED.url, credentials = EXCLUDED.credentials,
                    requests_per_second = EXCLUDED.requests_per_second, updated_at = now()
             RETURNING xmax = 0",
            &[
                &workspace,
                &d.name,
                &d.kind.as_str(),
                &d.url,
                &sealed,
                &rate,
            ],
        )
        .await?
        .get(0))
}

/// A workspace's destinations, by name, with the imports delivering to each.
pub async fn list(
    client: &impl GenericClient,
    workspace: i64,
) -> Result<Vec<DestinationItem>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT d.name, d.kind, d.url, d.requests_per_second,
                    coalesce(array_agg(i.name ORDER BY i.name) FILTER (WHERE i.name IS NOT NULL), '{}')
               FROM control.destinations d
               LEFT JOIN control.imports i
                 ON i.workspace_id = d.workspace_id AND i.spec->>'destination' = d.name
              WHERE d.workspace_id = $1
              GROUP BY d.id ORDER BY d.name",
            &[&workspace],
        )
        .await?
        .iter()
        .map(|r| DestinationItem {
            name: r.get(0),
            kind: r.get(1),
            url: r.get(2),
            requests_per_second: r.get(3),
            imports: r.get(4),
        })
        .collect())
}

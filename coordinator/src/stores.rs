//! The profile and event stores a fleet writes to, and which workspace lives in which. The
//! `default` store is every process's own `SLUICE_STORE_URL`; the others are registered here
//! with their URLs sealed, and reached through a pool per store opened on first use.

use crate::database::{self, DatabaseError};
use deadpool_postgres::Pool;
use serde::Serialize;
use sluice_proto::secrets::{MasterKey, Sealed};
use sluice_proto::StoreRoute;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::GenericClient;

/// The store every process is configured with.
pub const DEFAULT: &str = "default";

/// Connections each registered store's pool holds in the coordinator (profile look-ups).
const POOL_SIZE: usize = 2;

/// Why a store could not be registered, found or reached.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is taken.
    #[error("store {0:?} already exists")]
    Exists(String),
    /// No store has that name.
    #[error("store {name:?} does not exist; stores: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The stores there are.
        known: String,
    },
    /// No workspace has that name.
    #[error("workspace {0:?} does not exist")]
    NoWorkspace(String),
    /// A registered store's URL is sealed and this process has no master key.
    #[error("workspace's store {0:?} is registered with a sealed URL: set SLUICE_MASTER_KEY")]
    NoKey(String),
    /// The sealed URL could not be opened.
    #[error("store {name:?}: its URL could not be opened: {reason}")]
    Sealed {
        /// The store.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store's database could not be reached.
    #[error("store {name:?}: {source}")]
    Database {
        /// The store.
        name: String,
        /// What failed.
        #[source]
        source: DatabaseError,
    },
    /// The control plane failed.
    #[error("control plane: {0}")]
    Control(#[from] tokio_postgres::Error),
    /// No control-plane connection could be had.
    #[error("control plane: {0}")]
    ControlPool(#[from] deadpool_postgres::PoolError),
}

/// A store as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreItem {
    /// Its name.
    pub name: String,
    /// The workspaces that live in it.
    pub workspaces: i64,
    /// Profiles it held when last measured.
    pub profiles: i64,
    /// When that was; `None` if never.
    pub measured_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a store holds, counted on the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Measure {
    /// Profiles of every workspace in it.
    pub profiles: i64,
    /// Bytes its tables and indexes take on disk.
    pub bytes: i64,
}

/// Registers a store, its URL sealed under `key`; the caller has applied the stores'
/// migrations there first.
pub async fn register(
    client: &impl GenericClient,
    key: &MasterKey,
    name: &str,
    url: &str,
) -> Result<(), StoreError> {
    let sealed = serde_json::to_value(key.seal(url.as_bytes())).expect("sealed value serializes");
    let inserted = client
        .execute(
            "INSERT INTO control.stores (name, url) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &sealed],
        )
        .await?;
    match inserted {
        0 => Err(StoreError::Exists(name.to_string())),
        _ => Ok(()),
    }
}

/// Every store with its workspaces and last measured profiles, by name.
pub async fn list(client: &impl GenericClient) -> Result<Vec<StoreItem>, StoreError> {
    let rows = client
        .query(
            "SELECT s.name, (SELECT count(*) FROM control.workspaces w WHERE w.store = s.name),
                    s.profiles, s.measured_at
               FROM control.stores s ORDER BY s.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StoreItem {
            name: r.get(0),
            workspaces: r.get(1),
            profiles: r.get(2),
            measured_at: r.get(3),
        })
        .collect())
}

/// Records a store's profile count, which the choice of a new workspace's store reads.
pub async fn record_profiles(
    client: &impl GenericClient,
    name: &str,
    profiles: i64,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE control.stores SET profiles = $2, measured_at = now() WHERE name = $1",
            &[&name, &profiles],
        )
        .await?;
    Ok(())
}

/// Counts a store's profiles exactly and its size on disk.
pub async fn measure(client: &impl GenericClient) -> Result<Measure, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM profile_store.profiles),
                    (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'profile_store' AND c.relkind = 'r')",
            &[],
        )
        .await?;
    Ok(Measure {
        profiles: row.get(0),
        bytes: row.get(1),
    })
}

/// The planner's estimate of a store's profiles, cheap at any size; an exact count where the
/// table was never analyzed.
pub async fn estimate_profiles(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let estimate: f32 = client
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = 'profile_store.profiles'::regclass",
            &[],
        )
        .await?
        .get(0);
    if estimate >= 0.0 {
        return Ok(estimate as i64);
    }
    Ok(client
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await?
        .get(0))
}

/// Creates a workspace in the store named, or without one in the store with the fewest
/// profiles; an existing workspace is left where it is. Returns the workspace's store.
pub async fn create_workspace(
    client: &impl GenericClient,
    workspace: &str,
    store: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(store) = store {
        if !list(client).await?.iter().any(|s| s.name == store) {
            return Err(unknown(client, store).await);
        }
    }
    client
        .execute(
            "INSERT INTO control.workspaces (name, store)
             VALUES ($1, coalesce($2, control.least_loaded_store()))
             ON CONFLICT (name) DO NOTHING",
            &[&workspace, &store],
        )
        .await?;
    workspace_store(client, workspace).await
}

/// The name of the store a workspace lives in.
pub async fn workspace_store(
    client: &impl GenericClient,
    workspace: &str,
) -> Result<String, StoreError> {
    client
        .query_opt(
            "SELECT store FROM control.workspaces WHERE name = $1",
            &[&workspace],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NoWorkspace(workspace.to_string()))
}

/// A store's URL: `None` for the default store (each process's own `SLUICE_STORE_URL`).
pub async fn url(
    client: &impl GenericClient,
    key: Option<&MasterKey>,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt("SELECT url FROM control.stores WHERE name = $1", &[&name])
        .await?;
    let Some(row) = row else {
        return Err(unknown(client, name).await);
    };
    row.get::<_, Option<serde_json::Value>>(0)
        .map(|sealed| open(key, &route(name, sealed)?))
        .transpose()
}

/// The error for a store name no store has, listing the stores there are.
async fn unknown(client: &impl GenericClient, name: &str) -> StoreError {
    match list(client).await {
        Ok(stores) => StoreError::Unknown {
            name: name.to_string(),
            known: stores
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
        Err(e) => e,
    }
}

/// A registered store's route as chunks carry it.
fn route(name: &str, sealed: serde_json::Value) -> Result<StoreRoute, StoreError> {
    let url: Sealed = serde_json::from_value(sealed).map_err(|e| StoreError::Sealed {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(StoreRoute {
        name: name.to_string(),
        url,
    })
}

/// Opens a route's sealed URL.
pub fn open(key: Option<&MasterKey>, route: &StoreRoute) -> Result<String, StoreError> {
    let key = key.ok_or_else(|| StoreError::NoKey(route.name.clone()))?;
    let sealed = |reason: String| StoreError::Sealed {
        name: route.name.clone(),
        reason,
    };
    let bytes = key.open(&route.url).map_err(|e| sealed(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| sealed(e.to_string()))
}

/// The coordinator's way to every store: the default store's pool, and one pool per registered
/// store opened when a workspace living there is first read.
pub struct Stores {
    /// The control plane, which says where each workspace lives.
    pub control: Pool,
    /// The default store.
    pub default: Pool,
    key: Option<MasterKey>,
    opened: Mutex<HashMap<String, Pool>>,
}

impl Stores {
    /// The stores reached from the control plane `control`, with `default` the default store.
    pub fn new(control: Pool, default: Pool, key: Option<MasterKey>) -> Stores {
        Stores {
            control,
            default,
            key,
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of the store workspace `workspace_id` lives in.
    pub async fn for_workspace(&self, workspace_id: i64) -> Result<Pool, StoreError> {
        let client = self.control.get().await?;
        let row = client
            .query_one(
                "SELECT s.name, s.url FROM control.workspaces w
                   JOIN control.stores s ON s.name = w.store WHERE w.id = $1",
                &[&workspace_id],
            )
            .await?;
        match row.get::<_, Option<serde_json::Value>>(1) {
            None => Ok(self.default.clone()),
            Some(sealed) => self.pool(&route(&row.get::<_, String>(0), sealed)?),
        }
    }

    /// The pool of a registered store, opened on first use.
    pub fn pool(&self, route: &StoreRoute) -> Result<Pool, StoreError> {
        let mut opened = self.opened.lock().expect("store pools lock");
        if let Some(pool) = opened.get(&route.name) {
            return Ok(pool.clone());
        }
        let url = open(self.key.as_ref(), route)?;
        let pool = database::pool(&url, POOL_SIZE).map_err(|source| StoreError::Database {
            name: route.name.clone(),
            source,
        })?;
        opened.insert(route.name.clone(), pool.clone());
        Ok(pool)
    }
}

impl Stores {
    /// The pool of every store, by name: the default one and each registered one.
    pub async fn all(&self) -> Result<Vec<(String, Pool)>, StoreError> {
        let client = self.control.get().await?;
        let rows = client
            .query("SELECT name, url FROM control.stores ORDER BY name", &[])
            .await?;
        let mut pools = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            let pool = match row.get::<_, Option<serde_json::Value>>(1) {
                None => self.default.clone(),
                Some(sealed) => self.pool(&route(&name, sealed)?)?,
            };
            pools.push((name, pool));
        }
        Ok(pools)
    }

    /// Records every store's estimated profiles, which the choice of a new workspace's store
    /// reads; a store that cannot be reached keeps its last count.
    pub async fn measure_all(&self) -> Result<(), StoreError> {
        let control = self.control.get().await?;
        for (name, pool) in self.all().await? {
            let profiles = match pool.get().await {
                Ok(client) => estimate_profiles(&**client).await,
                Err(e) => {
                    tracing::warn!(store = %name, error = %e, "measuring a store");
                    continue;
                }
            };
            match profiles {
                Ok(profiles) => record_profiles(&**control, &name, profiles).await?,
                Err(e) => tracing::warn!(store = %name, error = %e, "measuring a store"),
            }
        }
        Ok(())
    }
}

/// How often the coordinator measures the stores.
const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Measures the stores every few minutes until shut down.
pub async fn watch(stores: std::sync::Arc<Stores>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        if let Err(e) = stores.measure_all().await {
            tracing::warn!(error = %e, "measuring the stores");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MEASURE_EVERY) => {}
        }
    }
}

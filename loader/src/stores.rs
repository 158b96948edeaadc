//! The stores a loader writes to: its own default store, and a pool per registered store that
//! a chunk's route names, opened (and migrated) the first time a chunk goes there.

use crate::load::LoadError;
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use sluice_proto::secrets::MasterKey;
use sluice_proto::StoreRoute;
use std::collections::HashMap;
use std::sync::Arc;

/// Opens a pool on a store's URL, applying the stores' migrations there first.
pub type OpenStore = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Pool, String>> + Send + Sync>;

/// Every store a loader has written to, by name.
pub struct StorePools {
    default: Pool,
    key: Option<MasterKey>,
    open: OpenStore,
    opened: tokio::sync::Mutex<HashMap<String, Pool>>,
}

impl StorePools {
    /// A loader's stores: `default` for chunks that name none; registered stores are opened
    /// with `key` (their URLs are sealed) and `open`.
    pub fn new(default: Pool, key: Option<MasterKey>, open: OpenStore) -> StorePools {
        StorePools {
            default,
            key,
            open,
            opened: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Only the default store: for loaders of a fleet with one store, and for tests.
    pub fn single(default: Pool) -> StorePools {
        let open: OpenStore = Arc::new(|_| {
            Box::pin(async { Err("this loader writes to its default store only".to_string()) })
        });
        StorePools::new(default, None, open)
    }

    /// The master key sealed routes are opened with, when this loader has one.
    pub fn key(&self) -> Option<&MasterKey> {
        self.key.as_ref()
    }

    /// The pool of the store a chunk goes to.
    pub async fn pool(&self, route: Option<&StoreRoute>) -> Result<Pool, LoadError> {
        let Some(route) = route else {
            return Ok(self.default.clone());
        };
        // Held while a store is opened, so two chunks never open the same store twice.
        let mut opened = self.opened.lock().await;
        if let Some(pool) = opened.get(&route.name) {
            return Ok(pool.clone());
        }
        let unreachable =
            |reason: String| LoadError::Store(format!("store {}: {reason}", route.name));
        let key = self.key.as_ref().ok_or_else(|| {
            unreachable("its URL is sealed: give loaders SLUICE_MASTER_KEY".to_string())
        })?;
        let url = key
            .open(&route.url)
            .map_err(|e| unreachable(e.to_string()))
            .and_then(|b| String::from_utf8(b).map_err(|e| unreachable(e.to_string())))?;
        let pool = (self.open)(url).await.map_err(unreachable)?;
        tracing::info!(store = %route.name, "writing to a registered store");
        opened.insert(route.name.clone(), pool.clone());
        Ok(pool)
    }
}

//! Telling a worker whether it holds the fleet's master key before it takes any work: the
//! coordinator seals a known text with its key into the object store, and a worker that
//! cannot open it says not-ready instead of failing every chunk it is sent.

use crate::secrets::{MasterKey, Sealed, SecretError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Where the probe lives in the object store.
pub const PROBE_PATH: &str = "fleet/master-key-probe.json";

/// The text the probe seals.
const PROBE_TEXT: &[u8] = b"sluice master key probe";

/// What a worker learned from the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// This process opens what the fleet seals.
    Matches,
    /// This process holds another key than the one the fleet seals with.
    Differs,
    /// No coordinator has published a probe yet.
    Unknown,
}

/// Why the probe could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The object store failed.
    #[error("the master key probe at {PROBE_PATH}: {0}")]
    Storage(String),
}

/// Seals the probe with the coordinator's key, replacing any earlier one.
pub async fn publish(store: &dyn ObjectStore, key: &MasterKey) -> Result<(), ProbeError> {
    let sealed = serde_json::to_vec(&key.seal(PROBE_TEXT)).expect("a sealed value serializes");
    store
        .put(&Path::from(PROBE_PATH), PutPayload::from(sealed))
        .await
        .map_err(|e| ProbeError::Storage(e.to_string()))?;
    Ok(())
}

/// Opens the probe with this process's key.
pub async fn check(store: &dyn ObjectStore, key: &MasterKey) -> Result<KeyCheck, ProbeError> {
    let bytes = match store.get(&Path::from(PROBE_PATH)).await {
        Ok(found) => found
            .bytes()
            .await
            .map_err(|e| ProbeError::Storage(e.to_string()))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(KeyCheck::Unknown),
        Err(e) => return Err(ProbeError::Storage(e.to_string())),
    };
    let sealed: Sealed =
        serde_json::from_slice(&bytes).map_err(|e| ProbeError::Storage(e.to_string()))?;
    Ok(match key.open(&sealed) {
        Ok(text) if text == PROBE_TEXT => KeyCheck::Matches,
        Ok(_) | Err(SecretError::WrongKey { .. } | SecretError::Corrupt) => KeyCheck::Differs,
        Err(e) => return Err(ProbeError::Storage(e.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_worker_knows_whether_it_holds_the_fleets_key() {
        let store = InMemory::new();
        let fleet = MasterKey::from_hex(&MasterKey::generate_hex()).unwrap();
        let other = MasterKey::from_hex(&MasterKey::generate_hex()).unwrap();
        assert_eq!(check(&store, &fleet).await.unwrap(), KeyCheck::Unknown);
        publish(&store, &fleet).await.unwrap();
        assert_eq!(check(&store, &fleet).await.unwrap(), KeyCheck::Matches);
        assert_eq!(check(&store, &other).await.unwrap(), KeyCheck::Differs);
    }
}

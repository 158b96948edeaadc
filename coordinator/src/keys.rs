//! Master-key rotation: every secret at rest (connection credentials, webhook signing
//! secrets, registered stores' URLs, destinations' credentials) sealed again under the current key, in one transaction, while the fleet runs.
//! Processes hold the new key as current and the old one as previous during the rotation, so
//! messages sealed either way still open.

use sluice_proto::secrets::{MasterKey, Sealed};

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Secrets sealed again under the current key.
    pub resealed: u64,
    /// Secrets already under the current key.
    pub current: u64,
}

/// Why a rotation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// A stored secret could not be opened with any key held.
    #[error("{table} row {id}: {reason}; give the key that sealed it in SLUICE_PREVIOUS_MASTER_KEYS (nothing was changed)")]
    Unopenable {
        /// The table holding it.
        table: &'static str,
        /// Its row.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

/// The tables and columns that hold sealed values.
const SEALED: [(&str, &str); 4] = [
    ("control.connections", "credentials"),
    ("control.destinations", "credentials"),
    ("control.notification_targets", "secret"),
    ("control.stores", "url"),
];

/// Seals every secret at rest under `key`, opening each with the key that sealed it.
pub async fn rotate(
    client: &mut tokio_postgres::Client,
    key: &MasterKey,
) -> Result<Rotation, RotateError> {
    let tx = client.transaction().await?;
    let mut rotation = Rotation::default();
    for (table, column) in SEALED {
        let rows = tx
            .query(
                &format!("SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY id FOR UPDATE"),
                &[],
            )
            .await?;
        for row in rows {
            let id: i64 = row.get(0);
            let unopenable = |reason: String| RotateError::Unopenable { table, id, reason };
            let sealed: Sealed = serde_json::from_value(row.get(1))
                .map_err(|e| unopenable(format!("not a sealed value: {e}")))?;
            match key.reseal(&sealed).map_err(|e| unopenable(e.to_string()))? {
                None => rotation.current += 1,
                Some(resealed) => {
                    let value = serde_json::to_value(resealed).expect("sealed value serializes");
                    tx.execute(
                        &format!("UPDATE {table} SET {column} = $2 WHERE id = $1"),
                        &[&id, &value],
                    )
                    .await?;
                    rotation.resealed += 1;
                }
            }
        }
    }
    tx.commit().await?;
    tracing::info!(
        key = key.id(),
        resealed = rotation.resealed,
        "secrets sealed under the current master key"
    );
    Ok(rotation)
}

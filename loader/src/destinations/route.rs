//! A chunk routed to a destination instead of the stores: its rows are staged as for the
//! stores, the destination's API is opened with its sealed credentials, the rows are
//! delivered at this loader's share of the destination's request rate, and what happened
//! becomes the chunk's stats and error stream.

use super::deliver::{deliver, DeliverError, Delivery};
use super::{braze::Braze, clevertap::CleverTap, klaviyo::Klaviyo, Api, DeliveryError, Sender};
use crate::load::{normalized_batches, LoadError, Loader};
use crate::staging::stage_rows;
use sluice_proto::destination::{DestinationKind, DestinationRoute};
use sluice_proto::secrets::MasterKey;
use sluice_proto::{rejection, ChunkWork, ImportMode, LoadStats, Records, RowRejection};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// The senders of this loader, one per destination, each at this loader's share of the
/// destination's fleet-wide rate (made anew when the share or the URL changes).
#[derive(Default)]
pub struct Senders {
    senders: Mutex<HashMap<(i64, String), Made>>,
}

/// A sender, with the URL and rate it was made for.
struct Made {
    url: String,
    rate: NonZeroU32,
    sender: Arc<Sender>,
}

impl Senders {
    /// The sender to a workspace's destination at `rate` requests per second.
    fn get(&self, workspace: i64, route: &DestinationRoute, rate: NonZeroU32) -> Arc<Sender> {
        let mut senders = self.senders.lock().expect("senders lock");
        let key = (workspace, route.name.clone());
        match senders.get(&key) {
            Some(made) if made.url == route.url && made.rate == rate => made.sender.clone(),
            _ => {
                let sender = Arc::new(Sender::new(&route.url, rate));
                let made = Made {
                    url: route.url.clone(),
                    rate,
                    sender: sender.clone(),
                };
                senders.insert(key, made);
                sender
            }
        }
    }
}

/// A destination's API with its credentials opened.
pub fn api(
    kind: DestinationKind,
    credentials: &BTreeMap<String, String>,
) -> Result<Box<dyn Api>, String> {
    let field = |name: &str| {
        credentials
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the {kind} destination's credentials have no {name}"))
    };
    Ok(match kind {
        DestinationKind::Braze => Box::new(Braze {
            api_key: field("api_key")?,
        }),
        DestinationKind::Clevertap => Box::new(CleverTap {
            account_id: field("account_id")?,
            passcode: field("passcode")?,
        }),
        DestinationKind::Klaviyo => Box::new(Klaviyo {
            api_key: field("api_key")?,
        }),
    })
}

/// Opens a route's sealed credentials.
fn credentials(
    key: Option<&MasterKey>,
    route: &DestinationRoute,
) -> Result<BTreeMap<String, String>, LoadError> {
    let failed = |reason: String| LoadError::Destination {
        retryable: false,
        message: format!("destination {}: {reason}", route.name),
    };
    let key = key.ok_or_else(|| {
        failed("its credentials are sealed: give loaders SLUICE_MASTER_KEY".to_string())
    })?;
    let bytes = key
        .open(&route.credentials)
        .map_err(|e| failed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))
}

impl From<DeliverError> for LoadError {
    fn from(e: DeliverError) -> Self {
        match e {
            DeliverError::Delivery(DeliveryError::Refused { .. }) => LoadError::Destination {
                retryable: false,
                message: e.to_string(),
            },
            DeliverError::Delivery(DeliveryError::Unavailable { .. }) => LoadError::Destination {
                retryable: true,
                message: e.to_string(),
            },
            DeliverError::Ledger(m) => LoadError::Store(m),
        }
    }
}

/// Delivers a chunk to its destination; its stats and the rows the platform refused.
pub async fn deliver_chunk(
    work: &ChunkWork,
    route: &DestinationRoute,
    deps: &Loader,
) -> Result<(LoadStats, Vec<RowRejection>), LoadError> {
    let mapping = &work.mapping;
    let mut rows = Vec::new();
    for batch in normalized_batches(deps, work).await?.0 {
        let batch = batch.map_err(|e| LoadError::Storage(e.to_string()))?;
        rows.extend(stage_rows(&batch, mapping, work.chunk.import_id)?);
    }
    let staged = rows.len() as u64;
    let api = api(route.kind, &credentials(deps.stores.key(), route)?).map_err(|message| {
        LoadError::Destination {
            retryable: false,
            message,
        }
    })?;
    let rate = deps.limiter.rate(Some(route.requests_per_second));
    let sender = deps.senders.get(work.chunk.workspace_id, route, rate);
    // The ledger of delivered events lives in the workspace's store.
    let pool = deps.stores.pool(work.store.as_ref()).await?;
    let delivery = Delivery {
        workspace: work.chunk.workspace_id,
        destination: &route.name,
        api: api.as_ref(),
        sender: &sender,
        records: &mapping.records,
        update_only: mapping.mode == ImportMode::UpdateOnly,
        dry_run: work.dry_run,
    };
    let done = deliver(&pool, &delivery, rows).await?;
    let refused = done.refused.len() as u64;
    let stats = LoadStats {
        rows_loaded: staged - refused,
        rows_rejected: refused,
        rejected_by_reason: rejection::count_by_reason(done.refused.iter().map(|r| &r.reason)),
        events_duplicate: match mapping.records {
            Records::Events(_) => done.already_delivered,
            _ => 0,
        },
        records_delivered: done.accepted,
        delivery_requests: done.requests,
        delivery_sample: done.sample,
        ..LoadStats::default()
    };
    Ok((stats, done.refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_opens_with_its_kinds_credentials_and_names_a_missing_one() {
        let credentials = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let braze = api(DestinationKind::Braze, &credentials(&[("api_key", "k")])).unwrap();
        assert_eq!(braze.kind(), "braze");
        let missing = api(
            DestinationKind::Clevertap,
            &credentials(&[("account_id", "a")]),
        )
        .err()
        .unwrap();
        assert_eq!(
            missing,
            "the clevertap destination's credentials have no passcode"
        );
    }

    #[test]
    fn a_refused_request_fails_the_chunk_and_an_unavailable_one_is_retried() {
        let refused: LoadError = DeliverError::Delivery(DeliveryError::Refused {
            kind: "braze",
            status: 401,
            message: "Invalid API key".into(),
        })
        .into();
        let stage: sluice_proto::StageError = refused.into();
        assert!(!stage.retryable);
        assert_eq!(stage.code.as_str(), "destination_refused");
        assert!(stage.message.contains("Invalid API key"));
        let unavailable: LoadError = DeliverError::Delivery(DeliveryError::Unavailable {
            kind: "klaviyo",
            message: "503".into(),
        })
        .into();
        let stage: sluice_proto::StageError = unavailable.into();
        assert!(stage.retryable);
        assert_eq!(stage.code.as_str(), "destination_unavailable");
    }
}

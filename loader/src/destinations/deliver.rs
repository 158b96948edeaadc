//! One chunk's delivery to a destination: events already delivered (by the destination's
//! ledger in the store, or earlier in the same chunk) are skipped, the rest sent in the
//! platform's requests, and each request's delivered events recorded once the platform
//! accepted it, so a replay or a resync never sends an event twice. A dry run builds the same
//! requests and reports them without sending anything.

use super::{Api, DeliveryError, RecordError, Request, Sender};
use crate::staging::StagedRow;
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use sluice_proto::rejection::{self, Reason, RowRejection};
use sluice_proto::Records;
use std::collections::{BTreeMap, HashSet};

/// What a delivery is: where to, and how the rows are read.
pub struct Delivery<'a> {
    /// The workspace the rows belong to.
    pub workspace: i64,
    /// The destination's name, which keys its ledger.
    pub destination: &'a str,
    /// The destination's API.
    pub api: &'a dyn Api,
    /// How requests are sent.
    pub sender: &'a Sender,
    /// What the rows are.
    pub records: &'a Records,
    /// Rows may only update users the platform already has.
    pub update_only: bool,
    /// Build the requests and report them; send nothing.
    pub dry_run: bool,
}

/// What a delivery did.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Records the platform accepted (or, in a dry run, would be sent).
    pub accepted: u64,
    /// Events not sent because they had been delivered before.
    pub already_delivered: u64,
    /// Records the platform refused or that no request can carry, as the error stream
    /// lists them.
    pub refused: Vec<RowRejection>,
    /// Requests sent (or, in a dry run, that would be).
    pub requests: u64,
    /// A dry run's first request as it would be sent, credentials masked.
    pub sample: Option<Value>,
}

/// Why a delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The platform did not accept a request.
    #[error("{0}")]
    Delivery(#[from] DeliveryError),
    /// The ledger could not be read or written.
    #[error("delivery ledger: {0}")]
    Ledger(String),
}

/// Delivers `rows`.
pub async fn deliver(
    pool: &Pool,
    delivery: &Delivery<'_>,
    rows: Vec<StagedRow>,
) -> Result<Delivered, DeliverError> {
    let events = matches!(delivery.records, Records::Events(_));
    let mut done = Delivered::default();
    let rows = match events {
        true => {
            let before = rows.len();
            let fresh = undelivered(pool, delivery, rows).await?;
            done.already_delivered = (before - fresh.len()) as u64;
            fresh
        }
        false => rows,
    };
    let (requests, unnamed) = delivery
        .api
        .requests(delivery.records, &rows, delivery.update_only);
    let kind = delivery.api.kind();
    done.refused = unnamed.iter().map(|e| refusal(kind, &rows, e)).collect();
    done.requests = requests.len() as u64;
    if delivery.dry_run {
        done.accepted = requests.iter().map(|r| r.rows.len() as u64).sum();
        done.sample = requests.first().map(|r| sample(delivery, r));
        return Ok(done);
    }
    for request in &requests {
        let refused = delivery.sender.send(delivery.api, request).await?;
        let refused_rows: HashSet<usize> = refused.iter().map(|e| e.row).collect();
        let accepted: Vec<usize> = request
            .rows
            .iter()
            .copied()
            .filter(|row| !refused_rows.contains(row))
            .collect();
        done.accepted += accepted.len() as u64;
        done.refused
            .extend(refused.iter().map(|e| refusal(kind, &rows, e)));
        if events {
            let keys: Vec<&str> = accepted
                .iter()
                .filter_map(|&row| rows[row].dedup_key.as_deref())
                .collect();
            record(pool, delivery, &keys).await?;
        }
    }
    Ok(done)
}

/// A record the platform refused as a row of the error stream: the platform's message, and
/// the row's identities and properties as sent.
fn refusal(kind: &str, rows: &[StagedRow], error: &RecordError) -> RowRejection {
    let row = &rows[error.row];
    let mut values = match row.props.to_value() {
        Value::Object(props) => rejection::object_values(props),
        _ => BTreeMap::new(),
    };
    for (name, value) in [
        ("identity", &row.identity),
        ("external_id", &row.external_id),
        ("email", &row.email),
        ("phone", &row.phone),
    ] {
        if let Some(value) = value {
            values.insert(name.to_string(), Some(rejection::truncate(value)));
        }
    }
    RowRejection {
        row_key: row.key.clone(),
        column: kind.to_string(),
        value: None,
        reason: Reason::DestinationRefused,
        message: format!("{kind}: {}", error.message),
        row: values,
    }
}

/// The rows whose events the destination has not had: not in its ledger, and the first of
/// each dedup key in the chunk.
async fn undelivered(
    pool: &Pool,
    delivery: &Delivery<'_>,
    rows: Vec<StagedRow>,
) -> Result<Vec<StagedRow>, DeliverError> {
    let keys: Vec<&str> = rows.iter().filter_map(|r| r.dedup_key.as_deref()).collect();
    let client = pool
        .get()
        .await
        .map_err(|e| DeliverError::Ledger(e.to_string()))?;
    let sent: HashSet<String> = client
        .query(
            "SELECT dedup_key FROM profile_store.delivered_events
              WHERE workspace_id = $1 AND destination = $2 AND dedup_key = ANY($3)",
            &[&delivery.workspace, &delivery.destination, &keys],
        )
        .await
        .map_err(|e| DeliverError::Ledger(e.to_string()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = HashSet::new();
    Ok(rows
        .into_iter()
        .filter(|r| match &r.dedup_key {
            Some(key) => !sent.contains(key) && seen.insert(key.clone()),
            None => true,
        })
        .collect())
}

/// Records events the destination accepted.
async fn record(pool: &Pool, delivery: &Delivery<'_>, keys: &[&str]) -> Result<(), DeliverError> {
    if keys.is_empty() {
        return Ok(());
    }
    let client = pool
        .get()
        .await
        .map_err(|e| DeliverError::Ledger(e.to_string()))?;
    client
        .execute(
            "INSERT INTO profile_store.delivered_events (workspace_id, destination, dedup_key)
             SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
            &[&delivery.workspace, &delivery.destination, &keys],
        )
        .await
        .map_err(|e| DeliverError::Ledger(e.to_string()))?;
    Ok(())
}

/// A request as it would be sent: its method, URL and body, with the credentials' headers
/// shown masked.
fn sample(delivery: &Delivery<'_>, request: &Request) -> Value {
    json!({
        "method": "POST",
        "url": format!("{}{}", delivery.sender.url, request.path),
        "headers": delivery
            .api
            .credential_headers()
            .iter()
            .map(|name| (name.to_string(), json!("********")))
            .collect::<serde_json::Map<_, _>>(),
        "content_type": delivery.api.content_type(),
        "records": request.rows.len(),
        "body": abridged(&request.body),
    })
}

/// Records shown of each list in a sample request's body.
const SAMPLE_RECORDS: usize = 3;

/// A body with each list cut to its first [`SAMPLE_RECORDS`] items: a request of 10,000
/// profiles is shown by its shape, not whole.
fn abridged(body: &Value) -> Value {
    match body {
        Value::Array(items) => {
            Value::Array(items.iter().take(SAMPLE_RECORDS).map(abridged).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), abridged(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

//! Delivery to engagement platforms, against a stand-in of each platform's API that checks
//! the documented request format and batch limits, answers per-record errors, 429s with
//! `Retry-After` and 5xx, and counts what it was sent.

mod common;
#[path = "../loader/tests/common/mod.rs"]
mod store_db;

use common::platforms::{self, assert_waits_honoured, held};
use sluice_loader::destinations::braze::{Braze, TRACK_BATCH};
use sluice_loader::destinations::clevertap::{CleverTap, UPLOAD_BATCH};
use sluice_loader::destinations::deliver::{deliver, Delivery};
use sluice_loader::destinations::klaviyo::{Klaviyo, PROFILE_BATCH};
use sluice_loader::destinations::{Api, Sender};
use sluice_loader::props::Props;
use sluice_loader::staging::StagedRow;
use sluice_proto::{EventMapping, EventName, EventTime, Records, UnknownIdentity};
use std::num::NonZeroU32;

fn row(i: usize, email: &str) -> StagedRow {
    let mut props = Props::default();
    props.push(
        "tier".into(),
        None,
        if i.is_multiple_of(2) {
            "gold"
        } else {
            "silver"
        },
    );
    StagedRow {
        key: i.to_string(),
        updated_at: chrono::Utc::now(),
        external_id: Some(format!("user-{i}")),
        email: Some(email.to_string()),
        props,
        event_name: Some("Signed Up".into()),
        event_time: Some(chrono::Utc::now()),
        dedup_key: Some(format!("event-{i}")),
        ..Default::default()
    }
}

/// Sign-up events, one per row.
fn sign_ups() -> Records {
    Records::Events(Box::new(EventMapping {
        name: EventName::Value("Signed Up".into()),
        time: EventTime {
            column: "created_at".into(),
            format: None,
            timezone: None,
            if_missing: Default::default(),
        },
        dedup_key: None,
        unknown_identity: UnknownIdentity::Create,
        purchase: None,
        retention_days: None,
    }))
}

#[tokio::test]
async fn clevertap_gets_every_record_once_in_calls_of_1000_with_unprocessed_records_named() {
    let stand_in = platforms::start(&[
        "--account-id",
        "ACC",
        "--passcode",
        "PASS",
        "--throttle-every",
        "3",
        "--fail-every",
        "5",
    ]);
    let url = format!("http://127.0.0.1:{}", stand_in.port);
    let clevertap = CleverTap {
        account_id: "ACC".into(),
        passcode: "PASS".into(),
    };
    let mut sender = Sender::new(&url, NonZeroU32::new(200).unwrap());
    sender.backoff = std::time::Duration::from_millis(50);
    let rows: Vec<StagedRow> = (0..2_500)
        .map(|i| {
            row(
                i,
                if i % 1_000 == 7 {
                    "nobody"
                } else {
                    "a@example.com"
                },
            )
        })
        .collect();
    let mut refused = Vec::new();
    for records in [Records::Profiles, sign_ups()] {
        let (requests, unnamed) = clevertap.requests(&records, &rows, false);
        assert!(unnamed.is_empty());
        for request in &requests {
            refused.extend(sender.send(&clevertap, request).await.unwrap());
        }
    }
    let mut refused_rows: Vec<usize> = refused.iter().map(|e| e.row).collect();
    refused_rows.sort();
    assert_eq!(refused_rows, vec![7, 1_007, 2_007]);
    assert!(
        refused[0].message.contains("Invalid email") && refused[0].message.contains("code 515")
    );

    let held = held(stand_in.port).await;
    assert_eq!(held["max_batch"], UPLOAD_BATCH as u64);
    assert_eq!(held["attributes"].as_object().unwrap().len(), 2_497);
    assert_eq!(held["attributes"]["identity:user-2"]["tier"], "gold");
    let delivered = held["events"].as_object().unwrap();
    assert_eq!(delivered.len(), 2_500);
    assert!(
        delivered.values().all(|e| e["count"] == 1),
        "every event once"
    );
    assert_waits_honoured(&held);

    let wrong = CleverTap {
        account_id: "ACC".into(),
        passcode: "wrong".into(),
    };
    let (requests, _) = wrong.requests(&Records::Profiles, &rows[..1], false);
    let err = sender.send(&wrong, &requests[0]).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn braze_gets_every_record_once_in_batches_of_75_and_its_429s_are_waited_out() {
    let stand_in = platforms::start(&[
        "--api-key",
        "secret-key",
        "--throttle-every",
        "7",
        "--fail-every",
        "11",
    ]);
    let url = format!("http://127.0.0.1:{}", stand_in.port);
    let braze = Braze {
        api_key: "secret-key".into(),
    };
    let mut sender = Sender::new(&url, NonZeroU32::new(200).unwrap());
    sender.backoff = std::time::Duration::from_millis(50);
    let rows: Vec<StagedRow> = (0..1_000)
        .map(|i| {
            row(
                i,
                if i % 250 == 3 {
                    "not-an-email"
                } else {
                    "a@example.com"
                },
            )
        })
        .collect();

    let (requests, unnamed) = braze.requests(&Records::Profiles, &rows, false);
    assert!(unnamed.is_empty());
    let mut refused = Vec::new();
    for request in &requests {
        refused.extend(sender.send(&braze, request).await.unwrap());
    }
    let mut refused_rows: Vec<usize> = refused.iter().map(|e| e.row).collect();
    refused_rows.sort();
    assert_eq!(refused_rows, vec![3, 253, 503, 753]);
    assert!(
        refused[0].message.contains("Invalid email address"),
        "{refused:?}"
    );

    let (requests, _) = braze.requests(&sign_ups(), &rows, false);
    for request in &requests {
        sender.send(&braze, request).await.unwrap();
    }

    let held = held(stand_in.port).await;
    assert_eq!(
        held["max_batch"], TRACK_BATCH as u64,
        "{}",
        held["max_batch"]
    );
    assert_eq!(held["attributes"].as_object().unwrap().len(), 996);
    assert_eq!(held["attributes"]["external_id:user-0"]["tier"], "gold");
    let delivered = held["events"].as_object().unwrap();
    assert_eq!(delivered.len(), 1_000);
    assert!(
        delivered.values().all(|e| e["count"] == 1),
        "every event once"
    );
    assert_waits_honoured(&held);

    // A wrong key is refused as a whole, with the platform's message.
    let wrong = Braze {
        api_key: "wrong".into(),
    };
    let (requests, _) = wrong.requests(&Records::Profiles, &rows[..1], false);
    let err = sender.send(&wrong, &requests[0]).await.unwrap_err();
    assert!(err.to_string().contains("Invalid API key"), "{err}");
}

#[tokio::test]
async fn klaviyo_gets_every_profile_and_event_once_through_its_bulk_jobs() {
    let stand_in = platforms::start(&[
        "--klaviyo-key",
        "pk_test",
        "--throttle-every",
        "4",
        "--fail-every",
        "9",
    ]);
    let url = format!("http://127.0.0.1:{}", stand_in.port);
    let klaviyo = Klaviyo {
        api_key: "pk_test".into(),
    };
    let mut sender = Sender::new(&url, NonZeroU32::new(50).unwrap());
    sender.backoff = std::time::Duration::from_millis(50);
    // 150 bad emails: their errors come on two pages.
    let rows: Vec<StagedRow> = (0..12_000)
        .map(|i| {
            row(
                i,
                if i % 80 == 5 {
                    "broken"
                } else {
                    "a@example.com"
                },
            )
        })
        .collect();
    let mut refused = Vec::new();
    for records in [Records::Profiles, sign_ups()] {
        let (requests, unnamed) = klaviyo.requests(&records, &rows, false);
        assert!(unnamed.is_empty());
        for request in &requests {
            refused.extend(sender.send(&klaviyo, request).await.unwrap());
        }
    }
    let mut refused_rows: Vec<usize> = refused.iter().map(|e| e.row).collect();
    refused_rows.sort();
    let expected: Vec<usize> = (0..12_000).filter(|i| i % 80 == 5).collect();
    assert_eq!(refused_rows, expected);
    assert!(
        refused[0].message.contains("Invalid email address"),
        "{refused:?}"
    );

    let held = held(stand_in.port).await;
    assert_eq!(held["max_batch"], PROFILE_BATCH as u64);
    assert_eq!(
        held["attributes"].as_object().unwrap().len(),
        12_000 - expected.len()
    );
    let delivered = held["events"].as_object().unwrap();
    assert_eq!(delivered.len(), 12_000);
    assert!(
        delivered.values().all(|e| e["count"] == 1),
        "every event once"
    );
    assert_waits_honoured(&held);

    let wrong = Klaviyo {
        api_key: "pk_wrong".into(),
    };
    let (requests, _) = wrong.requests(&Records::Profiles, &rows[..1], false);
    let err = sender.send(&wrong, &requests[0]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Incorrect authentication credentials"),
        "{err}"
    );
}

/// A database of the test's own holding the store's schema (dropped with it), and a pool on it.
async fn store() -> (store_db::Store, deadpool_postgres::Pool) {
    let store = store_db::store(&format!("dest_{}", uuid::Uuid::new_v4().simple())).await;
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(store.url.clone());
    let pool = config
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .unwrap();
    (store, pool)
}

#[tokio::test]
async fn a_resync_sends_no_event_twice_and_a_dry_run_sends_nothing() {
    let stand_in = platforms::start(&["--api-key", "secret-key", "--throttle-every", "13"]);
    let (_store, pool) = store().await;
    let braze = Braze {
        api_key: "secret-key".into(),
    };
    let sender = Sender::new(
        &format!("http://127.0.0.1:{}", stand_in.port),
        NonZeroU32::new(500).unwrap(),
    );
    let records = sign_ups();
    let delivery = |dry_run| Delivery {
        workspace: 1,
        destination: "braze",
        api: &braze,
        sender: &sender,
        records: &records,
        update_only: false,
        dry_run,
    };
    let mut rows: Vec<StagedRow> = (0..3_000).map(|i| row(i, "a@example.com")).collect();
    // A row repeated in the chunk is one event.
    rows.push(row(42, "a@example.com"));

    let dry = deliver(&pool, &delivery(true), rows.clone()).await.unwrap();
    assert_eq!((dry.accepted, dry.requests), (3_000, 40));
    let sample = dry.sample.unwrap();
    assert_eq!(sample["headers"]["Authorization"], "********");
    assert!(!sample.to_string().contains("secret-key"), "{sample}");
    // The body is shown by its shape: its first records, and how many it holds.
    assert_eq!(sample["records"], TRACK_BATCH);
    assert_eq!(sample["body"]["events"].as_array().unwrap().len(), 3);
    assert_eq!(
        held(stand_in.port).await["requests"],
        0,
        "a dry run sends nothing"
    );

    let first = deliver(&pool, &delivery(false), rows.clone())
        .await
        .unwrap();
    assert_eq!((first.accepted, first.already_delivered), (3_000, 1));
    let again = deliver(&pool, &delivery(false), rows).await.unwrap();
    assert_eq!(
        (again.accepted, again.already_delivered, again.requests),
        (0, 3_001, 0)
    );
    let held = held(stand_in.port).await;
    let delivered = held["events"].as_object().unwrap();
    assert_eq!(delivered.len(), 3_000);
    assert!(
        delivered.values().all(|e| e["count"] == 1),
        "every event once"
    );
}

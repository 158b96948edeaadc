//! Run notifications through the whole fleet: a webhook receiver in the test checks each
//! delivery's HMAC-SHA256 signature and timestamp with its own HMAC, refuses the first
//! delivery to force a retry, and must see `run.started` then `run.succeeded` (or
//! `run.failed`) once each. Emails go to an SMTP sink in the test.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::Fleet;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-0123456789abcdef";

/// What the receiver saw: accepted events (id, type, run id), and every request.
#[derive(Default)]
struct Received {
    accepted: Mutex<Vec<(String, String, String)>>,
    requests: AtomicUsize,
    refused_first: AtomicBool,
    bad_signatures: AtomicUsize,
}

/// Checks `t=<unix>,v1=<hex>` against our own HMAC of `"<t>.<body>"`, within 5 minutes.
fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("Sluice-Signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

async fn receive(State(seen): State<Arc<Received>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    if !signed(&headers, &body) {
        seen.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if !seen.refused_first.swap(true, Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = headers["Sluice-Event-Id"].to_str().unwrap().to_string();
    assert_eq!(event["id"], id.as_str());
    let mut accepted = seen.accepted.lock().unwrap();
    // A receiver de-duplicates by event id; the fleet must not need it to.
    accepted.push((
        id,
        event["type"].as_str().unwrap().to_string(),
        event["run"]["run_id"].as_str().unwrap().to_string(),
    ));
    StatusCode::NO_CONTENT
}

/// Starts the receiver; returns its URL and what it sees.
async fn receiver() -> (String, Arc<Received>) {
    let seen = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/hooks/sluice", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/sluice", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Waits until `n` events were accepted.
async fn accepted(seen: &Received, n: usize) -> Vec<(String, String, String)> {
    let started = Instant::now();
    loop {
        let got = seen.accepted.lock().unwrap().clone();
        if got.len() >= n {
            // Anything more would come now: give a late duplicate the time to show.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return seen.accepted.lock().unwrap().clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "accepted so far: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spec_with_webhook(fleet: &Fleet, url: &str) -> String {
    common::users_spec(fleet, 400).replace(
        "    chunk_rows: 400\n",
        &format!(
            "    chunk_rows: 400\n    notify:\n      webhooks:\n        - {{ url: \"{url}\", secret: \"{SECRET}\" }}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_hears_started_then_succeeded_once_each_signed_and_retried() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 1_000).await;
    let (url, seen) = receiver().await;
    fleet.apply_ok(&spec_with_webhook(&fleet, &url));
    // The signing secret is sealed, not kept with the import's spec.
    let stored: String = fleet
        .control()
        .await
        .query_one(
            "SELECT (SELECT string_agg(spec::text, '') FROM control.imports) || (SELECT string_agg(secret::text, '') FROM control.notification_targets)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.contains(&url) && !stored.contains(SECRET),
        "{stored}"
    );

    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    let got = accepted(&seen, 2).await;
    let types: Vec<&str> = got.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(types, ["run.started", "run.succeeded"], "{got:?}");
    assert!(got
        .iter()
        .all(|(_, _, r)| r == run["run_id"].as_str().unwrap()));
    assert_ne!(got[0].0, got[1].0, "each event has its own id");
    assert_eq!(seen.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        3,
        "the refused first delivery was tried again, and nothing else twice"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_hears_a_failed_run() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 100).await;
    let (url, seen) = receiver().await;
    fleet.apply_ok(&spec_with_webhook(&fleet, &url));
    warehouse
        .batch_execute("DROP TABLE public.users")
        .await
        .unwrap();
    fleet.start("all", &["--max-attempts", "1"]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "failed", "{run}");
    let got = accepted(&seen, 2).await;
    let types: Vec<&str> = got.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(types, ["run.started", "run.failed"], "{got:?}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_tells_an_address_the_events_it_chose() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 100).await;
    let (port, mails) = common::smtp::smtp_sink().await;
    fleet.apply_ok(&common::users_spec(&fleet, 400).replace(
        "    chunk_rows: 400\n",
        "    chunk_rows: 400\n    notify: { emails: [{ address: ops@example.com, on: [run.started, run.succeeded] }] }\n",
    ));
    fleet.start("all", &["--smtp-url", &format!("smtp://127.0.0.1:{port}")]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    let started = Instant::now();
    while mails.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "mails: {:?}",
            mails.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails.iter().all(|(to, _)| to == &["ops@example.com"]),
        "{mails:?}"
    );
    assert!(
        mails[0]
            .1
            .contains("Subject: [Sluice] acme/users: run started"),
        "{}",
        mails[0].1
    );
    assert!(
        mails[1]
            .1
            .contains("Subject: [Sluice] acme/users: run succeeded"),
        "{}",
        mails[1].1
    );
    assert!(mails[1].1.contains("rows read: 100"), "{}", mails[1].1);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_runs_pause_the_import_and_the_webhook_hears_it() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 100).await;
    let (url, seen) = receiver().await;
    fleet.apply_ok(
        &spec_with_webhook(&fleet, &url)
            .replace("    notify:", "    pause_after_failures: 2\n    notify:"),
    );
    warehouse
        .batch_execute("DROP TABLE public.users")
        .await
        .unwrap();
    fleet.start("all", &["--max-attempts", "1"]);
    assert_eq!(fleet.run("acme", "users")["status"], "failed");
    assert_eq!(
        fleet.import_view("users")["state"],
        "ready",
        "one failure is not enough"
    );
    assert_eq!(fleet.run("acme", "users")["status"], "failed");
    let view = fleet.import_view("users");
    assert_eq!(view["state"], "paused", "{view}");
    assert!(
        view.to_string()
            .contains("paused after 2 failed runs in a row"),
        "{view}"
    );
    let got = accepted(&seen, 5).await;
    let types: Vec<&str> = got.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "run.started",
            "run.failed",
            "run.started",
            "run.failed",
            "import.paused"
        ],
        "{got:?}"
    );
    fleet.cleanup().await;
}

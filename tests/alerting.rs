//! Alerting through the whole fleet, with a local HTTP receiver (standing in for a webhook
//! endpoint and a Slack incoming webhook) and a local SMTP sink: an email target with the
//! default events hears a failed run and a pause and nothing of 20 successful runs; alert
//! rules fire once and resolve once, time moved by shifting the import's history back rather
//! than by waiting; every notification links to the run page under `SLUICE_PUBLIC_URL`; the
//! Slack body follows Block Kit's documented shape; no secret reaches a log.

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::Fleet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-0123456789abcdef";
const PUBLIC: &str = "https://sluice.example.com";
const SLACK_PATH: &str = "services/T000/B000/Xs3cretSlackToken";

/// Bodies received, by path (`hook` or the Slack path).
type Inbox = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn receive(State(inbox): State<Inbox>, Path(path): Path<String>, body: Bytes) -> StatusCode {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    inbox.lock().unwrap().push((path, body));
    StatusCode::OK
}

/// Starts the receiver; returns its base URL and what it gets.
async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

/// The events of type `prefix*` the path got, as (type, rule).
fn events(inbox: &Inbox, path: &str, prefix: &str) -> Vec<(String, String)> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, b)| p == path && b["type"].as_str().unwrap_or("").starts_with(prefix))
        .map(|(_, b)| {
            (
                b["type"].as_str().unwrap().to_string(),
                b["detail"]["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until `check` holds of the inbox.
async fn until(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks a Slack message against Block Kit's documented shape and limits.
fn assert_slack_message(body: &serde_json::Value) {
    let text = body["text"].as_str().expect("a fallback text");
    assert!(!text.is_empty());
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{body}");
    let text_object = |t: &serde_json::Value, limit: usize| {
        assert!(
            matches!(t["type"].as_str(), Some("mrkdwn" | "plain_text")),
            "{t}"
        );
        let s = t["text"].as_str().expect("text");
        assert!(!s.is_empty() && s.chars().count() <= limit, "{t}");
    };
    for block in blocks {
        let keys: Vec<&String> = block.as_object().unwrap().keys().collect();
        match block["type"].as_str() {
            Some("section") => {
                assert!(
                    keys.iter()
                        .all(|k| ["type", "text", "fields", "block_id"].contains(&k.as_str())),
                    "{block}"
                );
                assert!(block.get("text").is_some() || block.get("fields").is_some());
                if let Some(t) = block.get("text") {
                    text_object(t, 3000);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10, "{block}");
                    fields.iter().for_each(|f| text_object(f, 2000));
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().unwrap();
                assert!(!elements.is_empty() && elements.len() <= 10, "{block}");
                elements.iter().for_each(|e| text_object(e, 3000));
            }
            other => panic!("an unexpected block type {other:?}: {block}"),
        }
    }
}

/// Moves `rows` users' updated_at to now, so the next run reads them.
async fn touch(fleet: &Fleet, rows: i64) {
    fleet
        .warehouse()
        .await
        .execute(
            "UPDATE public.users SET updated_at = now() - interval '2 seconds',
                    first_name = 'Touched ' || id
              WHERE id <= $1",
            &[&rows],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_once_and_resolve_once_and_link_to_the_run() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 1_000).await;
    let (base, inbox) = receiver().await;
    let spec = common::users_spec(&fleet, 5_000).replace(
        "    chunk_rows: 5000\n",
        &format!(
            "    chunk_rows: 5000
    notify:
      webhooks:
        - {{ url: \"{base}/hook\", secret: \"{SECRET}\" }}
      slack:
        - {{ url: \"{base}/{SLACK_PATH}\", on: [alert.firing, alert.resolved, run.failed] }}
      alerts: {{ no_rows_for: 24h, volume_drop: 50% }}
"
        ),
    );
    fleet.apply_ok(&spec);
    fleet.set_env("SLUICE_PUBLIC_URL", PUBLIC);
    fleet.set_env("SLUICE_ALERT_INTERVAL", "1s");
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let page = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&page).await;

    // A baseline: the first run, then four runs of 100 rows each.
    assert_eq!(fleet.run("acme", "users")["status"], "succeeded");
    for _ in 0..4 {
        touch(&fleet, 100).await;
        assert_eq!(fleet.run("acme", "users")["rows_read"], 100);
    }
    // A run reading 10% of the usual rows.
    touch(&fleet, 10).await;
    let low = fleet.run("acme", "users");
    assert_eq!(low["rows_read"], 10);
    until("volume_drop fired", || {
        !events(&inbox, "hook", "alert.").is_empty()
    })
    .await;
    touch(&fleet, 100).await;
    fleet.run("acme", "users");
    until("volume_drop resolved", || {
        events(&inbox, "hook", "alert.").len() >= 2
    })
    .await;

    // A day passes without a row: the import's history moves 25 hours back.
    fleet
        .control()
        .await
        .batch_execute(
            "UPDATE control.runs SET created_at = created_at - interval '25 hours',
                    finished_at = finished_at - interval '25 hours';
             UPDATE control.imports SET created_at = created_at - interval '25 hours';",
        )
        .await
        .unwrap();
    until("no_rows_for fired", || {
        events(&inbox, "hook", "alert.").len() >= 3
    })
    .await;

    // The page shows the firing alert, and the events unread until the reader marks them.
    let viewer = fleet.token("acme", "viewer");
    let reader = common::UiClient::sign_in(&page, &viewer).await;
    let shown = reader.page("/ui/notifications").await;
    let firing = shown
        .split("id=\"firing\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(
        firing.contains("no_rows_for") && !firing.contains("volume_drop"),
        "{firing}"
    );
    assert!(
        shown.contains("<b>alert resolved: volume_drop</b>"),
        "unread: {shown}"
    );
    assert!(reader.page("/ui").await.contains("id=\"unread\""));
    let csrf = common::form_token(&shown);
    let marked = reader.post("/ui/notifications", &[("csrf", &csrf)]).await;
    assert_eq!(marked, 303);
    let shown = reader.page("/ui/notifications").await;
    assert!(!shown.contains("<b>alert"), "read: {shown}");
    assert!(!reader.page("/ui").await.contains("id=\"unread\""));
    touch(&fleet, 100).await;
    fleet.run("acme", "users");
    until("no_rows_for resolved", || {
        events(&inbox, "hook", "alert.").len() >= 4
    })
    .await;
    // Several more evaluations: no repeat.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let alerts = events(&inbox, "hook", "alert.");
    let expected: Vec<(String, String)> = [
        ("alert.firing", "volume_drop"),
        ("alert.resolved", "volume_drop"),
        ("alert.firing", "no_rows_for"),
        ("alert.resolved", "no_rows_for"),
    ]
    .iter()
    .map(|(t, r)| (t.to_string(), r.to_string()))
    .collect();
    assert_eq!(alerts, expected);

    let received = inbox.lock().unwrap().clone();
    let fired = received
        .iter()
        .find(|(p, b)| p == "hook" && b["type"] == "alert.firing")
        .unwrap();
    assert_eq!(fired.1["detail"]["figures"]["rows_read"], 10, "{}", fired.1);
    assert_eq!(fired.1["detail"]["figures"]["median"], 100.0, "{}", fired.1);
    // Every notification links to its run's page under the public address.
    for (path, body) in received.iter().filter(|(p, _)| p == "hook") {
        let url = body["url"].as_str().unwrap();
        let run = body["run"]["run_id"].as_str().unwrap();
        assert_eq!(url, format!("{PUBLIC}/ui/runs/{run}"), "{path}: {body}");
    }
    // Slack heard the four alerts (it chose them), each a valid Block Kit message.
    let slack: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(p, _)| p == SLACK_PATH)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(slack.len(), 4, "{slack:?}");
    slack.iter().for_each(|b| assert_slack_message(b));
    assert!(slack[0]["blocks"]
        .to_string()
        .contains(&format!("<{PUBLIC}/ui/runs/")));
    // The secrets are sealed: not in the stored spec, not in any log.
    let spec: String = fleet
        .control()
        .await
        .query_one("SELECT spec::text FROM control.imports", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !spec.contains("Xs3cret") && !spec.contains(SECRET),
        "{spec}"
    );
    for entry in std::fs::read_dir(&fleet.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(
                !log.contains("Xs3cret") && !log.contains(SECRET),
                "{}",
                path.display()
            );
        }
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_target_hears_failures_and_pauses_and_not_successes() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 50).await;
    let (port, mails) = common::smtp::smtp_sink().await;
    fleet.apply_ok(&common::users_spec(&fleet, 400).replace(
        "    chunk_rows: 400\n",
        "    chunk_rows: 400\n    notify: { emails: [oncall@example.com] }\n",
    ));
    fleet.set_env("SLUICE_PUBLIC_URL", PUBLIC);
    fleet.start(
        "all",
        &[
            "--smtp-url",
            &format!("smtp://127.0.0.1:{port}"),
            "--max-attempts",
            "1",
        ],
    );
    for _ in 0..20 {
        assert_eq!(fleet.run("acme", "users")["status"], "succeeded");
    }
    warehouse
        .batch_execute("DROP TABLE public.users")
        .await
        .unwrap();
    let failed = fleet.run("acme", "users");
    assert_eq!(failed["status"], "failed");
    let out = fleet.sluice(&["imports", "pause", "users", "--workspace", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until("two mails", || mails.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Quoted-printable soft breaks and escapes undone, as a mail client does.
    let mails: Vec<(Vec<String>, String)> = mails
        .lock()
        .unwrap()
        .iter()
        .map(|(to, data)| (to.clone(), data.replace("=\n", "").replace("=3D", "=")))
        .collect();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0]
            .1
            .contains("Subject: [Sluice] acme/users: run failed"),
        "{}",
        mails[0].1
    );
    let link = format!("{PUBLIC}/ui/runs/{}", failed["run_id"].as_str().unwrap());
    assert!(mails[0].1.contains(&link), "the run's link: {}", mails[0].1);
    assert!(
        mails[0].1.contains(&format!("href=\"{link}\"")),
        "a link in the HTML part: {}",
        mails[0].1
    );
    assert!(
        mails[1]
            .1
            .contains("Subject: [Sluice] acme/users: import paused by"),
        "{}",
        mails[1].1
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_target_has_its_own_partial_threshold() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 200).await;
    // One row in ten has a code that is not a number.
    warehouse
        .batch_execute(
            "ALTER TABLE public.users ADD COLUMN code text;
             UPDATE public.users SET code = CASE WHEN id % 10 = 0 THEN 'x' ELSE id::text END;",
        )
        .await
        .unwrap();
    let (base, inbox) = receiver().await;
    let spec = common::users_spec(&fleet, 5_000)
        .replace(
            "      birthday:",
            "      code: { column: code, type: integer }\n      birthday:",
        )
        .replace(
            "    chunk_rows: 5000\n",
            &format!(
                "    chunk_rows: 5000
    notify:
      webhooks:
        - {{ url: \"{base}/strict\", secret: \"{SECRET}\", on: [run.partially_succeeded] }}
        - {{ url: \"{base}/lenient\", secret: \"{SECRET}\", on: [run.partially_succeeded], partial_threshold: 0.2 }}
      partial_threshold: 0.05
"
            ),
        );
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(run["rows_rejected"], 20);
    until("the strict target heard it", || {
        !events(&inbox, "strict", "run.").is_empty()
    })
    .await;
    // The lenient target's delivery is settled as below its threshold, never sent.
    let control = fleet.control().await;
    let started = Instant::now();
    loop {
        let pending: i64 = control
            .query_one(
                "SELECT count(*) FROM control.notifications WHERE delivered_at IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{pending} pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        events(&inbox, "strict", "run."),
        [("run.partially_succeeded".to_string(), String::new())]
    );
    assert!(events(&inbox, "lenient", "run.").is_empty());
    fleet.cleanup().await;
}

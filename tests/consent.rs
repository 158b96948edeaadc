//! Consent imported beside properties: statuses read exactly through the import's values,
//! the newest consent time wins per channel and group (on a tie, unsubscribed), every change
//! kept in the history with its run, values that are no status rejected with their column,
//! subscribes without an address rejected, and user deletes ending a profile's statuses
//! while the history stays.

mod common;

use common::Fleet;
use std::collections::BTreeMap;
use tokio_postgres::Client;

const PEOPLE: i64 = 10_000;

/// The email status person `g` has in `public.people`.
fn email_status(g: i64) -> Option<&'static str> {
    match g % 4 {
        1 => Some("subscribed"),
        2 => Some("unsubscribed"),
        3 => Some("opted_in"),
        _ => None,
    }
}

/// `public.people` (statuses per person: email as words, SMS as Y/N, the digest group as a
/// boolean, consent at 2025-01-01 + g seconds), and the empty `late`, `newcomers` and
/// `forget` tables the other imports read.
async fn create_tables(warehouse: &Client) {
    warehouse
        .batch_execute(&format!(
            "CREATE TABLE public.people (id bigint PRIMARY KEY, ext text NOT NULL, email text,
                                         phone text, email_status text, sms_opt_in text,
                                         digest boolean, consent_ts timestamptz,
                                         updated_at timestamptz NOT NULL);
             INSERT INTO public.people
             SELECT g, 'user-' || g, 'p' || g || '@example.com', '+47' || lpad(g::text, 8, '0'),
                    CASE g % 4 WHEN 1 THEN 'subscribed' WHEN 2 THEN 'unsubscribed'
                               WHEN 3 THEN 'OPTED_IN' END,
                    CASE WHEN g % 2 = 0 THEN 'Y' ELSE 'N' END,
                    CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
                    timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
                    timestamptz '2025-06-01 00:00:00+00'
               FROM generate_series(1, {PEOPLE}) g;
             CREATE TABLE public.late (id bigint PRIMARY KEY, ext text NOT NULL,
                                       email_status text, consent_ts timestamptz,
                                       updated_at timestamptz NOT NULL);
             CREATE TABLE public.newcomers (LIKE public.people);
             ALTER TABLE public.newcomers ADD PRIMARY KEY (id);
             CREATE TABLE public.forget (id bigint PRIMARY KEY, ext text NOT NULL,
                                         updated_at timestamptz NOT NULL);"
        ))
        .await
        .unwrap();
}

fn spec(fleet: &Fleet) -> String {
    fleet.spec(
        "  - name: people
    connection: wh
    source: { table: public.people }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email, phone: phone }
    chunk_rows: 2500
    settle_lag: 1s
    subscriptions:
      email: { column: email_status }
      sms: { column: sms_opt_in, values: { \"Y\": subscribed, \"N\": unsubscribed } }
      groups:
        weekly_digest: { column: digest }
      consented_at: { column: consent_ts }
  - name: late
    connection: wh
    source: { table: public.late }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext }
    settle_lag: 1s
    subscriptions:
      email: { column: email_status }
      consented_at: { column: consent_ts }
  - name: newcomers
    connection: wh
    source: { table: public.newcomers }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email, phone: phone }
    settle_lag: 1s
    subscriptions:
      email: { column: email_status }
      sms: { column: sms_opt_in, values: { \"Y\": subscribed, \"N\": unsubscribed } }
  - name: forget
    connection: wh
    source: { table: public.forget }
    data_type: user_deletes
    key: id
    watermark: updated_at
    identity: { external_id: ext }
    allow_deletes: true
    settle_lag: 1s
",
    )
}

/// Every stored status: (external id, topic) → status.
async fn statuses(control: &Client) -> BTreeMap<(String, String), String> {
    control
        .query(
            "SELECT i.value, s.topic, s.status FROM profile_store.subscriptions s
               JOIN profile_store.identities i
                 ON i.workspace_id = s.workspace_id AND i.profile_id = s.profile_id
                AND i.kind = 'external_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// The status of one person's topic.
async fn status_of(control: &Client, ext: &str, topic: &str) -> Option<String> {
    statuses(control)
        .await
        .remove(&(ext.to_string(), topic.to_string()))
}

/// The errors of a run: (column, reason) per row key.
async fn errors(control: &Client, run: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    let run_id: uuid::Uuid = run["run_id"].as_str().unwrap().parse().unwrap();
    control
        .query(
            "SELECT row_key, column_name, reason_code FROM control.run_errors WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_is_imported_exactly_newest_first_with_its_history() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_tables(&warehouse).await;
    fleet.apply_ok(&spec(&fleet));
    let token = fleet.token("acme", "viewer");
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let control = fleet.control().await;

    // A dry run counts what the run will change and writes nothing.
    let dry = fleet.run_with("acme", "people", &["--dry-run"]);
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(
        dry["subscriptions_changed"]["email"]["subscribed"], 2_500,
        "{dry}"
    );
    assert!(
        statuses(&control).await.is_empty(),
        "a dry run wrote statuses"
    );
    // Its sample shows each row's statuses: user-1 subscribes email, refuses SMS and the
    // digest.
    let sample = dry["sample"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["row_key"] == "1")
        .unwrap_or_else(|| panic!("row 1 is not in the sample: {dry}"));
    assert_eq!(
        sample["subscriptions"],
        serde_json::json!({"email": "subscribed", "sms": "unsubscribed",
                           "group:weekly_digest": "unsubscribed"}),
        "{sample}"
    );

    let run = fleet.run("acme", "people");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_created"], PEOPLE, "{run}");
    let changed = &run["subscriptions_changed"];
    assert_eq!(changed["email"]["subscribed"], 2_500, "{run}");
    assert_eq!(changed["email"]["opted_in"], 2_500, "{run}");
    assert_eq!(changed["sms"]["subscribed"], 5_000, "{run}");
    assert_eq!(
        changed["group:weekly_digest"]["unsubscribed"], 3_334,
        "{run}"
    );

    // The store's statuses are the source's, read through the import's values.
    let mut expected = BTreeMap::new();
    for g in 1..=PEOPLE {
        let ext = format!("user-{g}");
        if let Some(s) = email_status(g) {
            expected.insert((ext.clone(), "email".to_string()), s.to_string());
        }
        let sms = if g % 2 == 0 {
            "subscribed"
        } else {
            "unsubscribed"
        };
        expected.insert((ext.clone(), "sms".to_string()), sms.to_string());
        let digest = match g % 3 {
            0 => Some("subscribed"),
            1 => Some("unsubscribed"),
            _ => None,
        };
        if let Some(d) = digest {
            expected.insert((ext, "group:weekly_digest".to_string()), d.to_string());
        }
    }
    let stored = statuses(&control).await;
    assert_eq!(stored.len(), expected.len());
    assert!(
        stored == expected,
        "the stored statuses differ from the source's"
    );
    let run_id: uuid::Uuid = run["run_id"].as_str().unwrap().parse().unwrap();
    let (changes, of_run): (i64, i64) = {
        let r = control
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE run_id = $1 AND from_status IS NULL
                                                   AND cause = 'import')
                   FROM profile_store.subscription_changes",
                &[&run_id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(changes, expected.len() as i64, "one change per status");
    assert_eq!(of_run, changes, "every change names the run");

    // Older consent for 1,000 people with an email status changes nothing and is counted
    // stale.
    warehouse
        .batch_execute(
            "INSERT INTO public.late
             SELECT g, 'user-' || g, 'unsubscribed', timestamptz '2024-01-01 00:00:00+00',
                    timestamptz '2025-06-01 00:00:00+00'
               FROM generate_series(1, 1333) g WHERE g % 4 <> 0",
        )
        .await
        .unwrap();
    let late = fleet.run("acme", "late");
    assert_eq!(late["status"], "succeeded", "{late}");
    assert_eq!(late["subscriptions_stale"], 1_000, "{late}");
    assert_eq!(
        late["subscriptions_changed"],
        serde_json::json!({}),
        "{late}"
    );
    assert!(
        statuses(&control).await == expected,
        "older consent changed a status"
    );

    // A newer unsubscribe applies; at the same time as the store's status, unsubscribed wins
    // from either side.
    warehouse
        .batch_execute(
            "UPDATE public.late SET updated_at = timestamptz '2025-07-01 00:00:00+00',
                    consent_ts = CASE ext
                        WHEN 'user-5' THEN timestamptz '2026-01-01 00:00:00+00'
                        WHEN 'user-1' THEN timestamptz '2025-01-01 00:00:01+00'
                        WHEN 'user-2' THEN timestamptz '2025-01-01 00:00:02+00' END,
                    email_status = CASE ext WHEN 'user-2' THEN 'subscribed'
                                            ELSE 'unsubscribed' END
              WHERE ext IN ('user-1', 'user-2', 'user-5')",
        )
        .await
        .unwrap();
    let late = fleet.run("acme", "late");
    assert_eq!(late["rows_read"], 3, "{late}");
    assert_eq!(
        late["subscriptions_changed"],
        serde_json::json!({"email": {"unsubscribed": 2}}),
        "{late}"
    );
    assert_eq!(late["subscriptions_stale"], 1, "{late}");
    for ext in ["user-1", "user-2", "user-5"] {
        assert_eq!(
            status_of(&control, ext, "email").await.as_deref(),
            Some("unsubscribed"),
            "{ext}"
        );
    }

    // The CLI shows user-5's statuses and both changes, newest first.
    let consent = fleet.sluice_json(&[
        "profiles",
        "subscriptions",
        "--workspace",
        "acme",
        "--identity",
        "external_id=user-5",
        "--output",
        "json",
    ]);
    assert_eq!(
        consent["subscriptions"]["email"]["status"], "unsubscribed",
        "{consent}"
    );
    assert_eq!(
        consent["subscriptions"]["sms"]["status"], "unsubscribed",
        "{consent}"
    );
    let email: Vec<(&str, &str)> = consent["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["topic"] == "email")
        .map(|c| (c["from"].as_str().unwrap_or("-"), c["to"].as_str().unwrap()))
        .collect();
    assert_eq!(email, [("subscribed", "unsubscribed"), ("-", "subscribed")]);

    // The API's look-up and the export show the same statuses.
    let response = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v1/profiles?kind=external_id&value=user-5"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let profile: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        profile["subscriptions"], consent["subscriptions"],
        "{profile}"
    );
    assert_eq!(
        profile["subscription_history"].as_array().map(Vec::len),
        Some(3),
        "{profile}"
    );
    let out = fleet.sluice(&["profiles", "export", "--workspace", "acme"]);
    let exported: serde_json::Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|p| p["identities"]["external_id"] == "user-3")
        .unwrap();
    assert_eq!(
        exported["subscriptions"]["email"]["status"], "opted_in",
        "{exported}"
    );
    assert_eq!(
        exported["subscriptions"]["groups"]["weekly_digest"]["status"], "subscribed",
        "{exported}"
    );

    // Values that are no status, and a subscribe without an address, are rejected by row.
    warehouse
        .batch_execute(
            "INSERT INTO public.newcomers (id, ext, email, phone, email_status, sms_opt_in,
                                          updated_at) VALUES
               (1, 'new-1', 'n1@example.com', NULL, 'maybe', NULL, '2025-06-01'),
               (2, 'new-2', 'n2@example.com', NULL, '', NULL, '2025-06-01'),
               (3, 'new-3', 'n3@example.com', NULL, '1', NULL, '2025-06-01'),
               (4, 'new-4', 'n4@example.com', NULL, NULL, 'Y', '2025-06-01'),
               (5, 'new-5', 'n5@example.com', NULL, NULL, 'maybe', '2025-06-01'),
               (6, 'user-7', NULL, NULL, NULL, 'Y', '2025-06-01'),
               (7, 'user-8', NULL, NULL, 'subscribed', NULL, '2025-06-01')",
        )
        .await
        .unwrap();
    let newcomers = fleet.run("acme", "newcomers");
    assert_eq!(newcomers["status"], "partially_succeeded", "{newcomers}");
    assert_eq!(
        newcomers["rejected_by_reason"],
        serde_json::json!({"invalid_subscription_status": 4, "missing_channel_address": 1}),
        "{newcomers}"
    );
    let rejected = errors(&control, &newcomers).await;
    let column = |key: &str| rejected.get(key).map(|(c, r)| (c.as_str(), r.as_str()));
    for key in ["1", "2", "3"] {
        assert_eq!(
            column(key),
            Some(("email_status", "invalid_subscription_status"))
        );
    }
    assert_eq!(
        column("5"),
        Some(("sms_opt_in", "invalid_subscription_status"))
    );
    assert_eq!(column("4"), Some(("sms_opt_in", "missing_channel_address")));
    let new4: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.identities WHERE value = 'new-4'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(new4, 0, "a rejected row created its profile");
    // The profile's own address serves a row without one.
    assert_eq!(
        status_of(&control, "user-7", "sms").await.as_deref(),
        Some("subscribed")
    );
    assert_eq!(
        status_of(&control, "user-8", "email").await.as_deref(),
        Some("subscribed")
    );

    // A user delete ends the profile's statuses; the history keeps them and the deletion.
    let profile: i64 = control
        .query_one(
            "SELECT profile_id FROM profile_store.identities WHERE value = 'user-5'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    warehouse
        .batch_execute("INSERT INTO public.forget VALUES (1, 'user-5', '2025-06-01')")
        .await
        .unwrap();
    let forget = fleet.run("acme", "forget");
    assert_eq!(forget["profiles_deleted"], 1, "{forget}");
    let (left, ended, kept): (i64, i64, i64) = {
        let r = control
            .query_one(
                "SELECT (SELECT count(*) FROM profile_store.subscriptions WHERE profile_id = $1),
                        count(*) FILTER (WHERE cause = 'profile_deleted' AND to_status IS NULL),
                        count(*) FILTER (WHERE cause = 'import')
                   FROM profile_store.subscription_changes WHERE profile_id = $1",
                &[&profile],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(left, 0, "the deleted profile's statuses stayed");
    assert_eq!(
        ended, 2,
        "one deletion per status (email, sms; no digest for 5)"
    );
    assert_eq!(kept, 3, "the history before the deletion stays");
    fleet.cleanup().await;
}

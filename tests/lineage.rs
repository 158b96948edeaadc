//! Per-run lineage: every row of a run with the identity and profile it matched and its
//! outcome, equal to the run's stats; looked up by key, profile or outcome from the CLI and the
//! API; a profile's history across runs; dry runs' lineage; and lineage deleted once its
//! retention has passed.

mod common;

use common::activity::{activity_import, create_activity};
use common::Fleet;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `public.people`: 1,000 rows; rows 991 to 1,000 repeat the external ids of rows 981 to 990
/// (a newer row of the same profile in the chunk), every hundredth row has an invalid email.
async fn create_people(fleet: &Fleet) {
    fleet
        .warehouse()
        .await
        .batch_execute(
            "CREATE TABLE public.people AS
             SELECT g AS id,
                    'user-' || CASE WHEN g > 990 THEN g - 10 ELSE g END AS ext,
                    CASE WHEN g % 100 = 0 THEN 'not-an-email' ELSE 'u' || g || '@example.com' END AS email,
                    'Name ' || g AS name,
                    timestamptz '2024-05-01 00:00:00+00' + g * interval '1 second' AS updated_at
               FROM generate_series(1, 1000) g",
        )
        .await
        .unwrap();
}

fn people(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}
    connection: wh
    source: {{ table: public.people }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: ext, email: email }}
    properties:
      name: {{ column: name, type: string }}
    settle_lag: 1s
{extra}"
    )
}

/// `sluice runs lineage RUN ...` as JSON.
fn lineage(fleet: &Fleet, run: &Value, extra: &[&str]) -> Value {
    let run = run["run_id"].as_str().unwrap();
    let mut args = vec![
        "runs", "lineage", run, "--output", "json", "--limit", "1000",
    ];
    args.extend_from_slice(extra);
    fleet.sluice_json(&args)
}

fn count(lineage: &Value, outcome: &str) -> i64 {
    lineage["counts"][outcome].as_i64().unwrap_or(0)
}

/// The lineage of a run counts exactly what its stats count.
fn assert_lineage_equals_stats(fleet: &Fleet, run: &Value) {
    let all = lineage(fleet, run, &[]);
    let events =
        run["events_inserted"].as_i64().unwrap() + run["events_duplicate"].as_i64().unwrap();
    // An event row's outcome is its event's; the profiles events create are counted apart.
    let pairs: &[(&str, &str)] = match events {
        0 => &[
            ("created", "profiles_created"),
            ("updated", "profiles_updated"),
            ("unchanged", "profiles_unchanged"),
            ("skipped", "rows_skipped"),
            ("rejected", "rows_rejected"),
        ],
        _ => &[
            ("inserted", "events_inserted"),
            ("duplicate", "events_duplicate"),
            ("rejected", "rows_rejected"),
        ],
    };
    for (outcome, stat) in pairs {
        assert_eq!(
            count(&all, outcome),
            run[stat].as_i64().unwrap(),
            "{outcome} against {stat}: {}\n{run}",
            all["counts"]
        );
    }
    let rows = all["rows"].as_array().unwrap();
    let stale: i64 = rows
        .iter()
        .map(|r| r["properties_stale"].as_i64().unwrap())
        .sum();
    assert_eq!(stale, run["properties_stale"].as_i64().unwrap(), "{run}");
    let read = run["rows_read"].as_i64().unwrap() + run["rows_retried"].as_i64().unwrap();
    assert_eq!(rows.len() as i64, read, "one lineage row per row read");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_row_of_a_run_has_its_outcome_and_the_outcomes_equal_the_stats() {
    let mut fleet = Fleet::new().await;
    create_people(&fleet).await;
    fleet.apply_ok(&fleet.spec(&people("people", "")));
    let token = fleet.token("acme", "viewer");
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);

    let first = fleet.run("acme", "people");
    assert_eq!(first["profiles_created"], 981, "{first}");
    assert_eq!(first["rows_rejected"], 10, "{first}");
    let all = lineage(&fleet, &first, &[]);
    assert_eq!(
        all["counts"],
        serde_json::json!({"created": 981, "superseded": 9, "rejected": 10}),
        "{all}"
    );
    assert_lineage_equals_stats(&fleet, &first);

    // One key: its identity, its profile, its outcome.
    let control = fleet.control().await;
    let profile_of = |ext: &'static str| {
        let control = &control;
        async move {
            control
                .query_one(
                    "SELECT profile_id FROM profile_store.identities
                      WHERE kind = 'external_id' AND value = $1",
                    &[&ext],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let five = profile_of("user-5").await;
    let one = lineage(&fleet, &first, &["--key", "5"]);
    assert_eq!(one["rows"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["rows"][0]["outcome"], "created");
    assert_eq!(one["rows"][0]["profile_id"], five);
    assert_eq!(one["rows"][0]["identity_kind"], "external_id");
    assert_eq!(one["rows"][0]["identity_value"], "user-5");
    let bad = lineage(&fleet, &first, &["--key", "300"]);
    assert_eq!(bad["rows"][0]["outcome"], "rejected");
    assert_eq!(bad["rows"][0]["reason"], "invalid_email");
    // Rows 985 and 995 name one profile: the newer was applied, the older superseded.
    let shared = profile_of("user-985").await;
    let both = lineage(&fleet, &first, &["--profile", &shared.to_string()]);
    let outcomes: Vec<(&str, &str)> = both["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row_key"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, vec![("985", "superseded"), ("995", "created")]);
    let superseded = lineage(&fleet, &first, &["--outcome", "superseded"]);
    assert_eq!(superseded["rows"].as_array().unwrap().len(), 9);
    let refused = fleet.sluice(&[
        "runs",
        "lineage",
        first["run_id"].as_str().unwrap(),
        "--outcome",
        "lost",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("outcome"));

    // The next run: 100 rows changed (one of them still rejected), 10 touched without a
    // change.
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "UPDATE public.people SET name = name || '!', updated_at = '2024-06-01'
              WHERE id BETWEEN 1 AND 100;
             UPDATE public.people SET updated_at = '2024-06-01' WHERE id BETWEEN 101 AND 110;",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "people");
    assert_eq!(second["profiles_updated"], 99, "{second}");
    assert_eq!(second["profiles_unchanged"], 10, "{second}");
    assert_lineage_equals_stats(&fleet, &second);

    // A dry run writes its lineage too: what would happen to row 7.
    warehouse
        .batch_execute(
            "UPDATE public.people SET name = 'Seven', updated_at = '2024-07-01' WHERE id = 7",
        )
        .await
        .unwrap();
    let dry = fleet.run_with("acme", "people", &["--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    let seven = lineage(&fleet, &dry, &["--key", "7"]);
    assert_eq!(seven["rows"][0]["outcome"], "updated", "{seven}");
    assert_eq!(seven["rows"][0]["profile_id"], profile_of("user-7").await);

    // A profile's history: the runs that touched it, newest first; dry runs left out.
    let history = fleet.sluice_json(&[
        "profiles",
        "history",
        "--workspace",
        "acme",
        "--identity",
        "external_id=user-7",
        "--output",
        "json",
    ]);
    let runs: Vec<(&str, &Value)> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), &r["outcomes"]))
        .collect();
    assert_eq!(
        runs,
        vec![
            (
                second["run_id"].as_str().unwrap(),
                &serde_json::json!({"updated": 1})
            ),
            (
                first["run_id"].as_str().unwrap(),
                &serde_json::json!({"created": 1})
            ),
        ],
        "{history}"
    );

    // The API answers the same questions.
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&base).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, token, base) = (&http, &token, &base);
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let first_id = first["run_id"].as_str().unwrap();
    let (status, body) = get(format!("/v1/runs/{first_id}/lineage?key=5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["profile_id"], five);
    let (status, body) = get(format!(
        "/v1/runs/{first_id}/lineage?outcome=created&per_page=100&page=2"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counts"], serde_json::json!({"created": 981}));
    assert_eq!(body["rows"].as_array().unwrap().len(), 100);
    let (status, body) = get("/v1/profiles/history?kind=external_id&value=user-7".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runs"].as_array().unwrap().len(), 2, "{body}");
    let (status, _) = get(format!("/v1/runs/{first_id}/lineage?outcome=lost")).await;
    assert_eq!(status, 400);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_inserted_once_and_then_duplicates_and_lineage_past_retention_is_deleted() {
    let mut fleet = Fleet::new().await;
    create_activity(&fleet.warehouse().await, 300).await;
    create_people(&fleet).await;
    let brief = people("brief", "    lineage_retention: 1s\n");
    fleet.apply_ok(&fleet.spec(&format!("{}{brief}", activity_import(100))));
    fleet.start("all", &[]);

    let first = fleet.run("acme", "activity");
    assert_eq!(first["events_inserted"], 300, "{first}");
    assert_lineage_equals_stats(&fleet, &first);
    let resync = fleet.sluice(&["imports", "resync", "activity", "--workspace", "acme"]);
    assert!(resync.status.success());
    let again = fleet.run("acme", "activity");
    assert_eq!(again["events_duplicate"], 300, "{again}");
    assert_eq!(
        lineage(&fleet, &again, &[])["counts"],
        serde_json::json!({"duplicate": 300})
    );
    assert_lineage_equals_stats(&fleet, &again);

    // `brief` keeps its lineage for a second: a coordinator's sweep deletes it; the events'
    // (30 days by default) stays.
    let brief_run = fleet.run("acme", "brief");
    assert_eq!(brief_run["rows_read"], 1_000, "{brief_run}");
    let started = Instant::now();
    while !lineage(&fleet, &brief_run, &[])["counts"]
        .as_object()
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lineage past its retention was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(count(&lineage(&fleet, &first, &[]), "inserted"), 300);
    fleet.cleanup().await;
}

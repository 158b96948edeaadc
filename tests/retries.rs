//! Rejected rows retried: rows rejected for a cause that can go away without the source row
//! changing (an unknown identity, a type conflict) are read again by key on later runs until
//! they pass or are kept too long; rows rejected for what they hold are not.

mod common;

use common::activity::{activity_import, assert_events_equal_source, create_activity};
use common::Fleet;
use tokio_postgres::Client;

/// `public.people`: the profiles of the activity's users, `user-0` to `user-{n-1}`.
async fn create_people(warehouse: &Client, n: i64) {
    warehouse
        .execute(
            "CREATE TABLE public.people AS
             SELECT g AS id, 'user-' || g AS ext, timestamptz '2024-05-01 00:00:00+00' AS updated_at
               FROM generate_series(0, $1::int8 - 1) g",
            &[&n],
        )
        .await
        .unwrap();
}

const PEOPLE: &str = "  - name: people
    connection: wh
    source: { table: public.people }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext }
    settle_lag: 1s
";

/// The import's retry set: (key, reason, attempts), by key.
async fn retry_set(control: &Client, import: &str) -> Vec<(String, String, i32)> {
    control
        .query(
            "SELECT r.row_key, r.reason_code, r.attempts FROM control.retry_rows r
               JOIN control.imports i ON i.id = r.import_id
              WHERE i.name = $1 ORDER BY r.row_key::int8",
            &[&import],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_profiles_created_later_are_recovered_on_the_next_run_exactly_once() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_activity(&warehouse, 1_000).await;
    let strict = activity_import(300).replace(
        "    payload: props\n",
        "    payload: props\n    unknown_identity: reject\n",
    );
    fleet.apply_ok(&fleet.spec(&strict));
    fleet.start("all", &[]);
    let control = fleet.control().await;

    let first = fleet.run("acme", "activity");
    assert_eq!(first["status"], "partially_succeeded", "{first}");
    assert_eq!(
        first["rejected_by_reason"],
        serde_json::json!({"unknown_identity": 1_000}),
        "{first}"
    );
    assert_eq!(first["events_inserted"], 0, "{first}");
    assert_eq!(first["rows_retried"], 0, "{first}");
    let kept = retry_set(&control, "activity").await;
    assert_eq!(kept.len(), 1_000);
    assert!(kept
        .iter()
        .all(|(_, reason, attempts)| reason == "unknown_identity" && *attempts == 1));

    // The profiles arrive through another import.
    create_people(&warehouse, 100).await;
    fleet.apply_ok(&fleet.spec(&format!("{strict}{PEOPLE}")));
    let people = fleet.run("acme", "people");
    assert_eq!(people["profiles_created"], 100, "{people}");

    // No new source rows: the run reads the 1,000 rejected rows again by key, in chunks of the
    // import's size, and stores each event once.
    let next = fleet.run("acme", "activity");
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["rows_read"], 0, "no row is new: {next}");
    assert_eq!(next["rows_retried"], 1_000, "{next}");
    assert_eq!(next["rows_recovered"], 1_000, "{next}");
    assert_eq!(next["events_inserted"], 1_000, "{next}");
    assert_eq!(next["rows_rejected"], 0, "{next}");
    assert_eq!(next["chunks"], 4, "1,000 keys in chunks of 300: {next}");
    assert!(retry_set(&control, "activity").await.is_empty());
    assert_events_equal_source(&fleet).await;

    // The set is empty: the run after reads nothing again.
    let after = fleet.run("acme", "activity");
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(after["rows_retried"], 0, "{after}");
    assert_eq!(after["events_inserted"], 0, "{after}");
    assert_events_equal_source(&fleet).await;
    fleet.cleanup().await;
}

/// `public.scores`: 300 rows, `user-{g}` with a score; every tenth row's email is invalid.
async fn create_scores(warehouse: &Client) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.scores AS
             SELECT g AS id, 'user-' || g AS ext,
                    CASE WHEN g % 10 = 0 THEN 'not-an-email' ELSE 'user' || g || '@example.com' END AS email,
                    g * 3 AS score, timestamptz '2024-05-01 00:00:00+00' + g * interval '1 second' AS updated_at
               FROM generate_series(1, 300) g;
             CREATE TABLE public.legacy AS
             SELECT 1 AS id, 'legacy-1' AS ext, 'gold' AS score,
                    timestamptz '2024-01-01 00:00:00+00' AS updated_at;",
        )
        .await
        .unwrap();
}

const LEGACY: &str = "  - name: legacy
    connection: wh
    source: { table: public.legacy }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext }
    properties:
      score: { column: score, type: string }
    settle_lag: 1s
";

const SCORES: &str = "  - name: scores
    connection: wh
    source: { table: public.scores }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email }
    properties:
      score: { column: score, type: integer }
    chunk_rows: 100
    settle_lag: 1s
";

#[tokio::test(flavor = "multi_thread")]
async fn a_type_conflict_fixed_in_the_registry_recovers_and_an_invalid_email_is_not_retried() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_scores(&warehouse).await;
    fleet.apply_ok(&fleet.spec(&format!("{LEGACY}{SCORES}")));
    fleet.start("all", &[]);
    let control = fleet.control().await;

    // `legacy` registers `score` as a string; every score of `scores` is then a type conflict,
    // but the 30 rows with an invalid email are rejected for that first.
    let legacy = fleet.run("acme", "legacy");
    assert_eq!(legacy["status"], "succeeded", "{legacy}");
    let first = fleet.run("acme", "scores");
    assert_eq!(
        first["rejected_by_reason"],
        serde_json::json!({"invalid_email": 30, "type_conflict": 270}),
        "{first}"
    );
    let kept = retry_set(&control, "scores").await;
    assert_eq!(kept.len(), 270, "only the type conflicts are kept");
    assert!(
        kept.iter()
            .all(|(key, reason, _)| reason == "type_conflict"
                && key.parse::<i64>().unwrap() % 10 != 0)
    );

    // Nothing fixed yet: read again, rejected again, one more attempt each.
    let again = fleet.run("acme", "scores");
    assert_eq!(again["rows_retried"], 270, "{again}");
    assert_eq!(again["rows_recovered"], 0, "{again}");
    assert_eq!(
        again["rejected_by_reason"],
        serde_json::json!({"type_conflict": 270}),
        "the invalid emails are not read again: {again}"
    );
    let kept = retry_set(&control, "scores").await;
    assert_eq!(kept.len(), 270);
    assert!(kept.iter().all(|(_, _, attempts)| *attempts == 2));

    // Ten rows have been kept past retry_rejected_for (7 days by default): the next run drops
    // and counts them instead of reading them.
    control
        .execute(
            "UPDATE control.retry_rows SET first_rejected_at = now() - interval '7 days 1 minute'
              WHERE row_key::int8 <= 11",
            &[],
        )
        .await
        .unwrap();

    // An operator changes the registry's type of `score`.
    common::retype(&fleet, "score", "integer").await;
    let recovered = fleet.run("acme", "scores");
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    assert_eq!(recovered["rows_retry_expired"], 10, "{recovered}");
    assert_eq!(recovered["rows_retried"], 260, "{recovered}");
    assert_eq!(recovered["rows_recovered"], 260, "{recovered}");
    assert_eq!(recovered["profiles_created"], 260, "{recovered}");
    assert!(retry_set(&control, "scores").await.is_empty());
    let stored: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.profiles WHERE properties ? 'score'
               AND jsonb_typeof(properties -> 'score') = 'number'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 260);

    // A rejected row whose source row changes is read in its range and starts again.
    warehouse
        .batch_execute(
            "UPDATE public.scores SET updated_at = '2024-06-01', email = 'fixed@example.com'
              WHERE id = 10",
        )
        .await
        .unwrap();
    let changed = fleet.run("acme", "scores");
    assert_eq!(changed["rows_read"], 1, "{changed}");
    assert_eq!(changed["profiles_created"], 1, "{changed}");
    assert_eq!(changed["rows_retried"], 0, "{changed}");
    fleet.cleanup().await;
}

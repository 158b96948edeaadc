//! The workspace error stream: rejected rows of three runs of two imports, listed by
//! `sluice errors` over a window with counts by reason and import, filtered, written as CSV,
//! paged through by the API, and linked from the run listing page.

mod common;

use common::Fleet;
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// `public.people` and `public.points` (the same columns), each row with an email, one in ten
/// invalid, and points, one in twenty not a number.
async fn create_tables(warehouse: &Client) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.people (id bigint PRIMARY KEY, ext text NOT NULL, email text,
                                         points text, updated_at timestamptz NOT NULL);
             CREATE TABLE public.points (LIKE public.people);
             ALTER TABLE public.points ADD PRIMARY KEY (id);",
        )
        .await
        .unwrap();
}

/// Adds rows `from..to` to `table`, stamped `at`.
async fn add_rows(warehouse: &Client, table: &str, from: i64, to: i64, at: &str) {
    warehouse
        .execute(
            &format!(
                "INSERT INTO public.{table}
                 SELECT g, 'user-' || g,
                        CASE WHEN g % 10 = 0 THEN 'not-an-address' ELSE 'p' || g || '@example.com' END,
                        CASE WHEN g % 20 = 1 THEN 'many' ELSE (g % 7)::text END,
                        $1::text::timestamptz
                   FROM generate_series($2::int8, $3::int8) g"
            ),
            &[&at, &from, &(to - 1)],
        )
        .await
        .unwrap();
}

fn import(name: &str) -> String {
    format!(
        "  - name: {name}
    connection: wh
    source: {{ table: public.{name} }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: ext, email: email }}
    properties:
      points: {{ column: points, type: integer }}
    settle_lag: 1s
"
    )
}

/// `sluice errors` with `args`, as JSON.
fn errors(fleet: &Fleet, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["errors", "--workspace", "acme", "--output", "json"];
    all.extend_from_slice(args);
    fleet.sluice_json(&all)
}

/// The (run, row key) of every row a page lists.
fn rows(page: &serde_json::Value) -> Vec<(String, String)> {
    page["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["run_id"].as_str().unwrap().to_string(),
                e["row_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_error_stream_lists_every_rejected_row_of_a_window_with_its_counts() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_tables(&warehouse).await;
    fleet.apply_ok(&fleet.spec(&format!("{}{}", import("people"), import("points"))));
    let token = fleet.token("acme", "viewer");
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);

    // Before the runs: a window that holds nothing.
    let before = chrono::Utc::now().to_rfc3339();

    // Three runs: people twice (100 rows, then 60 more), points once (40 rows).
    add_rows(&warehouse, "people", 1, 101, "2025-01-01").await;
    let first = fleet.run("acme", "people");
    add_rows(&warehouse, "people", 101, 161, "2025-02-01").await;
    let second = fleet.run("acme", "people");
    add_rows(&warehouse, "points", 1, 41, "2025-01-01").await;
    let third = fleet.run("acme", "points");
    let mut expected = BTreeSet::new();
    let (mut emails, mut values) = (0, 0);
    for (run, rows) in [(&first, 1..101), (&second, 101..161), (&third, 1..41)] {
        assert_eq!(run["status"], "partially_succeeded", "{run}");
        for g in rows {
            // The first problem of a row is its email: an invalid one hides its points.
            let rejected = if g % 10 == 0 {
                emails += 1;
                true
            } else if g % 20 == 1 {
                values += 1;
                true
            } else {
                false
            };
            if rejected {
                expected.insert((run["run_id"].as_str().unwrap().to_string(), g.to_string()));
            }
        }
    }

    let stream = errors(&fleet, &["--since", "1h", "--limit", "1000"]);
    assert_eq!(stream["total"], expected.len(), "{stream}");
    assert_eq!(
        stream["by_reason"],
        serde_json::json!({"invalid_email": emails, "invalid_value": values})
    );
    assert_eq!(
        stream["by_import"],
        serde_json::json!({"people": 10 + 5 + 6 + 3, "points": 4 + 2})
    );
    let listed = rows(&stream);
    assert_eq!(listed.len(), expected.len(), "a row listed twice");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let times: Vec<&str> = stream["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["recorded_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );

    // Filters: an import, a reason, a window before the runs.
    let points = errors(&fleet, &["--since", "1h", "--import", "points"]);
    assert_eq!(points["total"], 6, "{points}");
    let values_only = errors(&fleet, &["--since", "1h", "--reason", "invalid_value"]);
    assert_eq!(values_only["total"], values, "{values_only}");
    let earlier = errors(&fleet, &["--since", "2h", "--until", &before]);
    assert_eq!(earlier["total"], 0, "{earlier}");
    let out = fleet.sluice(&[
        "errors",
        "--workspace",
        "acme",
        "--reason",
        "no_such_reason",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason"));

    // CSV: every row once, the reason among the columns.
    let out = fleet.sluice(&["errors", "--workspace", "acme", "--since", "1h", "--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), expected.len() + 1, "{csv}");
    assert!(csv.lines().next().unwrap().contains("reason"));

    // The API pages through the same rows, seven at a time.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&base).await;
    let window = format!(
        "from={}&to={}",
        stream["from"].as_str().unwrap().replace('+', "%2B"),
        stream["to"].as_str().unwrap().replace('+', "%2B")
    );
    let mut paged = Vec::new();
    for page in 1.. {
        let response = http
            .get(format!("{base}/v1/errors?{window}&per_page=7&page={page}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["total"], expected.len(), "{body}");
        let got = rows(&body);
        if got.is_empty() {
            break;
        }
        paged.extend(got);
    }
    assert_eq!(paged, listed, "the pages differ from the listing");
    let response = http
        .get(format!("{base}/v1/errors?per_page=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // The run listing links each reason count to the stream, filtered.
    let cookie = common::ui_session(&base, &token).await;
    let listing = http
        .get(format!("{base}/ui"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = listing
        .split("class=\"reason-link\" href=\"")
        .skip(1)
        // An attribute's `&` is written as a character reference, named or numbered.
        .map(|rest| {
            rest.split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        })
        .find(|href| href.contains("import=points") && href.contains("reason=invalid_email"))
        .unwrap_or_else(|| panic!("no link to the points import's invalid emails: {listing}"));
    let filtered = http
        .get(format!("{base}{link}"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(filtered.contains("4 rows from"), "{filtered}");
    fleet.cleanup().await;
}

//! Import semantics through the whole fleet: a bad-input corpus lands row by row in the error
//! stream with the right reason codes while every good row loads; a dry run reports what the
//! real run then does and writes nothing; the schema registry refuses a type change.

mod common;

use common::{create_users, users_spec, Fleet};
use std::collections::BTreeMap;
use tokio_postgres::Client;

const PEOPLE_COLUMNS: [&str; 13] = [
    "ext",
    "email",
    "phone",
    "alias_name",
    "alias_label",
    "first_name",
    "points",
    "score",
    "vip",
    "born",
    "seen",
    "meta",
    "extra",
];

/// One source row of the corpus, and the reason it must be rejected for (None: it loads).
struct Case {
    id: i64,
    values: BTreeMap<&'static str, Option<String>>,
    expect: Option<&'static str>,
}

fn good(id: i64) -> Case {
    let mut values: BTreeMap<&'static str, Option<String>> = BTreeMap::new();
    let mut set = |k: &'static str, v: String| {
        values.insert(k, Some(v));
    };
    set("ext", format!("p-{id}"));
    set("email", format!("P{id}@Example.com"));
    set("phone", format!("+47 9{id:07}"));
    set("first_name", format!("Name {id}"));
    set("points", id.to_string());
    set("score", "1.5".into());
    set("vip", "true".into());
    set("born", "01/02/1990".into());
    set("seen", "01/02/2020 10:00:00".into());
    set("meta", r#"{"a": [1, 2]}"#.into());
    set(
        "extra",
        r#"{"plan": "gold", "address": {"city": "Oslo"}}"#.into(),
    );
    Case {
        id,
        values,
        expect: None,
    }
}

impl Case {
    fn with(mut self, column: &'static str, value: Option<&str>) -> Case {
        self.values.insert(column, value.map(str::to_string));
        self
    }

    fn rejected(mut self, reason: &'static str) -> Case {
        self.expect = Some(reason);
        self
    }
}

/// 26 good rows and 27 bad ones, one or more per rejection reason.
fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = (1..=20).map(good).collect();
    let no_ids = |c: Case| c.with("ext", None).with("email", None).with("phone", None);
    cases.push(no_ids(good(21)).with("email", Some(" Only.Email@Example.COM ")));
    cases.push(no_ids(good(22)).with("phone", Some("0047 98 76 54 32")));
    cases.push(
        no_ids(good(23))
            .with("alias_name", Some("crm-23"))
            .with("alias_label", Some("crm")),
    );
    let mut empty = good(24);
    for column in [
        "first_name",
        "points",
        "score",
        "vip",
        "born",
        "seen",
        "meta",
        "extra",
    ] {
        empty = empty.with(column, None);
    }
    cases.push(empty);
    cases.push(good(25).with("extra", None));
    cases.push(good(26).with(
        "extra",
        Some(r#"{"tags": ["a", {"b": null}], "gone": null}"#),
    ));

    let long = "x".repeat(1025);
    let many = format!(
        "{{{}}}",
        (0..250)
            .map(|i| format!("\"k{i}\": {i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(1_100_000));
    let bad: Vec<(&'static str, Option<&str>, &'static str)> = vec![
        ("ext", Some(&long), "identity_too_long"),
        ("ext", Some("null"), "reserved_identity"),
        ("ext", Some("undefined"), "reserved_identity"),
        ("ext", Some("NONE"), "reserved_identity"),
        ("ext", Some("Test"), "reserved_identity"),
        ("ext", Some(""), "reserved_identity"),
        ("ext", Some("   "), "reserved_identity"),
        ("phone", Some("12345"), "invalid_phone"),
        ("phone", Some("+1 415 CALL NOW"), "invalid_phone"),
        ("email", Some("bob@"), "invalid_email"),
        ("email", Some("no-at-sign.example.com"), "invalid_email"),
        ("alias_name", Some("crm-113"), "invalid_identity"),
        ("points", Some("ten"), "invalid_value"),
        ("score", Some("abc"), "invalid_value"),
        ("vip", Some("maybe"), "invalid_value"),
        ("born", Some("1990-02-01"), "invalid_value"),
        ("seen", Some("31/12/1999 25:00:00"), "invalid_value"),
        ("meta", Some("{broken"), "invalid_value"),
        ("extra", Some(&big), "row_too_large"),
        ("extra", Some(&many), "too_many_properties"),
        ("extra", Some(r#"{"profile_id": 5}"#), "reserved_property"),
        ("extra", Some(r#"{"__hidden": 1}"#), "reserved_property"),
        ("extra", Some("[1, 2]"), "invalid_payload"),
        ("extra", Some("not json"), "invalid_payload"),
        ("extra", Some(r#"{"plan": 3}"#), "type_conflict"),
        ("extra", Some(r#"{"address": "Oslo"}"#), "type_conflict"),
    ];
    cases.push(no_ids(good(101)).rejected("missing_identity"));
    for (i, (column, value, reason)) in bad.into_iter().enumerate() {
        cases.push(good(102 + i as i64).with(column, value).rejected(reason));
    }
    cases
}

async fn create_people(warehouse: &Client, cases: &[Case]) {
    let columns: Vec<String> = PEOPLE_COLUMNS.iter().map(|c| format!("{c} text")).collect();
    warehouse
        .batch_execute(&format!(
            "CREATE TABLE public.people (id bigint PRIMARY KEY, {},
                updated_at timestamptz NOT NULL DEFAULT '2024-01-01')",
            columns.join(", ")
        ))
        .await
        .unwrap();
    let placeholders: Vec<String> = (2..=PEOPLE_COLUMNS.len() + 1)
        .map(|i| format!("${i}"))
        .collect();
    let insert = warehouse
        .prepare(&format!(
            "INSERT INTO public.people (id, {}) VALUES ($1, {})",
            PEOPLE_COLUMNS.join(", "),
            placeholders.join(", ")
        ))
        .await
        .unwrap();
    for case in cases {
        let values: Vec<Option<String>> = PEOPLE_COLUMNS
            .iter()
            .map(|c| case.values.get(c).cloned().flatten())
            .collect();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&case.id];
        params.extend(
            values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        warehouse.execute(&insert, &params).await.unwrap();
    }
}

const PEOPLE: &str = r#"  - name: people
    connection: wh
    source: { table: public.people }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email, phone: phone, alias_name: alias_name, alias_label: alias_label }
    timezone: Europe/Oslo
    properties:
      first_name: { column: first_name, type: string }
      points: { column: points, type: integer }
      score: { column: score, type: number }
      vip: { column: vip, type: boolean }
      born: { column: born, type: date, format: "dd/MM/yyyy" }
      seen: { column: seen, type: datetime, format: "dd/MM/yyyy HH:mm:ss" }
      meta: { column: meta, type: json }
    constants: { source: warehouse }
    payload: extra
    chunk_rows: 1000
    settle_lag: 1s
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_row_lands_in_the_error_stream_with_its_reason_and_every_good_row_loads() {
    let mut fleet = Fleet::new().await;
    let cases = corpus();
    assert!(cases.len() >= 40);
    create_people(&fleet.warehouse().await, &cases).await;
    fleet.apply_ok(&fleet.spec(PEOPLE));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "people");

    let expected: BTreeMap<String, &str> = cases
        .iter()
        .filter_map(|c| c.expect.map(|r| (c.id.to_string(), r)))
        .collect();
    let good = (cases.len() - expected.len()) as i64;
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(run["rows_rejected"], expected.len() as i64, "{run}");
    assert_eq!(run["profiles_created"], good, "{run}");
    let mut by_reason: BTreeMap<String, i64> = BTreeMap::new();
    for reason in expected.values() {
        *by_reason.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(
        serde_json::to_value(&by_reason).unwrap(),
        run["rejected_by_reason"],
        "{run}"
    );

    let run_id = run["run_id"].as_str().unwrap();
    let control = fleet.control().await;
    let recorded: BTreeMap<String, String> = control
        .query(
            "SELECT row_key, reason_code FROM control.run_errors WHERE run_id = $1",
            &[&run_id.parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected_owned: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(recorded, expected_owned);
    let long_value: String = control
        .query_one(
            "SELECT value FROM control.run_errors WHERE row_key = '102'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        long_value.chars().count(),
        256,
        "offending values are truncated"
    );

    let out = fleet.sluice(&["runs", "errors", run_id, "--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.first().map(String::as_str), Some("id"));
    assert_eq!(header.last().map(String::as_str), Some("reason"));
    assert!(header.contains(&"first_name".to_string()), "{header:?}");
    let mut rows = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let key = &record[0];
        assert_eq!(&record[record.len() - 1], expected[key], "row {key}");
        let name = header.iter().position(|h| h == "first_name").unwrap();
        assert_eq!(
            &record[name],
            format!("Name {key}"),
            "the source row's columns travel along"
        );
        rows += 1;
    }
    assert_eq!(rows, expected.len());

    let profiles: i64 = control
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(profiles, good, "every good row is loaded");
    let first: serde_json::Value = control
        .query_one(
            "SELECT p.properties FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id' AND i.value = 'p-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        first,
        serde_json::json!({
            "first_name": "Name 1", "points": 1, "score": 1.5, "vip": true,
            "born": "1990-02-01", "seen": "2020-02-01T09:00:00Z", "meta": {"a": [1, 2]},
            "plan": "gold", "address": {"city": "Oslo"}, "source": "warehouse"
        }),
        "typed values; Oslo time read as UTC; payload expanded with nested values kept"
    );
    let contacts: Vec<(Option<String>, Option<String>)> = control
        .query(
            "SELECT email, phone FROM profile_store.profiles ORDER BY profile_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(contacts.contains(&(Some("only.email@example.com".into()), None)));
    assert!(contacts.contains(&(None, Some("+4798765432".into()))));
    let alias: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.identities WHERE kind = 'alias:crm' AND value = 'crm-23'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alias, 1);
    fleet.cleanup().await;
}

/// md5 over everything the stores hold, timestamps included.
async fn store_digest(control: &Client) -> String {
    control
        .query_one(
            "SELECT md5(
                (SELECT coalesce(string_agg(p::text, E'\\n' ORDER BY p.workspace_id, p.profile_id), '')
                   FROM profile_store.profiles p) ||
                (SELECT coalesce(string_agg(i::text, E'\\n' ORDER BY i.workspace_id, i.kind, i.value), '')
                   FROM profile_store.identities i) ||
                (SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t.workspace_id, t.name), '')
                   FROM profile_store.property_types t))",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_the_counts_the_real_run_then_produces_and_writes_nothing() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 20_000).await;
    fleet.apply_ok(&users_spec(&fleet, 4_000));
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");

    // 2,000 rows changed, 1,000 touched without a change, 500 new.
    warehouse
        .batch_execute(
            "UPDATE public.users SET first_name = 'Changed ' || id, updated_at = now() - interval '1 minute'
              WHERE id % 10 = 0;
             UPDATE public.users SET updated_at = now() - interval '1 minute'
              WHERE id % 20 = 5;
             INSERT INTO public.users
             SELECT g, 'user-' || g, 'New ' || g, 1, date '2000-01-01', now() - interval '1 minute'
               FROM generate_series(20001, 20500) g;",
        )
        .await
        .unwrap();
    let control = fleet.control().await;
    let before = store_digest(&control).await;
    let dry = fleet.run_with("acme", "users", &["--dry-run"]);
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(
        store_digest(&control).await,
        before,
        "a dry run writes nothing"
    );
    assert_eq!(
        (
            &dry["profiles_created"],
            &dry["profiles_updated"],
            &dry["profiles_unchanged"]
        ),
        (
            &serde_json::json!(500),
            &serde_json::json!(2000),
            &serde_json::json!(1000)
        ),
        "{dry}"
    );
    let sample = dry["sample"].as_array().expect("a dry run has a sample");
    assert_eq!(sample.len(), 20, "{dry}");
    for row in sample {
        assert_eq!(row["identity_kind"], "external_id", "{row}");
        assert!(
            ["created", "updated", "unchanged"].contains(&row["outcome"].as_str().unwrap()),
            "{row}"
        );
        // Properties are a JSON object, not JSON text in a string.
        assert!(row["properties"].get("points").is_some(), "{row}");
    }
    let watermark_run: uuid::Uuid = control
        .query_one("SELECT run_id FROM control.watermarks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        watermark_run.to_string(),
        first["run_id"].as_str().unwrap(),
        "a dry run does not move the watermark"
    );

    let real = fleet.run("acme", "users");
    assert_eq!(real["status"], "succeeded", "{real}");
    for count in [
        "profiles_created",
        "profiles_updated",
        "profiles_unchanged",
        "rows_read",
    ] {
        assert_eq!(real[count], dry[count], "{count}: dry {dry} real {real}");
    }
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_that_differs_from_the_schema_registry_is_rejected_naming_both_types() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 500).await;
    let retyped = "  - name: users_as_text
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      points: { column: loyalty_points, type: string }
    settle_lag: 1s
";
    let spec = format!("{}{retyped}", users_spec(&fleet, 1_000));
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    let control = fleet.control().await;
    let before = store_digest(&control).await;

    let second = fleet.run("acme", "users_as_text");
    assert_eq!(second["status"], "partially_succeeded", "{second}");
    assert_eq!(
        second["rejected_by_reason"],
        serde_json::json!({"type_conflict": 500}),
        "{second}"
    );
    let (column, message): (String, String) = {
        let row = control
            .query_one(
                "SELECT column_name, message FROM control.run_errors WHERE reason_code = 'type_conflict' LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(column, "points");
    assert!(
        message.contains("points") && message.contains("integer") && message.contains("string"),
        "{message}"
    );
    assert_eq!(store_digest(&control).await, before, "nothing was coerced");
    fleet.cleanup().await;
}

//! The bad-input corpus: specs, API bodies, cron strings, date formats, SQL sources and
//! credentials that must be refused with a clear error naming the field — a 4xx from the API,
//! a failed `sluice apply` on the CLI — leaving every control-plane table byte for byte as it
//! was.

mod common;

use common::{free_port, Fleet};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Each control-plane table's rows, rendered as text and hashed, with their count.
async fn control_plane(fleet: &Fleet) -> BTreeMap<String, (i64, String)> {
    let client = fleet.control().await;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name FROM information_schema.tables
              WHERE table_schema = 'control' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut snapshot = BTreeMap::new();
    for table in tables {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))
                       FROM control.{table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        snapshot.insert(table, (row.get(0), row.get(1)));
    }
    snapshot
}

/// A spec that applies, for the cases to spoil one field of.
fn good_spec(fleet: &Fleet) -> String {
    common::users_spec(fleet, 400).replace(
        "settle_lag: 1s",
        "settle_lag: 1s\n    schedule: { cron: \"0 * * * *\", timezone: Europe/Berlin }",
    )
}

/// `(what is wrong, the spec with it, what the error must name)`.
fn spec_cases(fleet: &Fleet) -> Vec<(&'static str, String, &'static str)> {
    let good = good_spec(fleet);
    let with = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    vec![
        ("not YAML", "workspace: [acme".to_string(), "line"),
        ("unknown key", with("    key: id", "    key: id\n    colour: blue"), "colour"),
        ("no workspace", with("workspace: acme", "tenant: acme"), "workspace"),
        ("bad workspace name", with("workspace: acme", "workspace: \"a c/m\""), "workspace"),
        ("no watermark", with("    watermark: updated_at\n", ""), "watermark"),
        ("bad data type", with("data_type: profiles", "data_type: people"), "data_type"),
        ("bad property type", with("type: integer", "type: int128"), "points"),
        ("bad date format", with("format: \"yyyy-MM-dd\"", "format: \"yyyy-QQ-dd\""), "birthday"),
        ("bad cron", with("cron: \"0 * * * *\"", "cron: \"61 * * * *\""), "schedule"),
        ("cron with too few fields", with("cron: \"0 * * * *\"", "cron: \"0 *\""), "schedule"),
        ("bad timezone", with("timezone: Europe/Berlin", "timezone: Mars/Olympus"), "timezone"),
        ("no identity", with("    identity: { external_id: external_id }\n", ""), "identity"),
        ("bad chunk_rows", with("chunk_rows: 400", "chunk_rows: -4"), "chunk_rows"),
        ("bad settle_lag", with("settle_lag: 1s", "settle_lag: soon"), "settle_lag"),
        ("unknown connection", with("    connection: wh", "    connection: nowhere"), "connection"),
        ("bad connection kind", with("kind: postgres", "kind: oracle"), "kind"),
        ("not a URL", with(&fleet.warehouse_url(), "nope-not-a-url"), "url"),
        ("missing table", with("table: public.users", "table: public.nobody"), "nobody"),
        ("missing column", with("column: first_name", "column: surname"), "surname"),
        ("bad SQL source", with("source: { table: public.users }", "source: { query: \"SELEC id FROM\" }"), "source"),
        ("unknown user", with("postgres://postgres@", "postgres://nobody_at_all@"), "wh"),
        ("unreachable warehouse", with("127.0.0.1:5432", "127.0.0.1:1"), "wh"),
        ("webhook without a real secret", with("settle_lag: 1s", "settle_lag: 1s\n    notify: { webhooks: [{ url: \"https://h.example/x\", secret: \"short\" }] }"), "secret"),
        ("undefined variable", with("chunk_rows: 400", "chunk_rows: ${NOT_SET_ANYWHERE}"), "NOT_SET_ANYWHERE"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_spec_is_refused_naming_its_field_and_changes_nothing() {
    let fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 100).await;
    fleet.apply_ok(&good_spec(&fleet));
    let before = control_plane(&fleet).await;
    let mut wrong = Vec::new();
    for (case, spec, names) in spec_cases(&fleet) {
        let out = fleet.apply(&spec);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() || !stderr.contains(names) {
            wrong.push(format!(
                "{case}: exit {:?}, wanted {names:?} in: {stderr}",
                out.status.code()
            ));
        }
        if control_plane(&fleet).await != before {
            wrong.push(format!("{case}: the control plane changed"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    fleet.cleanup().await;
}

/// `(what is wrong, method, path, body, the field the error must name)`; a body given as a
/// string is sent as it is.
fn api_cases(fleet: &Fleet) -> Vec<(&'static str, Method, String, Option<Value>, &'static str)> {
    let url = fleet.warehouse_url();
    let import = |spoil: &dyn Fn(&mut Value)| {
        let mut import = json!({
            "connection": "wh", "source": {"table": "public.users"}, "data_type": "profiles",
            "key": "id", "watermark": "updated_at", "identity": {"external_id": "external_id"},
            "properties": {"first_name": {"column": "first_name", "type": "string"}},
            "schedule": {"cron": "0 * * * *"}
        });
        spoil(&mut import);
        Some(import)
    };
    let put = Method::PUT;
    let post = Method::POST;
    let get = Method::GET;
    vec![
        (
            "connection kind",
            put.clone(),
            "/v1/connections/wh2".into(),
            Some(json!({"kind": "oracle", "url": url})),
            "kind",
        ),
        (
            "connection without a URL",
            put.clone(),
            "/v1/connections/wh2".into(),
            Some(json!({"kind": "postgres"})),
            "url",
        ),
        (
            "connection body not JSON",
            put.clone(),
            "/v1/connections/wh2".into(),
            Some(json!("{\"kind\": ")),
            "body",
        ),
        (
            "connection name",
            put.clone(),
            "/v1/connections/w%20h".into(),
            Some(json!({"kind": "postgres", "url": url})),
            "name",
        ),
        (
            "connection refused",
            put.clone(),
            "/v1/connections/wh2".into(),
            Some(json!({"kind": "postgres", "url": url.replace("postgres@", "nobody_at_all@")})),
            "wh2",
        ),
        (
            "import cron",
            put.clone(),
            "/v1/imports/users2".into(),
            import(&|i| i["schedule"]["cron"] = json!("0 25 * * *")),
            "schedule",
        ),
        (
            "import date format",
            put.clone(),
            "/v1/imports/users2".into(),
            import(&|i| {
                i["properties"]["first_name"] =
                    json!({"column": "birthday", "type": "date", "format": "yyyy-QQ"})
            }),
            "first_name",
        ),
        (
            "import SQL",
            put.clone(),
            "/v1/imports/users2".into(),
            import(&|i| i["source"] = json!({"query": "SELEC 1"})),
            "source",
        ),
        (
            "import missing column",
            put.clone(),
            "/v1/imports/users2".into(),
            import(&|i| i["watermark"] = json!("changed_on")),
            "changed_on",
        ),
        (
            "import unknown field",
            put.clone(),
            "/v1/imports/users2".into(),
            import(&|i| i["colour"] = json!("blue")),
            "colour",
        ),
        (
            "import data type changed",
            put.clone(),
            "/v1/imports/users".into(),
            import(&|i| {
                i["data_type"] = json!("user_deletes");
                i["allow_deletes"] = json!(true);
                i["properties"] = json!({});
            }),
            "data_type",
        ),
        (
            "dry_run not a boolean",
            post.clone(),
            "/v1/imports/users/runs".into(),
            Some(json!({"dry_run": "yes"})),
            "dry_run",
        ),
        (
            "rewind date",
            post.clone(),
            "/v1/imports/users/rewind".into(),
            Some(json!({"to": "yesterday"})),
            "to",
        ),
        (
            "replay window backwards",
            post.clone(),
            "/v1/imports/users/replay".into(),
            Some(json!({"from": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"})),
            "until",
        ),
        (
            "token role",
            post.clone(),
            "/v1/tokens".into(),
            Some(json!({"name": "svc", "role": "god"})),
            "role",
        ),
        (
            "token name",
            post.clone(),
            "/v1/tokens".into(),
            Some(json!({"name": "", "role": "viewer"})),
            "name",
        ),
        (
            "spec not YAML",
            post.clone(),
            "/v1/apply".into(),
            Some(json!("workspace: [acme")),
            "line",
        ),
        (
            "preview without a key",
            post.clone(),
            "/v1/connections/wh/preview".into(),
            Some(json!({"table": "public.users", "watermark": "updated_at"})),
            "key",
        ),
        (
            "preview rows",
            get.clone(),
            "/v1/imports/users/preview?rows=0".into(),
            None,
            "rows",
        ),
        (
            "runs status",
            get.clone(),
            "/v1/runs?status=bogus".into(),
            None,
            "status",
        ),
        (
            "runs date",
            get.clone(),
            "/v1/runs?from=last-tuesday".into(),
            None,
            "from",
        ),
        (
            "runs page size",
            get.clone(),
            "/v1/runs?per_page=100000".into(),
            None,
            "per_page",
        ),
        (
            "identity kind",
            get.clone(),
            "/v1/profiles?kind=shoe_size&value=9".into(),
            None,
            "kind",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_api_request_gets_a_4xx_naming_its_field_and_changes_nothing() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 100).await;
    fleet.apply_ok(&good_spec(&fleet));
    let out = fleet.sluice(&[
        "tokens",
        "create",
        "--workspace",
        "acme",
        "--role",
        "admin",
        "--name",
        "t",
    ]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    // The first call also records the token's use, which the cases must not change.
    while http
        .get(format!("{base}/v1/imports"))
        .bearer_auth(&token)
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the API did not listen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = control_plane(&fleet).await;
    let mut wrong = Vec::new();
    for (case, method, path, body, names) in api_cases(&fleet) {
        let mut request = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&token);
        request = match body {
            Some(Value::String(text)) => request.body(text),
            Some(json) => request.json(&json),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let named = answer["field"].as_str().is_some_and(|f| f.contains(names))
            || answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(names));
        if !status.is_client_error() || !named || answer["code"].as_str().is_none() {
            wrong.push(format!(
                "{case}: {method} {path}: {status}, wanted {names:?} in: {text}"
            ));
        }
        if control_plane(&fleet).await != before {
            wrong.push(format!("{case}: the control plane changed"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A connection's fields are named as the request body names them.
    let answer: Value = http
        .put(format!("{base}/v1/connections/wh3"))
        .bearer_auth(&token)
        .json(&json!({"kind": "postgres", "url": "not a url"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["field"], "url", "{answer}");
    // An oversized body gets the error body too, and a spec error says its field once.
    let response = http
        .post(format!("{base}/v1/apply"))
        .bearer_auth(&token)
        .body("x".repeat(3 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["connection"],
        "close",
        "the unread body must not be taken for the next request"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "too_large", "{answer}");
    let answer: Value = http
        .post(format!("{base}/v1/apply"))
        .bearer_auth(&token)
        .body("workspace: acme\nimports: 7\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = answer["message"].as_str().unwrap();
    let field = answer["field"].as_str().unwrap();
    assert!(
        !message.contains(&format!("{field}: {field}:")),
        "the field is said twice: {answer}"
    );
    assert_eq!(control_plane(&fleet).await, before);
    fleet.cleanup().await;
}

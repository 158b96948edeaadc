//! Events through the whole fleet, exactly once: replayed messages, resyncs and a killed loader
//! store nothing twice; events land in monthly partitions and give their profiles a lifecycle;
//! purchases are validated item by item; unknown identities are created or rejected.

mod common;

use common::activity::{activity_import, assert_events_equal_source, create_activity};
use common::{Fleet, AMQP};
use sluice_proto::headers::TraceContext;
use sluice_proto::{Bus, ChunkObjects, ChunkRef, ChunkTransformed, ChunkWork, Topology};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

async fn event_count(control: &Client) -> i64 {
    control
        .query_one("SELECT count(*) FROM profile_store.events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_chunk_replayed_and_then_resynced_is_stored_exactly_once() {
    let mut fleet = Fleet::new().await;
    create_activity(&fleet.warehouse().await, 3_000).await;
    fleet.apply_ok(&fleet.spec(&activity_import(1_000)));
    fleet.start("all", &[]);
    let first = fleet.run("acme", "activity");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["events_inserted"], 3_000, "{first}");
    assert_eq!(first["profiles_created"], 300, "{first}");
    let control = fleet.control().await;

    // The first chunk's transformed message, delivered again.
    let run_id: uuid::Uuid = first["run_id"].as_str().unwrap().parse().unwrap();
    let row = control
        .query_one(
            "SELECT r.workspace_id, r.import_id, i.spec FROM control.runs r
               JOIN control.imports i ON i.id = r.import_id WHERE r.id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    let import: sluice_coordinator::spec::ImportDecl = serde_json::from_value(row.get(2)).unwrap();
    let chunk = ChunkRef {
        run_id,
        workspace_id: row.get(0),
        import_id: row.get(1),
        seq: 0,
    };
    let replay = ChunkTransformed {
        work: ChunkWork {
            objects: ChunkObjects::for_chunk(&chunk),
            chunk,
            dry_run: false,
            mapping: import.mapping(),
            load_rows_per_second: None,
            run_started_at: None,
            key_set: None,
            store: None,
            lineage: false,
            destination: None,
        },
        rows_accepted: 1_000,
        rows_rejected: 0,
        rejected_by_reason: Default::default(),
        events_time_imputed: 0,
        date_formats: Default::default(),
    };
    let topology = Topology::new(format!("sluice_{}", fleet.id));
    let bus = Bus::connect(AMQP, &topology).await.unwrap();
    bus.publish(&replay, &TraceContext::new_trace())
        .await
        .unwrap();
    bus.close().await;
    let started = Instant::now();
    loop {
        let duplicates: i64 = control
            .query_one(
                "SELECT events_duplicate FROM control.chunks WHERE run_id = $1 AND seq = 0",
                &[&run_id],
            )
            .await
            .unwrap()
            .get(0);
        if duplicates > 0 {
            assert_eq!(duplicates, 1_000, "every replayed event is a duplicate");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replay was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(event_count(&control).await, 3_000);

    // A full resync reads every row again; its dry run says so first and writes nothing.
    control
        .batch_execute("DELETE FROM control.watermarks")
        .await
        .unwrap();
    let dry = fleet.run_with("acme", "activity", &["--dry-run"]);
    assert_eq!(
        (&dry["events_inserted"], &dry["events_duplicate"]),
        (&serde_json::json!(0), &serde_json::json!(3_000)),
        "{dry}"
    );
    assert_eq!(event_count(&control).await, 3_000);
    let resync = fleet.run("acme", "activity");
    assert_eq!(resync["status"], "succeeded", "{resync}");
    assert_eq!(resync["rows_read"], 3_000, "{resync}");
    assert_eq!(resync["events_inserted"], 0, "{resync}");
    assert_eq!(resync["events_duplicate"], 3_000, "{resync}");
    assert_events_equal_source(&fleet).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loader_killed_mid_event_chunk_leaves_every_event_stored_once() {
    let mut fleet = Fleet::new().await;
    create_activity(&fleet.warehouse().await, 60_000).await;
    fleet.apply_ok(&fleet.spec(&activity_import(4_000)));
    fleet.start("coordinator", &[]);
    fleet.start("extractor", &[]);
    fleet.start("transformer", &[]);
    fleet.start("loader", &["--load-rows-per-second", "12000"]);
    let run_id = fleet.request_run("acme", "activity");
    fleet
        .wait_for_loaded_chunks(&run_id, 2, Duration::from_secs(180))
        .await;
    fleet.kill("loader");
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.start("loader", &[]);
    let status = fleet.wait_for_run(&run_id, Duration::from_secs(300)).await;
    assert_eq!(status, "succeeded");
    assert_events_equal_source(&fleet).await;
    fleet.cleanup().await;
}

/// A profile's (or a source user's) identity, first and last event time as RFC 3339 text in
/// UTC, and event count.
type Lifecycle = (String, String, String, i64);

/// The lifecycles `select` returns, ordered by identity: it names the first and last event
/// times `f` and `l` and prints them where it says `{first}` and `{last}`.
async fn lifecycles(client: &Client, select: &str) -> Vec<Lifecycle> {
    const UTC: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    let sql = select
        .replace("{first}", &format!("to_char(f AT TIME ZONE 'UTC', {UTC})"))
        .replace("{last}", &format!("to_char(l AT TIME ZONE 'UTC', {UTC})"));
    common::sorted_rows(client, &sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn events_over_three_months_fill_their_partitions_and_profiles_carry_their_lifecycle() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_activity(&warehouse, 300_000).await;
    fleet.apply_ok(&fleet.spec(&activity_import(50_000)));
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let api = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&api).await;
    let run = fleet.run("acme", "activity");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["events_inserted"], 300_000, "{run}");
    assert_events_equal_source(&fleet).await;

    let control = fleet.control().await;
    let per_partition: Vec<(String, i64)> = control
        .query(
            "SELECT c.relname::text, (SELECT count(*) FROM profile_store.events e WHERE e.tableoid = c.oid)
               FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
              WHERE h.inhparent = 'profile_store.events'::regclass ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let per_month: Vec<(String, i64)> = warehouse
        .query(
            "SELECT 'events_' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY_MM'), count(*)
               FROM public.activity GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_month.len(), 3);
    assert_eq!(
        per_partition, per_month,
        "one partition per month, each with its events"
    );

    // Each user's first and last event and count, in the form the export and the API print.
    let lifecycle_source = lifecycles(
        &warehouse,
        "SELECT user_id, {first}, {last}, n
           FROM (SELECT user_id, min(occurred_at) AS f, max(occurred_at) AS l, count(*) AS n
                   FROM public.activity GROUP BY user_id) a",
    )
    .await;
    let lifecycle_view = lifecycles(
        &control,
        "SELECT i.value, {first}, {last}, l.event_count
           FROM (SELECT workspace_id, profile_id, first_event_at AS f, last_event_at AS l, event_count
                   FROM profile_store.event_lifecycle) l
           JOIN profile_store.identities i USING (workspace_id, profile_id)
          WHERE i.kind = 'external_id'",
    )
    .await;
    assert_eq!(lifecycle_source.len(), 30_000);
    assert!(
        lifecycle_view == lifecycle_source,
        "the store's view: first/last event and counts per profile"
    );
    let out = fleet.sluice(&["profiles", "export", "--workspace", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut exported: Vec<Lifecycle> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let p: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = |name: &str| p[name].as_str().unwrap_or_default().to_string();
            let user = p["identities"]["external_id"].as_str().unwrap().to_string();
            (
                user,
                text("first_event_at"),
                text("last_event_at"),
                p["event_count"].as_i64().unwrap(),
            )
        })
        .collect();
    exported.sort();
    assert!(
        exported == lifecycle_source,
        "the export: first/last event and counts per profile"
    );
    let viewer = fleet.token("acme", "viewer");
    let profile: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/v1/profiles?kind=external_id&value=user-7"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let user_7 = lifecycle_source.iter().find(|l| l.0 == "user-7").unwrap();
    assert_eq!(
        (
            time(profile["first_event_at"].as_str().unwrap()),
            time(profile["last_event_at"].as_str().unwrap()),
            profile["event_count"].as_i64().unwrap()
        ),
        (time(&user_7.1), time(&user_7.2), user_7.3),
        "the API: {profile}"
    );
    let names: i64 = control
        .query_one("SELECT count(DISTINCT name) FROM profile_store.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(names, 3, "event names are case-sensitive");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purchases_are_validated_item_by_item_and_good_ones_keep_their_items() {
    let mut fleet = Fleet::new().await;
    fleet
        .warehouse()
        .await
        .batch_execute(
            r#"CREATE TABLE public.orders (
                id bigint PRIMARY KEY, customer text, sku text, currency text, price text,
                items text, bought text, updated_at timestamptz NOT NULL DEFAULT '2024-05-01');
             INSERT INTO public.orders (id, customer, sku, currency, price, items, bought) VALUES
               (1, 'c1', 'sku-1', 'usd', '19.990', '[{"product_id": "a", "currency": "usd", "price": 9.99, "quantity": 1}, {"product_id": "b", "currency": "USD", "price": "10.00"}]', '01/05/2024 10:00:00'),
               (2, 'c2', 'sku-2', 'EUR', '5', NULL, '02/05/2024 11:30:00'),
               (3, 'c1', 'sku-3', 'EURO', '5', NULL, '02/05/2024 11:30:00'),
               (4, 'c1', 'sku-4', NULL, '5', NULL, '02/05/2024 11:30:00'),
               (5, 'c1', 'sku-5', 'GBP', '-1', NULL, '02/05/2024 11:30:00'),
               (6, 'c1', 'sku-6', 'GBP', 'abc', NULL, '02/05/2024 11:30:00'),
               (7, 'c1', 'sku-7', 'GBP', '1', '[{"product_id": "", "currency": "GBP", "price": 1}]', '02/05/2024 11:30:00'),
               (8, 'c1', 'sku-8', 'GBP', '1', '{"product_id": "a"}', '02/05/2024 11:30:00'),
               (9, 'c1', 'sku-9', 'GBP', '1', '[{"product_id": "a", "currency": "GBP", "price": 1, "quantity": 0}]', '02/05/2024 11:30:00'),
               (10, 'c1', NULL, 'GBP', '1', NULL, '02/05/2024 11:30:00'),
               (11, 'c1', 'sku-11', 'GBP', '1', NULL, NULL),
               (12, 'c1', 'sku-12', 'GBP', '1', NULL, '2024-05-02');"#,
        )
        .await
        .unwrap();
    let import = "  - name: orders
    connection: wh
    source: { table: public.orders }
    data_type: purchases
    key: id
    watermark: updated_at
    identity: { external_id: customer }
    event_time: { column: bought, format: \"dd/MM/yyyy HH:mm:ss\" }
    purchase: { product_id: sku, currency: currency, price: price, items: items }
    settle_lag: 1s
";
    fleet.apply_ok(&fleet.spec(import));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "orders");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(run["events_inserted"], 2, "{run}");
    assert_eq!(
        run["rejected_by_reason"],
        serde_json::json!({"invalid_currency": 2, "invalid_price": 2, "invalid_items": 3,
                           "invalid_product": 1, "missing_event_time": 1, "invalid_event_time": 1}),
        "{run}"
    );
    let control = fleet.control().await;
    let stored: serde_json::Value = control
        .query_one(
            "SELECT jsonb_build_object('name', name, 'time', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'properties', properties)
               FROM profile_store.events WHERE properties->>'product_id' = 'sku-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        serde_json::json!({
            "name": "Charged",
            "time": "2024-05-01 10:00:00",
            "properties": {
                "product_id": "sku-1", "currency": "USD", "price": 19.990,
                "items": [
                    {"product_id": "a", "currency": "USD", "price": 9.99, "quantity": 1},
                    {"product_id": "b", "currency": "USD", "price": "10.00"}
                ]
            }
        })
    );
    let price_text: String = control
        .query_one(
            "SELECT properties->>'price' FROM profile_store.events WHERE properties->>'product_id' = 'sku-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(price_text, "19.990", "prices keep their exact decimal");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_unknown_identities_are_rejected_when_the_import_says_so() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_activity(&warehouse, 100).await;
    let strict = activity_import(1_000)
        .replace("name: activity", "name: strict")
        .replace(
            "    payload: props\n",
            "    payload: props\n    unknown_identity: reject\n",
        );
    fleet.apply_ok(&fleet.spec(&format!("{}{strict}", activity_import(1_000))));
    fleet.start("all", &[]);
    let first = fleet.run("acme", "activity");
    assert_eq!(first["profiles_created"], 10, "{first}");
    warehouse
        .batch_execute(
            "INSERT INTO public.activity VALUES
                (1001, 'user-1', 'Known', '2024-03-01', '{}', '2024-05-01'),
                (1002, 'stranger', 'Unknown', '2024-03-01', '{}', '2024-05-01')",
        )
        .await
        .unwrap();
    let strict = fleet.run("acme", "strict");
    assert_eq!(strict["status"], "partially_succeeded", "{strict}");
    assert_eq!(strict["profiles_created"], 0, "{strict}");
    assert_eq!(
        strict["rejected_by_reason"],
        serde_json::json!({"unknown_identity": 1}),
        "{strict}"
    );
    // The other 101 rows are the first import's events under the strict import's own keys.
    assert_eq!(strict["events_inserted"], 101, "{strict}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_deletes_need_the_guard_and_delete_exactly_the_listed_profiles() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_activity(&warehouse, 100).await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.gdpr (id bigint PRIMARY KEY, user_id text, updated_at timestamptz NOT NULL);
             INSERT INTO public.gdpr VALUES (1, 'user-1', '2024-05-01'), (2, 'user-2', '2024-05-01'),
                                            (3, 'nobody', '2024-05-01');",
        )
        .await
        .unwrap();
    let deletes = "  - name: forget
    connection: wh
    source: { table: public.gdpr }
    data_type: user_deletes
    key: id
    watermark: updated_at
    identity: { external_id: user_id }
    allow_deletes: true
    delete_events: true
    settle_lag: 1s
";
    let with_property = deletes.replace(
        "    allow_deletes: true\n",
        "    allow_deletes: true\n    properties:\n      name: { column: user_id, type: string }\n",
    );
    let refused = fleet.apply(&fleet.spec(&with_property));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("imports[0].properties"), "{stderr}");
    let unguarded = fleet.apply(&fleet.spec(&deletes.replace("    allow_deletes: true\n", "")));
    assert!(String::from_utf8_lossy(&unguarded.stderr).contains("imports[0].allow_deletes"));

    fleet.apply_ok(&fleet.spec(&format!("{}{deletes}", activity_import(1_000))));
    fleet.start("all", &[]);
    fleet.run("acme", "activity");
    let control = fleet.control().await;
    let before: i64 = control
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0);
    let events_of_deleted: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.events e JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.value IN ('user-1', 'user-2')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let events_before = event_count(&control).await;
    let run = fleet.run("acme", "forget");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_deleted"], 2, "{run}");
    assert_eq!(run["deletes_not_found"], 1, "{run}");
    let remaining: Vec<String> = control
        .query(
            "SELECT value FROM profile_store.identities WHERE kind = 'external_id' ORDER BY value",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(remaining.len() as i64, before - 2);
    assert!(
        !remaining.contains(&"user-1".to_string()) && !remaining.contains(&"user-2".to_string())
    );
    assert_eq!(
        event_count(&control).await,
        events_before - events_of_deleted
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_older_than_the_workspace_retention_are_rejected_and_the_rest_export() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_activity(&warehouse, 20).await;
    warehouse
        .batch_execute(
            "INSERT INTO public.activity VALUES
                (101, 'user-1', 'Recent', now() - interval '1 day', '{}', '2024-05-01'),
                (102, 'user-1', 'Recent', now() - interval '2 days', '{}', '2024-05-01')",
        )
        .await
        .unwrap();
    let spec = fleet.spec(&activity_import(1_000)).replace(
        "workspace: acme\n",
        "workspace: acme\nevent_retention: 30d\n",
    );
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let run = fleet.run("acme", "activity");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(run["events_inserted"], 2, "{run}");
    assert_eq!(
        run["rejected_by_reason"],
        serde_json::json!({"outside_retention": 20}),
        "{run}"
    );
    let out = fleet.sluice(&["events", "export", "--workspace", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .all(|e| e["name"] == "Recent" && e["profile_id"].is_i64()));
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn event_properties_keep_their_first_type_per_event_and_missing_times_take_the_runs_start() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.clicks (id bigint PRIMARY KEY, eid text, uid text, kind text,
                                         at timestamptz, props jsonb,
                                         updated_at timestamptz NOT NULL);
             INSERT INTO public.clicks VALUES
                (1, 'e1', 'u1', 'Viewed', '2024-01-01', '{\"price\": 10}', '2024-02-01'),
                (2, 'e2', 'u1', 'Viewed', '2024-01-02', '{\"price\": \"ten\"}', '2024-02-01'),
                (3, 'e3', 'u1', 'Bought', '2024-01-03', '{\"price\": \"ten\"}', '2024-02-01'),
                (4, 'e4', 'u2', 'Viewed', NULL, '{\"price\": 5}', '2024-02-01');",
        )
        .await
        .unwrap();
    let import = |name: &str, time: &str| {
        format!(
            "  - name: {name}
    connection: wh
    source: {{ table: public.clicks }}
    data_type: events
    key: id
    watermark: updated_at
    identity: {{ external_id: uid }}
    event_name: {{ column: kind }}
    event_time: {time}
    dedup_key: eid
    payload: props
    settle_lag: 1s
"
        )
    };
    fleet.apply_ok(&fleet.spec(&format!(
        "{}{}",
        import("clicks", "{ column: at, if_missing: import_time }"),
        import("strict_clicks", "{ column: at }")
    )));
    fleet.start("all", &[]);
    let before = chrono::Utc::now();
    let run = fleet.run("acme", "clicks");
    let after = chrono::Utc::now();
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(
        run["rejected_by_reason"],
        serde_json::json!({"type_conflict": 1}),
        "{run}"
    );
    assert_eq!(run["events_inserted"], 3, "{run}");
    assert_eq!(run["events_time_imputed"], 1, "{run}");
    let out = fleet.sluice(&["runs", "errors", run["run_id"].as_str().unwrap()]);
    let errors = String::from_utf8_lossy(&out.stdout);
    assert!(
        errors.contains("property price of event Viewed is integer")
            && errors.contains("this row's value is string"),
        "{errors}"
    );
    let control = fleet.control().await;
    let stamped: chrono::DateTime<chrono::Utc> = control
        .query_one(
            "SELECT time FROM profile_store.events WHERE dedup_key = 'e4'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stamped >= before - chrono::Duration::seconds(1) && stamped <= after,
        "stamped {stamped}, run between {before} and {after}"
    );

    // Without if_missing the same row is rejected; the registry is shared by imports.
    let strict = fleet.run("acme", "strict_clicks");
    assert_eq!(
        strict["rejected_by_reason"],
        serde_json::json!({"type_conflict": 1, "missing_event_time": 1}),
        "{strict}"
    );
    assert_eq!(strict["events_time_imputed"], 0, "{strict}");
    fleet.cleanup().await;
}

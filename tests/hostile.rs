//! Sources a hostile or careless warehouse presents, through the whole fleet: a query that
//! writes, a key column mapped as a property, and the values that once panicked or were
//! skipped without a word (NULL and infinite keys and watermarks, non-finite numbers).

mod common;

use common::{create_users, Fleet};

/// A profiles import of `source` keyed by `id`, watermarked by `updated_at`, with `properties`.
fn import(fleet: &Fleet, source: &str, properties: &str) -> String {
    fleet.spec(&format!(
        r#"
  - name: users
    connection: wh
    source: {source}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
{properties}
    chunk_rows: 100
    settle_lag: 1s
"#
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_query_that_writes_leaves_nothing_in_the_warehouse() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 300).await;
    // Large objects are written even in a read-only transaction: every planning and reading
    // statement creates some, and only a rollback undoes them.
    fleet.apply_ok(&import(
        &fleet,
        r#"{ query: "SELECT u.*, lo_from_bytea(0, 'x'::bytea)::bigint AS lo FROM public.users u" }"#,
        "      first_name: { column: first_name, type: string }\n      lo: { column: lo, type: integer }",
    ));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_loaded"], 300, "{run}");
    let left: i64 = warehouse
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 0,
        "large objects the source query created outlived it"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_column_is_mapped_like_any_other() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 250).await;
    fleet.apply_ok(&import(
        &fleet,
        "{ table: public.users }",
        "      source_id: { column: id, type: integer }\n      changed: { column: updated_at, type: datetime }",
    ));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_loaded"], 250, "{run}");
    let control = fleet.control().await;
    let wrong: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id'
                AND ('user-' || (p.properties->>'source_id')) IS DISTINCT FROM i.value",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "every profile holds its source row's key");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_without_a_key_or_watermark_and_values_no_property_holds_are_counted_and_shown() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.odd (id bigint, external_id text, updated_at timestamptz,
                                      seen timestamptz, score float8, balance numeric);
             INSERT INTO public.odd VALUES
               (1, 'u1', '2024-01-01', '2024-01-01', 1.5, 10.25),
               (NULL, 'u2', '2024-01-02', NULL, NULL, NULL),
               (3, 'u3', NULL, NULL, NULL, NULL),
               (4, 'u4', '-infinity', NULL, NULL, NULL),
               (5, 'u5', 'infinity', NULL, NULL, NULL),
               (6, 'u6', '2024-01-06', '-infinity', NULL, NULL),
               (7, 'u7', '2024-01-07', NULL, 'NaN', NULL),
               (8, 'u8', '2024-01-08', NULL, NULL, 123456789012345678901234567890),
               (9, 'u9', '2024-01-09', 'infinity', '-Infinity', NULL),
               (10, 'u10', '2024-01-10', NULL, NULL, 0.1);",
        )
        .await
        .unwrap();
    fleet.apply_ok(&import(
        &fleet,
        "{ table: public.odd }",
        "      seen: { column: seen, type: datetime }\n      score: { column: score, type: number }\n      balance: { column: balance, type: number }",
    ));
    fleet.start("all", &[]);

    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(run["rows_without_watermark"], 3, "{run}");
    assert_eq!(run["rows_without_key"], 1, "{run}");
    assert_eq!(run["rows_held_back_future"], 0, "{run}");
    assert_eq!(run["rows_loaded"], 2, "{run}");
    assert_eq!(run["rows_rejected"], 5, "{run}");
    assert_eq!(run["rejected_by_reason"]["missing_key"], 1, "{run}");
    assert_eq!(run["rejected_by_reason"]["invalid_value"], 4, "{run}");

    let control = fleet.control().await;
    let run_id: uuid::Uuid = run["run_id"].as_str().unwrap().parse().unwrap();
    let errors: Vec<(String, String, String)> = control
        .query(
            "SELECT row_key, column_name, reason_code FROM control.run_errors
              WHERE run_id = $1 ORDER BY reason_code, row_key",
            &[&run_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("6", "seen", "invalid_value"),
        ("7", "score", "invalid_value"),
        ("8", "balance", "invalid_value"),
        ("9", "seen", "invalid_value"),
        ("(no key #1)", "id", "missing_key"),
        ("3", "updated_at", "missing_watermark"),
        ("4", "updated_at", "missing_watermark"),
        ("5", "updated_at", "missing_watermark"),
    ]
    .iter()
    .map(|(k, c, r)| (k.to_string(), c.to_string(), r.to_string()))
    .collect();
    assert_eq!(errors, expected);
    let balance: f64 = control
        .query_one(
            "SELECT (properties->>'balance')::float8 FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.value = 'u10'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(balance, 0.1);

    // Nothing new: the rows without a watermark are reported again, the keyless one was.
    let again = fleet.run("acme", "users");
    assert_eq!(again["status"], "partially_succeeded", "{again}");
    assert_eq!(again["rows_without_watermark"], 3, "{again}");
    assert_eq!(again["rows_without_key"], 0, "{again}");
    assert_eq!(again["rows_read"], 0, "{again}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_runs_queued_chunks_are_discarded_not_loaded() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 4_000).await;
    warehouse
        .batch_execute("CREATE TABLE divisor (d integer); INSERT INTO divisor VALUES (0);")
        .await
        .unwrap();
    // The eighth chunk, the last of the first window, fails at extraction while slow loads
    // leave the seven before it queued.
    fleet.apply_ok(&fleet.spec(
        r#"
  - name: users
    connection: wh
    source: { query: "SELECT u.*, CASE WHEN u.id = 800 THEN 1 / (SELECT d FROM divisor) ELSE 1 END AS one FROM public.users u" }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      one: { column: one, type: integer }
    chunk_rows: 100
    settle_lag: 1s
"#,
    ));
    fleet.start_with_env(
        "all",
        &["--max-attempts", "1"],
        &[("SLUICE_LOAD_ROWS_PER_SECOND", "200")],
    );
    let run_id = fleet.request_run("acme", "users");
    assert_eq!(
        fleet
            .wait_for_run(&run_id, std::time::Duration::from_secs(120))
            .await,
        "failed"
    );
    let control = fleet.control().await;
    let id: uuid::Uuid = run_id.parse().unwrap();
    let loaded = || async {
        control
            .query_one(
                "SELECT count(*) FROM control.chunks WHERE run_id = $1 AND status = 'loaded'",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let at_failure = loaded().await;
    assert!(
        at_failure < 30,
        "{at_failure} chunks loaded before the failure"
    );
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let later = loaded().await;
    assert!(
        later - at_failure <= 2,
        "{} chunks of the failed run were loaded after it failed (at most the two in flight may be)",
        later - at_failure
    );
    let unfinished: i64 = control
        .query_one(
            "SELECT count(*) FROM control.chunks
              WHERE run_id = $1 AND status NOT IN ('loaded', 'failed', 'cancelled')",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unfinished, 0, "every chunk of the failed run has ended");
    fleet.cleanup().await;
}

/// Polls a process's `/readyz` until it answers `want`; returns the status and body.
async fn readyz(port: u16, want: u16) -> (u16, String) {
    let started = std::time::Instant::now();
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status == want || started.elapsed() > std::time::Duration::from_secs(60) {
                return (status, body);
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no answer on {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_another_master_key_is_not_ready_and_hands_its_chunks_back() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 600).await;
    fleet.apply_ok(&common::users_spec(&fleet, 100));
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(readyz(port, 200).await.0, 200);
    let stranger = common::free_port();
    fleet.start_with_env(
        "extractor",
        &["--http-addr", &format!("127.0.0.1:{stranger}")],
        &[("SLUICE_MASTER_KEY", &"ab".repeat(32))],
    );
    let (status, body) = readyz(stranger, 503).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("master_key"), "{body}");

    for _ in 0..2 {
        let run = fleet.run("acme", "users");
        assert_eq!(run["status"], "succeeded", "{run}");
        warehouse
            .execute(
                "UPDATE public.users SET updated_at = now() - interval '2 seconds'",
                &[],
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let topology = sluice_proto::Topology::new(format!("sluice_{}", fleet.id));
    let bus = sluice_proto::Bus::connect(common::AMQP, &topology)
        .await
        .unwrap();
    let dead = bus
        .queue_depth(&topology.dead_letter_queue(sluice_proto::topology::QueueRole::Extract))
        .await
        .unwrap();
    assert_eq!(dead, 0, "no chunk was dead-lettered");
    bus.close().await;
    fleet.cleanup().await;
}

/// The files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| match e.file_type().unwrap().is_dir() {
            true => files_under(&e.path()),
            false => vec![e.path()],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_objects_are_deleted_once_its_retention_has_passed() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 300).await;
    let spec = common::users_spec(&fleet, 100);
    fleet.apply_ok(&spec.replace(
        "    settle_lag: 1s\n",
        "    settle_lag: 1s\n    object_retention: 0s\n",
    ));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    let objects = fleet.data_dir.join("objects");
    let run_dir = files_under(&objects)
        .into_iter()
        .find(|f| {
            f.to_string_lossy()
                .contains(run["run_id"].as_str().unwrap())
        })
        .map(|f| f.parent().unwrap().parent().unwrap().to_path_buf())
        .expect("the run wrote chunk objects");
    let started = std::time::Instant::now();
    while !files_under(&run_dir).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the run's objects are still there: {:?}",
            files_under(&run_dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // An import keeping them a week keeps them.
    fleet.apply_ok(&spec);
    warehouse
        .execute(
            "UPDATE public.users SET updated_at = now() - interval '2 seconds'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let kept = fleet.run("acme", "users");
    assert_eq!(kept["status"], "succeeded", "{kept}");
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let id = kept["run_id"].as_str().unwrap();
    assert!(
        files_under(&objects)
            .iter()
            .any(|f| f.to_string_lossy().contains(id)),
        "a run kept for 7 days lost its objects"
    );
    fleet.cleanup().await;
}

/// Statements Sluice is running on the warehouse that sleep.
async fn sleeping_statements(warehouse: &tokio_postgres::Client) -> i64 {
    warehouse
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'sluice-extractor'
                AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_an_import_cancels_its_planning_statement_and_nothing_plans_it_again() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 300).await;
    warehouse
        .batch_execute("CREATE TABLE slow (on_ boolean); INSERT INTO slow VALUES (false);")
        .await
        .unwrap();
    fleet.apply_ok(&import(
        &fleet,
        r#"{ query: "SELECT u.* FROM public.users u WHERE NOT (SELECT on_ FROM slow) OR pg_sleep(0.2) IS NOT NULL" }"#,
        "      first_name: { column: first_name, type: string }",
    ));
    // Every planning statement now sleeps a minute.
    warehouse
        .execute("UPDATE slow SET on_ = true", &[])
        .await
        .unwrap();
    fleet.start("all", &[]);
    let run_id = fleet.request_run("acme", "users");
    let started = std::time::Instant::now();
    while sleeping_statements(&warehouse).await == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "planning never reached the source"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(fleet.run_status(&run_id).await, "planning");

    let stopped = fleet.sluice(&["imports", "stop", "users", "--workspace", "acme"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let started = std::time::Instant::now();
    while sleeping_statements(&warehouse).await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the planning statement still runs after the import was stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Nothing plans the stopped run again, and it stays cancelled with no chunk.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert_eq!(sleeping_statements(&warehouse).await, 0);
    assert_eq!(fleet.run_status(&run_id).await, "cancelled");
    let id: uuid::Uuid = run_id.parse().unwrap();
    let chunks: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT count(*) FROM control.chunks WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(chunks, 0);
    fleet.cleanup().await;
}

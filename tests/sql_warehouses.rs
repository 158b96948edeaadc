//! BigQuery and Databricks SQL connectors through the whole fleet. Neither warehouse has an
//! emulator that runs here, so both are tested against local HTTP servers that serve their
//! documented API formats over DuckDB (`tests/warehouses/`): BigQuery's jobs.query and paged
//! getQueryResults with service-account JWT sign-in, and Databricks' SQL Statement Execution
//! API with Arrow results behind external links and a warehouse that takes time to start.

mod common;

use common::stand_in::StandIn;
use common::{Fleet, StoredProfile};
use sluice_connectors::warehouse::SqlWarehouse;
use sluice_connectors::{bigquery, databricks};
use std::time::{Duration, Instant};

const TOKEN: &str = "dapi-test-token";
const WAREHOUSE_ID: &str = "5e2b1f0c9a7d4e3f";

/// A stand-in and a client on it.
enum Warehouse {
    BigQuery {
        _server: StandIn,
        client: bigquery::Client,
        url: String,
        unregistered_url: String,
    },
    Databricks {
        server: StandIn,
        client: databricks::Client,
    },
}

fn key_param(path: &std::path::Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(std::fs::read(path).unwrap())
}

impl Warehouse {
    async fn bigquery(fleet: &Fleet) -> Warehouse {
        let key = fleet.data_dir.join("bq-key.json");
        let unregistered = fleet.data_dir.join("bq-unregistered.json");
        std::fs::create_dir_all(&fleet.data_dir).unwrap();
        let server = StandIn::start(
            "tests/warehouses/bigquery_stand_in.py",
            &[
                "--port",
                "0",
                "--project",
                "acme-analytics",
                "--key-file",
                key.to_str().unwrap(),
                "--unregistered-key-file",
                unregistered.to_str().unwrap(),
                "--page-rows",
                "4000",
                "--incomplete-first",
            ],
        );
        let url = |key: &std::path::Path| {
            format!(
                "bigquery://acme-analytics/crm_{}?location=US&endpoint=http://127.0.0.1:{}&credentials={}",
                fleet.id,
                server.port,
                key_param(key)
            )
        };
        let (url, unregistered_url) = (url(&key), url(&unregistered));
        let client = bigquery::Client::open(&url).await.unwrap();
        Warehouse::BigQuery {
            _server: server,
            client,
            url,
            unregistered_url,
        }
    }

    fn databricks(fleet: &Fleet, warmup_seconds: &str) -> Warehouse {
        let server = StandIn::start(
            "tests/warehouses/databricks_stand_in.py",
            &[
                "--port",
                "0",
                "--token",
                TOKEN,
                "--warehouse-id",
                WAREHOUSE_ID,
                "--chunk-rows",
                "7000",
                "--warmup-seconds",
                warmup_seconds,
            ],
        );
        let client = databricks::Client::open(&databricks_url(&server, fleet, TOKEN)).unwrap();
        Warehouse::Databricks { server, client }
    }

    /// The connection URL, with a credential the warehouse refuses when `good` is false.
    fn url(&self, fleet: &Fleet, good: bool) -> String {
        match self {
            Warehouse::BigQuery {
                url,
                unregistered_url,
                ..
            } => if good { url } else { unregistered_url }.clone(),
            Warehouse::Databricks { server, .. } => {
                databricks_url(server, fleet, if good { TOKEN } else { "dapi-revoked" })
            }
        }
    }

    fn port(&self) -> u16 {
        match self {
            Warehouse::BigQuery { url, .. } => url
                .split("127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split('&').next())
                .unwrap()
                .parse()
                .unwrap(),
            Warehouse::Databricks { server, .. } => server.port,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Warehouse::BigQuery { .. } => "bigquery",
            Warehouse::Databricks { .. } => "databricks",
        }
    }

    async fn execute(&self, sql: &str) {
        match self {
            Warehouse::BigQuery { client, .. } => client.execute(sql).await.unwrap(),
            Warehouse::Databricks { client, .. } => client.execute(sql).await.unwrap(),
        }
    }

    /// The source table as `StoredProfile`s, read back through the connector's client.
    async fn profiles(&self) -> Vec<StoredProfile> {
        let sql = "SELECT external_id, first_name, CAST(loyalty_points AS STRING), CAST(birthday AS STRING) FROM users";
        let mut rows = Vec::new();
        let collect = |batch: arrow::record_batch::RecordBatch| {
            rows.extend(common::profiles_of(&batch));
            async { Ok(()) }
        };
        match self {
            Warehouse::BigQuery { client, .. } => client.stream_query(sql, collect).await,
            Warehouse::Databricks { client, .. } => client.stream_query(sql, collect).await,
        }
        .unwrap();
        rows.sort();
        rows
    }
}

fn databricks_url(server: &StandIn, fleet: &Fleet, token: &str) -> String {
    format!(
        "databricks://token:{token}@127.0.0.1:{}/sql/1.0/warehouses/{WAREHOUSE_ID}?protocol=http&catalog=main&schema=crm_{}",
        server.port, fleet.id
    )
}

/// Creates `users` with rows `1..=rows`: rows 20,001 to 24,000 share one updated_at (ties
/// across the chunk boundary at 22,000), every 97th row has no first name.
async fn create_users(warehouse: &Warehouse, rows: i64) {
    warehouse
        .execute(
            "CREATE TABLE users (id BIGINT, external_id STRING, first_name STRING,
                loyalty_points BIGINT, birthday DATE, updated_at TIMESTAMP)",
        )
        .await;
    let literal = |kind: &str, text: &str| match kind {
        "DATE" => format!("DATE '{text}'"),
        _ => format!("TIMESTAMP '{text}+00:00'"),
    };
    for insert in common::user_inserts(rows, 20_001..=24_000, literal) {
        warehouse.execute(&insert).await;
    }
}

fn spec(fleet: &Fleet, warehouse: &Warehouse, url: &str) -> String {
    common::users_spec(fleet, 11_000)
        .replace("kind: postgres", &format!("kind: {}", warehouse.kind()))
        .replace(&fleet.warehouse_url(), &format!("\"{url}\""))
        .replace("public.users", "users")
        .replace(", format: \"yyyy-MM-dd\"", "")
}

/// 30,000 rows with ties import exactly, a preview shows the first ten, and the next run
/// reads only the 3,000 changed rows; 30 rows rejected for a registry conflict are read
/// again by key once it is fixed.
async fn imports_exactly_and_then_only_changes(fleet: &mut Fleet, warehouse: &Warehouse) {
    create_users(warehouse, 30_000).await;
    fleet.apply_ok(&spec(fleet, warehouse, &warehouse.url(fleet, true)));

    common::assert_preview_shows_first_users(fleet);

    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 30_000, "{first}");
    assert_eq!(
        common::stored_profiles(fleet).await,
        warehouse.profiles().await
    );

    warehouse
        .execute(
            "UPDATE users SET first_name = CONCAT('Changed ', CAST(id AS STRING)),
                    updated_at = CURRENT_TIMESTAMP() - INTERVAL 1 MINUTE WHERE MOD(id, 10) = 0",
        )
        .await;
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 3_000,
        "only changed rows are read: {second}"
    );
    assert_eq!(
        common::stored_profiles(fleet).await,
        warehouse.profiles().await
    );

    // Rows rejected for a schema-registry conflict are read again by key, through the
    // warehouse, once the registry is fixed.
    common::retype(fleet, "points", "string").await;
    warehouse
        .execute(
            "UPDATE users SET loyalty_points = loyalty_points + 1,
                    updated_at = CURRENT_TIMESTAMP() - INTERVAL 1 MINUTE WHERE MOD(id, 1000) = 7",
        )
        .await;
    let conflicted = fleet.run("acme", "users");
    assert_eq!(
        conflicted["rejected_by_reason"],
        serde_json::json!({"type_conflict": 30}),
        "{conflicted}"
    );
    common::retype(fleet, "points", "integer").await;
    let recovered = fleet.run("acme", "users");
    assert_eq!(recovered["rows_read"], 0, "{recovered}");
    assert_eq!(recovered["rows_retried"], 30, "{recovered}");
    assert_eq!(recovered["rows_recovered"], 30, "{recovered}");
    assert_eq!(
        common::stored_profiles(fleet).await,
        warehouse.profiles().await
    );
}

/// A refused credential, an unreachable port and a missing table each fail the apply with
/// their classified error within the timeout.
async fn failures_are_classified(fleet: &Fleet, warehouse: &Warehouse) {
    create_users(warehouse, 10).await;
    let good = warehouse.url(fleet, true);
    let cases = [
        (
            spec(fleet, warehouse, &warehouse.url(fleet, false)),
            "refused the credentials",
        ),
        (
            spec(
                fleet,
                warehouse,
                &good.replace(&format!("127.0.0.1:{}", warehouse.port()), "127.0.0.1:1"),
            ),
            "unreachable",
        ),
        (
            spec(fleet, warehouse, &good).replace(
                "source: { table: users }",
                "source: { table: no_such_table }",
            ),
            "missing object",
        ),
    ];
    common::assert_refused_within_timeout(fleet, &cases);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bigquery_table_with_ties_imports_exactly_and_then_only_its_changes() {
    let mut fleet = Fleet::new().await;
    let warehouse = Warehouse::bigquery(&fleet).await;
    imports_exactly_and_then_only_changes(&mut fleet, &warehouse).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bigquery_connection_failures_are_classified() {
    let fleet = Fleet::new().await;
    let warehouse = Warehouse::bigquery(&fleet).await;
    failures_are_classified(&fleet, &warehouse).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_databricks_table_with_ties_imports_exactly_and_then_only_its_changes() {
    let mut fleet = Fleet::new().await;
    let warehouse = Warehouse::databricks(&fleet, "0");
    imports_exactly_and_then_only_changes(&mut fleet, &warehouse).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn databricks_connection_failures_are_classified() {
    let fleet = Fleet::new().await;
    let warehouse = Warehouse::databricks(&fleet, "0");
    failures_are_classified(&fleet, &warehouse).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_starting_databricks_warehouse_is_waited_for_and_reported() {
    let fleet = Fleet::new().await;
    let warehouse = Warehouse::databricks(&fleet, "4");
    let started = Instant::now();
    let out = fleet.apply(&spec(&fleet, &warehouse, &warehouse.url(&fleet, true)).replace(
        "source: { table: users }",
        "source: { query: \"SELECT 1 AS id, 'user-1' AS external_id, 'Ada' AS first_name, 1 AS loyalty_points, current_date() AS birthday, current_timestamp() AS updated_at\" }",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert!(stderr.contains("SQL warehouse is starting"), "{stderr}");
    assert!(stderr.contains("SQL warehouse started after"), "{stderr}");
    fleet.cleanup().await;
}

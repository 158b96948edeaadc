//! The Snowflake connector through the whole fleet, against fakesnow's server mode (a
//! DuckDB-backed implementation of Snowflake's connector protocol) wrapped by
//! `tests/warehouses/snowflake_stand_in.py`, which checks passwords and key-pair JWTs, registers public keys
//! with `ALTER USER`, and splits large answers into gzip'd result chunks as Snowflake does.

mod common;

use common::stand_in::StandIn;
use common::{Fleet, StoredProfile};
use sluice_connectors::snowflake::{Client, Settings};
use sluice_connectors::warehouse::SqlWarehouse;

const USER: &str = "sluice_loader";
const PASSWORD: &str = "correct horse";

/// A running Snowflake stand-in.
struct FakeSnowflake(StandIn);

impl FakeSnowflake {
    fn start() -> FakeSnowflake {
        FakeSnowflake(StandIn::start(
            "tests/warehouses/snowflake_stand_in.py",
            &[
                "--port",
                "0",
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--chunk-rows",
                "10000",
            ],
        ))
    }

    /// A connection URL for `database` with the given credentials part (`user:password`).
    fn url(&self, credentials: &str, database: &str) -> String {
        format!(
            "snowflake://{credentials}@acme-test/{database}/PUBLIC?warehouse=LOAD_WH&host=127.0.0.1&port={}&protocol=http",
            self.0.port
        )
    }

    async fn client(&self, database: &str) -> Client {
        let password = PASSWORD.replace(' ', "%20");
        Client::login(Settings::parse(&self.url(&format!("{USER}:{password}"), database)).unwrap())
            .await
            .unwrap()
    }
}

/// Creates `users` with rows `1..=rows`: rows 50,001 to 55,000 share one updated_at (ties
/// across chunk boundaries), every 97th row has no first name.
async fn create_users(client: &Client, rows: i64) {
    client
        .execute(
            "CREATE TABLE users (id NUMBER(38,0), external_id VARCHAR, first_name VARCHAR,
                loyalty_points NUMBER(10,0), birthday DATE, updated_at TIMESTAMP_NTZ(9))",
        )
        .await
        .unwrap();
    for insert in common::user_inserts(rows, 50_001..=55_000, |_, text| format!("'{text}'")) {
        client.execute(&insert).await.unwrap();
    }
}

/// The source table as `StoredProfile`s, read back through the connector's client.
async fn source_profiles(client: &Client) -> Vec<StoredProfile> {
    let mut rows = Vec::new();
    client
        .stream_query(
            "SELECT external_id, first_name, CAST(loyalty_points AS VARCHAR), CAST(birthday AS VARCHAR) FROM users",
            |batch| {
                rows.extend(common::profiles_of(&batch));
                async { Ok(()) }
            },
        )
        .await
        .unwrap();
    rows.sort();
    rows
}

fn spec(fleet: &Fleet, url: &str) -> String {
    common::users_spec(fleet, 25_000)
        .replace("kind: postgres", "kind: snowflake")
        .replace(&fleet.warehouse_url(), &format!("\"{url}\""))
        .replace("public.users", "users")
        .replace(", format: \"yyyy-MM-dd\"", "")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snowflake_table_with_ties_imports_exactly_and_then_only_its_changes() {
    let snowflake = FakeSnowflake::start();
    let mut fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    let client = snowflake.client(&database).await;
    create_users(&client, 60_000).await;
    let password = PASSWORD.replace(' ', "%20");
    fleet.apply_ok(&spec(
        &fleet,
        &snowflake.url(&format!("{USER}:{password}"), &database),
    ));

    common::assert_preview_shows_first_users(&fleet);

    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 60_000, "{first}");
    assert_eq!(
        common::stored_profiles(&fleet).await,
        source_profiles(&client).await
    );

    client
        .execute(
            "UPDATE users SET first_name = 'Changed ' || CAST(id AS VARCHAR),
                    updated_at = DATEADD(minute, -1, SYSDATE()) WHERE id % 10 = 0",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 6_000,
        "only changed rows are read: {second}"
    );
    assert_eq!(
        common::stored_profiles(&fleet).await,
        source_profiles(&client).await
    );

    // Rows rejected for a schema-registry conflict are read again by key, through Snowflake,
    // once the registry is fixed.
    common::retype(&fleet, "points", "string").await;
    client
        .execute(
            "UPDATE users SET loyalty_points = loyalty_points + 1,
                    updated_at = DATEADD(minute, -1, SYSDATE()) WHERE id % 1000 = 7",
        )
        .await
        .unwrap();
    let conflicted = fleet.run("acme", "users");
    assert_eq!(
        conflicted["rejected_by_reason"],
        serde_json::json!({"type_conflict": 60}),
        "{conflicted}"
    );
    common::retype(&fleet, "points", "integer").await;
    let recovered = fleet.run("acme", "users");
    assert_eq!(recovered["rows_retried"], 60, "{recovered}");
    assert_eq!(recovered["rows_recovered"], 60, "{recovered}");
    assert_eq!(
        common::stored_profiles(&fleet).await,
        source_profiles(&client).await
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snowflake_connection_failures_are_classified() {
    let snowflake = FakeSnowflake::start();
    let fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    create_users(&snowflake.client(&database).await, 10).await;
    let password = PASSWORD.replace(' ', "%20");
    let good = snowflake.url(&format!("{USER}:{password}"), &database);
    let cases = [
        (
            spec(&fleet, &snowflake.url(&format!("{USER}:wrong"), &database)),
            "refused the credentials",
        ),
        (
            spec(
                &fleet,
                &good.replace(&format!("port={}", snowflake.0.port), "port=1"),
            ),
            "unreachable",
        ),
        (
            spec(&fleet, &good).replace(
                "source: { table: users }",
                "source: { table: no_such_table }",
            ),
            "missing object",
        ),
    ];
    common::assert_refused_within_timeout(&fleet, &cases);
    fleet.cleanup().await;
}

/// The text after `prefix` on the line that holds it.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} in {text}"));
    text[at..].lines().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_pair_takes_over_only_once_it_logs_in() {
    let snowflake = FakeSnowflake::start();
    let mut fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    let client = snowflake.client(&database).await;
    create_users(&client, 1_000).await;
    let password = PASSWORD.replace(' ', "%20");
    fleet.apply_ok(&spec(
        &fleet,
        &snowflake.url(&format!("{USER}:{password}"), &database),
    ));
    let keygen = |fleet: &Fleet| {
        let out = fleet.sluice(&["connections", "keygen", "wh", "--workspace", "acme"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let test = |fleet: &Fleet| {
        let out = fleet.sluice(&["connections", "test", "wh", "--workspace", "acme"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    let printed = keygen(&fleet);
    let statement = line_after(&printed, "ALTER USER").to_string();
    assert!(statement.contains("SET RSA_PUBLIC_KEY = '"), "{printed}");
    let before = test(&fleet);
    assert!(before.contains("the new key was refused"), "{before}");
    assert!(
        before.contains("wh: ok"),
        "the password stays in use: {before}"
    );

    client.execute(&statement).await.unwrap();
    let promoted = test(&fleet);
    assert!(promoted.contains("ok with the new key"), "{promoted}");

    // The password is gone from the stored connection: runs log in with the key alone.
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], 1_000, "{run}");

    // A second rotation goes to the other slot; the first key keeps working meanwhile.
    let printed = keygen(&fleet);
    let statement = line_after(&printed, "ALTER USER").to_string();
    assert!(statement.contains("SET RSA_PUBLIC_KEY_2 = '"), "{printed}");
    assert!(test(&fleet).contains("wh: ok"));
    client.execute(&statement).await.unwrap();
    let promoted = test(&fleet);
    let retire = line_after(&promoted, "ALTER USER").to_string();
    assert!(retire.contains("UNSET RSA_PUBLIC_KEY;"), "{promoted}");
    client.execute(&retire).await.unwrap();
    assert!(test(&fleet).contains("wh: ok"), "the new key alone logs in");

    // A spec naming neither password nor key keeps the stored key.
    fleet.apply_ok(&spec(&fleet, &snowflake.url(USER, &database)));
    assert!(test(&fleet).contains("wh: ok"));
    fleet.cleanup().await;
}

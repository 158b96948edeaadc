//! Each role holds only what it needs: extractors and transformers run with no database at
//! all, and the stores can live on another PostgreSQL server than the control plane. A role
//! given settings it cannot use stops at once, saying which.

mod common;

use common::database::PrivatePostgres;
use common::{connect, create_users, users_spec, Fleet};
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A database URL nothing answers at: a role that tried to use it could not start. The
/// extractor has no database setting at all; the transformer has this one, so the test
/// fails if either role touches a database.
const NOWHERE: &str = "postgres://nobody@127.0.0.1:9/nowhere";

#[tokio::test(flavor = "multi_thread")]
async fn extractors_and_transformers_need_no_database() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 1_500).await;
    fleet.apply_ok(&users_spec(&fleet, 500));
    fleet.start("coordinator", &[]);
    fleet.start("loader", &[]);
    fleet.start_without(
        "extractor",
        &["SLUICE_DATABASE_URL", "SLUICE_STORE_URL"],
        &[],
    );
    fleet.start_without(
        "transformer",
        &["SLUICE_MASTER_KEY"],
        &[
            ("SLUICE_DATABASE_URL", NOWHERE),
            ("SLUICE_STORE_URL", NOWHERE),
        ],
    );
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_loaded"], 1_500, "{run}");
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stores_can_live_on_another_server_than_the_control_plane() {
    let mut fleet = Fleet::new().await;
    let second = PrivatePostgres::start();
    let stores = format!("{}/stores", second.url());
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 1_200).await;
    fleet.apply_ok(&users_spec(&fleet, 400));
    let on_second = [("SLUICE_STORE_URL", stores.as_str())];
    fleet.start_with_env("coordinator", &[], &on_second);
    // The loader holds the stores only: no control plane, no master key.
    fleet.start_without(
        "loader",
        &["SLUICE_MASTER_KEY"],
        &[
            ("SLUICE_STORE_URL", stores.as_str()),
            ("SLUICE_DATABASE_URL", NOWHERE),
        ],
    );
    fleet.start_without("extractor", &["SLUICE_DATABASE_URL"], &[]);
    fleet.start_without("transformer", &["SLUICE_DATABASE_URL"], &[]);
    let run_id = fleet.request_run("acme", "users");
    assert_eq!(
        fleet.wait_for_run(&run_id, Duration::from_secs(120)).await,
        "succeeded"
    );
    let profiles: i64 = connect(&stores)
        .await
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        profiles, 1_200,
        "the import landed in the second server's stores"
    );
    let in_control: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'profile_store'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        in_control, 0,
        "the control plane's database holds no store tables"
    );
    // The admin commands read each from where it lives.
    let out = fleet.sluice_with_env(&["profiles", "export", "--workspace", "acme"], &on_second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1_200);
    fleet.cleanup().await;
}

/// Whether the fleet's control-plane database has been created.
async fn control_plane_exists(fleet: &Fleet) -> bool {
    let database = fleet.database_url();
    let name = database.rsplit('/').next().unwrap();
    connect(&format!("{}/postgres", common::PG))
        .await
        .query_one(
            "SELECT count(*) > 0 FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_commands_migrate_nothing_and_say_what_to_run() {
    let fleet = Fleet::new().await;
    let out = fleet.sluice(&["imports", "list", "--workspace", "acme"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sluice migrate"), "{stderr}");
    assert!(
        !control_plane_exists(&fleet).await,
        "a read-only command created the control plane's database"
    );
    let database = fleet.database_url();
    let name = database.rsplit('/').next().unwrap();
    // Once it exists but was never migrated, the remedy is the same.
    connect(&format!("{}/postgres", common::PG))
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let out = fleet.sluice(&["workspaces", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sluice migrate"),
        "{stderr}"
    );
    let schemas: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('control', 'profile_store')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "a read-only command created schemas");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_given_a_broker_url_it_cannot_read_stops_at_once_naming_it() {
    let fleet = Fleet::new().await;
    let bad = "amqp://sluice:hunter2@127.0.0.1:5672/%2f?frame_max=large";
    for role in ["coordinator", "extractor", "transformer", "loader"] {
        let mut child = fleet
            .command(&[role])
            .env("SLUICE_AMQP_URL", bad)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("{role} kept running with a broker URL it cannot read");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{role}: {stderr}");
        assert!(
            stderr.contains("SLUICE_AMQP_URL") && stderr.contains("frame_max=large"),
            "{role} names the setting and what is wrong: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "{role} hides the password: {stderr}"
        );
    }
    // The URL is refused before the coordinator and the loader migrate anything.
    assert!(
        !control_plane_exists(&fleet).await,
        "a role migrated before refusing its broker URL"
    );
    fleet.cleanup().await;
}

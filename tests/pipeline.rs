//! Fleet tests of the foundation path: real PostgreSQL, RabbitMQ and `sluice` processes.

mod common;

use common::{assert_store_equals_source, create_users, users_spec, Fleet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn initial_and_incremental_runs_leave_the_store_equal_to_the_source() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 200_000).await;
    let applied = fleet.apply(&users_spec(&fleet, 10_000));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    fleet.start("all", &[]);

    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 200_000);
    assert_eq!(first["profiles_created"], 200_000);
    assert!(first["chunks"].as_i64().unwrap() >= 20, "{first}");
    assert_store_equals_source(&fleet).await;

    // 10% updated and 1% inserted, all tied on one updated_at value.
    warehouse
        .batch_execute(
            "UPDATE public.users SET first_name = 'Changed ' || id, loyalty_points = loyalty_points + 1,
                    updated_at = now() - interval '1 minute' WHERE id % 10 = 0;
             INSERT INTO public.users
             SELECT g, 'user-' || g, 'New ' || g, 1, date '2000-01-01', now() - interval '1 minute'
               FROM generate_series(200001, 202000) g;",
        )
        .await
        .unwrap();
    let before = common::digests(&fleet).await.1;
    let dry = fleet.run_with("acme", "users", &["--dry-run"]);
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["rows_read"], 22_000, "{dry}");
    assert_eq!(
        dry["profiles_created"], 2_000,
        "a dry run reports what it would do: {dry}"
    );
    assert_eq!(dry["profiles_updated"], 20_000, "{dry}");
    assert_eq!(
        common::digests(&fleet).await.1,
        before,
        "a dry run writes nothing"
    );

    let second = fleet.run("acme", "users");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(
        second["rows_read"], 22_000,
        "only changed rows are read: {second}"
    );
    assert_eq!(second["profiles_created"], 2_000);
    assert_eq!(second["profiles_updated"], 20_000);
    assert_store_equals_source(&fleet).await;

    let third = fleet.run("acme", "users");
    assert_eq!(third["status"], "succeeded", "{third}");
    assert_eq!(third["rows_read"], 0);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loader_killed_mid_run_is_restarted_and_the_run_completes() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 100_000).await;
    let applied = fleet.apply(&users_spec(&fleet, 4_000));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    fleet.start("coordinator", &[]);
    fleet.start("extractor", &[]);
    fleet.start("transformer", &[]);
    // A slow loader, so the kill lands mid-run.
    fleet.start("loader", &["--load-rows-per-second", "15000"]);

    let run_id = fleet.request_run("acme", "users");
    fleet
        .wait_for_loaded_chunks(&run_id, 3, Duration::from_secs(180))
        .await;
    fleet.kill("loader");
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.start("loader", &["--load-rows-per-second", "15000"]);

    let status = fleet.wait_for_run(&run_id, Duration::from_secs(300)).await;
    assert_eq!(status, "succeeded");
    assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

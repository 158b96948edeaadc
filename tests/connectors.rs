//! The connector interface through the binary: a preview shows the source's schema and first
//! rows; a connection test and `apply` classify what failed (unreachable host, missing table)
//! within their timeout, and a bad spec writes nothing.

mod common;

use common::{create_users, users_spec, Fleet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_preview_shows_the_schema_and_the_first_ten_rows() {
    let fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 100).await;
    fleet.apply_ok(&users_spec(&fleet, 1_000));
    let out = fleet.sluice(&["imports", "preview", "users", "--workspace", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first_name: Utf8"), "{text}");
    assert!(text.contains("loyalty_points: Int64"), "{text}");
    let data_rows = text.lines().filter(|l| l.contains("user-")).count();
    assert_eq!(data_rows, 10, "{text}");
    assert!(
        text.contains("user-1 ") && !text.contains("user-11 "),
        "ordered by watermark: {text}"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_host_and_a_missing_table_are_classified() {
    let fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 10).await;
    let unreachable = users_spec(&fleet, 1_000).replace(
        &fleet.warehouse_url(),
        "postgres://postgres@127.0.0.1:1/nowhere",
    );
    let started = Instant::now();
    let out = fleet.apply(&unreachable);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "classified within the timeout"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("connections.wh") && stderr.contains("unreachable"),
        "{stderr}"
    );

    let missing = users_spec(&fleet, 1_000).replace("public.users", "public.no_such_table");
    let out = fleet.apply(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("imports.users") && stderr.contains("no_such_table"),
        "{stderr}"
    );
    let imports: i64 = fleet
        .control()
        .await
        .query_one("SELECT count(*) FROM control.imports", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(imports, 0, "a refused spec writes nothing");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redshift_connection_reads_through_a_cursor_and_imports_exactly() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    // Rows 50,001 to 55,000 share one updated_at: ties across chunk boundaries.
    create_users(&warehouse, 60_000).await;
    let spec = users_spec(&fleet, 7_000).replace("kind: postgres", "kind: redshift");
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 60_000);
    common::assert_store_equals_source(&fleet).await;
    warehouse
        .batch_execute(
            "UPDATE public.users SET first_name = 'Changed ' || id, updated_at = now() - interval '1 minute'
              WHERE id % 20 = 0;
             INSERT INTO public.users
             SELECT g, 'user-' || g, 'New ' || g, 1, date '2000-01-01', now() - interval '1 minute'
               FROM generate_series(60001, 60500) g;",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 3_500,
        "only changed rows are read: {second}"
    );
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

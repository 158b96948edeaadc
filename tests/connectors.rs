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
        stderr.contains("connections[0]") && stderr.contains("unreachable"),
        "{stderr}"
    );

    let missing = users_spec(&fleet, 1_000).replace("public.users", "public.no_such_table");
    let out = fleet.apply(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("imports[0]") && stderr.contains("no_such_table"),
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

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_table_with_ties_imports_exactly_and_then_only_its_changes() {
    use mysql_async::prelude::Queryable;
    let mut fleet = Fleet::new().await;
    let database = format!("wh_{}", fleet.id);
    let mut admin = mysql_async::Conn::new(
        mysql_async::Opts::from_url("mysql://root@127.0.0.1:3306/").unwrap(),
    )
    .await
    .unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let mut source = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&format!("mysql://root@127.0.0.1:3306/{database}")).unwrap(),
    )
    .await
    .unwrap();
    common::create_mariadb_users(&mut source, 60_000, "user").await;
    let spec = users_spec(&fleet, 8_000)
        .replace("kind: postgres", "kind: mysql")
        .replace(
            &fleet.warehouse_url(),
            &format!("mysql://root@127.0.0.1:3306/{database}"),
        )
        .replace("public.users", "users")
        .replace(", format: \"yyyy-MM-dd\"", "");
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 60_000, "{first}");
    assert_eq!(
        common::stored_profiles(&fleet).await,
        common::mariadb_profiles(&mut source).await
    );

    source
        .query_drop(
            "UPDATE users SET first_name = CONCAT('Changed ', id),
                    updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE id % 10 = 0;
             INSERT INTO users
             SELECT seq, CONCAT('user-', seq), CONCAT('New ', seq), 1, DATE '2000-01-01',
                    UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE
               FROM seq_60001_to_60500",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 6_500,
        "only changed rows are read: {second}"
    );
    assert_eq!(
        common::stored_profiles(&fleet).await,
        common::mariadb_profiles(&mut source).await
    );

    common::preview_users(&fleet, 10);

    drop(source);
    admin
        .query_drop(format!("DROP DATABASE {database}"))
        .await
        .unwrap();
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_connection_failures_are_classified() {
    let fleet = Fleet::new().await;
    let spec = |url: &str, table: &str| {
        users_spec(&fleet, 1_000)
            .replace("kind: postgres", "kind: mysql")
            .replace(&fleet.warehouse_url(), url)
            .replace("public.users", table)
    };
    let cases = [
        (
            spec("mysql://root:wrong-password@127.0.0.1:3306/mysql", "user"),
            "refused the credentials",
        ),
        (
            spec("mysql://root@127.0.0.1:1/mysql", "user"),
            "unreachable",
        ),
        (
            spec("mysql://root@127.0.0.1:3306/mysql", "no_such_table"),
            "missing object",
        ),
    ];
    common::assert_refused_within_timeout(&fleet, &cases);
    fleet.cleanup().await;
}

//! `cargo bench -p sluice-extractor --bench planning`: plans a ROWS-row PostgreSQL table
//! (100,000,000 by default, index on `(updated_at, id)`) into chunks of CHUNK_ROWS with the
//! planner the coordinator runs, and prints how long it took and how the table was read: the
//! server's own counters of sequential scans, index scans and index entries read during
//! planning, and the plan of a boundary probe. `KEEP_TABLE=1` keeps the database for a rerun
//! (`PLAN_DB` names it).

use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::{Connector, SourceSpec};
use sluice_proto::SourceRelation;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

const PG: &str = "postgres://postgres@127.0.0.1:5432";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// (sequential scans, index scans, index entries read) of the table so far.
async fn counters(client: &Client) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT pg_stat_clear_snapshot()::text, seq_scan, coalesce(idx_scan, 0),
                    (SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'users')::int8
               FROM pg_stat_user_tables WHERE relname = 'users'",
            &[],
        )
        .await
        .expect("table counters");
    (row.get(1), row.get(2), row.get(3))
}

#[tokio::main]
async fn main() {
    let rows = env_u64("ROWS", 100_000_000);
    let chunk_rows = env_u64("CHUNK_ROWS", 50_000);
    let db = std::env::var("PLAN_DB").unwrap_or_else(|_| format!("bench_plan_{rows}"));
    let admin = connect(&format!("{PG}/postgres")).await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .unwrap()
        .is_some();
    let url = format!("{PG}/{db}");
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let started = Instant::now();
        let builder = connect(&url).await;
        builder
            .batch_execute(&format!(
                "CREATE UNLOGGED TABLE users (id bigint NOT NULL, updated_at timestamptz NOT NULL,
                                              external_id text NOT NULL);
                 INSERT INTO users SELECT g, timestamptz '2020-01-01 00:00:00+00' + (g / 10) * interval '1 second',
                        'u' || g FROM generate_series(1, {rows}) g;
                 ALTER TABLE users ADD PRIMARY KEY (id);
                 CREATE INDEX users_watermark ON users (updated_at, id);"
            ))
            .await
            .unwrap();
        builder.batch_execute("VACUUM ANALYZE users").await.unwrap();
        println!("built {rows} rows in {:.0?}", started.elapsed());
    }
    let observer = connect(&url).await;
    let before = counters(&observer).await;

    let source = PostgresSource::connect(&url).await.unwrap();
    let spec = SourceSpec {
        relation: SourceRelation::Table("public.users".into()),
        key_column: "id".into(),
        watermark_column: "updated_at".into(),
        columns: vec!["external_id".into()],
    };
    let started = Instant::now();
    let shape = source.describe(&spec).await.unwrap();
    let range = source
        .plan_range(&shape, None, Duration::from_secs(1), None)
        .await
        .unwrap();
    let hi = range.hi.expect("rows to plan");
    let boundaries = source
        .chunk_boundaries(&shape, None, &hi, chunk_rows)
        .await
        .unwrap();
    let took = started.elapsed();
    // The session ends, so the server counts what it read.
    drop(source);
    let after = loop {
        let busy: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-extractor'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            break counters(&observer).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let probe = observer
        .query(
            "EXPLAIN SELECT updated_at, id FROM users
              WHERE updated_at < $1 AND (updated_at, id) > ('2020-01-01 00:00:00+00', 1)
              ORDER BY updated_at DESC, id DESC LIMIT 1",
            &[&(hi.watermark - chrono::Duration::days(1))],
        )
        .await
        .unwrap();
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {machine} cores; rows {rows}; chunk_rows {chunk_rows}");
    println!(
        "planned {} chunks in {:.2} s",
        boundaries.len() + 1,
        took.as_secs_f64()
    );
    println!(
        "during planning: {} sequential scans, {} index scans, {} index entries read",
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2
    );
    println!("a boundary probe's plan:");
    for line in probe {
        println!("    {}", line.get::<_, String>(0));
    }
    if std::env::var("KEEP_TABLE").is_err() {
        drop(observer);
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    if after.0 != before.0 {
        eprintln!("planning scanned the table sequentially");
        std::process::exit(1);
    }
}

//! The loader's statistics refresh against the real PostgreSQL: a store grown from empty gets
//! its tables analyzed (the profiles without their jsonb properties), once per doubling, and
//! while another loader holds the refresh, a second one leaves the tables alone.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sluice_loader::statistics;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

mod common;

use common::{connect, store};

/// The lock `statistics::refresh` takes; held here to play the loader already refreshing.
const STATISTICS_LOCK: i64 = 7_405_340_580;

fn pool(url: &str) -> Pool {
    let manager = Manager::from_config(
        url.parse().unwrap(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(2).build().unwrap()
}

/// Profiles `from..to`, each named by an external id.
async fn add_profiles(client: &Client, from: i64, to: i64) {
    client
        .execute(
            "WITH p AS (
                INSERT INTO profile_store.profiles (workspace_id, profile_id, properties, email)
                SELECT 1, g, jsonb_build_object('n', g), 'u' || g || '@example.com'
                  FROM generate_series($1::int8, $2::int8) g
                RETURNING profile_id)
             INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
             SELECT 1, 'external_id', 'user-' || profile_id, profile_id FROM p",
            &[&from, &(to - 1)],
        )
        .await
        .unwrap();
}

/// (times analyzed, rows changed since) of a store table, as the server reports them.
async fn analyzed(client: &Client, table: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT analyze_count, n_mod_since_analyze FROM pg_stat_user_tables
              WHERE schemaname = 'profile_store' AND relname = $1",
            &[&table],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits until `done` holds of the table's counters, for at most 30 s.
async fn until(client: &Client, table: &str, done: impl Fn((i64, i64)) -> bool) -> (i64, i64) {
    let started = Instant::now();
    loop {
        let now = analyzed(client, table).await;
        if done(now) {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{table}: still {now:?} (analyze_count, n_mod_since_analyze)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_store_grown_from_empty_is_analyzed_once_by_one_loader() {
    let name = format!("loader_statistics_{}", std::process::id());
    let store = store(&name).await;
    let client = connect(&store.url).await;
    let pool = pool(&store.url);

    add_profiles(&client, 1, 5001).await;
    until(&client, "identities", |(_, changed)| changed >= 5000).await;
    statistics::refresh(pool.get().await.unwrap());
    until(&client, "identities", |(count, _)| count == 1).await;
    until(&client, "profiles", |(count, _)| count == 1).await;
    let columns: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_stats
              WHERE schemaname = 'profile_store' AND tablename = 'profiles' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(columns.contains(&"email".to_string()), "{columns:?}");
    assert!(!columns.contains(&"properties".to_string()), "{columns:?}");

    // Fewer new rows than the table held when analyzed: nothing to refresh yet.
    add_profiles(&client, 5001, 9001).await;
    until(&client, "identities", |(_, changed)| changed >= 4000).await;
    statistics::refresh(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(analyzed(&client, "identities").await.0, 1);
    // The profiles too: their analysis reset their count of changed rows, so the 4,000 new
    // ones are fewer than the 5,000 they held.
    assert_eq!(analyzed(&client, "profiles").await.0, 1);

    // More than it held: stale, but another loader holds the refresh, so this one skips it.
    add_profiles(&client, 9001, 12001).await;
    until(&client, "identities", |(_, changed)| changed >= 7000).await;
    let other = connect(&store.url).await;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&STATISTICS_LOCK])
        .await
        .unwrap();
    statistics::refresh(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(analyzed(&client, "identities").await.0, 1);
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&STATISTICS_LOCK])
        .await
        .unwrap();
    statistics::refresh(pool.get().await.unwrap());
    until(&client, "identities", |(count, _)| count == 2).await;

    drop(client);
    drop(other);
    pool.close();
}

//! Keeping the store's planner statistics fresh from the loader, so identity lookups and
//! upserts keep their index plans whether or not the server runs autovacuum: after a load, a
//! table that changed by more rows than it held at its last analysis is analyzed, by one
//! loader at a time and off the chunk's path.

use deadpool_postgres::Object;

/// The advisory lock the loader analyzing the store holds; the others skip.
const STATISTICS_LOCK: i64 = 7_405_340_580;

/// The store's tables whose changes since their last analysis outnumber the rows they held
/// then (so refreshes of a growing store double in size, a handful in all). Each is analyzed
/// whole, which resets that count (a column list would not); the profiles' columns no plan
/// uses, the jsonb properties the costliest to sample, have no statistics target
/// (migration 9).
pub const STALE_STORE_TABLES: &str = "SELECT format('profile_store.%I', relname)
  FROM pg_stat_user_tables
 WHERE schemaname = 'profile_store' AND relname IN ('profiles', 'identities', 'event_keys')
   AND n_mod_since_analyze > greatest(1000, n_live_tup - n_mod_since_analyze)";

/// Analyzes the stale tables on `client` in a task of its own, unless another loader is
/// already doing so; the chunk that triggered it is acknowledged meanwhile.
pub fn refresh(client: Object) {
    tokio::spawn(async move {
        if let Err(e) = analyze_stale(&client).await {
            tracing::warn!(error = %e, "refreshing the store's statistics");
        }
    });
}

/// The stale tables' `ANALYZE` targets.
async fn stale(client: &Object) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query(STALE_STORE_TABLES, &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One query after most loads (nothing is stale); the lock and a second look only when
/// something is, so a loader that finished its refresh just before is not repeated.
async fn analyze_stale(client: &Object) -> Result<(), tokio_postgres::Error> {
    if stale(client).await?.is_empty() {
        return Ok(());
    }
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&STATISTICS_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(());
    }
    let analyzed = async {
        for table in stale(client).await? {
            client.batch_execute(&format!("ANALYZE {table}")).await?;
            tracing::debug!(%table, "store statistics refreshed");
        }
        Ok(())
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&STATISTICS_LOCK])
        .await?;
    analyzed
}

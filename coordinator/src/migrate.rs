//! Applies a schema's numbered SQL migrations once each, in a transaction, under an advisory
//! lock so concurrent processes starting together do not race.

use tokio_postgres::Client;

/// Why migrations could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("migrating schema {schema}: {source}")]
pub struct MigrateError {
    /// The schema whose migrations failed.
    pub schema: String,
    /// Why.
    pub source: tokio_postgres::Error,
}

/// Applies the migrations of `schema` that have not been applied yet.
pub async fn apply(
    client: &mut Client,
    schema: &str,
    migrations: &[(i32, &str)],
) -> Result<(), MigrateError> {
    let err = |source| MigrateError {
        schema: schema.to_string(),
        source,
    };
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock(7405340577)", &[])
        .await
        .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(err)?;
    let applied: Vec<i32> = tx
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut new = Vec::new();
    for (version, sql) in migrations {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version) VALUES ($1)"),
            &[version],
        )
        .await
        .map_err(err)?;
        new.push(*version);
    }
    tx.commit().await.map_err(err)?;
    if let (Some(first), Some(last)) = (new.first(), new.last()) {
        tracing::info!(
            schema,
            "migrations {first} to {last} applied ({} new)",
            new.len()
        );
    }
    Ok(())
}

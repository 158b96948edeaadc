//! Connections to the control-plane database: creating it on first use, the pool, and
//! applying migrations of the control plane and the stores.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The database URL cannot be used.
    #[error("database URL {url}: {reason}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// The database could not be reached.
    #[error("PostgreSQL at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// The database could not be created.
    #[error("creating database {name}: {source}")]
    Create {
        /// The database's name.
        name: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
    /// The connection pool could not be built.
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
}

fn parse(url: &str) -> Result<tokio_postgres::Config, DatabaseError> {
    url.parse()
        .map_err(|e: tokio_postgres::Error| DatabaseError::BadUrl {
            url: sluice_proto::bus::redact_url(url),
            reason: e.to_string(),
        })
}

/// Creates the database named in `url` if it does not exist (connecting to `postgres`).
pub async fn ensure_database(url: &str) -> Result<(), DatabaseError> {
    let config = parse(url)?;
    let Some(name) = config.get_dbname().map(str::to_string) else {
        return Ok(());
    };
    match config.connect(NoTls).await {
        Ok(_) => return Ok(()),
        Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("3D000") => {}
        Err(source) => {
            return Err(DatabaseError::Connect {
                url: sluice_proto::bus::redact_url(url),
                source,
            })
        }
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_config(&admin, url).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => Ok(()),
        // Another process created it first: 42P04 when it had committed, a unique violation
        // on the catalog when both were creating it at once.
        Err(e)
            if matches!(
                e.as_db_error().map(|d| d.code().code()),
                Some("42P04" | "23505")
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(DatabaseError::Create { name, source }),
    }
}

async fn connect_config(
    config: &tokio_postgres::Config,
    url: &str,
) -> Result<tokio_postgres::Client, DatabaseError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| DatabaseError::Connect {
                url: sluice_proto::bus::redact_url(url),
                source,
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// One connection to `url`.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DatabaseError> {
    connect_config(&parse(url)?, url).await
}

/// Memory each pooled session may keep temporary tables in: a load stages its chunk in two of
/// them, which spill to files past this (the server's default is 8 MB).
const TEMP_BUFFERS: &str = "128MB";

/// A pool of connections to `url`; options the URL gives its sessions come after ours.
pub fn pool(url: &str, size: usize) -> Result<Pool, DatabaseError> {
    let mut config = parse(url)?;
    let options = format!(
        "-c temp_buffers={TEMP_BUFFERS} {}",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_end());
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(DatabaseError::Pool)
}

/// Creates the database if needed and applies every schema's migrations.
pub async fn migrate(url: &str, schemas: &[(&str, &[(i32, &str)])]) -> Result<(), DatabaseError> {
    ensure_database(url).await?;
    let mut client = connect(url).await?;
    for (schema, migrations) in schemas {
        crate::migrate::apply(&mut client, schema, migrations).await?;
    }
    Ok(())
}

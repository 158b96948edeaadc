//! The PostgreSQL source, and Redshift through the same protocol: read-only sessions pinned to
//! UTC, keyset planning on the `(watermark, key)` index, and chunk reads streamed as Arrow
//! batches (through a server-side cursor on Redshift).

mod connector;
mod estimate;
mod plan;
mod read;
pub use read::chunk_schema;
mod sql;

pub use sql::quote_ident;

use crate::connector::Connector;
use crate::error::SourceError;
use crate::registry::Kind;
use crate::source::{ColumnShape, KeyKind, SourceShape, SourceSpec};
use sluice_proto::SourceRelation;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Sessions are marked with this application name, so planning can ignore Sluice's own reads
/// when it looks for the oldest open transaction.
pub const APPLICATION_NAME: &str = "sluice-extractor";

/// Statements slower than this are cancelled by the source.
const STATEMENT_TIMEOUT: &str = "15min";

/// Ranges the statistics put at more rows than this are planned from the statistics; smaller
/// ones are stepped exactly along the index (about a second per five million rows).
pub const EXACT_PLANNING_ROWS: u64 = 5_000_000;

/// PostgreSQL, read over its own protocol.
pub static POSTGRES: Kind = Kind {
    name: "postgres",
    tunnel_port: Some(5432),
    check_url: |url| check_url("postgres", url),
    open: |url| {
        Box::pin(
            async move { Ok(Box::new(PostgresSource::connect(&url).await?) as Box<dyn Connector>) },
        )
    },
};

/// Amazon Redshift, over the PostgreSQL protocol.
pub static REDSHIFT: Kind = Kind {
    name: "redshift",
    tunnel_port: Some(5439),
    check_url: |url| check_url("redshift", url),
    open: |url| {
        Box::pin(async move {
            Ok(
                Box::new(PostgresSource::connect_as(&url, Dialect::Redshift).await?)
                    as Box<dyn Connector>,
            )
        })
    },
};

/// A `postgres://` URL that the driver can read.
fn check_url(kind: &str, url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("a {kind} connection takes a postgres:// URL"));
    }
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A read-only session on a PostgreSQL source.
pub struct PostgresSource {
    client: Client,
    dialect: Dialect,
    exact_planning_rows: u64,
}

/// Which server speaks the PostgreSQL protocol on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL itself.
    Postgres,
    /// Amazon Redshift: no `COPY TO STDOUT` and no `pg_stat_activity` transaction starts, so
    /// chunks are read through a server-side cursor and the range is capped by the settle lag
    /// alone.
    Redshift,
}

impl PostgresSource {
    /// Connects with a read-only, UTC session and a statement timeout.
    pub async fn connect(url: &str) -> Result<Self, SourceError> {
        Self::connect_as(url, Dialect::Postgres).await
    }

    /// Connects to a server of the given dialect.
    pub async fn connect_as(url: &str, dialect: Dialect) -> Result<Self, SourceError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| SourceError::InvalidSpec(format!("connection url: {e}")))?;
        config.application_name(APPLICATION_NAME);
        config.connect_timeout(std::time::Duration::from_secs(10));
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(_) => classify(e),
                    // Name the address tried and the OS's reason (refused, no route, DNS ...).
                    None => SourceError::Unreachable(format!(
                        "{}: {}",
                        address(&config),
                        sluice_proto::error::chain(&e)
                    )),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "source connection closed");
            }
        });
        client
            .batch_execute(&format!(
                "SET default_transaction_read_only = on; SET TimeZone = 'UTC'; \
                 SET DateStyle = 'ISO'; SET statement_timeout = '{STATEMENT_TIMEOUT}'"
            ))
            .await
            .map_err(classify)?;
        Ok(PostgresSource {
            client,
            dialect,
            exact_planning_rows: EXACT_PLANNING_ROWS,
        })
    }

    /// Plans ranges of up to `rows` rows exactly, and larger ones from the statistics.
    pub fn with_exact_planning_rows(mut self, rows: u64) -> Self {
        self.exact_planning_rows = rows;
        self
    }

    /// Runs a trivial query, so a connection that opens but cannot query fails here.
    pub(super) async fn test_inner(&self) -> Result<(), SourceError> {
        self.client
            .batch_execute("SELECT 1")
            .await
            .map_err(classify)
    }

    /// Checks that the source and its columns exist and reads their types.
    pub(super) async fn columns_inner(
        &self,
        spec: &SourceSpec,
    ) -> Result<Vec<String>, SourceError> {
        let statement = self
            .client
            .prepare(&format!(
                "SELECT * FROM {} LIMIT 0",
                sql::relation(&spec.relation)
            ))
            .await
            .map_err(|e| describe_error(spec, e))?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect())
    }

    /// Whether a PostgreSQL table has an index leading with `(watermark, key)`; Redshift has
    /// none to have, and queries and views cannot tell.
    pub(super) async fn ordering_index_inner(
        &self,
        spec: &SourceSpec,
    ) -> Result<Option<crate::source::OrderingIndex>, SourceError> {
        if self.dialect != Dialect::Postgres || !matches!(spec.relation, SourceRelation::Table(_)) {
            return Ok(None);
        }
        let relation = sql::relation(&spec.relation);
        let row = self
            .client
            .query_one(
                "SELECT c.relkind IN ('r', 'p', 'm'),
                        EXISTS (SELECT 1 FROM pg_index x
                                  JOIN pg_attribute w ON w.attrelid = x.indrelid AND w.attnum = x.indkey[0]
                                  JOIN pg_attribute k ON k.attrelid = x.indrelid AND k.attnum = x.indkey[1]
                                 WHERE x.indrelid = c.oid AND x.indnatts >= 2
                                   AND w.attname = $2 AND k.attname = $3)
                   FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&relation, &spec.watermark_column, &spec.key_column],
            )
            .await
            .map_err(|e| describe_error(spec, e))?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        Ok(Some(crate::source::OrderingIndex {
            present: row.get(1),
            statement: format!(
                "CREATE INDEX CONCURRENTLY ON {relation} ({}, {});",
                quote_ident(&spec.watermark_column),
                quote_ident(&spec.key_column)
            ),
        }))
    }

    pub(super) async fn describe_inner(
        &self,
        spec: &SourceSpec,
    ) -> Result<SourceShape, SourceError> {
        let names = spec.read_columns();
        let select = names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let statement = self
            .client
            .prepare(&format!(
                "SELECT {select} FROM {} LIMIT 0",
                sql::relation(&spec.relation)
            ))
            .await
            .map_err(|e| describe_error(spec, e))?;
        let types: Vec<ColumnShape> = statement
            .columns()
            .iter()
            .map(|c| ColumnShape {
                name: c.name().to_string(),
                type_name: c.type_().name().to_string(),
            })
            .collect();
        let key_type = &types[0].type_name;
        let key = match key_type.as_str() {
            "int2" | "int4" | "int8" => KeyKind::Int,
            "text" | "varchar" | "bpchar" | "uuid" | "name" | "numeric" | "date" | "timestamp"
            | "timestamptz" => KeyKind::Text {
                type_name: key_type.clone(),
            },
            other => {
                return Err(SourceError::InvalidSpec(format!(
                    "key column {:?} has type {other}; use an integer, text or uuid column",
                    spec.key_column
                )))
            }
        };
        let watermark_type = types[1].type_name.clone();
        if !matches!(
            watermark_type.as_str(),
            "timestamptz" | "timestamp" | "date"
        ) {
            return Err(SourceError::InvalidSpec(format!(
                "watermark column {:?} has type {watermark_type}; it must be timestamptz, timestamp or date",
                spec.watermark_column
            )));
        }
        Ok(SourceShape {
            spec: spec.clone(),
            key,
            watermark_type,
            columns: types[2..].to_vec(),
        })
    }

    /// Runs `work` in a read-only transaction that always ends in ROLLBACK: PostgreSQL's
    /// read-only mode lets some functions write (large objects among them), and nothing a
    /// source statement did may outlive it.
    pub async fn rolled_back<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        self.client
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(classify)?;
        let result = work.await;
        let _ = self.client.batch_execute("ROLLBACK").await;
        result
    }

    /// What cancels this session's running statement from elsewhere.
    pub fn cancel_token(&self) -> tokio_postgres::CancelToken {
        self.client.cancel_token()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn exact_planning_rows(&self) -> u64 {
        self.exact_planning_rows
    }
}

/// Names the object in errors about a source's columns or relation.
fn describe_error(spec: &SourceSpec, e: tokio_postgres::Error) -> SourceError {
    let what = match &spec.relation {
        sluice_proto::SourceRelation::Table(t) => format!("table {t}"),
        sluice_proto::SourceRelation::Query(_) => "source query".to_string(),
    };
    match classify(e) {
        SourceError::MissingObject(m) => SourceError::MissingObject(format!("{what}: {m}")),
        SourceError::PermissionDenied(m) => SourceError::PermissionDenied(format!("{what}: {m}")),
        SourceError::Query(m) => SourceError::InvalidSpec(format!("{what}: {m}")),
        other => other,
    }
}

/// The `host:port` pairs a configuration connects to.
fn address(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Classifies a driver error by SQLSTATE, or as unreachable when the connection itself failed.
pub(crate) fn classify(e: tokio_postgres::Error) -> SourceError {
    let Some(db) = e.as_db_error() else {
        return SourceError::Unreachable(e.to_string());
    };
    let message = db.message().to_string();
    let code = db.code();
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        SourceError::Authentication(message)
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        SourceError::PermissionDenied(message)
    } else if *code == SqlState::UNDEFINED_TABLE
        || *code == SqlState::UNDEFINED_COLUMN
        || *code == SqlState::INVALID_CATALOG_NAME
        || *code == SqlState::INVALID_SCHEMA_NAME
    {
        SourceError::MissingObject(message)
    } else if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        SourceError::Unreachable(message)
    } else {
        SourceError::Query(message)
    }
}

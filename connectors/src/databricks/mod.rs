//! The Databricks SQL source: Spark SQL on a SQL warehouse over the Statement Execution API
//! with a personal access token, keyset planning shared with the other SQL warehouses. (Delta
//! tables can also be read straight from object storage: see `files::delta`.)

mod client;
mod settings;

use crate::error::SourceError;
use crate::registry::Kind;
use crate::warehouse::{text_literal, SqlDialect};
use chrono::{DateTime, Utc};
pub use client::Client;
pub use settings::Settings;

/// A Databricks SQL warehouse, over the SQL Statement Execution API.
pub static DATABRICKS: Kind = Kind {
    name: "databricks",
    tunnel_port: None,
    check_url: |url| Settings::parse(url).map(|_| ()).map_err(|e| e.to_string()),
    open: |url| Box::pin(async move { Ok(crate::warehouse::connector(Client::open(&url)?)) }),
};

impl Client {
    /// A client for a `databricks://` URL.
    pub fn open(url: &str) -> Result<Client, SourceError> {
        Client::new(Settings::parse(url)?)
    }
}

/// Quotes one identifier part in backticks.
fn quote_part(part: &str) -> String {
    format!("`{}`", part.replace('`', "``"))
}

impl SqlDialect for Client {
    fn quote_part(&self, part: &str) -> String {
        quote_part(part)
    }

    fn timestamp_literal(&self, t: &DateTime<Utc>) -> String {
        format!(
            "TIMESTAMP {}",
            text_literal(&t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())
        )
    }

    fn now_utc(&self) -> &'static str {
        "current_timestamp()"
    }

    fn text_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS STRING)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_part_by_part_in_backticks() {
        assert_eq!(quote_part("updated_at"), "`updated_at`");
        assert_eq!(quote_part("we`ird"), "`we``ird`");
    }
}

//! The BigQuery source: GoogleSQL over the REST API with a service account, keyset planning
//! shared with the other SQL warehouses. Each job carries a job timeout; the account needs
//! only to read the dataset and run query jobs.

mod client;
mod decode;
mod settings;

use crate::error::SourceError;
use crate::registry::Kind;
use crate::warehouse::{text_literal, SqlDialect};
use chrono::{DateTime, Utc};
pub use client::Client;
pub use settings::{ServiceAccountKey, Settings};

/// Google BigQuery, over its REST API.
pub static BIGQUERY: Kind = Kind {
    name: "bigquery",
    tunnel_port: None,
    check_url: |url| Settings::parse(url).map(|_| ()).map_err(|e| e.to_string()),
    open: |url| Box::pin(async move { Ok(crate::warehouse::connector(Client::open(&url).await?)) }),
};

impl Client {
    /// Signs in with a `bigquery://` URL's service account.
    pub async fn open(url: &str) -> Result<Client, SourceError> {
        Client::connect(Settings::parse(url)?).await
    }
}

/// Quotes one identifier part in backticks.
fn quote_part(part: &str) -> String {
    format!("`{}`", part.replace('\\', "\\\\").replace('`', "\\`"))
}

impl SqlDialect for Client {
    fn quote_part(&self, part: &str) -> String {
        quote_part(part)
    }

    fn timestamp_literal(&self, t: &DateTime<Utc>) -> String {
        format!(
            "TIMESTAMP {}",
            text_literal(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        )
    }

    fn now_utc(&self) -> &'static str {
        "CURRENT_TIMESTAMP()"
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
        assert_eq!(quote_part("we`ird"), "`we\\`ird`");
    }
}

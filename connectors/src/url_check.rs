//! Each connection kind's URL, checked before anything connects: the form it must take and,
//! for the warehouses whose URLs carry their settings, those settings. The spec's validation
//! calls this for every connection it declares.

use sluice_proto::ConnectionKind;

/// Checks a connection URL of `kind`, or says what is wrong with it (never echoing a secret).
pub fn check_url(kind: ConnectionKind, url: &str) -> Result<(), String> {
    match kind {
        ConnectionKind::Postgres | ConnectionKind::Redshift => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "a {} connection takes a postgres:// URL",
                    kind.as_str()
                ));
            }
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| e.to_string())?;
        }
        ConnectionKind::Files | ConnectionKind::Delta => {
            if !["file://", "s3://", "gs://", "az://", "/"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return Err(format!(
                    "a {} connection takes a file://, s3://, gs:// or az:// URL",
                    kind.as_str()
                ));
            }
        }
        ConnectionKind::Snowflake => {
            if !url.starts_with("snowflake://") {
                return Err("a snowflake connection takes a snowflake://user@account/database/schema?warehouse=... URL".into());
            }
        }
        ConnectionKind::Bigquery => {
            crate::bigquery::Settings::parse(url).map_err(|e| e.to_string())?;
        }
        ConnectionKind::Databricks => {
            crate::databricks::Settings::parse(url).map_err(|e| e.to_string())?;
        }
        ConnectionKind::Mysql => {
            if !url.starts_with("mysql://") {
                return Err(
                    "a mysql connection takes a mysql://user:password@host:3306/database URL"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_urls_missing_their_credentials_say_what_is_missing() {
        let err = check_url(ConnectionKind::Bigquery, "bigquery://acme/crm").unwrap_err();
        assert!(err.contains("service account"), "{err}");
        let err = check_url(
            ConnectionKind::Databricks,
            "databricks://adb-1.azuredatabricks.net/abc",
        )
        .unwrap_err();
        assert!(err.contains("personal access token"), "{err}");
        let err = check_url(ConnectionKind::Bigquery, "snowflake://u@acct/DB").unwrap_err();
        assert!(err.contains("bigquery://"), "{err}");
        let err = check_url(ConnectionKind::Postgres, "mysql://h/db").unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
        assert!(check_url(ConnectionKind::Postgres, "postgres://u@h:5432/db").is_ok());
    }
}

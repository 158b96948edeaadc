//! A Databricks SQL connection's settings, read from its URL:
//! `databricks://token:PERSONAL_ACCESS_TOKEN@HOST/WAREHOUSE_ID?catalog=main&schema=crm`, where
//! the path may also be the warehouse's HTTP path (`/sql/1.0/warehouses/ID`), and
//! `protocol=`, `port=` and `warmup_timeout=` (seconds) adjust how it is reached.

use crate::error::SourceError;
use std::time::Duration;
use url::Url;

/// How long a stopped SQL warehouse may take to start before the statement gives up.
const DEFAULT_WARMUP: Duration = Duration::from_secs(10 * 60);

/// Everything needed to run statements.
#[derive(Clone)]
pub struct Settings {
    /// The personal access token requests carry.
    pub token: String,
    /// The SQL warehouse statements run on.
    pub warehouse_id: String,
    /// The catalog unqualified names resolve in.
    pub catalog: Option<String>,
    /// The schema unqualified names resolve in.
    pub schema: Option<String>,
    /// `https://HOST` unless overridden.
    pub base_url: String,
    /// How long a stopped warehouse may take to start before the statement fails.
    pub warmup_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token", &"<redacted>")
            .field("warehouse_id", &self.warehouse_id)
            .field("catalog", &self.catalog)
            .field("schema", &self.schema)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Settings {
    /// Reads a `databricks://` URL.
    pub fn parse(text: &str) -> Result<Settings, SourceError> {
        let bad = |why: String| SourceError::InvalidSpec(format!("databricks url: {why}"));
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "databricks" {
            return Err(bad("the scheme must be databricks://".into()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no workspace host after the @".into()))?
            .to_string();
        let token = url
            .password()
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .map(|t| t.into_owned())
                    .map_err(|e| bad(format!("the token's percent-encoding: {e}")))
            })
            .transpose()?
            .ok_or_else(|| bad("give a personal access token as token:TOKEN@".into()))?;
        let warehouse_id = url
            .path_segments()
            .into_iter()
            .flatten()
            .rfind(|s| !s.is_empty())
            .ok_or_else(|| bad("no SQL warehouse id in the path".into()))?
            .to_string();
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let warmup_timeout = query("warmup_timeout")
            .map(|s| {
                s.parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| bad(format!("warmup_timeout: {s:?} is not a number of seconds")))
            })
            .transpose()?
            .unwrap_or(DEFAULT_WARMUP);
        let protocol = query("protocol").unwrap_or_else(|| "https".into());
        let base_url = match url.port() {
            Some(port) => format!("{protocol}://{host}:{port}"),
            None => format!("{protocol}://{host}"),
        };
        Ok(Settings {
            token,
            warehouse_id,
            catalog: query("catalog"),
            schema: query("schema"),
            base_url,
            warmup_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warehouse_comes_from_its_id_or_its_http_path() {
        let a = Settings::parse(
            "databricks://token:dapi123@adb-1.azuredatabricks.net/abc123?catalog=main&schema=crm",
        )
        .unwrap();
        assert_eq!(a.warehouse_id, "abc123");
        assert_eq!(a.token, "dapi123");
        assert_eq!(a.base_url, "https://adb-1.azuredatabricks.net");
        let b = Settings::parse(
            "databricks://token:dapi123@127.0.0.1:8123/sql/1.0/warehouses/abc123?protocol=http",
        )
        .unwrap();
        assert_eq!(b.warehouse_id, "abc123");
        assert_eq!(b.base_url, "http://127.0.0.1:8123");
        assert!(!format!("{b:?}").contains("dapi123"));
    }

    #[test]
    fn a_url_without_a_token_says_what_to_give() {
        let e = Settings::parse("databricks://adb-1.azuredatabricks.net/abc123").unwrap_err();
        assert!(e.to_string().contains("personal access token"), "{e}");
    }
}

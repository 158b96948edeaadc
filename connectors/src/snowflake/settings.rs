//! A Snowflake connection's settings, read from its URL:
//! `snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE/SCHEMA?warehouse=WH&role=ROLE`, with
//! `private_key=` (base64 PKCS#8 DER) for key-pair authentication, `private_key_pending=` for
//! a key being rotated in, and `host=`, `port=`, `protocol=` to reach a non-default endpoint.

use crate::error::SourceError;
use url::Url;

/// How the connection logs in.
#[derive(Clone)]
pub enum Credentials {
    /// A password, for accounts that still allow one.
    Password(String),
    /// A PKCS#8 DER RSA private key.
    KeyPair(Vec<u8>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(<redacted>)"),
            Credentials::KeyPair(_) => f.write_str("KeyPair(<redacted>)"),
        }
    }
}

/// Everything needed to open a session.
#[derive(Clone)]
pub struct Settings {
    /// The account identifier (`orgname-account` or a locator), as the JWT names it.
    pub account: String,
    /// The Snowflake user to log in as.
    pub user: String,
    /// How that user logs in.
    pub credentials: Credentials,
    /// A key waiting to replace `credentials` once it has logged in.
    pub pending_key: Option<Vec<u8>>,
    /// The database unqualified names resolve in.
    pub database: Option<String>,
    /// The schema unqualified names resolve in.
    pub schema: Option<String>,
    /// The virtual warehouse statements run on.
    pub warehouse: Option<String>,
    /// The role the session takes.
    pub role: Option<String>,
    /// `https://<account>.snowflakecomputing.com` unless overridden.
    pub base_url: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("credentials", &self.credentials)
            .field(
                "pending_key",
                &self.pending_key.as_ref().map(|_| "<redacted>"),
            )
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("warehouse", &self.warehouse)
            .field("role", &self.role)
            .field("base_url", &self.base_url)
            .finish()
    }
}

fn decode_key(field: &str, text: &str) -> Result<Vec<u8>, SourceError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()))
        .map_err(|e| SourceError::InvalidSpec(format!("snowflake url: {field}: {e}")))
}

impl Settings {
    /// Reads a `snowflake://` URL.
    pub fn parse(text: &str) -> Result<Settings, SourceError> {
        let bad = |why: String| SourceError::InvalidSpec(format!("snowflake url: {why}"));
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "snowflake" {
            return Err(bad("the scheme must be snowflake://".into()));
        }
        let account = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no account after the @".into()))?
            .to_string();
        let decode =
            |s: &str| percent_decode(s).map_err(|e| bad(format!("bad percent-encoding: {e}")));
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err(bad("no user before the @".into()));
        }
        let mut path = url
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty());
        let database = path.next().map(decode).transpose()?;
        let schema = path.next().map(decode).transpose()?;
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let credentials =
            match (url.password(), query("private_key")) {
                (_, Some(key)) => Credentials::KeyPair(decode_key("private_key", &key)?),
                (Some(password), None) => Credentials::Password(decode(password)?),
                (None, None) => return Err(bad(
                    "give a password (user:password@) or a key pair (sluice connections keygen)"
                        .into(),
                )),
            };
        let pending_key = query("private_key_pending")
            .map(|k| decode_key("private_key_pending", &k))
            .transpose()?;
        let protocol = query("protocol").unwrap_or_else(|| "https".into());
        let host = query("host").unwrap_or_else(|| format!("{account}.snowflakecomputing.com"));
        let base_url = match query("port") {
            Some(port) => format!("{protocol}://{host}:{port}"),
            None => format!("{protocol}://{host}"),
        };
        Ok(Settings {
            account,
            user,
            credentials,
            pending_key,
            database,
            schema,
            warehouse: query("warehouse"),
            role: query("role"),
            base_url,
        })
    }

    /// The account as the JWT's issuer names it: upper case, without region or cloud parts.
    pub fn account_locator(&self) -> String {
        self.account
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
    }
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

/// A URL with one query parameter set (or removed when `value` is `None`), the rest kept.
pub fn with_param(text: &str, name: &str, value: Option<&str>) -> Result<String, SourceError> {
    let mut url =
        Url::parse(text).map_err(|e| SourceError::InvalidSpec(format!("snowflake url: {e}")))?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        if let Some(value) = value {
            pairs.append_pair(name, value);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_url_is_read_whole() {
        let s = Settings::parse(
            "snowflake://loader:p%40ss@acme-prod/ANALYTICS/PUBLIC?warehouse=LOAD_WH&role=SLUICE",
        )
        .unwrap();
        assert_eq!(s.user, "loader");
        assert!(matches!(s.credentials, Credentials::Password(ref p) if p == "p@ss"));
        assert_eq!(s.database.as_deref(), Some("ANALYTICS"));
        assert_eq!(s.schema.as_deref(), Some("PUBLIC"));
        assert_eq!(s.warehouse.as_deref(), Some("LOAD_WH"));
        assert_eq!(s.base_url, "https://acme-prod.snowflakecomputing.com");
        assert_eq!(s.account_locator(), "ACME-PROD");
        assert!(
            !format!("{s:?}").contains("p@ss"),
            "Debug redacts the password"
        );
    }

    #[test]
    fn a_url_without_credentials_is_refused_with_the_reason() {
        let e = Settings::parse("snowflake://loader@acme/DB").unwrap_err();
        assert!(e.to_string().contains("keygen"), "{e}");
    }

    #[test]
    fn one_parameter_is_replaced_and_the_rest_kept() {
        let url = with_param(
            "snowflake://u@a/DB?warehouse=W&private_key=old",
            "private_key",
            Some("new"),
        )
        .unwrap();
        assert_eq!(url, "snowflake://u@a/DB?warehouse=W&private_key=new");
        let url = with_param(&url, "private_key", None).unwrap();
        assert_eq!(url, "snowflake://u@a/DB?warehouse=W");
    }
}

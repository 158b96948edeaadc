//! A BigQuery connection's settings, read from its URL:
//! `bigquery://PROJECT/DATASET?credentials=BASE64_KEY_JSON&location=US`, where the key is a
//! service account's JSON key file, and `endpoint=` reaches a non-default API root.

use crate::error::SourceError;
use serde::Deserialize;
use url::Url;

/// The fields of a service account's JSON key that signing in needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// The service account's address, the issuer of its token requests.
    pub client_email: String,
    /// PEM-encoded PKCS#8 RSA private key.
    pub private_key: String,
    #[serde(default)]
    /// Which of the account's keys signed, when the key file says.
    pub private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    /// Where signed assertions are exchanged for access tokens.
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

/// Everything needed to run queries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The project jobs run (and are billed) in.
    pub project: String,
    /// The dataset unqualified table names are read from.
    pub dataset: Option<String>,
    /// The dataset's location (`US`, `EU`, ...), when queries must run there.
    pub location: Option<String>,
    /// The service account that signs in.
    pub key: ServiceAccountKey,
    /// `https://bigquery.googleapis.com` unless overridden.
    pub endpoint: String,
}

impl Settings {
    /// Reads a `bigquery://` URL.
    pub fn parse(text: &str) -> Result<Settings, SourceError> {
        let bad = |why: String| SourceError::InvalidSpec(format!("bigquery url: {why}"));
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "bigquery" {
            return Err(bad("the scheme must be bigquery://".into()));
        }
        let project = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no project after bigquery://".into()))?
            .to_string();
        let dataset = url
            .path_segments()
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .map(str::to_string);
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let encoded = query("credentials").ok_or_else(|| {
            bad("credentials: give the service account's JSON key, base64-encoded".into())
        })?;
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim()))
            .map_err(|e| bad(format!("credentials: not base64: {e}")))?;
        let key: ServiceAccountKey = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("credentials: not a service account JSON key: {e}")))?;
        Ok(Settings {
            project,
            dataset,
            location: query("location"),
            key,
            endpoint: query("endpoint")
                .unwrap_or_else(|| "https://bigquery.googleapis.com".into())
                .trim_end_matches('/')
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn a_url_names_project_dataset_and_key() {
        let key = base64::engine::general_purpose::STANDARD
            .encode(r#"{"client_email":"loader@p.iam.gserviceaccount.com","private_key":"PEM"}"#);
        let s = Settings::parse(&format!(
            "bigquery://acme-prod/crm?credentials={key}&location=EU"
        ))
        .unwrap();
        assert_eq!(s.project, "acme-prod");
        assert_eq!(s.dataset.as_deref(), Some("crm"));
        assert_eq!(s.location.as_deref(), Some("EU"));
        assert_eq!(s.key.token_uri, "https://oauth2.googleapis.com/token");
        assert!(!format!("{s:?}").contains("PEM"));
    }

    #[test]
    fn a_url_without_credentials_says_what_to_give() {
        let e = Settings::parse("bigquery://acme-prod/crm").unwrap_err();
        assert!(e.to_string().contains("credentials"), "{e}");
    }
}

//! The Snowflake source: sessions over the connector protocol pinned to UTC with a statement
//! timeout, keyset planning shared with the other SQL warehouses, and key-pair rotation that
//! keeps the old key in use until the new one has logged in.

mod client;
mod decode;
pub mod keypair;
mod settings;

use crate::error::SourceError;
use crate::registry::Kind;
use crate::warehouse::{text_literal, SqlDialect};
use chrono::{DateTime, Utc};
pub use client::Client;
pub use settings::{with_param, Credentials, Settings};

/// Snowflake, over its connector protocol.
pub static SNOWFLAKE: Kind = Kind {
    name: "snowflake",
    tunnel_port: None,
    check_url: |url| {
        if url.starts_with("snowflake://") {
            Ok(())
        } else {
            Err("a snowflake connection takes a snowflake://user@account/database/schema?warehouse=... URL".into())
        }
    },
    open: |url| Box::pin(async move { Ok(crate::warehouse::connector(Client::open(&url).await?)) }),
};

impl Client {
    /// Logs in with a `snowflake://` URL's credentials.
    pub async fn open(url: &str) -> Result<Client, SourceError> {
        Client::login(Settings::parse(url)?).await
    }
}

/// Quotes one identifier part: a plain name the way Snowflake stores it unquoted (upper
/// case), anything else exactly as written.
fn quote_part(part: &str) -> String {
    let plain = part
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let name = if plain {
        part.to_ascii_uppercase()
    } else {
        part.to_string()
    };
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl SqlDialect for Client {
    fn quote_part(&self, part: &str) -> String {
        quote_part(part)
    }

    fn timestamp_literal(&self, t: &DateTime<Utc>) -> String {
        format!(
            "{}::TIMESTAMP_NTZ(9)",
            text_literal(&t.format("%Y-%m-%d %H:%M:%S%.9f").to_string())
        )
    }

    fn now_utc(&self) -> &'static str {
        "SYSDATE()"
    }

    fn text_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS VARCHAR)")
    }
}

/// What `keygen` did: the URL to store and the statement the user runs in Snowflake.
#[derive(Debug)]
pub struct Rotation {
    /// The connection URL with the new key pending.
    pub url: sluice_proto::secrets::Secret,
    /// `ALTER USER ... SET RSA_PUBLIC_KEY[_2] = '...'`.
    pub statement: String,
    /// The public key, as `ALTER USER ... SET RSA_PUBLIC_KEY_2` takes it.
    pub public_key: String,
}

/// The key slot (`RSA_PUBLIC_KEY` or `RSA_PUBLIC_KEY_2`) a URL's active key is registered in.
fn active_slot(url: &str) -> Result<Option<&'static str>, SourceError> {
    let settings = Settings::parse(url)?;
    Ok(match settings.credentials {
        Credentials::Password(_) => None,
        Credentials::KeyPair(_) => Some(
            if url::Url::parse(url)
                .ok()
                .and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "key_slot")
                        .map(|(_, v)| v.into_owned())
                })
                .as_deref()
                == Some("2")
            {
                "RSA_PUBLIC_KEY_2"
            } else {
                "RSA_PUBLIC_KEY"
            },
        ),
    })
}

/// Generates a key pair and records it as pending in the URL, in the slot the active key
/// does not use, so both stay valid until the new one has logged in.
pub fn keygen(url: &str) -> Result<Rotation, SourceError> {
    use base64::Engine;
    let settings = Settings::parse(url)?;
    let slot = match active_slot(url)? {
        Some("RSA_PUBLIC_KEY") => "RSA_PUBLIC_KEY_2",
        _ => "RSA_PUBLIC_KEY",
    };
    let pair = keypair::generate()?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pair.private_der);
    let url = with_param(url, "private_key_pending", Some(&encoded))?;
    let url = with_param(
        &url,
        "pending_slot",
        Some(if slot == "RSA_PUBLIC_KEY_2" { "2" } else { "1" }),
    )?;
    Ok(Rotation {
        url: url.into(),
        statement: format!(
            "ALTER USER {} SET {slot} = '{}';",
            quote_part(&settings.user),
            pair.public_base64
        ),
        public_key: pair.public_base64,
    })
}

/// The key parameters a Snowflake connection keeps between applies.
const KEY_PARAMS: [&str; 4] = [
    "private_key",
    "key_slot",
    "private_key_pending",
    "pending_slot",
];

/// A spec's URL with the stored connection's key pair carried over when the spec gives neither
/// a password nor a key (keys are made by `keygen`, never written in specs).
pub fn keep_stored_key(spec_url: &str, stored_url: &str) -> String {
    let (Ok(spec), Ok(stored)) = (url::Url::parse(spec_url), url::Url::parse(stored_url)) else {
        return spec_url.to_string();
    };
    let names_key = spec
        .query_pairs()
        .any(|(k, _)| KEY_PARAMS.contains(&k.as_ref()));
    if spec.password().is_some() || names_key {
        return spec_url.to_string();
    }
    let mut merged = spec_url.to_string();
    for (k, v) in stored.query_pairs() {
        if KEY_PARAMS.contains(&k.as_ref()) {
            merged = with_param(&merged, &k, Some(&v)).unwrap_or(merged);
        }
    }
    merged
}

/// What testing a pending key found.
#[derive(Debug)]
pub enum PendingKey {
    /// No key is pending.
    None,
    /// The new key logged in: the URL to store now uses it, and the old slot can be unset.
    Promoted {
        /// The connection URL with the new key in the main slot.
        url: String,
        /// The statement that unsets the old key in Snowflake, when one was set.
        retire: Option<String>,
    },
    /// The new key was refused; the old credentials stay in use.
    Refused(SourceError),
}

/// Logs in with the pending key, if any, and promotes it when Snowflake accepts it.
pub async fn try_pending_key(url: &str) -> Result<PendingKey, SourceError> {
    let settings = Settings::parse(url)?;
    let Some(pending) = settings.pending_key.clone() else {
        return Ok(PendingKey::None);
    };
    let old_slot = active_slot(url)?;
    let pending_settings = Settings {
        credentials: Credentials::KeyPair(pending.clone()),
        ..settings.clone()
    };
    if let Err(e) = Client::login(pending_settings).await {
        return Ok(PendingKey::Refused(e));
    }
    use base64::Engine;
    let slot = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "pending_slot")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "1".into());
    let mut promoted = with_param(
        url,
        "private_key",
        Some(&base64::engine::general_purpose::STANDARD.encode(&pending)),
    )?;
    promoted = with_param(&promoted, "private_key_pending", None)?;
    promoted = with_param(&promoted, "pending_slot", None)?;
    promoted = with_param(&promoted, "key_slot", Some(&slot))?;
    if let Ok(mut u) = url::Url::parse(&promoted) {
        if u.password().is_some() {
            let _ = u.set_password(None);
            promoted = u.to_string();
        }
    }
    Ok(PendingKey::Promoted {
        url: promoted,
        retire: old_slot.map(|s| format!("ALTER USER {} UNSET {s};", quote_part(&settings.user))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_quoted_upper_case_and_others_as_written() {
        assert_eq!(quote_part("updated_at"), "\"UPDATED_AT\"");
        assert_eq!(quote_part("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_part("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn keygen_uses_the_slot_the_active_key_does_not() {
        let first = keygen("snowflake://loader:pw@acme/DB").unwrap();
        assert!(first
            .statement
            .starts_with("ALTER USER \"LOADER\" SET RSA_PUBLIC_KEY = '"));
        let active = with_param(
            "snowflake://loader@acme/DB",
            "private_key",
            Some(
                &Settings::parse(first.url.expose())
                    .unwrap()
                    .pending_key
                    .map(|k| {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD.encode(k)
                    })
                    .unwrap(),
            ),
        )
        .unwrap();
        let second = keygen(&active).unwrap();
        assert!(
            second.statement.contains("SET RSA_PUBLIC_KEY_2 = '"),
            "{}",
            second.statement
        );
    }
}

//! Snowflake key-pair authentication: generating an RSA key pair, the public key's
//! fingerprint as Snowflake computes it, and the short-lived RS256 JWT a login presents.

use crate::error::SourceError;
use base64::Engine;
use chrono::Utc;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// Key size Snowflake accepts.
const BITS: usize = 2048;

/// How long a login JWT stays valid (Snowflake allows at most an hour).
const JWT_LIFETIME_SECONDS: i64 = 59 * 60;

/// A freshly generated key pair.
pub struct KeyPair {
    /// PKCS#8 DER private key: what the connection keeps, sealed.
    pub private_der: Vec<u8>,
    /// The public key as `ALTER USER ... SET RSA_PUBLIC_KEY` takes it: base64 SPKI DER.
    pub public_base64: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_base64", &self.public_base64)
            .finish_non_exhaustive()
    }
}

fn bad_key(e: impl std::fmt::Display) -> SourceError {
    SourceError::InvalidSpec(format!("snowflake private key: {e}"))
}

/// Generates a 2048-bit RSA key pair.
pub fn generate() -> Result<KeyPair, SourceError> {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, BITS).map_err(bad_key)?;
    let private_der = private.to_pkcs8_der().map_err(bad_key)?.as_bytes().to_vec();
    let public_der = RsaPublicKey::from(&private)
        .to_public_key_der()
        .map_err(bad_key)?;
    Ok(KeyPair {
        private_der,
        public_base64: base64::engine::general_purpose::STANDARD.encode(public_der.as_bytes()),
    })
}

/// The public half of a stored private key, base64 SPKI DER.
pub fn public_key(private_der: &[u8]) -> Result<String, SourceError> {
    let private = RsaPrivateKey::from_pkcs8_der(private_der).map_err(bad_key)?;
    let der = RsaPublicKey::from(&private)
        .to_public_key_der()
        .map_err(bad_key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(der.as_bytes()))
}

/// `SHA256:<base64 of the SPKI DER's SHA-256>`, as Snowflake shows in `RSA_PUBLIC_KEY_FP`.
pub fn fingerprint(private_der: &[u8]) -> Result<String, SourceError> {
    let public = base64::engine::general_purpose::STANDARD
        .decode(public_key(private_der)?)
        .map_err(bad_key)?;
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(public))
    ))
}

#[derive(serde::Serialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// The login JWT for `ACCOUNT.USER`, signed with the private key.
pub fn jwt(private_der: &[u8], account: &str, user: &str) -> Result<String, SourceError> {
    let qualified = format!("{account}.{}", user.to_ascii_uppercase());
    let now = Utc::now().timestamp();
    let claims = Claims {
        iss: format!("{qualified}.{}", fingerprint(private_der)?),
        sub: qualified,
        iat: now,
        exp: now + JWT_LIFETIME_SECONDS,
    };
    let pem = RsaPrivateKey::from_pkcs8_der(private_der)
        .map_err(bad_key)?
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(bad_key)?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad_key)?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(bad_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_names_the_user_and_the_key_fingerprint() {
        let pair = generate().unwrap();
        let token = jwt(&pair.private_der, "ACME", "loader").unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "ACME.LOADER");
        let fp = fingerprint(&pair.private_der).unwrap();
        assert_eq!(claims["iss"], format!("ACME.LOADER.{fp}"));
        assert_eq!(public_key(&pair.private_der).unwrap(), pair.public_base64);
        assert!(!format!("{pair:?}").contains(&format!("{:?}", &pair.private_der[..8])));
    }
}

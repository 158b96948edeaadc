//! Sealing connection credentials with the fleet's master key (AES-256-GCM), so they are
//! encrypted at rest and in messages, and can be opened only by processes holding the key.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The fleet's master key, with an id derived from it so sealed values name the key they need;
/// during a rotation it also holds the keys it replaces, to open what they sealed.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: String,
    /// Earlier keys: they open values sealed before the rotation, and seal nothing.
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A secret held in memory (a password, a token, a private key, a URL with credentials): its
/// `Debug` and `Display` never show it; `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A value encrypted under a master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Which master key sealed the value.
    pub key_id: String,
    /// The AES-GCM nonce.
    #[serde(with = "serde_bytes_hex")]
    pub nonce: Vec<u8>,
    /// The sealed value with its tag.
    #[serde(with = "serde_bytes_hex")]
    pub ciphertext: Vec<u8>,
}

/// Why a key could not be read or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key given is not 32 bytes of hex.
    #[error("SLUICE_MASTER_KEY must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    /// The value was sealed with another key than this process holds.
    #[error("the value was sealed with master key {found}, but this process holds key {held}")]
    WrongKey {
        /// The key that sealed the value.
        found: String,
        /// The key this process holds.
        held: String,
    },
    /// The value was changed, or the key does not open it.
    #[error("the sealed value could not be opened: it was changed or the key is wrong")]
    Corrupt,
    /// The key file could not be read or written.
    #[error("master key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl MasterKey {
    /// Reads a key from 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        let id = hex::encode(&Sha256::digest(key)[..4]);
        Ok(MasterKey {
            key,
            id,
            previous: Vec::new(),
        })
    }

    /// A new random key, as 64 hex characters.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// This key, also opening what `previous` keys sealed (a rotation in progress).
    pub fn with_previous(mut self, previous: Vec<MasterKey>) -> Self {
        self.previous = previous
            .into_iter()
            .filter(|k| k.id != self.id)
            .map(|mut k| {
                k.previous.clear();
                k
            })
            .collect();
        self
    }

    /// Seals `sealed` again under this key if an earlier key sealed it; `None` when it is
    /// sealed under this key already.
    pub fn reseal(&self, sealed: &Sealed) -> Result<Option<Sealed>, SecretError> {
        if sealed.key_id == self.id {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(sealed)?)))
    }

    /// Reads the key file at `path`, creating it with a fresh random key (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(path, &hex::encode(key)).map_err(io)?;
                // Another process may have created it first; whatever is on disk wins.
                Self::from_hex(&std::fs::read_to_string(path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's id (first 4 bytes of its SHA-256, in hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext` with a fresh nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Sealed {
        let cipher = Aes256Gcm::new_from_slice(&self.key).expect("32-byte key");
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Decrypts a sealed value, with this key or the earlier key that sealed it.
    pub fn open(&self, sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
        if sealed.key_id != self.id {
            return match self.previous.iter().find(|k| k.id == sealed.key_id) {
                Some(earlier) => earlier.open(sealed),
                None => Err(SecretError::WrongKey {
                    found: sealed.key_id.clone(),
                    held: self.id.clone(),
                }),
            };
        }
        if sealed.nonce.len() != 12 {
            return Err(SecretError::Corrupt);
        }
        let cipher = Aes256Gcm::new_from_slice(&self.key).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map_err(|_| SecretError::Corrupt)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file.write_all(text.as_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Hex encoding for byte fields, so sealed values stay readable in JSON columns.
mod serde_bytes_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn seal_then_open_returns_the_plaintext() {
        let k = key(1);
        let sealed = k.seal(b"postgres://u:secret@h/db");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed).unwrap(), b"postgres://u:secret@h/db");
    }

    #[test]
    fn another_key_or_tampering_is_refused() {
        let sealed = key(1).seal(b"x");
        assert!(matches!(
            key(2).open(&sealed),
            Err(SecretError::WrongKey { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(matches!(key(1).open(&tampered), Err(SecretError::Corrupt)));
    }

    #[test]
    fn a_rotated_key_opens_what_the_previous_one_sealed_and_reseals_it() {
        let old = key(1).seal(b"the password");
        let rotated = key(2).with_previous(vec![key(1)]);
        assert_eq!(rotated.open(&old).unwrap(), b"the password");
        let resealed = rotated.reseal(&old).unwrap().expect("sealed again");
        assert_eq!(resealed.key_id, key(2).id());
        assert!(
            rotated.reseal(&resealed).unwrap().is_none(),
            "already current"
        );
        assert_eq!(key(2).open(&resealed).unwrap(), b"the password");
        assert!(matches!(
            key(3).with_previous(vec![key(2)]).open(&old),
            Err(SecretError::WrongKey { .. })
        ));
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let secret = Secret::new("hunter2");
        assert_eq!(secret.expose(), "hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), secret);
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(MasterKey::from_hex("abc").is_err());
    }
}

//! The digest signing key: an Ed25519 key pair in a file of its own
//! (`audit-ingest keygen`), and public keys to check digests with.
//!
//! Files are text: the private key file holds the PKCS#8 document in
//! base64 on one line (readable by the service's user only); the public
//! key file, `<key>.pub`, the raw 32-byte key in base64.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// Why a key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a key of this kind.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The system's random source failed.
    #[error("no random bytes for a new key")]
    Random,
}

/// A signing key, loaded from its file.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().id())
    }
}

/// A public key digests are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// A short name for logs and reports: the first 8 bytes of its SHA-256, hex.
    pub fn id(&self) -> String {
        let hash: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(self.0)).into();
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key as base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A key from base64 text.
    pub fn from_base64(text: &str) -> Option<PublicKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        Some(PublicKey(<[u8; 32]>::try_from(bytes.as_slice()).ok()?))
    }

    /// Reads a `.pub` file.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_base64(&text).ok_or_else(|| KeyError::Invalid {
            path: path.to_path_buf(),
            why: "not an Ed25519 public key (32 bytes in base64)".into(),
        })
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl SigningKey {
    /// Reads the private key file.
    pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |why: &str| KeyError::Invalid {
            path: path.to_path_buf(),
            why: why.into(),
        };
        let der = STANDARD
            .decode(text.trim())
            .map_err(|_| invalid("not base64 (make one with `audit-ingest keygen`)"))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| invalid("not an Ed25519 private key in PKCS#8 (make one with `audit-ingest keygen`)"))?;
        Ok(SigningKey { pair })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// The signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// Makes a new key pair: the private key at `path` (created, never
    /// overwritten, mode 0600) and the public key at `<path>.pub`.
    pub fn generate(path: &Path) -> Result<PublicKey, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io(path))?;
        std::io::Write::write_all(&mut file, format!("{}\n", STANDARD.encode(pkcs8.as_ref())).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(path))?;
        let key = SigningKey::read(path)?.public();
        let public = public_path(path);
        std::fs::write(&public, format!("{}\n", key.to_base64())).map_err(io(&public))?;
        Ok(key)
    }
}

/// Where the public half of the key at `path` is kept.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

//! A digest: the hash chain's head at one moment, signed.
//!
//! The document kept (in the store and as a file) is
//! `{"digest": {...}, "signature": "<base64>"}`; the signature is over the
//! exact bytes of the `digest` object as written, which is kept verbatim.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys::{PublicKey, SigningKey};

/// What this version writes in `format`.
pub const FORMAT: &str = "audit-ingest digest v1";

/// The chain's head at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    /// [`FORMAT`].
    pub format: String,
    /// The store kind (`embedded`).
    pub store: String,
    /// The last chain entry covered; every entry up to it is covered.
    pub last_seq: i64,
    /// The chain value after that entry, hex.
    pub head: String,
    /// Entries covered (from the chain's first to `last_seq`).
    pub count: i64,
    /// Retention cut the chain: entries up to this one were dropped (their
    /// records all deleted), and the chain in the store starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_starts_after: Option<i64>,
    /// When the previous digest of this service was made (or it started).
    pub period_start: DateTime<Utc>,
    /// When this one was made.
    pub period_end: DateTime<Utc>,
    /// The signing key's public half, base64 (which key signed it; whether
    /// that key is trusted is the verifier's question, not the digest's).
    pub public_key: String,
}

impl Digest {
    /// The digest of the chain's `head`.
    pub fn new(
        store: &str,
        head: &crate::store::ChainHead,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        key: &PublicKey,
    ) -> Digest {
        Digest {
            format: FORMAT.into(),
            store: store.into(),
            last_seq: head.seq,
            head: hex(&head.chain),
            count: head.seq - head.cut,
            chain_starts_after: (head.cut > 0).then_some(head.cut),
            period_start: since,
            period_end: now,
            public_key: key.to_base64(),
        }
    }
}

/// A digest as kept: its text and the parts read from it.
#[derive(Debug, Clone)]
pub struct SignedDigest {
    text: String,
    /// The digest.
    pub digest: Digest,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    digest: &'a RawValue,
    signature: String,
}

/// Why a digest document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not a digest document of a format this version reads.
    #[error("not a digest: {0}")]
    Malformed(String),
    /// Its signature is not the expected key's.
    #[error("its signature does not verify with the expected key {expected} (it names key {named})")]
    WrongSignature {
        /// The id of the key it was checked with.
        expected: String,
        /// The id of the key it says signed it.
        named: String,
    },
}

impl SignedDigest {
    /// Signs `digest` with `key`.
    pub fn sign(digest: &Digest, key: &SigningKey) -> Result<SignedDigest, serde_json::Error> {
        let body = serde_json::to_string(digest)?;
        let signature = STANDARD.encode(key.sign(body.as_bytes()));
        let text = format!("{{\"digest\":{body},\"signature\":\"{signature}\"}}");
        Ok(SignedDigest::parse(&text).expect("a digest this version wrote reads back"))
    }

    /// Reads a kept document (its signature is not checked yet).
    pub fn parse(text: &str) -> Result<SignedDigest, DigestError> {
        let doc: Document<'_> = serde_json::from_str(text).map_err(|e| DigestError::Malformed(e.to_string()))?;
        let digest: Digest =
            serde_json::from_str(doc.digest.get()).map_err(|e| DigestError::Malformed(e.to_string()))?;
        if digest.format != FORMAT {
            return Err(DigestError::Malformed(format!("format `{}`", digest.format)));
        }
        let signature = STANDARD
            .decode(&doc.signature)
            .map_err(|_| DigestError::Malformed("the signature is not base64".into()))?;
        Ok(SignedDigest {
            text: text.to_string(),
            signed: doc.digest.get().as_bytes().to_vec(),
            digest,
            signature,
        })
    }

    /// The document's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks the signature against `key`.
    pub fn check(&self, key: &PublicKey) -> Result<(), DigestError> {
        if key.verifies(&self.signed, &self.signature) {
            return Ok(());
        }
        let named = PublicKey::from_base64(&self.digest.public_key).map_or_else(|| "(none)".to_string(), |k| k.id());
        Err(DigestError::WrongSignature {
            expected: key.id(),
            named,
        })
    }

    /// The signed chain value.
    pub fn head(&self) -> Option<[u8; 32]> {
        let text = &self.digest.head;
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file a digest of entry `last_seq` is kept in.
pub fn file_name(last_seq: i64) -> String {
    format!("digest-{last_seq:020}.json")
}

/// Writes `text` to `file` in `dir` durably: a temporary file, synced,
/// renamed into place, the directory synced.
pub fn write_file(dir: &Path, file: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)?;
    std::fs::File::open(dir)?.sync_all()
}

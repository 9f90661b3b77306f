//! Evidence an auditor accepts: signed digests of the store's hash chain,
//! and their verification.
//!
//! The embedded store chains every record it commits (`store::sqlite::chain`).
//! At an interval and at shutdown the service signs a **digest** of the
//! chain's head (its last entry's number and value) with an Ed25519 key
//! and keeps it twice: in the store and as a file in the digest directory,
//! from where copies are meant to leave the machine. `audit-ingest verify`
//! re-computes the chain from the store file, checks every digest's
//! signature against the expected public key and its head against the
//! re-computed one, and names each record altered, deleted or inserted.
//!
//! - `keys`: the signing key file (`audit-ingest keygen`) and public keys;
//! - `digest`: what a digest holds, signing and checking one;
//! - `verify`: the whole check, as the command runs it.

pub mod digest;
pub mod keys;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::store::Store;

/// `[evidence]`: signed digests of the store's hash chain. The chain is
/// always kept; digests are made only with a signing key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Ed25519 signing key file made by `audit-ingest keygen`
    /// (`AUDIT_SIGNING_KEY_FILE`); none: no digests.
    pub signing_key: Option<PathBuf>,
    /// Seconds between digests (one more is made at shutdown).
    pub digest_interval_secs: u64,
    /// Where digest files are written (default: `<data_dir>/digests`).
    pub digest_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            signing_key: None,
            digest_interval_secs: 3600,
            digest_dir: None,
        }
    }
}

impl Config {
    /// Checks the interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=86_400).contains(&self.digest_interval_secs) {
            return Err(ConfigError::new(
                "evidence.digest_interval_secs",
                "expected 10 to 86400 seconds",
            ));
        }
        Ok(())
    }

    /// Where digest files go.
    pub fn digest_dir(&self, data_dir: &Path) -> PathBuf {
        self.digest_dir.clone().unwrap_or_else(|| data_dir.join("digests"))
    }

    /// The signing key, read (an unreadable key is a configuration error).
    pub fn key(&self) -> Result<Option<SigningKey>, ConfigError> {
        self.signing_key
            .as_deref()
            .map(|path| SigningKey::read(path).map_err(|e| ConfigError::new("evidence.signing_key", e.to_string())))
            .transpose()
    }
}
pub use digest::{Digest, SignedDigest};
pub use keys::{PublicKey, SigningKey};

/// Makes and keeps the service's digests.
pub struct Digests {
    store: Store,
    key: SigningKey,
    dir: PathBuf,
    /// The last digest made (by this process or, read at the first call,
    /// an earlier one): its entry and when. None until read.
    last: tokio::sync::Mutex<Option<(i64, DateTime<Utc>)>>,
}

impl Digests {
    /// Digests of `store`'s chain signed with `key`, kept in the store and in `dir`.
    pub fn new(store: Store, key: SigningKey, dir: PathBuf) -> Digests {
        Digests {
            store,
            key,
            dir,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Signs and keeps a digest of the chain's head, unless nothing was
    /// chained since the last one; returns it.
    pub async fn make(&self) -> anyhow::Result<Option<SignedDigest>> {
        let mut last = self.last.lock().await;
        if last.is_none() {
            // Where an earlier process left off: the same head is not
            // signed twice, and the period goes on from there.
            let kept = self.store.last_digest().await?;
            let made = kept
                .and_then(|(_, text)| SignedDigest::parse(&text).ok())
                .map(|d| (d.digest.last_seq, d.digest.period_end));
            *last = Some(made.unwrap_or((0, Utc::now())));
        }
        let (last_seq, since) = last.unwrap_or((0, Utc::now()));
        let Some(head) = self.store.chain_head().await? else {
            return Ok(None);
        };
        if head.seq == 0 || head.seq == last_seq {
            return Ok(None);
        }
        let now = Utc::now();
        let digest = Digest::new(self.store.kind(), &head, since, now, &self.key.public());
        let signed = SignedDigest::sign(&digest, &self.key)?;
        self.store.save_digest(head.seq, signed.text().to_string()).await?;
        let file = self.dir.join(digest::file_name(head.seq));
        let text = signed.text().to_string();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || digest::write_file(&dir, &file, &text)).await??;
        *last = Some((head.seq, now));
        tracing::info!(last_seq = head.seq, dir = %self.dir.display(), "signed a digest of the hash chain");
        Ok(Some(signed))
    }

    /// Makes a digest every `every` until the process ends.
    pub async fn run(self: std::sync::Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.make().await {
                tracing::warn!(error = %e, "could not make a digest of the hash chain; trying again at the next interval");
            }
        }
    }
}

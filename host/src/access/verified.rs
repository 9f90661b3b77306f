//! Access tokens already verified, so a caller that sends the same token on
//! every request (a browser session, a job) pays for its signature once.
//!
//! Entries are keyed by the SHA-256 of the token (the tokens themselves are
//! not kept), hold what the claims said (subject, name, groups) and live
//! until the token's `exp` plus the leeway, at most until the keys are due
//! for a refresh. Only tokens that passed every check enter, so a caller
//! cannot fill the cache without valid tokens; when it is full, expired
//! entries are dropped and, if that frees less than a quarter, all are (they
//! are checked again on their next use). The verifier empties it whenever
//! it loads a new key set, so a key the issuer withdrew stops being honoured
//! with the next fetch.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::telemetry::now_unix as now;

/// The most tokens remembered.
pub const MAX_ENTRIES: usize = 4096;

/// What a verified token said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The subject.
    pub sub: String,
    /// The display name (`preferred_username`).
    pub name: Option<String>,
    /// The groups claim.
    pub groups: Vec<String>,
    /// Unix seconds after which the token is checked again (its `exp` plus
    /// the leeway, or the next key refresh if sooner).
    pub until: i64,
}

/// The cache; see the module documentation.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    /// What `token` said when it was verified, while it is still valid.
    pub fn get(&self, token: &str) -> Option<Verified> {
        let key = key(token);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(v) if now() <= v.until => Some(v.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a token that passed every check.
    pub fn insert(&self, token: &str, verified: Verified) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let now = now();
            entries.retain(|_, v| now <= v.until);
            // Too few expired to pay for the sweep again soon: start afresh
            // (those tokens are checked once more), so a full cache costs
            // one sweep per MAX_ENTRIES / 4 new tokens, not one per token.
            if entries.len() > MAX_ENTRIES / 4 * 3 {
                entries.clear();
            }
        }
        entries.insert(key(token), verified);
    }

    /// Forgets every token (a new key set was loaded).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(until: i64) -> Verified {
        Verified {
            sub: "alice".into(),
            name: None,
            groups: vec!["acme".into()],
            until,
        }
    }

    #[test]
    fn an_expired_entry_is_not_answered() {
        let cache = VerifiedTokens::default();
        cache.insert("a", verified(now() + 60));
        cache.insert("b", verified(now() - 1));
        assert_eq!(cache.get("a").map(|v| v.sub), Some("alice".into()));
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("c"), None);
        assert_eq!(cache.len(), 1, "the expired entry was dropped when asked for");
    }

    #[test]
    fn a_full_cache_drops_expired_entries_and_never_grows_past_its_bound() {
        let cache = VerifiedTokens::default();
        for i in 0..MAX_ENTRIES {
            cache.insert(&format!("old{i}"), verified(if i % 2 == 0 { 0 } else { now() + 60 }));
        }
        cache.insert("new", verified(now() + 60));
        assert!(cache.get("new").is_some(), "room was made by dropping expired entries");
        assert!(cache.get("old1").is_some(), "valid entries stay when enough expired");
        assert_eq!(cache.len(), MAX_ENTRIES / 2 + 1);
        for i in 0..4 * MAX_ENTRIES {
            cache.insert(&format!("more{i}"), verified(now() + 60));
            assert!(cache.len() <= MAX_ENTRIES);
        }
        assert!(cache.get(&format!("more{}", 4 * MAX_ENTRIES - 1)).is_some());
        cache.clear();
        assert!(cache.is_empty());
    }
}

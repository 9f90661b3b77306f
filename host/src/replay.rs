//! Re-mapping dead letters: deliveries a mapper rejected, trapped on or timed
//! out on are kept raw; once a fixed mapper is dropped in, `replay` runs them
//! through the mapper now serving their source, writes what maps and removes
//! the letter in the same commit, and leaves what still fails where it is.
//!
//! Never a duplicate: events keep the ids their mapper gives them (Stalwart's
//! content keys, authentik's `pk`), and an event without one gets
//! `dead-letter-<id>-<n>`, so replaying a letter twice (after a crash between
//! the write and the removal, with MongoDB) writes nothing twice.
//! Interrupting is safe: resolved letters are gone, the rest are still there.

use audit_guest_sdk::{Delivery, Transport};
use serde::Serialize;

use crate::ingest::{self, Received, Tenants};
use crate::runtime::Runtime;
use crate::store::{Store, StoreError};

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Letters looked at.
    pub letters: u64,
    /// Letters that now map, written and removed.
    pub resolved: u64,
    /// Letters the current mapper still cannot map (kept).
    pub still_failing: u64,
    /// Records written.
    pub inserted: u64,
    /// Records that were already stored.
    pub duplicates: u64,
}

/// Which letters to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayScope {
    /// Only letters of this source.
    pub source: Option<String>,
    /// At most this many letters (none: all).
    pub limit: Option<u64>,
}

/// Replays dead letters oldest first; `progress(done)` is called after each.
/// `stop()` is checked between letters.
pub async fn replay(
    store: &Store,
    runtime: &Runtime,
    tenants: &Tenants,
    scope: &ReplayScope,
    mut progress: impl FnMut(&ReplayReport),
    stop: impl Fn() -> bool,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.dead_letters_after(after.as_deref(), 100).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, letter) in page {
            if stop() || scope.limit.is_some_and(|l| report.letters >= l) {
                return Ok(report);
            }
            if scope.source.as_deref().is_some_and(|s| s != letter.source) {
                continue;
            }
            report.letters += 1;
            let received = Received {
                source: letter.source.clone(),
                at: letter.received_at,
                sender: letter.sender.clone(),
            };
            let delivery = Delivery {
                source: letter.source.clone(),
                transport: Transport::Webhook,
                received_at: letter.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                headers: Vec::new(),
                origin: letter.sender.clone(),
                body: letter.body,
            };
            match runtime.map(&letter.source, delivery).await {
                Ok(output) => {
                    let mut records = ingest::records(&received, &output, tenants);
                    for (n, r) in records.iter_mut().enumerate() {
                        if r.external_id.is_none() {
                            r.external_id = Some(format!("dead-letter-{id}-{n}"));
                        }
                    }
                    let written = store.resolve_dead_letter(&id, records).await?;
                    report.resolved += 1;
                    report.inserted += written.inserted;
                    report.duplicates += written.duplicates;
                }
                Err(e) => {
                    tracing::info!(letter = %id, source = %letter.source, error = %e, "dead letter still does not map; kept");
                    report.still_failing += 1;
                }
            }
            progress(&report);
        }
    }
    Ok(report)
}

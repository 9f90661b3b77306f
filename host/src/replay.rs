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
//!
//! On request, records that landed on a catch-all verb (`unrecognised` in
//! their metadata) are re-mapped from their stored original too: each is
//! replaced, in one commit, by what the current mapper makes of it, keeping
//! its external id (the event is the same event), its arrival time and its
//! tenant unless the new mapping names one. Records still unrecognised stay.

use crate::event::Transport;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::ingest::{Pipeline, Received};
use crate::store::{Commit, StoreError};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Catch-all records looked at (`catch_all` replays only).
    pub catch_all: u64,
    /// Catch-all records replaced by a recognised mapping.
    pub remapped: u64,
    /// The last letter looked at: a bounded replay continues after it, past
    /// the letters that still fail.
    pub last_letter: Option<String>,
}

/// Which letters to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayScope {
    /// Only letters of this source.
    pub source: Option<String>,
    /// At most this many letters (none: all).
    pub limit: Option<u64>,
    /// Also re-map stored records that landed on a catch-all verb.
    pub catch_all: bool,
    /// Start after this letter (a previous bounded replay's `last_letter`).
    pub after: Option<String>,
    /// Only this letter.
    pub letter: Option<String>,
}

/// Replays dead letters oldest first; `progress(done)` is called after each.
/// `stop()` is checked between letters.
pub async fn replay(
    pipeline: &Pipeline,
    scope: &ReplayScope,
    mut progress: impl FnMut(&ReplayReport),
    stop: impl Fn() -> bool,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    let mut after: Option<String> = scope.after.clone();
    'letters: loop {
        let page = pipeline.store().dead_letters_after(after.as_deref(), 100).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, letter) in page {
            if stop() || scope.limit.is_some_and(|l| report.letters >= l) {
                return Ok(report);
            }
            if scope.source.as_deref().is_some_and(|s| s != letter.source)
                || scope.letter.as_deref().is_some_and(|only| only != id)
            {
                continue;
            }
            let only_this = scope.letter.is_some();
            report.letters += 1;
            report.last_letter = Some(id.clone());
            let received = Received {
                source: letter.source.clone(),
                at: letter.received_at,
                sender: letter.sender.clone(),
            };
            // The delivery as the mapper first saw it: same transport,
            // headers and origin (a poll page, a batch of file lines).
            let delivery = received.delivery(letter.transport, letter.headers, letter.origin, letter.body);
            match pipeline.map(&letter.source, &received, delivery).await {
                (_, Ok(mapped)) => {
                    let mut records = mapped.records;
                    for (n, r) in records.iter_mut().enumerate() {
                        if r.external_id.is_none() {
                            r.external_id = Some(format!("dead-letter-{id}-{n}"));
                        }
                    }
                    let written = pipeline
                        .write(&letter.source, None, records, Commit::ResolveDeadLetter(id))
                        .await?;
                    report.resolved += 1;
                    report.inserted += written.inserted;
                    report.duplicates += written.duplicates;
                }
                (_, Err(e)) if e.is_transient() => {
                    tracing::info!(letter = %id, source = %letter.source, error = %e, "mapper busy; dead letter kept for the next replay");
                    report.still_failing += 1;
                }
                (_, Err(e)) => {
                    tracing::info!(letter = %id, source = %letter.source, error = %e, "dead letter still does not map; kept");
                    report.still_failing += 1;
                }
            }
            progress(&report);
            if only_this {
                break 'letters;
            }
        }
    }
    if scope.catch_all {
        remap_catch_all(pipeline, scope, &mut report, &mut progress, &stop).await?;
    }
    Ok(report)
}

/// The parts of a stored record's metadata a re-map needs, read without
/// re-printing the original (it goes to the mapper byte for byte).
#[derive(serde::Deserialize)]
struct StoredOriginal<'a> {
    #[serde(borrow)]
    original: Option<&'a RawValue>,
    sender: Option<String>,
}

async fn remap_catch_all(
    pipeline: &Pipeline,
    scope: &ReplayScope,
    report: &mut ReplayReport,
    progress: &mut impl FnMut(&ReplayReport),
    stop: &impl Fn() -> bool,
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let page = pipeline.store().unrecognised_records(after.as_deref(), 100).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = Some(last.id.clone());
        for old in page {
            if stop() || scope.limit.is_some_and(|l| report.catch_all >= l) {
                return Ok(());
            }
            let r = &old.record;
            if scope.source.as_deref().is_some_and(|s| s != r.source) {
                continue;
            }
            report.catch_all += 1;
            let Ok(stored) = serde_json::from_str::<StoredOriginal<'_>>(r.metadata.get()) else {
                continue;
            };
            let Some(original) = stored.original.filter(|o| o.get() != "null") else {
                continue;
            };
            let received = Received {
                source: r.source.clone(),
                at: r.received_at,
                sender: stored.sender,
            };
            let body = original.get().as_bytes().to_vec();
            let delivery = received.delivery(Transport::Webhook, Vec::new(), received.sender.clone(), body);
            let (_, Ok(mapped)) = pipeline.map(&r.source, &received, delivery).await else {
                continue;
            };
            if mapped.records.is_empty() || mapped.records.iter().any(is_unrecognised) {
                continue; // the current mapper does not know it either
            }
            let mut records = mapped.records;
            for (n, new) in records.iter_mut().enumerate() {
                new.external_id = match (&r.external_id, n) {
                    (Some(id), 0) => Some(id.clone()),
                    (Some(id), n) => Some(format!("{id}.{n}")),
                    (None, _) => new.external_id.take(),
                };
                if new.tenant_slug.is_none() {
                    new.tenant_slug = r.tenant_slug.clone();
                }
            }
            let written = pipeline
                .write(&r.source, None, records, Commit::ReplaceRecord(old.id.clone()))
                .await?;
            report.remapped += 1;
            report.inserted += written.inserted;
            report.duplicates += written.duplicates;
            progress(report);
        }
    }
}

/// Whether a record landed on a catch-all verb (its metadata says so).
fn is_unrecognised(record: &crate::store::NewRecord) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(default)]
        unrecognised: bool,
    }
    serde_json::from_str::<Flag>(record.metadata.get()).is_ok_and(|f| f.unrecognised)
}

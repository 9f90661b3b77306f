//! What a MongoDB answer may hold that this service did not write.
//!
//! The events collection is the platform's, so other programs may write to
//! it: a document with a non-ObjectId `_id` or a non-date `at` is skipped
//! (counted, logged once per store), never a 503 for every page that covers
//! it. Only duplicates of `(source, externalId)` count as duplicates; a
//! unique index of someone else's is an error that names it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mongodb::bson::Document;

use super::doc_to_record;
use crate::store::{Record, StoreError};

/// The index whose violations are duplicates.
pub const DEDUP_INDEX: &str = "source_externalId_unique";

/// Whether a duplicate-key (11000) write error came from the dedup index.
/// The server names the index in its message (`... index: <name> dup key:
/// ...`).
pub fn is_dedup_violation(message: &str) -> bool {
    message
        .split_once(" index: ")
        .map(|(_, rest)| rest.split_whitespace().next() == Some(DEDUP_INDEX))
        .unwrap_or(false)
}

/// The most foreign documents one page walks past before it gives up.
pub const MAX_FOREIGN_PER_PAGE: usize = 10_000;

/// Documents skipped as foreign, for the whole store.
#[derive(Default)]
pub struct Foreign {
    skipped: AtomicU64,
    logged: AtomicBool,
}

impl Foreign {
    /// How many were skipped since start.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn skip(&self, d: &Document, why: &StoreError) {
        let total = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                id = %d.get("_id").map(ToString::to_string).unwrap_or_default(), error = %why, skipped = total,
                "skipping a document in the events collection this service cannot read (written by another program?); further ones are counted, not logged"
            );
        }
    }
}

/// What to do after offering one document.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Offer the next one.
    More,
    /// The page and the one record that shows another follows are there.
    Full,
}

/// Gathers a page of `limit` records (plus one that says more follow) from
/// documents in timeline order, skipping foreign ones.
pub struct PageCollector<'a> {
    limit: usize,
    foreign: &'a Foreign,
    skipped_here: usize,
    /// The readable records so far.
    pub records: Vec<Record>,
}

impl<'a> PageCollector<'a> {
    /// A page of `limit` records.
    pub fn new(limit: usize, foreign: &'a Foreign) -> Self {
        PageCollector {
            limit,
            foreign,
            skipped_here: 0,
            records: Vec::with_capacity(limit + 1),
        }
    }

    /// Takes the next document of the walk.
    pub fn offer(&mut self, d: &Document) -> Result<Flow, StoreError> {
        match doc_to_record(d) {
            Ok(record) => self.records.push(record),
            Err(why) => {
                self.foreign.skip(d, &why);
                self.skipped_here += 1;
                if self.skipped_here >= MAX_FOREIGN_PER_PAGE {
                    return Err(StoreError::corrupt(format!(
                        "{MAX_FOREIGN_PER_PAGE} documents in a row in the events collection are not audit records this service wrote (last: {why}); is the collection shared with another program?"
                    )));
                }
            }
        }
        Ok(if self.records.len() > self.limit {
            Flow::Full
        } else {
            Flow::More
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{DateTime, doc, oid::ObjectId};

    fn ours(at_ms: i64) -> Document {
        doc! {
            "_id": ObjectId::new(), "source": "stalwart", "action": "stalwart.auth_failed",
            "at": DateTime::from_millis(at_ms), "receivedAt": DateTime::from_millis(at_ms),
            "outcome": "failure", "metadata": {},
        }
    }

    #[test]
    fn foreign_documents_are_skipped_and_the_page_still_fills() {
        let foreign = Foreign::default();
        let mut page = PageCollector::new(2, &foreign);
        let docs = [
            ours(5),
            doc! { "_id": "not-an-object-id", "source": "elsewhere", "at": "yesterday" },
            doc! { "_id": ObjectId::new(), "source": "stalwart", "action": "x", "at": "not a date" },
            ours(4),
            ours(3),
            ours(2),
        ];
        let mut flows = Vec::new();
        for d in &docs {
            let flow = page.offer(d).unwrap();
            let full = flow == Flow::Full;
            flows.push(flow);
            if full {
                break;
            }
        }
        assert_eq!(page.records.len(), 3, "two for the page and one saying more follow");
        assert_eq!(flows.len(), 5, "the walk stopped once the page was full");
        assert_eq!(foreign.skipped(), 2);
    }

    #[test]
    fn a_collection_of_nothing_but_foreign_documents_is_an_error_that_says_so() {
        let foreign = Foreign::default();
        let mut page = PageCollector::new(50, &foreign);
        let bad = doc! { "_id": 1, "at": 2 };
        let mut result = Ok(Flow::More);
        for _ in 0..MAX_FOREIGN_PER_PAGE {
            result = page.offer(&bad);
            if result.is_err() {
                break;
            }
        }
        let error = result.unwrap_err().to_string();
        assert!(error.contains("not audit records this service wrote"), "{error}");
    }

    #[test]
    fn only_the_dedup_index_makes_a_duplicate() {
        assert!(is_dedup_violation(
            "E11000 duplicate key error collection: audit.audit_events index: source_externalId_unique dup key: { source: \"stalwart\", externalId: \"a\" }"
        ));
        assert!(!is_dedup_violation(
            "E11000 duplicate key error collection: audit.audit_events index: platform_ref_unique dup key: { ref: 1 }"
        ));
        assert!(!is_dedup_violation("E11000 duplicate key error"));
    }
}

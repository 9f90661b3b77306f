//! The audit store: one contract, two backends.
//!
//! - `sqlite`: the embedded default (no server), WAL, one writer thread that
//!   commits batches in group transactions;
//! - `mongo`: MongoDB in the platform's schema (`audit_events`, `ingest_cursors`).
//!
//! Both deduplicate on `(source, externalId)` with a *partial* unique rule:
//! records without an external id never collide. A write returns only once
//! the batch is durable, so callers answer senders or move cursors after it.

pub mod mongo;
pub mod sqlite;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use audit_guest_sdk::RawJson;
use serde_json::Value;

/// A record to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRecord {
    /// The source name (`stalwart`, `authentik`, `ocis`, ...).
    pub source: String,
    /// Dotted action, e.g. `stalwart.auth_failed`.
    pub action: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// When audit-ingest received it.
    pub received_at: DateTime<Utc>,
    /// Actor id in the source system.
    pub actor_id: Option<String>,
    /// Actor login or display name.
    pub actor_name: Option<String>,
    /// Actor e-mail.
    pub actor_email: Option<String>,
    /// Client IP of the action.
    pub ip: Option<String>,
    /// Target kind.
    pub target_type: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// Target name.
    pub target_name: Option<String>,
    /// Tenant slug, when one was inferred.
    pub tenant_slug: Option<String>,
    /// `success`, `failure` or `unknown`.
    pub outcome: String,
    /// Deduplication key within the source; none never deduplicates.
    pub external_id: Option<String>,
    /// The original event and ingest details, as JSON text (stored verbatim).
    pub metadata: RawJson,
    /// `name@version` of the mapper that produced it.
    pub mapper: Option<String>,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Store-assigned id (opaque).
    pub id: String,
    /// Everything that was written.
    #[serde(flatten)]
    pub record: NewRecord,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    /// New records.
    pub inserted: u64,
    /// Records whose `(source, externalId)` was already stored.
    pub duplicates: u64,
}

/// A delivery that could not be mapped, kept raw for re-mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The source it was sent to.
    pub source: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Who sent it.
    pub sender: Option<String>,
    /// `name@version` of the mapper that failed, if one was called.
    pub mapper: Option<String>,
    /// What went wrong.
    pub error: String,
    /// The raw bytes, exactly as received.
    pub body: Vec<u8>,
}

/// A position in the timeline: the last record of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    /// `at` of the last record, in microseconds since the epoch.
    pub at: i64,
    /// Its id.
    pub id: String,
}

impl PageCursor {
    /// Opaque text form for the API.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses the text form; `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<PageCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Action filter: exact, or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// This action only.
    Exact(String),
    /// Every action starting with this.
    Prefix(String),
}

/// A timeline query. Newest first; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Source name.
    pub source: Option<String>,
    /// Action, exact or prefix.
    pub action: Option<ActionFilter>,
    /// Matches actor id, name or e-mail exactly.
    pub actor: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Tenant slug.
    pub tenant: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring over actor and target fields.
    pub text: Option<String>,
    /// Continue after this record.
    pub after: Option<PageCursor>,
    /// Page size.
    pub limit: usize,
}

/// One page of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// Records, newest first.
    pub records: Vec<Record>,
    /// Where the next page starts, if there may be one.
    pub next: Option<PageCursor>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the operation; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// Microseconds since the epoch (the embedded store's time column).
pub fn micros(at: &DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A switch that makes a store fail every operation while it is on: for
/// fault drills and the tests that prove nothing answered is lost.
#[derive(Debug, Default)]
pub struct FaultSwitch(std::sync::atomic::AtomicBool);

impl FaultSwitch {
    /// Turns failures on or off.
    pub fn set(&self, failing: bool) {
        self.0.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable("fault injected".into()))
        } else {
            Ok(())
        }
    }
}

/// Calls the same method on whichever backend this is; a faulty store
/// checks its switch first.
macro_rules! dispatch {
    ($store:expr, $method:ident($($arg:expr),*)) => {
        match $store {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Mongo(s) => s.$method($($arg),*).await,
            Store::Faulty(f, inner) => {
                f.check()?;
                Box::pin(inner.$method($($arg),*)).await
            }
        }
    };
}

/// The configured store.
#[derive(Clone)]
pub enum Store {
    /// The embedded SQLite store.
    Sqlite(Arc<sqlite::SqliteStore>),
    /// MongoDB.
    Mongo(Arc<mongo::MongoStore>),
    /// Another store behind a fault switch.
    Faulty(Arc<FaultSwitch>, Box<Store>),
}

impl Store {
    /// Writes a batch; returns when it is durable. With `cursor`, the source's
    /// cursor is saved in the same commit (embedded) or right after it (MongoDB,
    /// where a re-read after a crash in between is deduplicated).
    pub async fn insert(
        &self,
        batch: Vec<NewRecord>,
        cursor: Option<(String, Value)>,
    ) -> Result<WriteSummary, StoreError> {
        let started = std::time::Instant::now();
        let result = dispatch!(self, insert(batch, cursor));
        crate::metrics::METRICS.store_write_seconds.observe(started.elapsed());
        result
    }

    /// Keeps a delivery that could not be mapped; returns its id. Durable on return.
    pub async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        dispatch!(self, dead_letter(letter))
    }

    /// The oldest dead letters, up to `limit`, with their ids.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        self.dead_letters_after(None, limit).await
    }

    /// Dead letters after the one with id `after` (oldest first), for paging.
    pub async fn dead_letters_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        dispatch!(self, dead_letters_after(after, limit))
    }

    /// Writes the records a dead letter now maps to and removes the letter:
    /// in one commit (embedded), or letter removed right after the records
    /// (MongoDB; a retry finds the records already there).
    pub async fn resolve_dead_letter(&self, id: &str, batch: Vec<NewRecord>) -> Result<WriteSummary, StoreError> {
        dispatch!(self, resolve_dead_letter(id, batch))
    }

    /// One page of the timeline.
    pub async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        dispatch!(self, query(query))
    }

    /// One record by id.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        dispatch!(self, get(id))
    }

    /// The stored cursor of a source.
    pub async fn load_cursor(&self, source: &str) -> Result<Option<Value>, StoreError> {
        dispatch!(self, load_cursor(source))
    }

    /// Saves a source's cursor on its own (durable on return).
    pub async fn save_cursor(&self, source: &str, cursor: &Value) -> Result<(), StoreError> {
        self.insert(Vec::new(), Some((source.to_string(), cursor.clone())))
            .await
            .map(|_| ())
    }

    /// Records a mapper filed under a catch-all verb (`metadata.unrecognised`),
    /// oldest first, after the record with id `after`.
    pub async fn unrecognised_records(&self, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        dispatch!(self, unrecognised_records(after, limit))
    }

    /// Replaces record `id` with `batch` (what its original maps to now):
    /// in one commit (embedded), or removal then insert (MongoDB).
    pub async fn replace_record(&self, id: &str, batch: Vec<NewRecord>) -> Result<WriteSummary, StoreError> {
        dispatch!(self, replace_record(id, batch))
    }

    /// Tenant slugs the store knows besides the configured ones (MongoDB:
    /// the platform's `tenants` collection).
    pub async fn tenant_slugs(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, tenant_slugs())
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, ping())
    }

    /// This store behind a new fault switch.
    pub fn with_fault_switch(self) -> (Store, Arc<FaultSwitch>) {
        let switch = Arc::new(FaultSwitch::default());
        (Store::Faulty(switch.clone(), Box::new(self)), switch)
    }

    /// Which backend this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "embedded",
            Store::Mongo(_) => "mongodb",
            Store::Faulty(_, inner) => inner.kind(),
        }
    }
}

//! The audit store: one contract ([`AuditStore`]), two backends.
//!
//! - `sqlite`: the embedded default (no server), WAL, one writer thread that
//!   commits batches in group transactions;
//! - `mongo`: MongoDB in the platform's schema (`audit_events`, `ingest_cursors`);
//! - `checkpoint`: the typed, versioned cursors and positions sources resume from.
//!
//! Both deduplicate on `(source, externalId)` with a *partial* unique rule:
//! records without an external id never collide. A write returns only once
//! the batch is durable, so callers answer senders or move cursors after it.
//! The same contract suite (`host/tests/store_contract/`) runs against each.

pub mod checkpoint;
pub mod lease;
pub mod mongo;
pub mod sqlite;

use std::sync::Arc;

use crate::event::{RawJson, Transport};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointState};
pub use lease::Claim;

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
    /// The mapper filed it under a catch-all verb (it may need a newer
    /// mapper); also said in the metadata, kept here so the overview counts
    /// it without reading every original.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unrecognised: bool,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteSummary {
    /// New records.
    pub inserted: u64,
    /// Records whose `(source, externalId)` was already stored.
    pub duplicates: u64,
    /// Where the duplicates were in the batch (positions, ascending): which
    /// records arrived for the first time and which again.
    #[serde(skip)]
    pub repeated: Vec<u32>,
    /// Records the backend cannot hold at all (MongoDB: over its 16 MiB
    /// document limit, a key it refuses, nesting past 100 levels), given
    /// back with why; the rest of the batch committed. The pipeline keeps
    /// each as a dead letter of its own, so one such record cannot wedge a
    /// source by failing its whole batch for ever.
    #[serde(skip)]
    pub refused: Vec<Refused>,
}

/// A record a backend cannot hold (see [`WriteSummary::refused`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Its position in the batch.
    pub position: u32,
    /// Why, in the backend's terms.
    pub reason: String,
    /// The record, as it was to be written.
    pub record: NewRecord,
}

impl WriteSummary {
    /// A write of `total` records, of which those at `repeated` (ascending)
    /// were already stored.
    pub fn of(total: usize, repeated: Vec<u32>) -> WriteSummary {
        WriteSummary {
            inserted: (total - repeated.len()) as u64,
            duplicates: repeated.len() as u64,
            repeated,
            refused: Vec::new(),
        }
    }

    /// Whether the record at `position` of the batch was new (not a
    /// duplicate, not refused).
    pub fn is_new(&self, position: usize) -> bool {
        u32::try_from(position)
            .is_ok_and(|p| self.repeated.binary_search(&p).is_err() && !self.refused.iter().any(|r| r.position == p))
    }
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
    /// How it arrived, so a replay hands the mapper the same delivery.
    pub transport: Transport,
    /// The delivery's headers as the mapper saw them (credentials removed).
    pub headers: Vec<(String, String)>,
    /// The delivery's origin as the mapper saw it (sender, polled URL, file).
    pub origin: Option<String>,
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
    /// Whose records the page walk may reach (set and checked by the API,
    /// so a cursor is not carried from one reader's scope to another's);
    /// empty for all tenants.
    #[serde(default, rename = "s", skip_serializing_if = "String::is_empty")]
    pub scope: String,
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
    /// `success`, `failure` or `unknown`.
    pub outcome: Option<String>,
    /// Whose records the reader may see at all: every filter is applied
    /// within it, in the query itself.
    pub scope: TenantScope,
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

impl Query {
    /// Whether `record` passes every filter and the scope (not the cursor):
    /// what the stores' queries select, for records already in hand (the
    /// live stream checks each newly committed record with it).
    pub fn matches(&self, record: &NewRecord) -> bool {
        let r = record;
        let eq = |filter: &Option<String>, value: &Option<String>| {
            filter.as_ref().is_none_or(|f| value.as_deref() == Some(f.as_str()))
        };
        let action = match &self.action {
            None => true,
            Some(ActionFilter::Exact(a)) => r.action == *a,
            Some(ActionFilter::Prefix(p)) => r.action.starts_with(p.as_str()),
        };
        let actor = self.actor.as_ref().is_none_or(|a| {
            [&r.actor_id, &r.actor_name, &r.actor_email]
                .iter()
                .any(|v| v.as_deref() == Some(a.as_str()))
        });
        let text = self.text.as_ref().is_none_or(|t| {
            let t = t.to_lowercase();
            [&r.actor_id, &r.actor_name, &r.actor_email, &r.target_id, &r.target_name]
                .iter()
                .any(|v| v.as_deref().is_some_and(|v| v.to_lowercase().contains(&t)))
        });
        self.source.as_ref().is_none_or(|s| r.source == *s)
            && action
            && actor
            && eq(&self.ip, &r.ip)
            && eq(&self.tenant, &r.tenant_slug)
            && self.outcome.as_ref().is_none_or(|o| r.outcome == *o)
            && self.since.is_none_or(|t| r.at >= t)
            && self.until.is_none_or(|t| r.at < t)
            && self.scope.admits(r.tenant_slug.as_deref())
            && text
    }
}

/// Whose records a reader may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TenantScope {
    /// Every record, with or without a tenant.
    #[default]
    All,
    /// The records of these tenants only; never a record without a tenant.
    Tenants(std::collections::BTreeSet<String>),
}

impl TenantScope {
    /// One tenant's records.
    pub fn tenant(slug: impl Into<String>) -> TenantScope {
        TenantScope::Tenants([slug.into()].into())
    }

    /// Whether a record of `tenant` is inside the scope.
    pub fn admits(&self, tenant: Option<&str>) -> bool {
        match (self, tenant) {
            (TenantScope::All, _) => true,
            (TenantScope::Tenants(slugs), Some(t)) => slugs.contains(t),
            (TenantScope::Tenants(_), None) => false,
        }
    }

    /// The tenants a query with this `tenant` filter may reach: `None` when
    /// any record may match (no filter, all tenants), an empty list when
    /// none can (the filter names a tenant outside the scope).
    pub fn reach(&self, filter: Option<&str>) -> Option<Vec<String>> {
        match (self, filter) {
            (TenantScope::All, None) => None,
            (TenantScope::All, Some(t)) => Some(vec![t.to_string()]),
            (TenantScope::Tenants(slugs), None) => Some(slugs.iter().cloned().collect()),
            (TenantScope::Tenants(slugs), Some(t)) => {
                Some(slugs.contains(t).then(|| t.to_string()).into_iter().collect())
            }
        }
    }
}

/// One page of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// Records, newest first.
    pub records: Vec<Record>,
    /// Where the next page starts, if there may be one.
    pub next: Option<PageCursor>,
}

/// Records of one source and outcome in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCount {
    /// Start of the bucket, microseconds since the epoch.
    pub start: i64,
    /// The source name.
    pub source: String,
    /// `success`, `failure` or `unknown`.
    pub outcome: String,
    /// Records.
    pub count: u64,
    /// Of those, records on a catch-all verb.
    pub unrecognised: u64,
}

/// What the overview shows: counts per time bucket, and each source's
/// newest event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// Non-empty buckets, oldest first (then by source and outcome).
    pub buckets: Vec<BucketCount>,
    /// Each source's newest event time within the scope (not only the
    /// range), microseconds since the epoch.
    pub latest: std::collections::BTreeMap<String, i64>,
    /// Stored dead letters per source.
    pub dead_letters: std::collections::BTreeMap<String, u64>,
}

/// What followed a position in commit order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    /// The records, oldest commit first.
    pub records: Vec<Record>,
    /// The id to continue after: the last one looked at (which may be a
    /// document another program wrote and that was passed over); `None`
    /// when the store holds nothing after the position.
    pub position: Option<String>,
}

/// The longest one overview may cover, in buckets.
pub const MAX_BUCKETS: i64 = 2_000;

/// An error a backend carries as its cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the operation; retry later (503).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Stored data could not be read back.
    #[error("store data is corrupt: {what}")]
    Corrupt {
        /// What could not be read.
        what: String,
        /// Why, when a lower layer said.
        #[source]
        cause: Option<BoxError>,
    },
    /// The caller asked for something that cannot exist (a cursor or id this
    /// store never handed out): the caller's mistake, answered 400.
    #[error("{0}")]
    InvalidInput(String),
    /// A read ran past [`READ_BUDGET`] and was stopped, so that one expensive
    /// query cannot hold the store; the caller is to narrow it (503).
    #[error("the query ran longer than the store's read budget of {} s and was stopped", .0.as_secs())]
    TooSlow(std::time::Duration),
    /// A checkpoint written under a lease that has since changed hands:
    /// nothing of that write was kept where the backend commits atomically
    /// (embedded), only the records otherwise (MongoDB; re-reads are
    /// deduplicated). The writer stops the leased work.
    #[error("`{lease}` is no longer held with fencing token {token}: another instance took it over")]
    Fenced {
        /// The lease (the source's name).
        lease: String,
        /// The token the write carried.
        token: u64,
    },
}

/// The longest one read may run (SQLite: interrupted by a progress handler;
/// MongoDB: `maxTimeMS`). A timeline page on an index takes milliseconds;
/// only a scan that no index serves comes near this.
pub const READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

impl StoreError {
    /// The store could not do it now.
    pub fn unavailable(cause: impl Into<BoxError>) -> StoreError {
        StoreError::Unavailable(cause.into())
    }

    /// Stored data is not what this version wrote.
    pub fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            cause: None,
        }
    }

    /// Stored data is not what this version wrote, and a lower layer said why.
    pub fn corrupt_because(what: impl Into<String>, cause: impl Into<BoxError>) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            cause: Some(cause.into()),
        }
    }
}

/// Shorthand for the backends' `map_err(unavailable)`.
pub(crate) fn unavailable(cause: impl Into<BoxError>) -> StoreError {
    StoreError::unavailable(cause)
}

/// Microseconds since the epoch (the embedded store's time column).
pub fn micros(at: &DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// What a write commits besides its records, atomically with them where the
/// backend can.
#[derive(Debug, Clone, PartialEq)]
pub enum Commit {
    /// Only the records.
    Records,
    /// The source's checkpoint, which covers these records: in the same
    /// transaction (embedded), or right after them (MongoDB, where a re-read
    /// after a crash in between is deduplicated).
    Checkpoint(Checkpoint),
    /// Removes the dead letter (by id) the records were mapped from.
    ResolveDeadLetter(String),
    /// Replaces the record (by id) the records were re-mapped from; the
    /// replacement may keep its external id.
    ReplaceRecord(String),
}

/// The contract every backend keeps. Writes are durable when they return.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Which backend this is, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Writes a batch (deduplicated on `(source, externalId)`) and what
    /// `commit` names; returns when it is durable.
    async fn write(&self, batch: Vec<NewRecord>, commit: Commit) -> Result<WriteSummary, StoreError>;

    /// Keeps a delivery that could not be mapped; returns its id. Durable on return.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError>;

    /// Dead letters after the one with id `after` (oldest first), for paging.
    async fn dead_letters_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, DeadLetter)>, StoreError>;

    /// One page of the timeline.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// One record by id, if it is inside `scope` (a record outside it is
    /// not found, exactly like one that does not exist).
    async fn get(&self, id: &str, scope: &TenantScope) -> Result<Option<Record>, StoreError>;

    /// The stored checkpoint envelope of a source (see [`Checkpoint::read`]).
    async fn load_checkpoint(&self, source: &str) -> Result<Option<Value>, StoreError>;

    /// Records a mapper filed under a catch-all verb (`metadata.unrecognised`),
    /// oldest first, after the record with id `after`.
    async fn unrecognised_records(&self, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Tenant slugs the store knows besides the configured ones (MongoDB:
    /// the platform's `tenants` collection).
    async fn tenant_slugs(&self) -> Result<Vec<String>, StoreError>;

    /// Records committed after the one with id `after` (from the first
    /// without it), oldest commit first, up to `limit` looked at: what the
    /// live stream sends.
    async fn committed_after(&self, after: Option<&str>, limit: usize) -> Result<Committed, StoreError>;

    /// The id of the newest commit, where a live stream starts; `None` when
    /// the store holds no record.
    async fn last_commit(&self) -> Result<Option<String>, StoreError>;

    /// Counts per `bucket_micros` of the records `query` selects by source,
    /// tenant, scope and time range (`since` and `until` are required;
    /// other filters are ignored), computed in the store.
    async fn overview(&self, query: &Query, bucket_micros: i64) -> Result<Overview, StoreError>;

    /// Documents in the store that are not this service's records and
    /// that reads passed over since start (MongoDB's shared collection);
    /// the embedded store holds none.
    fn foreign_skipped(&self) -> u64 {
        0
    }

    /// Whether the store answers and can write.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Up to `limit` records due under `expiry` (retention), oldest first
    /// within each source, read without deleting them (so that they can be
    /// exported first).
    async fn expiring(&self, expiry: &Expiry, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Deletes the records with these ids (retention): durable on return;
    /// in a store that keeps a hash chain the deletion is a chained entry,
    /// so verification tells it from tampering. Returns how many were
    /// deleted (ids already gone are passed over).
    async fn expire(&self, ids: Vec<String>) -> Result<u64, StoreError>;

    /// Deletes up to `limit` dead letters that arrived before their
    /// source's cutoff; returns how many.
    async fn expire_dead_letters(&self, expiry: &Expiry, limit: usize) -> Result<u64, StoreError>;

    /// Drops the chain's oldest entries once every record they wrote is
    /// gone, up to the newest signed digest before the first record still
    /// kept (the cut is itself a chained entry, which the next digest
    /// covers). Returns the entry the chain now starts after, if it moved.
    async fn cut_chain(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// How the record `id` relates to re-mappings: the record that
    /// superseded it (it is then out of the timeline, still found by
    /// [`AuditStore::get`]) and the records it superseded.
    async fn lineage(&self, id: &str) -> Result<Lineage, StoreError> {
        let _ = id;
        Ok(Lineage::default())
    }

    /// Whether the store chains what it commits (tamper evidence).
    fn keeps_chain(&self) -> bool {
        false
    }

    /// The end of the store's hash chain (tamper evidence), if it keeps
    /// one: the last entry's number and value.
    async fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        Ok(None)
    }

    /// The newest signed digest kept beside the records: its entry and document.
    async fn last_digest(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(None)
    }

    /// Grants the lease `name` to `owner` for `ttl` from now when it is
    /// free, expired or already theirs (a renewal keeps the token), and
    /// says who holds it otherwise (see [`lease`]).
    async fn take_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<Claim, StoreError>;

    /// Gives the lease up at once if `owner` holds it (a clean shutdown:
    /// the next instance need not wait for the expiry).
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// Keeps a signed digest of the chain up to entry `last_seq` beside the records.
    async fn save_digest(&self, last_seq: i64, document: String) -> Result<(), StoreError> {
        let _ = (last_seq, document);
        Err(StoreError::InvalidInput(format!(
            "the {} store keeps no hash chain to digest",
            self.kind()
        )))
    }
}

/// Where a store's hash chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The last entry's number (entries count from 1).
    pub seq: i64,
    /// The chain value after it.
    pub chain: [u8; 32],
    /// Entries up to this one were cut by retention (0: none): the chain in
    /// the store starts after it.
    pub cut: i64,
}

/// A record's place among corrections (see [`AuditStore::lineage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// The first record of the re-mapping that superseded it.
    pub superseded_by: Option<String>,
    /// The records it superseded.
    pub supersedes: Vec<String>,
}

/// Which records retention deletes: those that happened before their
/// source's cutoff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Sources with a period of their own, and their cutoff.
    pub per_source: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// The cutoff of every other source; `None`: they are kept.
    pub otherwise: Option<DateTime<Utc>>,
}

impl Expiry {
    /// The cutoff of `source`'s records, if they expire at all.
    pub fn cutoff(&self, source: &str) -> Option<DateTime<Utc>> {
        self.per_source.get(source).copied().or(self.otherwise)
    }

    /// Whether anything expires.
    pub fn is_empty(&self) -> bool {
        self.per_source.is_empty() && self.otherwise.is_none()
    }
}

/// The configured store, shared.
pub type Store = Arc<dyn AuditStore>;

impl dyn AuditStore {
    /// Writes a batch, with the checkpoint that covers it if any.
    pub async fn insert(
        &self,
        batch: Vec<NewRecord>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<WriteSummary, StoreError> {
        self.write(batch, checkpoint.map_or(Commit::Records, Commit::Checkpoint))
            .await
    }

    /// Saves a source's checkpoint on its own (durable on return).
    pub async fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.write(Vec::new(), Commit::Checkpoint(checkpoint)).await.map(|_| ())
    }

    /// The oldest dead letters, up to `limit`, with their ids.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        self.dead_letters_after(None, limit).await
    }
}

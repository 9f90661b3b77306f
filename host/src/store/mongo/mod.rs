//! The MongoDB store, in the platform's schema.
//!
//! - `audit_events` (name configurable): camelCase fields; a compound unique
//!   index on `(source, externalId)` with
//!   `partialFilterExpression: {externalId: {$type: "string"}}` (partial, not
//!   sparse: records other parts of the platform write with a null
//!   `externalId` never collide); a `(at, _id)` index for the timeline.
//! - `ingest_cursors`: one document per source, `_id` = source name, with
//!   the fencing token of the source's lease (see `lease`);
//! - `ingest_leases`: one document per lease.
//!
//! Writes are acknowledged by a majority and journaled unless the URI says
//! otherwise, and an operation looks for a server for 2 s, not the driver's
//! 30 s (see [`client_options`]).
//!
//! Batches go in with `insertMany` and `ordered: false`, so one duplicate does
//! not stop the rest; duplicate-key write errors (code 11000) of the
//! `(source, externalId)` index are counted as duplicates, never logged as
//! errors (another unique index's are errors). Documents other programs put
//! in the collection are skipped by reads (see `page`). Indexes are created
//! at start-up; the server treats creating an identical index again as a
//! no-op.

mod documents;
mod lease;
mod letters;
mod limits;
mod overview;
mod page;
mod retention;

use documents::{doc_to_record, opt, record_to_doc};
use futures_util::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use page::{Flow, Foreign, PageCollector, is_dedup_violation};
use serde_json::Value;

use super::{
    ActionFilter, AuditStore, Checkpoint, Commit, Committed, DeadLetter, NewRecord, Overview, Page, PageCursor, Query,
    Record, StoreError, TenantScope, WriteSummary, unavailable,
};

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// The MongoDB store.
pub struct MongoStore {
    db: Database,
    events: Collection<Document>,
    cursors: Collection<Document>,
    leases: Collection<Document>,
    dead_letters: Collection<Document>,
    /// Pieces of dead-letter bodies too large for one document.
    letter_chunks: Collection<Document>,
    /// Records a re-mapping superseded, kept as they were
    /// (`<collection>_superseded`): a new `_id`, `supersededBy` the record
    /// that took theirs.
    superseded: Collection<Document>,
    /// Documents in the events collection skipped as not ours.
    foreign: Foreign,
}

/// Sorts the per-document errors of an unordered `insertMany` into
/// duplicates of the dedup index and records MongoDB refused (another
/// unique index, a collection validator, nesting: a retry would meet them
/// again), by batch position (`sent[i]`: the position of the i-th document
/// sent). A write-concern error fails the batch.
fn sort_out(
    failure: &mongodb::error::InsertManyError,
    sent: &[u32],
    repeated: &mut Vec<u32>,
    refused: &mut Vec<(u32, String)>,
) -> Result<(), StoreError> {
    if let Some(wc) = &failure.write_concern_error {
        return Err(unavailable(format!("write concern: {}", wc.message)));
    }
    for w in failure.write_errors.as_deref().unwrap_or_default() {
        let Some(&position) = sent.get(w.index) else {
            return Err(unavailable(format!("insert failed (code {}): {}", w.code, w.message)));
        };
        if w.code == DUPLICATE_KEY && is_dedup_violation(&w.message) {
            repeated.push(position);
        } else {
            refused.push((position, format!("MongoDB refused it (code {}): {}", w.code, w.message)));
        }
    }
    Ok(())
}

/// A store id given back to us, which must be one of ours.
fn object_id(id: &str, what: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse_str(id).map_err(|_| StoreError::InvalidInput(format!("`{id}` is not a {what} id")))
}

/// A failed read: [`StoreError::TooSlow`] when the server stopped it at
/// `maxTimeMS` (code 50, MaxTimeMSExpired), unavailable otherwise.
fn read_failed(e: mongodb::error::Error) -> StoreError {
    if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 50) {
        return StoreError::TooSlow(super::READ_BUDGET);
    }
    unavailable(e)
}

/// Documents matching `filter` after the one with id `after`, oldest first.
async fn page_after(
    collection: &Collection<Document>,
    mut filter: Document,
    after: Option<&str>,
    what: &str,
    limit: usize,
) -> Result<Vec<Document>, StoreError> {
    if let Some(id) = after {
        filter.insert("_id", doc! { "$gt": object_id(id, what)? });
    }
    let mut cursor = collection
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(limit as i64)
        .max_time(super::READ_BUDGET)
        .await
        .map_err(read_failed)?;
    let mut out = Vec::new();
    while let Some(d) = cursor.try_next().await.map_err(unavailable)? {
        out.push(d);
    }
    Ok(out)
}

/// The server's codes for an index that exists under the same name or keys
/// with other options (85) or other keys (86).
const INDEX_CONFLICT: [i32; 2] = [85, 86];

/// An index conflict at start is not an outage to wait out: it says what
/// exists (the server's message quotes it) and what is needed.
fn index_error(e: mongodb::error::Error) -> StoreError {
    match *e.kind {
        ErrorKind::Command(ref c) if INDEX_CONFLICT.contains(&c.code) => StoreError::corrupt(format!(
            "an index on the events collection conflicts with one this service needs ({}: {}); \
             the service needs `source_externalId_unique` = unique {{source: 1, externalId: 1}} with \
             partialFilterExpression {{externalId: {{$type: \"string\"}}}}, `at_id` = {{at: -1, _id: -1}}, and `<field>_at_id` = \
             {{<field>: 1, at: -1, _id: -1}} for source, action, tenantSlug, ip, actorId, actorName, actorEmail \
             (see docs/mongodb.md); drop or rename the existing index",
            c.code_name, c.message
        )),
        _ => unavailable(e),
    }
}

/// How long the driver looks for a usable server before an operation fails
/// (its own default is 30 s): during an outage a request is answered 503
/// within about this, instead of holding an ingest slot for half a minute.
pub const SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long opening one connection may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The driver's options for `uri`, with this service's defaults wherever
/// the URI says nothing: a short server selection and connect timeout, and
/// writes acknowledged by a majority and journaled (`w: majority, j: true`),
/// since a 2xx promises the events are durable. A URI that names its own
/// (`w=1`, `serverSelectionTimeoutMS=...`, `maxPoolSize=...`) keeps them.
/// `max_pool` bounds the connections of this instance (see [`pool_for`]).
pub async fn client_options(uri: &str, max_pool: u32) -> Result<ClientOptions, StoreError> {
    let mut options = ClientOptions::parse(uri).await.map_err(unavailable)?;
    options.max_pool_size.get_or_insert(max_pool);
    options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    if options.write_concern.is_none() {
        options.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
    }
    Ok(options)
}

/// The connection pool for `ingest_slots` webhook requests at once: half
/// as many connections plus 8 for pollers, tails and readers, between 16
/// and 128 (the driver's own default is 10, against 256 slots). A write
/// holds a connection for milliseconds; requests beyond the pool wait for
/// one (the driver puts no limit on that wait; the slots bound how many).
pub fn pool_for(ingest_slots: usize) -> u32 {
    u32::try_from(ingest_slots / 2 + 8).unwrap_or(u32::MAX).clamp(16, 128)
}

impl MongoStore {
    /// Connects with the pool for the default ingest slots and creates the
    /// indexes (idempotently).
    pub async fn connect(uri: &str, database: &str, collection: &str) -> Result<MongoStore, StoreError> {
        Self::connect_sized(uri, database, collection, pool_for(crate::api::DEFAULT_INGEST_SLOTS)).await
    }

    /// Connects with at most `max_pool` connections (unless the URI says
    /// `maxPoolSize`) and creates the indexes (idempotently).
    pub async fn connect_sized(
        uri: &str,
        database: &str,
        collection: &str,
        max_pool: u32,
    ) -> Result<MongoStore, StoreError> {
        let client = Client::with_options(client_options(uri, max_pool).await?).map_err(unavailable)?;
        let db = client.database(database);
        let store = MongoStore {
            events: db.collection(collection),
            cursors: db.collection("ingest_cursors"),
            leases: db.collection("ingest_leases"),
            dead_letters: db.collection("dead_letters"),
            letter_chunks: db.collection("dead_letter_chunks"),
            superseded: db.collection(&format!("{collection}_superseded")),
            db,
            foreign: Foreign::default(),
        };
        AuditStore::ping(&store).await?;
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = IndexModel::builder()
            .keys(doc! { "source": 1, "externalId": 1 })
            .options(
                IndexOptions::builder()
                    .name("source_externalId_unique".to_string())
                    .unique(true)
                    .partial_filter_expression(doc! { "externalId": { "$type": "string" } })
                    .build(),
            )
            .build();
        let timeline = IndexModel::builder()
            .keys(doc! { "at": -1, "_id": -1 })
            .options(IndexOptions::builder().name("at_id".to_string()).build())
            .build();
        let by_source = IndexModel::builder()
            .keys(doc! { "source": 1, "at": -1, "_id": -1 })
            .options(IndexOptions::builder().name("source_at_id".to_string()).build())
            .build();
        let by_action = IndexModel::builder()
            .keys(doc! { "action": 1, "at": -1, "_id": -1 })
            .options(IndexOptions::builder().name("action_at_id".to_string()).build())
            .build();
        // One (field, at, _id) index per timeline filter, so "newest records
        // with this value" is an ordered index walk, as in the embedded store.
        let by = |field: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1, "at": -1, "_id": -1 })
                .options(IndexOptions::builder().name(format!("{field}_at_id")).build())
                .build()
        };
        self.events
            .create_indexes([
                unique,
                timeline,
                by_source,
                by_action,
                by("tenantSlug"),
                by("ip"),
                by("actorId"),
                by("actorName"),
                by("actorEmail"),
            ])
            .await
            .map_err(index_error)?;
        let chunks = IndexModel::builder()
            .keys(doc! { "letter": 1, "n": 1 })
            .options(IndexOptions::builder().name("letter_n".to_string()).build())
            .build();
        self.letter_chunks.create_index(chunks).await.map_err(index_error)?;
        Ok(())
    }

    async fn insert(&self, batch: Vec<NewRecord>, checkpoint: Option<Checkpoint>) -> Result<WriteSummary, StoreError> {
        let summary = if batch.is_empty() {
            WriteSummary::default()
        } else {
            self.insert_records(batch).await?
        };
        if let Some(checkpoint) = checkpoint {
            self.write_cursor(checkpoint).await?;
        }
        Ok(summary)
    }

    /// Inserts what MongoDB can hold; gives back the rest as refused.
    async fn insert_records(&self, batch: Vec<NewRecord>) -> Result<WriteSummary, StoreError> {
        let total = batch.len();
        // What MongoDB cannot hold leaves the batch here (the driver would
        // fail the whole batch for it); `sent[i]` is the batch position of
        // the i-th document sent.
        let mut refused: Vec<(u32, String)> = Vec::new();
        let mut docs = Vec::with_capacity(total);
        let mut sent: Vec<u32> = Vec::with_capacity(total);
        for (position, record) in batch.iter().enumerate() {
            let doc = record_to_doc(record);
            match limits::unstorable(&doc) {
                Some(why) => refused.push((position as u32, why)),
                None => {
                    docs.push(doc);
                    sent.push(position as u32);
                }
            }
        }
        let mut repeated: Vec<u32> = Vec::new();
        if !docs.is_empty()
            && let Err(e) = self.events.insert_many(docs).ordered(false).await
        {
            match *e.kind {
                ErrorKind::InsertMany(ref failure) => sort_out(failure, &sent, &mut repeated, &mut refused)?,
                _ => return Err(unavailable(e)),
            }
        }
        repeated.sort_unstable();
        refused.sort_unstable_by_key(|(p, _)| *p);
        let mut batch: Vec<Option<NewRecord>> = batch.into_iter().map(Some).collect();
        Ok(WriteSummary {
            inserted: (total - refused.len() - repeated.len()) as u64,
            duplicates: repeated.len() as u64,
            repeated,
            refused: refused
                .into_iter()
                .filter_map(|(position, reason)| {
                    let record = batch.get_mut(position as usize)?.take()?;
                    Some(super::Refused {
                        position,
                        reason,
                        record,
                    })
                })
                .collect(),
        })
    }

    async fn replace_record(&self, id: &str, batch: Vec<NewRecord>) -> Result<WriteSummary, StoreError> {
        let oid = object_id(id, "record")?;
        let mut batch = batch.into_iter();
        let Some(first) = batch.next() else {
            return Ok(WriteSummary::default());
        };
        let replacement = record_to_doc(&first);
        if let Some(reason) = limits::unstorable(&replacement) {
            // The catch-all record stays; the re-mapping is kept aside.
            return Ok(WriteSummary {
                refused: vec![super::Refused {
                    position: 0,
                    reason,
                    record: first,
                }],
                ..WriteSummary::default()
            });
        }
        // Kept as it was before it is replaced (a correction supersedes a
        // record, it does not erase it).
        if let Some(mut old) = self.events.find_one(doc! { "_id": oid }).await.map_err(unavailable)? {
            old.insert("_id", ObjectId::new());
            old.insert("supersededBy", oid);
            self.superseded.insert_one(old).await.map_err(unavailable)?;
        }
        // In place, one document at a time: never a moment without the
        // record, and the indexes follow by themselves.
        self.events
            .replace_one(doc! { "_id": oid }, replacement)
            .await
            .map_err(unavailable)?;
        let rest = self.insert(batch.collect(), None).await?;
        // The replaced record is new; the others' positions follow it.
        Ok(WriteSummary {
            inserted: rest.inserted + 1,
            duplicates: rest.duplicates,
            repeated: rest.repeated.iter().map(|p| p + 1).collect(),
            refused: rest
                .refused
                .into_iter()
                .map(|r| super::Refused {
                    position: r.position + 1,
                    ..r
                })
                .collect(),
        })
    }

    async fn resolve_dead_letter(&self, id: &str, batch: Vec<NewRecord>) -> Result<WriteSummary, StoreError> {
        let oid = object_id(id, "dead letter")?;
        let written = self.insert(batch, None).await?;
        self.delete_letters(vec![Bson::ObjectId(oid)]).await?;
        Ok(written)
    }
}

#[async_trait::async_trait]
impl AuditStore for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn write(&self, batch: Vec<NewRecord>, commit: Commit) -> Result<WriteSummary, StoreError> {
        match commit {
            Commit::Records => self.insert(batch, None).await,
            Commit::Checkpoint(c) => self.insert(batch, Some(c)).await,
            Commit::ResolveDeadLetter(id) => self.resolve_dead_letter(&id, batch).await,
            Commit::ReplaceRecord(id) => self.replace_record(&id, batch).await,
        }
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        self.save_letter(letter).await
    }

    async fn take_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<super::Claim, StoreError> {
        self.take(name, owner, ttl).await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.release(name, owner).await
    }

    async fn expiring(&self, expiry: &super::Expiry, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.expiring_records(expiry, limit).await
    }

    async fn expire(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        self.delete_records(ids).await
    }

    async fn expire_dead_letters(&self, expiry: &super::Expiry, limit: usize) -> Result<u64, StoreError> {
        self.delete_dead_letters(expiry, limit).await
    }

    async fn unrecognised_records(&self, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let docs = page_after(
            &self.events,
            doc! { "metadata.unrecognised": true },
            after,
            "record",
            limit,
        )
        .await?;
        docs.iter().map(doc_to_record).collect()
    }

    async fn dead_letters_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        let docs = page_after(&self.dead_letters, doc! {}, after, "dead letter", limit).await?;
        let mut out = Vec::new();
        for d in docs {
            let corrupt = |k: &str| StoreError::corrupt(format!("dead letter without a valid {k}"));
            let id = d.get_object_id("_id").map_err(|_| corrupt("_id"))?.to_hex();
            let letter = DeadLetter {
                source: d.get_str("source").map_err(|_| corrupt("source"))?.to_string(),
                received_at: d
                    .get_datetime("receivedAt")
                    .map_err(|_| corrupt("receivedAt"))?
                    .to_chrono(),
                sender: d.get_str("sender").ok().map(str::to_string),
                transport: d
                    .get_str("transport")
                    .ok()
                    .and_then(|t| serde_json::from_value(Value::String(t.to_string())).ok())
                    .unwrap_or_default(),
                headers: d
                    .get_array("headers")
                    .map(|a| {
                        a.iter()
                            .filter_map(|h| match h.as_array()?.as_slice() {
                                [Bson::String(n), Bson::String(v)] => Some((n.clone(), v.clone())),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                origin: d.get_str("origin").ok().map(str::to_string),
                mapper: d.get_str("mapper").ok().map(str::to_string),
                error: d.get_str("error").unwrap_or_default().to_string(),
                body: self.body_of(&d).await?,
            };
            out.push((id, letter));
        }
        Ok(out)
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let mut filter = Document::new();
        match q.scope.reach(q.tenant.as_deref()) {
            Some(tenants) if tenants.is_empty() => {
                return Ok(Page {
                    records: Vec::new(),
                    next: None,
                });
            }
            Some(tenants) => {
                filter.insert("tenantSlug", tenant_filter(tenants));
            }
            None => {}
        }
        if let Some(s) = &q.source {
            filter.insert("source", s);
        }
        match &q.action {
            Some(ActionFilter::Exact(a)) => {
                filter.insert("action", a);
            }
            Some(ActionFilter::Prefix(p)) => {
                filter.insert("action", doc! { "$gte": p, "$lt": format!("{p}\u{10FFFF}") });
            }
            None => {}
        }
        let mut all = Vec::new();
        if let Some(a) = &q.actor {
            all.push(doc! { "$or": [ { "actorId": a }, { "actorName": a }, { "actorEmail": a } ] });
        }
        if let Some(ip) = &q.ip {
            filter.insert("ip", ip);
        }
        if let Some(outcome) = &q.outcome {
            filter.insert("outcome", outcome);
        }
        let mut at = Document::new();
        if let Some(since) = &q.since {
            at.insert("$gte", bson::DateTime::from_chrono(*since));
        }
        if let Some(until) = &q.until {
            at.insert("$lt", bson::DateTime::from_chrono(*until));
        }
        if !at.is_empty() {
            filter.insert("at", at);
        }
        if let Some(text) = &q.text {
            let re = Bson::RegularExpression(bson::Regex {
                pattern: regex_escape(text),
                options: "i".into(),
            });
            let fields = ["actorId", "actorName", "actorEmail", "targetId", "targetName"];
            let any: Vec<Document> = fields.iter().map(|f| doc! { *f: re.clone() }).collect();
            all.push(doc! { "$or": any });
        }
        if let Some(after) = &q.after {
            let id = ObjectId::parse_str(&after.id)
                .map_err(|_| StoreError::InvalidInput("parameter `cursor` is not a cursor this API returned".into()))?;
            let at = bson::DateTime::from_millis(after.at.div_euclid(1000));
            all.push(doc! { "$or": [ { "at": { "$lt": at } }, { "at": at, "_id": { "$lt": id } } ] });
        }
        if !all.is_empty() {
            filter.insert("$and", all);
        }
        let mut cursor = self
            .events
            .find(filter)
            .sort(doc! { "at": -1, "_id": -1 })
            // No limit: foreign documents are walked past (see `page`);
            // batches of a page's size, and the read budget, bound the walk.
            .batch_size(q.limit as u32 + 1)
            .max_time(super::READ_BUDGET)
            .await
            .map_err(read_failed)?;
        let mut page = PageCollector::new(q.limit, &self.foreign);
        while let Some(d) = cursor.try_next().await.map_err(read_failed)? {
            if page.offer(&d)? == Flow::Full {
                break;
            }
        }
        let mut records = page.records;
        let next = if records.len() > q.limit {
            records.truncate(q.limit);
            records.last().map(|r| PageCursor {
                at: super::micros(&r.record.at),
                id: r.id.clone(),
                scope: String::new(),
            })
        } else {
            None
        };
        Ok(Page { records, next })
    }

    async fn get(&self, id: &str, scope: &TenantScope) -> Result<Option<Record>, StoreError> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(None);
        };
        let mut filter = doc! { "_id": oid };
        if let Some(tenants) = scope.reach(None) {
            filter.insert("tenantSlug", tenant_filter(tenants));
        }
        let found = match self.events.find_one(filter.clone()).await.map_err(unavailable)? {
            Some(d) => Some(d),
            None => self.superseded.find_one(filter).await.map_err(unavailable)?,
        };
        // A document this service cannot read is not one of its records.
        Ok(found.as_ref().and_then(|d| doc_to_record(d).ok()))
    }

    async fn lineage(&self, id: &str) -> Result<super::Lineage, StoreError> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(super::Lineage::default());
        };
        let kept = self
            .superseded
            .find_one(doc! { "_id": oid })
            .await
            .map_err(unavailable)?;
        let superseded_by = kept.and_then(|d| d.get_object_id("supersededBy").ok().map(|o| o.to_hex()));
        let supersedes: Vec<Document> = self
            .superseded
            .find(doc! { "supersededBy": oid })
            .projection(doc! { "_id": 1 })
            .limit(100)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(super::Lineage {
            superseded_by,
            supersedes: supersedes
                .iter()
                .filter_map(|d| d.get_object_id("_id").ok().map(|o| o.to_hex()))
                .collect(),
        })
    }

    async fn load_checkpoint(&self, source: &str) -> Result<Option<Value>, StoreError> {
        let found = self
            .cursors
            .find_one(doc! { "_id": source })
            .await
            .map_err(unavailable)?;
        // A document with a lease's fence but no cursor yet: no checkpoint.
        let Some(d) = found.filter(|d| d.contains_key("cursor")) else {
            return Ok(None);
        };
        let text = d
            .get_str("cursor")
            .map_err(|e| StoreError::corrupt_because(format!("the checkpoint of {source}"), e))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::corrupt_because(format!("the checkpoint of {source}"), e))
    }

    /// The platform's tenant slugs: the `slug` field of the `tenants` collection.
    async fn tenant_slugs(&self) -> Result<Vec<String>, StoreError> {
        let values = self
            .db
            .collection::<Document>("tenants")
            .distinct("slug", doc! {})
            .await
            .map_err(unavailable)?;
        Ok(values
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// In `_id` order: ObjectIds grow with time and, within one process,
    /// with a counter, so a single service streams in commit order; with
    /// several replicas writing in the same second, a live reader may miss
    /// a record of the other replica (it stays on the timeline).
    async fn committed_after(&self, after: Option<&str>, limit: usize) -> Result<Committed, StoreError> {
        let docs = page_after(
            &self.events,
            doc! { "_id": { "$type": "objectId" } },
            after,
            "record",
            limit,
        )
        .await?;
        Ok(Committed {
            position: docs
                .last()
                .and_then(|d| d.get_object_id("_id").ok())
                .map(|o| o.to_hex()),
            // A document that is not ours is passed over, as pages do.
            records: docs.iter().filter_map(|d| doc_to_record(d).ok()).collect(),
        })
    }

    async fn last_commit(&self) -> Result<Option<String>, StoreError> {
        let newest = self
            .events
            .find_one(doc! { "_id": { "$type": "objectId" } })
            .sort(doc! { "_id": -1 })
            .max_time(super::READ_BUDGET)
            .await
            .map_err(read_failed)?;
        Ok(newest.and_then(|d| d.get_object_id("_id").ok()).map(|o| o.to_hex()))
    }

    async fn overview(&self, q: &Query, bucket_micros: i64) -> Result<Overview, StoreError> {
        overview::run(self, q, bucket_micros).await
    }

    fn foreign_skipped(&self) -> u64 {
        self.foreign.skipped()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// The `tenantSlug` condition for the tenants a read may reach (a missing or
/// null tenant never matches it).
fn tenant_filter(tenants: Vec<String>) -> Bson {
    match <[String; 1]>::try_from(tenants) {
        Ok([one]) => Bson::String(one),
        Err(many) => Bson::Document(doc! { "$in": many }),
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn a_bare_uri_gets_durable_writes_and_short_timeouts() {
        let options = client_options("mongodb://db.example:27017/", pool_for(256))
            .await
            .unwrap();
        assert_eq!(options.max_pool_size, Some(128));
        assert_eq!(options.server_selection_timeout, Some(SERVER_SELECTION_TIMEOUT));
        assert_eq!(options.connect_timeout, Some(CONNECT_TIMEOUT));
        let concern = options.write_concern.unwrap();
        assert_eq!(concern.w, Some(Acknowledgment::Majority));
        assert_eq!(concern.journal, Some(true));
    }

    #[tokio::test]
    async fn what_the_uri_says_is_kept() {
        let options = client_options(
            "mongodb://db.example:27017/?w=1&serverSelectionTimeoutMS=5000&maxPoolSize=7",
            pool_for(256),
        )
        .await
        .unwrap();
        assert_eq!(options.max_pool_size, Some(7));
        assert_eq!(
            options.server_selection_timeout,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(options.write_concern.unwrap().w, Some(Acknowledgment::Nodes(1)));
    }
}

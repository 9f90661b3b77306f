//! The one ingest pipeline: map a delivery, normalise its events, write them
//! (with the checkpoint that covers them), count, and keep what cannot be
//! mapped as a dead letter. Every source and replay goes through here; a
//! source only turns the outside world into deliveries and checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::event::{Delivery, FileLines, PollPage, Transport};

use super::Tenants;
use super::normalise::{self, Received};
use super::tenants::ActorTenants;
use crate::runtime::{MapError, MapOutput, MapperId, Runtime};
use crate::store::{
    Checkpoint, CheckpointError, CheckpointState, Commit, DeadLetter, NewRecord, Store, StoreError, WriteSummary,
};
use crate::telemetry::Telemetry;

/// The pipeline of one service: cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    store: Store,
    runtime: Runtime,
    tenants: Tenants,
    telemetry: Telemetry,
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Per source, where an actor's tenant is looked up for records no hint placed.
    actor_tenants: Arc<BTreeMap<String, Arc<dyn ActorTenants>>>,
    /// Records the store refused that were kept as dead letters lately: a
    /// poller's overlap window reads the same event again every tick, and
    /// it is kept once.
    refused_kept: Arc<std::sync::Mutex<RecentlyKept>>,
}

/// The keys of the last [`RecentlyKept::CAPACITY`] refused records kept.
#[derive(Default)]
struct RecentlyKept(std::collections::VecDeque<[u8; 32]>);

impl RecentlyKept {
    const CAPACITY: usize = 4096;

    /// The key of a refused record: its source and external id, or its
    /// original when it has none (the arrival time differs on a re-read).
    fn key(source: &str, record: &NewRecord) -> [u8; 32] {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(source.as_bytes());
        hash.update([0]);
        match &record.external_id {
            Some(id) => hash.update(id.as_bytes()),
            None => hash.update(record.metadata.get().as_bytes()),
        }
        hash.finalize().into()
    }

    /// Forgets `key` (keeping it failed: the next refusal tries again).
    fn forget(&mut self, key: &[u8; 32]) {
        self.0.retain(|k| k != key);
    }

    /// Whether `key` was kept already; remembers it if not.
    fn seen(&mut self, key: [u8; 32]) -> bool {
        if self.0.contains(&key) {
            return true;
        }
        if self.0.len() == Self::CAPACITY {
            self.0.pop_front();
        }
        self.0.push_back(key);
        false
    }
}

/// One delivery, mapped and normalised.
#[derive(Debug)]
pub struct Mapped {
    /// The records, in the order the mapper gave them.
    pub records: Vec<NewRecord>,
    /// For each record, whether its time is the event's own (false: the
    /// event had no usable time and the arrival time stands in).
    pub event_times: Vec<bool>,
    /// Poll deliveries: what the page says about its list.
    pub poll: Option<PollPage>,
    /// The mapper version that produced them.
    pub mapper: MapperId,
}

/// What became of one delivery.
#[derive(Debug)]
pub enum Delivered {
    /// Its records are durable.
    Written {
        /// Records the delivery mapped to.
        received: usize,
        /// What the store did with them.
        summary: WriteSummary,
    },
    /// The mapper could not map it; it is kept (durably) for re-mapping.
    DeadLettered {
        /// The dead letter's id.
        id: String,
        /// Why it could not be mapped.
        error: MapError,
    },
    /// No mapper instance was free: nothing was mapped or stored; the
    /// delivery is to be sent again.
    Busy(MapError),
}

/// Why a source cannot resume from its checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The store did not answer; retry later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The checkpoint is not one this version reads: fatal for the source.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl Pipeline {
    /// A pipeline writing to `store` with the mappers of `runtime`.
    pub fn new(store: Store, runtime: Runtime, tenants: Tenants, telemetry: Telemetry) -> Pipeline {
        Pipeline {
            store,
            runtime,
            tenants,
            telemetry,
            commits: Arc::new(tokio::sync::watch::channel(0).0),
            actor_tenants: Arc::default(),
            refused_kept: Arc::default(),
        }
    }

    /// Records of `source` that no tenant hint placed get the tenant of
    /// their actor from `lookup` before they are written, whichever way
    /// they arrived (pushed, polled or re-mapped): one lookup, one cache.
    pub fn with_actor_tenants(mut self, source: &str, lookup: Arc<dyn ActorTenants>) -> Pipeline {
        Arc::make_mut(&mut self.actor_tenants).insert(source.to_string(), lookup);
        self
    }

    /// Changes each time a write of this pipeline committed new records
    /// (the live stream wakes on it; the value is a count of such writes).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The store records go to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The mappers.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The known tenant slugs.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// The service's metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Maps `delivery` with `mapper` on the calling thread (which may block
    /// for the mapper's deadline) and normalises its events.
    pub fn map_blocking(&self, mapper: &str, received: &Received, delivery: &Delivery) -> Result<Mapped, MapError> {
        let started = Instant::now();
        let result = self.runtime.map_blocking(mapper, delivery);
        self.telemetry
            .source(&received.source)
            .mapper_seconds
            .observe(started.elapsed());
        result.map(|output| self.normalise(received, output))
    }

    /// Maps several lines of one file with `mapper` in one call on the
    /// calling thread: one normalised result per line, in order. `None`
    /// when the mapper takes one line per call (map each with
    /// [`Pipeline::map_blocking`]); an error when the call itself failed.
    pub fn map_lines_blocking(
        &self,
        mapper: &str,
        received: &Received,
        lines: &FileLines,
    ) -> Option<Result<Vec<Result<Mapped, MapError>>, MapError>> {
        let started = Instant::now();
        let answers = self.runtime.map_lines_blocking(mapper, lines);
        self.telemetry
            .source(&received.source)
            .mapper_seconds
            .observe(started.elapsed());
        Some(answers?.map(|all| {
            all.into_iter()
                .map(|a| a.map(|output| self.normalise(received, output)))
                .collect()
        }))
    }

    /// [`Pipeline::map_blocking`] on the blocking pool, so a slow mapper never
    /// holds an async worker (small deliveries to a built-in mapper are
    /// mapped in place: [`Runtime::maps_inline`]); hands the delivery back
    /// for a dead letter.
    pub async fn map(
        &self,
        mapper: &str,
        received: &Received,
        delivery: Delivery,
    ) -> (Delivery, Result<Mapped, MapError>) {
        if self.runtime.maps_inline(mapper, delivery.body.len()) {
            let result = self.map_blocking(mapper, received, &delivery);
            return (delivery, result);
        }
        let (pipeline, mapper, received) = (self.clone(), mapper.to_string(), received.clone());
        let mapping = tokio::task::spawn_blocking(move || {
            let result = pipeline.map_blocking(&mapper, &received, &delivery);
            (delivery, result)
        });
        match mapping.await {
            Ok(done) => done,
            // A panic in the host's own code is a bug: let it surface.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn normalise(&self, received: &Received, output: MapOutput) -> Mapped {
        let (mapper, poll) = (output.mapper.clone(), output.mapped.poll);
        let (records, event_times) = normalise::records(received, output, &self.tenants);
        Mapped {
            records,
            event_times,
            poll,
            mapper,
        }
    }

    /// Writes `records` of `source` and what `commit` names, after giving
    /// records no hint placed their actor's tenant; once durable, counts
    /// them, as arrivals `via` a transport when they arrived (not when
    /// they were re-mapped or are the service's own). The only way records
    /// reach the store.
    pub async fn write(
        &self,
        source: &str,
        via: Option<Transport>,
        mut records: Vec<NewRecord>,
        commit: Commit,
    ) -> Result<WriteSummary, StoreError> {
        self.infer_tenants(source, &mut records).await;
        let count = records.len();
        // The host puts the arrival time where an event had none of its own.
        let event_times: Vec<_> = match via {
            Some(_) => records
                .iter()
                .map(|r| (r.at != r.received_at).then_some(r.at))
                .collect(),
            None => Vec::new(),
        };
        let started = Instant::now();
        let written = self.store.write(records, commit).await;
        self.telemetry.store_write(started.elapsed());
        let summary = written?;
        for refused in &summary.refused {
            self.keep_refused(source, via, count, refused).await?;
        }
        self.telemetry.source(source).wrote(count, &summary);
        if let Some(via) = via {
            self.telemetry.arrived(source, via, &event_times, &summary);
        }
        if summary.inserted > 0 {
            self.commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(summary)
    }

    /// Keeps a record the store refused as a dead letter of its own, once
    /// however often it is read again. Before the answer (or the cursor
    /// moving on): the 2xx covers it; failing here fails the write, whose
    /// retry finds the stored records as duplicates.
    async fn keep_refused(
        &self,
        source: &str,
        via: Option<Transport>,
        batch: usize,
        refused: &crate::store::Refused,
    ) -> Result<(), StoreError> {
        let key = RecentlyKept::key(source, &refused.record);
        let kept = || self.refused_kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept().seen(key) {
            return Ok(());
        }
        if let Err(e) = self.keep(normalise::refused_record(source, via, batch, refused)).await {
            kept().forget(&key);
            return Err(e);
        }
        Ok(())
    }

    async fn infer_tenants(&self, source: &str, records: &mut [NewRecord]) {
        let Some(lookup) = self.actor_tenants.get(source) else {
            return;
        };
        if self.tenants.is_empty() {
            return;
        }
        for record in records.iter_mut().filter(|r| r.tenant_slug.is_none()) {
            if let Some(id) = record.actor_id.as_deref() {
                record.tenant_slug = lookup.tenant_of(id, &self.tenants).await;
            }
        }
    }

    /// Saves a source's checkpoint on its own (nothing new to write with it).
    pub async fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let source = checkpoint.source.clone();
        self.write(&source, None, Vec::new(), Commit::Checkpoint(checkpoint))
            .await
            .map(|_| ())
    }

    /// The dead letter for a delivery `error` stopped (not stored yet).
    pub fn dead_letter(received: &Received, delivery: Delivery, error: &MapError) -> DeadLetter {
        normalise::dead_letter(received, delivery, error)
    }

    /// A dead letter for a delivery the host would not hand to a mapper
    /// (an overlong tailed line): kept with `why`, no mapper named.
    pub fn refused_letter(received: &Received, delivery: Delivery, why: String) -> DeadLetter {
        normalise::letter(received, delivery, None, why)
    }

    /// Stores a dead letter and counts it; returns its id.
    pub async fn keep(&self, letter: DeadLetter) -> Result<String, StoreError> {
        let (source, mapper, error) = (letter.source.clone(), letter.mapper.clone(), letter.error.clone());
        let id = self.store.dead_letter(letter).await?;
        self.telemetry
            .source(&source)
            .dead_lettered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(source = %source, mapper = ?mapper, error = %error, dead_letter = %id, "delivery kept as a dead letter for re-mapping");
        Ok(id)
    }

    /// The whole way for a delivery nothing else depends on (a webhook
    /// body): mapped and written, kept as a dead letter, or (busy) handed
    /// back untouched.
    pub async fn deliver(&self, mapper: &str, received: Received, delivery: Delivery) -> Result<Delivered, StoreError> {
        match self.map(mapper, &received, delivery).await {
            (delivery, Ok(mapped)) => {
                let received_count = mapped.records.len();
                let via = Some(delivery.transport);
                let summary = self
                    .write(&received.source, via, mapped.records, Commit::Records)
                    .await?;
                Ok(Delivered::Written {
                    received: received_count,
                    summary,
                })
            }
            (_, Err(error)) if error.is_transient() => Ok(Delivered::Busy(error)),
            (delivery, Err(error)) => {
                let id = self.keep(Pipeline::dead_letter(&received, delivery, &error)).await?;
                Ok(Delivered::DeadLettered { id, error })
            }
        }
    }

    /// Where `source` resumes: its stored checkpoint, if it has one.
    pub async fn resume<T: CheckpointState>(&self, source: &str) -> Result<Option<T>, ResumeError> {
        match self.store.load_checkpoint(source).await? {
            None => Ok(None),
            Some(stored) => Ok(Some(Checkpoint::read(source, stored)?)),
        }
    }
}

//! A store that fails every operation while its switch is on: for the tests
//! that prove nothing answered is lost when the store goes away. It can also
//! refuse single records, as MongoDB refuses one it cannot hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit_ingest::store::{
    AuditStore, Claim, Commit, Committed, DeadLetter, Expiry, NewRecord, Overview, Page, Query, Record, Refused, Store,
    StoreError, TenantScope, WriteSummary,
};
use serde_json::Value;

/// Turns the failures on and off, and counts the timeline pages read
/// through it (so a test can see how far a reader ran ahead).
#[derive(Debug, Default)]
pub struct FaultSwitch(
    AtomicBool,
    std::sync::atomic::AtomicU64,
    std::sync::Mutex<Option<String>>,
);

impl FaultSwitch {
    /// Timeline pages (`query` calls) asked of the store so far.
    pub fn pages_read(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }

    /// From now on, records whose original contains `marker` are refused
    /// one by one (the rest of their batch is written).
    pub fn refuse_records_containing(&self, marker: &str) {
        *self.2.lock().unwrap() = Some(marker.to_string());
    }

    /// Turns failures on or off.
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.0.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("fault injected"))
        } else {
            Ok(())
        }
    }
}

/// `inner` behind a switch.
pub struct FaultyStore {
    inner: Store,
    switch: Arc<FaultSwitch>,
}

/// `store` behind a new fault switch.
pub fn with_fault_switch(store: Store) -> (Store, Arc<FaultSwitch>) {
    let switch = Arc::new(FaultSwitch::default());
    (
        Arc::new(FaultyStore {
            inner: store,
            switch: switch.clone(),
        }),
        switch,
    )
}

#[async_trait::async_trait]
impl AuditStore for FaultyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn write(&self, batch: Vec<NewRecord>, commit: Commit) -> Result<WriteSummary, StoreError> {
        self.switch.check()?;
        let marker = self.switch.2.lock().unwrap().clone();
        let Some(marker) = marker else {
            return self.inner.write(batch, commit).await;
        };
        let (mut kept, mut refused, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        for (position, record) in batch.into_iter().enumerate() {
            if record.metadata.get().contains(&marker) {
                refused.push(Refused {
                    position: position as u32,
                    reason: "the test store refuses it".into(),
                    record,
                });
            } else {
                positions.push(position as u32);
                kept.push(record);
            }
        }
        let mut summary = self.inner.write(kept, commit).await?;
        summary.repeated = summary.repeated.iter().map(|p| positions[*p as usize]).collect();
        summary.refused = refused;
        Ok(summary)
    }
    async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        self.switch.check()?;
        self.inner.dead_letter(letter).await
    }
    async fn dead_letters_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        self.switch.check()?;
        self.inner.dead_letters_after(after, limit).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.switch.1.fetch_add(1, Ordering::SeqCst);
        self.switch.check()?;
        self.inner.query(query).await
    }
    async fn get(&self, id: &str, scope: &TenantScope) -> Result<Option<Record>, StoreError> {
        self.switch.check()?;
        self.inner.get(id, scope).await
    }
    async fn load_checkpoint(&self, source: &str) -> Result<Option<Value>, StoreError> {
        self.switch.check()?;
        self.inner.load_checkpoint(source).await
    }
    async fn unrecognised_records(&self, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.switch.check()?;
        self.inner.unrecognised_records(after, limit).await
    }
    async fn tenant_slugs(&self) -> Result<Vec<String>, StoreError> {
        self.switch.check()?;
        self.inner.tenant_slugs().await
    }
    async fn committed_after(&self, after: Option<&str>, limit: usize) -> Result<Committed, StoreError> {
        self.switch.check()?;
        self.inner.committed_after(after, limit).await
    }
    async fn last_commit(&self) -> Result<Option<String>, StoreError> {
        self.switch.check()?;
        self.inner.last_commit().await
    }
    async fn overview(&self, query: &Query, bucket_micros: i64) -> Result<Overview, StoreError> {
        self.switch.check()?;
        self.inner.overview(query, bucket_micros).await
    }
    async fn expiring(&self, expiry: &Expiry, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.switch.check()?;
        self.inner.expiring(expiry, limit).await
    }
    async fn expire(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        self.switch.check()?;
        self.inner.expire(ids).await
    }
    async fn expire_dead_letters(&self, expiry: &Expiry, limit: usize) -> Result<u64, StoreError> {
        self.switch.check()?;
        self.inner.expire_dead_letters(expiry, limit).await
    }
    async fn take_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<Claim, StoreError> {
        self.switch.check()?;
        self.inner.take_lease(name, owner, ttl).await
    }
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.switch.check()?;
        self.inner.release_lease(name, owner).await
    }
    fn foreign_skipped(&self) -> u64 {
        self.inner.foreign_skipped()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.switch.check()?;
        self.inner.ping().await
    }
}

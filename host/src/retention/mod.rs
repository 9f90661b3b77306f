//! Retention: records (and dead letters) older than their source's period
//! are deleted in the background, in small batches, for both backends.
//!
//! A pass runs at start and every `interval_secs`. It asks the store for
//! up to `batch_size` due records, optionally appends them to the export
//! file of the pass (gzip NDJSON, synced before anything is deleted),
//! deletes exactly those, rests `pause_ms`, and goes on until none is due;
//! then the same for dead letters. In the embedded store each deletion is
//! a chained entry, and once every record an old stretch of the chain
//! wrote is gone the chain's own prefix is cut at a signed digest and a
//! new digest is signed at once, so verification keeps working (see
//! `docs/evidence.md`). Each pass ends with one log line and moves the
//! `audit_ingest_retention_*` metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::evidence::Digests;
use crate::export::{Encoder, Format};
use crate::store::{Expiry, Store, StoreError};
use crate::telemetry::Telemetry;

/// `[retention]`: how long records are kept. Without `retention_days`
/// (globally or for a source) records are kept for ever.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Days a record is kept after it happened, for every source without a
    /// period of its own (`AUDIT_RETENTION_DAYS`); none: for ever.
    pub retention_days: Option<u32>,
    /// Periods of single sources (`[retention.sources.<name>]`), which
    /// take precedence over `retention_days`.
    pub sources: BTreeMap<String, SourceRetention>,
    /// Seconds between passes (one runs at start).
    pub interval_secs: u64,
    /// Records deleted per batch (one short write each).
    pub batch_size: usize,
    /// Milliseconds to rest between batches, so ingest goes first.
    pub pause_ms: u64,
    /// Where to write what a pass deletes before it is deleted
    /// (`expired-<time>.ndjson.gz`, one file per pass); none: no copy.
    pub export_dir: Option<PathBuf>,
}

/// `[retention.sources.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRetention {
    /// Days this source's records are kept.
    pub retention_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention_days: None,
            sources: BTreeMap::new(),
            interval_secs: 3600,
            batch_size: 1000,
            pause_ms: 20,
            export_dir: None,
        }
    }
}

/// How long the retention lease lasts unless renewed (renewed every third
/// while a pass runs).
const LEASE: Duration = Duration::from_secs(120);

/// The longest period accepted (100 years).
const MAX_DAYS: u32 = 36_500;

impl Config {
    /// Checks periods and bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let days = |key: String, d: u32| {
            if (1..=MAX_DAYS).contains(&d) {
                Ok(())
            } else {
                Err(ConfigError::new(key, format!("expected 1 to {MAX_DAYS} days")))
            }
        };
        if let Some(d) = self.retention_days {
            days("retention.retention_days".into(), d)?;
        }
        for (name, s) in &self.sources {
            days(format!("retention.sources.{name}.retention_days"), s.retention_days)?;
        }
        if !(60..=86_400).contains(&self.interval_secs) {
            return Err(ConfigError::new(
                "retention.interval_secs",
                "expected 60 to 86400 seconds",
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(ConfigError::new("retention.batch_size", "expected 1 to 10000 records"));
        }
        if self.pause_ms > 10_000 {
            return Err(ConfigError::new("retention.pause_ms", "expected at most 10000 ms"));
        }
        Ok(())
    }

    /// Whether any record ever expires.
    pub fn is_on(&self) -> bool {
        self.retention_days.is_some() || !self.sources.is_empty()
    }

    /// What is due at `now`.
    pub fn expiry(&self, now: DateTime<Utc>) -> Expiry {
        let before = |days: u32| now - chrono::Duration::days(i64::from(days));
        Expiry {
            per_source: self
                .sources
                .iter()
                .map(|(name, s)| (name.clone(), before(s.retention_days)))
                .collect(),
            otherwise: self.retention_days.map(before),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    /// Records deleted.
    pub records: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Where the deleted records were copied, if they were.
    pub export_file: Option<PathBuf>,
    /// The chain entry the store's chain now starts after, if the pass cut it.
    pub chain_cut: Option<i64>,
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The store failed; what was deleted until then stays deleted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The export file could not be written: nothing more is deleted.
    #[error("could not write the export of expired records to {file}: {cause}")]
    Export {
        /// The file.
        file: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// Runs retention against one store.
pub struct Retention {
    config: Config,
    store: Store,
    telemetry: Telemetry,
    digests: Option<Arc<Digests>>,
}

impl Retention {
    /// Retention of `store` as `config` says; `digests` signs the chain
    /// after a cut.
    pub fn new(config: Config, store: Store, telemetry: Telemetry, digests: Option<Arc<Digests>>) -> Retention {
        Retention {
            config,
            store,
            telemetry,
            digests,
        }
    }

    /// One pass now, its outcome logged and counted.
    async fn pass_logged(&self) {
        let started = std::time::Instant::now();
        let metrics = self.telemetry.retention();
        match self.pass(Utc::now()).await {
            Ok(report) => {
                metrics.passed(true);
                tracing::info!(
                    records = report.records,
                    dead_letters = report.dead_letters,
                    export = ?report.export_file,
                    chain_cut_after = ?report.chain_cut,
                    took_ms = started.elapsed().as_millis() as u64,
                    "retention pass: deleted {} records and {} dead letters past their period",
                    report.records,
                    report.dead_letters
                );
            }
            Err(e) => {
                metrics.passed(false);
                tracing::warn!(error = %e, "retention pass stopped; the next one goes on from there");
            }
        }
    }

    /// One pass at `now`: everything due, batch by batch.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<PassReport, PassError> {
        let expiry = self.config.expiry(now);
        let mut report = PassReport::default();
        if expiry.is_empty() {
            return Ok(report);
        }
        let pause = Duration::from_millis(self.config.pause_ms);
        let mut export = self.config.export_dir.as_deref().map(|dir| ExportFile::new(dir, now));
        let metrics = self.telemetry.retention();
        loop {
            let due = self.store.expiring(&expiry, self.config.batch_size).await?;
            if due.is_empty() {
                break;
            }
            if let Some(file) = &mut export {
                let records = due.clone();
                file.append(records).await?;
                report.export_file = Some(file.path.clone());
            }
            let ids: Vec<String> = due.into_iter().map(|r| r.id).collect();
            let deleted = self.store.expire(ids).await?;
            report.records += deleted;
            metrics.records_deleted(deleted);
            if deleted == 0 {
                // Due, yet nothing to delete: another writer took them; the
                // next pass looks again rather than spin here.
                break;
            }
            tokio::time::sleep(pause).await;
        }
        loop {
            let deleted = self.store.expire_dead_letters(&expiry, self.config.batch_size).await?;
            report.dead_letters += deleted;
            metrics.dead_letters_deleted(deleted);
            if deleted == 0 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        report.chain_cut = self.store.cut_chain().await?;
        if report.chain_cut.is_some()
            && let Some(digests) = &self.digests
            && let Err(e) = digests.make().await
        {
            tracing::warn!(error = %e, "retention cut the hash chain but could not sign a digest of it; the next interval will");
        }
        Ok(report)
    }

    /// A pass now and every interval, until the task is dropped.
    pub async fn run(self, instance: String) {
        let every = Duration::from_secs(self.config.interval_secs);
        // Of several instances on one store, one runs the passes: deleting
        // the same records twice is harmless, exporting them twice is not.
        let lease = crate::lease::Lease::new(self.store.clone(), crate::store::lease::RETENTION, &instance, LEASE);
        loop {
            let held = match lease.try_take().await {
                Ok(Ok(held)) => Some(held),
                Ok(Err(elsewhere)) => {
                    tracing::info!(holder = %elsewhere.owner, "retention: another instance runs this pass");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention: cannot take the retention lease; the next pass tries again");
                    None
                }
            };
            if let Some(held) = held {
                self.pass_logged().await;
                held.release().await;
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The copy of what one pass deletes: gzip members appended one batch at a
/// time and synced, so the file is complete up to the last batch deleted.
struct ExportFile {
    path: PathBuf,
}

impl ExportFile {
    fn new(dir: &Path, now: DateTime<Utc>) -> ExportFile {
        ExportFile {
            path: dir.join(format!("expired-{}.ndjson.gz", now.format("%Y%m%dT%H%M%S%.6fZ"))),
        }
    }

    async fn append(&mut self, records: Vec<crate::store::Record>) -> Result<(), PassError> {
        let path = self.path.clone();
        let failed = |cause| PassError::Export {
            file: path.clone(),
            cause,
        };
        let file = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut encoder = Encoder::new(Format::Ndjson, true);
            for r in &records {
                encoder.push(r);
            }
            let mut bytes = encoder.take();
            bytes.extend(encoder.finish());
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&file)?;
            out.write_all(&bytes)?;
            out.sync_all()
        })
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .map_err(failed)
    }
}

//! Turning a mapper's output into store records: the one place where the
//! host normalises times, tenants and metadata, whatever the source.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use audit_guest_sdk::{AuditEvent, Outcome, RawJson};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::runtime::{MapError, MapOutput};
use crate::store::{DeadLetter, NewRecord};

/// What the host knows about a delivery besides its bytes.
#[derive(Debug, Clone)]
pub struct Received {
    /// The source name.
    pub source: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// Who sent it (a webhook sender's address), kept as metadata only.
    pub sender: Option<String>,
}

/// Tenant slugs an event may be attributed to: the configured ones plus,
/// with MongoDB, the platform's `tenants` collection (refreshed while running).
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    configured: Arc<BTreeSet<String>>,
    slugs: Arc<RwLock<BTreeSet<String>>>,
}

fn normalise(slugs: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    slugs.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect()
}

impl Tenants {
    /// From a list of slugs (case-insensitive).
    pub fn new(slugs: impl IntoIterator<Item = String>) -> Tenants {
        let configured = normalise(slugs);
        Tenants {
            slugs: Arc::new(RwLock::new(configured.clone())),
            configured: Arc::new(configured),
        }
    }

    /// Replaces the slugs learned from the store (the configured ones stay).
    pub fn set_learned(&self, learned: impl IntoIterator<Item = String>) {
        let mut all = normalise(learned);
        all.extend(self.configured.iter().cloned());
        *self.slugs.write().unwrap_or_else(|e| e.into_inner()) = all;
    }

    /// True when no tenant slug is known (nothing can be inferred).
    pub fn is_empty(&self) -> bool {
        self.slugs.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The slug a mapper's hint names, if it is a known tenant.
    pub fn resolve(&self, hint: Option<&str>) -> Option<String> {
        let hint = hint?.trim().to_lowercase();
        let slugs = self.slugs.read().unwrap_or_else(|e| e.into_inner());
        slugs.contains(&hint).then_some(hint)
    }

    /// Keeps the learned slugs in step with the store, every `every`.
    pub async fn follow(self, store: crate::store::Store, every: std::time::Duration) {
        let mut warned = false;
        loop {
            match store.tenant_slugs().await {
                Ok(slugs) => {
                    warned = false;
                    self.set_learned(slugs);
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cannot read the tenants collection; using the configured tenant slugs");
                }
                Err(_) => {}
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Converts every mapped event of one delivery into a record.
pub fn records(received: &Received, output: MapOutput, tenants: &Tenants) -> Vec<NewRecord> {
    let mapper = output.mapper.to_string();
    output
        .mapped
        .events
        .into_iter()
        .map(|e| record(received, e, &mapper, tenants))
        .collect()
}

/// What the host adds to the original event in `metadata`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    original: &'a RawJson,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    time_from_ingest: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurred_at_raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unrecognised: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_hint: Option<&'a str>,
}

fn record(received: &Received, e: AuditEvent, mapper: &str, tenants: &Tenants) -> NewRecord {
    let parsed = e
        .occurred_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    // No usable event time: use the ingest time and say so.
    let at = parsed.unwrap_or(received.at);
    let metadata = Metadata {
        original: &e.original,
        time_from_ingest: parsed.is_none(),
        occurred_at_raw: parsed.is_none().then_some(e.occurred_at.as_deref()).flatten(),
        sender: received.sender.as_deref(),
        unrecognised: e.unrecognised,
        tenant_hint: e.tenant_hint.as_deref(),
    };
    let metadata = RawJson::from_serialize(&metadata);
    let target = e.target.unwrap_or_default();
    NewRecord {
        source: received.source.clone(),
        action: e.action,
        at,
        received_at: received.at,
        actor_id: e.actor.id,
        actor_name: e.actor.name,
        actor_email: e.actor.email,
        ip: e.ip,
        target_type: target.kind,
        target_id: target.id,
        target_name: target.name,
        tenant_slug: tenants.resolve(e.tenant_hint.as_deref()),
        outcome: match e.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
        .to_string(),
        external_id: e.external_id,
        metadata,
        mapper: Some(mapper.to_string()),
    }
}

/// A delivery the mapper could not map, kept raw with the error and the mapper
/// version so it can be re-mapped later.
pub fn dead_letter(received: &Received, body: Vec<u8>, error: &MapError) -> DeadLetter {
    let mapper = match error {
        MapError::Rejected { mapper, .. } | MapError::Failed { mapper, .. } => Some(mapper.to_string()),
        MapError::NoMapper(_) => None,
    };
    DeadLetter {
        source: received.source.clone(),
        received_at: received.at,
        sender: received.sender.clone(),
        mapper,
        error: error.to_string(),
        body,
    }
}

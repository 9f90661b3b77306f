//! Turning a mapper's output into store records: the one place where the
//! host normalises times, tenants and metadata, whatever the source.

use std::collections::BTreeSet;

use audit_guest_sdk::{AuditEvent, Outcome};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::runtime::MapOutput;
use crate::store::NewRecord;

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

/// Tenant slugs an event may be attributed to.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    slugs: BTreeSet<String>,
}

impl Tenants {
    /// From a list of slugs (case-insensitive).
    pub fn new(slugs: impl IntoIterator<Item = String>) -> Tenants {
        Tenants {
            slugs: slugs.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect(),
        }
    }

    /// The slug a mapper's hint names, if it is a known tenant.
    pub fn resolve(&self, hint: Option<&str>) -> Option<String> {
        let hint = hint?.trim().to_lowercase();
        self.slugs.contains(&hint).then_some(hint)
    }
}

/// Converts every mapped event of one delivery into a record.
pub fn records(received: &Received, output: &MapOutput, tenants: &Tenants) -> Vec<NewRecord> {
    let mapper = output.mapper.to_string();
    output
        .mapped
        .events
        .iter()
        .map(|e| record(received, e, &mapper, tenants))
        .collect()
}

fn record(received: &Received, e: &AuditEvent, mapper: &str, tenants: &Tenants) -> NewRecord {
    let mut meta = Map::new();
    meta.insert("original".into(), e.original.clone());
    let parsed = e
        .occurred_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let at = match parsed {
        Some(at) => at,
        None => {
            // No usable event time: use the ingest time and say so.
            meta.insert("timeFromIngest".into(), json!(true));
            if let Some(raw) = &e.occurred_at {
                meta.insert("occurredAtRaw".into(), json!(raw));
            }
            received.at
        }
    };
    if let Some(sender) = &received.sender {
        meta.insert("sender".into(), json!(sender));
    }
    if e.unrecognised {
        meta.insert("unrecognised".into(), json!(true));
    }
    if let Some(hint) = &e.tenant_hint {
        meta.insert("tenantHint".into(), json!(hint));
    }
    let target = e.target.clone().unwrap_or_default();
    NewRecord {
        source: received.source.clone(),
        action: e.action.clone(),
        at,
        received_at: received.at,
        actor_id: e.actor.id.clone(),
        actor_name: e.actor.name.clone(),
        actor_email: e.actor.email.clone(),
        ip: e.ip.clone(),
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
        external_id: e.external_id.clone(),
        metadata: Value::Object(meta),
        mapper: Some(mapper.to_string()),
    }
}

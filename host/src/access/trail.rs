//! The service's own audit trail: every timeline search, record view,
//! replay and refused credential becomes a record of source
//! [`SOURCE`], in the same store and readable like any other source.
//!
//! Each record's external id is the request's id, so one request is one
//! record however often its write is tried. A tenant-scoped caller's record
//! carries its tenant (when it has exactly one), so a tenant's admins see
//! who read their records; every other access record is visible to
//! all-tenant readers only.

use std::net::IpAddr;

use chrono::Utc;
use serde_json::{Value, json};

use super::Caller;
use crate::event::RawJson;
use crate::store::{NewRecord, TenantScope};

/// The source name of the service's own records.
pub const SOURCE: &str = "audit-ingest";

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `GET /audit`.
    TimelineRead,
    /// `GET /audit/{id}`.
    RecordRead,
    /// `GET /audit/stream` opened (or refused).
    StreamRead,
    /// `GET /audit/stats`.
    StatsRead,
    /// `GET /audit/export`.
    Export,
    /// `GET /admin/dead-letters`.
    DeadLettersRead,
    /// `POST /admin/replay`.
    Replay,
    /// `GET /metrics` or `/readyz` details, when protected.
    MetricsRead,
    /// A credential was refused (401).
    AuthFailed,
    /// A valid credential without the scope the route needs (403).
    AccessDenied,
}

impl Act {
    /// The dotted action.
    pub fn action(self) -> &'static str {
        match self {
            Act::TimelineRead => "audit-ingest.timeline_read",
            Act::RecordRead => "audit-ingest.record_read",
            Act::StreamRead => "audit-ingest.stream_read",
            Act::StatsRead => "audit-ingest.stats_read",
            Act::Export => "audit-ingest.export",
            Act::DeadLettersRead => "audit-ingest.dead_letters_read",
            Act::Replay => "audit-ingest.replay",
            Act::MetricsRead => "audit-ingest.metrics_read",
            Act::AuthFailed => "audit-ingest.auth_failed",
            Act::AccessDenied => "audit-ingest.access_denied",
        }
    }
}

/// One access, as the API saw it.
pub struct Access<'a> {
    /// What was done.
    pub act: Act,
    /// The request's id (the record's external id).
    pub request_id: &'a str,
    /// Who, when authenticated.
    pub caller: Option<&'a Caller>,
    /// The client address.
    pub ip: Option<IpAddr>,
    /// `METHOD path`.
    pub request: String,
    /// The query string or parameters, as given.
    pub query: Option<&'a str>,
    /// The record read, when one was.
    pub target: Option<&'a str>,
    /// The answer's status code.
    pub status: u16,
    /// What else the answer said (records returned, why refused, ...).
    pub detail: Value,
}

/// A new request id: 128 random bits, hex.
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: a time-based id still differs per request.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = (nanos as u128 ^ (std::process::id() as u128) << 64).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The record of one access.
pub fn record(access: &Access<'_>) -> NewRecord {
    let now = Utc::now();
    let caller = access.caller;
    let tenant = caller.and_then(|c| match &c.grants.read {
        Some(TenantScope::Tenants(slugs)) if slugs.len() == 1 => slugs.first().cloned(),
        _ => None,
    });
    let metadata = json!({
        "request": {
            "id": access.request_id,
            "line": access.request,
            "query": access.query,
        },
        "caller": caller.map(|c| json!({
            "id": c.id,
            "name": c.name,
            "credential": c.credential.as_str(),
            "scopes": c.grants.describe(),
        })),
        "answer": { "status": access.status, "detail": access.detail },
    });
    NewRecord {
        source: SOURCE.into(),
        action: access.act.action().into(),
        at: now,
        received_at: now,
        actor_id: caller.map(|c| c.id.clone()),
        actor_name: caller.and_then(|c| c.name.clone()),
        actor_email: None,
        ip: access.ip.map(|ip| ip.to_canonical().to_string()),
        target_type: access.target.map(|_| "audit-record".to_string()),
        target_id: access.target.map(str::to_string),
        target_name: None,
        tenant_slug: tenant,
        outcome: if access.status < 400 { "success" } else { "failure" }.into(),
        external_id: Some(access.request_id.to_string()),
        metadata: RawJson::from_value(&metadata),
        mapper: None,
        unrecognised: false,
    }
}

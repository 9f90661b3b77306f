//! Turning a mapper's output into store records: the one place where the
//! host normalises times, tenants and metadata, whatever the source.

use crate::event::{Delivery, MappedEvent, RawJson, Transport};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Tenants;
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

impl Received {
    /// Something for `source` arriving now.
    pub fn now(source: &str, sender: Option<String>) -> Received {
        Received {
            source: source.to_string(),
            at: Utc::now(),
            sender,
        }
    }

    /// Lines of a file read now, for one `map-lines` call.
    pub fn file_lines(&self, origin: &str, lines: Vec<Vec<u8>>) -> crate::event::FileLines {
        crate::event::FileLines {
            source: self.source.clone(),
            received_at: self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            origin: Some(origin.to_string()),
            lines,
        }
    }

    /// The delivery a mapper gets for it: the one place a `Delivery` is made.
    pub fn delivery(
        &self,
        transport: Transport,
        headers: Vec<(String, String)>,
        origin: Option<String>,
        body: Vec<u8>,
    ) -> Delivery {
        Delivery {
            source: self.source.clone(),
            transport,
            received_at: self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            headers,
            origin,
            body,
        }
    }
}

/// Converts every mapped event of one delivery into a record; the flags say
/// which records carry the event's own time (the others, the arrival time).
pub(super) fn records(received: &Received, output: MapOutput, tenants: &Tenants) -> (Vec<NewRecord>, Vec<bool>) {
    let mapper = output.mapper.to_string();
    output
        .mapped
        .events
        .into_iter()
        .map(|e| record(received, e, &mapper, tenants))
        .unzip()
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

fn record(received: &Received, e: MappedEvent, mapper: &str, tenants: &Tenants) -> (NewRecord, bool) {
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
    let record = NewRecord {
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
        outcome: e.outcome.as_str().to_string(),
        external_id: e.external_id,
        metadata,
        mapper: Some(mapper.to_string()),
        unrecognised: e.unrecognised,
    };
    (record, parsed.is_some())
}

/// A delivery the mapper could not map, kept raw with the error, the mapper
/// version and how it arrived, so it can be re-mapped later as it was.
pub(super) fn dead_letter(received: &Received, delivery: Delivery, error: &MapError) -> DeadLetter {
    letter(
        received,
        delivery,
        error.mapper().map(ToString::to_string),
        error.to_string(),
    )
}

/// A mapped record the store cannot hold, kept as a dead letter of its
/// own: the record as JSON (its original inside `metadata`), why, and
/// where it was in its delivery's `batch` records.
pub(super) fn refused_record(
    source: &str,
    via: Option<crate::event::Transport>,
    batch: usize,
    refused: &crate::store::Refused,
) -> DeadLetter {
    DeadLetter {
        source: source.to_string(),
        received_at: refused.record.received_at,
        sender: None,
        transport: via.unwrap_or_default(),
        headers: Vec::new(),
        origin: Some(format!(
            "record {} of {batch} mapped from one delivery",
            refused.position + 1
        )),
        mapper: refused.record.mapper.clone(),
        error: format!(
            "the store cannot hold this record ({}); the rest of its delivery was stored; \
             the body is the mapped record, its original in metadata",
            refused.reason
        ),
        body: serde_json::to_vec(&refused.record).unwrap_or_default(),
    }
}

/// A delivery kept raw with why it was not mapped (`mapper`: the one that failed, if one was called).
pub(super) fn letter(received: &Received, delivery: Delivery, mapper: Option<String>, error: String) -> DeadLetter {
    DeadLetter {
        source: received.source.clone(),
        received_at: received.at,
        sender: received.sender.clone(),
        transport: delivery.transport,
        headers: delivery.headers,
        origin: delivery.origin,
        mapper,
        error,
        body: delivery.body,
    }
}

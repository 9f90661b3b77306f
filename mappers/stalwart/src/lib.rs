//! The Stalwart mail server mapper: turns a webhook batch
//! (`{"events":[{"id","createdAt","type","data"}]}`) into audit events.
//!
//! - [`verbs`]: which Stalwart event type feeds which `stalwart.*` verb;
//! - [`known_types`]: every type name Stalwart can send;
//! - [`identity`]: the deduplication key, which survives Stalwart's retries.
//!
//! The mapping table, in prose, is in this crate's README.md.

pub mod identity;
pub mod known_types;
pub mod verbs;

use audit_guest_sdk::fields::Object;
use audit_guest_sdk::json::event_slices;
use audit_guest_sdk::serde_json::value::RawValue;
use audit_guest_sdk::{AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, RawJson};

/// The Stalwart mapper.
pub struct Stalwart;

impl Mapper for Stalwart {
    fn describe() -> MapperInfo {
        MapperInfo {
            name: "stalwart".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: known_types::CURRENT
                .iter()
                .map(|(name, _)| *name)
                .chain(known_types::REMOVED_IN_0_16)
                .chain(known_types::LEGACY_0_8)
                .map(str::to_string)
                .collect(),
        }
    }

    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        // Each event's own bytes are kept as the original, byte for byte.
        let list = match event_slices(&delivery.body) {
            Some(list) => list,
            None => {
                delivery.json()?;
                return Err(MappingError::UnsupportedShape(
                    "expected an object with an `events` list".into(),
                ));
            }
        };
        let mut ids = identity::Occurrences::default();
        let mut events = Vec::with_capacity(list.len());
        for raw in list {
            // Each event's fields are read straight from its text: no tree.
            events.push(map_event(raw, &mut ids)?.original(RawJson::from_raw(raw)));
        }
        Ok(events.into())
    }
}

audit_guest_sdk::export_mapper!(Stalwart);

/// Maps one Stalwart event object.
fn map_event(raw: &RawValue, ids: &mut identity::Occurrences) -> Result<AuditEvent, MappingError> {
    let Some(event) = Object::of(raw) else {
        return Err(MappingError::UnsupportedShape(format!(
            "an event is not an object: {}",
            raw.get()
        )));
    };
    let typ = event
        .first_text(&["type", "eventType", "event"])
        .ok_or_else(|| MappingError::UnsupportedShape("an event has no `type`".into()))?;
    // Current format: fields under `data`. Legacy 0.8: typed fields beside `type`.
    let data = event.object("data").unwrap_or_else(|| event.clone());
    let verb = verbs::classify(&typ, &data);
    let at = event.first_text(&["createdAt", "timestamp", "time"]);

    let mut event = AuditEvent::new(format!("stalwart.{}", verb.name))
        .outcome(verb.outcome)
        .external_id(ids.key(at.as_deref(), &typ, &data));
    if verb.catch_all {
        event = event.unrecognised();
    }
    if let Some(at) = at {
        event = event.occurred_at(at);
    }
    if let Some(name) = data.first_text(&["accountName", "login", "account", "username", "user"]) {
        event = event.actor_name(name);
    }
    if let Some(id) = data.text("accountId") {
        event = event.actor_id(id);
    }
    if let Some(ip) = data.first_text(&["remoteIp", "remoteAddr", "ip"]) {
        event = event.ip(ip);
    }
    if let Some(domain) = event.actor.email.as_deref().and_then(|e| e.rsplit_once('@')) {
        let hint = domain.1.to_string();
        event = event.tenant_hint(hint);
    }
    Ok(with_target(event, verb.target, &data))
}

/// Fills the target from the fields that fit the kind of event.
fn with_target(event: AuditEvent, kind: verbs::TargetKind, data: &Object<'_>) -> AuditEvent {
    use verbs::TargetKind;
    match kind {
        TargetKind::Account => {
            let name = event.actor.name.clone();
            let id = event.actor.id.clone();
            if name.is_none() && id.is_none() {
                return event;
            }
            event.target("account", id, name)
        }
        TargetKind::Message => {
            let rcpt = data.texts("to");
            let id = data.first_text(&["messageId", "queueId"]);
            let name = if rcpt.is_empty() {
                data.first_text(&["from"])
            } else {
                Some(rcpt.join(", "))
            };
            if name.is_none() && id.is_none() {
                return event;
            }
            event.target("message", id, name)
        }
        TargetKind::Domain => match data.first_text(&["domain", "hostname"]) {
            Some(d) => event.target("domain", None, Some(d)),
            None => event,
        },
        TargetKind::Ip => match data.first_text(&["remoteIp", "ip"]) {
            Some(ip) => event.target("ip", None, Some(ip)),
            None => event,
        },
        TargetKind::None => event,
    }
}

audit_guest_sdk::golden_fixtures!(Stalwart, "stalwart");

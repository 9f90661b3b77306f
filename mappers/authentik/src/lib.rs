//! The Authentik mapper: turns a page of `GET /api/v3/events/events/`
//! (`{"pagination":{...},"results":[...],"autocomplete":{...}}`) into audit
//! events, and says which query fetches a page of that list newest first.
//! A webhook delivery is one notification push: the event as the shipped
//! body mapping (`notification-body-mapping.py`) sends it, the same fields
//! as in the list, so push and pull store the same record under the same
//! `pk`.
//!
//! The host's poller owns the walk (which pages, where it stops, the cursor);
//! this mapper only reads pages. Facts it relies on (authentik 2025.10 to
//! 2026.8): `ordering=-created` is honoured, pages are numbered and
//! `pagination.next` is the next page number or 0, `pagination.count` is the
//! size of the whole list, page sizes above 100 are clamped.

mod actions;

use actions::{Verb, verb_of};
use audit_guest_sdk::json::{event_slices, field, find_events, first_text, path, text, u64_exact};
use audit_guest_sdk::serde_json::Value;
use audit_guest_sdk::{
    AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, PageRequest, PollPage, QueryParam, RawJson,
    Transport,
};

/// The Authentik mapper.
pub struct Authentik;

/// Authentik clamps larger page sizes to this (since 2026.2; before, 100 was the default).
const MAX_PAGE_SIZE: u32 = 100;

impl Mapper for Authentik {
    fn describe() -> MapperInfo {
        MapperInfo {
            name: "authentik".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: actions::known_actions(),
        }
    }

    fn page_query(request: &PageRequest) -> Vec<QueryParam> {
        let size = match request.page_size {
            0 => MAX_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        vec![
            // The default is already -created; saying it keeps the walk right
            // if an instance ever changes its default.
            QueryParam::new("ordering", "-created"),
            QueryParam::new("page", request.page.max(1)),
            QueryParam::new("page_size", size),
        ]
    }

    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        // A push carries one event; everything else (a polled page, or a
        // transport this mapper predates) is read as a list page.
        match delivery.transport {
            Transport::Webhook => map_notification(delivery),
            _ => map_page(delivery),
        }
    }
}

/// A notification push: one event object.
fn map_notification(delivery: &Delivery) -> Result<Mapped, MappingError> {
    let body = delivery.json()?;
    if !body.is_object() {
        return Err(MappingError::UnsupportedShape(
            "expected one authentik event as a JSON object".into(),
        ));
    }
    if field(&body, "pk").is_none() || field(&body, "action").is_none() {
        let why = if field(&body, "body").is_some() && field(&body, "severity").is_some() {
            "this is authentik's default notification body, which names no event: give the webhook transport \
             audit-ingest's body mapping (docs/authentik.md, push)"
        } else {
            "expected one authentik event with `pk` and `action` (the body mapping in docs/authentik.md, push)"
        };
        return Err(MappingError::UnsupportedShape(why.into()));
    }
    // Keep the body as it was sent (authentik's JSON text), when it is text.
    let original = std::str::from_utf8(&delivery.body)
        .ok()
        .and_then(|text| RawJson::from_text(text.to_string()).ok());
    let event = map_event(&body);
    let event = match original {
        Some(raw) => event.original(raw),
        None => event,
    };
    Ok(Mapped {
        events: vec![event],
        poll: None,
    })
}

/// A page of the events list, newest first.
fn map_page(delivery: &Delivery) -> Result<Mapped, MappingError> {
    let body = delivery.json()?;
    let results =
        find_events(&body).ok_or_else(|| MappingError::UnsupportedShape("expected a `results` list".into()))?;
    // Keep each original byte for byte when the raw slices line up.
    let slices = event_slices(&delivery.body).filter(|s| s.len() == results.len());
    let mut events: Vec<AuditEvent> = results
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let event = map_event(raw);
            match slices.as_ref().and_then(|s| s.get(i)) {
                Some(slice) => event.original(RawJson::from_raw(slice)),
                None => event,
            }
        })
        .collect();
    // Pages come newest first; hand them over oldest first, the order they
    // should be written in.
    events.reverse();
    let pagination = field(&body, "pagination");
    let total = pagination.and_then(|p| field(p, "count")).and_then(u64_exact);
    let next = pagination.and_then(|p| field(p, "next")).and_then(u64_exact);
    Ok(Mapped {
        events,
        poll: Some(PollPage {
            total,
            // No pagination object at all: a plain list, nothing follows.
            last: next.unwrap_or(0) == 0,
        }),
    })
}

audit_guest_sdk::export_mapper!(Authentik);

/// An event `pk` as the events list writes it: a UUID, lower case, with
/// dashes. authentik's own serialisation of a bare UUID in a webhook
/// mapping is its 32 hex digits without dashes; both name one event, so
/// both give one deduplication key. Anything else is kept as it is.
fn canonical_uuid(pk: String) -> String {
    let hex = pk.len() == 32 && pk.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return pk;
    }
    let pk = pk.to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &pk[..8],
        &pk[8..12],
        &pk[12..16],
        &pk[16..20],
        &pk[20..]
    )
}

/// The username Authentik records for requests without a session.
const ANONYMOUS: &str = "AnonymousUser";

fn map_event(raw: &Value) -> AuditEvent {
    let action = first_text(raw, &["action"]).unwrap_or_default();
    let Verb { verb, outcome, known } = verb_of(&action);
    let mut event = AuditEvent::new(format!("authentik.{verb}"))
        .outcome(outcome)
        .original(raw);
    if !known {
        event = event.unrecognised();
    }
    if let Some(pk) = first_text(raw, &["pk", "event_uuid"]) {
        event = event.external_id(canonical_uuid(pk));
    }
    if let Some(at) = first_text(raw, &["created"]) {
        event = event.occurred_at(at);
    }
    // 255.255.255.255 is authentik's "could not tell" fallback, not an address.
    if let Some(ip) = first_text(raw, &["client_ip"]).filter(|ip| ip != "255.255.255.255") {
        event = event.ip(ip);
    }
    let user = field(raw, "user").cloned().unwrap_or(Value::Null);
    let username = first_text(&user, &["username"]);
    let anonymous = username.as_deref().is_none_or(|u| u == ANONYMOUS);
    let attempted = path(raw, &["context", "username"]).and_then(text);
    // The anonymous user's pk names nobody; leave the id out.
    if let Some(id) = field(&user, "pk").and_then(text).filter(|_| !anonymous) {
        event = event.actor_id(id);
    }
    match (&username, &attempted) {
        // A failed login by a name that matches no user: the attempted name is
        // the only actor there is.
        (_, Some(tried)) if anonymous && action == "login_failed" => event = event.actor_name(tried),
        (Some(name), _) => event = event.actor_name(name),
        _ => {}
    }
    if let Some(email) = first_text(&user, &["email"]) {
        event = event.actor_email(email);
    }
    target(event, raw, &user, &action, attempted)
}

/// What the event was done to. During impersonation the admin is the actor and
/// the impersonated user (`user.on_behalf_of`) the target.
fn target(event: AuditEvent, raw: &Value, user: &Value, action: &str, attempted: Option<String>) -> AuditEvent {
    if let Some(subject) = field(user, "on_behalf_of") {
        let id = field(subject, "pk").and_then(text);
        return event.target("user", id, first_text(subject, &["username", "email"]));
    }
    if action == "login_failed" {
        return match attempted {
            Some(tried) => event.target("user", None, Some(tried)),
            None => event,
        };
    }
    for key in ["model", "authorized_application", "source"] {
        if let Some(object) = path(raw, &["context", key]).filter(|v| v.is_object()) {
            let kind = first_text(object, &["model_name"]).unwrap_or_else(|| key.to_string());
            return event.target(&kind, first_text(object, &["pk"]), first_text(object, &["name"]));
        }
    }
    event
}

audit_guest_sdk::golden_fixtures!(Authentik, "authentik");

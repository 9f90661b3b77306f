//! The Authentik mapper: turns a page of `GET /api/v3/events/events/`
//! (`{"pagination":{...},"results":[...]}`) into audit events and tells the
//! host's poller which page to fetch next.
//!
//! This first version maps the event fields and walks newest-first pages until
//! it meets the stored cursor; the full walking strategy (cap, gap
//! continuation, overlap window) belongs to the Authentik poller.

use audit_guest_sdk::json::{field, find_events, first_text, path, text, u64_exact};
use audit_guest_sdk::serde_json::Value;
use audit_guest_sdk::{
    AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, Outcome, PollStart, PollStep,
    QueryParam,
};

/// The Authentik mapper.
pub struct Authentik;

/// `(action, verb, outcome)`; other actions keep their own name.
const ACTIONS: &[(&str, &str, Outcome)] = &[
    ("login", "login", Outcome::Success),
    ("login_failed", "login_failed", Outcome::Failure),
    ("logout", "logout", Outcome::Success),
    ("password_set", "password_changed", Outcome::Success),
    ("user_write", "user_write", Outcome::Success),
    ("impersonation_started", "impersonation_started", Outcome::Success),
    ("impersonation_ended", "impersonation_ended", Outcome::Success),
    ("model_created", "model_created", Outcome::Success),
    ("model_updated", "model_updated", Outcome::Success),
    ("model_deleted", "model_deleted", Outcome::Success),
    ("suspicious_request", "suspicious_request", Outcome::Failure),
    ("secret_view", "secret_view", Outcome::Success),
    ("authorize_application", "authorize_application", Outcome::Success),
];

impl Mapper for Authentik {
    fn describe() -> MapperInfo {
        MapperInfo {
            name: "authentik".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: ACTIONS.iter().map(|(a, ..)| a.to_string()).collect(),
        }
    }

    fn start_poll(start: &PollStart) -> Vec<QueryParam> {
        let size = if start.page_size == 0 { 100 } else { start.page_size.min(100) };
        vec![
            QueryParam::new("ordering", "-created"),
            QueryParam::new("page_size", size),
            QueryParam::new("page", 1),
        ]
    }

    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        let body = delivery.json()?;
        let results = find_events(&body)
            .ok_or_else(|| MappingError::UnsupportedShape("expected a `results` list".into()))?;
        let stored = delivery.cursor.as_deref();
        let mut events = Vec::new();
        let mut reached_cursor = false;
        for raw in results {
            let created = first_text(raw, &["created"]).unwrap_or_default();
            let pk = first_text(raw, &["pk", "event_uuid"]).unwrap_or_default();
            if stored.is_some_and(|c| cursor_of(&created, &pk).as_str() <= c) {
                reached_cursor = true;
                continue;
            }
            events.push(map_event(raw));
        }
        let newest = events
            .iter()
            .filter_map(|e| Some(cursor_of(e.occurred_at.as_deref()?, e.external_id.as_deref()?)))
            .max();
        let cursor = match (newest, stored) {
            (Some(n), Some(s)) if s > n.as_str() => Some(s.to_string()),
            (Some(n), _) => Some(n),
            (None, s) => s.map(str::to_string),
        };
        let next = path(&body, &["pagination", "next"]).and_then(u64_exact).unwrap_or(0);
        let next_page = (!reached_cursor && next != 0).then(|| {
            vec![
                QueryParam::new("ordering", "-created"),
                QueryParam::new("page", next),
            ]
        });
        // Oldest first, so a crash between pages never leaves a gap behind the cursor.
        events.reverse();
        Ok(Mapped {
            events,
            poll: Some(PollStep { cursor, next_page }),
        })
    }
}

audit_guest_sdk::export_mapper!(Authentik);

/// A cursor that sorts like the events: creation time, then primary key.
fn cursor_of(created: &str, pk: &str) -> String {
    format!("{created}|{pk}")
}

fn map_event(raw: &Value) -> AuditEvent {
    let action = first_text(raw, &["action"]).unwrap_or_else(|| "unknown".into());
    let (verb, outcome, known) = match ACTIONS.iter().find(|(a, ..)| *a == action) {
        Some((_, v, o)) => (v.to_string(), *o, true),
        None => (action.clone(), Outcome::Unknown, action.starts_with("custom_")),
    };
    let mut event = AuditEvent::new(format!("authentik.{verb}"))
        .outcome(outcome)
        .original(raw);
    if !known {
        event = event.unrecognised();
    }
    if let Some(pk) = first_text(raw, &["pk", "event_uuid"]) {
        event = event.external_id(pk);
    }
    if let Some(at) = first_text(raw, &["created"]) {
        event = event.occurred_at(at);
    }
    let user = field(raw, "user").cloned().unwrap_or(Value::Null);
    if let Some(id) = field(&user, "pk").and_then(text) {
        event = event.actor_id(id);
    }
    if let Some(name) = first_text(&user, &["username"]) {
        event = event.actor_name(name);
    }
    if let Some(email) = first_text(&user, &["email"]) {
        event = event.actor_email(email);
    }
    if let Some(ip) = first_text(raw, &["client_ip"]) {
        event = event.ip(ip);
    }
    if let Some(subject) = field(&user, "on_behalf_of") {
        let id = field(subject, "pk").and_then(text);
        event = event.target("user", id, first_text(subject, &["username", "email"]));
    } else if action == "login_failed" {
        if let Some(tried) = path(raw, &["context", "username"]).and_then(text) {
            event = event.target("user", None, Some(tried));
        }
    } else if let Some(model) = path(raw, &["context", "model"]) {
        let kind = first_text(model, &["model_name"]).unwrap_or_else(|| "model".into());
        event = event.target(&kind, first_text(model, &["pk"]), first_text(model, &["name"]));
    }
    event
}

audit_guest_sdk::golden_fixtures!(Authentik, "authentik");

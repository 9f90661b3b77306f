//! The oCIS / OpenCloud mapper: turns one line of the audit service's
//! JSON-lines file (`AUDIT_FORMAT=json`) into an audit event.
//!
//! oCIS lines have no event id and no IP; the actor is in `User`, or only in
//! `Message` (`user '<uuid>' …`). The line's deduplication key is derived by
//! the host's file tailer, which knows the file and the offset.

use audit_guest_sdk::json::{field, first_text, text};
use audit_guest_sdk::serde_json::Value;
use audit_guest_sdk::{AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, Outcome, RawJson};

/// The oCIS mapper.
pub struct Ocis;

/// Actions oCIS and OpenCloud emit (`services/audit/pkg/types/messages.go`).
const ACTIONS: &[&str] = &[
    "file_shared", "share_permission_updated", "share_name_updated", "share_password_updated",
    "share_expiration_updated", "share_updated", "share_state_changed", "file_unshared",
    "share_accepted", "share_declined", "public_link_accessed", "container_create", "file_create",
    "file_read", "file_viewed", "file_delete", "file_rename", "file_trash_delete",
    "file_trash_restore", "file_version_restore", "space_created", "space_renamed",
    "space_disabled", "space_enabled", "space_deleted", "space_shared", "space_unshared",
    "space_updated", "user_created", "user_deleted", "user_feature_changed", "group_created",
    "group_deleted", "group_member_added", "group_member_removed",
    "science_mesh_invite_token_generated",
];

impl Mapper for Ocis {
    fn describe() -> MapperInfo {
        MapperInfo {
            name: "ocis".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: ACTIONS.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        let line: Value = serde_json_line(&delivery.body)?;
        if !line.is_object() {
            return Err(MappingError::UnsupportedShape(
                "an audit line must be a JSON object".into(),
            ));
        }
        let mut event = map_line(&line);
        // Keep the line byte for byte (and skip printing it again).
        if let Some(raw) = std::str::from_utf8(&delivery.body).ok().and_then(|t| RawJson::from_text(t.trim_end().to_string()).ok()) {
            event = event.original(raw);
        }
        Ok(vec![event].into())
    }
}

audit_guest_sdk::export_mapper!(Ocis);

fn serde_json_line(body: &[u8]) -> Result<Value, MappingError> {
    audit_guest_sdk::serde_json::from_slice(body).map_err(|e| {
        MappingError::Malformed(format!(
            "line is not JSON ({e}); is oCIS writing the `minimal` format? set AUDIT_FORMAT=json"
        ))
    })
}

fn map_line(line: &Value) -> AuditEvent {
    let action = first_text(line, &["Action"]).unwrap_or_default();
    let known = ACTIONS.contains(&action.as_str());
    let verb = if known { action.as_str() } else { "unknown" };
    let mut event = AuditEvent::new(format!("ocis.{verb}")).outcome(outcome(&action, line));
    if !known {
        event = event.unrecognised();
    }
    if let Some(time) = first_text(line, &["Time"]).filter(|t| !is_zero_time(t)) {
        event = event.occurred_at(time);
    }
    // `User` is often empty and not always the one who acted (for file
    // events it is the space owner); `Message` names the executant.
    if let Some(user) = message_user(line).or_else(|| first_text(line, &["User"])) {
        event = event.actor_id(user);
    }
    target(event, &action, line)
}

fn outcome(action: &str, line: &Value) -> Outcome {
    match (action, field(line, "Success")) {
        ("public_link_accessed", Some(Value::Bool(false))) => Outcome::Failure,
        ("", _) => Outcome::Unknown,
        _ => Outcome::Success,
    }
}

/// oCIS writes a zero time as `0001-01-01T00:00:00Z` or `1970-01-01T00:00:00Z`.
fn is_zero_time(t: &str) -> bool {
    t.starts_with("0001-01-01") || t == "1970-01-01T00:00:00Z"
}

/// The actor in `Message`: `user '<id>' …`.
fn message_user(line: &Value) -> Option<String> {
    let message = first_text(line, &["Message"])?;
    let rest = message.strip_prefix("user '")?;
    let end = rest.find('\'')?;
    (end > 0).then(|| rest[..end].to_string())
}

fn target(event: AuditEvent, action: &str, line: &Value) -> AuditEvent {
    let get = |k: &str| field(line, k).and_then(text);
    if action.starts_with("group_member") {
        return event.target("user", get("UserID"), get("GroupID"));
    }
    if let Some(group) = get("GroupID") {
        return event.target("group", Some(group), None);
    }
    if let Some(user) = get("UserID") {
        return event.target("user", Some(user), None);
    }
    if action.starts_with("space_") {
        return event.target("space", get("SpaceID"), get("Name").or_else(|| get("NewName")));
    }
    if action.contains("share") || action == "public_link_accessed" {
        // Public links and shares both log `file_shared`; ShareType tells them apart.
        let kind = match get("ShareType").as_deref() {
            Some("link") => "public_link",
            Some("user") => "user_share",
            Some("group") => "group_share",
            _ if action == "public_link_accessed" => "public_link",
            _ => "share",
        };
        let name = get("ShareWith").or_else(|| get("ShareToken"));
        return event.target(kind, get("FileID"), name);
    }
    match (get("FileID"), get("Path")) {
        (None, None) => event,
        (id, path) => event.target("file", id, path),
    }
}

audit_guest_sdk::golden_fixtures!(Ocis, "ocis");

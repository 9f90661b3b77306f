//! Records as OCSF 1.1.0 events (the version AWS Security Lake and
//! CloudWatch's OCSF transformer take).
//!
//! The class follows the action: logins, logouts and bans are
//! Authentication (3002); password changes, account creation, deletion and
//! offboarding Account Change (3001); group membership Group Management
//! (3006); mail received, delivered, failed, rejected and checked Email
//! Activity (4009); authentik model and secret changes and this service's
//! own read trail API Activity (6003); oCIS file actions File Hosting
//! Activity (6006); anything else a Base Event (0). Every record keeps its
//! own fields in `unmapped.audit_ingest` and its original in `raw_data`
//! (as JSON text; past OCSF's 65,535 characters, in `unmapped.raw_data`).
//!
//! Only what the record says is written. Where OCSF requires an object
//! the record lacks (oCIS names no client address, a ban names no user),
//! the object says `unknown` by name (`src_endpoint.name`, `user.name`
//! with `type_id` 0), never an invented value. Email Activity requires a
//! sender and recipient address: a mail record without both (the mappers
//! keep only the account and the recipient) is a Base Event. The export
//! reads records, not payloads: parsing a source's payload is its mapper's
//! job.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::store::{NewRecord, Record};

/// The OCSF version written in `metadata.version`.
pub const VERSION: &str = "1.1.0";

/// OCSF's longest string.
const MAX_STRING: usize = 65_535;

/// A class, its category and the activity within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
}

const fn class(uid: u32, name: &'static str, activity_id: u32, activity_name: &'static str) -> Class {
    let (category_uid, category_name) = match uid / 1000 {
        3 => (3, "Identity & Access Management"),
        4 => (4, "Network Activity"),
        6 => (6, "Application Activity"),
        _ => (0, "Uncategorized"),
    };
    Class {
        uid,
        name,
        category_uid,
        category_name,
        activity_id,
        activity_name,
    }
}

const fn authentication(activity_id: u32, activity_name: &'static str) -> Class {
    class(3002, "Authentication", activity_id, activity_name)
}
const fn account_change(activity_id: u32, activity_name: &'static str) -> Class {
    class(3001, "Account Change", activity_id, activity_name)
}
const fn group_management(activity_id: u32, activity_name: &'static str) -> Class {
    class(3006, "Group Management", activity_id, activity_name)
}
const fn email_activity(activity_id: u32, activity_name: &'static str) -> Class {
    class(4009, "Email Activity", activity_id, activity_name)
}
const fn api_activity(activity_id: u32, activity_name: &'static str) -> Class {
    class(6003, "API Activity", activity_id, activity_name)
}
const fn file_hosting(activity_id: u32, activity_name: &'static str) -> Class {
    class(6006, "File Hosting Activity", activity_id, activity_name)
}
const BASE_OTHER: Class = class(0, "Base Event", 99, "Other");
const BASE_UNKNOWN: Class = class(0, "Base Event", 0, "Unknown");

/// The class of an action (before checking what the class requires).
fn class_of(r: &NewRecord) -> Class {
    let action = r.action.as_str();
    let verb = action.split_once('.').map_or(action, |(_, v)| v);
    match (r.source.as_str(), verb) {
        ("stalwart", "auth_success" | "auth_failed") | ("authentik", "login" | "login_failed") => {
            authentication(1, "Logon")
        }
        ("authentik", "logout") => authentication(2, "Logoff"),
        ("stalwart", "auth_banned") => authentication(99, "Ban"),
        ("authentik", "password_changed") => account_change(3, "Password Change"),
        ("authentik", "user_write") | ("ocis", "user_feature_changed") => account_change(99, "Other"),
        ("authentik", "user_offboarded") => account_change(5, "Disable"),
        ("ocis", "user_created") => account_change(1, "Create"),
        ("ocis", "user_deleted") => account_change(6, "Delete"),
        ("ocis", "group_member_added") => group_management(3, "Add User"),
        ("ocis", "group_member_removed") => group_management(4, "Remove User"),
        ("stalwart", "mail_received" | "mail_delivered" | "mail_rejected") => email_activity(2, "Receive"),
        ("stalwart", "mail_failed") => email_activity(1, "Send"),
        ("stalwart", "dkim_failure" | "dmarc_failure" | "spf_failure" | "spam_detected" | "policy_rejection") => {
            email_activity(3, "Scan")
        }
        ("authentik", "model_created") => api_activity(1, "Create"),
        ("authentik", "secret_view") => api_activity(2, "Read"),
        ("authentik", "model_updated" | "secret_rotate") => api_activity(3, "Update"),
        ("authentik", "model_deleted") => api_activity(4, "Delete"),
        ("audit-ingest", _) => api_activity(2, "Read"),
        ("ocis", "file_create") => file_hosting(1, "Upload"),
        ("ocis", "file_read") => file_hosting(2, "Download"),
        ("ocis", "file_delete" | "file_trash_delete") => file_hosting(4, "Delete"),
        ("ocis", "file_rename") => file_hosting(5, "Rename"),
        ("ocis", "file_trash_restore" | "file_version_restore") => file_hosting(8, "Restore"),
        ("ocis", "file_viewed") => file_hosting(9, "Preview"),
        ("ocis", "file_shared" | "space_shared") => file_hosting(12, "Share"),
        ("ocis", "file_unshared" | "space_unshared") => file_hosting(13, "Unshare"),
        ("ocis", "public_link_accessed") => file_hosting(14, "Open"),
        ("ocis", v) if v.starts_with("share_") => file_hosting(3, "Update"),
        _ if r.unrecognised => BASE_UNKNOWN,
        _ => BASE_OTHER,
    }
}

/// OCSF's e-mail address pattern (`^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`).
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((first, rest)) = domain.split_once('.') else {
        return false;
    };
    !local.is_empty()
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
        && !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
}

/// A string within OCSF's limit.
fn text(s: &str) -> Value {
    match s.char_indices().nth(MAX_STRING) {
        Some((cut, _)) => Value::String(s[..cut].to_string()),
        None => Value::String(s.to_string()),
    }
}

fn millis(at: &DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The product that produced a source's events.
fn product(source: &str) -> Value {
    let (name, vendor) = match source {
        "stalwart" => ("Stalwart", "Stalwart Labs"),
        "authentik" => ("authentik", "Authentik Security"),
        "ocis" => ("oCIS", "ownCloud"),
        "audit-ingest" => ("audit-ingest", "audit-ingest"),
        other => (other, "unknown"),
    };
    json!({ "name": text(name), "vendor_name": vendor })
}

/// A user from an id, name and e-mail, if any of them is known.
fn user(uid: Option<&str>, name: Option<&str>, email: Option<&str>) -> Option<Value> {
    let mut out = Map::new();
    if let Some(v) = uid {
        out.insert("uid".into(), text(v));
    }
    if let Some(v) = name {
        out.insert("name".into(), text(v));
    }
    if out.is_empty() {
        // An e-mail address alone still names the user.
        out.insert("name".into(), text(email?));
    }
    if let Some(v) = email.filter(|e| is_email(e)) {
        out.insert("email_addr".into(), Value::String(v.to_string()));
    }
    Some(Value::Object(out))
}

fn unknown_user() -> Value {
    json!({ "name": "unknown", "type_id": 0, "type": "Unknown" })
}

fn actor_user(r: &NewRecord) -> Option<Value> {
    user(r.actor_id.as_deref(), r.actor_name.as_deref(), r.actor_email.as_deref())
}

/// The account a record is about: its target when that is a user or an
/// account, else its actor.
fn subject_user(r: &NewRecord) -> Value {
    let target_is_user = matches!(r.target_type.as_deref(), Some("user" | "account"));
    target_is_user
        .then(|| user(r.target_id.as_deref(), r.target_name.as_deref(), None))
        .flatten()
        .or_else(|| actor_user(r))
        .unwrap_or_else(unknown_user)
}

fn src_endpoint(r: &NewRecord) -> Value {
    match r.ip.as_deref().filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
        Some(ip) => json!({ "ip": ip }),
        None => json!({ "name": "unknown" }),
    }
}

/// Recipient addresses a record names (its target name, comma-separated).
fn recipients(r: &NewRecord) -> Vec<String> {
    r.target_name
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|a| is_email(a))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The original event's JSON text as stored (`metadata.original`).
fn original(r: &NewRecord) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        original: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_str::<Stored<'_>>(r.metadata.get())
        .ok()?
        .original
        .map(|o| o.get())
        .filter(|o| *o != "null")
}

/// The record as one OCSF event.
pub fn event(record: &Record) -> Value {
    let r = &record.record;
    let mut class = class_of(r);
    let to = recipients(r);
    let from = r.actor_email.as_deref().filter(|e| is_email(e));
    if class.uid == 4009 && (from.is_none() || to.is_empty()) {
        class = BASE_OTHER;
    }
    let (status_id, status) = match r.outcome.as_str() {
        "success" => (1, "Success"),
        "failure" => (2, "Failure"),
        _ => (0, "Unknown"),
    };
    let (severity_id, severity) = match (r.outcome.as_str(), class.activity_name) {
        (_, "Ban") => (3, "Medium"),
        ("failure", _) => (2, "Low"),
        _ => (1, "Informational"),
    };
    let mut own = json!({
        "id": record.id,
        "source": r.source,
        "action": r.action,
        "outcome": r.outcome,
        "received_at": r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": { "id": r.actor_id, "name": r.actor_name, "email": r.actor_email },
        "ip": r.ip,
        "target": { "type": r.target_type, "id": r.target_id, "name": r.target_name },
        "tenant": r.tenant_slug,
        "external_id": r.external_id,
        "mapper": r.mapper,
    });
    if r.unrecognised {
        own["unrecognised"] = Value::Bool(true);
    }
    let mut unmapped = json!({ "audit_ingest": own });
    let mut out = json!({
        "class_uid": class.uid,
        "class_name": class.name,
        "category_uid": class.category_uid,
        "category_name": class.category_name,
        "activity_id": class.activity_id,
        "activity_name": class.activity_name,
        "type_uid": class.uid * 100 + class.activity_id,
        "type_name": format!("{}: {}", class.name, class.activity_name),
        "time": millis(&r.at),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": text(&r.action),
        "metadata": {
            "version": VERSION,
            "product": product(&r.source),
            "uid": record.id,
            "event_code": text(&r.action),
            "log_name": text(&r.source),
            "original_time": r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "logged_time": millis(&r.received_at),
        },
    });
    match class.uid {
        3002 => {
            out["user"] = actor_user(r).unwrap_or_else(unknown_user);
            out["service"] = json!({ "name": product(&r.source)["name"] });
            out["src_endpoint"] = src_endpoint(r);
        }
        3001 => {
            out["user"] = subject_user(r);
            if let Some(actor) = actor_user(r) {
                out["actor"] = json!({ "user": actor });
            }
        }
        3006 => {
            // oCIS's membership records: the member as target id, the group as target name.
            out["user"] = user(r.target_id.as_deref(), None, None).unwrap_or_else(unknown_user);
            out["group"] = match r.target_name.as_deref() {
                Some(g) => json!({ "uid": text(g) }),
                None => json!({ "name": "unknown" }),
            };
            if let Some(actor) = actor_user(r) {
                out["actor"] = json!({ "user": actor });
            }
        }
        4009 => {
            out["direction_id"] = json!(if class.activity_id == 1 { 2 } else { 1 });
            out["direction"] = json!(if class.activity_id == 1 { "Outbound" } else { "Inbound" });
            let mut email = json!({ "from": from, "to": to });
            if let Some(id) = r.target_id.as_deref() {
                email["uid"] = text(id);
            }
            out["email"] = email;
            if r.ip.is_some() {
                out["src_endpoint"] = src_endpoint(r);
            }
        }
        6003 => {
            out["actor"] = json!({ "user": actor_user(r).unwrap_or_else(unknown_user) });
            out["api"] = json!({ "operation": text(&r.action) });
            out["src_endpoint"] = src_endpoint(r);
        }
        6006 => {
            out["actor"] = json!({ "user": actor_user(r).unwrap_or_else(unknown_user) });
            let name = r.target_name.as_deref().or(r.target_id.as_deref()).unwrap_or("unknown");
            let mut file = json!({ "name": text(name), "type_id": 0, "type": "Unknown" });
            if let Some(id) = r.target_id.as_deref() {
                file["uid"] = text(id);
            }
            out["file"] = file;
            out["src_endpoint"] = src_endpoint(r);
        }
        _ => {}
    }
    if let Some(tenant) = &r.tenant_slug {
        out["metadata"]["labels"] = json!([text(&format!("tenant:{tenant}"))]);
    }
    if let Some(original) = original(r) {
        if original.chars().nth(MAX_STRING).is_none() {
            out["raw_data"] = Value::String(original.to_string());
        } else {
            unmapped["raw_data"] = Value::String(original.to_string());
        }
    }
    out["unmapped"] = unmapped;
    out
}

/// Writes the record as one OCSF event (JSON, no newline).
pub fn write_event(record: &Record, out: &mut Vec<u8>) {
    // Writing a Value into a Vec cannot fail.
    serde_json::to_writer(out, &event(record)).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_follow_ocsf_s_pattern() {
        for ok in ["a@b.c", "jdoe+x@example.org", "a_b.c-d@e-f.g.h"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a b@c.d", "a@b.c d", "ü@b.c", "a@b_c.d"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_STRING + 10);
        assert_eq!(text(&long).as_str().unwrap().chars().count(), MAX_STRING);
    }
}

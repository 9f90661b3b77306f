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
use serde::Serialize;

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

/// A string within OCSF's limit (cut at a character boundary).
fn text(s: &str) -> &str {
    match s.char_indices().nth(MAX_STRING) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

fn millis(at: &DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// `product`.
#[derive(Serialize)]
struct Product<'a> {
    name: &'a str,
    vendor_name: &'a str,
}

/// The product that produced a source's events.
fn product(source: &str) -> Product<'_> {
    let (name, vendor_name) = match source {
        "stalwart" => ("Stalwart", "Stalwart Labs"),
        "authentik" => ("authentik", "Authentik Security"),
        "ocis" => ("oCIS", "ownCloud"),
        "audit-ingest" => ("audit-ingest", "audit-ingest"),
        other => (text(other), "unknown"),
    };
    Product { name, vendor_name }
}

/// `user`: at least a name or a uid (OCSF requires one).
#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_addr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_id: Option<u8>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

/// A user from an id, name and e-mail, if any of them is known.
fn user<'a>(uid: Option<&'a str>, name: Option<&'a str>, email: Option<&'a str>) -> Option<User<'a>> {
    let (uid, name) = (uid.map(text), name.map(text));
    // An e-mail address alone still names the user.
    let name = if uid.is_none() && name.is_none() {
        Some(text(email?))
    } else {
        name
    };
    Some(User {
        uid,
        name,
        email_addr: email.filter(|e| is_email(e)),
        type_id: None,
        kind: None,
    })
}

fn unknown_user<'a>() -> User<'a> {
    User {
        uid: None,
        name: Some("unknown"),
        email_addr: None,
        type_id: Some(0),
        kind: Some("Unknown"),
    }
}

fn actor_user(r: &NewRecord) -> Option<User<'_>> {
    user(r.actor_id.as_deref(), r.actor_name.as_deref(), r.actor_email.as_deref())
}

/// The account a record is about: its target when that is a user or an
/// account, else its actor.
fn subject_user(r: &NewRecord) -> User<'_> {
    let target_is_user = matches!(r.target_type.as_deref(), Some("user" | "account"));
    target_is_user
        .then(|| user(r.target_id.as_deref(), r.target_name.as_deref(), None))
        .flatten()
        .or_else(|| actor_user(r))
        .unwrap_or_else(unknown_user)
}

/// `src_endpoint`: the address, or `unknown` by name.
#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
}

fn src_endpoint(r: &NewRecord) -> Endpoint<'_> {
    match r.ip.as_deref().filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
        Some(ip) => Endpoint {
            ip: Some(ip),
            name: None,
        },
        None => Endpoint {
            ip: None,
            name: Some("unknown"),
        },
    }
}

/// Recipient addresses a record names (its target name, comma-separated).
fn recipients(r: &NewRecord) -> Vec<&str> {
    r.target_name
        .as_deref()
        .map(|t| t.split(',').map(str::trim).filter(|a| is_email(a)).collect())
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

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product<'a>,
    uid: &'a str,
    event_code: &'a str,
    log_name: &'a str,
    original_time: String,
    logged_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<[String; 1]>,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Email<'a> {
    from: &'a str,
    to: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: &'a str,
}

#[derive(Serialize)]
struct File<'a> {
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

/// The record's own fields, all of them, as audit-ingest keeps them.
#[derive(Serialize)]
struct Own<'a> {
    id: &'a str,
    source: &'a str,
    action: &'a str,
    outcome: &'a str,
    received_at: String,
    actor: OwnActor<'a>,
    ip: Option<&'a str>,
    target: OwnTarget<'a>,
    tenant: Option<&'a str>,
    external_id: Option<&'a str>,
    mapper: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unrecognised: bool,
}

#[derive(Serialize)]
struct OwnActor<'a> {
    id: Option<&'a str>,
    name: Option<&'a str>,
    email: Option<&'a str>,
}

#[derive(Serialize)]
struct OwnTarget<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    id: Option<&'a str>,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    audit_ingest: Own<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_data: Option<&'a str>,
}

/// One OCSF event; the class decides which of the optional objects it has.
#[derive(Serialize)]
struct Event<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: String,
    time: i64,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    message: &'a str,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Email<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<Api<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_data: Option<&'a str>,
    unmapped: Unmapped<'a>,
}

fn build(record: &Record) -> Event<'_> {
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
    let (raw_data, long_original) = match original(r) {
        Some(o) if o.chars().nth(MAX_STRING).is_none() => (Some(o), None),
        Some(o) => (None, Some(o)),
        None => (None, None),
    };
    let mut event = Event {
        class_uid: class.uid,
        class_name: class.name,
        category_uid: class.category_uid,
        category_name: class.category_name,
        activity_id: class.activity_id,
        activity_name: class.activity_name,
        type_uid: class.uid * 100 + class.activity_id,
        type_name: format!("{}: {}", class.name, class.activity_name),
        time: millis(&r.at),
        severity_id,
        severity,
        status_id,
        status,
        message: text(&r.action),
        metadata: Metadata {
            version: VERSION,
            product: product(&r.source),
            uid: &record.id,
            event_code: text(&r.action),
            log_name: text(&r.source),
            original_time: r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            logged_time: millis(&r.received_at),
            labels: r
                .tenant_slug
                .as_deref()
                .map(|t| [text(&format!("tenant:{t}")).to_string()]),
        },
        user: None,
        actor: None,
        service: None,
        group: None,
        direction_id: None,
        direction: None,
        email: None,
        api: None,
        file: None,
        src_endpoint: None,
        raw_data,
        unmapped: Unmapped {
            audit_ingest: Own {
                id: &record.id,
                source: &r.source,
                action: &r.action,
                outcome: &r.outcome,
                received_at: r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                actor: OwnActor {
                    id: r.actor_id.as_deref(),
                    name: r.actor_name.as_deref(),
                    email: r.actor_email.as_deref(),
                },
                ip: r.ip.as_deref(),
                target: OwnTarget {
                    kind: r.target_type.as_deref(),
                    id: r.target_id.as_deref(),
                    name: r.target_name.as_deref(),
                },
                tenant: r.tenant_slug.as_deref(),
                external_id: r.external_id.as_deref(),
                mapper: r.mapper.as_deref(),
                unrecognised: r.unrecognised,
            },
            raw_data: long_original,
        },
    };
    let actor = || actor_user(r).map(|user| Actor { user });
    match class.uid {
        3002 => {
            event.user = Some(actor_user(r).unwrap_or_else(unknown_user));
            event.service = Some(Named {
                uid: None,
                name: Some(product(&r.source).name),
            });
            event.src_endpoint = Some(src_endpoint(r));
        }
        3001 => {
            event.user = Some(subject_user(r));
            event.actor = actor();
        }
        3006 => {
            // oCIS's membership records: the member as target id, the group as target name.
            event.user = Some(user(r.target_id.as_deref(), None, None).unwrap_or_else(unknown_user));
            event.group = Some(match r.target_name.as_deref() {
                Some(g) => Named {
                    uid: Some(text(g)),
                    name: None,
                },
                None => Named {
                    uid: None,
                    name: Some("unknown"),
                },
            });
            event.actor = actor();
        }
        4009 => {
            let sent = class.activity_id == 1;
            event.direction_id = Some(if sent { 2 } else { 1 });
            event.direction = Some(if sent { "Outbound" } else { "Inbound" });
            event.email = Some(Email {
                from: from.unwrap_or_default(),
                to,
                uid: r.target_id.as_deref().map(text),
            });
            if r.ip.is_some() {
                event.src_endpoint = Some(src_endpoint(r));
            }
        }
        6003 => {
            event.actor = Some(Actor {
                user: actor_user(r).unwrap_or_else(unknown_user),
            });
            event.api = Some(Api {
                operation: text(&r.action),
            });
            event.src_endpoint = Some(src_endpoint(r));
        }
        6006 => {
            event.actor = Some(Actor {
                user: actor_user(r).unwrap_or_else(unknown_user),
            });
            let name = r.target_name.as_deref().or(r.target_id.as_deref()).unwrap_or("unknown");
            event.file = Some(File {
                name: text(name),
                type_id: 0,
                kind: "Unknown",
                uid: r.target_id.as_deref().map(text),
            });
            event.src_endpoint = Some(src_endpoint(r));
        }
        _ => {}
    }
    event
}

/// The record as one OCSF event.
pub fn event(record: &Record) -> serde_json::Value {
    serde_json::to_value(build(record)).unwrap_or_default()
}

/// Writes the record as one OCSF event (JSON, no newline).
pub fn write_event(record: &Record, out: &mut Vec<u8>) {
    // Serialising into a Vec cannot fail.
    serde_json::to_writer(out, &build(record)).unwrap_or_default();
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
        assert_eq!(text(&long).chars().count(), MAX_STRING);
    }
}

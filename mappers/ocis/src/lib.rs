//! The oCIS / OpenCloud mapper: turns one line of the audit service's
//! JSON-lines file (`AUDIT_FORMAT=json`) into an audit event.
//!
//! oCIS lines have no event id and no IP; the actor is in `User`, or only in
//! `Message` (`user '<uuid>' …`). The line's deduplication key is derived by
//! the host's file tailer, which knows the file and the offset.

use std::borrow::Cow;

use audit_guest_sdk::serde_json::{self, error::Category};
use audit_guest_sdk::{AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, Outcome, RawJson};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The oCIS mapper.
pub struct Ocis;

/// Actions oCIS and OpenCloud emit (`services/audit/pkg/types/messages.go`).
const ACTIONS: &[&str] = &[
    "file_shared",
    "share_permission_updated",
    "share_name_updated",
    "share_password_updated",
    "share_expiration_updated",
    "share_updated",
    "share_state_changed",
    "file_unshared",
    "share_accepted",
    "share_declined",
    "public_link_accessed",
    "container_create",
    "file_create",
    "file_read",
    "file_viewed",
    "file_delete",
    "file_rename",
    "file_trash_delete",
    "file_trash_restore",
    "file_version_restore",
    "space_created",
    "space_renamed",
    "space_disabled",
    "space_enabled",
    "space_deleted",
    "space_shared",
    "space_unshared",
    "space_updated",
    "user_created",
    "user_deleted",
    "user_feature_changed",
    "group_created",
    "group_deleted",
    "group_member_added",
    "group_member_removed",
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

    /// One line of the audit file (several lines in one call go through the
    /// SDK's `map_lines`, which maps each of them here).
    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        Ok(vec![map_text_line(&delivery.body)?].into())
    }
}

/// One line of the audit file.
fn map_text_line(bytes: &[u8]) -> Result<AuditEvent, MappingError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| MappingError::Malformed(format!("line is not UTF-8 ({e}); set AUDIT_FORMAT=json")))?;
    let not_json = |e: serde_json::Error| {
        MappingError::Malformed(format!(
            "line is not JSON ({e}); is oCIS writing the `minimal` format? set AUDIT_FORMAT=json"
        ))
    };
    if !text.trim_start().starts_with('{') {
        serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
        return Err(MappingError::UnsupportedShape(
            "an audit line must be a JSON object".into(),
        ));
    }
    let line: Line<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => MappingError::UnsupportedShape(format!("an audit line must be a JSON object ({e})")),
        _ => not_json(e),
    })?;
    let mut event = map_line(&line);
    // Keep the line byte for byte (and skip printing it again).
    if let Ok(raw) = RawJson::from_text(text.trim_end().to_string()) {
        event = event.original(raw);
    }
    Ok(event)
}

audit_guest_sdk::export_mapper!(Ocis);

/// The fields of an audit line this mapper reads (oCIS marshals Go structs:
/// PascalCase keys; camelCase and snake_case spellings are accepted too).
/// Read straight from the line's text, borrowing it: no tree of every field
/// is built, and fields not listed here are skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Line<'a> {
    #[serde(rename = "Action", alias = "action", borrow)]
    action: Text<'a>,
    #[serde(rename = "Time", alias = "time", borrow)]
    time: Text<'a>,
    #[serde(rename = "User", alias = "user", borrow)]
    user: Text<'a>,
    #[serde(rename = "Message", alias = "message", borrow)]
    message: Text<'a>,
    #[serde(rename = "Success", alias = "success", borrow)]
    success: Text<'a>,
    #[serde(rename = "GroupID", alias = "groupId", alias = "group_id", borrow)]
    group_id: Text<'a>,
    #[serde(rename = "UserID", alias = "userId", alias = "user_id", borrow)]
    user_id: Text<'a>,
    #[serde(rename = "SpaceID", alias = "spaceId", alias = "space_id", borrow)]
    space_id: Text<'a>,
    #[serde(rename = "Name", alias = "name", borrow)]
    name: Text<'a>,
    #[serde(rename = "NewName", alias = "newName", alias = "new_name", borrow)]
    new_name: Text<'a>,
    #[serde(rename = "ShareType", alias = "shareType", alias = "share_type", borrow)]
    share_type: Text<'a>,
    #[serde(rename = "ShareWith", alias = "shareWith", alias = "share_with", borrow)]
    share_with: Text<'a>,
    #[serde(rename = "ShareToken", alias = "shareToken", alias = "share_token", borrow)]
    share_token: Text<'a>,
    #[serde(rename = "FileID", alias = "fileId", alias = "file_id", borrow)]
    file_id: Text<'a>,
    #[serde(rename = "Path", alias = "path", borrow)]
    path: Text<'a>,
}

/// A field read as text whatever its JSON type (a string, or a number or
/// bool written out; integers keep every digit); empty, null, objects and
/// arrays read as nothing.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl Text<'_> {
    fn get(&self) -> Option<String> {
        self.0.as_deref().map(str::to_string)
    }

    /// A number or bool, written out.
    fn written(v: impl ToString) -> Self {
        Text(Some(Cow::Owned(v.to_string())))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text((!v.is_empty()).then_some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text((!v.is_empty()).then(|| Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text<'a>, E> {
                Ok(Text::written(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text<'a>, E> {
                Ok(Text::written(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text<'a>, E> {
                Ok(Text::written(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text<'a>, E> {
                Ok(Text::written(v))
            }
            fn visit_unit<E>(self) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

fn map_line(line: &Line<'_>) -> AuditEvent {
    let action = line.action.0.as_deref().unwrap_or_default();
    let known = ACTIONS.contains(&action);
    let verb = if known { action } else { "unknown" };
    let mut event = AuditEvent::new(format!("ocis.{verb}")).outcome(outcome(action, line));
    if !known {
        event = event.unrecognised();
    }
    if let Some(time) = line.time.get().filter(|t| !is_zero_time(t)) {
        event = event.occurred_at(time);
    }
    // `User` is often empty and not always the one who acted (for file
    // events it is the space owner); `Message` names the executant.
    if let Some(user) = message_user(line).or_else(|| line.user.get()) {
        event = event.actor_id(user);
    }
    target(event, action, line)
}

fn outcome(action: &str, line: &Line<'_>) -> Outcome {
    match (action, line.success.0.as_deref()) {
        ("public_link_accessed", Some("false")) => Outcome::Failure,
        ("", _) => Outcome::Unknown,
        _ => Outcome::Success,
    }
}

/// oCIS writes a zero time as `0001-01-01T00:00:00Z` or `1970-01-01T00:00:00Z`.
fn is_zero_time(t: &str) -> bool {
    t.starts_with("0001-01-01") || t == "1970-01-01T00:00:00Z"
}

/// The actor in `Message`: `user '<id>' …`.
fn message_user(line: &Line<'_>) -> Option<String> {
    let message = line.message.0.as_deref()?;
    let rest = message.strip_prefix("user '")?;
    let end = rest.find('\'')?;
    (end > 0).then(|| rest[..end].to_string())
}

fn target(event: AuditEvent, action: &str, line: &Line<'_>) -> AuditEvent {
    if action.starts_with("group_member") {
        return event.target("user", line.user_id.get(), line.group_id.get());
    }
    if let Some(group) = line.group_id.get() {
        return event.target("group", Some(group), None);
    }
    if let Some(user) = line.user_id.get() {
        return event.target("user", Some(user), None);
    }
    if action.starts_with("space_") {
        return event.target(
            "space",
            line.space_id.get(),
            line.name.get().or_else(|| line.new_name.get()),
        );
    }
    if action.contains("share") || action == "public_link_accessed" {
        // Public links and shares both log `file_shared`; ShareType tells them apart.
        let kind = match line.share_type.0.as_deref() {
            Some("link") => "public_link",
            Some("user") => "user_share",
            Some("group") => "group_share",
            _ if action == "public_link_accessed" => "public_link",
            _ => "share",
        };
        let name = line.share_with.get().or_else(|| line.share_token.get());
        return event.target(kind, line.file_id.get(), name);
    }
    match (line.file_id.get(), line.path.get()) {
        (None, None) => event,
        (id, path) => event.target("file", id, path),
    }
}

audit_guest_sdk::golden_fixtures!(Ocis, "ocis");

#[cfg(test)]
mod tests {
    use super::*;

    fn map(line: &str) -> Result<AuditEvent, MappingError> {
        Ocis::map(&Delivery::from_body("ocis", line.as_bytes().to_vec())).map(|m| m.events[0].clone())
    }

    #[test]
    fn a_line_that_is_json_but_not_an_object_is_refused_as_a_shape() {
        assert!(matches!(
            map(r#"["file_read"]"#),
            Err(MappingError::UnsupportedShape(_))
        ));
    }

    #[test]
    fn a_minimal_format_line_says_how_to_fix_it() {
        let err = map("2025-02-13T15:50:18Z user 'x' read file 'y' (file_read)").unwrap_err();
        assert!(
            matches!(&err, MappingError::Malformed(m) if m.contains("AUDIT_FORMAT=json")),
            "{err:?}"
        );
    }

    #[test]
    fn fields_of_other_types_and_spellings_are_read_and_the_rest_skipped() {
        let event = map(
            r#"{"action":"group_member_added","GroupID":4711,"user_id":"u-1","Extra":{"nested":[1,{"x":null}]},"List":[true],"Time":"2025-02-13T15:50:18Z"}"#,
        )
        .unwrap();
        assert_eq!(event.action, "ocis.group_member_added");
        let target = event.target.clone().unwrap();
        assert_eq!(
            (target.id.as_deref(), target.name.as_deref()),
            (Some("u-1"), Some("4711"))
        );
        assert_eq!(event.occurred_at.as_deref(), Some("2025-02-13T15:50:18Z"));
        assert!(
            event.original.get().contains(r#""nested":[1,{"x":null}]"#),
            "the line is kept whole"
        );
    }

    #[test]
    fn several_lines_map_to_one_result_each_in_order_and_a_bad_line_fails_alone() {
        let lines = audit_guest_sdk::FileLines {
            source: "ocis".into(),
            lines: vec![
                b"{\"Action\":\"file_read\",\"FileID\":\"a\"}".to_vec(),
                b"not json".to_vec(),
                b"{\"Action\":\"file_delete\",\"FileID\":\"b\"}".to_vec(),
            ],
            ..Default::default()
        };
        let results = Ocis::map_lines(&lines);
        let actions: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|m| m.events[0].action.as_str()))
            .collect();
        assert_eq!(actions, [Some("ocis.file_read"), None, Some("ocis.file_delete")]);
    }

    #[test]
    fn escaped_text_is_unescaped() {
        let event =
            map(r#"{"Action":"file_read","Message":"user 'a\u00e9b' read","FileID":"f\"1","Success":"yes"}"#).unwrap();
        assert_eq!(event.actor.id.as_deref(), Some("aéb"));
        assert_eq!(event.target.unwrap().id.as_deref(), Some("f\"1"));
    }
}

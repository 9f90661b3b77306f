//! Caps on what a mapper hands back: checked on the lifted answer, before
//! anything of it reaches the pipeline. (The total bytes lifted are capped
//! earlier, while lifting, by the store's hostcall fuel: see `sandbox`.)

use super::Limits;
use super::bindings::wit;

/// Longest mapper name; names are `[a-z0-9_-]{1,64}`.
const NAME_BYTES: usize = 64;
/// Longest mapper version.
const VERSION_BYTES: usize = 64;
/// Most event types a mapper may list, and the longest one.
const EVENT_TYPES: usize = 4096;
const EVENT_TYPE_BYTES: usize = 256;
/// Most query parameters of one page request, and the longest name or value.
const QUERY_PARAMS: usize = 64;
const QUERY_PARAM_BYTES: usize = 4096;

/// Checks `describe`'s answer.
pub(crate) fn info(i: &wit::MapperInfo) -> Result<(), String> {
    let name_ok = (1..=NAME_BYTES).contains(&i.name.len())
        && i.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(format!(
            "describe returned the name `{}`; a mapper name is 1 to {NAME_BYTES} of a-z, 0-9, _ and -",
            shorten(&i.name)
        ));
    }
    if i.version.is_empty() || i.version.len() > VERSION_BYTES || i.version.chars().any(char::is_control) {
        return Err(format!(
            "describe returned the version `{}`; a version is 1 to {VERSION_BYTES} printable bytes",
            shorten(&i.version)
        ));
    }
    if i.event_types.len() > EVENT_TYPES {
        return Err(format!(
            "describe listed {} event types; at most {EVENT_TYPES} are accepted",
            i.event_types.len()
        ));
    }
    if let Some(long) = i.event_types.iter().find(|t| t.len() > EVENT_TYPE_BYTES) {
        return Err(format!(
            "describe listed an event type of {} bytes; at most {EVENT_TYPE_BYTES} are accepted",
            long.len()
        ));
    }
    Ok(())
}

/// Checks one call's mapping answers (one per line of a `map-lines` call).
pub(crate) fn mapped<'a>(
    answers: impl IntoIterator<Item = &'a Result<wit::Mapped, wit::MappingError>>,
    limits: &Limits,
) -> Result<(), String> {
    let mut events = 0usize;
    for answer in answers {
        let Ok(m) = answer else { continue };
        events += m.events.len();
        if events > limits.events_per_call {
            return Err(format!(
                "the mapper returned more than {} events in one call (mapper.max_events_per_call)",
                limits.events_per_call
            ));
        }
        for (n, e) in m.events.iter().enumerate() {
            for (field, value) in fields(e) {
                if value.len() > limits.field_bytes {
                    return Err(format!(
                        "event {n}: `{field}` is {} bytes; a field other than `original` may hold {} (mapper.max_field_bytes)",
                        value.len(),
                        limits.field_bytes
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks `page-query`'s answer.
pub(crate) fn params(p: &[wit::QueryParam]) -> Result<(), String> {
    if p.len() > QUERY_PARAMS {
        return Err(format!(
            "page-query returned {} parameters; at most {QUERY_PARAMS} are accepted",
            p.len()
        ));
    }
    match p
        .iter()
        .find(|q| q.name.len() > QUERY_PARAM_BYTES || q.value.len() > QUERY_PARAM_BYTES)
    {
        Some(q) => Err(format!(
            "page-query returned a parameter `{}` over {QUERY_PARAM_BYTES} bytes",
            shorten(&q.name)
        )),
        None => Ok(()),
    }
}

/// Every capped text field of an event, by name.
fn fields(e: &wit::AuditEvent) -> impl Iterator<Item = (&'static str, &str)> {
    let target = e.target.as_ref();
    [
        ("action", Some(e.action.as_str())),
        ("occurred-at", e.occurred_at.as_deref()),
        ("external-id", e.external_id.as_deref()),
        ("actor.id", e.actor.id.as_deref()),
        ("actor.name", e.actor.name.as_deref()),
        ("actor.email", e.actor.email.as_deref()),
        ("ip", e.ip.as_deref()),
        ("target.kind", target.and_then(|t| t.kind.as_deref())),
        ("target.id", target.and_then(|t| t.id.as_deref())),
        ("target.name", target.and_then(|t| t.name.as_deref())),
        ("tenant-hint", e.tenant_hint.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
}

/// The start of a text too long to quote whole.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_named(name: &str) -> wit::MapperInfo {
        wit::MapperInfo {
            name: name.into(),
            version: "1.0.0".into(),
            event_types: vec![],
        }
    }

    #[test]
    fn mapper_names_are_short_lowercase_words() {
        assert!(info(&info_named("stalwart")).is_ok());
        assert!(info(&info_named("acme-crm_2")).is_ok());
        for bad in ["", "Stalwart", "a b", "../x", &"x".repeat(65)] {
            assert!(info(&info_named(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}

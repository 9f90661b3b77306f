//! Defensive JSON helpers: payloads change shape between versions of a source
//! system, so a mapper should read them with as few assumptions as possible.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

/// The names under which a list of events is commonly found.
const LIST_KEYS: [&str; 6] = ["events", "results", "items", "data", "records", "entries"];

/// Finds the list of events in whatever shape arrives.
///
/// Accepted, in this order: a top-level array; an object with an array under
/// `events`, `results`, `items`, `data`, `records` or `entries` (looked up
/// through one level of nesting, e.g. `{"data":{"events":[...]}}`); any other
/// single object, taken as one event. Anything else yields `None`.
///
/// ```
/// use audit_guest_sdk::json::find_events;
/// use serde_json::json;
/// assert_eq!(find_events(&json!({"events":[1,2]})).unwrap().len(), 2);
/// assert_eq!(find_events(&json!([1])).unwrap().len(), 1);
/// assert_eq!(find_events(&json!({"data":{"items":[1,2,3]}})).unwrap().len(), 3);
/// assert_eq!(find_events(&json!({"type":"auth.success"})).unwrap().len(), 1);
/// assert!(find_events(&json!("text")).is_none());
/// ```
pub fn find_events(value: &Value) -> Option<Vec<&Value>> {
    match value {
        Value::Array(items) => Some(items.iter().collect()),
        Value::Object(map) => {
            for key in LIST_KEYS {
                match map.get(key) {
                    Some(Value::Array(items)) => return Some(items.iter().collect()),
                    Some(inner @ Value::Object(_)) => {
                        if let Some(Value::Array(items)) = LIST_KEYS.iter().find_map(|k| inner.get(*k)) {
                            return Some(items.iter().collect());
                        }
                    }
                    _ => {}
                }
            }
            Some(vec![value])
        }
        _ => None,
    }
}

/// Like [`find_events`], but returns each event's own bytes from the body,
/// untouched: keep them as the original (byte for byte, nothing re-printed)
/// and parse each one for its fields.
///
/// ```
/// use audit_guest_sdk::json::event_slices;
/// let body = br#"{"events":[{"id": 1,  "x":2}, {"id":2}]}"#;
/// let events = event_slices(body).unwrap();
/// assert_eq!(events[0].get(), r#"{"id": 1,  "x":2}"#);
/// assert_eq!(event_slices(br#"[{"a":1}]"#).unwrap().len(), 1);
/// assert_eq!(event_slices(br#"{"data":{"items":[1,2]}}"#).unwrap().len(), 2);
/// assert_eq!(event_slices(br#"{"type":"x"}"#).unwrap()[0].get(), r#"{"type":"x"}"#);
/// assert!(event_slices(b"42").is_none());
/// ```
pub fn event_slices(body: &[u8]) -> Option<Vec<&RawValue>> {
    let text = std::str::from_utf8(body).ok()?;
    // Each branch parses the whole body once (which also validates it).
    match text.trim_start().as_bytes().first()? {
        b'[' => serde_json::from_str(text).ok(),
        b'{' => match list_under(text, true)? {
            Some(list) => Some(list),
            None => Some(vec![serde_json::from_str(text).ok()?]),
        },
        _ => None,
    }
}

fn first_byte(raw: &RawValue) -> Option<u8> {
    raw.get().trim_start().as_bytes().first().copied()
}

/// The list under one of [`LIST_KEYS`] in the JSON object `object`, looking
/// one object deeper if `nested`: `None` if `object` is not a JSON object,
/// `Some(None)` if it is one without such a list.
fn list_under(object: &str, nested: bool) -> Option<Option<Vec<&RawValue>>> {
    let map: BTreeMap<Cow<'_, str>, &RawValue> = serde_json::from_str(object).ok()?;
    for key in LIST_KEYS {
        let Some(inner) = map.get(key) else { continue };
        match first_byte(inner) {
            Some(b'[') => return Some(serde_json::from_str(inner.get()).ok()),
            Some(b'{') if nested => {
                if let Some(Some(found)) = list_under(inner.get(), false) {
                    return Some(Some(found));
                }
            }
            _ => {}
        }
    }
    Some(None)
}

/// Reads a value that is sometimes a string and sometimes a number (or a bool)
/// as text. Integers keep every digit: they never pass through `f64`.
///
/// ```
/// use audit_guest_sdk::json::text;
/// use serde_json::json;
/// assert_eq!(text(&json!("42")).as_deref(), Some("42"));
/// assert_eq!(text(&json!(42)).as_deref(), Some("42"));
/// assert_eq!(text(&json!(1432795264225280001u64)).as_deref(), Some("1432795264225280001"));
/// assert_eq!(text(&json!("")), None);
/// assert_eq!(text(&json!(null)), None);
/// ```
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads a 64-bit unsigned integer given as a JSON number or a decimal string,
/// exactly. Fractions, negatives and numbers beyond `u64` give `None`.
///
/// ```
/// use audit_guest_sdk::json::u64_exact;
/// use serde_json::json;
/// assert_eq!(u64_exact(&json!(9007199254740993u64)), Some(9007199254740993));
/// assert_eq!(u64_exact(&json!("18446744073709551615")), Some(u64::MAX));
/// assert_eq!(u64_exact(&json!(1.5)), None);
/// assert_eq!(u64_exact(&json!("-3")), None);
/// ```
pub fn u64_exact(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Normalises a camelCase, kebab-case, dotted or snake_case name to snake_case.
///
/// ```
/// use audit_guest_sdk::json::snake_case;
/// assert_eq!(snake_case("authentication-ban"), "authentication_ban");
/// assert_eq!(snake_case("accountName"), "account_name");
/// assert_eq!(snake_case("SPF.from-Fail"), "spf_from_fail");
/// assert_eq!(snake_case("already_snake"), "already_snake");
/// assert_eq!(snake_case("HTTPRequest"), "http_request");
/// assert_eq!(snake_case(&snake_case("Тϓ")), snake_case("Тϓ"));
/// ```
pub fn snake_case(name: &str) -> String {
    // Upper case is a letter with a lower-case form of its own: a capital
    // without one (`ϓ`) stays as it is, like a digit, so that snake_case of
    // a snake_case name is that name.
    let upper = |c: char| c.is_uppercase() && !c.to_lowercase().eq(std::iter::once(c));
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '-' || c == '.' || c == ' ' || c == '_' {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
        } else if upper(c) {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && upper(chars[i - 1]);
            if (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Looks a field up by name, accepting camelCase, snake_case and kebab-case
/// spellings of it (`accountName`, `account_name`, `account-name`).
///
/// ```
/// use audit_guest_sdk::json::field;
/// use serde_json::json;
/// let v = json!({"account_name": "jdoe"});
/// assert_eq!(field(&v, "accountName"), Some(&json!("jdoe")));
/// let v = json!({"remote-ip": "192.0.2.1"});
/// assert_eq!(field(&v, "remoteIp"), Some(&json!("192.0.2.1")));
/// ```
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    map.iter().find(|(k, _)| same_name(k, name)).map(|(_, v)| v)
}

/// Whether two names are spellings of one another: equal once separators
/// (`_`, `-`, `.`, space) are dropped and letters compared case-insensitively.
/// Allocation-free, since it runs for every field lookup.
///
/// ```
/// use audit_guest_sdk::json::same_name;
/// assert!(same_name("remote_ip", "remoteIp"));
/// assert!(same_name("Remote-IP", "remoteIp"));
/// assert!(!same_name("remote", "remoteIp"));
/// ```
pub fn same_name(a: &str, b: &str) -> bool {
    // Byte by byte while both sides are ASCII (names almost always are, and
    // most differ in their first letter): no scan of either name first.
    let separator = |c: &u8| matches!(c, b'_' | b'-' | b'.' | b' ');
    let mut x = a.bytes().filter(|c| !separator(c));
    let mut y = b.bytes().filter(|c| !separator(c));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.is_ascii() && q.is_ascii() => {
                if !p.eq_ignore_ascii_case(&q) {
                    return false;
                }
            }
            (Some(_), Some(_)) => return same_name_unicode(a, b),
            (Some(rest), None) | (None, Some(rest)) => return !rest.is_ascii() && same_name_unicode(a, b),
        }
    }
}

/// [`same_name`] with Unicode case folding (`K`, the Kelvin sign, is `k`).
fn same_name_unicode(a: &str, b: &str) -> bool {
    let significant = |c: &char| !matches!(c, '_' | '-' | '.' | ' ');
    let mut a = a.chars().filter(significant).flat_map(char::to_lowercase);
    let mut b = b.chars().filter(significant).flat_map(char::to_lowercase);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// The first of several fields that holds a non-empty text value.
///
/// ```
/// use audit_guest_sdk::json::first_text;
/// use serde_json::json;
/// let v = json!({"login": "", "user": "alice"});
/// assert_eq!(first_text(&v, &["accountName", "login", "user"]).as_deref(), Some("alice"));
/// ```
pub fn first_text(value: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| field(value, n).and_then(text))
}

/// Follows a path of field names (each matched as in [`field`]).
///
/// ```
/// use audit_guest_sdk::json::path;
/// use serde_json::json;
/// let v = json!({"user": {"on_behalf_of": {"username": "bob"}}});
/// assert_eq!(path(&v, &["user", "onBehalfOf", "username"]), Some(&json!("bob")));
/// ```
pub fn path<'a>(value: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().try_fold(value, |v, n| field(v, n))
}

/// Text values of a field that may hold one value or an array of them.
///
/// ```
/// use audit_guest_sdk::json::texts;
/// use serde_json::json;
/// assert_eq!(texts(&json!(["a@x", "b@x"])), vec!["a@x", "b@x"]);
/// assert_eq!(texts(&json!("a@x")), vec!["a@x"]);
/// ```
pub fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod random_input {
    use super::*;

    /// A bounded property test: the defensive helpers accept any JSON value
    /// and any bytes without panicking.
    #[test]
    fn helpers_never_panic_on_random_input() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"events\"",
            "\"results\"",
            "\"data\"",
            "\"id\"",
            "1",
            "-1.5e300",
            "18446744073709551615",
            "18446744073709551616",
            "\"x\"",
            "null",
            "true",
            "\"\\u0000\"",
        ];
        for _ in 0..5000 {
            let text: String = (0..next() % 30)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let _ = event_slices(text.as_bytes());
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = find_events(&value);
                let _ = u64_exact(&value);
                let _ = text_of(&value);
                let _ = first_text(&value, &["id", "type"]);
                let _ = path(&value, &["events", "0", "id"]);
            }
        }
    }

    /// The byte-wise path answers as Unicode case folding does.
    #[test]
    fn same_name_agrees_with_unicode_folding() {
        let names = [
            "remoteIp",
            "remote_ip",
            "REMOTE-IP",
            "remote",
            "remoteIpX",
            "",
            "_",
            "a",
            "A",
            "b",
            "\u{212a}",
            "k",
            "K",
            "\u{130}",
            "i\u{307}",
            "é",
            "É",
            "e",
            "accountName",
            "account.name",
            "Account Name",
            "ß",
            "ss",
        ];
        for a in names {
            for b in names {
                assert_eq!(same_name(a, b), same_name_unicode(a, b), "{a:?} vs {b:?}");
            }
        }
    }

    fn text_of(v: &Value) -> Option<String> {
        text(v)
    }
}

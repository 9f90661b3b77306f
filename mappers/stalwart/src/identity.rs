//! The deduplication key of a Stalwart event.
//!
//! Stalwart's own `id` cannot be used: up to 0.16.10 two events of one type in
//! the same second share it (seen on a real 0.15.5 server with three failed
//! logins), and since 0.16.11 a retried event gets a new one. What does stay
//! the same when Stalwart resends a batch is the event itself: `createdAt`
//! (second precision), `type` and `data` (including `spanId`, `remotePort`
//! and the like, which tell two real logins apart in almost every case).
//!
//! So the key is a SHA-256 over `createdAt`, `type` and `data` in canonical
//! form (object keys sorted, so key order never matters), plus an occurrence
//! number: the n-th event with the same content *within one delivery* gets
//! `:n`. The key starts with `createdAt` in compact form
//! (`20250615150640-<hash>:0`): keys then arrive in roughly increasing order,
//! which keeps the store's unique index writes together instead of scattered. Two genuinely identical events (same second, same connection, same
//! everything) therefore stay two records, and a resend of the batch, which
//! carries both again, produces the same two keys and nothing new.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use audit_guest_sdk::digest::sha256;
use audit_guest_sdk::fields::{self, Object};
use audit_guest_sdk::serde_json::{self, Number, value::RawValue};

/// Counts identical contents within one delivery.
#[derive(Default)]
pub struct Occurrences {
    seen: HashMap<[u8; 16], u32, BuildHasherDefault<DigestPrefix>>,
    /// The bytes hashed for one event, kept for the next one.
    hashed: Vec<u8>,
}

/// The map's keys are already SHA-256 digests: their first eight bytes are
/// the hash (no second hash function over them).
#[derive(Default)]
struct DigestPrefix(u64);

impl Hasher for DigestPrefix {
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Occurrences {
    /// The key of the next event with this content.
    pub fn key(&mut self, created_at: Option<&str>, typ: &str, data: &Object<'_>) -> String {
        let hashed = &mut self.hashed;
        hashed.clear();
        hashed.extend_from_slice(created_at.unwrap_or("").as_bytes());
        hashed.push(0);
        hashed.extend_from_slice(typ.as_bytes());
        hashed.push(0);
        write_object(data, hashed);
        let digest = sha256(hashed);
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        let n = self.seen.entry(short).or_insert(0);
        // `<up to 14 digits of createdAt>-<32 hex digits>:<n>`, built
        // without the formatting machinery (this runs for every event).
        let mut key = String::with_capacity(14 + 1 + 32 + 1 + 10);
        key.extend(created_at.unwrap_or("").chars().filter(char::is_ascii_digit).take(14));
        key.push('-');
        for b in short {
            key.push(HEX[usize::from(b >> 4)] as char);
            key.push(HEX[usize::from(b & 0xf)] as char);
        }
        key.push(':');
        push_decimal(&mut key, u64::from(*n));
        *n += 1;
        key
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the decimal digits of `n`, as `Display` would write them.
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    out.extend(decimal(&mut digits, n).iter().map(|d| *d as char));
}

/// [`push_decimal`] into bytes.
fn push_decimal_bytes(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(&mut digits, n));
}

/// The decimal digits of `n`, at the end of `digits`.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}

/// JSON with object keys sorted at every level (a repeated key once, with
/// its last value), numbers as serde_json prints them, appended to `out`
/// (the bytes to hash); read from the text, without building a tree. The
/// bytes are exactly those of the parsed value printed with sorted keys
/// (`canonical_form_is_that_of_the_parsed_value` checks it), so keys stay
/// the same as the versions that parsed a tree.
fn write_canonical(raw: &RawValue, out: &mut Vec<u8>) {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            if let Some(object) = Object::parse(text) {
                write_object(&object, out);
            }
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).unwrap_or_default();
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Some(b'"') => {
            if let Some(decoded) = fields::string(text) {
                write_name(&decoded, out);
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            if let Ok(n) = serde_json::from_str::<Number>(text) {
                write_number(&n, out);
            }
        }
        // `true`, `false`, `null`, as written.
        _ => out.extend_from_slice(text.as_bytes()),
    }
}

/// An object's members sorted by name, a repeated name once (its last value).
fn write_object(object: &Object<'_>, out: &mut Vec<u8>) {
    let mut members = object.members().to_vec();
    // Stable: of a repeated name, the last stays last.
    members.sort_by(|a, b| a.0.cmp(&b.0));
    out.push(b'{');
    let mut first = true;
    for (i, (name, value)) in members.iter().enumerate() {
        if members.get(i + 1).is_some_and(|next| next.0 == *name) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_name(name, out);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

/// A string read from the text: borrowed means it had no escapes and no
/// control characters (so nothing to escape now: it is written as it was).
#[allow(clippy::ptr_arg, reason = "whether it is borrowed is what matters")]
fn write_name(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        Cow::Borrowed(clean) => {
            out.push(b'"');
            out.extend_from_slice(clean.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(decoded) => write_string(decoded, out),
    }
}

/// A number as serde_json's `Display` writes it; integers without its machinery.
fn write_number(n: &Number, out: &mut Vec<u8>) {
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => push_decimal_bytes(out, u),
        (None, Some(i)) => {
            out.push(b'-');
            push_decimal_bytes(out, i.unsigned_abs());
        }
        _ => out.extend_from_slice(n.to_string().as_bytes()),
    }
}

/// A JSON string: quoted, with `"` and `\` escaped and control characters as `\u00XX`.
fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    // Every byte that needs an escape is ASCII, so bytes can be scanned.
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                other => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(other >> 4)]);
                    out.push(HEX[usize::from(other & 0xf)]);
                }
            }
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_guest_sdk::serde_json::{Value, json};

    fn raw(value: Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
    }

    fn object(text: &str) -> Object<'_> {
        Object::parse(text).unwrap()
    }

    /// The canonical form as the versions that parsed a tree wrote it.
    fn tree_form(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    tree_form(&map[k], out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    tree_form(item, out);
                }
                out.push(b']');
            }
            Value::String(text) => write_string(text, out),
            Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Bool(b) => out.extend_from_slice(b.to_string().as_bytes()),
            Value::Null => out.extend_from_slice(b"null"),
        }
    }

    #[test]
    fn canonical_form_is_that_of_the_parsed_value() {
        let texts = [
            r#"{"z":1,"a":{"y":[1,-2,3.50,1e3,-0,18446744073709551615,-9223372036854775808]},"m":"x"}"#,
            r#"{"k":1,"k":2,"b":{"k":"first","k":"last"},"k":3}"#,
            r#"{"esc\u0061ped":"tab\there \"q\" \u00e9 \\ \u0001","":"","é":true,"E":false,"n":null}"#,
            r#"  {"spaced" :  [ {"b":1 , "a" : 2} , [ ] , { } ]  }  "#,
            r#"{"spanId":1432795268419584001,"remotePort":-7,"x":1.5,"t":[true,null],"accountName":"a@b"}"#,
            r#"[{"b":1,"a":2},"s",7]"#,
            r#""a string""#,
            r#"12.000"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).unwrap();
            let (mut from_text, mut from_tree) = (Vec::new(), Vec::new());
            write_canonical(&serde_json::from_str::<Box<RawValue>>(text).unwrap(), &mut from_text);
            tree_form(&value, &mut from_tree);
            assert_eq!(
                String::from_utf8(from_text).unwrap(),
                String::from_utf8(from_tree).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let mut a = Occurrences::default();
        let mut b = Occurrences::default();
        let k1 = a.key(Some("t"), "auth.failed", &object(r#"{"x":1,"y":2}"#));
        let k2 = b.key(Some("t"), "auth.failed", &object(r#"{"y":2,"x":1}"#));
        assert_eq!(k1, k2);
        let k3 = b.key(Some("t"), "auth.failed", &object(r#"{"y":2,"x":3}"#));
        assert_ne!(k1, k3);
    }

    #[test]
    fn the_canonical_form_is_json_with_sorted_keys() {
        let mut out = Vec::new();
        let value = json!({"b": [1, "x\"y\\z\n"], "a": {"d": null, "c": true}});
        write_canonical(&raw(value.clone()), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#"{"a":{"c":true,"d":null},"b":[1,"x\"y\\z\u000a"]}"#);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reparsed, value);
    }

    /// Keys must never change between versions of this mapper: a batch
    /// Stalwart resends after an upgrade would otherwise be stored twice.
    #[test]
    fn keys_are_stable_across_versions() {
        let mut o = Occurrences::default();
        let text = json!({"accountName": "a@b", "spanId": 1432795268419584001u64, "remotePort": -7, "x": 1.5, "t": [true, null]}).to_string();
        let data = object(&text);
        let first = o.key(Some("2025-06-15T15:06:40Z"), "auth.failed", &data);
        let second = o.key(Some("2025-06-15T15:06:40Z"), "auth.failed", &data);
        assert_eq!(first, "20250615150640-7ab0f891f39f122852a260d3fdb9eb67:0");
        assert_eq!(second, "20250615150640-7ab0f891f39f122852a260d3fdb9eb67:1");
        let mut digits = String::new();
        for n in [0, 9, 10, 1234567890, u64::MAX] {
            digits.clear();
            push_decimal(&mut digits, n);
            assert_eq!(digits, n.to_string());
        }
    }

    #[test]
    fn identical_events_in_one_delivery_get_distinct_keys() {
        let mut o = Occurrences::default();
        let first = o.key(Some("t"), "auth.failed", &object(r#"{"spanId":1}"#));
        let second = o.key(Some("t"), "auth.failed", &object(r#"{"spanId": 1}"#));
        assert_ne!(first, second);
        assert!(first.ends_with(":0") && second.ends_with(":1"));
    }
}

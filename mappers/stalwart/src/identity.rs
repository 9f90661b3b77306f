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
//! `:n`. Two genuinely identical events (same second, same connection, same
//! everything) therefore stay two records, and a resend of the batch, which
//! carries both again, produces the same two keys and nothing new.

use std::collections::HashMap;

use audit_guest_sdk::serde_json::Value;
use sha2::{Digest, Sha256};

/// Counts identical contents within one delivery.
#[derive(Default)]
pub struct Occurrences {
    seen: HashMap<[u8; 16], u32>,
}

impl Occurrences {
    /// The key of the next event with this content.
    pub fn key(&mut self, created_at: Option<&str>, typ: &str, data: &Value) -> String {
        let mut hasher = Sha256::new();
        hasher.update(created_at.unwrap_or("").as_bytes());
        hasher.update([0]);
        hasher.update(typ.as_bytes());
        hasher.update([0]);
        let mut canonical = String::new();
        write_canonical(data, &mut canonical);
        hasher.update(canonical.as_bytes());
        let digest = hasher.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        let n = self.seen.entry(short).or_insert(0);
        let key = format!("{}:{}", hex(&short), n);
        *n += 1;
        key
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted at every level; numbers as written.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_guest_sdk::serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let mut a = Occurrences::default();
        let mut b = Occurrences::default();
        let k1 = a.key(Some("t"), "auth.failed", &json!({"x": 1, "y": 2}));
        let k2 = b.key(Some("t"), "auth.failed", &json!({"y": 2, "x": 1}));
        assert_eq!(k1, k2);
        let k3 = b.key(Some("t"), "auth.failed", &json!({"y": 2, "x": 3}));
        assert_ne!(k1, k3);
    }

    #[test]
    fn identical_events_in_one_delivery_get_distinct_keys() {
        let mut o = Occurrences::default();
        let first = o.key(Some("t"), "auth.failed", &json!({"spanId": 1}));
        let second = o.key(Some("t"), "auth.failed", &json!({"spanId": 1}));
        assert_ne!(first, second);
        assert!(first.ends_with(":0") && second.ends_with(":1"));
    }
}

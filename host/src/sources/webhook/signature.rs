//! Authenticating a webhook request before anything reads its body.
//!
//! Every scheme compares in constant time over the exact raw bytes. One
//! configurable HMAC scheme covers Stalwart (`X-Signature`, base64, no
//! prefix) and GitHub-style senders (`X-Hub-Signature-256`, hex, `sha256=`);
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! adds a replay window; bearer and basic cover senders that only send a
//! shared credential.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Standard base64 with padding (Stalwart).
    Base64,
    /// Lower- or upper-case hex (GitHub).
    Hex,
}

/// A ready-to-use verifier (secrets resolved).
#[derive(Debug, Clone)]
pub enum Verifier {
    /// HMAC-SHA256 of the raw body in one header.
    Hmac {
        /// Header name.
        header: String,
        /// How the tag is encoded.
        encoding: Encoding,
        /// A prefix before the encoded tag, e.g. `sha256=`.
        prefix: String,
        /// The key (its UTF-8 bytes are the HMAC key).
        key: Secret,
    },
    /// Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`, `v1,` signatures.
    StandardWebhooks {
        /// The decoded key bytes (from `whsec_<base64>` or raw).
        key: Vec<u8>,
        /// Accepted clock difference.
        tolerance: Duration,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The expected `user:password`.
        credentials: Secret,
    },
    /// No authentication at all: only with an explicit opt-in.
    Unsigned,
    /// Authentication is configured but its secret is missing: refuse everything.
    MissingSecret(String),
}

/// Why a request was refused. The message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature or credential was sent.
    #[error("missing {0}")]
    Missing(String),
    /// It was sent but does not verify.
    #[error("the {0} does not match the body")]
    Mismatch(String),
    /// Standard Webhooks timestamp outside the window.
    #[error("the webhook timestamp is outside the accepted window")]
    Stale,
    /// The server has no secret for this endpoint.
    #[error("this endpoint has no secret configured ({0})")]
    NotConfigured(String),
}

impl Refusal {
    /// What the sender is told: the reason, without how the server is set
    /// up (which secret file or variable is missing goes to the log only).
    pub fn public_message(&self) -> String {
        match self {
            Refusal::NotConfigured(_) => "this endpoint is not set up to accept requests".into(),
            other => other.to_string(),
        }
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Base64 => STANDARD.decode(text).ok(),
        Encoding::Hex => {
            if !text.len().is_multiple_of(2) || !text.is_ascii() {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
                .collect()
        }
    }
}

/// A Standard Webhooks timestamp within `tolerance` of `now` (any `i64`
/// either side: the difference is taken in 128 bits, so it cannot overflow).
fn within_window(ts: &str, now: i64, tolerance: Duration) -> Result<(), Refusal> {
    let ts: i64 = ts.parse().map_err(|_| Refusal::Mismatch("webhook-timestamp".into()))?;
    if (i128::from(now) - i128::from(ts)).unsigned_abs() > u128::from(tolerance.as_secs()) {
        return Err(Refusal::Stale);
    }
    Ok(())
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| Refusal::Missing(format!("{name} header")))?;
    if values.next().is_some() {
        // Two signatures for one body: refuse rather than guess which one counts.
        return Err(Refusal::Mismatch(format!("{name} header (sent more than once)")));
    }
    first
        .to_str()
        .map(str::trim)
        .map_err(|_| Refusal::Mismatch(format!("{name} header")))
}

impl Verifier {
    /// What can be checked before the body is read: the credential header is
    /// there, once, and well-formed (an HMAC tag of 32 bytes, a Standard
    /// Webhooks timestamp inside the window); bearer and basic credentials,
    /// which do not depend on the body, are checked whole. A request that
    /// fails here is refused without reading its body.
    pub fn precheck(&self, headers: &HeaderMap, now: i64) -> Result<(), Refusal> {
        match self {
            Verifier::Hmac {
                header,
                encoding,
                prefix,
                ..
            } => {
                let value = single_header(headers, header)?;
                let what = || format!("signature in {header}");
                let tag = value
                    .strip_prefix(prefix.as_str())
                    .and_then(|encoded| decode(*encoding, encoded.trim()))
                    .ok_or_else(|| Refusal::Mismatch(what()))?;
                if tag.len() == 32 {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch(what()))
                }
            }
            Verifier::StandardWebhooks { tolerance, .. } => {
                single_header(headers, "webhook-id")?;
                let ts = single_header(headers, "webhook-timestamp")?;
                within_window(ts, now, *tolerance)?;
                let sigs = single_header(headers, "webhook-signature")?;
                let well_formed = sigs.split_whitespace().any(|sig| {
                    sig.strip_prefix("v1,")
                        .and_then(|b64| decode(Encoding::Base64, b64))
                        .is_some_and(|tag| tag.len() == 32)
                });
                if well_formed {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch("webhook-signature".into()))
                }
            }
            Verifier::Bearer(_) | Verifier::Basic { .. } | Verifier::Unsigned | Verifier::MissingSecret(_) => {
                self.verify(headers, &[], now)
            }
        }
    }

    /// Checks the request; `now` is the current Unix time in seconds.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refusal> {
        match self {
            Verifier::Hmac {
                header,
                encoding,
                prefix,
                key,
            } => {
                let value = single_header(headers, header)?;
                // The MAC is computed before the header is even decoded, so a
                // garbage signature costs as long as a near miss.
                let expected = mac(key.expose().as_bytes(), &[body]);
                let what = || format!("signature in {header}");
                let encoded = value
                    .strip_prefix(prefix.as_str())
                    .ok_or_else(|| Refusal::Mismatch(what()))?;
                let given = decode(*encoding, encoded.trim()).ok_or_else(|| Refusal::Mismatch(what()))?;
                if bool::from(given.as_slice().ct_eq(&expected)) {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch(what()))
                }
            }
            Verifier::StandardWebhooks { key, tolerance } => {
                let id = single_header(headers, "webhook-id")?;
                let ts = single_header(headers, "webhook-timestamp")?;
                let sigs = single_header(headers, "webhook-signature")?;
                within_window(ts, now, *tolerance)?;
                let expected = mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                // Several space-separated signatures may be sent during key rotation.
                let mut ok = subtle::Choice::from(0);
                for sig in sigs.split_whitespace() {
                    if let Some(b64) = sig.strip_prefix("v1,")
                        && let Some(given) = decode(Encoding::Base64, b64)
                    {
                        ok |= given.as_slice().ct_eq(&expected);
                    }
                }
                if bool::from(ok) {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch("webhook-signature".into()))
                }
            }
            Verifier::Bearer(token) => {
                let value = single_header(headers, "authorization")?;
                let given = value
                    .strip_prefix("Bearer ")
                    .ok_or_else(|| Refusal::Missing("bearer token".into()))?;
                if bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes())) {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch("bearer token".into()))
                }
            }
            Verifier::Basic { credentials } => {
                let value = single_header(headers, "authorization")?;
                let given = value
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b.trim()).ok())
                    .ok_or_else(|| Refusal::Missing("basic credentials".into()))?;
                if bool::from(given.as_slice().ct_eq(credentials.expose().as_bytes())) {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch("basic credentials".into()))
                }
            }
            Verifier::Unsigned => Ok(()),
            Verifier::MissingSecret(hint) => Err(Refusal::NotConfigured(hint.clone())),
        }
    }
}

/// Decodes a Standard Webhooks secret: `whsec_<base64>`, or raw bytes otherwise.
pub fn standard_webhooks_key(secret: &Secret) -> Vec<u8> {
    let text = secret.expose();
    text.strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// Signs a body the way Stalwart does (for tests and the load generator).
#[cfg(any(test, feature = "test-support"))]
pub fn stalwart_signature(key: &str, body: &[u8]) -> String {
    STANDARD.encode(mac(key.as_bytes(), &[body]))
}

/// Hex HMAC-SHA256 (GitHub style, without the prefix), for tests.
#[cfg(any(test, feature = "test-support"))]
pub fn hex_signature(key: &str, body: &[u8]) -> String {
    mac(key.as_bytes(), &[body])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Standard Webhooks `v1,` signature, for tests.
#[cfg(any(test, feature = "test-support"))]
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "v1,{}",
        STANDARD.encode(mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn stalwart(key: &str) -> Verifier {
        Verifier::Hmac {
            header: "x-signature".into(),
            encoding: Encoding::Base64,
            prefix: String::new(),
            key: Secret::new(key),
        }
    }

    #[test]
    fn stalwart_base64_signature_over_the_raw_body() {
        let body = br#"{"events":[]}"#;
        let sig = stalwart_signature("s3cret", body);
        assert_eq!(sig.len(), 44);
        let v = stalwart("s3cret");
        assert_eq!(v.verify(&headers(&[("X-Signature", &sig)]), body, 0), Ok(()));
        // Hex instead of base64, a changed body, a missing or doubled header: refused.
        let hex = hex_signature("s3cret", body);
        assert!(v.verify(&headers(&[("x-signature", &hex)]), body, 0).is_err());
        assert!(
            v.verify(&headers(&[("x-signature", &sig)]), br#"{"events": []}"#, 0)
                .is_err()
        );
        assert!(matches!(v.verify(&headers(&[]), body, 0), Err(Refusal::Missing(_))));
        let doubled = headers(&[("x-signature", &sig), ("x-signature", &sig)]);
        assert!(v.verify(&doubled, body, 0).is_err());
    }

    #[test]
    fn github_style_hex_with_prefix() {
        let v = Verifier::Hmac {
            header: "x-hub-signature-256".into(),
            encoding: Encoding::Hex,
            prefix: "sha256=".into(),
            key: Secret::new("k"),
        };
        let body = b"{}";
        let good = format!("sha256={}", hex_signature("k", body));
        assert_eq!(v.verify(&headers(&[("X-Hub-Signature-256", &good)]), body, 0), Ok(()));
        let no_prefix = hex_signature("k", body);
        assert!(
            v.verify(&headers(&[("X-Hub-Signature-256", &no_prefix)]), body, 0)
                .is_err()
        );
    }

    #[test]
    fn standard_webhooks_with_replay_window() {
        let key = standard_webhooks_key(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        let v = Verifier::StandardWebhooks {
            key: key.clone(),
            tolerance: Duration::from_secs(300),
        };
        let body = b"{\"a\":1}";
        let sig = standard_webhooks_signature(&key, "msg_1", 1_700_000_000, body);
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &format!("v1,bm90IGl0 {sig}")),
        ]);
        assert_eq!(v.verify(&h, body, 1_700_000_100), Ok(()));
        assert_eq!(v.verify(&h, body, 1_700_000_301), Err(Refusal::Stale));
        assert!(v.verify(&h, b"{\"a\":2}", 1_700_000_100).is_err());
    }

    #[test]
    fn a_missing_secret_refuses_everything() {
        let v = Verifier::MissingSecret("set STALWART_WEBHOOK_SECRET".into());
        assert!(matches!(
            v.verify(&HeaderMap::new(), b"", 0),
            Err(Refusal::NotConfigured(_))
        ));
    }
}

//! The webhook source: `POST /ingest/<source>/webhook`, configured, not coded.
//!
//! For each request: refuse a missing or malformed credential (401) and a
//! declared body over the limit (413) before reading the body; read it under
//! a deadline (408) and the service's budget of body bytes (503); verify the
//! signature over the raw bytes before anything parses them (401, nothing
//! stored, nothing of the body logged); map with the source's
//! mapper; write the events; answer 200 with the counts only after the store
//! committed. A correctly signed body the mapper cannot map is kept as a
//! dead letter for re-mapping and answered 202, so the sender does not retry
//! it forever. A store that cannot commit gets a 503 with `Retry-After`.

pub mod seen;
pub mod signature;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::event::Transport;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::api::{AppError, AppState};
use crate::config::{ConfigError, SecretSource};
use crate::ingest::{Delivered, Received};
use signature::{Encoding, Verifier};

/// Default body limit: 16 MiB (a Stalwart batch after a long outage can be large).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// How a sender authenticates (`[webhooks.auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HMAC-SHA256 of the raw body in one header.
    Hmac {
        /// Header name (`X-Signature` for Stalwart, `X-Hub-Signature-256` for GitHub).
        header: String,
        /// `base64` (Stalwart) or `hex` (GitHub).
        encoding: Encoding,
        /// Text before the encoded tag (`sha256=` for GitHub).
        #[serde(default)]
        prefix: String,
        /// The shared secret; its UTF-8 bytes are the key.
        secret: SecretSource,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks {
        /// The `whsec_…` secret.
        secret: SecretSource,
        /// Replay window, seconds (default 300).
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretSource,
    },
    /// `Authorization: Basic …`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretSource,
    },
    /// No authentication. Anyone who can reach the port can write audit
    /// records: only for a sender that cannot sign, on a trusted network.
    Unsigned,
}

fn default_tolerance() -> u64 {
    300
}

/// The widest Standard Webhooks replay window accepted: a day.
const MAX_TOLERANCE_SECS: u64 = 86_400;
/// The largest body limit an endpoint may set: 1 GiB.
const MAX_BODY_CEILING: usize = 1 << 30;
/// Shortest shared secret or token accepted.
const MIN_SECRET_BYTES: usize = 16;

/// A secret of `len` bytes at `key` is long enough to resist guessing.
fn strong_enough(key: &str, len: usize) -> Result<(), ConfigError> {
    if len < MIN_SECRET_BYTES {
        return Err(ConfigError::new(
            key,
            format!(
                "the secret is {len} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 32`)"
            ),
        ));
    }
    Ok(())
}

/// One webhook endpoint (`[[webhooks]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The source name records are stored under.
    pub source: String,
    /// The mapper to use (default: the source name).
    #[serde(default)]
    pub mapper: Option<String>,
    /// The path (default `/ingest/<source>/webhook`).
    #[serde(default)]
    pub path: Option<String>,
    /// Whether the endpoint exists (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Largest accepted body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Authentication.
    pub auth: AuthConfig,
}

fn yes() -> bool {
    true
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

impl Config {
    /// An endpoint for `source` with `auth` and every other setting at its default.
    pub fn new(source: &str, auth: AuthConfig) -> Config {
        Config {
            source: source.into(),
            mapper: None,
            path: None,
            enabled: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            trusted_proxies: Vec::new(),
            auth,
        }
    }

    /// The path this endpoint is served at.
    pub fn route(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/ingest/{}/webhook", self.source))
    }

    /// Resolves secrets and checks values; errors name the key.
    pub fn resolve(&self) -> Result<Endpoint, ConfigError> {
        let key = format!("webhooks[{}]", self.source);
        crate::config::check_source_name(&key, &self.source)?;
        if !self.route().starts_with('/') {
            return Err(ConfigError::new(format!("{key}.path"), "must start with /"));
        }
        if !(1..=MAX_BODY_CEILING).contains(&self.max_body_bytes) {
            return Err(ConfigError::new(
                format!("{key}.max_body_bytes"),
                format!("expected 1 to {MAX_BODY_CEILING} bytes"),
            ));
        }
        let trusted = self
            .trusted_proxies
            .iter()
            .map(|p| {
                Cidr::parse(p).ok_or_else(|| {
                    ConfigError::new(
                        format!("{key}.trusted_proxies"),
                        format!("`{p}` is not an address or CIDR"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let missing = |what: &str, src: &SecretSource| {
            let hint = match (&src.env, &src.file) {
                (_, Some(f)) => format!("set {what} in {}", f.display()),
                (Some(e), None) => format!("set {e}"),
                (None, None) => format!("configure {key}.auth.{what}"),
            };
            Verifier::MissingSecret(hint)
        };
        let verifier = match &self.auth {
            AuthConfig::Hmac {
                header,
                encoding,
                prefix,
                secret,
            } => match secret.resolve(&format!("{key}.auth.secret"))? {
                Some(k) if k.expose().len() < MIN_SECRET_BYTES => {
                    return Err(strong_enough(&format!("{key}.auth.secret"), k.expose().len()).unwrap_err());
                }
                Some(k) => Verifier::Hmac {
                    header: header.to_ascii_lowercase(),
                    encoding: *encoding,
                    prefix: prefix.clone(),
                    key: k,
                },
                None => missing("secret", secret),
            },
            AuthConfig::StandardWebhooks { secret, tolerance_secs } => {
                if !(1..=MAX_TOLERANCE_SECS).contains(tolerance_secs) {
                    return Err(ConfigError::new(
                        format!("{key}.auth.tolerance_secs"),
                        format!("expected 1 to {MAX_TOLERANCE_SECS} seconds"),
                    ));
                }
                match secret.resolve(&format!("{key}.auth.secret"))? {
                    Some(k) => {
                        let text = k.expose();
                        let decoded = match text.strip_prefix("whsec_") {
                            Some(b64) => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                                .map_err(|_| {
                                    ConfigError::new(
                                        format!("{key}.auth.secret"),
                                        "a `whsec_` secret must be followed by base64",
                                    )
                                })?,
                            None => text.as_bytes().to_vec(),
                        };
                        strong_enough(&format!("{key}.auth.secret"), decoded.len())?;
                        Verifier::StandardWebhooks {
                            key: decoded,
                            tolerance: Duration::from_secs(*tolerance_secs),
                        }
                    }
                    None => missing("secret", secret),
                }
            }
            AuthConfig::Bearer { token } => match token.resolve(&format!("{key}.auth.token"))? {
                Some(t) => {
                    strong_enough(&format!("{key}.auth.token"), t.expose().len())?;
                    Verifier::Bearer(t)
                }
                None => missing("token", token),
            },
            AuthConfig::Basic { username, password } => match password.resolve(&format!("{key}.auth.password"))? {
                Some(p) if p.expose().len() < MIN_SECRET_BYTES => {
                    return Err(strong_enough(&format!("{key}.auth.password"), p.expose().len()).unwrap_err());
                }
                Some(p) => Verifier::Basic {
                    credentials: crate::config::Secret::new(format!("{username}:{}", p.expose())),
                },
                None => missing("password", password),
            },
            AuthConfig::Unsigned => Verifier::Unsigned,
        };
        let seen = match &verifier {
            Verifier::StandardWebhooks { tolerance, .. } => Some(Arc::new(seen::SeenIds::new(tolerance.as_secs()))),
            _ => None,
        };
        Ok(Endpoint {
            seen,
            source: self.source.clone(),
            mapper: self.mapper.clone().unwrap_or_else(|| self.source.clone()),
            path: self.route(),
            max_body_bytes: self.max_body_bytes,
            trusted_proxies: trusted,
            verifier,
        })
    }
}

/// A resolved endpoint, ready to serve.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Source name.
    pub source: String,
    /// Mapper name.
    pub mapper: String,
    /// Route path.
    pub path: String,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Proxies trusted for `X-Forwarded-For`.
    pub trusted_proxies: Vec<Cidr>,
    /// Authentication.
    pub verifier: Verifier,
    /// Standard Webhooks: message ids handled within the replay window.
    pub seen: Option<Arc<seen::SeenIds>>,
}

/// An address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net: addr, bits })
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The sender's address: the peer, or, when the peer is a trusted proxy,
/// the first hop of `X-Forwarded-For` from the right that is not a trusted
/// proxy. Hops are read as proxies write them (`ip`, `ip:port`, `[v6]`,
/// `[v6]:port`); a hop that is no address (`unknown`, an obfuscated name,
/// garbage) ends the walk with the sender unknown, because everything left
/// of it was written by someone no trusted proxy vouches for. When every
/// hop is a trusted proxy, the leftmost one is the sender.
pub(crate) fn sender(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match forwarded_hop(hop) {
            Some(ip) if is_trusted(ip) => nearest = ip,
            Some(ip) => return Some(ip),
            None => return None,
        }
    }
    Some(nearest)
}

/// One `X-Forwarded-For` hop as an address, without its port or brackets.
fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        return if port_ok { inside.parse().ok() } else { None };
    }
    // `v4:port` (a bare v6 address has parsed above)
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The routes of every enabled endpoint.
pub fn routes(endpoints: &[Endpoint]) -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for endpoint in endpoints {
        let ep = Arc::new(endpoint.clone());
        router = router.route(
            &endpoint.path,
            post(move |state: State<AppState>, request: Request| receive(state, ep.clone(), request)),
        );
    }
    router
}

/// The counts a successful delivery is answered with.
#[derive(Debug, Serialize)]
struct Receipt {
    received: usize,
    inserted: u64,
    duplicates: u64,
    /// Records the store cannot hold, each kept as a dead letter of its own.
    #[serde(rename = "deadLettered", skip_serializing_if = "is_zero")]
    dead_lettered: usize,
    /// A Standard Webhooks message already handled within the window.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

async fn receive(State(state): State<AppState>, endpoint: Arc<Endpoint>, request: Request) -> Response {
    match accept(&state, &endpoint, request).await {
        Ok(receipt) => Json(receipt).into_response(),
        Err(answer) => answer.into_response(),
    }
}

/// One webhook request, from the headers to the answer. Cheap refusals
/// come first: credentials that cannot verify and declared sizes over the
/// limit are refused before a byte of the body is read; the body is read
/// under the intake's deadline and byte budget; only a verified request
/// takes one of the ingest slots that bound the work in flight.
async fn accept(state: &AppState, endpoint: &Endpoint, request: Request) -> Result<Receipt, AppError> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let (parts, body) = request.into_parts();
    let from = sender(peer, &parts.headers, &endpoint.trusted_proxies);
    let now = Utc::now().timestamp();
    let refused = |refusal: signature::Refusal| {
        let metrics = state.pipeline.telemetry().source(&endpoint.source);
        let unsigned = matches!(refusal, signature::Refusal::Missing(_));
        if metrics.refused(unsigned) {
            let sender = from.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
            let total = metrics.rejected_signature.load(std::sync::atomic::Ordering::Relaxed);
            // Unsigned is not an attacker's wrong guess: the sender is not
            // signing at all. Stalwart 0.16 posts unsigned when its signature
            // key cannot be read (an unset environment variable, say).
            let (what, hint) = if unsigned {
                (
                    "unsigned requests",
                    "; the sender is not signing, so check its signing key (docs/stalwart.md, \"When nothing arrives\")",
                )
            } else {
                ("bad signature", "")
            };
            tracing::warn!(
                source = %endpoint.source, sender = %sender, reason = %refusal, refused_total = total,
                "webhook refused: {what} from {sender}{hint} (logged at most once a second per source)"
            );
        }
        AppError::Unauthorized(refusal.public_message())
    };
    endpoint.verifier.precheck(&parts.headers, now).map_err(refused)?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > endpoint.max_body_bytes as u64) {
        return Err(AppError::PayloadTooLarge(endpoint.max_body_bytes as u64));
    }
    let (body, _held) = state.intake.read(body, endpoint.max_body_bytes).await?;
    endpoint.verifier.verify(&parts.headers, &body, now).map_err(refused)?;
    let message_id = endpoint.seen.as_ref().and_then(|seen| {
        let id = parts.headers.get("webhook-id")?.to_str().ok()?.to_string();
        Some((seen.clone(), id))
    });
    if let Some((seen, id)) = &message_id
        && seen.contains(id, now)
    {
        tracing::info!(source = %endpoint.source, webhook_id = %id, "replayed message acknowledged, not stored again");
        return Ok(Receipt {
            received: 0,
            inserted: 0,
            duplicates: 0,
            dead_lettered: 0,
            replayed: true,
        });
    }
    // Backpressure: a bounded number of verified requests in flight; beyond
    // it the sender retries later (Stalwart retries for minutes).
    let Ok(_slot) = state.ingest_slots.clone().try_acquire_owned() else {
        tracing::warn!(source = %endpoint.source, "webhook refused: every ingest slot is busy (429)");
        return Err(AppError::TooManyRequests {
            retry_after_secs: 1,
            message: "too many requests in flight; retry after 1 s".into(),
        });
    };
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.to_ascii_lowercase().contains("json")
    {
        return Err(AppError::UnsupportedMediaType(format!(
            "content type `{ct}` is not JSON"
        )));
    }
    let received = Received::now(&endpoint.source, from.map(|ip| ip.to_string()));
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_credential(name.as_str()))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let delivery = received.delivery(Transport::Webhook, headers, received.sender.clone(), body.into());
    let delivered = state.pipeline.deliver(&endpoint.mapper, received, delivery).await?;
    // Handled for good (stored, or kept as a dead letter): a replay of this
    // message id is acknowledged from now on.
    if let (Some((seen, id)), Delivered::Written { .. } | Delivered::DeadLettered { .. }) = (&message_id, &delivered) {
        seen.remember(id, now);
    }
    match delivered {
        Delivered::Written { received, summary } => Ok(Receipt {
            received,
            inserted: summary.inserted,
            duplicates: summary.duplicates,
            dead_lettered: summary.refused.len(),
            replayed: false,
        }),
        Delivered::DeadLettered { id, .. } => Err(AppError::DeadLettered { id }),
        Delivered::Busy(why) => Err(AppError::MapperBusy(why.to_string())),
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Headers that carry credentials are not passed to mappers or kept.
fn is_credential(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(sender(Some(proxy), &h, &trusted), "203.0.113.9".parse().ok());
        assert_eq!(sender(Some(stranger), &h, &trusted), Some(stranger));
        assert_eq!(sender(Some(proxy), &HeaderMap::new(), &trusted), Some(proxy));
    }

    #[test]
    fn forwarded_hops_with_ports_brackets_and_unknowns() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let with = |xff: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", xff.parse().unwrap());
            sender(Some(proxy), &h, &trusted)
        };
        assert_eq!(with("203.0.113.9:4711, 10.1.2.3"), "203.0.113.9".parse().ok());
        assert_eq!(with("[2001:db8::7]:443, 10.1.2.3:80"), "2001:db8::7".parse().ok());
        assert_eq!(with("[2001:db8::7]"), "2001:db8::7".parse().ok());
        assert_eq!(with("2001:db8::8"), "2001:db8::8".parse().ok());
        // A forged address left of a hop no proxy vouches for is not believed.
        assert_eq!(with("198.51.100.1, unknown, 10.1.2.3"), None);
        assert_eq!(with("198.51.100.1, 203.0.113.9:99999"), None);
        assert_eq!(with("1.2.3.4, [::1"), None);
        // Only trusted hops: the leftmost is the sender.
        assert_eq!(with("10.9.9.9, 10.1.2.3"), "10.9.9.9".parse().ok());
        // Forged hops left of the real client are ignored.
        assert_eq!(with("6.6.6.6, 203.0.113.9, 10.1.2.3"), "203.0.113.9".parse().ok());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(c.contains("192.168.4.5".parse().unwrap()));
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}

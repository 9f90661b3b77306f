//! OpenID Connect access tokens (`[api.oidc]`), e.g. from an authentik
//! OAuth2 provider.
//!
//! The issuer's discovery document names its JWKS; both are fetched on the
//! first token (so the service starts while the issuer is down), with a
//! deadline and a byte bound. Keys are cached and fetched again every
//! `jwks_refresh_secs`, and at once (at most every `jwks_min_refetch_secs`)
//! when a token names a key the cache does not hold: an issuer that rotates
//! its keys needs no restart. When a fetch fails the cached keys stay.
//!
//! Checked on every token: the signature with RS256, ES256 or EdDSA (never
//! `none` or an HMAC algorithm, whose "secret" would be the public key), the
//! key's type matching the token's algorithm, `iss`, `aud`, `exp` and `nbf`
//! (with `leeway_secs`), and a subject. The groups claim then decides:
//! `reader_group` reads every tenant, `admin_group` may replay, `metrics_group`
//! reads metrics, and every other group that names a known tenant (other
//! than the `not_tenant_groups`, the same admin groups the poller skips)
//! reads that tenant.
//!
//! A token that passed is remembered (see [`super::verified`]) until it
//! expires or the keys are due for a refresh, so repeating it costs a hash,
//! not a signature check.
//!
//! Library: `jsonwebtoken` 9, the most used JOSE crate for Rust, with
//! signatures by `ring`, which the service already links for TLS (no second
//! crypto stack to build or audit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::verified::{Verified, VerifiedTokens};
use super::{Caller, Credential, Grants, Refused};
use crate::config::ConfigError;
use crate::ingest::Tenants;
use crate::store::TenantScope;

/// `[api.oidc]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The issuer, exactly as in its tokens' `iss` (authentik:
    /// `https://<host>/application/o/<application slug>/`).
    pub issuer: String,
    /// The audience tokens must name (authentik: the provider's client id).
    pub audience: String,
    /// The claim holding the caller's group names.
    pub groups_claim: String,
    /// Members read every tenant.
    pub reader_group: String,
    /// Members may replay dead letters.
    pub admin_group: String,
    /// Members may read `/metrics` and `/readyz` details when protected.
    pub metrics_group: String,
    /// Groups that never name a tenant (case-insensitive).
    pub not_tenant_groups: Vec<String>,
    /// Clock difference allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Keys are fetched again after this long, seconds.
    pub jwks_refresh_secs: u64,
    /// An unknown key id fetches the keys again at most this often, seconds.
    pub jwks_min_refetch_secs: u64,
    /// The discovery document, when not at the issuer's
    /// `.well-known/openid-configuration`.
    pub discovery_url: Option<String>,
    /// The OAuth2 client the web page signs in with (authorization code
    /// with PKCE, a public client whose redirect URI is the service's
    /// `/ui/`); none: the page offers token sign-in only. Its access tokens
    /// must carry `audience` (authentik: the same provider, so the same
    /// client id).
    pub web_client_id: Option<String>,
    /// The scopes the web page asks for.
    pub web_scopes: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: String::new(),
            audience: String::new(),
            groups_claim: "groups".into(),
            reader_group: "audit-reader".into(),
            admin_group: "audit-admin".into(),
            metrics_group: "audit-metrics".into(),
            not_tenant_groups: crate::sources::poll::tenants::LookupConfig::default().admin_groups,
            leeway_secs: 30,
            jwks_refresh_secs: 600,
            jwks_min_refetch_secs: 10,
            discovery_url: None,
            web_client_id: None,
            web_scopes: "openid profile email".into(),
        }
    }
}

/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// The most keys kept from one key set.
const MAX_KEYS: usize = 64;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest token looked at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl Config {
    /// Checks the entries, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = |key: &str, value: &str| -> Result<(), ConfigError> {
            let parsed = reqwest::Url::parse(value)
                .map_err(|e| ConfigError::new(format!("api.oidc.{key}"), format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(ConfigError::new(format!("api.oidc.{key}"), "use an https:// URL"));
            }
            Ok(())
        };
        url("issuer", &self.issuer)?;
        if let Some(d) = &self.discovery_url {
            url("discovery_url", d)?;
        }
        if self.audience.trim().is_empty() {
            return Err(ConfigError::new(
                "api.oidc.audience",
                "name the audience tokens must carry (authentik: the provider's client id)",
            ));
        }
        for (key, value) in [
            ("groups_claim", &self.groups_claim),
            ("reader_group", &self.reader_group),
            ("admin_group", &self.admin_group),
            ("metrics_group", &self.metrics_group),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(format!("api.oidc.{key}"), "must not be empty"));
            }
        }
        if self.leeway_secs > 300 {
            return Err(ConfigError::new("api.oidc.leeway_secs", "use 0 to 300"));
        }
        if !(10..=86_400).contains(&self.jwks_refresh_secs) {
            return Err(ConfigError::new("api.oidc.jwks_refresh_secs", "use 10 to 86400"));
        }
        if self.web_client_id.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(ConfigError::new(
                "api.oidc.web_client_id",
                "name the page's client id, or leave the key out",
            ));
        }
        if self.jwks_min_refetch_secs > 3600 {
            return Err(ConfigError::new("api.oidc.jwks_min_refetch_secs", "use 0 to 3600"));
        }
        Ok(())
    }

    fn discovery(&self) -> String {
        self.discovery_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/')))
    }
}

/// Whether `text` has the shape of a JWS compact token (three base64url
/// parts), so other credentials are not parsed as one.
pub fn looks_like_jwt(text: &str) -> bool {
    text.len() <= MAX_TOKEN_BYTES
        && text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    /// By `kid`; a key without one is kept under "".
    keys: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
}

/// Verifies access tokens of one issuer.
pub struct Verifier {
    config: Config,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Held while fetching (one fetch at a time); the last attempt's time.
    fetching: Mutex<Option<Instant>>,
    /// What the discovery document said, once it was read.
    discovered: RwLock<Option<Discovered>>,
    /// The last discovery attempt for the web page, so an anonymous
    /// `/ui/config.json` cannot make the service hammer the issuer.
    web_attempt: Mutex<Option<Instant>>,
    /// Tokens that passed, so a repeated token skips its signature check.
    verified: VerifiedTokens,
}

/// The parts of the discovery document the service uses.
#[derive(Debug, Clone)]
struct Discovered {
    jwks_uri: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

/// What the web page needs to sign in with the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSignIn {
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the page exchanges the code (with its PKCE verifier).
    pub token_endpoint: String,
    /// The page's client id.
    pub client_id: String,
    /// The scopes it asks for.
    pub scope: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    preferred_username: Option<String>,
    exp: Option<Value>,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

fn refused(detail: impl Into<String>) -> Refused {
    Refused::new("the bearer token is not valid", detail)
}

impl Verifier {
    /// A verifier for a checked configuration.
    pub fn new(config: Config) -> Result<Verifier, ConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| ConfigError::new("api.oidc", format!("cannot build an HTTP client: {e}")))?;
        Ok(Verifier {
            config,
            http,
            keys: RwLock::new(KeySet::default()),
            fetching: Mutex::new(None),
            discovered: RwLock::new(None),
            web_attempt: Mutex::new(None),
            verified: VerifiedTokens::default(),
        })
    }

    /// The caller a valid token names.
    pub async fn verify(&self, token: &str, tenants: &Tenants) -> Result<Caller, Refused> {
        let verified = match self.verified.get(token) {
            Some(known) => known,
            None => {
                let fresh = self.check(token).await?;
                self.verified.insert(token, fresh.clone());
                fresh
            }
        };
        let groups: Vec<&str> = verified.groups.iter().map(String::as_str).collect();
        Ok(Caller {
            grants: self.grants(&groups, tenants),
            id: verified.sub,
            name: verified.name,
            credential: Credential::Oidc,
        })
    }

    /// Every check on a token not seen before.
    async fn check(&self, token: &str) -> Result<Verified, Refused> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| refused(format!("unreadable token header: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) {
            return Err(refused(format!(
                "algorithm {:?} is not accepted (RS256, ES256, EdDSA only)",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        if key.alg != header.alg {
            return Err(refused(format!(
                "the token says {:?} but key `{kid}` is a {:?} key",
                header.alg, key.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| refused(format!("rejected: {e}")))?;
        let claims = data.claims;
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("the token has no subject"))?;
        let groups = match claims.rest.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        // `decode` checked `exp` is a number; whole seconds are enough here.
        let exp = claims.exp.as_ref().and_then(Value::as_f64).unwrap_or(0.0) as i64;
        // Checked again at the latest when the keys are due for a refresh,
        // so a withdrawn key is noticed even for a token sent all day.
        let refresh_due = crate::telemetry::now_unix() + self.config.jwks_refresh_secs as i64;
        Ok(Verified {
            sub,
            name: claims.preferred_username,
            groups,
            until: (exp + self.config.leeway_secs as i64).min(refresh_due),
        })
    }

    /// What a member of `groups` may do.
    pub fn grants(&self, groups: &[&str], tenants: &Tenants) -> Grants {
        let c = &self.config;
        let mut grants = Grants::default();
        for group in groups {
            if *group == c.reader_group {
                grants.read = Some(TenantScope::All);
            } else if *group == c.admin_group {
                grants.admin = true;
            } else if *group == c.metrics_group {
                grants.metrics = true;
            }
        }
        for group in groups {
            if c.not_tenant_groups.iter().any(|a| a.eq_ignore_ascii_case(group)) {
                continue;
            }
            if let Some(slug) = tenants.resolve(Some(group)) {
                grants.add_tenant(slug);
            }
        }
        grants
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, Refused> {
        let refresh = Duration::from_secs(self.config.jwks_refresh_secs);
        let min_gap = Duration::from_secs(self.config.jwks_min_refetch_secs);
        let cached = {
            let set = self.keys.read().await;
            let fresh = set.fetched.is_some_and(|t| t.elapsed() < refresh);
            match set.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                found => found.cloned(),
            }
        };
        match cached {
            // Known but due for a refresh: one request refreshes, the others
            // go on with the cached key rather than wait for it.
            Some(key) => {
                if let Ok(last) = self.fetching.try_lock() {
                    self.refetch(last, refresh.min(min_gap.max(Duration::from_secs(1))))
                        .await;
                }
                Ok(self.keys.read().await.keys.get(kid).cloned().unwrap_or(key))
            }
            // Unknown: perhaps rotated in; wait for (or run) one fetch.
            None => {
                self.refetch(self.fetching.lock().await, min_gap).await;
                let set = self.keys.read().await;
                set.keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| refused(format!("no key `{kid}` in the issuer's key set")))
            }
        }
    }

    /// Fetches the keys unless the last attempt was within `min_gap`.
    async fn refetch(&self, mut last: tokio::sync::MutexGuard<'_, Option<Instant>>, min_gap: Duration) {
        if last.is_some_and(|t| t.elapsed() < min_gap) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "OIDC signing keys loaded");
                *self.keys.write().await = KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                };
                self.verified.clear();
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot fetch the OIDC signing keys; keeping the cached ones")
            }
        }
    }

    /// The discovery document's endpoints, read once.
    async fn discover(&self) -> Result<Discovered, String> {
        // Bound first: a guard in the `match` would live through the write below.
        let known = self.discovered.read().await.clone();
        if let Some(d) = known {
            return Ok(d);
        }
        let doc = self.fetch_json(&self.config.discovery()).await?;
        let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if issuer != self.config.issuer {
            return Err(format!(
                "the discovery document names issuer `{issuer}`, not the configured `{}`",
                self.config.issuer
            ));
        }
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_string);
        let found = Discovered {
            jwks_uri: text("jwks_uri").ok_or("the discovery document has no jwks_uri")?,
            authorization_endpoint: text("authorization_endpoint"),
            token_endpoint: text("token_endpoint"),
        };
        *self.discovered.write().await = Some(found.clone());
        Ok(found)
    }

    /// How the web page signs in with the issuer: `None` without a
    /// `web_client_id`; an error when the issuer's endpoints are not known
    /// (discovery failed; tried again at most every `jwks_min_refetch_secs`,
    /// and not more than once a second).
    pub async fn web_sign_in(&self) -> Option<Result<WebSignIn, String>> {
        let client_id = self.config.web_client_id.clone()?;
        let known = self.discovered.read().await.clone();
        let discovered = match known {
            Some(d) => Ok(d),
            None => {
                let mut last = self.web_attempt.lock().await;
                let gap = Duration::from_secs(self.config.jwks_min_refetch_secs.max(1));
                if last.is_some_and(|t| t.elapsed() < gap) {
                    Err("the identity provider's discovery document could not be read; try again shortly".to_string())
                } else {
                    *last = Some(Instant::now());
                    self.discover().await
                }
            }
        };
        Some(discovered.and_then(|d| {
            let (Some(authorization_endpoint), Some(token_endpoint)) = (d.authorization_endpoint, d.token_endpoint)
            else {
                return Err("the discovery document names no authorization or token endpoint".into());
            };
            Ok(WebSignIn {
                authorization_endpoint,
                token_endpoint,
                client_id,
                scope: self.config.web_scopes.clone(),
            })
        }))
    }

    /// The token endpoint's origin once discovery has run (the page's
    /// policy lets it post the code there); never fetches.
    pub fn token_origin_now(&self) -> Option<String> {
        self.config.web_client_id.as_ref()?;
        let discovered = self.discovered.try_read().ok()?.clone()?;
        let url = reqwest::Url::parse(discovered.token_endpoint.as_deref()?).ok()?;
        Some(url.origin().ascii_serialization())
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let jwks_uri = self.discover().await?.jwks_uri;
        let set = self.fetch_json(&jwks_uri).await?;
        let listed = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the key set has no `keys` list")?;
        let mut keys = HashMap::new();
        for raw in listed.iter().take(MAX_KEYS) {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if let Some(key) = usable(&jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), Arc::new(key));
            }
        }
        Ok(keys)
    }

    async fn fetch_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

/// A signing key of an accepted kind, with the one algorithm it verifies.
fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    if let Some(named) = jwk.common.key_algorithm {
        let named = format!("{named:?}");
        if named != format!("{alg:?}") {
            return None;
        }
    }
    DecodingKey::from_jwk(jwk).ok().map(|key| Key { alg, key })
}

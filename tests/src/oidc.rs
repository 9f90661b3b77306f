//! A local OpenID Connect issuer for the tests: a discovery document and a
//! JWKS served over HTTP on a free port, signing keys generated in the test
//! (Ed25519 and P-256 with ring; RSA from a fixed test key, as ring cannot
//! generate RSA keys), tokens signed on request, and key rotation; and the
//! authorization-code flow with PKCE a browser signs in with, for a user the
//! test chooses ([`Issuer::sign_in_as`]): `authorize` approves at once,
//! `token` checks the code, the redirect URI, the client and the S256
//! verifier, and answers across origins as authentik does for the origins
//! of a provider's redirect URIs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Form, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};

/// One signing key: what signs, and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as the JWKS lists it.
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh Ed25519 key.
    pub fn ed25519(kid: &str) -> SigningKey {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate");
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    /// A fresh P-256 key.
    pub fn p256(kid: &str) -> SigningKey {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse");
        let point = pair.public_key().as_ref();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// The fixed RSA test key (`tests/fixtures/oidc`).
    pub fn rsa(kid: &str) -> SigningKey {
        let der = include_bytes!("../fixtures/oidc/rsa-test-key.der");
        let public: Value =
            serde_json::from_str(include_str!("../fixtures/oidc/rsa-test-key.public.json")).expect("the public part");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": public["n"], "e": public["e"],
            }),
        }
    }

    /// `claims` signed with this key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// The issuer stand-in.
pub struct Issuer {
    /// Its `iss` (ends in `/`, as authentik's does).
    pub issuer: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    flow: Arc<Mutex<Flow>>,
    fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

/// The browser sign-in's state: who signs in, and the codes handed out.
#[derive(Default)]
struct Flow {
    user: Option<(String, Vec<String>)>,
    /// code → (PKCE challenge, redirect URI, client id).
    codes: HashMap<String, (String, String, String)>,
    issued: usize,
}

/// The audience the tests' tokens carry.
pub const AUDIENCE: &str = "audit-ingest-client";

impl Issuer {
    /// Serves `keys` on a free local port.
    pub async fn start(keys: Vec<SigningKey>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let issuer = format!("http://{addr}/application/o/audit/");
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("http://{addr}/application/o/audit/jwks/"),
            "authorization_endpoint": format!("http://{addr}/application/o/authorize/"),
            "token_endpoint": format!("http://{addr}/application/o/token/"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        let (served, counted) = (keys.clone(), fetches.clone());
        let flow = Arc::new(Mutex::new(Flow::default()));
        let (authorizing, exchanging, signer, iss) = (flow.clone(), flow.clone(), keys.clone(), issuer.clone());
        let app = axum::Router::new()
            .route(
                "/application/o/audit/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { Json(d) }
                }),
            )
            .route(
                "/application/o/audit/jwks/",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let set: Vec<Value> = served.lock().unwrap().iter().map(|k| k.jwk.clone()).collect();
                    async move { Json(json!({ "keys": set })) }
                }),
            )
            .route(
                "/application/o/authorize/",
                get(move |Query(q): Query<HashMap<String, String>>| {
                    let answer = authorize(&authorizing, &q);
                    async move { answer }
                }),
            )
            .route(
                "/application/o/token/",
                post(move |headers: HeaderMap, Form(f): Form<HashMap<String, String>>| {
                    let answer = exchange(&exchanging, &signer, &iss, &headers, &f);
                    async move { answer }
                }),
            );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Issuer {
            issuer,
            keys,
            flow,
            fetches,
            server,
        }
    }

    /// Who the browser sign-in signs in (until then, `authorize` refuses).
    pub fn sign_in_as(&self, sub: &str, groups: &[&str]) {
        self.flow.lock().unwrap().user = Some((sub.into(), groups.iter().map(|g| g.to_string()).collect()));
    }

    /// Access tokens handed out by the browser sign-in.
    pub fn issued(&self) -> usize {
        self.flow.lock().unwrap().issued
    }

    /// The `[api.oidc]` section for this issuer.
    pub fn config(&self) -> audit_ingest::access::oidc::Config {
        audit_ingest::access::oidc::Config {
            issuer: self.issuer.clone(),
            audience: AUDIENCE.into(),
            jwks_min_refetch_secs: 0,
            ..Default::default()
        }
    }

    /// Claims that pass every check, for `sub` in `groups`, valid for an hour.
    pub fn claims(&self, sub: &str, groups: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": sub, "preferred_username": sub,
            "iat": now, "nbf": now - 5, "exp": now + 3600, "groups": groups,
        })
    }

    /// The key now listed at `index`.
    pub fn key(&self, index: usize) -> SigningKey {
        self.keys.lock().unwrap()[index].clone()
    }

    /// Replaces the listed keys (a rotation).
    pub fn set_keys(&self, keys: Vec<SigningKey>) {
        *self.keys.lock().unwrap() = keys;
    }

    /// How often the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// `authorize`: approves the signed-in user at once, as a remembered consent does.
fn authorize(flow: &Mutex<Flow>, q: &HashMap<String, String>) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    let mut flow = flow.lock().unwrap();
    if field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "code flow with an S256 challenge only").into_response();
    }
    let Some(_) = flow.user.as_ref() else {
        return (StatusCode::FORBIDDEN, "nobody is signed in at the issuer").into_response();
    };
    let code = format!("code-{}", flow.codes.len() + 1);
    let redirect = field("redirect_uri");
    flow.codes.insert(
        code.clone(),
        (field("code_challenge"), redirect.clone(), field("client_id")),
    );
    let back = format!("{redirect}?code={code}&state={}", field("state"));
    Redirect::to(&back).into_response()
}

/// `token`: one use per code; redirect URI, client and PKCE verifier must match.
fn exchange(
    flow: &Mutex<Flow>,
    keys: &Mutex<Vec<SigningKey>>,
    issuer: &str,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> Response {
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut flow = flow.lock().unwrap();
    let refuse = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_grant", "error_description": why })),
        )
    };
    let mut answer = match flow.codes.remove(&field("code")) {
        _ if field("grant_type") != "authorization_code" => refuse("grant type").into_response(),
        None => refuse("unknown or used code").into_response(),
        Some((challenge, redirect, client)) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, field("code_verifier").as_bytes());
            if URL_SAFE_NO_PAD.encode(digest.as_ref()) != challenge {
                refuse("code verifier").into_response()
            } else if redirect != field("redirect_uri") || client != field("client_id") {
                refuse("redirect URI or client").into_response()
            } else {
                let (sub, groups) = flow.user.clone().expect("a signed-in user");
                let now = chrono::Utc::now().timestamp();
                let claims = json!({
                    "iss": issuer, "aud": client, "sub": sub, "preferred_username": sub,
                    "iat": now, "nbf": now - 5, "exp": now + 300, "groups": groups,
                });
                flow.issued += 1;
                let token = keys.lock().unwrap()[0].sign(&claims);
                Json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": 300 })).into_response()
            }
        }
    };
    if let Some(origin) = headers.get("origin") {
        answer
            .headers_mut()
            .insert("access-control-allow-origin", origin.clone());
        answer.headers_mut().insert("vary", HeaderValue::from_static("Origin"));
    }
    answer
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

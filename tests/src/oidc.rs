//! A local OpenID Connect issuer for the tests: a discovery document and a
//! JWKS served over HTTP on a free port, signing keys generated in the test
//! (Ed25519 and P-256 with ring; RSA from a fixed test key, as ring cannot
//! generate RSA keys), tokens signed on request, and key rotation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::get;
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
    fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
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
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        let (served, counted) = (keys.clone(), fetches.clone());
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
            );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Issuer {
            issuer,
            keys,
            fetches,
            server,
        }
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

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

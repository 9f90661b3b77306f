//! Who may read which part of the timeline: OIDC access tokens from a local
//! issuer, machine tokens with scopes, tenant scopes checked against the
//! whole store, the trail of reads, and the limit on refused credentials.

use std::net::SocketAddr;

use audit_ingest::access::{Access, oidc, throttle, tokens};
use audit_ingest::config::Secret;
use audit_ingest::event::RawJson;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::{NewRecord, Query, Store, TenantScope};
use audit_ingest_tests::oidc::{Issuer, SigningKey};
use audit_ingest_tests::{TOKEN, app_with_access, call, embedded_store, runtime};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

const TENANTS: [Option<&str>; 4] = [Some("acme"), Some("beta"), None, Some("acme")];

fn record(i: i64) -> NewRecord {
    NewRecord {
        source: "stalwart".into(),
        action: if i % 2 == 0 {
            "stalwart.auth_failed"
        } else {
            "stalwart.auth_success"
        }
        .into(),
        at: Utc.timestamp_opt(1_750_000_000 + i, 0).unwrap(),
        received_at: Utc.timestamp_opt(1_750_000_000 + i, 0).unwrap(),
        actor_id: None,
        actor_name: Some(format!("user{}", i % 5)),
        actor_email: None,
        ip: Some(format!("198.51.100.{}", i % 3)),
        target_type: None,
        target_id: None,
        target_name: Some(format!("mailbox-{i}")),
        tenant_slug: TENANTS[(i % 4) as usize].map(str::to_string),
        outcome: "failure".into(),
        external_id: Some(format!("e{i}")),
        metadata: RawJson::from_value(&json!({ "i": i })),
        mapper: None,
        unrecognised: false,
    }
}

struct Setup {
    router: axum::Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn setup(access: Access) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    store.insert((0..60).map(record).collect(), None).await.unwrap();
    let router = app_with_access(
        store.clone(),
        runtime(None, InstanceMode::Fresh, Limits::default()),
        Vec::new(),
        access,
    );
    Setup {
        router,
        store,
        _dir: dir,
    }
}

fn request(uri: &str, bearer: Option<&str>, from: &str) -> Request<Body> {
    let mut r = Request::get(uri);
    if let Some(b) = bearer {
        r = r.header("authorization", format!("Bearer {b}"));
    }
    let mut r = r.body(Body::empty()).unwrap();
    let peer: SocketAddr = format!("{from}:40000").parse().unwrap();
    r.extensions_mut().insert(ConnectInfo(peer));
    r
}

async fn read(router: &axum::Router, uri: &str, bearer: &str) -> (StatusCode, Value) {
    call(router, request(uri, Some(bearer), "192.0.2.10")).await
}

/// Every record a caller sees walking `/audit?{filter}` in pages of 4.
async fn walk(router: &axum::Router, bearer: &str, filter: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut uri = format!("/audit?limit=4&source=stalwart{filter}");
    loop {
        let (status, body) = read(router, &uri, bearer).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        ids.extend(
            body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match body["next"].as_str() {
            Some(next) => uri = format!("/audit?limit=4&source=stalwart{filter}&cursor={next}"),
            None => return ids,
        }
    }
}

/// The ids the whole store holds for the filter, within `scope`.
async fn expected(store: &Store, scope: TenantScope, query: Query) -> Vec<String> {
    let mut query = Query {
        source: Some("stalwart".into()),
        scope: TenantScope::All,
        limit: 500,
        ..query
    };
    query.after = None;
    let page = store.query(&query).await.unwrap();
    page.records
        .into_iter()
        .filter(|r| scope.admits(r.record.tenant_slug.as_deref()))
        .map(|r| r.id)
        .collect()
}

fn oidc_access(issuer: &Issuer) -> Access {
    let verifier = oidc::Verifier::new(issuer.config()).unwrap();
    Access::new(None, tokens::MachineTokens::default(), Some(verifier), false)
}

#[tokio::test]
async fn oidc_tokens_of_each_algorithm_read_by_their_groups_and_bad_ones_are_401() {
    let issuer = Issuer::start(vec![
        SigningKey::ed25519("ed"),
        SigningKey::p256("ec"),
        SigningKey::rsa("rsa"),
    ])
    .await;
    let s = setup(oidc_access(&issuer)).await;
    for key in 0..3 {
        let token = issuer.key(key).sign(&issuer.claims("auditor", &["audit-reader"]));
        let seen = walk(&s.router, &token, "").await;
        assert_eq!(seen.len(), 60, "{:?} reader sees every record", issuer.key(key).alg);
    }
    // A tenant reader, also an authentik admin (which never names a tenant).
    let acme = issuer
        .key(0)
        .sign(&issuer.claims("alice", &["authentik Admins", "acme"]));
    for (filter, query) in [
        ("", Query::default()),
        (
            "&action=stalwart.auth_failed",
            Query {
                action: Some(audit_ingest::store::ActionFilter::Exact("stalwart.auth_failed".into())),
                ..Query::default()
            },
        ),
        (
            "&actor=user1",
            Query {
                actor: Some("user1".into()),
                ..Query::default()
            },
        ),
        (
            "&ip=198.51.100.2",
            Query {
                ip: Some("198.51.100.2".into()),
                ..Query::default()
            },
        ),
        (
            "&q=mailbox-1",
            Query {
                text: Some("mailbox-1".into()),
                ..Query::default()
            },
        ),
        (
            "&tenant=beta",
            Query {
                tenant: Some("beta".into()),
                ..Query::default()
            },
        ),
    ] {
        let seen = walk(&s.router, &acme, filter).await;
        let want = expected(&s.store, TenantScope::tenant("acme"), query).await;
        assert_eq!(seen, want, "acme reader, filter `{filter}`");
    }
    // Refused, each with 401: expired, not yet valid, another issuer,
    // another audience, no subject, tampered, unknown key.
    let key = issuer.key(0);
    let now = Utc::now().timestamp();
    let mut bad = Vec::new();
    for (what, change) in [
        ("expired", json!({ "exp": now - 3600 })),
        ("not yet valid", json!({ "nbf": now + 3600 })),
        ("wrong issuer", json!({ "iss": "https://elsewhere.example/" })),
        ("wrong audience", json!({ "aud": "another-client" })),
        ("no subject", json!({ "sub": null })),
    ] {
        let mut claims = issuer.claims("mallory", &["audit-reader"]);
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        bad.push((what, key.sign(&claims)));
    }
    let good = key.sign(&issuer.claims("mallory", &["acme"]));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_claims = URL_SAFE_NO_PAD.encode(issuer.claims("mallory", &["audit-reader"]).to_string());
    bad.push(("tampered", format!("{head}.{forged_claims}.{signature}")));
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    bad.push(("alg none", format!("{none_header}.{forged_claims}.")));
    // HS256 "signed" with the public key, the classic confusion attack.
    let public = issuer.key(2).jwk["n"].as_str().unwrap().to_string();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("rsa".into());
    let hmac = jsonwebtoken::encode(
        &hs,
        &issuer.claims("mallory", &["audit-reader"]),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    bad.push(("HMAC with the public key", hmac));
    bad.push((
        "unknown key",
        SigningKey::ed25519("stranger").sign(&issuer.claims("mallory", &["audit-reader"])),
    ));
    for (what, token) in bad {
        let (status, body) = read(&s.router, "/audit", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
}

#[tokio::test]
async fn a_rotated_key_is_used_without_a_restart_and_the_retired_one_is_refused() {
    let issuer = Issuer::start(vec![SigningKey::ed25519("k1")]).await;
    let s = setup(oidc_access(&issuer)).await;
    // The same token is sent before and after the rotation, as a client
    // would: having been accepted (and remembered) once does not keep it
    // valid once its key is withdrawn.
    let old = issuer.key(0).sign(&issuer.claims("a", &["audit-reader"]));
    for _ in 0..2 {
        let (status, _) = read(&s.router, "/audit", &old).await;
        assert_eq!(status, StatusCode::OK);
    }
    issuer.set_keys(vec![SigningKey::p256("k2")]);
    let (status, body) = read(
        &s.router,
        "/audit",
        &issuer.key(0).sign(&issuer.claims("a", &["audit-reader"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the new key is fetched on first sight: {body}");
    let (status, _) = read(&s.router, "/audit", &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the retired key no longer verifies");
    assert!(issuer.fetches() >= 2);
}

#[tokio::test]
async fn scoped_machine_tokens_reach_only_what_they_name() {
    let acme = tokens::create("acme-job", &["read:tenant=acme".into()]).unwrap();
    let metrics = tokens::create("prometheus", &["metrics".into()]).unwrap();
    let entries = [acme.entry.clone(), metrics.entry.clone()];
    let machine = tokens::MachineTokens::resolve(&entries).unwrap();
    let access = Access::new(Some(Secret::new(TOKEN)), machine, None, true);
    let s = setup(access).await;

    let seen = walk(&s.router, &acme.token, "").await;
    assert_eq!(
        seen,
        expected(&s.store, TenantScope::tenant("acme"), Query::default()).await
    );
    // A record of another tenant, and one without a tenant, are not found.
    let all = expected(&s.store, TenantScope::All, Query::default()).await;
    let page = s
        .store
        .query(&Query {
            limit: 500,
            source: Some("stalwart".into()),
            ..Query::default()
        })
        .await
        .unwrap();
    for r in &page.records {
        let (status, _) = read(&s.router, &format!("/audit/{}", r.id), &acme.token).await;
        let want = if r.record.tenant_slug.as_deref() == Some("acme") {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "record {} of {:?}", r.id, r.record.tenant_slug);
    }
    // A cursor of the all-tenant reader is refused to the acme reader.
    let (_, body) = read(&s.router, "/audit?limit=2", TOKEN).await;
    let cursor = body["next"].as_str().unwrap().to_string();
    let (status, body) = read(&s.router, &format!("/audit?limit=2&cursor={cursor}"), &acme.token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(all.len(), 60);

    // Scopes: no read, no replay; metrics only with `metrics`.
    let (status, _) = read(&s.router, "/audit", &metrics.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let replay = |bearer: &str| {
        let mut r = Request::post("/admin/replay")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Body::empty())
            .unwrap();
        r.extensions_mut()
            .insert(ConnectInfo("192.0.2.10:1".parse::<SocketAddr>().unwrap()));
        r
    };
    assert_eq!(call(&s.router, replay(&acme.token)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&s.router, replay(TOKEN)).await.0, StatusCode::OK);
    assert_eq!(read(&s.router, "/metrics", &acme.token).await.0, StatusCode::FORBIDDEN);
    let metrics_answer = s.router.clone();
    let response = tower::ServiceExt::oneshot(metrics_answer, request("/metrics", Some(&metrics.token), "192.0.2.10"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        call(&s.router, request("/metrics", None, "192.0.2.10")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&s.router, request("/readyz", None, "192.0.2.10")).await;
    assert!(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["status"],
        "protected details: {body}"
    );
}

#[tokio::test]
async fn every_read_and_refusal_is_a_record_of_the_service_itself() {
    let acme = tokens::create("acme-job", &["read:tenant=acme".into()]).unwrap();
    let machine = tokens::MachineTokens::resolve(std::slice::from_ref(&acme.entry)).unwrap();
    let s = setup(Access::new(Some(Secret::new(TOKEN)), machine, None, false)).await;
    let (_, body) = read(&s.router, "/audit?actor=user2&limit=3", &acme.token).await;
    let first = body["records"][0]["id"].as_str().unwrap().to_string();
    read(&s.router, &format!("/audit/{first}"), &acme.token).await;
    call(&s.router, request("/audit", Some("ait_wrong"), "203.0.113.9")).await;

    let trail = s
        .store
        .query(&Query {
            source: Some("audit-ingest".into()),
            limit: 50,
            ..Query::default()
        })
        .await
        .unwrap()
        .records;
    let actions: Vec<&str> = trail.iter().map(|r| r.record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "audit-ingest.auth_failed",
            "audit-ingest.record_read",
            "audit-ingest.timeline_read"
        ]
    );
    let search = &trail[2].record;
    assert_eq!(search.actor_id.as_deref(), Some("acme-job"));
    assert_eq!(search.ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(
        search.tenant_slug.as_deref(),
        Some("acme"),
        "the tenant's admins see who read them"
    );
    assert_eq!(search.outcome, "success");
    let meta = search.metadata.parse();
    assert_eq!(meta["request"]["query"], "actor=user2&limit=3");
    assert_eq!(meta["answer"]["status"], 200);
    assert_eq!(trail[1].record.target_id.as_deref(), Some(first.as_str()));
    let refused = &trail[0].record;
    assert_eq!(
        (refused.actor_id.as_deref(), refused.ip.as_deref()),
        (None, Some("203.0.113.9"))
    );
    assert_eq!(refused.outcome, "failure");
    // One record per request, each with its own external id.
    let mut ids: Vec<_> = trail.iter().map(|r| r.record.external_id.clone().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // And they are read like any other source.
    let (status, body) = read(&s.router, "/audit?source=audit-ingest", TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["records"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn a_thousand_bad_tokens_from_one_address_are_held_at_the_limit() {
    let mut access = Access::service_token(Some(Secret::new(TOKEN)));
    access.throttle = throttle::Throttle::new(throttle::Config {
        max_failures: 20,
        window_secs: 60,
        max_clients: 1000,
    });
    let s = setup(access).await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for i in 0..1000 {
        let response = tower::ServiceExt::oneshot(
            s.router.clone(),
            request("/audit", Some(&format!("guess-{i}")), "203.0.113.7"),
        )
        .await
        .unwrap();
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(statuses, [(401, 20), (429, 980)].into(), "20 guesses, then held");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait));
    // The right token from the held address waits too; others are untouched.
    assert_eq!(
        call(&s.router, request("/audit", Some(TOKEN), "203.0.113.7")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&s.router, request("/audit", Some(TOKEN), "203.0.113.8")).await.0,
        StatusCode::OK
    );
    let refusals = s
        .store
        .query(&Query {
            action: Some(audit_ingest::store::ActionFilter::Exact(
                "audit-ingest.auth_failed".into(),
            )),
            limit: 500,
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(refusals.records.len(), 20, "each refusal recorded, the held ones not");
}

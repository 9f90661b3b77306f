//! `GET /audit` and `GET /audit/{id}` as a client sees them.

use audit_ingest::api::{self, AppState};
use audit_ingest::event::RawJson;
use audit_ingest::ingest::Tenants;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::NewRecord;
use audit_ingest_tests::{TOKEN, app, call, embedded_store, get, install, runtime};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn record(i: i64) -> NewRecord {
    NewRecord {
        source: if i % 2 == 0 { "stalwart" } else { "authentik" }.into(),
        action: if i % 2 == 0 {
            "stalwart.auth_failed"
        } else {
            "authentik.login"
        }
        .into(),
        at: Utc.timestamp_opt(1_750_000_000 + i, 0).unwrap(),
        received_at: Utc.timestamp_opt(1_750_000_100, 0).unwrap(),
        actor_id: None,
        actor_name: Some(format!("user{i}")),
        actor_email: None,
        ip: Some("198.51.100.7".into()),
        target_type: None,
        target_id: None,
        target_name: None,
        tenant_slug: None,
        outcome: "failure".into(),
        external_id: Some(format!("e{i}")),
        metadata: RawJson::from_value(&json!({"original": {"i": i}})),
        mapper: Some("stalwart@0.1.0".into()),
        unrecognised: false,
    }
}

async fn seeded() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    store.insert((0..7).map(record).collect(), None).await.unwrap();
    let rt = runtime(None, InstanceMode::Fresh, Limits::default());
    (app(store, rt), dir)
}

#[tokio::test]
async fn the_timeline_needs_the_bearer_token() {
    let (router, _d) = seeded().await;
    let (status, body) = call(&router, Request::get("/audit").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "a bearer token is required");
    let wrong = Request::get("/audit")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, wrong).await.0, StatusCode::UNAUTHORIZED);
    let near = format!("Bearer {}x", TOKEN);
    let near = Request::get("/audit/1")
        .header("authorization", near)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, near).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, get("/audit")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_a_configured_token_every_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let router = api::router(AppState {
        pipeline: audit_ingest_tests::pipeline(
            embedded_store(dir.path()),
            runtime(None, InstanceMode::Fresh, Limits::default()),
            Tenants::default(),
        ),
        health: Default::default(),
        access: std::sync::Arc::new(audit_ingest::access::Access::service_token(None)),
        webhooks: Default::default(),
        ingest_slots: audit_ingest::api::ingest_slots(1),
        intake: audit_ingest::api::Intake::default(),
        live: Default::default(),
    });
    let (status, body) = call(&router, get("/audit")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("not enabled"), "{error}");
    // How the server is set up is for its operator's log, not an anonymous caller.
    assert!(
        !error.contains("AUDIT_API_TOKEN") && !error.contains("token_file"),
        "{error}"
    );
}

#[tokio::test]
async fn pages_walk_newest_first_with_an_opaque_cursor() {
    let (router, _d) = seeded().await;
    let (status, page1) = call(&router, get("/audit?limit=3")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = page1["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["actor"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("user6"), json!("user5"), json!("user4")]);
    assert!(
        page1["records"][0].get("metadata").is_none(),
        "the list leaves metadata out"
    );
    let next = page1["next"].as_str().unwrap();
    let (_, page2) = call(&router, get(&format!("/audit?limit=3&cursor={next}"))).await;
    assert_eq!(page2["records"][0]["actor"]["name"], "user3");
    let next = page2["next"].as_str().unwrap();
    let (_, page3) = call(&router, get(&format!("/audit?limit=3&cursor={next}"))).await;
    assert_eq!(page3["records"].as_array().unwrap().len(), 1);
    assert_eq!(page3["next"], serde_json::Value::Null);

    let (_, filtered) = call(&router, get("/audit?action=stalwart.auth_&since=2025-06-15T15:06:42Z")).await;
    let got: Vec<_> = filtered["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["actor"]["name"].clone())
        .collect();
    assert_eq!(got, vec![json!("user6"), json!("user4"), json!("user2")]);
}

#[tokio::test]
async fn one_record_comes_with_its_full_metadata() {
    let (router, _d) = seeded().await;
    let (_, page) = call(&router, get("/audit?limit=1")).await;
    let id = page["records"][0]["id"].as_str().unwrap().to_string();
    let (status, one) = call(&router, get(&format!("/audit/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["metadata"]["original"]["i"], 6);
    assert_eq!(one["at"], "2025-06-15T15:06:46Z");
    let (status, body) = call(&router, get("/audit/999999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("999999"));
}

#[tokio::test]
async fn bad_parameters_get_a_400_that_names_them() {
    let (router, _d) = seeded().await;
    for (uri, needle) in [
        ("/audit?limit=0", "limit"),
        ("/audit?limit=501", "limit"),
        ("/audit?limit=ten", "limit"),
        ("/audit?since=yesterday", "since"),
        ("/audit?until=2026-13-01T00:00:00Z", "until"),
        ("/audit?cursor=not-a-cursor", "cursor"),
        ("/audit?colour=red", "colour"),
        ("/audit?source=a&source=b", "twice"),
        ("/audit?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "before"),
        ("/audit?actor=", "empty"),
    ] {
        let (status, body) = call(&router, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{uri}: {message}");
    }
}

/// A cursor that decodes but names no record id the store hands out is the
/// caller's mistake: a 400 naming the parameter, not a 503 "store unavailable".
#[tokio::test]
async fn a_crafted_cursor_is_a_400_not_an_outage() {
    let (router, _d) = seeded().await;
    let crafted = audit_ingest::store::PageCursor {
        at: 0,
        id: "not-a-row-id".into(),
        scope: String::new(),
    }
    .encode();
    let (status, body) = call(&router, get(&format!("/audit?cursor={crafted}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("cursor"), "{body}");
}

#[tokio::test]
async fn a_nul_or_an_overlong_value_in_the_query_is_a_400() {
    let (router, _d) = seeded().await;
    for uri in [
        "/audit?q=abc%00def".to_string(),
        "/audit?actor=%01".to_string(),
        format!("/audit?q={}", "x".repeat(5000)),
    ] {
        let (status, body) = call(&router, get(&uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
}

#[tokio::test]
async fn readiness_reports_the_store_and_the_mappers() {
    let (router, _d) = seeded().await;
    let (status, body) = call(&router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["store"]["ok"], true);
    let names: Vec<_> = body["mappers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("authentik"), json!("ocis"), json!("stalwart")]);
}

#[tokio::test]
async fn readiness_shows_mapper_files_only_to_a_caller_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), audit_ingest_tests::PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    let router = app(embedded_store(dir.path()), rt);
    let file_of_probe = |body: &serde_json::Value| {
        body["mappers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "probe")
            .map(|m| m["file"].clone())
            .unwrap()
    };
    let (_, anonymous) = call(&router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(file_of_probe(&anonymous), serde_json::Value::Null, "{anonymous}");
    let (_, operator) = call(&router, get("/readyz")).await;
    assert!(
        file_of_probe(&operator).as_str().unwrap().ends_with("probe.wasm"),
        "{operator}"
    );
}

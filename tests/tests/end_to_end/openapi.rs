//! The OpenAPI document served at /openapi.json describes exactly the routes
//! the router serves: every route in `host/src/api/mod.rs` is documented,
//! every documented path answers (not 404/405), and the documented
//! record fields are the ones `/audit` returns.

use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest_tests::{app, call, embedded_store, get, runtime};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn the_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(
        embedded_store(dir.path()),
        runtime(None, InstanceMode::Auto, Limits::default()),
    );
    let (status, doc) = call(&router, Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    // Every route the router declares is documented.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../host/src/api/mod.rs")).unwrap();
    for route in source.split(".route(\"").skip(1).map(|r| r.split('"').next().unwrap()) {
        assert!(paths.contains_key(route), "route {route} is not in openapi.json");
    }
    // Webhook routes are configured: documented as one template.
    assert!(paths.contains_key("/ingest/{source}/webhook"));

    // Every documented path and method answers (with whatever auth it needs).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{id}", "1").replace("{source}", "stalwart");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("authorization", format!("Bearer {}", audit_ingest_tests::TOKEN))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            // The status only: a live stream's body never ends.
            let status = tower::ServiceExt::oneshot(router.clone(), request)
                .await
                .unwrap()
                .status();
            assert!(
                status != StatusCode::NOT_FOUND || path == "/audit/{id}",
                "{method} {uri}: {status}"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            let documented = item[method]["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {uri} answered {status}, which is not documented"
            );
        }
    }

    // The record schema lists exactly the fields /audit returns.
    let (_, page) = call(&router, get("/audit")).await;
    assert!(page["records"].is_array());
    let fields: Vec<&String> = doc["components"]["schemas"]["Record"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let sample = audit_ingest::api::timeline::record_json(
        &audit_ingest::store::Record {
            id: "1".into(),
            record: serde_json::from_value::<audit_ingest::store::NewRecord>(sample_record()).unwrap(),
        },
        true,
    );
    let mut returned: Vec<&String> = sample.as_object().unwrap().keys().collect();
    let mut documented = fields.clone();
    returned.sort();
    documented.sort();
    assert_eq!(returned, documented);
}

fn sample_record() -> Value {
    serde_json::json!({
        "source": "stalwart", "action": "stalwart.auth_failed", "at": "2026-01-01T00:00:00Z",
        "receivedAt": "2026-01-01T00:00:00Z", "outcome": "failure", "metadata": {}
    })
}

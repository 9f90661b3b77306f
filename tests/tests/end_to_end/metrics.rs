//! `GET /metrics` after real traffic: the counters a dashboard would read,
//! in the Prometheus text format, labelled only by source and outcome.

use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::stalwart_signature;
use audit_ingest_tests::{STALWART_SECRET, app, call, embedded_store, runtime};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn post(body: &str, signature: &str) -> Request<Body> {
    Request::post("/ingest/stalwart/webhook")
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_happened_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(
        embedded_store(dir.path()),
        runtime(None, InstanceMode::Auto, Limits::default()),
    );
    let batch = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mappers/stalwart/tests/fixtures/mixed_batch.input.json"
    ))
    .unwrap();
    let signature = stalwart_signature(STALWART_SECRET, batch.as_bytes());
    let (status, first) = call(&router, post(&batch, &signature)).await;
    assert_eq!(status, StatusCode::OK);
    let n = first["inserted"].as_u64().unwrap() as f64;
    assert_eq!(
        call(&router, post(&batch, &signature)).await.0,
        StatusCode::OK,
        "a resend"
    );
    assert_eq!(
        call(&router, post(&batch, "bm90IHRoZSBzaWduYXR1cmU=")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Unsigned, as Stalwart posts when its signature key cannot be read.
    let unsigned = Request::post("/ingest/stalwart/webhook")
        .header("content-type", "application/json")
        .body(Body::from(batch.clone()))
        .unwrap();
    assert_eq!(call(&router, unsigned).await.0, StatusCode::UNAUTHORIZED);
    let bad = "not json";
    assert_eq!(
        call(&router, post(bad, &stalwart_signature(STALWART_SECRET, bad.as_bytes())))
            .await
            .0,
        StatusCode::ACCEPTED
    );

    let response = router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert_eq!(
        value(&text, r#"audit_ingest_events_received_total{source="stalwart"}"#),
        2.0 * n
    );
    assert_eq!(
        value(&text, r#"audit_ingest_events_inserted_total{source="stalwart"}"#),
        n
    );
    assert_eq!(
        value(&text, r#"audit_ingest_events_duplicate_total{source="stalwart"}"#),
        n
    );
    assert_eq!(
        value(&text, r#"audit_ingest_signature_rejected_total{source="stalwart"}"#),
        2.0
    );
    assert_eq!(
        value(&text, r#"audit_ingest_unsigned_rejected_total{source="stalwart"}"#),
        1.0,
        "the unsigned request is told apart from the wrong signature"
    );
    assert_eq!(
        value(&text, r#"audit_ingest_dead_letters_total{source="stalwart"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"audit_ingest_mapper_call_duration_seconds_count{source="stalwart"}"#
        ),
        3.0
    );
    assert!(value(&text, r#"audit_ingest_store_write_duration_seconds_count"#) >= 2.0);
    assert!(text.contains(r#"audit_ingest_mapper_reloads_total{outcome="rejected"} 0"#));
    // The embedded store holds nothing but its own records.
    assert!(text.contains("\naudit_ingest_store_foreign_documents_skipped_total 0\n"));
    // Every sample line is `name{labels} number` or `name number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, number) = line.rsplit_once(' ').unwrap();
        assert!(number.parse::<f64>().is_ok(), "{line}");
    }
}

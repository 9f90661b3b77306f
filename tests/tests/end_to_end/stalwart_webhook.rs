//! The Stalwart webhook end to end: signed batches shaped like real ones go
//! in over HTTP, and the test checks what the sender is answered and what
//! lands in the store.

use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::{hex_signature, stalwart_signature};
use audit_ingest::store::Store;
use audit_ingest_tests::{STALWART_SECRET, app, call, embedded_store, get, runtime};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/ingest/stalwart/webhook";

fn batch() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mappers/stalwart/tests/fixtures/mixed_batch.input.json"
    ))
    .unwrap()
}

fn signed(body: &str) -> Request<Body> {
    audit_ingest_tests::signed_stalwart(body)
}

struct Service {
    router: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    let router = app(store.clone(), runtime(None, InstanceMode::Fresh, Limits::default()));
    Service {
        router,
        store,
        _dir: dir,
    }
}

async fn stored(s: &Service) -> Vec<Value> {
    let (status, page) = call(&s.router, get("/audit?limit=500")).await;
    assert_eq!(status, StatusCode::OK);
    page["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_signed_batch_is_answered_after_it_is_stored() {
    let s = service();
    let (status, body) = call(&s.router, signed(&batch())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"received": 6, "inserted": 6, "duplicates": 0}));

    let records = stored(&s).await;
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "stalwart.smtp_connection_start",
            "stalwart.dmarc_failure",
            "stalwart.mail_received",
            "stalwart.auth_banned",
            "stalwart.auth_failed",
            "stalwart.auth_success",
        ]
    );
    let failed = &records[4];
    assert_eq!(failed["actor"]["name"], "jdoe@example.org");
    assert_eq!(failed["ip"], "198.51.100.7");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["tenant"], "example.org");
    assert_eq!(failed["mapper"], "stalwart@0.1.0");
    let id = failed["id"].as_str().unwrap();
    let (_, one) = call(&s.router, get(&format!("/audit/{id}"))).await;
    // 64-bit ids survive exactly, and the sender is metadata, never the actor's IP.
    assert_eq!(
        one["metadata"]["original"]["data"]["spanId"],
        json!(1432795268419584001u64)
    );
    assert_eq!(one["metadata"]["original"]["id"], "1750000001135");
}

#[tokio::test]
async fn a_resent_batch_with_new_ids_and_more_events_stores_nothing_twice() {
    let s = service();
    call(&s.router, signed(&batch())).await;
    // Stalwart 0.16.11+ resends with new ids, merged with newer events.
    let mut resent: Value = serde_json::from_str(&batch()).unwrap();
    for (i, e) in resent["events"].as_array_mut().unwrap().iter_mut().enumerate() {
        e["id"] = json!(format!("17500099{i}99"));
    }
    resent["events"].as_array_mut().unwrap().push(json!({
        "id": "1750000099037", "createdAt": "2025-06-15T15:07:00Z", "type": "auth.success",
        "data": {"accountName": "alice@example.org", "accountId": 3, "spanId": 1432795999999999999u64,
                 "remoteIp": "192.0.2.11", "listenerId": "imaps", "localPort": 993, "remotePort": 50000}
    }));
    let body = serde_json::to_string(&resent).unwrap();
    let (status, answer) = call(&s.router, signed(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"received": 7, "inserted": 1, "duplicates": 6}));
    assert_eq!(stored(&s).await.len(), 7);
}

#[tokio::test]
async fn identical_failed_logins_in_one_second_stay_separate_records() {
    let s = service();
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mappers/stalwart/tests/fixtures/identical_failed_logins.input.json"
    ))
    .unwrap();
    let (_, answer) = call(&s.router, signed(&body)).await;
    assert_eq!(answer["inserted"], 3, "three failed logins, two of them byte-identical");
    let (_, again) = call(&s.router, signed(&body)).await;
    assert_eq!(again, json!({"received": 3, "inserted": 0, "duplicates": 3}));
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_nothing_is_stored() {
    let s = service();
    let body = batch();
    let sig = stalwart_signature(STALWART_SECRET, body.as_bytes());
    let cases: Vec<(&str, Request<Body>)> = vec![
        (
            "no signature",
            Request::post(PATH)
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
        (
            "wrong key",
            Request::post(PATH)
                .header("x-signature", stalwart_signature("other", body.as_bytes()))
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
        (
            "hex instead of base64",
            Request::post(PATH)
                .header("x-signature", hex_signature(STALWART_SECRET, body.as_bytes()))
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
        (
            "whitespace changed",
            Request::post(PATH)
                .header("x-signature", sig.clone())
                .body(Body::from(body.replace("\n", "\r\n")))
                .unwrap(),
        ),
        (
            "garbage",
            Request::post(PATH)
                .header("x-signature", "!!!")
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
        (
            "sent twice",
            Request::post(PATH)
                .header("x-signature", sig.clone())
                .header("x-signature", sig.clone())
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
    ];
    for (what, request) in cases {
        let (status, answer) = call(&s.router, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(answer["error"].is_string(), "{what}");
        assert!(
            !answer.to_string().contains("jdoe"),
            "{what}: nothing of the body is echoed"
        );
    }
    assert!(stored(&s).await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let s = service();
    let huge = format!(r#"{{"events":[],"pad":"{}"}}"#, "x".repeat(2 << 20));
    let (status, _) = call(&s.router, signed(&huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Without Content-Length the limit still holds while reading.
    let request = Request::post(PATH)
        .header("x-signature", stalwart_signature(STALWART_SECRET, huge.as_bytes()))
        .body(chunked(huge.clone()))
        .unwrap();
    assert_eq!(call(&s.router, request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The body as a stream of 64 KiB chunks, so no Content-Length is known.
fn chunked(text: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        text.into_bytes().chunks(65536).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_body_cut_off_mid_way_is_a_400_and_nothing_is_stored() {
    let s = service();
    let body = batch();
    let cut: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(body.as_bytes()[..100].to_vec()),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let request = Request::post(PATH)
        .header("x-signature", stalwart_signature(STALWART_SECRET, body.as_bytes()))
        .body(Body::from_stream(futures_util::stream::iter(cut)))
        .unwrap();
    assert_eq!(call(&s.router, request).await.0, StatusCode::BAD_REQUEST);
    assert!(stored(&s).await.is_empty());
}

#[tokio::test]
async fn an_unmappable_signed_body_is_kept_and_answered_2xx() {
    let s = service();
    let (status, answer) = call(&s.router, signed("this is not json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(answer["deadLetter"].is_string());
    let letters = s.store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.body, b"this is not json");
    assert!(letters[0].1.error.contains("not JSON"), "{}", letters[0].1.error);
    assert_eq!(letters[0].1.mapper.as_deref(), Some("stalwart@0.1.0"));
    assert!(stored(&s).await.is_empty());
}

#[tokio::test]
async fn unknown_and_legacy_types_land_under_their_own_verbs() {
    let s = service();
    for fixture in ["future_type", "legacy_0_8"] {
        let body = std::fs::read_to_string(format!(
            "{}/../mappers/stalwart/tests/fixtures/{fixture}.input.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let (status, _) = call(&s.router, signed(&body)).await;
        assert_eq!(status, StatusCode::OK, "{fixture}");
    }
    let actions: Vec<String> = stored(&s)
        .await
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"stalwart.quantum_entanglement_detected".to_string()));
    assert!(actions.contains(&"stalwart.auth_failed".to_string()));
    assert!(actions.contains(&"stalwart.auth_banned".to_string()));
    assert!(actions.contains(&"stalwart.mail_delivered".to_string()));
}

#[tokio::test]
async fn the_store_being_down_gets_503_with_retry_after_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = audit_ingest_tests::faulty::with_fault_switch(embedded_store(dir.path()));
    let router = app(store.clone(), runtime(None, InstanceMode::Fresh, Limits::default()));
    faults.set(true);
    let response = tower::ServiceExt::oneshot(router.clone(), signed(&batch()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    faults.set(false);
    // Stalwart resends the same batch; it all lands, once.
    let (status, answer) = call(&router, signed(&batch())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["inserted"], 6);
}

/// A record the store cannot hold (MongoDB: over 16 MiB, a key with a NUL,
/// nesting past 100 levels) is kept alone as a dead letter with the reason;
/// the rest of its batch is stored and the answer counts both, so one such
/// event cannot make Stalwart resend the batch for ever.
#[tokio::test]
async fn a_record_the_store_cannot_hold_is_kept_alone_and_the_rest_of_its_batch_lands() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = audit_ingest_tests::faulty::with_fault_switch(embedded_store(dir.path()));
    faults.refuse_records_containing("bill@example.net");
    let router = app(store.clone(), runtime(None, InstanceMode::Fresh, Limits::default()));
    let (status, answer) = call(&router, signed(&batch())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["received"], &answer["inserted"], &answer["deadLettered"]),
        (&json!(6), &json!(5), &json!(1)),
        "{answer}"
    );
    let stored = audit_ingest_tests::all_records(&store, "stalwart").await;
    assert_eq!(stored.len(), 5);
    assert!(
        stored
            .iter()
            .all(|r| !r.record.metadata.get().contains("bill@example.net"))
    );
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0].1;
    assert!(letter.error.contains("the test store refuses it"), "{}", letter.error);
    assert_eq!(letter.origin.as_deref(), Some("record 4 of 6 mapped from one delivery"));
    let kept: serde_json::Value = serde_json::from_slice(&letter.body).unwrap();
    assert_eq!(kept["action"], "stalwart.mail_received", "{kept}");
    assert!(kept["metadata"].to_string().contains("bill@example.net"));
    // A resend stores nothing twice, and the refused record is kept once.
    let (_, again) = call(&router, signed(&batch())).await;
    assert_eq!(
        (&again["inserted"], &again["duplicates"]),
        (&json!(0), &json!(5)),
        "{again}"
    );
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_non_json_content_type_is_refused_after_the_signature() {
    let s = service();
    let body = batch();
    let request = Request::post(PATH)
        .header("content-type", "text/plain")
        .header("x-signature", stalwart_signature(STALWART_SECRET, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(call(&s.router, request).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn with_every_ingest_slot_busy_senders_get_429_with_retry_after() {
    use audit_ingest::api::{self, AppState};
    let dir = tempfile::tempdir().unwrap();
    let slots = api::ingest_slots(2);
    let router = api::router(AppState {
        pipeline: audit_ingest_tests::pipeline(
            embedded_store(dir.path()),
            runtime(None, InstanceMode::Auto, Limits::default()),
            Default::default(),
        ),
        health: Default::default(),
        access: std::sync::Arc::new(audit_ingest::access::Access::service_token(None)),
        webhooks: std::sync::Arc::new(vec![audit_ingest_tests::stalwart_endpoint()]),
        ingest_slots: slots.clone(),
        intake: audit_ingest::api::Intake::default(),
        live: Default::default(),
    });
    let held = slots.clone().acquire_many_owned(2).await.unwrap();
    let response = tower::ServiceExt::oneshot(router.clone(), signed(&batch()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    drop(held);
    assert_eq!(
        call(&router, signed(&batch())).await.0,
        StatusCode::OK,
        "served again once a slot is free"
    );
}

#[tokio::test]
async fn hostile_inputs_get_a_clear_answer_and_store_nothing() {
    let s = service();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let invalid_utf8: Vec<u8> = vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("deep nesting", deep.into_bytes()),
        ("invalid UTF-8", invalid_utf8),
        ("empty body", Vec::new()),
        ("JSON null", b"null".to_vec()),
        ("events not a list", br#"{"events": 42}"#.to_vec()),
        ("truncated JSON", br#"{"events":[{"id":"1","type":"auth.su"#.to_vec()),
    ];
    for (what, body) in cases {
        let request = Request::post(PATH)
            .header("content-type", "application/json")
            .header("x-signature", stalwart_signature(STALWART_SECRET, &body))
            .body(Body::from(body))
            .unwrap();
        let (status, answer) = call(&s.router, request).await;
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::OK,
            "{what}: signed, so kept as a dead letter or mapped to nothing: {status} {answer}"
        );
    }
    let body = batch();
    let good = stalwart_signature(STALWART_SECRET, body.as_bytes());
    let signature_cases: Vec<(&str, Vec<&str>)> = vec![
        ("duplicated signature header", vec![good.as_str(), good.as_str()]),
        ("garbage signature", vec!["%%%not base64%%%"]),
        ("empty signature", vec![""]),
        (
            "hex instead of base64",
            vec!["00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"],
        ),
    ];
    for (what, values) in signature_cases {
        let mut request = Request::post(PATH).header("content-type", "application/json");
        for v in values {
            request = request.header("x-signature", v);
        }
        let (status, _) = call(&s.router, request.body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert!(stored(&s).await.is_empty(), "nothing reached the timeline");
}

/// A bounded property test (in place of a fuzzer run in CI): random bodies,
/// signed and not, with random content types, never crash the service or get
/// an answer outside the documented set, and unsigned ones never store.
#[tokio::test]
async fn random_bodies_never_crash_the_webhook_path() {
    let s = service();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fragments: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"events\":",
        b"\"type\":\"auth.failed\"",
        b",",
        b"\"createdAt\":\"2026-01-01T00:00:00Z\"",
        b"\"data\":{\"remoteIp\":\"::1\"}",
        b"18446744073709551616",
        b"\xff",
        b"null",
    ];
    for round in 0..300 {
        let mut body = Vec::new();
        for _ in 0..(next() % 40) {
            body.extend_from_slice(fragments[(next() % fragments.len() as u64) as usize]);
        }
        let signed_body = round % 2 == 0;
        let mut request = Request::post(PATH).header(
            "content-type",
            if next() % 5 == 0 {
                "text/plain"
            } else {
                "application/json"
            },
        );
        if signed_body {
            request = request.header("x-signature", stalwart_signature(STALWART_SECRET, &body));
        }
        let (status, _) = call(&s.router, request.body(Body::from(body.clone())).unwrap()).await;
        let allowed = [
            StatusCode::OK,
            StatusCode::ACCEPTED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ];
        assert!(
            allowed.contains(&status),
            "round {round}: {status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        if !signed_body {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
}

#[tokio::test]
async fn a_replayed_standard_webhooks_message_is_acknowledged_not_stored_again() {
    use audit_ingest::sources::webhook::signature::standard_webhooks_signature;
    use audit_ingest::sources::webhook::{AuthConfig, Config as Hook};
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut hook = Hook::new(
        "stalwart",
        AuthConfig::StandardWebhooks {
            secret: audit_ingest_tests::secret_file(secret),
            tolerance_secs: 300,
        },
    );
    hook.path = Some("/ingest/billing/webhook".into());
    let endpoint = hook.resolve().unwrap();
    let router = audit_ingest_tests::app_with(
        store.clone(),
        runtime(None, InstanceMode::Auto, Limits::default()),
        vec![endpoint],
    );
    let key =
        audit_ingest::sources::webhook::signature::standard_webhooks_key(&audit_ingest::config::Secret::new(secret));
    let body = batch();
    let send = |id: &str| {
        let now = chrono::Utc::now().timestamp();
        Request::post("/ingest/billing/webhook")
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header(
                "webhook-signature",
                standard_webhooks_signature(&key, id, now, body.as_bytes()),
            )
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (status, first) = call(&router, send("msg_1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["received"].as_u64().unwrap() > 0);
    let (status, replay) = call(&router, send("msg_1")).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(
        (replay["received"].clone(), replay["replayed"].clone()),
        (json!(0), json!(true))
    );
    // Another message id is taken (its events are then deduplicated by the store).
    let (_, other) = call(&router, send("msg_2")).await;
    assert_eq!(other["replayed"], Value::Null, "{other}");
}

//! Exports as an auditor takes them: every record of the filters, in the
//! caller's scope, as NDJSON or as OCSF events that validate against the
//! OCSF schema, streamed without running ahead of the reader.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use audit_ingest::event::{RawJson, Transport};
use audit_ingest::export::{Format, to_writer};
use audit_ingest::ingest::{Received, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::{NewRecord, Query, Store};
use audit_ingest_tests::{app, embedded_store, get, pipeline, runtime};
use axum::http::StatusCode;
use chrono::{Duration, SecondsFormat, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn fixtures(source: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mappers")
        .join(source)
        .join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Stalwart events of every verb family, at `at`.
fn stalwart_batch(at: &str) -> String {
    let events: Vec<Value> = [
        (
            "auth.success",
            json!({"accountName": "jdoe@example.org", "accountId": 2, "remoteIp": "192.0.2.10"}),
        ),
        (
            "auth.failed",
            json!({"accountName": "jdoe@example.org", "remoteIp": "198.51.100.7"}),
        ),
        ("security.authentication-ban", json!({"remoteIp": "2001:db8::7"})),
        (
            "queue.message-queued",
            json!({"queueId": 4711, "from": "a@example.net", "to": ["jdoe@example.org"], "size": 2048}),
        ),
        (
            "delivery.delivered",
            json!({"queueId": 4711, "to": ["jdoe@example.org"]}),
        ),
        (
            "smtp.dkim-fail",
            json!({"remoteIp": "203.0.113.5", "domain": "example.net"}),
        ),
        ("message-ingest.spam", json!({"accountId": 2})),
        (
            "quantum.entanglement-detected",
            json!({"spanId": 1_432_795_264_225_280_001u64}),
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (kind, data))| json!({ "id": format!("e{i}"), "createdAt": at, "type": kind, "data": data }))
    .collect();
    json!({ "events": events }).to_string()
}

/// A realistic mix: every shipped fixture of the three mappers, Stalwart
/// events of every verb family, the authentik stand-in's events, oCIS
/// lines, the service's own read trail, and a record whose original is
/// longer than OCSF's longest string.
async fn mixed_store(dir: &Path) -> Store {
    let store = embedded_store(dir);
    let p = pipeline(
        store.clone(),
        runtime(None, InstanceMode::Auto, Limits::default()),
        Tenants::new(["acme".to_string(), "example.org".to_string()]),
    );
    let deliver = async |source: &str, transport: Transport, body: Vec<u8>| {
        let received = Received::now(source, Some("192.0.2.1".into()));
        let delivery = received.delivery(transport, Vec::new(), None, body);
        p.deliver(source, received, delivery).await.unwrap();
    };
    for body in fixtures("stalwart") {
        deliver("stalwart", Transport::Webhook, body).await;
    }
    let at = (Utc::now() - Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    deliver("stalwart", Transport::Webhook, stalwart_batch(&at).into_bytes()).await;
    for body in fixtures("authentik") {
        let transport = if String::from_utf8_lossy(&body).contains("\"results\"") {
            Transport::Poll
        } else {
            Transport::Webhook
        };
        deliver("authentik", transport, body).await;
    }
    let mut ak = audit_ingest_tests::authentik::Authentik::default();
    audit_ingest_tests::authentik::add(&mut ak, 30);
    let page = json!({
        "pagination": { "next": 0, "previous": 0, "count": 30, "current": 1, "total_pages": 1 },
        "results": ak.events,
    });
    deliver("authentik", Transport::Poll, page.to_string().into_bytes()).await;
    for body in fixtures("ocis") {
        deliver("ocis", Transport::File, body).await;
    }
    for n in 0..8 {
        deliver("ocis", Transport::File, audit_ingest_tests::ocis::line(n).into_bytes()).await;
    }
    let now = Utc::now();
    let mut own = NewRecord {
        source: "audit-ingest".into(),
        action: "audit-ingest.timeline_read".into(),
        at: now,
        received_at: now,
        actor_id: Some("carol".into()),
        actor_name: Some("Carol".into()),
        actor_email: None,
        ip: Some("192.0.2.44".into()),
        target_type: None,
        target_id: None,
        target_name: None,
        tenant_slug: Some("acme".into()),
        outcome: "success".into(),
        external_id: Some("req-1".into()),
        metadata: RawJson::from_value(&json!({ "request": { "line": "GET /audit" } })),
        mapper: None,
        unrecognised: false,
    };
    let mut huge = own.clone();
    huge.source = "custom".into();
    huge.action = "custom.bulk_import".into();
    huge.actor_email = Some("not an address".into());
    huge.external_id = Some("huge".into());
    huge.metadata = RawJson::from_value(&json!({ "original": { "blob": "x".repeat(70_000) } }));
    own.external_id = Some("req-1".into());
    store.insert(vec![own, huge], None).await.unwrap();
    store
}

/// The OCSF 1.1.0 schema of each class audit-ingest writes (vendored, see
/// tests/ocsf/generate.py).
fn validators() -> BTreeMap<u64, jsonschema::Validator> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ocsf/1.1.0");
    [
        (0, "base_event"),
        (3001, "account_change"),
        (3002, "authentication"),
        (3006, "group_management"),
        (4009, "email_activity"),
        (6003, "api_activity"),
        (6006, "file_hosting"),
    ]
    .into_iter()
    .map(|(uid, name)| {
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        (uid, jsonschema::draft202012::new(&schema).unwrap())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_events_of_all_three_sources_validate_against_the_ocsf_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = mixed_store(dir.path()).await;
    let mut out = Vec::new();
    let n = to_writer(&store, Query::default(), Format::Ocsf, false, &mut out)
        .await
        .unwrap();
    let validators = validators();
    // The schema is strict: it refuses what OCSF does not allow.
    let logon = json!({
        "class_uid": 3002, "category_uid": 3, "activity_id": 1, "type_uid": 300201, "severity_id": 1,
        "time": 1, "metadata": { "version": "1.1.0", "product": { "name": "x", "vendor_name": "y" } },
        "service": { "name": "x" }, "user": { "name": "u" },
    });
    assert!(validators[&3002].is_valid(&logon));
    let mut no_user = logon.clone();
    no_user.as_object_mut().unwrap().remove("user");
    let mut extra = logon.clone();
    extra["colour"] = json!("red");
    let mut bad_type = logon.clone();
    bad_type["type_uid"] = json!(300209);
    for refused in [no_user, extra, bad_type] {
        assert!(!validators[&3002].is_valid(&refused), "{refused}");
    }
    let events: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len() as u64, n);
    let mut classes: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for event in &events {
        let uid = event["class_uid"].as_u64().unwrap();
        let errors: Vec<String> = validators[&uid]
            .iter_errors(event)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{event:#}\nis not a valid OCSF 1.1.0 event:\n{}",
            errors.join("\n")
        );
        let action = event["unmapped"]["audit_ingest"]["action"]
            .as_str()
            .unwrap()
            .to_string();
        classes.entry(action).or_default().insert(uid);
    }
    let class_of = |action: &str| classes.get(action).cloned().unwrap_or_default();
    // The right class for each kind of action.
    for (action, uid) in [
        ("stalwart.auth_success", 3002),
        ("stalwart.auth_failed", 3002),
        ("stalwart.auth_banned", 3002),
        ("authentik.login", 3002),
        ("authentik.login_failed", 3002),
        ("authentik.model_updated", 6003),
        ("ocis.file_create", 6006),
        ("ocis.file_read", 6006),
        ("ocis.file_shared", 6006),
        ("ocis.user_created", 3001),
        ("audit-ingest.timeline_read", 6003),
        ("custom.bulk_import", 0),
    ] {
        assert_eq!(class_of(action), BTreeSet::from([uid]), "{action}: {classes:?}");
    }
    // Every source is there, and every record once.
    let ids: BTreeSet<&str> = events.iter().map(|e| e["metadata"]["uid"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    for source in ["stalwart", "authentik", "ocis", "audit-ingest"] {
        assert!(
            events.iter().any(|e| e["unmapped"]["audit_ingest"]["source"] == source),
            "{source} is missing"
        );
    }
    // The original is kept: as raw_data, or past OCSF's limit in unmapped.
    let span = events
        .iter()
        .find(|e| {
            e["raw_data"]
                .as_str()
                .is_some_and(|r| r.contains("1432795264225280001"))
        })
        .expect("a Stalwart original with its 64-bit span id, digit for digit");
    assert_eq!(span["metadata"]["product"]["name"], "Stalwart");
    let huge = events
        .iter()
        .find(|e| e["unmapped"]["audit_ingest"]["external_id"] == "huge")
        .unwrap();
    assert!(huge.get("raw_data").is_none());
    assert_eq!(huge["unmapped"]["raw_data"].as_str().unwrap().len(), 70_000 + 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_export_streams_every_record_of_the_filters_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store = mixed_store(dir.path()).await;
    let expected = audit_ingest_tests::all_records(&store, "ocis").await.len();
    let router = app(store.clone(), runtime(None, InstanceMode::Auto, Limits::default()));
    let response = router.clone().oneshot(get("/audit/export?source=ocis")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let lines: Vec<Value> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected);
    assert!(
        lines
            .iter()
            .all(|l| l["source"] == "ocis" && l["metadata"]["original"].is_object())
    );
    // The same as OCSF, gzip-compressed.
    let response = router
        .clone()
        .oneshot(get("/audit/export?source=ocis&format=ocsf&gzip=true"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), expected);
    assert!(text.lines().all(|l| l.contains("\"class_uid\":6006")
        || l.contains("\"class_uid\":3001")
        || l.contains("\"class_uid\":0")));
    // What an export does not take is named.
    for (query, says) in [
        ("format=csv", "`format` must be ndjson or ocsf"),
        ("limit=5", "`limit` is not for an export"),
        ("since=yesterday", "`since` must be an RFC 3339 time"),
    ] {
        let response = router
            .clone()
            .oneshot(get(&format!("/audit/export?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(says), "{query}: {body:?}");
    }
    // The export is in the service's own trail.
    let trail = audit_ingest_tests::all_records(&store, "audit-ingest").await;
    assert!(trail.iter().any(|r| r.record.action == "audit-ingest.export"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_reads_no_further_ahead_than_its_reader_and_a_failed_store_cuts_it_short() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded_store(dir.path());
    let records: Vec<NewRecord> = (0..6_000)
        .map(|i| {
            let mut r = NewRecord {
                source: "stalwart".into(),
                action: "stalwart.auth_failed".into(),
                at: Utc::now() - Duration::seconds(i),
                received_at: Utc::now(),
                actor_id: None,
                actor_name: Some(format!("user{i}")),
                actor_email: None,
                ip: None,
                target_type: None,
                target_id: None,
                target_name: None,
                tenant_slug: None,
                outcome: "failure".into(),
                external_id: Some(format!("k{i}")),
                metadata: RawJson::from_value(&json!({ "original": { "i": i } })),
                mapper: None,
                unrecognised: false,
            };
            r.ip = Some("192.0.2.9".into());
            r
        })
        .collect();
    inner.insert(records, None).await.unwrap();
    let (store, switch) = audit_ingest_tests::faulty::with_fault_switch(inner);
    let router = app(store, runtime(None, InstanceMode::Auto, Limits::default()));
    let response = router.oneshot(get("/audit/export?source=stalwart")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(!first.data_ref().unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // 12 pages in all; with the reader resting after one, the export has
    // read only what its small queue holds: the page taken, one queued,
    // one waiting to be queued, one read ahead.
    let read = switch.pages_read();
    assert!(read <= 4, "read {read} pages ahead of a reader that took one");
    // The store fails: the answer ends in an error, not in a clean end.
    switch.set(true);
    let mut ended_cleanly = true;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            ended_cleanly = false;
            break;
        }
    }
    assert!(!ended_cleanly, "a cut-short export must not look complete");
}

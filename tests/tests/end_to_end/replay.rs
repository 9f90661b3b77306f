//! Dead letters and re-mapping: a drop-in mapper that traps, loops or runs
//! out of memory sends deliveries to dead letters while the host keeps
//! serving; once it is removed (or fixed), `replay` lands the events exactly
//! once and keeps what still fails.

use std::time::Duration;

use audit_ingest::replay::{ReplayScope, replay};
use audit_ingest::runtime::{InstanceMode, Limits, Runtime};
use audit_ingest_tests::{
    PROBE_AS_STALWART, TOKEN, all_records, app, call, embedded_store, get, install, pipeline, runtime,
    runtime_overriding_builtins, wait_until,
};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

fn signed(body: &str) -> Request<Body> {
    audit_ingest_tests::signed_stalwart(body)
}

/// The mixed Stalwart fixture batch with a `do` key the probe obeys
/// (the built-in Stalwart mapper ignores it).
fn batch_telling_the_probe(what: &str) -> (String, usize) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mappers/stalwart/tests/fixtures/mixed_batch.input.json"
    ))
    .unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap();
    let events = body["events"].as_array().unwrap().len();
    body["do"] = what.into();
    (body.to_string(), events)
}

fn serving(rt: &Runtime) -> String {
    rt.describe("stalwart").map(|d| d.version).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_looping_and_hoarding_mappers_dead_letter_then_replay_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let mappers = dir.path().join("mappers.d");
    std::fs::create_dir_all(&mappers).unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(200),
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let rt = runtime_overriding_builtins(&mappers, InstanceMode::Fresh, limits);
    let _watch = rt.watch().unwrap();
    let store = embedded_store(dir.path());
    let router = app(store.clone(), rt.clone());

    // A broken "stalwart" mapper is dropped in.
    install(&mappers.join("stalwart.wasm"), PROBE_AS_STALWART);
    wait_until(Duration::from_secs(10), || serving(&rt) == "2.0.0").expect("the drop-in serves");
    let mut expected = 0;
    for what in ["trap", "loop", "grow"] {
        let (body, events) = batch_telling_the_probe(what);
        let (status, answer) = call(&router, signed(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{what}: {answer}");
        expected += events;
        // The host serves the next request normally.
        let (status, _) = call(&router, signed(r#"{"events":[]}"#)).await;
        assert!(status.is_success(), "{what}: the next request still works");
    }
    // Something no mapper will ever read.
    assert_eq!(call(&router, signed("not json at all")).await.0, StatusCode::ACCEPTED);
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 4);
    assert_eq!(
        mapped(&store).await.len(),
        0,
        "nothing of the broken deliveries was stored"
    );

    // The fix: the drop-in is removed and the built-in mapper serves again.
    std::fs::remove_file(mappers.join("stalwart.wasm")).unwrap();
    wait_until(Duration::from_secs(10), || serving(&rt) == "0.1.0").expect("the built-in serves again");
    let pipeline = pipeline(store.clone(), rt.clone(), audit_ingest::ingest::Tenants::default());
    let report = replay(&pipeline, &ReplayScope::default(), |_| {}, || false)
        .await
        .unwrap();
    assert_eq!(
        (report.letters, report.resolved, report.still_failing),
        (4, 3, 1),
        "{report:?}"
    );
    // The three batches are the same events: one copy lands.
    let records = mapped(&store).await;
    assert_eq!(records.len(), expected / 3, "{report:?}");
    assert_eq!(report.inserted as usize, expected / 3);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "what still fails is kept");
    assert_eq!(letters[0].1.body, b"not json at all");

    // Replaying again writes nothing and keeps the letter.
    let again = replay(&pipeline, &ReplayScope::default(), |_| {}, || false)
        .await
        .unwrap();
    assert_eq!((again.resolved, again.inserted, again.still_failing), (0, 0, 1));
    assert_eq!(mapped(&store).await.len(), expected / 3);
}

/// Stored Stalwart records other than the probe's echo of the in-between requests.
async fn mapped(store: &audit_ingest::store::Store) -> Vec<audit_ingest::store::Record> {
    all_records(store, "stalwart")
        .await
        .into_iter()
        .filter(|r| !r.record.action.starts_with("stalwart.echo"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_endpoint_needs_the_token_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    let rt = runtime(None, InstanceMode::Auto, Limits::default());
    let router = app(store.clone(), rt);
    assert_eq!(call(&router, signed("not json")).await.0, StatusCode::ACCEPTED);
    let (status, _) = call(&router, Request::post("/admin/replay").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let with_token = |uri: &str| {
        Request::post(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, report) = call(&router, with_token("/admin/replay?source=stalwart&limit=10")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["letters"], 1);
    assert_eq!(report["stillFailing"], 1, "{report}");
    let (status, answer) = call(&router, with_token("/admin/replay?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_records_are_remapped_in_place_by_a_newer_mapper() {
    let dir = tempfile::tempdir().unwrap();
    let mappers = dir.path().join("mappers.d");
    std::fs::create_dir_all(&mappers).unwrap();
    let rt = runtime_overriding_builtins(&mappers, InstanceMode::Auto, Limits::default());
    let _watch = rt.watch().unwrap();
    let store = embedded_store(dir.path());
    let router = app(store.clone(), rt.clone());
    // Event types this Stalwart mapper has never heard of land on a catch-all verb.
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mappers/stalwart/tests/fixtures/future_type.input.json"
    ))
    .unwrap();
    assert_eq!(call(&router, signed(&body)).await.0, StatusCode::OK);
    let before = all_records(&store, "stalwart").await;
    let unknown: Vec<_> = before
        .iter()
        .filter(|r| r.record.metadata.parse()["unrecognised"] == true)
        .collect();
    assert!(!unknown.is_empty(), "the fixture has catch-all events");
    let pipeline = pipeline(store.clone(), rt.clone(), audit_ingest::ingest::Tenants::default());
    let scope = ReplayScope {
        catch_all: true,
        ..ReplayScope::default()
    };

    // The built-in mapper still does not know them: nothing changes.
    let report = replay(&pipeline, &scope, |_| {}, || false).await.unwrap();
    assert_eq!((report.catch_all as usize, report.remapped), (unknown.len(), 0));

    // A newer mapper that recognises everything (the probe, as "stalwart").
    install(&mappers.join("stalwart.wasm"), PROBE_AS_STALWART);
    wait_until(Duration::from_secs(10), || serving(&rt) == "2.0.0").expect("the drop-in serves");
    let report = replay(&pipeline, &scope, |_| {}, || false).await.unwrap();
    assert_eq!(report.remapped as usize, unknown.len(), "{report:?}");
    let after = all_records(&store, "stalwart").await;
    assert_eq!(after.len(), before.len(), "replaced, not added");
    for old in &unknown {
        let new = after
            .iter()
            .find(|r| r.record.external_id == old.record.external_id)
            .expect("the same external id");
        assert_eq!(new.record.action, "stalwart.echo_v2");
        assert_eq!(new.record.received_at, old.record.received_at);
        assert_eq!(new.record.mapper.as_deref(), Some("stalwart@2.0.0"));
        assert_ne!(new.record.metadata.parse()["unrecognised"], true);
        // The correction supersedes the catch-all record without erasing it:
        // the timeline shows the correction, and each names the other.
        let (status, shown) = call(&router, get(&format!("/audit/{}", new.id))).await;
        assert_eq!(status, StatusCode::OK);
        let kept = shown["supersedes"][0]
            .as_str()
            .expect("the correction names what it superseded");
        let (status, earlier) = call(&router, get(&format!("/audit/{kept}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(earlier["supersededBy"], new.id.as_str());
        assert_eq!(earlier["action"], old.record.action.as_str());
        assert_eq!(earlier["externalId"], json!(old.record.external_id));
        assert_eq!(earlier["metadata"], old.record.metadata.parse());
    }
    // Nothing left to re-map.
    let again = replay(&pipeline, &scope, |_| {}, || false).await.unwrap();
    assert_eq!(again.catch_all, 0);
}

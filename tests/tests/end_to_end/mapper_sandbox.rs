//! A hostile mapper is cut off within its deadline or cap, with a clear
//! reason, and the runtime keeps serving: the same mapper's next call and
//! the built-in mappers of other sources.

use std::time::{Duration, Instant};

use audit_ingest::event::{Delivery, PageRequest};
use audit_ingest::runtime::{CallFailure, InstanceMode, Limits, MapError, Runtime};
use audit_ingest_tests::{PROBE_DESCRIBE_HUGE, PROBE_DESCRIBE_SLEEPS, PROBE_V1, install, runtime};

const DEADLINE: Duration = Duration::from_millis(200);

const LIMITS: Limits = Limits {
    deadline: DEADLINE,
    memory_bytes: 32 << 20,
    output_bytes: 4 << 20,
    events_per_call: 1000,
    field_bytes: 4096,
};

/// A correctness bound: well above the deadline and start-up's compiling of
/// the built-in mappers on a slow, loaded machine, well below the probe's
/// 30 s sleeps (the cut-off time itself is measured in BENCHMARKS.md, not
/// asserted here).
const CUT_OFF: Duration = Duration::from_secs(15);

fn probe(what: &str) -> Delivery {
    Delivery::from_body("probe", format!(r#"{{"do":"{what}"}}"#).into_bytes())
}

fn failure_of(rt: &Runtime, delivery: &Delivery) -> (CallFailure, Duration) {
    let started = Instant::now();
    let result = rt.map_blocking("probe", delivery);
    let took = started.elapsed();
    match result {
        Err(MapError::Failed { failure, .. }) => (failure, took),
        other => panic!("expected a failed call, got {other:?}"),
    }
}

/// The probe's next call and a built-in mapper both still answer.
fn still_serving(rt: &Runtime) {
    let echo = rt
        .map_blocking("probe", &probe("echo"))
        .expect("the probe answers again");
    assert_eq!(echo.mapped.events[0].action, "probe.echo_v1");
    let body = r#"{"events":[{"id":"1","createdAt":"2026-01-01T00:00:00Z","type":"auth.success","data":{"accountName":"a@example.org","remoteIp":"192.0.2.1"}}]}"#;
    let stalwart = rt
        .map_blocking("stalwart", &Delivery::from_body("stalwart", body.as_bytes().to_vec()))
        .expect("another source's mapper answers");
    assert_eq!(stalwart.mapped.events.len(), 1);
}

fn probe_runtime(mode: InstanceMode) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), mode, LIMITS);
    (dir, rt)
}

#[test]
fn sleeping_and_waiting_mappers_are_refused_at_once_in_both_instance_modes() {
    for mode in [InstanceMode::Fresh, InstanceMode::Reuse] {
        let (_dir, rt) = probe_runtime(mode);
        for what in ["sleep", "sleep-forever", "wait"] {
            let (failure, took) = failure_of(&rt, &probe(what));
            match &failure {
                CallFailure::Forbidden(why) => assert!(why.contains("may not sleep or wait"), "{what}: {why}"),
                other => panic!("{what} ({mode:?}): expected a refusal, got {other:?}"),
            }
            assert!(took < CUT_OFF, "{what} held the call for {took:?}");
            still_serving(&rt);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_query_that_sleeps_is_refused_and_the_next_page_is_served() {
    let (_dir, rt) = probe_runtime(InstanceMode::Reuse);
    let started = Instant::now();
    let slept = rt
        .page_query(
            "probe",
            PageRequest {
                page: 7,
                page_size: 100,
            },
        )
        .await;
    assert!(
        matches!(
            &slept,
            Err(MapError::Failed {
                failure: CallFailure::Forbidden(_),
                ..
            })
        ),
        "{slept:?}"
    );
    assert!(
        started.elapsed() < CUT_OFF,
        "page-query held for {:?}",
        started.elapsed()
    );
    let next = rt
        .page_query(
            "probe",
            PageRequest {
                page: 8,
                page_size: 100,
            },
        )
        .await
        .expect("the next page query is answered");
    assert_eq!(next[0].value, "8");
}

#[test]
fn hostile_describes_are_refused_at_load_and_start_up_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("sleepy.wasm"), PROBE_DESCRIBE_SLEEPS);
    install(&dir.path().join("huge.wasm"), PROBE_DESCRIBE_HUGE);
    let started = Instant::now();
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, LIMITS);
    assert!(
        started.elapsed() < CUT_OFF,
        "start-up took {:?} with a sleeping describe",
        started.elapsed()
    );
    assert_eq!(rt.reload_counts(), (0, 2), "both files are rejected");
    assert!(rt.mapper_id("probe").is_none());
    assert!(rt.mapper_id("stalwart").is_some(), "the built-ins serve");
    // A later reload is not held either: a good file dropped in now loads.
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let started = Instant::now();
    rt.rescan();
    assert!(started.elapsed() < CUT_OFF);
    still_serving(&rt);
}

#[test]
fn an_answer_of_aliased_strings_is_refused_while_lifting() {
    let (_dir, rt) = probe_runtime(InstanceMode::Fresh);
    // 10,000 events naming one 1 MiB buffer: 10 GiB if each were copied.
    let (failure, took) = failure_of(&rt, &probe("alias"));
    match &failure {
        CallFailure::BadAnswer(why) => assert!(why.contains("max_output_bytes"), "{why}"),
        other => panic!("expected a refused answer, got {other:?}"),
    }
    assert!(took < CUT_OFF, "lifting took {took:?}");
    still_serving(&rt);
}

#[test]
fn answers_over_the_event_and_field_caps_are_refused() {
    // The caps refuse, not the clock: a 1,000-event answer is a legitimate
    // call, which a debug build on a loaded 2-core machine (a browser test
    // beside it) can take longer than the hostile tests' 200 ms to make.
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let limits = Limits {
        deadline: Duration::from_secs(10),
        ..LIMITS
    };
    let rt = runtime(Some(dir.path()), InstanceMode::Reuse, limits);
    let many = Delivery::from_body("probe", br#"{"do":"many","n":1001}"#.to_vec());
    match failure_of(&rt, &many).0 {
        CallFailure::BadAnswer(why) => assert!(why.contains("more than 1000 events"), "{why}"),
        other => panic!("expected a refused answer, got {other:?}"),
    }
    let at_cap = Delivery::from_body("probe", br#"{"do":"many","n":1000}"#.to_vec());
    assert_eq!(rt.map_blocking("probe", &at_cap).unwrap().mapped.events.len(), 1000);
    match failure_of(&rt, &probe("big-field")).0 {
        CallFailure::BadAnswer(why) => assert!(why.contains("`actor.name` is 1048576 bytes"), "{why}"),
        other => panic!("expected a refused answer, got {other:?}"),
    }
    still_serving(&rt);
}

#[test]
fn a_mapper_holding_handles_without_end_is_stopped() {
    let (_dir, rt) = probe_runtime(InstanceMode::Fresh);
    let (failure, took) = failure_of(&rt, &probe("grow-table"));
    assert!(
        matches!(&failure, CallFailure::Forbidden(why) if why.contains("host resources")),
        "{failure:?}"
    );
    assert!(took < CUT_OFF);
    still_serving(&rt);
}

#[test]
fn a_reused_instance_that_writes_stderr_on_every_call_keeps_working() {
    let (_dir, rt) = probe_runtime(InstanceMode::Reuse);
    for n in 0..10_000 {
        if let Err(e) = rt.map_blocking("probe", &probe("stderr")) {
            panic!("call {n} failed: {e}");
        }
    }
    // What a failing call wrote is still reported with its failure.
    let (failure, _) = failure_of(&rt, &probe("trap"));
    assert!(
        matches!(&failure, CallFailure::Trapped(why) if why.contains("the probe was asked to trap")),
        "{failure:?}"
    );
}

/// `POST path` with `body`, signed as Stalwart signs (the endpoint's auth).
fn signed(path: &str, body: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header(
            "x-signature",
            audit_ingest::sources::webhook::signature::stalwart_signature(
                audit_ingest_tests::STALWART_SECRET,
                body.as_bytes(),
            ),
        )
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_deliveries_on_64_instances_get_503s_and_none_is_lost() {
    use audit_ingest::runtime::{Capacity, RuntimeConfig};
    use axum::http::StatusCode;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let mappers = dir.path().join("mappers.d");
    std::fs::create_dir_all(&mappers).unwrap();
    install(&mappers.join("probe.wasm"), PROBE_V1);
    let rt = audit_ingest_tests::runtime_with(RuntimeConfig {
        dir: Some(mappers),
        mode: InstanceMode::Reuse,
        // 64 calls share two cores: a generous deadline keeps every good
        // call well inside it (a timed-out call would be a dead letter).
        limits: Limits {
            deadline: Duration::from_secs(10),
            ..Limits::default()
        },
        // 64 calls at once and no queue: the 65th concurrent call is busy.
        capacity: Capacity {
            calls: 64,
            queued: 0,
            wait: Duration::ZERO,
        },
        ..RuntimeConfig::default()
    });
    let store = audit_ingest_tests::embedded_store(dir.path());
    let mut endpoint = audit_ingest_tests::stalwart_endpoint();
    endpoint.source = "probe".into();
    endpoint.mapper = "probe".into();
    endpoint.path = "/ingest/probe/webhook".into();
    let router = audit_ingest_tests::app_with(store.clone(), rt, vec![endpoint]);

    let senders: Vec<_> = (0..1000)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                // A sender that retries on 503 and 429 as the answer says.
                let body = format!(r#"{{"do":"spin","n":10000000,"id":"delivery-{i}"}}"#);
                let mut busy = 0u32;
                loop {
                    let answer = router
                        .clone()
                        .oneshot(signed("/ingest/probe/webhook", &body))
                        .await
                        .unwrap();
                    match answer.status() {
                        StatusCode::OK => return busy,
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                            assert!(answer.headers().contains_key("retry-after"), "a retry answer says when");
                            busy += u32::from(answer.status() == StatusCode::SERVICE_UNAVAILABLE);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("delivery {i}: unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    let mut busy = 0;
    for s in senders {
        busy += s.await.unwrap();
    }
    assert!(busy > 0, "no delivery found the 64 instances busy");
    let stored = audit_ingest_tests::all_records(&store, "probe").await;
    let mut ids: Vec<_> = stored.iter().filter_map(|r| r.record.external_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((stored.len(), ids.len()), (1000, 1000), "each delivery stored once");
    assert!(
        store.dead_letters(10).await.unwrap().is_empty(),
        "a busy delivery is never a dead letter"
    );
}

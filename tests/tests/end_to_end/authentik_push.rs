//! authentik pushed and polled: notification pushes (`POST
//! /ingest/authentik/webhook`, the shipped body mapping's one event) beside
//! the poller's walk of the events list, one pipeline, as the service runs
//! them. Every test checks what landed in the store: each event once,
//! whichever way and however often it arrived.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_ingest::api::{self, AppState};
use audit_ingest::config::Secret;
use audit_ingest::ingest::{Shutdown, SourceContext};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::poll::Poller;
use audit_ingest::store::{Record, Store};
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn, notification_body};
use audit_ingest_tests::{
    AK_WEBHOOK_TOKEN, TOKEN, all_records, authentik_endpoint, call, embedded_store, get, pushed_authentik, runtime,
    secret_file, source_context, state_with_access,
};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The service's parts for authentik, pushed and polled, over one store.
struct Service {
    ak: StandIn,
    router: axum::Router,
    state: AppState,
    poller: Poller,
    ctx: SourceContext,
    _dir: tempfile::TempDir,
}

impl Service {
    /// What `serve` assembles: the push endpoint, the poller (cap lifted)
    /// and, shared by both, the pipeline with the poller's tenant lookup.
    async fn start() -> Service {
        let ak = StandIn::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
        config.token = secret_file(AK_TOKEN);
        config.max_pages_per_tick = 0;
        let poller = config.resolve().expect("a valid poller");
        let access = audit_ingest::access::Access::service_token(Some(Secret::new(TOKEN)));
        let rt = runtime(None, InstanceMode::Reuse, Limits::default());
        let mut state = state_with_access(embedded_store(dir.path()), rt, vec![authentik_endpoint()], access);
        state.pipeline = state
            .pipeline
            .clone()
            .with_actor_tenants("authentik", poller.tenant_lookup().expect("the preset infers tenants"));
        state
            .pipeline
            .telemetry()
            .expect_pushes("authentik", audit_ingest::serve::PUSH_SILENCE);
        let router = api::router(state.clone());
        let ctx = source_context(state.pipeline.clone(), Shutdown::never());
        Service {
            ak,
            router,
            state,
            poller,
            ctx,
            _dir: dir,
        }
    }

    fn store(&self) -> &Store {
        self.state.pipeline.store()
    }

    /// Posts each body as authentik's transport does; the answers, in order.
    async fn push(&self, bodies: Vec<Vec<u8>>) -> Vec<(StatusCode, Value)> {
        let mut answers = Vec::new();
        for body in bodies {
            answers.push(call(&self.router, pushed_authentik(body, AK_WEBHOOK_TOKEN)).await);
        }
        answers
    }

    /// One poll tick: `(inserted, duplicates)`.
    async fn tick(&mut self) -> (u64, u64) {
        let s = self.poller.tick(&self.ctx).await.expect("a tick");
        (s.inserted, s.duplicates)
    }

    async fn metrics(&self) -> String {
        let response = tower::ServiceExt::oneshot(
            self.router.clone(),
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

/// `(inserted, duplicates)` summed over webhook answers, each of which must be 200.
fn counted(answers: &[(StatusCode, Value)]) -> (u64, u64) {
    answers.iter().fold((0, 0), |(i, d), (status, body)| {
        assert_eq!(*status, StatusCode::OK, "{body}");
        (
            i + body["inserted"].as_u64().unwrap(),
            d + body["duplicates"].as_u64().unwrap(),
        )
    })
}

/// The stored records by external id; fails on a repeat.
async fn stored(store: &Store) -> BTreeMap<String, Record> {
    let mut by_id = BTreeMap::new();
    for r in all_records(store, "authentik").await {
        let id = r.record.external_id.clone().expect("an event pk");
        assert!(by_id.insert(id.clone(), r).is_none(), "{id} stored twice");
    }
    by_id
}

/// What a user sees of a record in the timeline, without the store's id,
/// the arrival time and the original's bytes (a push carries the event as
/// authentik's Python serialises it, the list as its API does).
fn as_seen(r: &Record) -> Value {
    let r = &r.record;
    json!([
        r.action,
        r.at,
        r.actor_id,
        r.actor_name,
        r.actor_email,
        r.ip,
        r.target_type,
        r.target_id,
        r.target_name,
        r.tenant_slug,
        r.outcome,
        r.external_id,
        r.unrecognised
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_events_the_poller_reads_again_and_repeated_pushes_are_stored_once() {
    let mut svc = Service::start().await;
    svc.ak.add_events(30);
    // A rule with three destination users and "send once" off: three
    // identical POSTs per event.
    let answers = svc.push(svc.ak.notifications(3)).await;
    assert_eq!(answers.len(), 90);
    assert_eq!(counted(&answers), (30, 60));
    assert_eq!(svc.tick().await, (0, 30), "the poller confirms, stores nothing again");
    let pushed = stored(svc.store()).await;
    let expected: HashSet<String> = svc.ak.pks().into_iter().collect();
    assert_eq!(pushed.keys().cloned().collect::<HashSet<_>>(), expected);

    // The same events polled alone, into another store: the same records.
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(None, InstanceMode::Reuse, Limits::default());
    let polled_only = source_context(
        audit_ingest_tests::pipeline(embedded_store(dir.path()), rt, audit_ingest::ingest::Tenants::default()),
        Shutdown::never(),
    );
    let mut config = audit_ingest::presets::authentik_poller(&svc.ak.base_url);
    config.token = secret_file(AK_TOKEN);
    config.resolve().unwrap().tick(&polled_only).await.unwrap();
    let polled = stored(polled_only.pipeline.store()).await;
    assert_eq!(polled.len(), 30);
    for (id, record) in &polled {
        assert_eq!(as_seen(&pushed[id]), as_seen(record), "{id} differs pushed and polled");
    }

    let metrics = svc.metrics().await;
    for line in [
        "audit_ingest_arrivals_total{source=\"authentik\",transport=\"webhook\",first=\"true\"} 30\n",
        "audit_ingest_arrivals_total{source=\"authentik\",transport=\"webhook\",first=\"false\"} 60\n",
        "audit_ingest_arrivals_total{source=\"authentik\",transport=\"poll\",first=\"false\"} 30\n",
        "audit_ingest_push_silent{source=\"authentik\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        !metrics.contains("transport=\"poll\",first=\"true\""),
        "no event reached the timeline by the poll first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_lost_for_a_while_are_recovered_by_the_poller_and_late_pushes_repeat() {
    let mut svc = Service::start().await;
    svc.ak.add_events(10);
    assert_eq!(counted(&svc.push(svc.ak.notifications(1)).await), (10, 0));
    // Ten events whose notifications never arrive.
    svc.ak.add_events(10);
    svc.ak.lose_notifications();
    svc.ak.add_events(10);
    assert_eq!(counted(&svc.push(svc.ak.notifications(1)).await), (10, 0));
    assert_eq!(svc.tick().await, (10, 20), "the poller brings exactly the lost ten");
    assert_eq!(stored(svc.store()).await.len(), 30);

    // Polled before its push arrives: stored by the poll, the push repeats it.
    svc.ak.add_events(5);
    assert_eq!(svc.tick().await.0, 5);
    let late = svc.push(svc.ak.notifications(1)).await;
    assert_eq!(counted(&late), (0, 5));
    assert_eq!(stored(svc.store()).await.len(), 35);
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("audit_ingest_arrivals_total{source=\"authentik\",transport=\"poll\",first=\"true\"} 15\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_the_shipped_mapping_is_dead_lettered_and_a_wrong_token_stores_nothing() {
    let svc = Service::start().await;
    svc.ak.add_events(1);
    let body = svc.ak.notifications(1).remove(0);
    for (token, why) in [("not-the-token-at-all", "wrong token"), ("", "empty token")] {
        let (status, answer) = call(&svc.router, pushed_authentik(body.clone(), token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
    }
    let unauthenticated = axum::http::Request::post("/ingest/authentik/webhook")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    assert_eq!(call(&svc.router, unauthenticated).await.0, StatusCode::UNAUTHORIZED);
    assert!(stored(svc.store()).await.is_empty());
    assert!(svc.store().dead_letters(10).await.unwrap().is_empty());

    // A transport without the body mapping sends authentik's default body.
    let default = br#"{"body": "user1 logged in", "severity": "notice", "user_email": "audit-ingest@example.org", "user_username": "audit-ingest", "event_user_email": "user1@example.org", "event_user_username": "user1"}"#;
    let (status, answer) = call(&svc.router, pushed_authentik(default.to_vec(), AK_WEBHOOK_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let letters: Vec<_> = svc
        .store()
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("default notification body"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].body, default.to_vec(), "kept byte for byte for re-mapping");
    assert!(
        letters[0].headers.iter().all(|(name, _)| name != "authorization"),
        "the token is not kept"
    );
    // The good body still goes in.
    assert_eq!(counted(&svc.push(vec![body]).await), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_events_get_their_actors_tenants_from_the_lookup_the_poller_uses() {
    let mut svc = Service::start().await;
    {
        let mut s = svc.ak.state.lock().unwrap();
        s.users.insert(1, vec!["authentik Admins".into(), "acme".into()]);
        s.users.insert(2, vec!["beta".into()]);
        s.users.insert(4, vec!["ACME".into()]);
        s.users.insert(5, vec!["staff".into()]);
        // user 3 was deleted: 404
    }
    svc.ak.add_events(60);
    let answers = svc.push(svc.ak.notifications(2)).await;
    assert_eq!(counted(&answers), (60, 60));
    svc.tick().await;
    let records = stored(svc.store()).await;
    let tenants_of = |user: &str| -> HashSet<Option<String>> {
        records
            .values()
            .filter(|r| r.record.actor_id.as_deref() == Some(user))
            .map(|r| r.record.tenant_slug.clone())
            .collect()
    };
    assert_eq!(tenants_of("1"), HashSet::from([Some("acme".to_string())]));
    assert_eq!(tenants_of("2"), HashSet::from([Some("beta".to_string())]));
    assert_eq!(tenants_of("3"), HashSet::from([None]));
    assert_eq!(tenants_of("4"), HashSet::from([Some("acme".to_string())]));
    assert_eq!(tenants_of("5"), HashSet::from([None]));
    // Five users, 120 pushes and a poll of 60 events: five lookups.
    assert_eq!(svc.ak.state.lock().unwrap().user_requests, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_warns_while_pushes_are_stopped_and_the_poller_still_finds_new_events() {
    let mut svc = Service::start().await;
    // Any push older than the newest polled event counts as stopped here.
    svc.state
        .pipeline
        .telemetry()
        .expect_pushes("authentik", Duration::ZERO);
    let pushes_stopped = |svc: &Service| {
        let (router, _) = (svc.router.clone(), ());
        async move {
            let (status, body) = call(&router, get("/readyz")).await;
            assert_eq!(status, StatusCode::OK, "a warning, not unreadiness: {body}");
            body["pushesStopped"].clone()
        }
    };
    svc.ak.add_events_ending_now(5);
    assert_eq!(counted(&svc.push(svc.ak.notifications(1)).await), (5, 0));
    assert_eq!(svc.tick().await, (0, 5));
    assert_eq!(pushes_stopped(&svc).await, Value::Null);

    // The rule breaks: events keep happening, only the poller sees them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    svc.ak.add_events_ending_now(3);
    svc.ak.lose_notifications();
    assert_eq!(svc.tick().await, (3, 5));
    let warning = pushes_stopped(&svc).await;
    assert_eq!(warning[0]["source"], "authentik", "{warning}");
    assert!(
        warning[0]["warning"].as_str().unwrap().contains("pushes stopped"),
        "{warning}"
    );
    assert!(
        svc.metrics()
            .await
            .contains("audit_ingest_push_silent{source=\"authentik\"} 1\n")
    );

    // Fixed: the next push clears it.
    svc.ak.add_events_ending_now(1);
    assert_eq!(counted(&svc.push(svc.ak.notifications(1)).await), (1, 0));
    assert_eq!(pushes_stopped(&svc).await, Value::Null);
    assert!(
        svc.metrics()
            .await
            .contains("audit_ingest_push_silent{source=\"authentik\"} 0\n")
    );
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs `tests/authentik/evaluate_webhook_mapping.py` on `mapping` for
/// `event`: the bytes authentik would POST. None when there is no Python
/// (the test then says it was skipped, unless CI requires Python).
fn evaluate_mapping(mapping: &str, event: &Value) -> Option<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("python3")
        .arg(repo_file("tests/authentik/evaluate_webhook_mapping.py"))
        .arg(repo_file(mapping))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("AUDIT_TEST_REQUIRE_PYTHON").is_some() => {
            panic!("python3 is required (AUDIT_TEST_REQUIRE_PYTHON): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no python3 to evaluate the shipped authentik mappings ({e})");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_body_mapping_sends_what_the_stand_in_pushes_and_it_is_stored() {
    let svc = Service::start().await;
    svc.ak.add_events(3);
    let mut events = svc.ak.state.lock().unwrap().events.clone();
    // Non-ASCII, quotes and a backslash, as names and paths carry them.
    let mut odd = events[1].clone();
    odd["pk"] = json!("0b1e7a5c-3f9d-4c2a-8e6b-7d5f4a3c2b1e");
    odd["user"] = json!({"pk": 9, "email": "zoë@example.org", "username": "zoë \"z\" \\ 🦀"});
    events.push(odd.clone());
    for event in &events {
        let Some(sent) = evaluate_mapping("mappers/authentik/notification-body-mapping.py", event) else {
            return;
        };
        assert_eq!(
            String::from_utf8_lossy(&sent),
            String::from_utf8_lossy(&notification_body(event)),
            "the stand-in must push exactly what the shipped mapping makes authentik send"
        );
    }
    // What the mapping makes of the odd event is stored under its pk.
    let sent = evaluate_mapping("mappers/authentik/notification-body-mapping.py", &odd).unwrap();
    assert_eq!(counted(&svc.push(vec![sent]).await), (1, 0));
    let records = stored(svc.store()).await;
    let record = &records["0b1e7a5c-3f9d-4c2a-8e6b-7d5f4a3c2b1e"].record;
    assert_eq!(record.actor_name.as_deref(), Some("zoë \"z\" \\ 🦀"));

    let header = evaluate_mapping("mappers/authentik/notification-header-mapping.py", &events[0]).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert!(
        header["Authorization"].as_str().unwrap().starts_with("Bearer "),
        "{header}"
    );
}

#[test]
fn docs_show_the_shipped_mappings_exactly() {
    let docs = std::fs::read_to_string(repo_file("docs/authentik.md")).unwrap();
    for mapping in [
        "mappers/authentik/notification-body-mapping.py",
        "mappers/authentik/notification-header-mapping.py",
    ] {
        let text = std::fs::read_to_string(repo_file(mapping)).unwrap();
        assert!(
            docs.contains(&text),
            "docs/authentik.md does not show {mapping} as shipped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_expects_pushes_only_when_its_push_endpoint_has_a_token() {
    let ak = StandIn::start().await;
    for token in [None, Some(AK_WEBHOOK_TOKEN)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = audit_ingest::config::Config {
            data_dir: dir.path().join("data"),
            mappers_dir: dir.path().join("mappers.d"),
            ..audit_ingest::config::Config::default()
        };
        config.store.mongodb_uri = Default::default();
        let mut poller = audit_ingest::presets::authentik_poller(&ak.base_url);
        poller.token = secret_file(AK_TOKEN);
        config.pollers = vec![poller];
        let mut hook = audit_ingest::presets::authentik_webhook();
        // The preset reads AUTHENTIK_WEBHOOK_TOKEN; here: a file, or nothing.
        hook.auth = audit_ingest::sources::webhook::AuthConfig::Bearer {
            token: match token {
                Some(t) => secret_file(t),
                None => audit_ingest::config::SecretSource::default(),
            },
        };
        config.webhooks = vec![hook];
        let settings = audit_ingest::config::Settings::resolve(config).unwrap();
        let app = audit_ingest::serve::build(settings).await.unwrap();
        let metrics = app.state.pipeline.telemetry().render(
            app.state.pipeline.runtime().figures(),
            audit_ingest::telemetry::StoreFigures::default(),
        );
        let expects = metrics.contains("audit_ingest_push_silent{source=\"authentik\"}");
        assert_eq!(
            expects,
            token.is_some(),
            "pushes expected only with a token (token: {token:?})"
        );
        app.stop(Duration::from_secs(5)).await;
    }
}

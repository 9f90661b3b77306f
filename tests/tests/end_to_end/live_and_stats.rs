//! What the web page reads, as any client sees it: the live stream
//! (`/audit/stream`), the overview's counts (`/audit/stats`), the caller
//! (`/audit/me`), the dead-letter list and one-letter replay, exact
//! originals from `/audit/{id}`, and the page's own routes.

use std::time::Duration;

use audit_ingest::access::{Access, tokens};
use audit_ingest::api;
use audit_ingest::config::Secret;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest_tests::{TOKEN, call, embedded_store, runtime, signed_stalwart, stalwart_endpoint, state_with_access};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Setup {
    state: api::AppState,
    router: axum::Router,
    acme_token: String,
    _dir: tempfile::TempDir,
}

fn setup_with(live: api::stream::Live) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let acme = tokens::create("acme-reader", &["read:tenant=acme".into()]).unwrap();
    let machine = tokens::MachineTokens::resolve(std::slice::from_ref(&acme.entry)).unwrap();
    let access = Access::new(Some(Secret::new(TOKEN)), machine, None, false);
    let mut state = state_with_access(
        embedded_store(dir.path()),
        runtime(None, InstanceMode::Fresh, Limits::default()),
        vec![stalwart_endpoint()],
        access,
    );
    state.live = live;
    Setup {
        router: api::router(state.clone()),
        state,
        acme_token: acme.token,
        _dir: dir,
    }
}

fn setup() -> Setup {
    setup_with(api::stream::Live::default())
}

fn request(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// A Stalwart batch of failed or successful logins by `user@domain` names.
fn stalwart(events: &[(&str, &str)]) -> String {
    let events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (kind, account))| {
            json!({ "id": format!("{i}"), "createdAt": "2026-12-01T10:00:00Z", "type": kind,
                    "data": { "accountName": account, "remoteIp": format!("192.0.2.{i}"), "spanId": 1_432_795_264_225_280_001u64 + i as u64 } })
        })
        .collect();
    json!({ "events": events }).to_string()
}

async fn post(router: &axum::Router, body: &str) -> StatusCode {
    call(router, signed_stalwart(body)).await.0
}

/// An open event stream, read frame by frame.
struct Events(Body);

impl Events {
    async fn open(
        router: &axum::Router,
        uri: &str,
        token: &str,
        last: Option<&str>,
    ) -> Result<Events, (StatusCode, String)> {
        let mut r = Request::get(uri).header("authorization", format!("Bearer {token}"));
        if let Some(id) = last {
            r = r.header("last-event-id", id);
        }
        let response = router.clone().oneshot(r.body(Body::empty()).unwrap()).await.unwrap();
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut events = Events(response.into_body());
        assert!(
            events.frame().await.unwrap().contains(": open"),
            "the stream says it is open"
        );
        Ok(events)
    }

    /// The next frame's text; `None` when the stream ended.
    async fn frame(&mut self) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(10), self.0.frame())
            .await
            .expect("a frame within 10 s")?
            .unwrap();
        Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
    }

    /// The next `record` event: its id and record.
    async fn record(&mut self) -> (String, Value) {
        loop {
            let text = self.frame().await.expect("the stream goes on");
            if text.starts_with(':') {
                continue;
            }
            let id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().to_string();
            assert!(text.contains("event: record\n"), "{text}");
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            return (id, serde_json::from_str(data).unwrap());
        }
    }
}

#[tokio::test]
async fn a_stream_sends_what_commits_after_it_opened_filtered_and_resumes_after_the_last_event_id() {
    let s = setup();
    assert_eq!(
        post(&s.router, &stalwart(&[("auth.failed", "before@acme")])).await,
        StatusCode::OK
    );
    let mut live = Events::open(&s.router, "/audit/stream?source=stalwart&outcome=failure", TOKEN, None)
        .await
        .unwrap();
    let body = stalwart(&[
        ("auth.success", "ok@acme"),
        ("auth.failed", "first@acme"),
        ("auth.failed", "second@beta"),
    ]);
    assert_eq!(post(&s.router, &body).await, StatusCode::OK);
    let (first_id, first) = live.record().await;
    assert_eq!(
        first["actor"]["name"], "first@acme",
        "the success and the earlier failure are not sent"
    );
    let (_, second) = live.record().await;
    assert_eq!(second["actor"]["name"], "second@beta");
    drop(live);

    // Reconnecting after the first event gets what followed it, filtered the same way.
    let mut resumed = Events::open(
        &s.router,
        "/audit/stream?source=stalwart&outcome=failure",
        TOKEN,
        Some(&first_id),
    )
    .await
    .unwrap();
    let (_, again) = resumed.record().await;
    assert_eq!(again["actor"]["name"], "second@beta");
}

#[tokio::test]
async fn a_tenant_reader_streams_only_its_tenant() {
    let s = setup();
    let mut live = Events::open(&s.router, "/audit/stream?source=stalwart", &s.acme_token, None)
        .await
        .unwrap();
    let body = stalwart(&[("auth.failed", "x@beta"), ("auth.failed", "y@acme")]);
    assert_eq!(post(&s.router, &body).await, StatusCode::OK);
    let (_, only) = live.record().await;
    assert_eq!(
        (only["actor"]["name"].as_str(), only["tenant"].as_str()),
        (Some("y@acme"), Some("acme"))
    );
}

#[tokio::test]
async fn bad_stream_requests_are_refused_and_the_number_of_streams_is_bounded() {
    let s = setup_with(api::stream::Live::new(1));
    let refused = |r: Result<Events, (StatusCode, String)>| r.err().expect("refused");
    let (status, body) = refused(Events::open(&s.router, "/audit/stream?limit=5", TOKEN, None).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Last-Event-ID"), "{body}");
    let (status, _) = refused(Events::open(&s.router, "/audit/stream", TOKEN, Some("12; drop")).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refused(Events::open(&s.router, "/audit/stream", "wrong", None).await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let open = Events::open(&s.router, "/audit/stream", TOKEN, None).await.unwrap();
    let (status, body) = refused(Events::open(&s.router, "/audit/stream", TOKEN, None).await);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("too many live streams"), "{body}");
    drop(open);
    Events::open(&s.router, "/audit/stream", TOKEN, None)
        .await
        .expect("a closed stream frees its place");
}

#[tokio::test]
async fn streams_end_when_the_service_shuts_down() {
    let s = setup();
    let mut live = Events::open(&s.router, "/audit/stream", TOKEN, None).await.unwrap();
    s.state.live.close_all();
    assert_eq!(live.frame().await, None, "the stream ends");
    let refused = Events::open(&s.router, "/audit/stream", TOKEN, None)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_stats_count_by_bucket_source_and_outcome_within_the_reader_scope() {
    let s = setup();
    let body = stalwart(&[
        ("auth.failed", "a@acme"),
        ("auth.failed", "b@acme"),
        ("auth.success", "c@acme"),
        ("auth.failed", "d@beta"),
    ]);
    assert_eq!(post(&s.router, &body).await, StatusCode::OK);
    let range = "since=2026-12-01T00:00:00Z&until=2026-12-02T00:00:00Z";
    let (status, all) = call(&s.router, request(&format!("/audit/stats?{range}"), TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        (all["total"].as_u64(), all["bucketSecs"].as_u64()),
        (Some(4), Some(3600))
    );
    let failures: u64 = all["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["outcome"] == "failure")
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(failures, 3);
    assert_eq!(all["buckets"][0]["start"], "2026-12-01T10:00:00Z");
    let stalwart = all["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "stalwart")
        .unwrap();
    assert_eq!(
        (stalwart["count"].as_u64(), stalwart["failures"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(stalwart["deadLetters"], 0, "an operator sees dead letters");

    let (status, acme) = call(&s.router, request(&format!("/audit/stats?{range}"), &s.acme_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acme["total"], 3, "a tenant reader counts its tenant's records only");
    let of_acme = acme["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "stalwart")
        .unwrap();
    assert!(
        of_acme.get("deadLetters").is_none() && of_acme.get("health").is_none(),
        "{of_acme}"
    );

    let (status, bad) = call(&s.router, request("/audit/stats?bucket=1", TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("bucket"));
}

#[tokio::test]
async fn dead_letters_are_listed_for_admins_and_one_letter_can_be_replayed() {
    let s = setup();
    assert_eq!(post(&s.router, "{\"events\": [ broken").await, StatusCode::ACCEPTED);
    assert_eq!(post(&s.router, "not json at all").await, StatusCode::ACCEPTED);
    let (status, page) = call(&s.router, request("/admin/dead-letters", TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let letters = page["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["body"], "{\"events\": [ broken");
    assert_eq!(letters[0]["source"], "stalwart");
    assert!(
        letters[0]["error"].as_str().unwrap().contains("not JSON"),
        "{}",
        letters[0]
    );
    let (status, _) = call(&s.router, request("/admin/dead-letters", &s.acme_token)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a tenant reader may not read dead letters"
    );

    let second = letters[1]["id"].as_str().unwrap();
    let replay = |query: String| {
        Request::post(format!("/admin/replay?{query}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, report) = call(&s.router, replay(format!("letter={second}"))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["letters"].as_u64(), report["stillFailing"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["lastLetter"], second);
    // Continuing after the first letter looks at the second only.
    let first = letters[0]["id"].as_str().unwrap();
    let (_, report) = call(&s.router, replay(format!("after={first}&limit=10"))).await;
    assert_eq!(
        (report["letters"].as_u64(), report["lastLetter"].as_str()),
        (Some(1), Some(second))
    );
}

#[tokio::test]
async fn a_record_comes_back_with_its_original_byte_for_byte() {
    let s = setup();
    // A key order serde_json would sort, and an integer beyond 64 bits.
    let body = r#"{"events":[{"type":"auth.failed","createdAt":"2026-12-01T10:00:00Z","id":"9","data":{"zeta":1,"accountName":"e@acme","huge":123456789012345678901234567890,"spanId":18446744073709551615}}]}"#;
    assert_eq!(post(&s.router, body).await, StatusCode::OK);
    let (_, page) = call(&s.router, request("/audit?source=stalwart", TOKEN)).await;
    let id = page["records"][0]["id"].as_str().unwrap();
    let response = s
        .router
        .clone()
        .oneshot(request(&format!("/audit/{id}"), TOKEN))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(r#""data":{"zeta":1,"accountName":"e@acme","huge":123456789012345678901234567890,"spanId":18446744073709551615}"#),
        "{text}"
    );
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["actor"]["name"], "e@acme");
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_tells_the_caller_who_it_is() {
    let s = setup();
    let response = s
        .router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/ui/");
    for path in ["/ui/", "/ui/event/42", "/ui/overview?range=7d"] {
        let response = s
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let h = response.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let tag = h["etag"].clone();
        let again = s
            .router
            .clone()
            .oneshot(
                Request::get(path)
                    .header("if-none-match", tag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let script = s
        .router
        .clone()
        .oneshot(Request::get("/ui/app.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // Without an identity provider for the page, it offers token sign-in only.
    let (status, config) = call(&s.router, Request::get("/ui/config.json").body(Body::empty()).unwrap()).await;
    assert_eq!((status, config), (StatusCode::OK, json!({ "oidc": null })));

    let (status, me) = call(&s.router, request("/audit/me", &s.acme_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["id"].as_str(), me["scopes"].clone()),
        (Some("acme-reader"), json!(["read:tenant=acme"]))
    );
    let (status, _) = call(&s.router, request("/audit/me", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

//! The authentik poller against a local stand-in that behaves like the real
//! events API: no time filter, page numbers, 404 past the end, newest first.
//! Every test checks what landed in the store: each event exactly once.

use std::collections::HashSet;
use std::path::Path;

use audit_ingest::ingest::Tenants;
use audit_ingest::ingest::{Shutdown, ShutdownSignal, SourceContext};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::poll::fetch::Failure;
use audit_ingest::sources::poll::{self, FirstRun, Poller, TickError};
use audit_ingest::store::Store;
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn};
use audit_ingest_tests::faulty::with_fault_switch;
use audit_ingest_tests::{all_records, embedded_store, pipeline, runtime, secret_file, source_context};

fn poller(stand_in: &StandIn, cap: u32, token: &str) -> Poller {
    let mut config = audit_ingest::presets::authentik_poller(&stand_in.base_url);
    config.token = secret_file(token);
    config.max_pages_per_tick = cap;
    config.resolve().expect("a valid poller")
}

fn context(store: Store) -> SourceContext {
    context_until(store, Shutdown::never())
}

fn context_until(store: Store, shutdown: Shutdown) -> SourceContext {
    let rt = runtime(None, InstanceMode::Reuse, Limits::default());
    let tenants = Tenants::new(["acme".to_string(), "globex".to_string()]);
    source_context(pipeline(store, rt, tenants), shutdown)
}

/// Stored external ids; fails the test on any duplicate.
async fn stored_once(store: &Store) -> HashSet<String> {
    let records = all_records(store, "authentik").await;
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.record.external_id.clone().expect("an id"))
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event was stored twice");
    unique
}

/// Every event the stand-in holds is stored, exactly once.
async fn assert_all_stored(ak: &StandIn, store: &Store) {
    let stored = stored_once(store).await;
    let present: HashSet<String> = ak.pks().into_iter().collect();
    let missing = present.difference(&stored).count();
    assert_eq!(missing, 0, "{missing} of {} events were never stored", present.len());
}

async fn tick_until_caught_up(p: &mut Poller, ctx: &SourceContext, max_ticks: usize) -> usize {
    for n in 1..=max_ticks {
        let s = p.tick(ctx).await.expect("a tick");
        if !s.capped {
            return n;
        }
    }
    panic!("not caught up after {max_ticks} ticks");
}

fn reopen(dir: &Path) -> SourceContext {
    context(embedded_store(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5000_event_backlog_lands_once_across_restarts() {
    let ak = StandIn::start().await;
    ak.add_events(5000);
    let dir = tempfile::tempdir().unwrap();
    // Three "processes", each a fresh store handle and poller, 10 pages per tick.
    for _ in 0..3 {
        let ctx = reopen(dir.path());
        let mut p = poller(&ak, 10, AK_TOKEN);
        let s = p.tick(&ctx).await.expect("a tick");
        assert!(s.capped, "1,000 events per tick cannot cover 5,000");
        ak.add_events(20); // new logins keep arriving between restarts
    }
    let ctx = reopen(dir.path());
    let mut p = poller(&ak, 10, AK_TOKEN);
    tick_until_caught_up(&mut p, &ctx, 10).await;
    assert_eq!(stored_once(ctx.pipeline.store()).await.len(), 5060);
    assert_all_stored(&ak, ctx.pipeline.store()).await;
    // Once caught up, a tick re-reads only the 5-minute overlap window (about
    // 300 events here) and writes nothing new.
    let s = p.tick(&ctx).await.unwrap();
    assert_eq!(s.inserted, 0);
    assert!(s.pages <= 4, "{s:?}");
    // authentik ignores created filters; the poller must not rely on any.
    let queries = ak.state.lock().unwrap().queries.clone();
    assert!(
        queries
            .iter()
            .all(|q| q.get("ordering").map(String::as_str) == Some("-created"))
    );
    assert!(queries.iter().all(|q| !q.keys().any(|k| k.starts_with("created"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_during_a_walk_are_neither_lost_nor_doubled() {
    let ak = StandIn::start().await;
    ak.add_events(1234);
    // Before every page, 37 new events arrive at the top, and before every
    // fourth a burst of 250 (two and a half pages: those page numbers now
    // point at events already read).
    let mut served = 0;
    ak.state.lock().unwrap().on_request = Some(Box::new(move |s| {
        served += 1;
        audit_ingest_tests::authentik::add(s, if served % 4 == 0 { 250 } else { 37 });
    }));
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut p = poller(&ak, 0, AK_TOKEN);
    let s = p.tick(&ctx).await.expect("a tick");
    ak.state.lock().unwrap().on_request = None;
    p.tick(&ctx)
        .await
        .expect("a second tick picks up what arrived during the first");
    assert_all_stored(&ak, ctx.pipeline.store()).await;
    // Each page re-reads the ~37 events that slid onto it (deduplicated);
    // pages that slid entirely are jumped over, not fetched and stored again.
    assert!(s.duplicates < 2000, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_deleted_during_a_walk_do_not_make_it_skip_any() {
    let ak = StandIn::start().await;
    ak.add_events(2000);
    // Between pages, 30 of the newest events are deleted (authentik removes
    // all of a user's events when the user is deleted): every unread event
    // moves 30 places up, towards pages already walked.
    let mut served = 0;
    ak.state.lock().unwrap().on_request = Some(Box::new(move |s| {
        served += 1;
        if served > 1 {
            let len = s.events.len();
            s.events.drain(len - 30..);
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut p = poller(&ak, 0, AK_TOKEN);
    p.tick(&ctx).await.expect("a tick");
    ak.state.lock().unwrap().on_request = None;
    assert_all_stored(&ak, ctx.pipeline.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_walk_finishes_its_gap_before_moving_on() {
    let ak = StandIn::start().await;
    ak.add_events(350);
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut p = poller(&ak, 1, AK_TOKEN);
    let s = p.tick(&ctx).await.unwrap();
    assert!(s.capped);
    assert_eq!(s.inserted, 100, "the newest page");
    let first_newest: HashSet<String> = ak.pks().into_iter().rev().take(100).collect();
    ak.add_events(50);
    let newest_50: HashSet<String> = ak.pks().into_iter().rev().take(50).collect();
    let s = p.tick(&ctx).await.unwrap();
    assert!(s.capped);
    let stored = stored_once(ctx.pipeline.store()).await;
    assert!(first_newest.is_subset(&stored));
    assert!(stored.is_disjoint(&newest_50), "the gap comes first: nothing newer yet");
    // 50 arrivals shifted the gap by half a page: page 2 now starts with 50
    // events already read (deduplicated) and 50 of the gap.
    assert_eq!(stored.len(), 150, "one more page of the gap");
    tick_until_caught_up(&mut p, &ctx, 20).await;
    assert_all_stored(&ak, ctx.pipeline.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stores_nothing_and_the_next_good_tick_catches_up() {
    let ak = StandIn::start().await;
    ak.add_events(30);
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut bad = poller(&ak, 10, "expired-token");
    match bad.tick(&ctx).await {
        Err(TickError::Fetch(Failure::Unauthorized(401))) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(stored_once(ctx.pipeline.store()).await.is_empty());
    assert_eq!(ctx.pipeline.store().load_checkpoint("authentik").await.unwrap(), None);
    let mut good = poller(&ak, 10, AK_TOKEN);
    good.tick(&ctx).await.unwrap();
    assert_eq!(stored_once(ctx.pipeline.store()).await.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_rate_limits_end_the_tick_without_moving_the_cursor() {
    let ak = StandIn::start().await;
    ak.add_events(250);
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut p = poller(&ak, 0, AK_TOKEN);
    // Page 1 is served, page 2 gets a 503: the tick fails, page 1 stays committed.
    let mut served = 0;
    ak.state.lock().unwrap().on_request = Some(Box::new(move |s| {
        served += 1;
        if served == 2 {
            s.fail_next.push(503);
        }
    }));
    match p.tick(&ctx).await {
        Err(TickError::Fetch(Failure::Transient(why))) => assert!(why.contains("503"), "{why}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    ak.state.lock().unwrap().on_request = None;
    assert_eq!(
        stored_once(ctx.pipeline.store()).await.len(),
        100,
        "the page before the failure is committed"
    );
    let cursor = ctx
        .pipeline
        .store()
        .load_checkpoint("authentik")
        .await
        .unwrap()
        .expect("a cursor");
    assert_eq!(
        cursor["state"]["walk"]["offset"], 100,
        "the walk resumes after the committed page"
    );
    ak.state.lock().unwrap().fail_next = vec![429];
    match p.tick(&ctx).await {
        Err(TickError::Fetch(Failure::RateLimited(Some(wait)))) => assert_eq!(wait.as_secs(), 7),
        other => panic!("expected a rate limit with Retry-After, got {other:?}"),
    }
    p.tick(&ctx).await.expect("the API is back");
    assert_eq!(stored_once(ctx.pipeline.store()).await.len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_mid_walk_resumes_without_loss_or_duplicates() {
    let ak = StandIn::start().await;
    ak.add_events(600);
    let dir = tempfile::tempdir().unwrap();
    let (store, fault) = with_fault_switch(embedded_store(dir.path()));
    let ctx = context(store);
    let mut p = poller(&ak, 3, AK_TOKEN);
    p.tick(&ctx).await.unwrap();
    fault.set(true);
    assert!(matches!(p.tick(&ctx).await, Err(TickError::Store(_))));
    fault.set(false);
    tick_until_caught_up(&mut p, &ctx, 10).await;
    assert_all_stored(&ak, ctx.pipeline.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_come_from_the_users_groups_with_one_lookup_per_user() {
    let ak = StandIn::start().await;
    {
        let mut s = ak.state.lock().unwrap();
        s.users.insert(1, vec!["authentik Admins".into(), "acme".into()]);
        s.users.insert(2, vec!["staff".into(), "globex".into()]);
        s.users.insert(3, vec!["authentik Admins".into()]);
        s.users.insert(4, vec!["ACME".into()]);
        // user 5 was deleted: 404
    }
    ak.add_events(300);
    let dir = tempfile::tempdir().unwrap();
    let mut p = poller(&ak, 0, AK_TOKEN);
    let lookup = p.tenant_lookup().expect("the preset infers tenants");
    let mut ctx = reopen(dir.path());
    // As the service does: the source's records get their actors' tenants
    // in the pipeline, however they arrive.
    ctx.pipeline = ctx.pipeline.with_actor_tenants("authentik", lookup.clone());
    p.tick(&ctx).await.unwrap();
    let records = all_records(ctx.pipeline.store(), "authentik").await;
    let tenant_of = |user: &str| -> HashSet<Option<String>> {
        records
            .iter()
            .filter(|r| r.record.actor_id.as_deref() == Some(user))
            .map(|r| r.record.tenant_slug.clone())
            .collect()
    };
    assert_eq!(
        tenant_of("1"),
        HashSet::from([Some("acme".to_string())]),
        "admin group skipped"
    );
    assert_eq!(tenant_of("2"), HashSet::from([Some("globex".to_string())]));
    assert_eq!(tenant_of("3"), HashSet::from([None]), "only an admin group");
    assert_eq!(
        tenant_of("4"),
        HashSet::from([Some("acme".to_string())]),
        "case-insensitive"
    );
    assert_eq!(tenant_of("5"), HashSet::from([None]), "deleted user");
    // Failed logins by unknown names have no user to look up.
    assert!(
        records
            .iter()
            .filter(|r| r.record.action == "authentik.login_failed")
            .all(|r| r.record.actor_id.is_none())
    );
    assert_eq!(lookup.lookups(), 5, "200 events by 5 users cost 5 lookups");
    assert_eq!(ak.state.lock().unwrap().user_requests, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_now_skips_history_but_not_what_follows() {
    let ak = StandIn::start().await;
    ak.add_events(120);
    let dir = tempfile::tempdir().unwrap();
    let ctx = reopen(dir.path());
    let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
    config.token = secret_file(AK_TOKEN);
    config.first_run = FirstRun::Now;
    config.overlap_secs = 0;
    // The stand-in's history is two days old; new events are created "now".
    let mut p = config.resolve().unwrap();
    p.tick(&ctx).await.unwrap();
    assert!(stored_once(ctx.pipeline.store()).await.is_empty());
    {
        let mut s = ak.state.lock().unwrap();
        let now = chrono::Utc::now() + chrono::Duration::seconds(1);
        let mut fresh = audit_ingest_tests::authentik::Authentik::default();
        audit_ingest_tests::authentik::add(&mut fresh, 3);
        for mut e in fresh.events {
            e["pk"] = format!("fresh-{}", e["pk"].as_str().unwrap()).into();
            e["created"] = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into();
            s.events.push(e);
        }
    }
    p.tick(&ctx).await.unwrap();
    let stored = stored_once(ctx.pipeline.store()).await;
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|id| id.starts_with("fresh-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_keeps_running_through_a_refused_token_and_stops_on_shutdown() {
    let ak = StandIn::start().await;
    ak.add_events(10);
    let dir = tempfile::tempdir().unwrap();
    let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
    config.token = secret_file("wrong-token");
    config.interval_secs = 1;
    let stop = ShutdownSignal::new();
    let ctx = context_until(embedded_store(dir.path()), stop.subscribe());
    let task = tokio::spawn(poll::run(config.resolve().unwrap(), ctx.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let requests = ak.state.lock().unwrap().event_requests;
    assert!(
        requests >= 2,
        "retried every interval after a 401 ({requests} requests)"
    );
    assert!(!task.is_finished(), "a refused token does not stop the poller");
    assert!(stored_once(ctx.pipeline.store()).await.is_empty());
    stop.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the poller stops promptly on shutdown")
        .unwrap();
}

/// A hostile or misconfigured API: a redirect, a 64 MiB page, an absurd
/// `Retry-After`. Each ends the tick with a clear reason; the redirect is
/// not followed (the token would travel with it), the page is not read
/// past the cap, the wait is capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_huge_pages_and_absurd_retry_afters_are_bounded() {
    use axum::http::{StatusCode, header};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let followed = std::sync::Arc::new(AtomicUsize::new(0));
    let hits = followed.clone();
    let app = axum::Router::new()
        .route(
            "/redirect/api/v3/events/events/",
            axum::routing::get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")], "") }),
        )
        .route(
            "/elsewhere",
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::Relaxed);
                async { "{}" }
            }),
        )
        .route(
            "/huge/api/v3/events/events/",
            axum::routing::get(|| async {
                let chunk = axum::body::Bytes::from(vec![b' '; 1 << 20]);
                let stream = futures_util::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
                axum::body::Body::from_stream(stream)
            }),
        )
        .route(
            "/limited/api/v3/events/events/",
            axum::routing::get(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "99999999")], "") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(embedded_store(dir.path()));
    let tick = |prefix: &str| {
        let mut config = audit_ingest::presets::authentik_poller(&format!("{base}/{prefix}"));
        config.token = secret_file(AK_TOKEN);
        config.max_response_bytes = 1 << 20;
        let mut p = config.resolve().unwrap();
        let ctx = ctx.clone();
        async move { p.tick(&ctx).await }
    };
    match tick("redirect").await {
        Err(TickError::Fetch(Failure::Redirected(302, to))) => assert_eq!(to, "/elsewhere"),
        other => panic!("expected a refused redirect, got {other:?}"),
    }
    assert_eq!(followed.load(Ordering::Relaxed), 0, "the redirect was not followed");
    assert!(matches!(
        tick("huge").await,
        Err(TickError::Fetch(Failure::TooLarge(_)))
    ));
    match tick("limited").await {
        Err(TickError::Fetch(Failure::RateLimited(Some(wait)))) => {
            assert_eq!(wait, audit_ingest::sources::poll::fetch::MAX_RETRY_AFTER)
        }
        other => panic!("expected a capped Retry-After, got {other:?}"),
    }
}

/// An event the store cannot hold does not hold the cursor back: it is kept
/// as a dead letter once (the overlap window reads it again every tick),
/// and every other event lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_cannot_hold_is_kept_once_and_the_walk_goes_on() {
    let ak = StandIn::start().await;
    ak.add_events_ending_now(120);
    let poison = ak.pks()[37].clone();
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = with_fault_switch(embedded_store(dir.path()));
    faults.refuse_records_containing(&poison);
    let ctx = context(store.clone());
    let mut p = poller(&ak, 0, AK_TOKEN);
    let first = p.tick(&ctx).await.expect("a tick");
    assert_eq!(first.inserted, 119, "{first:?}");
    ak.add_events_ending_now(5);
    let second = p.tick(&ctx).await.expect("a tick");
    assert_eq!(second.inserted, 5, "{second:?}");
    let stored = stored_once(&store).await;
    assert_eq!(stored.len(), 124);
    assert!(!stored.contains(&poison));
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "kept once across ticks");
    assert!(String::from_utf8_lossy(&letters[0].1.body).contains(&poison));
}

//! authentik pushed and polled: events created in the stand-in at a steady
//! rate, each pushed at once as authentik's webhook transport would (one
//! POST per event, the shipped body mapping's bytes, a bearer token) into
//! the real service (embedded store, built-in mapper, `durability = "full"`)
//! on 127.0.0.1, while its poller walks the same list. Generator, stand-in
//! and service share this machine's cores.
//!
//! Push → queryable is measured twice: until the push is answered (the
//! service answers only after the commit), and until a reader paging `GET
//! /audit?source=authentik` every 20 ms first sees the event. Then the same
//! events are polled alone, with no pushes, and the requests authentik
//! served in each run are compared.
//!
//! `cargo bench -p audit-ingest-tests --bench authentik_push`
//! Environment: `PUSH_RATE` (events/s, default 1000), `PUSH_SECS` (default
//! 20), `POLL_INTERVAL_SECS` (default 5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_ingest::config::{Config, SecretSource, Settings};
use audit_ingest::store::sqlite::Durability;
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn, notification_body};
use audit_ingest_tests::bench::percentile;
use audit_ingest_tests::{AK_WEBHOOK_TOKEN, TOKEN};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secret(dir: &std::path::Path, name: &str, value: &str) -> SecretSource {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    SecretSource {
        env: None,
        file: Some(path),
    }
}

/// What one run measured.
struct Run {
    events: usize,
    answered: Vec<Duration>,
    seen: Vec<Duration>,
    non_2xx: usize,
    event_requests: u64,
    user_requests: u64,
    stored: usize,
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let rate: u64 = env_or("PUSH_RATE", 1000);
    let secs: u64 = env_or("PUSH_SECS", 20);
    let interval: u64 = env_or("POLL_INTERVAL_SECS", 5);
    let tokio = audit_ingest_tests::bench::two_workers();
    tokio.block_on(async move {
        let pushed = run(rate, secs, interval, true).await;
        let polled = run(rate, secs, interval, false).await;
        println!("| run | events | pushes answered p50 / p99 / max ms | first seen by a reader p50 / p99 / max ms | non-2xx | event list requests | user lookups | stored |");
        println!("|---|---|---|---|---|---|---|---|");
        for (name, r) in [("push + poll", &pushed), ("poll alone", &polled)] {
            let ms = |d: &[Duration], p: f64| percentile(d, p).as_secs_f64() * 1e3;
            let (answered, seen) = if r.answered.is_empty() {
                ("-".to_string(), "-".to_string())
            } else {
                (
                    format!("{:.1} / {:.1} / {:.1}", ms(&r.answered, 50.0), ms(&r.answered, 99.0), ms(&r.answered, 100.0)),
                    format!("{:.1} / {:.1} / {:.1}", ms(&r.seen, 50.0), ms(&r.seen, 99.0), ms(&r.seen, 100.0)),
                )
            };
            println!(
                "| {name} | {} | {answered} | {seen} | {} | {} | {} | {} |",
                r.events, r.non_2xx, r.event_requests, r.user_requests, r.stored
            );
        }
    });
}

async fn run(rate: u64, secs: u64, interval: u64, push: bool) -> Run {
    let ak = StandIn::start().await;
    {
        let mut s = ak.state.lock().unwrap();
        for pk in 1..=5 {
            s.users
                .insert(pk, vec![if pk % 2 == 0 { "acme" } else { "globex" }.to_string()]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        mappers_dir: dir.path().join("mappers.d"),
        tenant_slugs: vec!["acme".into(), "globex".into()],
        ..Config::default()
    };
    config.store.durability = Durability::Full;
    config.store.mongodb_uri = Default::default();
    config.api.token = secret(dir.path(), "api", TOKEN);
    let mut hook = audit_ingest::presets::authentik_webhook();
    hook.auth = audit_ingest::sources::webhook::AuthConfig::Bearer {
        token: secret(dir.path(), "hook", AK_WEBHOOK_TOKEN),
    };
    config.webhooks = vec![hook];
    let mut poller = audit_ingest::presets::authentik_poller(&ak.base_url);
    poller.token = secret(dir.path(), "ak", AK_TOKEN);
    poller.interval_secs = interval;
    poller.max_pages_per_tick = 0;
    // A short overlap: with the default five minutes every tick of a
    // 1,000 events/s list would re-read 300,000 events, in both runs alike.
    poller.overlap_secs = 10;
    config.pollers = vec![poller];
    let settings = Settings::resolve(config).unwrap();
    let app = audit_ingest::serve::build(settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    audit_ingest_tests::bench::serve_like_the_service(listener, audit_ingest::api::router(app.state.clone()));

    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(secs);
    let reader = push.then(|| {
        tokio::spawn(read_timeline(
            client.clone(),
            addr.clone(),
            sent.clone(),
            seen.clone(),
            stop,
        ))
    });
    let mut pushes = Vec::new();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut events = 0usize;
    while Instant::now() < stop {
        // Open loop: the schedule does not wait for answers.
        let due = started + every * events as u32;
        tokio::time::sleep_until(due.into()).await;
        let event = ak.add_event_now();
        events += 1;
        if !push {
            continue;
        }
        let pk = event["pk"].as_str().unwrap().to_string();
        let body = notification_body(&event);
        let (client, url, sent) = (
            client.clone(),
            format!("http://{addr}/ingest/authentik/webhook"),
            sent.clone(),
        );
        pushes.push(tokio::spawn(async move {
            let t = Instant::now();
            sent.lock().unwrap().insert(pk, t);
            let answer = client
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {AK_WEBHOOK_TOKEN}"))
                .body(body)
                .send()
                .await;
            (t.elapsed(), answer.map(|r| r.status().is_success()).unwrap_or(false))
        }));
    }
    let mut answered = Vec::new();
    let mut non_2xx = 0;
    for p in pushes {
        let (took, ok) = p.await.unwrap();
        answered.push(took);
        non_2xx += usize::from(!ok);
    }
    if let Some(reader) = reader {
        reader.await.unwrap();
    }
    // Two more ticks: the poller catches up on what it had not yet walked.
    tokio::time::sleep(Duration::from_secs(2 * interval + 1)).await;
    let (event_requests, user_requests) = {
        let s = ak.state.lock().unwrap();
        (s.event_requests, s.user_requests)
    };
    let stored = audit_ingest_tests::all_records(app.state.pipeline.store(), "authentik")
        .await
        .len();
    app.stop(Duration::from_secs(10)).await;
    answered.sort();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    Run {
        events,
        answered,
        seen,
        non_2xx,
        event_requests,
        user_requests,
        stored,
    }
}

/// Pages the newest authentik records every 20 ms and notes, for each
/// pushed event, how long after its push it was first there.
async fn read_timeline(
    client: reqwest::Client,
    addr: String,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    seen: Arc<Mutex<Vec<Duration>>>,
    stop: Instant,
) {
    let url = format!("http://{addr}/audit?source=authentik&limit=500");
    let grace = stop + Duration::from_secs(3);
    loop {
        let now = Instant::now();
        if now > grace || (now > stop && sent.lock().unwrap().is_empty()) {
            break;
        }
        if let Ok(r) = client.get(&url).bearer_auth(TOKEN).send().await
            && let Ok(page) = r.json::<serde_json::Value>().await
        {
            let at = Instant::now();
            let mut sent = sent.lock().unwrap();
            for record in page["records"].as_array().into_iter().flatten() {
                if let Some(t) = record["externalId"].as_str().and_then(|id| sent.remove(id)) {
                    seen.lock().unwrap().push(at - t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

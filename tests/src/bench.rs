//! Small timing helpers for the benchmark binaries (`cargo bench`): the
//! figures in BENCHMARKS.md come from these, never from tests.

use std::time::{Duration, Instant};

use audit_ingest::event::RawJson;
use chrono::{TimeZone, Utc};
use serde_json::json;

/// Whether `cargo bench` started this benchmark. `cargo test --all-targets`
/// builds and starts every bench binary too, without `--bench`: a benchmark
/// then says so and does nothing (its figures belong in BENCHMARKS.md, not
/// in a test run). The criterion convention.
pub fn started_by_cargo_bench() -> bool {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        println!("a benchmark: run it with `cargo bench` (see BENCHMARKS.md); nothing to do under `cargo test`");
    }
    benching
}

/// Runs `f` for about `budget`, after a warm-up, and returns sorted per-call times.
pub fn sample(budget: Duration, mut f: impl FnMut()) -> Vec<Duration> {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times
}

/// Runs `a` and `b` one after the other, turn about, for about `budget`
/// (after a warm-up), and returns each one's sorted per-call times: on a
/// machine whose speed drifts, both see the same drift, so their ratio
/// holds where two separate runs would not.
pub fn sample_pair(budget: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (Vec<Duration>, Vec<Duration>) {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        a();
        b();
    }
    let (mut times_a, mut times_b) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        a();
        times_a.push(t.elapsed());
        let t = Instant::now();
        b();
        times_b.push(t.elapsed());
    }
    times_a.sort();
    times_b.sort();
    (times_a, times_b)
}

/// The `p`-th percentile (0–100) of sorted times.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}

/// Median as microseconds, for printing.
pub fn median_us(sorted: &[Duration]) -> f64 {
    percentile(sorted, 50.0).as_secs_f64() * 1e6
}

/// A Stalwart-shaped webhook body with `n` events (real field names, u64 ids).
/// Events carry `createdAt` = 2025-06-15T15:06:40Z plus `seed` seconds, as
/// a live server's batches carry the current time.
pub fn stalwart_batch(n: usize, seed: u64) -> Vec<u8> {
    let created = chrono::DateTime::from_timestamp(1_750_000_000 + seed as i64, 0)
        .expect("a valid time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut events = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let k = seed * 1_000_000 + i;
        let event = match i % 4 {
            0 => format!(
                r#"{{"id":"17500000{k}37","createdAt":"{created}","type":"auth.success","data":{{"accountName":"user{k}@example.org","accountId":{k},"spanId":{span},"listenerId":"imaps","localPort":993,"remoteIp":"192.0.2.10","remotePort":{port}}}}}"#,
                span = 1432795264225280001u64 + k,
                port = 40000 + i % 20000
            ),
            1 => format!(
                r#"{{"id":"17500000{k}35","createdAt":"{created}","type":"auth.failed","data":{{"accountName":"user{k}","accountId":{k},"spanId":{span},"reason":"Authentication failed","remoteIp":"198.51.100.7","listenerId":"imaps","localPort":993,"remotePort":{port}}}}}"#,
                span = 1432795268419584001u64 + k,
                port = 40000 + i % 20000
            ),
            2 => format!(
                r#"{{"id":"17500000{k}380","createdAt":"{created}","type":"queue.message-queued","data":{{"spanId":{span},"queueId":{queue},"from":"bill@example.net","to":["user{k}@example.org"],"size":1843,"nextRetry":"2025-06-15T15:06:43Z","nextDsn":"2025-06-16T15:06:43Z","expires":"2025-06-20T15:06:43Z","listenerId":"smtp","localPort":25,"remoteIp":"203.0.113.5","remotePort":38211}}}}"#,
                span = 1432795276808192001u64 + k,
                queue = 1432795277856768001u64 + k
            ),
            _ => format!(
                r#"{{"id":"17500000{k}423","createdAt":"{created}","type":"smtp.dmarc-fail","data":{{"spanId":{span},"strict":false,"domain":"example.net","policy":"reject","result":{{"type":"dmarc.fail","data":{{"causedBy":{{"type":"mail-auth.policy-not-aligned","data":{{}}}}}}}},"elapsed":3,"listenerId":"smtp","localPort":25,"remoteIp":"203.0.113.5","remotePort":38211}}}}"#,
                span = 1432795293585408001u64 + k
            ),
        };
        events.push(event);
    }
    format!(r#"{{"events":[{}]}}"#, events.join(",")).into_bytes()
}

/// `component` with a custom section named `bench` holding `tag` appended:
/// the same mapper as new bytes, so installing it is a real swap (compile,
/// validate, replace) as a new release would be.
pub fn tagged(component: &[u8], tag: u32) -> Vec<u8> {
    let name = b"bench";
    let payload = tag.to_le_bytes();
    let body_len = 1 + name.len() + payload.len();
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(body_len as u8); // LEB128, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// Writes `total` records made by `record(i)` in batches of 1,000, eight
/// batches at a time (so the store's group commits fill), then refreshes
/// the planner's statistics and waits until the background lookup has
/// caught up, as a service that has been running would have. Returns how
/// long the lookup took to catch up after the last write.
pub async fn load_store(
    sqlite: &std::sync::Arc<audit_ingest::store::sqlite::SqliteStore>,
    total: u64,
    record: impl Fn(u64) -> audit_ingest::store::NewRecord,
) -> Duration {
    let store: audit_ingest::store::Store = sqlite.clone();
    let mut handles = Vec::new();
    for b in 0..total.div_ceil(1000) {
        let batch: Vec<_> = (b * 1000..((b + 1) * 1000).min(total)).map(&record).collect();
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.insert(batch, None).await.expect("load the store")
        }));
        if handles.len() >= 8 {
            for h in handles.drain(..) {
                h.await.expect("a load task");
            }
        }
    }
    for h in handles {
        h.await.expect("a load task");
    }
    // What the maintenance thread does every five minutes, done now.
    sqlite.analyze().expect("analyze");
    let waited = Instant::now();
    while sqlite.lookup_lag().expect("the lookup's lag") > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    waited.elapsed()
}

/// The actions [`stored_record`] cycles through.
pub const ACTIONS: [&str; 6] = [
    "stalwart.auth_success",
    "stalwart.auth_failed",
    "stalwart.mail_received",
    "authentik.login",
    "authentik.login_failed",
    "ocis.file_read",
];

/// Record `i` of the store benchmarks: a realistic Stalwart-shaped record
/// (actions, actors, IPs and tenants cycling), ten a second from 2025-06-15.
pub fn stored_record(i: u64) -> audit_ingest::store::NewRecord {
    let action = ACTIONS[(i % 6) as usize];
    audit_ingest::store::NewRecord {
        source: action.split('.').next().unwrap().into(),
        action: action.into(),
        at: Utc.timestamp_opt(1_750_000_000 + (i / 10) as i64, 0).unwrap(),
        received_at: Utc.timestamp_opt(1_750_000_000 + (i / 10) as i64, 5).unwrap(),
        actor_id: Some(format!("{}", i % 5000)),
        actor_name: Some(format!("user{}@example.org", i % 5000)),
        actor_email: Some(format!("user{}@example.org", i % 5000)),
        ip: Some(format!("10.{}.{}.{}", i % 7, i % 251, i % 13)),
        target_type: Some("account".into()),
        target_id: Some(format!("{}", i % 5000)),
        target_name: Some(format!("user{}@example.org", i % 5000)),
        tenant_slug: Some(["acme", "globex", "initech"][(i % 3) as usize].into()),
        outcome: if i.is_multiple_of(2) { "success" } else { "failure" }.into(),
        external_id: Some(format!("{i:016x}:0")),
        metadata: RawJson::from_value(
            &json!({"original": {"id": format!("1750000000{i}"), "createdAt": "2025-06-15T15:06:40Z",
            "type": "auth.failed", "data": {"accountName": format!("user{}", i % 5000), "accountId": i % 5000,
            "spanId": 1432795268419584001u64 + i, "reason": "Authentication failed", "remoteIp": "198.51.100.7",
            "listenerId": "imaps", "localPort": 993, "remotePort": 40022}}}),
        ),
        mapper: Some("stalwart@0.1.0".into()),
        unrecognised: false,
    }
}

/// Serves `router` on `listener` as the service does (its own listener and
/// connection limits) until the process ends.
pub fn serve_like_the_service(listener: tokio::net::TcpListener, router: axum::Router) -> tokio::task::JoinHandle<()> {
    let limits = audit_ingest::config::HttpConfig::default().connection_limits();
    let counts = std::sync::Arc::new(audit_ingest::http_server::ConnectionCounts::default());
    tokio::spawn(audit_ingest::http_server::serve(
        listener,
        router,
        limits,
        counts,
        std::future::pending(),
    ))
}

/// The runtime benchmarks run the service on: two worker threads, as the
/// 2-core machine the targets are for has cores.
pub fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

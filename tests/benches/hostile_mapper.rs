//! A hostile mapper against the sandbox: how long each hostile call runs
//! before the host cuts it off (100 calls of each mode), and what one
//! source's hostile mapper under continuous abuse costs another source's
//! signed deliveries (through the real router, embedded store).
//!
//! `cargo bench -p audit-ingest-tests --bench hostile_mapper`
//! Environment: `HOSTILE_CALLS` (default 100), `HOSTILE_SECS` (seconds of
//! each throughput run, default 5), `HOSTILE_SENDERS` (concurrent senders of
//! each source, default 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit_ingest::event::{Delivery, PageRequest};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::stalwart_signature;
use audit_ingest_tests::bench::{percentile, stalwart_batch};
use audit_ingest_tests::{
    PROBE_DESCRIBE_HUGE, PROBE_DESCRIBE_SLEEPS, PROBE_V1, STALWART_SECRET, app_with, embedded_store, install, runtime,
    stalwart_endpoint,
};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let calls: usize = env_or("HOSTILE_CALLS", 100);
    let secs: u64 = env_or("HOSTILE_SECS", 5);
    let senders: usize = env_or("HOSTILE_SENDERS", 8);
    let limits = Limits::default();
    let dir = tempfile::tempdir().unwrap();
    let mappers = dir.path().join("mappers.d");
    std::fs::create_dir_all(&mappers).unwrap();
    install(&mappers.join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(&mappers), InstanceMode::Fresh, limits);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "deadline {:?}; cut off within deadline + 50 ms = {:?}\n",
        limits.deadline,
        limits.deadline + Duration::from_millis(50)
    );
    println!("| mode | calls | p50 ms | p99 ms | max ms | within deadline + 50 ms | failure |");
    println!("|---|---|---|---|---|---|---|");
    for mode in [
        "loop",
        "sleep",
        "sleep-forever",
        "wait",
        "grow",
        "grow-table",
        "alias",
        "big-field",
    ] {
        let delivery = Delivery::from_body("probe", format!(r#"{{"do":"{mode}"}}"#).into_bytes());
        let (times, failure) = timed(calls, || {
            rt.map_blocking("probe", &delivery).err().map(|e| e.to_string())
        });
        row(mode, &times, limits.deadline, &failure);
    }
    let many = Delivery::from_body("probe", br#"{"do":"many","n":60000}"#.to_vec());
    let (times, failure) = timed(calls, || rt.map_blocking("probe", &many).err().map(|e| e.to_string()));
    row("many (60,000 events)", &times, limits.deadline, &failure);
    let (times, failure) = timed(calls, || {
        let request = PageRequest {
            page: 7,
            page_size: 100,
        };
        tokio
            .block_on(rt.page_query("probe", request))
            .err()
            .map(|e| e.to_string())
    });
    row("sleep-in-page-query", &times, limits.deadline, &failure);
    for (mode, bytes) in [
        ("sleep-in-describe", PROBE_DESCRIBE_SLEEPS),
        ("huge-describe", PROBE_DESCRIBE_HUGE),
    ] {
        let mut n = 0;
        let mut refused = 0;
        let (times, _) = timed(calls, || {
            n += 1;
            let file = mappers.join(format!("hostile-{n}.wasm"));
            install(&file, bytes);
            let before = rt.reload_counts().1;
            rt.rescan();
            refused += usize::from(rt.reload_counts().1 > before);
            std::fs::remove_file(&file).unwrap();
            rt.rescan();
            None
        });
        let failure = format!("{refused} of {calls} refused at load (time: one rescan)");
        row(mode, &times, limits.deadline, &Some(failure));
    }

    println!("\n| hostile source's abuse | good deliveries/s | share of unabused | good p99 ms | hostile requests/s |");
    println!("|---|---|---|---|---|");
    let router = {
        let mut hostile = stalwart_endpoint();
        hostile.source = "probe".into();
        hostile.mapper = "probe".into();
        hostile.path = "/ingest/probe/webhook".into();
        app_with(
            embedded_store(dir.path()),
            rt.clone(),
            vec![stalwart_endpoint(), hostile],
        )
    };
    let length = Duration::from_secs(secs);
    // A warm-up run (the store's first writes, the allocator) is not counted.
    tokio.block_on(throughput(&router, senders, length, None));
    let base = tokio.block_on(throughput(&router, senders, length, None));
    println!("| none | {:.0} | 100 % | {:.1} | 0 |", base.good_rate, base.good_p99_ms);
    for abuse in ["sleep", "wait", "alias", "grow-table", "loop"] {
        let run = tokio.block_on(throughput(&router, senders, length, Some(abuse)));
        println!(
            "| {abuse} | {:.0} | {:.0} % | {:.1} | {:.0} |",
            run.good_rate,
            100.0 * run.good_rate / base.good_rate,
            run.good_p99_ms,
            run.hostile_rate
        );
    }
    let after = tokio.block_on(throughput(&router, senders, length, None));
    println!(
        "| none, again after the abused runs | {:.0} | {:.0} % | {:.1} | 0 |",
        after.good_rate,
        100.0 * after.good_rate / base.good_rate,
        after.good_p99_ms
    );
}

/// Runs `f` `calls` times; returns the sorted times and the last failure.
fn timed(calls: usize, mut f: impl FnMut() -> Option<String>) -> (Vec<Duration>, Option<String>) {
    let mut times = Vec::with_capacity(calls);
    let mut failure = None;
    for _ in 0..calls {
        let started = Instant::now();
        failure = f();
        times.push(started.elapsed());
    }
    times.sort();
    (times, failure)
}

fn row(mode: &str, times: &[Duration], deadline: Duration, failure: &Option<String>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let max = times.last().copied().unwrap_or_default();
    let within = max <= deadline + Duration::from_millis(50);
    let failure = failure.as_deref().unwrap_or("none (the call succeeded)");
    let failure: String = failure.chars().take(90).collect();
    println!(
        "| {mode} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
        times.len(),
        ms(percentile(times, 50.0)),
        ms(percentile(times, 99.0)),
        ms(max),
        if within { "yes" } else { "no" },
        failure.replace('|', "/")
    );
}

struct Throughput {
    good_rate: f64,
    good_p99_ms: f64,
    hostile_rate: f64,
}

/// `senders` good senders (signed single-event Stalwart deliveries) flat
/// out for `length`, with as many hostile senders beside them when `abuse`
/// names a probe mode.
async fn throughput(router: &axum::Router, senders: usize, length: Duration, abuse: Option<&str>) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_done = Arc::new(AtomicU64::new(0));
    let mut hostile = Vec::new();
    if let Some(mode) = abuse {
        for _ in 0..senders {
            let (router, stop, done) = (router.clone(), stop.clone(), hostile_done.clone());
            let body = format!(r#"{{"do":"{mode}"}}"#);
            hostile.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = router
                        .clone()
                        .oneshot(signed("/ingest/probe/webhook", body.as_bytes()))
                        .await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let mut good = Vec::new();
    for s in 0..senders {
        let (router, stop) = (router.clone(), stop.clone());
        good.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = stalwart_batch(1, (s as u64) << 32 | n);
                let started = Instant::now();
                let answer = router
                    .clone()
                    .oneshot(signed("/ingest/stalwart/webhook", &body))
                    .await
                    .unwrap();
                if answer.status() == StatusCode::OK {
                    times.push(started.elapsed());
                }
            }
            times
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    for g in good {
        times.extend(g.await.unwrap());
    }
    for h in hostile {
        h.await.unwrap();
    }
    times.sort();
    Throughput {
        good_rate: times.len() as f64 / length.as_secs_f64(),
        good_p99_ms: percentile(&times, 99.0).as_secs_f64() * 1e3,
        hostile_rate: hostile_done.load(Ordering::Relaxed) as f64 / length.as_secs_f64(),
    }
}

fn signed(path: &str, body: &[u8]) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-signature", stalwart_signature(STALWART_SECRET, body))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

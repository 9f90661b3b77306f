//! oCIS audit file: catch-up throughput of a backlog (LINES, default 200,000
//! lines written while the service was down) into the embedded store, then
//! the delay from a line appended to its record being queryable, for
//! SAMPLES (default 500) lines appended one at a time, 5 ms apart.
//!
//! The store runs with the service's default `durability = "full"`
//! (`DURABILITY=normal` measures the other setting) and the tail's default
//! mapping threads (`MAPPING_THREADS=n` sets them), and the benchmark with
//! the service binary's allocator.
//!
//! `cargo bench -p audit-ingest-tests --bench tail_catchup`

use std::time::{Duration, Instant};

use audit_ingest::ingest::ShutdownSignal;
use audit_ingest::ingest::Tenants;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::tail;
use audit_ingest::store::Query;
use audit_ingest::store::sqlite::Durability;
use audit_ingest_tests::bench::percentile;
use audit_ingest_tests::ocis::{append, append_range, line};
use audit_ingest_tests::{embedded_store_with, runtime};

/// The service binary's allocator (`host/src/main.rs`), so the tail in this
/// process allocates as it does in the service.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let lines = env("LINES", 200_000);
    let samples = env("SAMPLES", 500);
    let durability = match std::env::var("DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let tokio = audit_ingest_tests::bench::two_workers();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        append_range(&path, 0, lines);
        let size = std::fs::metadata(&path).unwrap().len();
        // The store lives apart from the watched log directory, as in production.
        let data = tempfile::tempdir().unwrap();
        let store = embedded_store_with(data.path(), durability);
        let stop = ShutdownSignal::new();
        let rt = runtime(None, InstanceMode::Auto, Limits::default());
        let ctx = audit_ingest_tests::source_context(
            audit_ingest_tests::pipeline(store.clone(), rt, Tenants::default()),
            stop.subscribe(),
        );
        let mut config = audit_ingest::presets::ocis_tail(&path);
        config.check_interval_ms = 1000;
        config.mapping_threads = std::env::var("MAPPING_THREADS").ok().and_then(|v| v.parse().ok());
        let start = Instant::now();
        let task = tokio::spawn(tail::run(config.resolve().unwrap(), ctx));
        loop {
            let offset = store
                .load_checkpoint("ocis")
                .await
                .unwrap()
                .and_then(|p| p["state"]["offset"].as_u64())
                .unwrap_or(0);
            if offset >= size {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "oCIS backlog catch-up, durability {durability:?}, {lines} lines ({:.0} MiB): {secs:.2} s, {:.0} lines/s",
            size as f64 / 1048576.0,
            lines as f64 / secs
        );

        let mut delays = Vec::new();
        for n in 0..samples {
            let number = 10_000_000 + n;
            let appended = Instant::now();
            append(&path, &line(number));
            let want = format!("{:012x}", number);
            loop {
                let page = store
                    .query(&Query {
                        source: Some("ocis".into()),
                        limit: 1,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                if page
                    .records
                    .first()
                    .and_then(|r| r.record.target_id.as_deref())
                    .is_some_and(|t| t.ends_with(&want))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            delays.push(appended.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.sort();
        println!(
            "append → queryable, {samples} lines: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&delays, 50.0).as_secs_f64() * 1e3,
            percentile(&delays, 99.0).as_secs_f64() * 1e3,
            percentile(&delays, 100.0).as_secs_f64() * 1e3
        );
        stop.trigger();
        let _ = task.await;
    });
}

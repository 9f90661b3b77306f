//! Hot swap latency: from a new mapper file renamed into the watched
//! directory to the new version serving. Every swap installs bytes never
//! seen before (a unique custom section is appended), so each one pays the
//! full compile and validation, as a real new release would.
//!
//! `cargo bench -p audit-ingest-tests --bench hot_swap`

use std::time::{Duration, Instant};

use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest_tests::bench::{percentile, tagged};
use audit_ingest_tests::{PROBE_V1, PROBE_V2, install, runtime, wait_until};

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _watch = tokio.block_on(async { rt.watch().unwrap() });
    let mut times = Vec::new();
    for i in 0..20u32 {
        let (bytes, want) = if i % 2 == 0 {
            (PROBE_V2, "2.0.0")
        } else {
            (PROBE_V1, "1.0.0")
        };
        let start = Instant::now();
        install(&file, &tagged(bytes, i));
        wait_until(Duration::from_secs(10), || {
            rt.describe("probe").map(|d| d.version).as_deref() == Some(want)
        })
        .expect("the swap happens");
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "hot swap, file renamed → new version serving, 20 swaps: median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        percentile(&times, 50.0).as_secs_f64() * 1e3,
        percentile(&times, 90.0).as_secs_f64() * 1e3,
        percentile(&times, 100.0).as_secs_f64() * 1e3
    );
}

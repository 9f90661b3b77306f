//! Mapper call cost: the Stalwart mapper on 1- and 100-event deliveries,
//! natively and through the WebAssembly runtime (fresh and reused instances).
//!
//! `cargo bench -p audit-ingest-tests --bench mapper_calls`
//! Environment: `MAPPER_CALLS_WASM` (a Stalwart mapper component to measure
//! instead of the built-in one, e.g. an unstripped build whose functions a
//! profile can name), `MAPPER_CALLS_EVENTS` (default `1,100`).

use std::time::Duration;

use audit_guest_sdk::{Delivery, Mapper};
use audit_ingest::event::Delivery as HostDelivery;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest_tests::bench::{median_us, percentile, sample, sample_pair, stalwart_batch};
use audit_ingest_tests::{PROBE_V1, install, runtime, runtime_overriding_builtins};

/// The cost of the call itself: the probe mapper echoing a tiny payload, so
/// almost nothing but the host → guest → host round trip is measured.
fn boundary(budget: Duration) {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let delivery = Delivery::from_body("probe", br#"{"do":"echo"}"#.to_vec());
    let native = sample(budget, || {
        std::hint::black_box(probe_mapper::Probe::map(&delivery).unwrap());
    });
    let delivery = HostDelivery::from_body("probe", delivery.body.clone());
    println!("| mode | native µs | wasm µs | call overhead µs |");
    println!("|---|---|---|---|");
    for mode in [InstanceMode::Fresh, InstanceMode::Reuse] {
        let rt = runtime(Some(dir.path()), mode, Limits::default());
        let wasm = sample(budget, || {
            std::hint::black_box(rt.map_blocking("probe", &delivery).unwrap());
        });
        println!(
            "| {mode:?} | {:.2} | {:.2} (p99 {:.2}) | {:.2} |",
            median_us(&native),
            median_us(&wasm),
            percentile(&wasm, 99.0).as_secs_f64() * 1e6,
            median_us(&wasm) - median_us(&native)
        );
    }
    println!();
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let budget = Duration::from_secs(3);
    boundary(budget);
    println!(
        "| events | native µs | wasm fresh µs | wasm reuse µs | fresh overhead µs | reuse overhead µs | reuse/native |"
    );
    println!("|---|---|---|---|---|---|---|");
    // A drop-in `stalwart.wasm` replaces the built-in mapper of that name.
    let drop_in = tempfile::tempdir().unwrap();
    let mappers = std::env::var_os("MAPPER_CALLS_WASM").map(|wasm| {
        std::fs::copy(&wasm, drop_in.path().join("stalwart.wasm")).expect("copy MAPPER_CALLS_WASM");
        drop_in.path()
    });
    let counts = std::env::var("MAPPER_CALLS_EVENTS").unwrap_or_else(|_| "1,100".into());
    for n in counts.split(',').filter_map(|n| n.trim().parse::<usize>().ok()) {
        let delivery = Delivery::from_body("stalwart", stalwart_batch(n, 1));
        let hosted = HostDelivery::from_body("stalwart", delivery.body.clone());
        let runtime_in = |mode| match mappers {
            Some(dir) => runtime_overriding_builtins(dir, mode, Limits::default()),
            None => runtime(None, mode, Limits::default()),
        };
        let fresh = runtime_in(InstanceMode::Fresh);
        let fresh = sample(budget, || {
            std::hint::black_box(fresh.map_blocking("stalwart", &hosted).unwrap());
        });
        // Native and reused-instance calls alternate, so the ratio is
        // measured under the same conditions for both.
        let reuse = runtime_in(InstanceMode::Reuse);
        let (native, reused) = sample_pair(
            budget,
            || {
                std::hint::black_box(mapper_stalwart::Stalwart::map(&delivery).unwrap());
            },
            || {
                std::hint::black_box(reuse.map_blocking("stalwart", &hosted).unwrap());
            },
        );
        let wasm = [fresh, reused];
        let (n_us, f_us, r_us) = (median_us(&native), median_us(&wasm[0]), median_us(&wasm[1]));
        println!(
            "| {n} | {n_us:.2} | {f_us:.2} (p99 {:.2}) | {r_us:.2} (p99 {:.2}) | {:.2} | {:.2} | {:.2}× |",
            percentile(&wasm[0], 99.0).as_secs_f64() * 1e6,
            percentile(&wasm[1], 99.0).as_secs_f64() * 1e6,
            f_us - n_us,
            r_us - n_us,
            r_us / n_us
        );
    }
}
